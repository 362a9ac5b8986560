//! `server.auth = "upstream"`: a client's `AUTH` / `HELLO … AUTH` is checked
//! by Redis and its commands run as that Redis user, so Redis' ACLs,
//! `ACL WHOAMI` and `redis.acl_check_cmd` answer through the proxy exactly
//! as they do to a direct client (compared reply by reply), and the
//! near-cache never answers a user what Redis would refuse it.
mod common;

use common::{direct_raw, Proxy, Raw, RedisServer};

const CONFIG: &str = "[server]\nauth = \"upstream\"\n[cache]\nadmission = \"first\"\n";

fn users(redis: &RedisServer) {
    let mut direct = redis.direct();
    for rules in [
        &["alice", "on", ">alice-pw", "~alice:*", "+@all"][..],
        &["bob", "on", ">bob-pw", "~*", "+get", "+@connection"],
    ] {
        let _: () = redis::cmd("ACL").arg("SETUSER").arg(rules).query(&mut direct).expect("ACL SETUSER");
    }
}

/// Sends the same commands through the proxy and straight to Redis: the
/// replies must be the same, byte for byte.
fn same_replies(proxy: &mut Raw, direct: &mut Raw, commands: &[&[&str]]) {
    for cmd in commands {
        assert_eq!(proxy.call(cmd), direct.call(cmd), "{cmd:?}");
    }
}

#[test]
fn redis_checks_credentials_and_acls_per_user() {
    let redis = RedisServer::start();
    users(&redis);
    let proxy = Proxy::start_with(redis.port, CONFIG);
    let mut anonymous = proxy.raw();
    assert_eq!(anonymous.call(&["SET", "secret", "s3cret"]), "+OK\r\n");
    // Cached for the proxy's own user.
    assert_eq!(anonymous.call(&["GET", "secret"]), "$6\r\ns3cret\r\n");
    assert_eq!(anonymous.call(&["GET", "secret"]), "$6\r\ns3cret\r\n");
    assert_eq!(anonymous.call(&["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");

    let (mut alice, mut alice_direct) = (proxy.raw(), direct_raw(&redis));
    same_replies(
        &mut alice,
        &mut alice_direct,
        &[
            &["AUTH", "alice", "wrong"],
            &["AUTH", "nobody", "x"],
            &["AUTH", "alice", "alice-pw"],
            &["ACL", "WHOAMI"],
            &["SET", "alice:k", "v"],
            &["GET", "alice:k"],
            &["SET", "other", "v"],
            // What the near-cache holds for the proxy's user is not served
            // to a user Redis refuses it to.
            &["GET", "secret"],
            &["EVAL", "return redis.acl_check_cmd('set', 'other', 'v') and 1 or 0", "0"],
            &["EVAL", "return redis.acl_check_cmd('set', 'alice:x', 'v') and 1 or 0", "0"],
            &["MULTI"],
            &["INCR", "alice:n"],
            &["INCR", "secret"],
            &["EXEC"],
        ],
    );

    let (mut bob, mut bob_direct) = (proxy.raw(), direct_raw(&redis));
    let hello = bob.call(&["HELLO", "3", "AUTH", "bob", "bob-pw", "SETNAME", "bobs-app"]);
    assert!(hello.starts_with("%7\r\n") && hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    assert!(bob_direct.call(&["HELLO", "3", "AUTH", "bob", "bob-pw", "SETNAME", "bobs-app"]).starts_with('%'));
    same_replies(
        &mut bob,
        &mut bob_direct,
        &[&["ACL", "WHOAMI"], &["GET", "alice:k"], &["SET", "bob:k", "v"], &["CLIENT", "GETNAME"]],
    );
    // A wrong password changes nothing, as for a direct client.
    same_replies(&mut bob, &mut bob_direct, &[&["HELLO", "3", "AUTH", "bob", "wrong"], &["ACL", "WHOAMI"]]);
    // State upstream belongs to the user it was made by.
    assert_eq!(alice.call(&["WATCH", "alice:k"]), "+OK\r\n");
    let refused = alice.call(&["AUTH", "bob", "bob-pw"]);
    assert!(refused.starts_with("-ERR with server.auth"), "holding WATCH: {refused:?}");
    assert_eq!(alice.call(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(alice.call(&["AUTH", "bob", "bob-pw"]), "+OK\r\n");
    let as_bob = alice.call(&["SET", "alice:k", "w"]);
    assert!(as_bob.starts_with("-NOPERM"), "now bob, who may only GET: {as_bob:?}");
    assert_eq!(bob.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(bob.call(&["ACL", "WHOAMI"]), "$7\r\ndefault\r\n", "RESET ends the user's session");

    // A refused HELLO AUTH changes nothing: still RESP2, still the proxy's user.
    let mut carol = proxy.raw();
    let refused = carol.call(&["HELLO", "3", "AUTH", "alice", "wrong"]);
    assert_eq!(refused, "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(carol.call(&["GET", "secret"]), "$6\r\ns3cret\r\n");
}

/// The clients of one Redis user share a pool logged in as that user,
/// instead of a connection each; revoking the user upstream fails that
/// user's requests only.
#[test]
fn clients_of_one_user_share_a_pool_of_their_own() {
    let redis = RedisServer::start();
    users(&redis);
    let proxy = Proxy::start_with(redis.port, CONFIG);
    let mut clients: Vec<Raw> = (0..20).map(|_| proxy.raw()).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.call(&["AUTH", "alice", "alice-pw"]), "+OK\r\n");
        assert_eq!(client.call(&["SET", &format!("alice:{i}"), "v"]), "+OK\r\n");
        assert_eq!(client.call(&["ACL", "WHOAMI"]), "$5\r\nalice\r\n");
    }
    let mut direct = direct_raw(&redis);
    let logged_in = |direct: &mut Raw, user: &str| {
        direct.call(&["CLIENT", "LIST"]).lines().filter(|l| l.contains(&format!(" user={user} "))).count()
    };
    let settled = common::eventually(std::time::Duration::from_secs(5), || logged_in(&mut direct, "alice") == 1);
    assert!(settled, "20 clients, one pool connection as alice: {}", direct.call(&["CLIENT", "LIST"]));

    // Revoked upstream: alice's pool cannot log in again; everyone else is
    // served as before.
    assert_eq!(direct.call(&["ACL", "DELUSER", "alice"]), ":1\r\n");
    let refused = clients[0].call(&["GET", "alice:0"]);
    assert!(refused.starts_with('-'), "alice's requests fail: {refused:?}");
    let mut anonymous = proxy.raw();
    for _ in 0..20 {
        assert_eq!(anonymous.call(&["SET", "k", "v"]), "+OK\r\n");
    }
    let mut bob = proxy.raw();
    assert_eq!(bob.call(&["AUTH", "bob", "bob-pw"]), "+OK\r\n");
    assert_eq!(bob.call(&["GET", "alice:1"]), "$1\r\nv\r\n");
}

#[test]
fn tenants_and_upstream_auth_do_not_mix() {
    let hash = nearcache::tenancy::hash_password(b"pw");
    let toml = format!("[server]\nauth = \"upstream\"\n[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{hash}\"\n");
    let path = std::env::temp_dir().join(format!("nearcache-acl-{}.toml", std::process::id()));
    std::fs::write(&path, toml).expect("write");
    let err = nearcache::config::Config::load(Some(&path), &Default::default()).expect_err("refused");
    let _ = std::fs::remove_file(&path);
    let message = err.to_string();
    assert!(message.contains("server.auth") && message.contains("tenants"), "{message}");
}
