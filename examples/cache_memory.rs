//! What the near-cache costs in process memory against `cache.max_bytes`:
//! fills a cache bounded at 16 MiB (twice over, so it is full and evicting)
//! with GET replies of one value size, then prints the entries kept, their
//! weight and how much the process' resident memory grew. Run one size per
//! process (resident memory is not given back): `scripts/cache-memory.sh`.
//!
//! Usage: cache_memory <value bytes> [max_bytes]

use bytes::{BufMut, Bytes, BytesMut};
use nearcache::cache::{Admission, CacheConfig, NearCache, Read};
use std::time::{Duration, Instant};

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or_default();
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(16);
    let max_bytes: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(16 << 20);
    let cache = NearCache::new(CacheConfig { max_bytes, admission: Admission::First, ..CacheConfig::default() });
    cache.tracking_restored(0, || false);
    let mut reply = BytesMut::new();
    reply.put_slice(format!("${size}\r\n").as_bytes());
    reply.put_bytes(b'x', size);
    reply.put_slice(b"\r\n");
    let reply = reply.freeze();
    let before = rss_kib();
    let keys = (2 * max_bytes as usize / (size + 40)).max(1000);
    for i in 0..keys {
        let key = format!("key:{i:012}");
        let hash = cache.hash(key.as_bytes());
        if let Read::Miss(ticket) = cache.read(key.as_bytes(), hash, b"get", Duration::from_secs(3600), Instant::now())
        {
            ticket.complete(Bytes::copy_from_slice(&reply), Some(-1));
        }
    }
    // Let moka apply its pending evictions.
    for _ in 0..50 {
        let hash = cache.hash(b"key:000000000000");
        let _ = cache.read(b"key:000000000000", hash, b"get", Duration::from_secs(3600), Instant::now());
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = cache.stats();
    let grown = rss_kib().saturating_sub(before);
    println!(
        "value {size:>6} B: {:>7} entries, weight {:>6.1} MiB, RSS +{:>6.1} MiB = {:.2} x max_bytes ({:.1} MiB)",
        stats.entries,
        stats.bytes as f64 / 1048576.0,
        grown as f64 / 1024.0,
        grown as f64 * 1024.0 / max_bytes as f64,
        max_bytes as f64 / 1048576.0
    );
}
