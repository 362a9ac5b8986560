//! TLS upstreams (`rediss://`), end to end: a real redis-server serving only
//! TLS with a CA and server certificate made at test time (rcgen), and the
//! proxy in front of it, verifying with `tls_ca_file`, refusing an unknown
//! CA or a wrong name with an error reply, accepting anything with
//! `tls_insecure_skip_verify`, and serving RESP3 and the near-cache (whose
//! invalidation connection is TLS too).
//!
//! Every test starts its own redis-server (TLS port only) and proxy.
mod common;

use common::{eventually, free_port, Proxy, Raw};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------- helpers

/// A redis-server listening only on a TLS port, with a fresh CA; killed on
/// drop.
struct TlsRedis {
    port: u16,
    dir: PathBuf,
    /// The CA that signed the server's certificate (PEM).
    ca: PathBuf,
    child: Child,
}

impl TlsRedis {
    /// On a free port; tests run in parallel, so a port found free can be
    /// taken before redis binds it: then another is tried.
    fn start() -> TlsRedis {
        (0..10).find_map(|_| TlsRedis::try_start(free_port())).expect("a TLS redis-server on a free port")
    }

    fn try_start(port: u16) -> Option<TlsRedis> {
        let dir = std::env::temp_dir().join(format!("nearcache-test-tls-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (ca, cert, key) = make_certs(&dir);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&ca)
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test-deps.sh)");
        let mut redis = TlsRedis { port, dir, ca, child };
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if matches!(redis.child.try_wait(), Ok(Some(_))) {
                return None;
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn url(&self, host: &str) -> String {
        format!("rediss://{host}:{}", self.port)
    }

    /// `tls_ca_file = "<the test CA>"`.
    fn ca_setting(&self) -> String {
        format!("tls_ca_file = {:?}\n", self.ca.display().to_string())
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, and a server certificate it signed for the IP address 127.0.0.1
/// only (no DNS name): (ca.pem, cert.pem, key.pem) in `dir`.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = CertificateParams::new(Vec::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "nearcache test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca cert");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server params");
    params.distinguished_name.push(DnType::CommonName, "nearcache test server");
    let key = KeyPair::generate().expect("server key");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&paths.0, ca.pem()).expect("write ca");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// The proxy in front of `url`, with the `[upstream]` settings
/// `upstream_toml`.
fn start_proxy(url: &str, upstream_toml: &str) -> Proxy {
    Proxy::start_url(url, &format!("[upstream]\nconnect_timeout = \"2s\"\n{upstream_toml}"))
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

/// One request as a RESP multibulk.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(bulk(a).as_bytes());
    }
    out
}

// ------------------------------------------------------------------ tests

#[test]
fn verified_tls_serves_commands_pipelines_transactions_and_blocking() {
    let redis = TlsRedis::start();
    let proxy = start_proxy(&redis.url("127.0.0.1"), &redis.ca_setting());

    let mut con = proxy.conn();
    redis::cmd("SET").arg("tls:k").arg("v1").exec(&mut con).expect("SET");
    let v: String = redis::cmd("GET").arg("tls:k").query(&mut con).expect("GET");
    assert_eq!(v, "v1");

    // A deep pipeline in one write, replies in order.
    let mut raw = proxy.raw();
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(command(&["SET", &format!("tls:p{i}"), &format!("value-{i}")]));
        batch.extend(command(&["GET", &format!("tls:p{i}")]));
    }
    raw.send(&batch);
    for i in 0..500 {
        assert_eq!(raw.read_frame(), b"+OK\r\n");
        assert_eq!(String::from_utf8(raw.read_frame()).unwrap(), bulk(&format!("value-{i}")));
    }

    // Values larger than a TLS record and the socket buffers.
    let big = "x".repeat(3 * 1024 * 1024);
    assert_eq!(raw.call(&["SET", "tls:big", &big]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "tls:big"]), bulk(&big));

    // Many clients at once share the pool's TLS connections.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let addr = proxy.addr;
            std::thread::spawn(move || {
                let mut raw = Raw::connect(addr);
                for i in 0..200 {
                    let key = format!("tls:c{t}:{i}");
                    assert_eq!(raw.call(&["SET", &key, &key]), "+OK\r\n");
                    assert_eq!(raw.call(&["GET", &key]), bulk(&key));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }

    // MULTI/EXEC on a dedicated TLS connection.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["INCR", "tls:n"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["INCR", "tls:n"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "*2\r\n:1\r\n:2\r\n");
    assert_eq!(raw.call(&["GET", "tls:n"]), "$1\r\n2\r\n");

    // BLPOP waits on a dedicated TLS connection until another client pushes.
    let mut waiter = proxy.raw();
    waiter.cmd(&["BLPOP", "tls:q", "5"]);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(raw.call(&["RPUSH", "tls:q", "job"]), ":1\r\n");
    assert_eq!(String::from_utf8(waiter.read_frame()).unwrap(), format!("*2\r\n{}{}", bulk("tls:q"), bulk("job")));
    // The blocking connection was released: the client goes on normally.
    assert_eq!(waiter.call(&["GET", "tls:k"]), bulk("v1"));
}

/// A certificate the proxy cannot trust is Redis refusing the connection,
/// not Redis unreachable: failover (on) answers nothing from local memory,
/// every request gets the reason.
#[test]
fn unknown_ca_or_wrong_name_fails_with_an_error_reply() {
    let redis = TlsRedis::start();

    // The built-in roots do not know the test CA.
    let proxy = start_proxy(&redis.url("127.0.0.1"), "");
    let mut raw = proxy.raw();
    let start = Instant::now();
    for _ in 0..3 {
        let reply = raw.call(&["GET", "tls:k"]);
        assert!(reply.contains("TLS handshake failed") && reply.contains("certificate"), "{reply}");
        let reply = raw.call(&["SET", "tls:k", "local?"]);
        assert!(reply.starts_with("-ERR upstream") && reply.contains("TLS handshake failed"), "{reply}");
    }
    // Dedicated connections fail the same way.
    let reply = raw.call(&["BLPOP", "tls:q", "1"]);
    assert!(reply.starts_with("-ERR upstream") && reply.contains("TLS handshake failed"), "{reply}");
    assert!(start.elapsed() < Duration::from_secs(5), "errors took {:?}", start.elapsed());
    let ready = proxy.admin_get("/ready").1;
    assert!(ready.contains(r#""mode":"normal","journal_entries":0"#), "no failover: {ready}");
    drop(proxy);

    // The right CA, but the certificate does not name `localhost`.
    let proxy = start_proxy(&redis.url("localhost"), &redis.ca_setting());
    let reply = proxy.raw().call(&["GET", "tls:k"]);
    assert!(reply.contains("TLS handshake failed") && reply.contains("not valid for name"), "{reply}");
}

#[test]
fn insecure_skip_verify_works_without_the_ca() {
    let redis = TlsRedis::start();
    // Neither the CA nor the name (`localhost`) would pass verification.
    let proxy = start_proxy(&redis.url("localhost"), "tls_insecure_skip_verify = true\n");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "tls:k", "v"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "tls:k"]), bulk("v"));
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "tls:k"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), format!("*1\r\n{}", bulk("v")));
}

#[test]
fn resp3_and_the_near_cache_over_tls() {
    let redis = TlsRedis::start();
    let proxy = start_proxy(&redis.url("127.0.0.1"), &redis.ca_setting());
    let other = start_proxy(&redis.url("127.0.0.1"), &redis.ca_setting());

    let mut raw = proxy.raw();
    let hello = raw.call(&["HELLO", "3"]);
    assert!(hello.starts_with('%'), "{hello}");
    assert_eq!(raw.call(&["HSET", "tls:h", "f", "v"]), ":1\r\n");
    // A RESP3 map from the RESP3 pool connection.
    assert_eq!(raw.call(&["HGETALL", "tls:h"]), format!("%1\r\n{}{}", bulk("f"), bulk("v")));
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["HGETALL", "tls:h"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), format!("*1\r\n%1\r\n{}{}", bulk("f"), bulk("v")));

    // The invalidation connection (RESP3, TLS) comes up, and a write made
    // through another proxy reaches this one's cache.
    let active = || proxy.admin_get("/cache/stats").1.contains("\"active\":true");
    assert!(eventually(Duration::from_secs(5), active), "near-cache never became active");
    assert_eq!(raw.call(&["SET", "tls:c", "old"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "tls:c"]), bulk("old"));
    assert_eq!(raw.call(&["GET", "tls:c"]), bulk("old"));
    assert_eq!(other.raw().call(&["SET", "tls:c", "new"]), "+OK\r\n");
    let fresh = eventually(Duration::from_secs(2), || raw.call(&["GET", "tls:c"]) == bulk("new"));
    assert!(fresh, "the cache kept a value overwritten upstream");
}

// ---------------------------------------------------------------- client TLS

/// A TLS client of the proxy, trusting `ca`: (reply text of each request).
fn tls_client(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("ca") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
    let tcp = std::net::TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    rustls::StreamOwned::new(conn, tcp)
}

/// Reads until `want` bytes arrived.
fn read_exactly(stream: &mut impl std::io::Read, want: usize) -> String {
    let mut buf = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match stream.read(&mut buf[got..]) {
            Ok(0) => panic!("connection closed after {got} of {want} bytes"),
            Ok(n) => got += n,
            Err(e) => panic!("{e} after {got} of {want} bytes: {:?}", String::from_utf8_lossy(&buf[..got.min(64)])),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn clients_can_connect_over_tls() {
    use std::io::Write;
    let redis = common::RedisServer::start();
    let dir = std::env::temp_dir().join(format!("nearcache-test-client-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (ca, cert, key) = make_certs(&dir);
    let proxy = Proxy::start_with(
        redis.port,
        &format!(
            "[server]\ntls_listen = \"127.0.0.1:0\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    let addr = proxy.tls.expect("TLS listener");
    let mut client = tls_client(addr, &ca);
    client.write_all(&command(&["PING"])).expect("send");
    assert_eq!(read_exactly(&mut client, 7), "+PONG\r\n");
    // A pipeline, a value bigger than one TLS record, RESP3.
    let big = "v".repeat(100_000);
    let mut pipeline = command(&["SET", "k", &big]);
    pipeline.extend(command(&["GET", "k"]));
    pipeline.extend(command(&["HELLO", "3"]));
    client.write_all(&pipeline).expect("send");
    assert_eq!(read_exactly(&mut client, 5), "+OK\r\n");
    assert_eq!(read_exactly(&mut client, bulk(&big).len()), bulk(&big));
    let mut first = [0u8; 1];
    std::io::Read::read_exact(&mut client, &mut first).expect("hello");
    assert_eq!(first[0], b'%', "HELLO 3 answered with a map");

    // A client that does not speak TLS, or distrusts the certificate, gets
    // nowhere and bothers no one.
    let mut plain = std::net::TcpStream::connect(addr).expect("connect");
    plain.write_all(&command(&["PING"])).expect("send");
    let mut other_ca = dir.join("other");
    std::fs::create_dir_all(&other_ca).expect("dir");
    other_ca = make_certs(&other_ca).0;
    let mut distrusting = tls_client(addr, &other_ca);
    assert!(
        distrusting.write_all(&command(&["PING"])).and_then(|_| distrusting.flush()).is_err()
            || std::io::Read::read(&mut distrusting, &mut [0u8; 8]).is_err()
    );
    let mut second = tls_client(addr, &ca);
    second.write_all(&command(&["GET", "k"])).expect("send");
    assert_eq!(read_exactly(&mut second, bulk(&big).len()), bulk(&big));
    let (_, clients) = proxy.admin_get("/clients");
    assert!(clients.starts_with("{\"total\":2") || clients.starts_with("{\"total\":3"), "{clients}");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["GET", "k"]), bulk(&big), "the plain port still serves");
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
}
