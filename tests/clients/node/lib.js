// What the Node client checks share: exact comparisons and the scenario
// runner. Each check throws an AssertionError naming what differed; the
// runner goes on with the next scenario and the process exits 1 if any
// failed.
"use strict";

const assert = require("node:assert");
const util = require("node:util");

// Plain data for comparing: Maps and null-prototype objects (RESP3 maps,
// node-redis' HGETALL) become plain objects, Buffers strings.
function plain(value) {
  if (value instanceof Map) {
    const out = {};
    for (const [k, v] of value) out[String(k)] = plain(v);
    return out;
  }
  if (Buffer.isBuffer(value)) return value.toString();
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object" && !(value instanceof Error)) {
    const out = {};
    for (const k of Object.keys(value)) out[k] = plain(value[k]);
    return out;
  }
  return value;
}

function eq(got, want, what) {
  const g = plain(got);
  if (!util.isDeepStrictEqual(g, want)) {
    throw new assert.AssertionError({
      message: `${what}: got ${util.inspect(g, { depth: 6 })}, want ${util.inspect(want, { depth: 6 })}`,
    });
  }
}

function ok(condition, what) {
  if (!condition) throw new assert.AssertionError({ message: what });
}

// Awaits `promise`, which must reject; returns the error.
async function rejects(promise, what) {
  try {
    const value = await promise;
    throw new assert.AssertionError({ message: `${what}: resolved with ${util.inspect(value)}, want an error` });
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    return e;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with the next value pushed to `queue` (an array a handler fills).
async function next(queue, what, ms = 10000) {
  const deadline = Date.now() + ms;
  while (queue.length === 0) {
    if (Date.now() > deadline) throw new assert.AssertionError({ message: `no ${what} within ${ms} ms` });
    await sleep(5);
  }
  return queue.shift();
}

// The protocol a connection speaks, from HELLO's reply (a flat array or a map).
function helloProto(reply) {
  const fields = plain(reply);
  if (!Array.isArray(fields)) return fields.proto;
  const i = fields.indexOf("proto");
  return i < 0 ? undefined : fields[i + 1];
}

function sorted(values) {
  return [...values].sort();
}

// Runs `scenarios` ([name, async fn]) one after the other; returns the
// number that failed, each printed with its error.
async function runAll(label, scenarios) {
  let failed = 0;
  for (const [name, scenario] of scenarios) {
    try {
      await withTimeout(scenario(), 30000, name);
      console.log(`ok   ${label} ${name}`);
    } catch (e) {
      failed += 1;
      console.log(`FAIL ${label} ${name}: ${e && e.stack ? e.stack : e}`);
    }
  }
  return failed;
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// HOST PORT NAMESPACE [USER PASSWORD] from the command line, after the
// module name.
function parseArgs(usage) {
  const args = process.argv.slice(2);
  if (args.length !== 4 && args.length !== 6) {
    console.error(usage);
    process.exit(2);
  }
  const [module, host, port, ns, user, password] = args;
  return { module, host, port: Number(port), ns, user, password };
}

module.exports = { eq, ok, rejects, sleep, next, sorted, helloProto, runAll, parseArgs };
