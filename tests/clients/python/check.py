#!/usr/bin/env python3
"""redis-py through nearcache: every scenario a typical application runs,
each result asserted exactly, once in RESP2 and once in RESP3.

    check.py HOST PORT NAMESPACE [USER PASSWORD]

Keys and channels start with NAMESPACE; each protocol leaves one key,
NAMESPACE:resp<N>:left, and deletes all the others it wrote (tests/clients.rs
checks that in Redis). Run by tests/clients.rs with the redis-py versions of
versions.txt (installed by scripts/test-deps.sh); it also runs directly
against a redis-server without credentials, to compare. Exits 1 if any
scenario failed, after printing each failure.
"""

import sys
import threading
import time
import traceback
import warnings

import redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, ResponseError, WatchError
from redis.retry import Retry

TIMEOUT = 10
# For the connections refused on purpose: redis-py 8 retries a refused AUTH
# by default (11 attempts in 3 s; 5.2.1 makes one), which trips the proxy's
# brake on failed AUTHs (10 per minute per tenant and address) and locks
# the tenant out from this address for the rest of the minute.
NO_RETRY = Retry(NoBackoff(), 0)


def eq(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


class Run:
    def __init__(self, host, port, ns, user, password, protocol):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.protocol = protocol
        self.ns = f"{ns}:resp{protocol}:"
        self.written = set()

    def client(self, **extra):
        return redis.Redis(
            host=self.host,
            port=self.port,
            username=self.user,
            password=self.password,
            protocol=self.protocol,
            decode_responses=True,
            socket_timeout=TIMEOUT,
            socket_connect_timeout=TIMEOUT,
            **extra,
        )

    def key(self, name):
        key = self.ns + name
        self.written.add(key)
        return key

    def connect_auth(self):
        r = self.client(client_name="nearcache-check")
        eq(r.ping(), True, "PING")
        eq(r.client_getname(), "nearcache-check", "CLIENT GETNAME after client_name=")
        eq(r.echo("hello"), "hello", "ECHO")
        hello = r.execute_command("HELLO")
        fields = hello if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2]))
        eq(fields.get("proto"), self.protocol, "protocol of the connection (HELLO)")
        if self.user is not None:
            bad = redis.Redis(
                host=self.host,
                port=self.port,
                username=self.user,
                password=self.password + "-wrong",
                protocol=self.protocol,
                socket_timeout=TIMEOUT,
                retry=NO_RETRY,
            )
            try:
                bad.ping()
                raise AssertionError("a wrong password was accepted")
            except AuthenticationError:
                pass
            anonymous = redis.Redis(
                host=self.host, port=self.port, protocol=self.protocol, socket_timeout=TIMEOUT, retry=NO_RETRY
            )
            try:
                anonymous.get(self.ns + "x")
                raise AssertionError("GET without AUTH was answered")
            except AuthenticationError:
                pass
            # AUTH on an open connection, as a command (without the CLIENT
            # SETINFO redis-py sends on connecting, which Redis >= 7.2 refuses
            # before AUTH with -NOAUTH, failing the connection).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # redis-py 8 prefers driver_info
                late = redis.Redis(
                    host=self.host,
                    port=self.port,
                    protocol=2,
                    socket_timeout=TIMEOUT,
                    decode_responses=True,
                    lib_name=None,
                    lib_version=None,
                )
            eq(late.execute_command("AUTH", self.user, self.password), True, "AUTH user password")
            eq(late.ping(), True, "PING after AUTH")

    def strings(self):
        r = self.client()
        k, n = self.key("str"), self.key("counter")
        eq(r.set(k, "value"), True, "SET")
        eq(r.get(k), "value", "GET")
        eq(r.get(self.ns + "missing"), None, "GET of a missing key")
        eq(r.set(k, "other", nx=True), None, "SET NX on an existing key")
        eq(r.getset(k, "v2"), "value", "GETSET")
        eq(r.mset({k: "m1", n: "10"}), True, "MSET")
        eq(r.mget([k, n, self.ns + "missing"]), ["m1", "10", None], "MGET")
        eq(r.incr(n), 11, "INCR")
        eq(r.incrby(n, 5), 16, "INCRBY")
        eq(r.decr(n), 15, "DECR")
        eq(r.incrbyfloat(n, 0.5), 15.5, "INCRBYFLOAT")
        eq(r.append(k, "x"), 3, "APPEND")
        eq(r.strlen(k), 3, "STRLEN")
        eq(r.exists(k, n, self.ns + "missing"), 2, "EXISTS")
        eq(r.type(k), "string", "TYPE")

    def hashes(self):
        r = self.client()
        h = self.key("hash")
        eq(r.hset(h, mapping={"a": "1", "b": "2", "c": "3"}), 3, "HSET mapping")
        eq(r.hset(h, "a", "one"), 0, "HSET existing field")
        eq(r.hgetall(h), {"a": "one", "b": "2", "c": "3"}, "HGETALL")
        eq(r.hget(h, "b"), "2", "HGET")
        eq(r.hmget(h, ["a", "zz", "c"]), ["one", None, "3"], "HMGET")
        eq(r.hincrby(h, "b", 40), 42, "HINCRBY")
        eq(r.hlen(h), 3, "HLEN")
        eq(sorted(r.hkeys(h)), ["a", "b", "c"], "HKEYS")
        eq(r.hdel(h, "c", "zz"), 1, "HDEL")
        eq(r.hexists(h, "c"), False, "HEXISTS")
        eq(r.hgetall(self.ns + "missing"), {}, "HGETALL of a missing key")

    def expiry(self):
        r = self.client()
        k = self.key("ttl")
        eq(r.set(k, "v"), True, "SET")
        eq(r.ttl(k), -1, "TTL without expiry")
        eq(r.expire(k, 100), True, "EXPIRE")
        ttl = r.ttl(k)
        assert 95 <= ttl <= 100, f"TTL after EXPIRE 100: got {ttl!r}"
        pttl = r.pttl(k)
        assert 95_000 <= pttl <= 100_000, f"PTTL after EXPIRE 100: got {pttl!r}"
        eq(r.persist(k), True, "PERSIST")
        eq(r.ttl(k), -1, "TTL after PERSIST")
        eq(r.set(k, "v", px=150), True, "SET PX")
        eq(r.ttl(self.ns + "missing"), -2, "TTL of a missing key")
        time.sleep(0.3)
        eq(r.get(k), None, "GET after the key expired")
        eq(r.expire(self.ns + "missing", 10), False, "EXPIRE of a missing key")

    def pipeline(self):
        r = self.client()
        count = 300
        keys = [self.key(f"p:{i}") for i in range(count)]
        p = r.pipeline(transaction=False)
        for i, k in enumerate(keys):
            p.set(k, str(i))
        for k in keys:
            p.get(k)
        for k in keys:
            p.incr(k)
        results = p.execute()
        eq(results[:count], [True] * count, "pipelined SETs")
        eq(results[count : 2 * count], [str(i) for i in range(count)], "pipelined GETs")
        eq(results[2 * count :], [i + 1 for i in range(count)], "pipelined INCRs")
        # An error in the middle of a pipeline stays at its position.
        s, lst = self.key("p:str"), self.key("p:list")
        p = r.pipeline(transaction=False)
        p.set(s, "not a number")
        p.incr(s)
        p.rpush(lst, "a", "b", "c")
        p.lpush(s, "x")
        p.lrange(lst, 0, -1)
        p.get(keys[7])
        results = p.execute(raise_on_error=False)
        eq(len(results), 6, "replies to a 6-command pipeline")
        eq(results[0], True, "SET in the pipeline")
        assert isinstance(results[1], ResponseError), f"INCR of a string: got {results[1]!r}, want an error"
        assert "not an integer" in str(results[1]), f"INCR of a string: got {results[1]!r}"
        eq(results[2], 3, "RPUSH in the pipeline")
        assert isinstance(results[3], ResponseError) and str(results[3]).startswith("WRONGTYPE"), (
            f"LPUSH on a string: got {results[3]!r}, want WRONGTYPE"
        )
        eq(results[4], ["a", "b", "c"], "LRANGE in the pipeline")
        eq(results[5], "8", "GET after the errors")
        eq(r.delete(*keys), count, "DEL of the pipeline's keys")

    def transaction(self):
        r, other = self.client(), self.client()
        k, lst, c = self.key("tx"), self.key("tx:list"), self.key("tx:counter")
        p = r.pipeline(transaction=True)
        p.set(k, "a").incr(c).incr(c).get(k).rpush(lst, "x", "y").lrange(lst, 0, -1)
        eq(p.execute(), [True, 1, 2, "a", 2, ["x", "y"]], "MULTI/EXEC")
        # An error inside EXEC is in its place; the rest is applied.
        p = r.pipeline(transaction=True)
        p.incr(k).set(k, "b").get(k)
        results = p.execute(raise_on_error=False)
        assert isinstance(results[0], ResponseError), f"INCR of a string in EXEC: got {results[0]!r}"
        eq(results[1:], [True, "b"], "EXEC after an error")
        # WATCH, no conflict: applied.
        with r.pipeline() as p:
            p.watch(c)
            current = int(p.get(c))
            p.multi()
            p.set(c, current * 10)
            eq(p.execute(), [True], "EXEC after an undisturbed WATCH")
        eq(r.get(c), "20", "value written by the watched transaction")
        # WATCH with a conflicting write from another connection: aborted.
        with r.pipeline() as p:
            p.watch(c)
            eq(p.get(c), "20", "GET of the watched key")
            eq(other.set(c, "conflict"), True, "conflicting SET on another connection")
            p.multi()
            p.set(c, "mine")
            try:
                p.execute()
                raise AssertionError("EXEC succeeded after the watched key changed")
            except WatchError:
                pass
        eq(r.get(c), "conflict", "value after the aborted transaction")
        # The transaction() helper retries after a conflict.
        eq(r.set(c, "0"), True, "SET")
        attempts = []

        def bump(pipe):
            value = int(pipe.get(c))
            if not attempts:
                other.set(c, "5")
            attempts.append(value)
            pipe.multi()
            pipe.set(c, value + 1)

        eq(r.transaction(bump, c), [True], "transaction() helper")
        eq(attempts, [0, 5], "values the transaction() helper saw (one retry)")
        eq(r.get(c), "6", "value after the retried transaction")

    def pubsub(self):
        r = self.client()
        sub = self.client().pubsub()
        ch, pattern = self.ns + "news", self.ns + "ne*"

        def next_message(what):
            deadline = time.time() + TIMEOUT
            while time.time() < deadline:
                message = sub.get_message(timeout=0.5)
                if message is not None:
                    return message
            raise AssertionError(f"no {what} within {TIMEOUT}s")

        sub.subscribe(ch)
        eq(next_message("subscribe confirmation"), {"type": "subscribe", "pattern": None, "channel": ch, "data": 1}, "subscribe")
        sub.psubscribe(pattern)
        eq(
            next_message("psubscribe confirmation"),
            {"type": "psubscribe", "pattern": None, "channel": pattern, "data": 2},
            "psubscribe",
        )
        eq(r.pubsub_numsub(ch), [(ch, 1)], "PUBSUB NUMSUB")
        eq(r.pubsub_channels(self.ns + "*"), [ch], "PUBSUB CHANNELS")
        eq(r.publish(ch, "hello"), 2, "PUBLISH to a channel and a pattern subscriber")
        eq(next_message("message"), {"type": "message", "pattern": None, "channel": ch, "data": "hello"}, "message")
        eq(next_message("pmessage"), {"type": "pmessage", "pattern": pattern, "channel": ch, "data": "hello"}, "pmessage")
        eq(r.publish(self.ns + "nothing", "x"), 0, "PUBLISH with no subscriber")
        eq(r.publish(self.ns + "new", "p-only"), 1, "PUBLISH matching only the pattern")
        eq(
            next_message("pmessage"),
            {"type": "pmessage", "pattern": pattern, "channel": self.ns + "new", "data": "p-only"},
            "pmessage of the pattern only",
        )
        sub.unsubscribe(ch)
        eq(next_message("unsubscribe"), {"type": "unsubscribe", "pattern": None, "channel": ch, "data": 1}, "unsubscribe")
        sub.punsubscribe(pattern)
        eq(
            next_message("punsubscribe"),
            {"type": "punsubscribe", "pattern": None, "channel": pattern, "data": 0},
            "punsubscribe",
        )
        eq(r.publish(ch, "late"), 0, "PUBLISH after unsubscribing")
        # A handler thread, as applications run it.
        got = []
        sub.subscribe(**{ch: lambda m: got.append(m["data"])})
        next_message("subscribe confirmation")
        worker = sub.run_in_thread(sleep_time=0.05, daemon=True)
        try:
            eq(r.publish(ch, "to the thread"), 1, "PUBLISH to the thread's subscription")
            deadline = time.time() + TIMEOUT
            while not got and time.time() < deadline:
                time.sleep(0.02)
            eq(got, ["to the thread"], "messages the handler thread got")
        finally:
            worker.stop()
            worker.join(TIMEOUT)
        sub.close()

    def blocking(self):
        r, blocked = self.client(), self.client()
        eq(blocked.ping(), True, "PING (connecting before blocking)")
        q = self.key("queue")
        result = {}

        def pop():
            start = time.time()
            result["reply"] = blocked.blpop([self.ns + "other-queue", q], timeout=5)
            result["waited"] = time.time() - start

        thread = threading.Thread(target=pop)
        thread.start()
        time.sleep(0.3)
        eq(r.rpush(q, "job"), 1, "RPUSH to the blocked client's list")
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "BLPOP still blocked after the push"
        eq(list(result["reply"]), [q, "job"], "BLPOP served by a push from another client")
        assert result["waited"] >= 0.25, f"BLPOP returned after {result['waited']:.3f}s, before the push"
        start = time.time()
        eq(blocked.blpop([q], timeout=0.2), None, "BLPOP timing out")
        assert time.time() - start >= 0.15, "BLPOP with timeout 0.2 returned at once"
        eq(r.rpush(q, "a", "b"), 2, "RPUSH")
        eq(blocked.brpoplpush(q, q + "2", timeout=1), "b", "BRPOPLPUSH")
        self.written.add(q + "2")
        eq(blocked.blmove(q + "2", q, 1, "LEFT", "RIGHT"), "b", "BLMOVE")
        eq(r.lrange(q, 0, -1), ["a", "b"], "list after the moves")
        eq(r.zadd(self.key("zq"), {"m": 3}), 1, "ZADD")
        eq(list(blocked.bzpopmin(self.ns + "zq", timeout=1)), [self.ns + "zq", "m", 3.0], "BZPOPMIN")

    def scan(self):
        r = self.client()
        wanted = {self.key(f"scan:{i}") for i in range(40)}
        others = {self.key(f"noscan:{i}") for i in range(10)}
        p = r.pipeline(transaction=False)
        for k in sorted(wanted | others):
            p.set(k, "x")
        p.execute()
        eq(set(r.scan_iter(match=self.ns + "scan:*", count=7)), wanted, "SCAN MATCH (scan_iter)")
        seen = list(r.scan_iter(match=self.ns + "*scan:*", count=1000))
        eq(len(seen), len(set(seen)), "SCAN with a large COUNT returning no key twice")
        eq(set(seen), wanted | others, "SCAN MATCH of both sets")
        eq(set(r.scan_iter(match=self.ns + "scan:1?", _type="string")), {self.ns + f"scan:{i}" for i in range(10, 20)}, "SCAN MATCH TYPE")
        eq(sorted(r.keys(self.ns + "scan:3*")), sorted([self.ns + "scan:3"] + [self.ns + f"scan:{i}" for i in range(30, 40)]), "KEYS")
        h, s, z = self.key("scan-hash"), self.key("scan-set"), self.key("scan-zset")
        r.hset(h, mapping={f"f{i}": str(i) for i in range(50)})
        eq(dict(r.hscan_iter(h, match="f1*", count=5)), {f"f{i}": str(i) for i in [1] + list(range(10, 20))}, "HSCAN")
        r.sadd(s, *[f"m{i}" for i in range(50)])
        eq(set(r.sscan_iter(s, match="m2?")), {f"m{i}" for i in range(20, 30)}, "SSCAN")
        r.zadd(z, {f"z{i}": i for i in range(30)})
        eq(sorted(r.zscan_iter(z, match="z2*"), key=lambda t: t[1]), [("z2", 2.0)] + [(f"z{i}", float(i)) for i in range(20, 30)], "ZSCAN")

    def delete(self):
        r = self.client()
        keys = sorted(self.written)
        existing = sum(1 for k in keys if r.exists(k))
        eq(r.delete(*keys), existing, "DEL of every key written")
        eq(r.exists(*keys), 0, "EXISTS after DEL")
        eq(r.delete(self.ns + "missing"), 0, "DEL of a missing key")
        eq(list(r.scan_iter(match=self.ns + "*")), [], "SCAN of the namespace after DEL")
        eq(r.set(self.ns + "left", "1"), True, "SET of the key left for the test")

    def all(self):
        return [
            ("connect/AUTH", self.connect_auth),
            ("strings/INCR", self.strings),
            ("hashes", self.hashes),
            ("EXPIRE/TTL", self.expiry),
            ("pipeline", self.pipeline),
            ("MULTI/EXEC/WATCH", self.transaction),
            ("pub/sub", self.pubsub),
            ("blocking", self.blocking),
            ("SCAN", self.scan),
            ("DEL", self.delete),
        ]


def main():
    if len(sys.argv) not in (4, 6):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, ns = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    user, password = (sys.argv[4], sys.argv[5]) if len(sys.argv) == 6 else (None, None)
    failed = 0
    for protocol in (2, 3):
        run = Run(host, port, ns, user, password, protocol)
        for name, scenario in run.all():
            label = f"redis-py {redis.__version__} RESP{protocol} {name}"
            try:
                scenario()
                print(f"ok   {label}")
            except Exception:
                failed += 1
                print(f"FAIL {label}:\n{traceback.format_exc()}")
    print(f"redis-py {redis.__version__}: {failed} scenario(s) failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
