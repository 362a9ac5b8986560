//! Serving a cacheable read: a hit is answered at once; a miss goes
//! upstream together with `PTTL key` (so the entry never outlives the key),
//! and its reply fills the cache on the way back. MGET is looked up per key:
//! hits are served from the cache and only the missing keys are fetched.

use super::{shape, FillTicket, Hit, NearCache, Read, Scratch};
use crate::commands::{only_key, Command, Flags};
use crate::protocol::scan::Frames;
use crate::protocol::{encode, request::parse_int, Args, Proto};
use crate::upstream::pool::JobResult;
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What to do for one cacheable request.
pub enum CacheRead {
    /// Answered from the cache.
    Ready(Bytes),
    /// Answered from the cache, into the output [`plan`] was given.
    Written,
    /// Send `payload` (producing `replies` replies) upstream; its result
    /// goes through [`Fill::finish`].
    Fetch { payload: BytesMut, replies: usize, fill: Fill },
    /// Another client is reading the same thing: wait for its reply.
    Wait(oneshot::Receiver<JobResult>),
    /// Not served by the cache: forward as usual.
    Bypass,
}

/// How to turn an upstream result into the client's reply, filling the
/// cache on the way.
pub enum Fill {
    /// One read plus its key's PTTL.
    Single(Box<FillTicket>),
    /// MGET: cached parts by position, the fetched keys' tickets in fetch
    /// order (each fetched with a PTTL when it has one).
    Mget(Box<MgetFill>),
}

/// The parts of an MGET served partly from the cache.
pub struct MgetFill {
    parts: Vec<Option<Bytes>>,
    tickets: Vec<Option<FillTicket>>,
}

/// A client request routed to the shared pool, as the cache sees it.
pub struct Request<'a> {
    pub cmd: &'a Command,
    pub args: &'a Args<'a>,
    /// Its bytes as the client sent them, forwarded on a miss.
    pub bytes: &'a [u8],
    pub proto: Proto,
}

/// Decides how `request` is served. A hit may be appended to `out`, when
/// given (the client is owed nothing before it).
pub fn plan(
    cache: &Arc<NearCache>,
    request: &Request,
    scratch: &mut Scratch,
    now: Instant,
    out: Option<&mut BytesMut>,
) -> CacheRead {
    let Request { cmd, args, bytes, proto } = *request;
    if !cmd.flags.contains(Flags::CACHEABLE) || !cache.is_active() {
        return CacheRead::Bypass;
    }
    if cmd.cached_per_key() {
        return mget(cache, args, proto, scratch, now);
    }
    let Some(key_index) = only_key(cmd, args, &mut scratch.keys) else {
        return CacheRead::Bypass;
    };
    let Some(key) = args.get(key_index) else {
        return CacheRead::Bypass;
    };
    let hash = cache.hash(key);
    let memo = cache.memoised(key, hash, now, |s| shape::matches(s, proto, cmd, args, key_index), out);
    match memo {
        Some(Hit::Written) => return CacheRead::Written,
        Some(Hit::Reply(reply)) => return CacheRead::Ready(reply),
        None => {}
    }
    let Some(ttl) = cache.admit(key, hash, &mut scratch.settings) else {
        return CacheRead::Bypass;
    };
    shape::of(&mut scratch.shape, proto, cmd, args, key_index);
    admitted(cache, key, hash, &scratch.shape, ttl, bytes, now)
}

/// Looks `shape` of an admitted read of `key` up; a miss is sent with the
/// key's PTTL. Kept out of [`plan`], so reads the cache refuses do not pay
/// for its frame.
#[inline(never)]
fn admitted(
    cache: &Arc<NearCache>,
    key: &[u8],
    hash: u64,
    shape: &[u8],
    ttl: Duration,
    request: &[u8],
    now: Instant,
) -> CacheRead {
    match cache.read(key, hash, shape, ttl, now) {
        Read::Hit(reply) => CacheRead::Ready(reply),
        Read::Join(rx) => CacheRead::Wait(rx),
        Read::Miss(ticket) => {
            let mut payload = BytesMut::with_capacity(request.len() + key.len() + 24);
            payload.extend_from_slice(request);
            pttl(&mut payload, key);
            CacheRead::Fetch { payload, replies: 2, fill: Fill::Single(Box::new(ticket)) }
        }
    }
}

fn pttl(out: &mut BytesMut, key: &[u8]) {
    encode::command(out, [&b"PTTL"[..], key].into_iter());
}

fn mget(cache: &Arc<NearCache>, args: &Args, proto: Proto, scratch: &mut Scratch, now: Instant) -> CacheRead {
    shape::get(&mut scratch.shape, proto);
    let mut parts = Vec::with_capacity(args.len() - 1);
    let mut fetch: Vec<(&[u8], Option<FillTicket>)> = Vec::new();
    for key in args.iter().skip(1) {
        let hash = cache.hash(key);
        if let Some(Hit::Reply(reply)) = cache.memoised(key, hash, now, |s| s == scratch.shape, None) {
            parts.push(Some(reply));
            continue;
        }
        match cache.admit(key, hash, &mut scratch.settings).map(|ttl| cache.read(key, hash, &scratch.shape, ttl, now)) {
            Some(Read::Hit(reply)) => parts.push(Some(reply)),
            Some(Read::Miss(ticket)) => {
                parts.push(None);
                fetch.push((key, Some(ticket)));
            }
            // A joined read would need waiting on several sources; fetching
            // the key again is simpler and as fresh.
            Some(Read::Join(_)) | None => {
                parts.push(None);
                fetch.push((key, None));
            }
        }
    }
    if fetch.is_empty() {
        let mut out = BytesMut::new();
        encode::header(&mut out, b'*', parts.len());
        parts.iter().flatten().for_each(|p| out.extend_from_slice(p));
        return CacheRead::Ready(out.freeze());
    }
    let mut payload = BytesMut::new();
    encode::header(&mut payload, b'*', fetch.len() + 1);
    encode::bulk(&mut payload, b"MGET");
    fetch.iter().for_each(|(key, _)| encode::bulk(&mut payload, key));
    let mut replies = 1;
    for (key, ticket) in &fetch {
        if ticket.is_some() {
            pttl(&mut payload, key);
            replies += 1;
        }
    }
    let tickets = fetch.into_iter().map(|(_, t)| t).collect();
    CacheRead::Fetch { payload, replies, fill: Fill::Mget(Box::new(MgetFill { parts, tickets })) }
}

impl Fill {
    /// The client's reply from the upstream result; fills the cache.
    pub fn finish(self, result: JobResult) -> JobResult {
        let replies = match result {
            Ok(replies) => replies,
            Err(e) => {
                if let Fill::Single(ticket) = self {
                    ticket.fail(e.clone());
                }
                return Err(e);
            }
        };
        let mut frames = Frames::new(replies);
        match self {
            Fill::Single(ticket) => {
                let reply = frames.next().ok_or_else(malformed)?;
                let ttl = frames.next().and_then(|f| integer(&f));
                land(*ticket, reply.clone(), ttl);
                Ok(reply)
            }
            Fill::Mget(mget) => {
                let MgetFill { parts, tickets } = *mget;
                let array = frames.next().ok_or_else(malformed)?;
                let mut fetched = Frames::elements(array).ok_or_else(malformed)?;
                let mut out = BytesMut::new();
                encode::header(&mut out, b'*', parts.len());
                let mut tickets = tickets.into_iter();
                for part in parts {
                    let reply = match part {
                        Some(cached) => cached,
                        None => {
                            let reply = fetched.next().ok_or_else(malformed)?;
                            if let Some(Some(ticket)) = tickets.next() {
                                let ttl = frames.next().and_then(|f| integer(&f));
                                // MGET answers nil for a key of another type
                                // too, where GET answers WRONGTYPE: a nil is
                                // a GET's reply only when the key is missing.
                                let missing = ttl == Some(-2);
                                land(ticket, reply.clone(), ttl.filter(|_| missing || !is_nil(&reply)));
                            }
                            reply
                        }
                    };
                    out.extend_from_slice(&reply);
                }
                Ok(out.freeze())
            }
        }
    }
}

/// Error replies are passed on but never cached.
fn land(ticket: FillTicket, reply: Bytes, pttl: Option<i64>) {
    let cacheable = !matches!(reply.first(), Some(b'-') | Some(b'!'));
    ticket.complete(reply, if cacheable { pttl } else { None });
}

fn is_nil(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"_\r\n"
}

/// A reply that is not what a cached read expects.
pub(crate) fn malformed() -> UpstreamError {
    UpstreamError::Protocol("unexpected reply shape for a cached read".into())
}

fn integer(frame: &[u8]) -> Option<i64> {
    let body = frame.strip_prefix(b":")?.strip_suffix(b"\r\n")?;
    parse_int(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{Admission, CacheConfig, Scratch};
    use crate::commands::lookup;

    fn run(cache: &Arc<NearCache>, parts: &[&str]) -> CacheRead {
        let (buf, ranges) = crate::protocol::laid_out(parts);
        let (_, cmd) = lookup(parts[0].as_bytes()).unwrap();
        let request = Request { cmd, args: &Args::new(&buf, &ranges), bytes: b"<request>", proto: Proto::Resp2 };
        plan(cache, &request, &mut Scratch::default(), Instant::now(), None)
    }

    /// An active cache that fills on the first miss.
    fn active() -> Arc<NearCache> {
        let c = NearCache::new(CacheConfig { admission: Admission::First, ..CacheConfig::default() });
        c.tracking_restored(0, || false);
        c
    }

    #[test]
    fn get_miss_fetches_with_pttl_then_hits() {
        let c = active();
        let CacheRead::Fetch { payload, replies, fill } = run(&c, &["GET", "k"]) else { panic!("miss") };
        assert_eq!(&payload[..], b"<request>*2\r\n$4\r\nPTTL\r\n$1\r\nk\r\n");
        assert_eq!(replies, 2);
        let reply = fill.finish(Ok(Bytes::from_static(b"$1\r\nv\r\n:-1\r\n"))).unwrap();
        assert_eq!(&reply[..], b"$1\r\nv\r\n");
        assert!(matches!(run(&c, &["get", "k"]), CacheRead::Ready(r) if &r[..] == b"$1\r\nv\r\n"));
    }

    #[test]
    fn a_memoised_hit_is_written_to_the_output_given() {
        let c = active();
        let CacheRead::Fetch { fill, .. } = run(&c, &["GET", "k"]) else { panic!("miss") };
        fill.finish(Ok(Bytes::from_static(b"$1\r\nv\r\n:-1\r\n"))).unwrap();
        assert!(matches!(run(&c, &["GET", "k"]), CacheRead::Ready(_)), "first hit: from the store, memoised");
        let (buf, ranges) = crate::protocol::laid_out(&["GET", "k"]);
        let (_, cmd) = lookup(b"get").unwrap();
        let mut request = Request { cmd, args: &Args::new(&buf, &ranges), bytes: b"<request>", proto: Proto::Resp2 };
        let mut out = BytesMut::from(&b"+earlier\r\n"[..]);
        let read = plan(&c, &request, &mut Scratch::default(), Instant::now(), Some(&mut out));
        assert!(matches!(read, CacheRead::Written));
        assert_eq!(&out[..], b"+earlier\r\n$1\r\nv\r\n");
        request.proto = Proto::Resp3;
        let mut resp3 = BytesMut::new();
        let read = plan(&c, &request, &mut Scratch::default(), Instant::now(), Some(&mut resp3));
        assert!(matches!(read, CacheRead::Fetch { .. }), "another shape: not served");
        assert!(resp3.is_empty());
    }

    #[test]
    fn errors_are_not_cached() {
        let c = active();
        let CacheRead::Fetch { fill, .. } = run(&c, &["GET", "k"]) else { panic!("miss") };
        let wrongtype = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:-1\r\n";
        fill.finish(Ok(Bytes::from_static(wrongtype))).unwrap();
        assert!(matches!(run(&c, &["GET", "k"]), CacheRead::Fetch { .. }));
    }

    #[test]
    fn mget_serves_hits_and_fetches_only_misses() {
        let c = active();
        let CacheRead::Fetch { fill, .. } = run(&c, &["GET", "a"]) else { panic!("miss") };
        fill.finish(Ok(Bytes::from_static(b"$1\r\n1\r\n:-1\r\n"))).unwrap();
        let CacheRead::Fetch { payload, replies, fill } = run(&c, &["MGET", "a", "b", "c"]) else { panic!("partial") };
        assert!(payload.starts_with(b"*3\r\n$4\r\nMGET\r\n$1\r\nb\r\n$1\r\nc\r\n"), "{payload:?}");
        assert_eq!(replies, 3);
        let upstream = Bytes::from_static(b"*2\r\n$1\r\n2\r\n$-1\r\n:5000\r\n:-2\r\n");
        let reply = fill.finish(Ok(upstream)).unwrap();
        assert_eq!(&reply[..], b"*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
        assert!(
            matches!(run(&c, &["MGET", "c", "a", "b"]), CacheRead::Ready(r) if &r[..] == b"*3\r\n$-1\r\n$1\r\n1\r\n$1\r\n2\r\n")
        );
    }

    #[test]
    fn an_mget_nil_of_an_existing_key_is_not_cached() {
        let c = active();
        let CacheRead::Fetch { fill, .. } = run(&c, &["MGET", "hash", "gone"]) else { panic!("miss") };
        // `hash` exists (PTTL -1) but is no string; `gone` is missing (-2).
        let upstream = Bytes::from_static(b"*2\r\n$-1\r\n$-1\r\n:-1\r\n:-2\r\n");
        assert_eq!(&fill.finish(Ok(upstream)).unwrap()[..], b"*2\r\n$-1\r\n$-1\r\n");
        assert!(matches!(run(&c, &["GET", "hash"]), CacheRead::Fetch { .. }), "GET must see its WRONGTYPE");
        assert!(matches!(run(&c, &["GET", "gone"]), CacheRead::Ready(r) if &r[..] == b"$-1\r\n"));
    }

    #[test]
    fn non_cacheable_and_inactive_bypass() {
        let c = active();
        assert!(matches!(run(&c, &["SET", "k", "v"]), CacheRead::Bypass));
        assert!(matches!(run(&c, &["EXISTS", "a", "b"]), CacheRead::Bypass));
        c.tracking_lost(0, false);
        assert!(matches!(run(&c, &["GET", "k"]), CacheRead::Bypass));
    }
}
