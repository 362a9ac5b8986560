//! Differential test of the failover store against a real redis-server:
//! scripted command sequences run on both, in RESP2 and RESP3, and every
//! reply must be byte-identical (errors included).
//!
//! Script lines are commands split on white space, with `''` for an empty
//! argument, `\s` for a space inside one, `{s+N}` / `{ms+N}` for unix time
//! in seconds / milliseconds N from now. A line may start with a mode:
//! `~` compares the elements of the reply sorted (orders Redis leaves
//! undefined), `?N` compares integer replies within N (TTLs: the store
//! runs on a fixed clock, Redis on its own).

mod common;

use common::{direct_raw, Raw, RedisServer};
use nearcache::failover::store::{Store, Value};
use nearcache::protocol::scan::Scanner;
use nearcache::protocol::{Args, Proto};
use std::time::{SystemTime, UNIX_EPOCH};

const STRINGS: &str = r"
GET k
SET k v
GET k
SET k v2 XX
GET k
SET k v3 NX
SET fresh v NX
SET fresh2 v XX
GET fresh2
SET k v4 GET
SET nokey v GET
SET k v NX XX
SET k v XX NX
SET k v NX NX
SET k v GET GET
SET k v EX 10 PX 100
SET k v EX 10 EX 20
SET k v KEEPTTL EX 10
SET k v EX 10 KEEPTTL
SET k v KEEPTTL KEEPTTL
SET k v EX
SET k v EX abc
SET k v EX 1.5
SET k v EX 0
SET k v EX -5
SET k v PX 0
SET k v EXAT 0
SET k v EX 9223372036854775807
SET k v EX 9223372036854775
SET k v PX 9223372036854775807
SET k v PXAT 9223372036854775807
SET k v foo
SET k v EXAT 1
GET k
EXISTS k
SET k v PXAT 1 GET
GET k
SET k v EXAT {s+1000}
?1 TTL k
SET k v2 KEEPTTL
?1 TTL k
GET k
SET k v3
TTL k
SET k v ex 100 get
?1 TTL k
set K V
GET K
SET k v nx get
SET nx2 v NX GET
GET nx2
HSET h f v
SET h v GET
GET h
SET h v
GET h
SETNX sn v
SETNX sn w
GET sn
SETEX se 100 v
?1 TTL se
SETEX se 0 v
SETEX se -1 v
SETEX se abc v
SETEX se 9223372036854775807 v
PSETEX pse 100000 v
?1000 PTTL pse
PSETEX pse 0 v
HSET hh f v
MGET k nokey hh sn
MSET a 1 b 2
MSET a 1 b
MGET a b
MSET a x a y
GET a
SET a v EX 100
MSET a 1
TTL a
GETSET a new
GETSET gsnew x
GETSET hh x
GET gsnew
GETDEL a
GETDEL a
GETDEL hh
TYPE hh
APPEND s hello
APPEND s \sworld
GET s
STRLEN s
STRLEN nokey
APPEND hh x
STRLEN hh
SET ttl v EX 100
APPEND ttl x
?1 TTL ttl
";

const COUNTERS: &str = r"
INCR c
INCR c
INCRBY c 10
INCRBY c -3
DECR c
DECRBY c 5
DECRBY c -9223372036854775808
DECRBY c -5
INCRBY c abc
INCRBY c 1.5
INCRBY c ''
INCRBY c +1
INCRBY c 01
INCRBY c -0
GET c
SET c 9223372036854775807
INCR c
INCRBY c 0
SET c -9223372036854775808
DECR c
DECRBY c 1
INCRBY c 9223372036854775807
SET c \s1
INCR c
SET c 01
INCR c
SET c abc
INCR c
SET c 12345678901234567890
INCR c
HSET h f v
INCR h
INCRBY h abc
DECR h
SET t 1 EX 100
INCR t
?1 TTL t
INCRBYFLOAT f 10.5
INCRBYFLOAT f 0.1
INCRBYFLOAT f 5.0e3
INCRBYFLOAT f -5010.6
INCRBYFLOAT f 1e10
INCRBYFLOAT f 3
INCRBYFLOAT f abc
INCRBYFLOAT f inf
INCRBYFLOAT f -inf
INCRBYFLOAT f nan
INCRBYFLOAT f ''
INCRBYFLOAT f \s1
INCRBYFLOAT f 1\s
INCRBYFLOAT f 0x10
INCRBYFLOAT f 1e
INCRBYFLOAT f .5
INCRBYFLOAT f 5.
INCRBYFLOAT f +2
GET f
INCRBYFLOAT g 0.1
INCRBYFLOAT g 0.1
INCRBYFLOAT g 0.1
INCRBYFLOAT g -0.3
INCRBYFLOAT g -0
INCRBYFLOAT g 1.5e-20
INCRBYFLOAT g -1.5e-20
INCRBYFLOAT g 123456789.123456789
INCRBYFLOAT g 1e-5
INCRBYFLOAT g 1e20
INCRBYFLOAT g 1e999999
INCRBYFLOAT g 1e-999999
SET big 1e308
INCRBYFLOAT big 1e308
STRLEN big
SET big 1e4932
INCRBYFLOAT big 1
INCRBYFLOAT big 1e4932
SET f2 abc
INCRBYFLOAT f2 1
SET f2 3.0
INCRBYFLOAT f2 0
SET f2 0x1p-2
INCRBYFLOAT f2 0
INCRBYFLOAT h 1
SET ft 1 EX 100
INCRBYFLOAT ft 1.5
?1 TTL ft
";

const KEYS: &str = r"
SET a 1
SET b 2
DEL a b nokey a
EXISTS a b
SET a 1
UNLINK a nokey
MSET a 1 b 2
EXISTS a a b nokey
EXPIRE a 100
?1 TTL a
?1000 PTTL a
EXPIRE a 100 NX
EXPIRE a 200 XX
?1 TTL a
EXPIRE a 50 GT
EXPIRE a 300 GT
?1 TTL a
EXPIRE a 400 LT
EXPIRE a 10 LT
?1 TTL a
EXPIRE a 10 NX XX
EXPIRE a 10 NX GT
EXPIRE a 10 NX LT
EXPIRE a 10 GT LT
EXPIRE a 20 XX GT
EXPIRE a 5 XX GT
EXPIRE a 10 foo
EXPIRE a 10 nx foo
EXPIRE a abc
EXPIRE a abc foo
EXPIRE a 1.5
EXPIRE nokey 10
EXPIRE nokey 10 XX
EXPIRE a 9223372036854775807
EXPIRE a -9223372036854775808
EXPIRE a 9223372036854775
PEXPIRE a 9223372036854775807
PEXPIREAT a 9223372036854775807
PEXPIRE a -9223372036854775808
EXPIREAT a 9223372036854775
PERSIST a
PERSIST a
PERSIST nokey
TTL a
TTL nokey
PTTL a
PTTL nokey
EXPIRE b 100 GT
EXPIRE b 100 LT
?1 TTL b
EXPIRE b 100 XX LT
PERSIST b
EXPIRE b 0
EXISTS b
SET c v
EXPIRE c -1
EXISTS c
SET c v
PEXPIREAT c 1
GET c
SET c v
EXPIREAT c 1 NX
TYPE c
SET c v
EXPIREAT c {s+100}
?1 TTL c
PEXPIREAT c {ms+200000}
?1 TTL c
PEXPIRE c 300000
?1 TTL c
PEXPIRE c 100000 gt
EXPIRE c 100 LT XX
?1 TTL c
SET s v
HSET h f v
RPUSH l a
SADD st m
ZADD z 1 m
TYPE s
TYPE h
TYPE l
TYPE st
TYPE z
TYPE nokey
DEL s h l st z
TYPE h
SET x v PXAT 1
HSET x f v
TYPE x
SET x v PXAT 1
INCR x
SET x v PXAT 1
LPUSH x a
SET x v PXAT 1
APPEND x abc
SET x v PXAT 1
SADD x m
SET x v PXAT 1
ZADD x 1 m
SET x v PXAT 1
ZRANGE x 0 -1
HSET y f v
PEXPIREAT y 1
HGETALL y
SET x v PXAT 1
SET x v XX
SET x v PXAT 1
SETNX x w
GET x
SET x v PXAT 1
PERSIST x
TTL x
SET x v PXAT 1
DEL x
PING
PING hello
PING a b
ECHO hi
ECHO ''
";

const HASHES: &str = r"
HSET h a 1 b 2 c 3
HSET h a 10 d 4
HGETALL h
HGET h a
HGET h zz
HGET nokey a
HMGET h a zz b
HMGET nokey a b
HMSET h e 5
HSET h a
HMSET h a
HSET h a 1 b
HGETALL h
HDEL h a zz
HDEL nokey a
HGETALL h
HLEN h
HLEN nokey
HEXISTS h b
HEXISTS h zz
HEXISTS nokey b
HKEYS h
HVALS h
HKEYS nokey
HVALS nokey
HGETALL nokey
HINCRBY h b 5
HINCRBY h new 3
HINCRBY h b abc
HINCRBY h b 1.5
HINCRBY h e 9223372036854775807
HINCRBY h e -9223372036854775808
HSET h s str
HINCRBY h s 1
HSET h n \s1
HINCRBY h n 1
HINCRBY h2 x -7
HGETALL h2
HGETALL h
HSET h b 2 c 3
HGETALL h
HDEL h b c d e s new n
HGETALL h
EXISTS h
SET str v
HSET str a b
HMSET str a b
HGET str a
HMGET str a
HGETALL str
HDEL str a
HLEN str
HEXISTS str a
HKEYS str
HVALS str
HINCRBY str a 1
HINCRBY str a x
";

const LISTS: &str = r"
LPUSH l a b c
RPUSH l d e
LRANGE l 0 -1
LRANGE l -2 -1
LRANGE l 1 2
LRANGE l 5 10
LRANGE l 4 4
LRANGE l -100 100
LRANGE l 3 1
LRANGE l -1 -2
LRANGE l a 1
LRANGE l 0 b
LRANGE l -9223372036854775808 9223372036854775807
LRANGE nokey 0 -1
LRANGE nokey a 1
LLEN l
LLEN nokey
LPOP l
RPOP l
LPOP l 2
RPOP l 1
LPOP l 0
LPOP nokey
LPOP nokey 2
LPOP nokey 0
RPOP nokey 2
LPOP l -1
LPOP l x
LPOP l 1 2
LPOP l 1.5
RPOP l 9223372036854775807
EXISTS l
RPUSH l x
RPOP l 0
RPOP l
RPOP l
EXISTS l
RPUSH l2 1 2 3 4
RPOP l2 3
LRANGE l2 0 -1
SET str v
LPUSH str x
RPUSH str x
LRANGE str 0 1
LLEN str
LPOP str
RPOP str 2
LPOP str -1
";

const SETS: &str = r"
SADD s 3 1 2
SADD s 2 4
SMEMBERS s
SISMEMBER s 1
SISMEMBER s 9
SCARD s
SREM s 1 9
SMEMBERS s
SADD s -5 10 9223372036854775807 -9223372036854775808
SMEMBERS s
SREM nokey a
SCARD nokey
SISMEMBER nokey a
SMEMBERS nokey
SADD t b a c
~ SMEMBERS t
SCARD t
SREM t a b c
EXISTS t
SADD s 007
~ SMEMBERS s
SREM s 007
~ SMEMBERS s
SADD one x
SMEMBERS one
SREM one x
SMEMBERS one
SET str v
SADD str a
SREM str a
SMEMBERS str
SISMEMBER str a
SCARD str
";

const ZSETS: &str = r"
ZADD z 1 a 2 b 3 c
ZADD z 1.5 a
ZADD z CH 2.5 a
ZADD z NX 10 a 4 d
ZADD z XX 5 d 6 e
ZADD z GT 1 d
ZADD z GT CH 10 d
ZADD z LT CH 1 d
ZADD z LT 2 d
ZADD z XX GT CH 3 d
ZADD z NX XX 1 a
ZADD z NX GT 1 a
ZADD z NX LT 1 a
ZADD z GT LT 1 a
ZADD z INCR 1 a 2 b
ZADD z INCR 5 a
ZADD z INCR NX 5 a
ZADD z XX INCR 1 new
ZADD z INCR GT -1 a
ZADD z INCR LT -1 a
ZADD z 1
ZADD z 1 a 2
ZADD z abc a
ZADD z nan a
ZADD z '' a
ZADD z \s1 a
ZADD z 1\s a
ZADD z 1e400 a
ZADD z 1e-400 a
ZADD z 1 a abc b
ZADD zz XX 1 a
EXISTS zz
ZADD zz XX INCR 1 a
ZADD z inf x -inf y 0.1 p 0x10 h 1e-320 sub
ZADD z INCR inf x
ZADD z INCR -inf x
ZSCORE z x
ZADD z 12345678901234567890 big 0.00001 tiny 1.0000076293945312 tie 100 hundred
ZRANGE z 0 -1 WITHSCORES
ZSCORE z a
ZSCORE z tiny
ZSCORE z sub
ZSCORE z zz
ZSCORE nokey a
ZCARD z
ZCARD nokey
ZINCRBY z 2.5 b
ZINCRBY z 1 newm
ZINCRBY z abc b
ZINCRBY z nx b
ZINCRBY z incr b
ZINCRBY z -inf y
ZINCRBY z inf y
ZADD neg -0 m
ZSCORE neg m
ZADD neg INCR -0 n
ZADD neg INCR -0 m
ZINCRBY neg -0 q
ZRANGE neg 0 -1 WITHSCORES
ZRANGE z 0 -1
ZRANGE z 0 -1 WITHSCORES
ZRANGE z 0 1 REV
ZRANGE z 0 2 REV WITHSCORES
ZRANGE z -2 -1
ZRANGE z 5 1
ZRANGE z 100 200
ZRANGE z -100 100 withscores
ZRANGE z a 1
ZRANGE z 0 -1 foo
ZRANGE z 0 -1 LIMIT 0 1
ZRANGE z 0 -1 LIMIT 0 -1
ZRANGE z 0 -1 LIMIT 0
ZRANGE z 0 -1 REV REV
ZRANGE z 0 -1 WITHSCORES WITHSCORES
ZRANGE z 1 3 BYSCORE
ZRANGE z (1 3 BYSCORE
ZRANGE z 1 (3 BYSCORE WITHSCORES
ZRANGE z -inf +inf BYSCORE WITHSCORES
ZRANGE z 3 1 BYSCORE
ZRANGE z 3 1 BYSCORE REV
ZRANGE z +inf -inf BYSCORE REV LIMIT 1 2
ZRANGE z -inf +inf BYSCORE LIMIT 1 -1
ZRANGE z -inf +inf BYSCORE LIMIT 2 3 WITHSCORES
ZRANGE z -inf +inf BYSCORE LIMIT -1 2
ZRANGE z -inf +inf BYSCORE LIMIT 100 2
ZRANGE z -inf +inf BYSCORE LIMIT 0 0
ZRANGE z -inf +inf BYSCORE LIMIT x 0
ZRANGE z abc 1 BYSCORE
ZRANGE z 1 abc BYSCORE
ZRANGE z nan 1 BYSCORE
ZRANGE z '' 5 BYSCORE
ZRANGE z ( 5 BYSCORE
ZRANGE z \s1 5 BYSCORE
ZRANGE z 1e400 -1e400 BYSCORE REV
ZRANGE z (2 (2 BYSCORE
ZRANGE z 2 2 BYSCORE
ZRANGE z 0 -1 BYSCORE BYSCORE
ZRANGE z 0 -1 BYSCORE BYLEX
ZADD lex 0 a 0 b 0 c 0 d 0 dd
ZRANGE lex - + BYLEX
ZRANGE lex [b (d BYLEX
ZRANGE lex [b [d BYLEX
ZRANGE lex (b + BYLEX
ZRANGE lex + - BYLEX REV
ZRANGE lex (d - BYLEX REV
ZRANGE lex [dd [b BYLEX REV LIMIT 1 2
ZRANGE lex - + BYLEX LIMIT 1 2
ZRANGE lex - + BYLEX LIMIT 1 -5
ZRANGE lex + - BYLEX
ZRANGE lex [ + BYLEX
ZRANGE lex ( + BYLEX
ZRANGE lex a b BYLEX
ZRANGE lex - +x BYLEX
ZRANGE lex '' + BYLEX
ZRANGE lex - + BYLEX WITHSCORES
ZRANGE lex a b BYLEX WITHSCORES
ZRANGE nokey 0 -1
ZRANGE nokey 0 -1 WITHSCORES
ZRANGE nokey abc 1
ZRANGE nokey - + BYLEX
ZREM z a zz
ZREM nokey a
ZREM lex a b c d dd
EXISTS lex
SET str v
ZADD str 1 a
ZSCORE str a
ZCARD str
ZREM str a
ZINCRBY str 1 a
ZRANGE str 0 -1
ZRANGE str abc 1
ZRANGE str - + BYLEX
";

/// Values seeded into the store and written to Redis, then read back.
const SEEDED: &str = r"
GET sv
HGETALL sh
HGET sh f2
LRANGE sl 0 -1
~ SMEMBERS ss
SMEMBERS si
ZRANGE sz 0 -1 WITHSCORES
?1 TTL sv
TTL sh
HSET sh f4 v4
HGETALL sh
";

/// Collections past Redis' small encodings (listpack, intset), where
/// hashes and sets lose any defined order: compared sorted.
/// Scores of every magnitude (random bit patterns, and random decimals of
/// up to 17 digits), each added then read back: the store must print every
/// double as the server does (`%.17g` before Redis 7.2, fpconv's Grisu2
/// after, and in Valkey).
fn random_scores() -> String {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut lines = Vec::new();
    for i in 0..400 {
        let x = if i % 2 == 0 {
            f64::from_bits(next() & !(0x7ff << 52) | ((next() % 0x7fe) << 52))
        } else {
            let digits = next() % 100_000_000_000_000_000;
            let exp = (next() % 40) as i32 - 20;
            format!("{digits}e{exp}").parse().unwrap_or(1.0)
        };
        lines.push(format!("ZADD rnd {x:e} m{i}"));
        lines.push(format!("ZSCORE rnd m{i}"));
    }
    lines.join("\n")
}

fn large_collections() -> String {
    let numbers = |n: usize| (0..n).map(|i| (i * 7 % 1000).to_string()).collect::<Vec<_>>().join(" ");
    let pairs = |n: usize, prefix: &str| (0..n).map(|i| format!("{prefix}{i} {i}")).collect::<Vec<_>>().join(" ");
    let scored = |n: usize, prefix: &str| (0..n).map(|i| format!("{i} {prefix}{i}")).collect::<Vec<_>>().join(" ");
    let lines = [
        format!("SADD ints {}", numbers(600)),
        "SCARD ints".into(),
        "~ SMEMBERS ints".into(),
        "SREM ints 7 14 21".into(),
        "~ SMEMBERS ints".into(),
        format!("HSET big {}", pairs(200, "f")),
        "HLEN big".into(),
        "~ HKEYS big".into(),
        "~ HVALS big".into(),
        "HGET big f150".into(),
        "HSET long f 0123456789012345678901234567890123456789012345678901234567890123456789".into(),
        "HSET long g 1".into(),
        "~ HKEYS long".into(),
        format!("ZADD zbig {}", scored(300, "z")),
        "ZCARD zbig".into(),
        "ZRANGE zbig 0 -1 WITHSCORES".into(),
        "ZRANGE zbig 100 120 REV".into(),
        "ZRANGE zbig (10 +inf BYSCORE LIMIT 5 10 WITHSCORES".into(),
        "ZRANGE zbig 250 10 BYSCORE REV LIMIT 3 4".into(),
        "ZADD zbig -0 neg".into(),
        "ZSCORE zbig neg".into(),
        "ZRANGE zbig 0 2 WITHSCORES".into(),
        "ZADD zsmall -0 first".into(),
        format!("ZADD zsmall {}", scored(200, "m")),
        "ZSCORE zsmall first".into(),
        "ZADD zlong -0 0123456789012345678901234567890123456789012345678901234567890123456789".into(),
        "ZRANGE zlong 0 -1 WITHSCORES".into(),
        format!("RPUSH lbig {}", numbers(1000)),
        "LRANGE lbig 990 -1".into(),
        "LRANGE lbig -1000 5".into(),
        "LPOP lbig 998".into(),
        "LRANGE lbig 0 -1".into(),
    ];
    lines.join("\n")
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// One connection to Redis and one store, fed the same commands.
struct Diff {
    redis: Raw,
    store: Store,
    proto: Proto,
    now: i64,
    compared: usize,
    failures: Vec<String>,
}

impl Diff {
    fn new(server: &RedisServer, proto: Proto) -> Diff {
        let mut redis = direct_raw(server);
        let hello = nearcache::protocol::frame::hello(Proto::Resp2, &redis.read_frame_after(&["HELLO", "2"]));
        if proto == Proto::Resp3 {
            redis.read_frame_after(&["HELLO", "3"]);
        }
        assert_eq!(redis.call(&["FLUSHALL"]), "+OK\r\n");
        // Doubles are printed as this server prints them (Redis 7.2 and
        // Valkey differ from 7.0).
        let mut store = Store::new(1 << 30);
        store.print_doubles_like(hello.server.as_deref(), hello.version.as_deref());
        Diff { redis, store, proto, now: unix_ms(), compared: 0, failures: Vec::new() }
    }

    /// Runs every line of `script` on both sides.
    fn script(&mut self, name: &str, script: &str) {
        for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
            self.line(name, line);
        }
    }

    fn line(&mut self, name: &str, line: &str) {
        let (mode, command) = match line.split_once(' ') {
            Some((mode, rest)) if mode.starts_with(['~', '?']) => (mode, rest),
            _ => ("", line),
        };
        let args = self.tokens(command);
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.redis.cmd(&arg_refs);
        let expected = self.redis.read_frame();
        let actual = self.store_reply(&args);
        let same = match mode {
            "~" => sorted(&expected) == sorted(&actual),
            m if m.starts_with('?') => close(&expected, &actual, m[1..].parse().unwrap_or(0)),
            _ => expected == actual,
        };
        self.compared += 1;
        if !same {
            self.failures.push(format!(
                "[{name} {:?}] {line}\n    redis: {:?}\n    store: {:?}",
                self.proto,
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&actual)
            ));
        }
    }

    fn store_reply(&mut self, args: &[String]) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for arg in args {
            ranges.push(buf.len()..buf.len() + arg.len());
            buf.extend_from_slice(arg.as_bytes());
        }
        let name = &args[0];
        let (_, cmd) = nearcache::commands::lookup(name.as_bytes()).unwrap_or_else(|| panic!("unknown command {name}"));
        let reply = self.store.execute(cmd, &Args::new(&buf, &ranges), self.proto, self.now);
        reply.unwrap_or_else(|| panic!("the store does not serve {name}")).to_vec()
    }

    fn tokens(&self, command: &str) -> Vec<String> {
        command.split_whitespace().map(|t| self.token(t)).collect()
    }

    fn token(&self, t: &str) -> String {
        if t == "''" {
            return String::new();
        }
        let time = |prefix: &str, unit: i64| {
            let n: i64 = t.strip_prefix(prefix)?.strip_suffix('}')?.parse().ok()?;
            Some((self.now / unit + n).to_string())
        };
        time("{s+", 1000).or_else(|| time("{ms+", 1)).unwrap_or_else(|| t.replace("\\s", " "))
    }

    /// Seeds the store and writes the same values to Redis.
    fn seed(&mut self) {
        let b = |s: &str| bytes::Bytes::copy_from_slice(s.as_bytes());
        let seeds = [
            ("sv", Value::String(b("seeded")), Some(self.now + 100_000)),
            ("sh", Value::Hash(vec![(b("f1"), b("v1")), (b("f2"), b("v2")), (b("f1"), b("v3"))]), None),
            ("sl", Value::List(vec![b("x"), b("y"), b("z")]), None),
            ("ss", Value::Set(vec![b("m1"), b("m2"), b("m1")]), None),
            ("si", Value::Set(vec![b("30"), b("-1"), b("2")]), None),
            ("sz", Value::ZSet(vec![(2.5, b("b")), (1.0, b("a")), (f64::INFINITY, b("c"))]), None),
        ];
        for (key, value, expires) in seeds {
            self.store.seed(b(key), value, expires, self.now);
        }
        for write in [
            "SET sv seeded EX 100",
            "HSET sh f1 v1 f2 v2 f1 v3",
            "RPUSH sl x y z",
            "SADD ss m1 m2 m1",
            "SADD si 30 -1 2",
            "ZADD sz 2.5 b 1 a inf c",
        ] {
            let args: Vec<&str> = write.split(' ').collect();
            let reply = self.redis.call(&args);
            assert!(!reply.starts_with('-'), "{write}: {reply}");
        }
    }
}

/// The elements of a top-level aggregate, sorted, after its header.
fn sorted(reply: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let Some(header_end) = reply.windows(2).position(|w| w == b"\r\n") else { return (reply.to_vec(), vec![]) };
    let mut rest = &reply[header_end + 2..];
    let mut items = Vec::new();
    while let Ok(Some(n)) = Scanner::default().next_frame(rest) {
        items.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    items.sort();
    (reply[..header_end].to_vec(), items)
}

/// Both integer replies, within `tolerance` of each other.
fn close(expected: &[u8], actual: &[u8], tolerance: i64) -> bool {
    let int = |r: &[u8]| std::str::from_utf8(r).ok()?.strip_prefix(':')?.trim_end().parse::<i64>().ok();
    match (int(expected), int(actual)) {
        (Some(e), Some(a)) => (e - a).abs() <= tolerance,
        _ => expected == actual,
    }
}

#[test]
fn replies_match_redis_byte_for_byte() {
    let server = RedisServer::start();
    let scripts = [
        ("strings", STRINGS),
        ("counters", COUNTERS),
        ("keys", KEYS),
        ("hashes", HASHES),
        ("lists", LISTS),
        ("sets", SETS),
        ("zsets", ZSETS),
    ];
    let mut compared = 0;
    let mut failures = Vec::new();
    for proto in [Proto::Resp2, Proto::Resp3] {
        for (name, script) in scripts {
            let mut diff = Diff::new(&server, proto);
            diff.script(name, script);
            compared += diff.compared;
            failures.append(&mut diff.failures);
        }
        let mut diff = Diff::new(&server, proto);
        diff.script("random scores", &random_scores());
        compared += diff.compared;
        failures.append(&mut diff.failures);
        let mut diff = Diff::new(&server, proto);
        diff.script("large", &large_collections());
        compared += diff.compared;
        failures.append(&mut diff.failures);
        let mut diff = Diff::new(&server, proto);
        diff.seed();
        diff.script("seeded", SEEDED);
        compared += diff.compared;
        failures.append(&mut diff.failures);
    }
    println!("compared {compared} replies with redis-server ({} differed)", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {compared} replies differ from Redis:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
