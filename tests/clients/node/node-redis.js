// node-redis through nearcache: the scenarios of tests/clients/python/check.py,
// each result asserted exactly; in RESP2, and in RESP3 too from node-redis 5
// (v4 speaks RESP2 only).
//
//   node node-redis.js MODULE HOST PORT NAMESPACE [USER PASSWORD]
//
// MODULE is "redis" (v4) or "redis-6" (package.json). Each protocol leaves
// one key, NAMESPACE:resp<N>:left, and deletes all the others it wrote.
"use strict";

const { eq, ok, rejects, sleep, next, sorted, helloProto, runAll, parseArgs } = require("./lib");

const args = parseArgs("usage: node node-redis.js MODULE HOST PORT NAMESPACE [USER PASSWORD]");
const redis = require(args.module);
const version = require(`${args.module}/package.json`).version;
const major = Number(version.split(".")[0]);
const protocols = major >= 5 ? [2, 3] : [2];

// The elements of a SCAN-family iterator: v4 yields them one by one, v5 on
// in batches (arrays).
async function collect(iterator) {
  const out = [];
  for await (const item of iterator) {
    if (Array.isArray(item)) out.push(...item);
    else out.push(item);
  }
  return out;
}

function scenarios(protocol) {
  const ns = `${args.ns}:resp${protocol}:`;
  const written = new Set();
  const key = (name) => {
    written.add(ns + name);
    return ns + name;
  };
  const clients = [];
  const options = (extra = {}) => {
    const o = {
      socket: { host: args.host, port: args.port, reconnectStrategy: false },
      username: args.user,
      password: args.password,
      name: "nearcache-check",
      ...extra,
    };
    if (major >= 5) o.RESP = protocol;
    return o;
  };
  const track = (c) => {
    c.on("error", () => {}); // every error a test expects is asserted where it happens
    clients.push(c);
    return c;
  };
  const client = async (extra) => {
    const c = track(redis.createClient(options(extra)));
    await c.connect();
    return c;
  };
  const quitAll = async () => {
    for (const c of clients.splice(0)) {
      if (c.isOpen) await (c.close ? c.close() : c.quit());
    }
  };

  return [
    [
      "connect/AUTH",
      async () => {
        const r = await client();
        eq(await r.ping(), "PONG", "PING");
        eq(await r.clientGetName(), "nearcache-check", "CLIENT GETNAME after name:");
        eq(await r.echo("hello"), "hello", "ECHO");
        eq(helloProto(await r.sendCommand(["HELLO"])), protocol, "protocol of the connection (HELLO)");
        if (args.user !== undefined) {
          const bad = track(redis.createClient(options({ password: args.password + "-wrong" })));
          const e = await rejects(bad.connect().then(() => bad.get(ns + "x")), "a wrong password");
          ok(/WRONGPASS/.test(String(e)), `a wrong password: got ${e}, want WRONGPASS`);
          if (bad.isOpen) await bad.disconnect().catch(() => {});
          if (protocol === 2) {
            const anonymous = await client({ username: undefined, password: undefined, name: undefined });
            const e2 = await rejects(anonymous.get(ns + "x"), "GET without AUTH");
            ok(/NOAUTH/.test(String(e2)), `GET without AUTH: got ${e2}, want NOAUTH`);
            eq(await anonymous.sendCommand(["AUTH", args.user, args.password]), "OK", "AUTH user password");
            eq(await anonymous.ping(), "PONG", "PING after AUTH");
          } else {
            // HELLO 3 without AUTH is refused before authenticating.
            const anonymous = track(redis.createClient(options({ username: undefined, password: undefined, name: undefined })));
            const e2 = await rejects(anonymous.connect().then(() => anonymous.get(ns + "x")), "HELLO 3 without AUTH");
            ok(/NOAUTH/.test(String(e2)), `HELLO 3 without AUTH: got ${e2}, want NOAUTH`);
            if (anonymous.isOpen) await anonymous.disconnect().catch(() => {});
          }
        }
      },
    ],
    [
      "strings/INCR",
      async () => {
        const r = await client();
        const k = key("str");
        const n = key("counter");
        eq(await r.set(k, "value"), "OK", "SET");
        eq(await r.get(k), "value", "GET");
        eq(await r.get(ns + "missing"), null, "GET of a missing key");
        eq(await r.set(k, "other", { NX: true }), null, "SET NX on an existing key");
        eq(await r.getSet(k, "v2"), "value", "GETSET");
        eq(await r.mSet([k, "m1", n, "10"]), "OK", "MSET");
        eq(await r.mGet([k, n, ns + "missing"]), ["m1", "10", null], "MGET");
        eq(await r.incr(n), 11, "INCR");
        eq(await r.incrBy(n, 5), 16, "INCRBY");
        eq(await r.decr(n), 15, "DECR");
        eq(String(await r.incrByFloat(n, 0.5)), "15.5", "INCRBYFLOAT");
        eq(await r.append(k, "x"), 3, "APPEND");
        eq(await r.strLen(k), 3, "STRLEN");
        eq(await r.exists([k, n, ns + "missing"]), 2, "EXISTS");
        eq(await r.type(k), "string", "TYPE");
      },
    ],
    [
      "hashes",
      async () => {
        const r = await client();
        const h = key("hash");
        eq(await r.hSet(h, { a: "1", b: "2", c: "3" }), 3, "HSET object");
        eq(await r.hSet(h, "a", "one"), 0, "HSET existing field");
        eq(await r.hGetAll(h), { a: "one", b: "2", c: "3" }, "HGETALL");
        eq(await r.hGet(h, "b"), "2", "HGET");
        eq(await r.hmGet(h, ["a", "zz", "c"]), ["one", null, "3"], "HMGET");
        eq(await r.hIncrBy(h, "b", 40), 42, "HINCRBY");
        eq(await r.hLen(h), 3, "HLEN");
        eq(sorted(await r.hKeys(h)), ["a", "b", "c"], "HKEYS");
        eq(await r.hDel(h, ["c", "zz"]), 1, "HDEL");
        eq(Number(await r.hExists(h, "c")), 0, "HEXISTS");
        eq(await r.hGetAll(ns + "missing"), {}, "HGETALL of a missing key");
      },
    ],
    [
      "EXPIRE/TTL",
      async () => {
        const r = await client();
        const k = key("ttl");
        eq(await r.set(k, "v"), "OK", "SET");
        eq(await r.ttl(k), -1, "TTL without expiry");
        eq(Number(await r.expire(k, 100)), 1, "EXPIRE");
        const ttl = await r.ttl(k);
        ok(ttl >= 95 && ttl <= 100, `TTL after EXPIRE 100: got ${ttl}`);
        const pttl = await r.pTTL(k);
        ok(pttl >= 95000 && pttl <= 100000, `PTTL after EXPIRE 100: got ${pttl}`);
        eq(Number(await r.persist(k)), 1, "PERSIST");
        eq(await r.ttl(k), -1, "TTL after PERSIST");
        eq(await r.set(k, "v", { PX: 150 }), "OK", "SET PX");
        eq(await r.ttl(ns + "missing"), -2, "TTL of a missing key");
        await sleep(300);
        eq(await r.get(k), null, "GET after the key expired");
        eq(Number(await r.expire(ns + "missing", 10)), 0, "EXPIRE of a missing key");
      },
    ],
    [
      "pipeline",
      async () => {
        const r = await client();
        const count = 300;
        const keys = Array.from({ length: count }, (_, i) => key(`p:${i}`));
        const p = r.multi();
        keys.forEach((k, i) => p.set(k, String(i)));
        keys.forEach((k) => p.get(k));
        keys.forEach((k) => p.incr(k));
        const results = await p.execAsPipeline();
        eq(results.slice(0, count), Array(count).fill("OK"), "pipelined SETs (execAsPipeline)");
        eq(results.slice(count, 2 * count), keys.map((_, i) => String(i)), "pipelined GETs");
        eq(results.slice(2 * count), keys.map((_, i) => i + 1), "pipelined INCRs");
        // Commands issued in the same tick: node-redis' automatic pipelining.
        const many = await Promise.all(keys.map((k) => r.get(k)));
        eq(many, keys.map((_, i) => String(i + 1)), "300 concurrent GETs");
        // An error in the middle of a pipeline stays at its position.
        const s = key("p:str");
        const lst = key("p:list");
        const mixed = await Promise.allSettled([
          r.set(s, "not a number"),
          r.incr(s),
          r.rPush(lst, ["a", "b", "c"]),
          r.lPush(s, "x"),
          r.lRange(lst, 0, -1),
          r.get(keys[7]),
        ]);
        eq(mixed[0], { status: "fulfilled", value: "OK" }, "SET in the pipeline");
        ok(/not an integer/.test(String(mixed[1].reason)), `INCR of a string: got ${JSON.stringify(mixed[1])}`);
        eq(mixed[2], { status: "fulfilled", value: 3 }, "RPUSH in the pipeline");
        ok(/^\S*Error: WRONGTYPE/.test(String(mixed[3].reason)), `LPUSH on a string: got ${String(mixed[3].reason)}`);
        eq(mixed[4], { status: "fulfilled", value: ["a", "b", "c"] }, "LRANGE in the pipeline");
        eq(mixed[5], { status: "fulfilled", value: "8" }, "GET after the errors");
        eq(await r.del(keys), count, "DEL of the pipeline's keys");
      },
    ],
    [
      "MULTI/EXEC/WATCH",
      async () => {
        const r = await client();
        const other = await client();
        const k = key("tx");
        const lst = key("tx:list");
        const c = key("tx:counter");
        const results = await r.multi().set(k, "a").incr(c).incr(c).get(k).rPush(lst, ["x", "y"]).lRange(lst, 0, -1).exec();
        eq(results, ["OK", 1, 2, "a", 2, ["x", "y"]], "MULTI/EXEC");
        // An error inside EXEC: the rest is applied, the error reported.
        const e = await rejects(r.multi().incr(k).set(k, "b").get(k).exec(), "EXEC with an error inside");
        ok(/not an integer/.test(String(e.replies ? e.replies[0] : e)), `INCR of a string in EXEC: got ${e}`);
        if (e.replies) eq(e.replies.slice(1), ["OK", "b"], "EXEC after an error");
        eq(await r.get(k), "b", "value after the transaction with an error");
        // WATCH on a connection of its own.
        const w = await client();
        eq(await w.watch(c), "OK", "WATCH");
        const current = Number(await w.get(c));
        eq(await w.multi().set(c, String(current * 10)).exec(), ["OK"], "EXEC after an undisturbed WATCH");
        eq(await r.get(c), "20", "value written by the watched transaction");
        // WATCH with a conflicting write from another connection: WatchError.
        eq(await w.watch(c), "OK", "WATCH");
        eq(await w.get(c), "20", "GET of the watched key");
        eq(await other.set(c, "conflict"), "OK", "conflicting SET on another connection");
        const aborted = await rejects(w.multi().set(c, "mine").exec(), "EXEC after the watched key changed");
        ok(aborted instanceof redis.WatchError, `EXEC after the watched key changed: got ${aborted}, want a WatchError`);
        eq(await r.get(c), "conflict", "value after the aborted transaction");
      },
    ],
    [
      "pub/sub",
      async () => {
        const r = await client();
        const sub = await client();
        const ch = ns + "news";
        const pattern = ns + "ne*";
        const messages = [];
        await sub.subscribe(ch, (message, channel) => messages.push(["message", channel, message]));
        await sub.pSubscribe(pattern, (message, channel) => messages.push(["pmessage", pattern, channel, message]));
        eq(await r.pubSubNumSub(ch), { [ch]: 1 }, "PUBSUB NUMSUB");
        eq(await r.pubSubChannels(ns + "*"), [ch], "PUBSUB CHANNELS");
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
        await sub.unsubscribe(ch);
        await sub.pUnsubscribe(pattern);
        eq(await r.publish(ch, "late"), 0, "PUBLISH after unsubscribing");
        eq(await sub.ping(), "PONG", "PING after leaving subscriber mode");
        await sleep(50);
        eq(messages, [], "messages after unsubscribing");
        // A subscription on a fresh connection, while `r` keeps working.
        const sub2 = await client();
        const got = [];
        await sub2.subscribe(ch, (message) => got.push(message));
        eq(await r.publish(ch, "second"), 1, "PUBLISH to the second subscriber");
        eq(await next(got, "message"), "second", "message to the second subscriber");
      },
    ],
    [
      "blocking",
      async () => {
        const r = await client();
        const blocked = await client();
        const q = key("queue");
        const start = Date.now();
        const pop = blocked.blPop([ns + "other-queue", q], 5);
        await sleep(300);
        eq(await r.rPush(q, "job"), 1, "RPUSH to the blocked client's list");
        eq(await pop, { key: q, element: "job" }, "BLPOP served by a push from another client");
        ok(Date.now() - start >= 250, `BLPOP returned after ${Date.now() - start} ms, before the push`);
        const t = Date.now();
        eq(await blocked.blPop(q, 0.2), null, "BLPOP timing out");
        ok(Date.now() - t >= 150, "BLPOP with timeout 0.2 returned at once");
        eq(await r.rPush(q, ["a", "b"]), 2, "RPUSH");
        written.add(q + "2");
        eq(await blocked.brPopLPush(q, q + "2", 1), "b", "BRPOPLPUSH");
        eq(await blocked.blMove(q + "2", q, "LEFT", "RIGHT", 1), "b", "BLMOVE");
        eq(await r.lRange(q, 0, -1), ["a", "b"], "list after the moves");
        const z = key("zq");
        eq(await r.zAdd(z, { score: 3, value: "m" }), 1, "ZADD");
        eq(await blocked.bzPopMin(z, 1), { key: z, value: "m", score: 3 }, "BZPOPMIN");
      },
    ],
    [
      "SCAN",
      async () => {
        const r = await client();
        const wanted = Array.from({ length: 40 }, (_, i) => key(`scan:${i}`));
        const others = Array.from({ length: 10 }, (_, i) => key(`noscan:${i}`));
        await Promise.all([...wanted, ...others].map((k) => r.set(k, "x")));
        const seen = await collect(r.scanIterator({ MATCH: ns + "scan:*", COUNT: 7 }));
        eq(sorted(new Set(seen)), sorted(wanted), "SCAN MATCH (scanIterator)");
        // A manual cursor loop.
        let cursor = "0";
        const manual = [];
        do {
          const reply = await r.scan(major >= 5 ? cursor : Number(cursor), { MATCH: ns + "*scan:*", COUNT: 1000 });
          cursor = String(reply.cursor);
          manual.push(...reply.keys);
        } while (cursor !== "0");
        eq(sorted(manual), sorted([...wanted, ...others]), "SCAN cursor loop");
        const typed = await collect(r.scanIterator({ MATCH: ns + "scan:1?", TYPE: "string" }));
        eq(sorted(typed), sorted(wanted.slice(10, 20)), "SCAN MATCH TYPE");
        eq(sorted(await r.keys(ns + "scan:3*")), sorted([ns + "scan:3", ...wanted.slice(30, 40)]), "KEYS");
        const h = key("scan-hash");
        const s = key("scan-set");
        const fields = {};
        const want = {};
        for (let i = 0; i < 50; i++) {
          fields[`f${i}`] = String(i);
          if (String(i).startsWith("1")) want[`f${i}`] = String(i);
        }
        await r.hSet(h, fields);
        const got = {};
        for (const entry of await collect(r.hScanIterator(h, { MATCH: "f1*", COUNT: 5 }))) {
          got[entry.field] = entry.value;
        }
        eq(got, want, "HSCAN");
        await r.sAdd(s, Array.from({ length: 50 }, (_, i) => `m${i}`));
        eq(
          sorted(new Set(await collect(r.sScanIterator(s, { MATCH: "m2?" })))),
          sorted(Array.from({ length: 10 }, (_, i) => `m${20 + i}`)),
          "SSCAN",
        );
      },
    ],
    [
      "DEL",
      async () => {
        const r = await client();
        const keys = sorted(written);
        const existing = await r.exists(keys);
        eq(await r.del(keys), existing, "DEL of every key written");
        eq(await r.exists(keys), 0, "EXISTS after DEL");
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
    failed += await runAll(`node-redis ${version} RESP${protocol}`, scenarios(protocol));
  }
  console.log(`node-redis ${version}: ${failed} scenario(s) failed`);
  process.exit(failed ? 1 : 0);
})();
