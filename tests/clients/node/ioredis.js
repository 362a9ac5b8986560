// ioredis through nearcache: the scenarios of tests/clients/python/check.py,
// each result asserted exactly; in RESP2, and in RESP3 too from ioredis 6
// (whose default it is).
//
//   node ioredis.js MODULE HOST PORT NAMESPACE [USER PASSWORD]
//
// MODULE is "ioredis" or "ioredis-6" (package.json). Each protocol leaves
// one key, NAMESPACE:resp<N>:left, and deletes all the others it wrote.
"use strict";

const { eq, ok, rejects, sleep, next, sorted, helloProto, runAll, parseArgs } = require("./lib");

const args = parseArgs("usage: node ioredis.js MODULE HOST PORT NAMESPACE [USER PASSWORD]");
const Redis = require(args.module);
const version = require(`${args.module}/package.json`).version;
const protocols = Number(version.split(".")[0]) >= 6 ? [2, 3] : [2];

function scenarios(protocol) {
  const ns = `${args.ns}:resp${protocol}:`;
  const written = new Set();
  const key = (name) => {
    written.add(ns + name);
    return ns + name;
  };
  const clients = [];
  const client = (extra = {}) => {
    const options = {
      host: args.host,
      port: args.port,
      username: args.user,
      password: args.password,
      connectionName: "nearcache-check",
      maxRetriesPerRequest: 1,
      ...extra,
    };
    if (protocols.length > 1) options.protocol = protocol;
    const c = new Redis(options);
    c.on("error", () => {}); // every error a test expects is asserted where it happens
    clients.push(c);
    return c;
  };
  const quitAll = async () => {
    for (const c of clients.splice(0)) c.disconnect();
  };

  return [
    [
      "connect/AUTH",
      async () => {
        const r = client();
        eq(await r.ping(), "PONG", "PING");
        eq(await r.client("GETNAME"), "nearcache-check", "CLIENT GETNAME after connectionName");
        eq(await r.echo("hello"), "hello", "ECHO");
        eq(helloProto(await r.call("HELLO")), protocol, "protocol of the connection (HELLO)");
        if (args.user !== undefined) {
          // ioredis reports the refused AUTH as an "error" event and closes.
          const bad = client({ password: args.password + "-wrong", lazyConnect: true, retryStrategy: () => null });
          const errors = [];
          bad.on("error", (e) => errors.push(String(e)));
          await rejects(bad.connect().then(() => bad.get(ns + "x")), "a wrong password");
          ok(
            errors.some((e) => /WRONGPASS invalid username-password pair/.test(e)),
            `a wrong password: got errors ${JSON.stringify(errors)}, want WRONGPASS`,
          );
          const anonymous = client({ username: undefined, password: undefined, retryStrategy: () => null });
          const e2 = await rejects(anonymous.get(ns + "x"), "GET without AUTH");
          ok(/NOAUTH/.test(String(e2)), `GET without AUTH: got ${e2}, want NOAUTH`);
          if (protocol === 2) {
            // AUTH as a command on an open connection (with nothing sent
            // before it that Redis refuses before AUTH: no connectionName,
            // no ready check's INFO; HELLO 3 needs its AUTH).
            const late = client({ username: undefined, password: undefined, connectionName: undefined, enableReadyCheck: false });
            eq(await late.auth(args.user, args.password), "OK", "AUTH user password");
            eq(await late.ping(), "PONG", "PING after AUTH");
          }
        }
      },
    ],
    [
      "strings/INCR",
      async () => {
        const r = client();
        const k = key("str");
        const n = key("counter");
        eq(await r.set(k, "value"), "OK", "SET");
        eq(await r.get(k), "value", "GET");
        eq(await r.get(ns + "missing"), null, "GET of a missing key");
        eq(await r.set(k, "other", "NX"), null, "SET NX on an existing key");
        eq(await r.getset(k, "v2"), "value", "GETSET");
        eq(await r.mset(k, "m1", n, "10"), "OK", "MSET");
        eq(await r.mget(k, n, ns + "missing"), ["m1", "10", null], "MGET");
        eq(await r.incr(n), 11, "INCR");
        eq(await r.incrby(n, 5), 16, "INCRBY");
        eq(await r.decr(n), 15, "DECR");
        eq(await r.incrbyfloat(n, 0.5), "15.5", "INCRBYFLOAT");
        eq(await r.append(k, "x"), 3, "APPEND");
        eq(await r.strlen(k), 3, "STRLEN");
        eq(await r.exists(k, n, ns + "missing"), 2, "EXISTS");
        eq(await r.type(k), "string", "TYPE");
      },
    ],
    [
      "hashes",
      async () => {
        const r = client();
        const h = key("hash");
        eq(await r.hset(h, { a: "1", b: "2", c: "3" }), 3, "HSET object");
        eq(await r.hset(h, "a", "one"), 0, "HSET existing field");
        eq(await r.hgetall(h), { a: "one", b: "2", c: "3" }, "HGETALL");
        eq(await r.hget(h, "b"), "2", "HGET");
        eq(await r.hmget(h, "a", "zz", "c"), ["one", null, "3"], "HMGET");
        eq(await r.hincrby(h, "b", 40), 42, "HINCRBY");
        eq(await r.hlen(h), 3, "HLEN");
        eq(sorted(await r.hkeys(h)), ["a", "b", "c"], "HKEYS");
        eq(await r.hdel(h, "c", "zz"), 1, "HDEL");
        eq(await r.hexists(h, "c"), 0, "HEXISTS");
        eq(await r.hgetall(ns + "missing"), {}, "HGETALL of a missing key");
      },
    ],
    [
      "EXPIRE/TTL",
      async () => {
        const r = client();
        const k = key("ttl");
        eq(await r.set(k, "v"), "OK", "SET");
        eq(await r.ttl(k), -1, "TTL without expiry");
        eq(await r.expire(k, 100), 1, "EXPIRE");
        const ttl = await r.ttl(k);
        ok(ttl >= 95 && ttl <= 100, `TTL after EXPIRE 100: got ${ttl}`);
        const pttl = await r.pttl(k);
        ok(pttl >= 95000 && pttl <= 100000, `PTTL after EXPIRE 100: got ${pttl}`);
        eq(await r.persist(k), 1, "PERSIST");
        eq(await r.ttl(k), -1, "TTL after PERSIST");
        eq(await r.set(k, "v", "PX", 150), "OK", "SET PX");
        eq(await r.ttl(ns + "missing"), -2, "TTL of a missing key");
        await sleep(300);
        eq(await r.get(k), null, "GET after the key expired");
        eq(await r.expire(ns + "missing", 10), 0, "EXPIRE of a missing key");
      },
    ],
    [
      "pipeline",
      async () => {
        const r = client();
        const count = 300;
        const keys = Array.from({ length: count }, (_, i) => key(`p:${i}`));
        const p = r.pipeline();
        keys.forEach((k, i) => p.set(k, String(i)));
        keys.forEach((k) => p.get(k));
        keys.forEach((k) => p.incr(k));
        const results = await p.exec();
        eq(
          results.map(([e]) => e),
          Array(3 * count).fill(null),
          "errors in the pipeline",
        );
        const values = results.map(([, v]) => v);
        eq(values.slice(0, count), Array(count).fill("OK"), "pipelined SETs");
        eq(values.slice(count, 2 * count), keys.map((_, i) => String(i)), "pipelined GETs");
        eq(values.slice(2 * count), keys.map((_, i) => i + 1), "pipelined INCRs");
        // An error in the middle of a pipeline stays at its position.
        const s = key("p:str");
        const lst = key("p:list");
        const mixed = await r
          .pipeline()
          .set(s, "not a number")
          .incr(s)
          .rpush(lst, "a", "b", "c")
          .lpush(s, "x")
          .lrange(lst, 0, -1)
          .get(keys[7])
          .exec();
        eq(mixed.length, 6, "replies to a 6-command pipeline");
        eq(mixed[0], [null, "OK"], "SET in the pipeline");
        ok(/not an integer/.test(String(mixed[1][0])), `INCR of a string: got ${mixed[1]}`);
        eq(mixed[2], [null, 3], "RPUSH in the pipeline");
        ok(/^ReplyError: WRONGTYPE/.test(String(mixed[3][0])), `LPUSH on a string: got ${mixed[3]}`);
        eq(mixed[4], [null, ["a", "b", "c"]], "LRANGE in the pipeline");
        eq(mixed[5], [null, "8"], "GET after the errors");
        // Concurrent commands on one connection (ioredis pipelines them).
        const many = await Promise.all(keys.map((k) => r.get(k)));
        eq(many, keys.map((_, i) => String(i + 1)), "300 concurrent GETs");
        eq(await r.del(...keys), count, "DEL of the pipeline's keys");
      },
    ],
    [
      "MULTI/EXEC/WATCH",
      async () => {
        const r = client();
        const other = client();
        const k = key("tx");
        const lst = key("tx:list");
        const c = key("tx:counter");
        const results = await r.multi().set(k, "a").incr(c).incr(c).get(k).rpush(lst, "x", "y").lrange(lst, 0, -1).exec();
        eq(results, [[null, "OK"], [null, 1], [null, 2], [null, "a"], [null, 2], [null, ["x", "y"]]], "MULTI/EXEC");
        // An error inside EXEC is in its place; the rest is applied.
        const withError = await r.multi().incr(k).set(k, "b").get(k).exec();
        ok(/not an integer/.test(String(withError[0][0])), `INCR of a string in EXEC: got ${withError[0]}`);
        eq(withError.slice(1), [[null, "OK"], [null, "b"]], "EXEC after an error");
        // A command refused while queueing: EXECABORT.
        const aborted = await rejects(r.multi().set(k, "c").incr().exec(), "EXEC after a refused command");
        ok(/EXECABORT/.test(String(aborted)), `EXEC after a refused command: got ${aborted}`);
        eq(await r.get(k), "b", "value after EXECABORT");
        // WATCH, no conflict: applied.
        const w = client();
        eq(await w.watch(c), "OK", "WATCH");
        const current = Number(await w.get(c));
        eq(await w.multi().set(c, String(current * 10)).exec(), [[null, "OK"]], "EXEC after an undisturbed WATCH");
        eq(await r.get(c), "20", "value written by the watched transaction");
        // WATCH with a conflicting write from another connection: aborted.
        eq(await w.watch(c), "OK", "WATCH");
        eq(await w.get(c), "20", "GET of the watched key");
        eq(await other.set(c, "conflict"), "OK", "conflicting SET on another connection");
        eq(await w.multi().set(c, "mine").exec(), null, "EXEC after the watched key changed");
        eq(await r.get(c), "conflict", "value after the aborted transaction");
        eq(await w.unwatch(), "OK", "UNWATCH");
      },
    ],
    [
      "pub/sub",
      async () => {
        const r = client();
        const sub = client();
        const ch = ns + "news";
        const pattern = ns + "ne*";
        const messages = [];
        sub.on("message", (channel, message) => messages.push(["message", channel, message]));
        sub.on("pmessage", (pat, channel, message) => messages.push(["pmessage", pat, channel, message]));
        eq(await sub.subscribe(ch), 1, "SUBSCRIBE");
        eq(await sub.psubscribe(pattern), 2, "PSUBSCRIBE");
        eq(await r.pubsub("NUMSUB", ch), [ch, 1], "PUBSUB NUMSUB");
        eq(await r.pubsub("CHANNELS", ns + "*"), [ch], "PUBSUB CHANNELS");
        eq(await r.publish(ch, "hello"), 2, "PUBLISH to a channel and a pattern subscriber");
        const two = [await next(messages, "message"), await next(messages, "pmessage")];
        eq(
          two.sort(),
          [["message", ch, "hello"], ["pmessage", pattern, ch, "hello"]].sort(),
          "message and pmessage",
        );
        eq(await r.publish(ns + "nothing", "x"), 0, "PUBLISH with no subscriber");
        eq(await r.publish(ns + "new", "p-only"), 1, "PUBLISH matching only the pattern");
        eq(await next(messages, "pmessage"), ["pmessage", pattern, ns + "new", "p-only"], "pmessage of the pattern only");
        eq(await sub.unsubscribe(ch), 1, "UNSUBSCRIBE");
        eq(await sub.punsubscribe(pattern), 0, "PUNSUBSCRIBE");
        eq(await r.publish(ch, "late"), 0, "PUBLISH after unsubscribing");
        // Back to commands on the same connection.
        eq(await sub.ping(), "PONG", "PING after leaving subscriber mode");
        await sleep(50);
        eq(messages, [], "messages after unsubscribing");
      },
    ],
    [
      "blocking",
      async () => {
        const r = client();
        const blocked = client();
        eq(await blocked.ping(), "PONG", "PING (connecting before blocking)");
        const q = key("queue");
        const start = Date.now();
        const pop = blocked.blpop(ns + "other-queue", q, 5);
        await sleep(300);
        eq(await r.rpush(q, "job"), 1, "RPUSH to the blocked client's list");
        eq(await pop, [q, "job"], "BLPOP served by a push from another client");
        ok(Date.now() - start >= 250, `BLPOP returned after ${Date.now() - start} ms, before the push`);
        const t = Date.now();
        eq(await blocked.blpop(q, 0.2), null, "BLPOP timing out");
        ok(Date.now() - t >= 150, "BLPOP with timeout 0.2 returned at once");
        eq(await r.rpush(q, "a", "b"), 2, "RPUSH");
        written.add(q + "2");
        eq(await blocked.brpoplpush(q, q + "2", 1), "b", "BRPOPLPUSH");
        eq(await blocked.blmove(q + "2", q, "LEFT", "RIGHT", 1), "b", "BLMOVE");
        eq(await r.lrange(q, 0, -1), ["a", "b"], "list after the moves");
        const z = key("zq");
        eq(await r.zadd(z, 3, "m"), 1, "ZADD");
        eq(await blocked.bzpopmin(z, 1), [z, "m", "3"], "BZPOPMIN");
      },
    ],
    [
      "SCAN",
      async () => {
        const r = client();
        const wanted = Array.from({ length: 40 }, (_, i) => key(`scan:${i}`));
        const others = Array.from({ length: 10 }, (_, i) => key(`noscan:${i}`));
        const p = r.pipeline();
        for (const k of [...wanted, ...others]) p.set(k, "x");
        await p.exec();
        const stream = async (s) => {
          const out = [];
          for await (const batch of s) out.push(...batch);
          return out;
        };
        const seen = await stream(r.scanStream({ match: ns + "scan:*", count: 7 }));
        eq(sorted(new Set(seen)), sorted(wanted), "SCAN MATCH (scanStream)");
        // A manual cursor loop, as many applications write it.
        let cursor = "0";
        const manual = [];
        do {
          const [next, keys] = await r.scan(cursor, "MATCH", ns + "*scan:*", "COUNT", 1000);
          cursor = next;
          manual.push(...keys);
        } while (cursor !== "0");
        eq(sorted(manual), sorted([...wanted, ...others]), "SCAN cursor loop");
        const typed = await stream(r.scanStream({ match: ns + "scan:1?", type: "string" }));
        eq(sorted(typed), sorted(wanted.slice(10, 20)), "SCAN MATCH TYPE");
        eq(sorted(await r.keys(ns + "scan:3*")), sorted([ns + "scan:3", ...wanted.slice(30, 40)]), "KEYS");
        const h = key("scan-hash");
        const s = key("scan-set");
        const want = {};
        const fields = {};
        for (let i = 0; i < 50; i++) {
          fields[`f${i}`] = String(i);
          if (String(i).startsWith("1")) want[`f${i}`] = String(i);
        }
        await r.hset(h, fields);
        const flat = await stream(r.hscanStream(h, { match: "f1*", count: 5 }));
        const got = {};
        for (let i = 0; i < flat.length; i += 2) got[flat[i]] = flat[i + 1];
        eq(got, want, "HSCAN");
        await r.sadd(s, ...Array.from({ length: 50 }, (_, i) => `m${i}`));
        eq(
          sorted(new Set(await stream(r.sscanStream(s, { match: "m2?" })))),
          sorted(Array.from({ length: 10 }, (_, i) => `m${20 + i}`)),
          "SSCAN",
        );
      },
    ],
    [
      "DEL",
      async () => {
        const r = client();
        const keys = sorted(written);
        const existing = await r.exists(...keys);
        eq(await r.del(...keys), existing, "DEL of every key written");
        eq(await r.exists(...keys), 0, "EXISTS after DEL");
        eq(await r.del(ns + "missing"), 0, "DEL of a missing key");
        eq(await r.keys(ns + "*"), [], "KEYS of the namespace after DEL");
        eq(await r.set(ns + "left", "1"), "OK", "SET of the key left for the test");
        await quitAll();
      },
    ],
  ];
}

(async () => {
  let failed = 0;
  for (const protocol of protocols) {
    failed += await runAll(`ioredis ${version} RESP${protocol}`, scenarios(protocol));
  }
  console.log(`ioredis ${version}: ${failed} scenario(s) failed`);
  process.exit(failed ? 1 : 0);
})();
