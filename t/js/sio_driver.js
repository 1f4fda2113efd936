#!/usr/bin/env node
// sio_driver.js: the real npm socket.io-client, driven by the tests over
// stdin/stdout (t/sioclient.py is the Python side).
//
// stdin:  one JSON command per line, {"seq": N, "op": "...", ...}
// stdout: exactly one JSON answer per command, {"re": N, "ok": true, ...}
//         or {"re": N, "ok": false, "error": "..."}; nothing else is ever
//         written to stdout. Diagnostics go to stderr.
//
// Each client socket has a name chosen by the caller. Everything a socket
// receives is recorded, in order, in a per-socket list of [event, args]:
// server events (onAny), and the reserved ones
//   "disconnect"        [reason]
//   "connect_error"     [message]
//   "$connect"          [id, recovered]   a connect after the first one
//                                          (i.e. after a reconnection)
//   "$upgrade"          [transport name]  the engine upgraded
//   "$reconnect"        [attempt]         manager events, recorded when
//   "$reconnect_attempt"[attempt]         reconnection is on
//   "$reconnect_error"  [message]
//   "$reconnect_failed" []
// "wait" consumes matching events from that list; "events" drains it.
//
// Commands (besides seq and op):
//   connect    name, url, opts (socket.io-client options; defaults
//              forceNew: true, reconnection: false), timeout (ms, 10000)
//              -> {id, transport} | ok:false, error: connect_error message,
//                 data: err.data
//   emit       name, args, ack (bool, default false), timeout (ms, 5000),
//              volatile (bool) -> {} | {ack: [args]} | ok:false "timeout"
//   wait       name, event, count (1), timeout (ms, 5000)
//              -> {events: [[arg, ...], ...]} | ok:false "timeout ..."
//              (with "events": what had arrived; nothing is consumed then)
//   events     name, peek (bool) -> {events: [[event, [arg, ...]], ...]}
//   state      name -> {connected, id, transport, recovered, sid}
//   disconnect name -> {}
//   drop       name [url] -> {}  (closes the transport; the socket
//              reconnects, to url if given)
//   close_all  -> {}
//   ping       -> {pid, node, client: socket.io-client version}
//   exit       -> {} and the process exits
// Binary: {"$bin": "<base64>"} in args becomes a Buffer; every Buffer /
// ArrayBuffer / typed array received becomes {"$bin": "<base64>"}.

"use strict";

const readline = require("readline");
const { io } = require("socket.io-client");

const CONNECT_TIMEOUT = 10000;
const DEFAULT_TIMEOUT = 5000;

const sockets = new Map();      // name -> entry

function log(...args) {
    process.stderr.write("[sio_driver] " + args.join(" ") + "\n");
}

function answer(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

// ---------------------------------------------------------------- binary

function isBin(v) {
    return Buffer.isBuffer(v) || v instanceof ArrayBuffer ||
        ArrayBuffer.isView(v);
}

function toBuffer(v) {
    if (Buffer.isBuffer(v)) return v;
    if (v instanceof ArrayBuffer) return Buffer.from(v);
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
}

// a received value -> JSON-safe value
function encode(v) {
    if (v === undefined) return null;
    if (v === null || typeof v !== "object") return v;
    if (isBin(v)) return { $bin: toBuffer(v).toString("base64") };
    if (Array.isArray(v)) return v.map(encode);
    if (v instanceof Error) {
        const o = { message: v.message };
        if (v.data !== undefined) o.data = encode(v.data);
        return o;
    }
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = encode(x);
    return o;
}

// a JSON value from a command -> value to emit
function decode(v) {
    if (v === null || typeof v !== "object") return v;
    if (Array.isArray(v)) return v.map(decode);
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === "$bin" && typeof v.$bin === "string")
        return Buffer.from(v.$bin, "base64");
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = decode(x);
    return o;
}

// ---------------------------------------------------------------- sockets

function record(entry, event, args) {
    entry.events.push([event, args.map(encode)]);
    checkWaiters(entry);
}

function checkWaiters(entry) {
    for (let i = 0; i < entry.waiters.length; ) {
        const w = entry.waiters[i];
        const idx = [];
        for (let j = 0; j < entry.events.length && idx.length < w.count; j++)
            if (entry.events[j][0] === w.event) idx.push(j);
        if (idx.length < w.count) {
            i++;
            continue;
        }
        const got = idx.map((j) => entry.events[j][1]);
        for (let k = idx.length - 1; k >= 0; k--) entry.events.splice(idx[k], 1);
        entry.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.resolve(got);
    }
}

function failWaiters(entry, why) {
    for (const w of entry.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(why));
    }
}

function hookEngine(entry, engine) {
    if (!engine || entry.engines.has(engine)) return;
    entry.engines.add(engine);
    engine.on("upgrade", (t) => record(entry, "$upgrade", [t && t.name]));
}

function closeEntry(name) {
    const entry = sockets.get(name);
    if (!entry) return;
    sockets.delete(name);
    failWaiters(entry, "socket " + name + " closed");
    try {
        entry.socket.disconnect();
        entry.socket.io.engine && entry.socket.io.engine.close();
    } catch (e) {
        log("close", name, e && e.message);
    }
}

function getEntry(cmd) {
    const entry = sockets.get(cmd.name);
    if (!entry) throw new Error("no such socket: " + cmd.name);
    return entry;
}

function transportName(socket) {
    const e = socket.io && socket.io.engine;
    return e && e.transport ? e.transport.name : null;
}

function opConnect(cmd) {
    if (typeof cmd.name !== "string" || typeof cmd.url !== "string")
        throw new Error("connect needs name and url");
    closeEntry(cmd.name);
    const opts = Object.assign({ forceNew: true, reconnection: false },
                               cmd.opts || {});
    const socket = io(cmd.url, opts);
    const entry = { socket, events: [], waiters: [], engines: new Set(),
                    connects: 0 };
    sockets.set(cmd.name, entry);

    socket.onAny((event, ...args) => record(entry, event, args));
    socket.on("disconnect", (reason) => record(entry, "disconnect", [reason]));
    socket.on("connect_error", (err) =>
        record(entry, "connect_error", [err && err.message]));
    socket.on("connect", () => {
        if (entry.connects++ > 0)
            record(entry, "$connect", [socket.id, !!socket.recovered]);
    });

    const mgr = socket.io;
    hookEngine(entry, mgr.engine);
    mgr.on("open", () => hookEngine(entry, mgr.engine));
    if (opts.reconnection) {
        mgr.on("reconnect", (n) => record(entry, "$reconnect", [n]));
        mgr.on("reconnect_attempt", (n) =>
            record(entry, "$reconnect_attempt", [n]));
        mgr.on("reconnect_error", (err) =>
            record(entry, "$reconnect_error", [err && err.message]));
        mgr.on("reconnect_failed", () => record(entry, "$reconnect_failed", []));
    }

    const ms = cmd.timeout || CONNECT_TIMEOUT;
    return new Promise((resolve) => {
        let done = false;
        const finish = (res) => {
            if (done) return;
            done = true;
            clearTimeout(timer);
            socket.off("connect", onConnect);
            socket.off("connect_error", onError);
            resolve(res);
        };
        const onConnect = () => finish({ ok: true, id: socket.id,
                                         transport: transportName(socket) });
        const onError = (err) => {
            const res = { ok: false, error: String(err && err.message) };
            if (err && err.data !== undefined) res.data = encode(err.data);
            if (err && err.description !== undefined)
                res.description = encode(
                    typeof err.description === "object" &&
                    err.description !== null
                        ? String(err.description.message || err.description)
                        : err.description);
            finish(res);
        };
        const timer = setTimeout(() => {
            finish({ ok: false, error: "connect timeout after " + ms + " ms" });
            const cur = sockets.get(cmd.name);
            if (cur && cur.socket === socket && !socket.connected)
                closeEntry(cmd.name);
        }, ms);
        socket.on("connect", onConnect);
        socket.on("connect_error", onError);
    });
}

function opEmit(cmd) {
    const entry = getEntry(cmd);
    const args = decode(cmd.args || []);
    if (!Array.isArray(args) || args.length < 1)
        throw new Error("emit needs args [event, ...]");
    let s = entry.socket;
    if (cmd.volatile) s = s.volatile;
    if (!cmd.ack) {
        s.emit(...args);
        return { ok: true };
    }
    const ms = cmd.timeout || DEFAULT_TIMEOUT;
    return new Promise((resolve) => {
        s.timeout(ms).emit(...args, (err, ...resp) => {
            if (err) resolve({ ok: false, error: "timeout" });
            else resolve({ ok: true, ack: resp.map(encode) });
        });
    });
}

function opWait(cmd) {
    const entry = getEntry(cmd);
    if (typeof cmd.event !== "string") throw new Error("wait needs event");
    const ms = cmd.timeout || DEFAULT_TIMEOUT;
    const count = cmd.count || 1;
    return new Promise((resolve) => {
        const w = { event: cmd.event, count,
                    resolve: (got) => resolve({ ok: true, events: got }),
                    reject: (err) => resolve({ ok: false,
                                               error: err.message }) };
        w.timer = setTimeout(() => {
            const i = entry.waiters.indexOf(w);
            if (i >= 0) entry.waiters.splice(i, 1);
            const got = entry.events.filter((e) => e[0] === cmd.event)
                .map((e) => e[1]);
            resolve({ ok: false, events: got,
                      error: "timeout waiting for " + JSON.stringify(cmd.event) +
                             " (got " + got.length + " of " + count + " in " +
                             ms + " ms)" });
        }, ms);
        entry.waiters.push(w);
        checkWaiters(entry);
    });
}

function opEvents(cmd) {
    const entry = getEntry(cmd);
    const evs = cmd.peek ? entry.events.slice() : entry.events.splice(0);
    return { ok: true, events: evs };
}

function opState(cmd) {
    const entry = getEntry(cmd);
    const s = entry.socket;
    const engine = s.io && s.io.engine;
    return { ok: true, connected: s.connected, id: s.id === undefined
             ? null : s.id, transport: transportName(s),
             recovered: !!s.recovered, pid: s._pid || null,
             sid: engine && engine.id ? engine.id : null };
}

const ops = {
    ping: () => ({ ok: true, pid: process.pid, node: process.version,
                   client: require("socket.io-client/package.json").version }),
    connect: opConnect,
    emit: opEmit,
    wait: opWait,
    events: opEvents,
    state: opState,
    disconnect: (cmd) => {
        const entry = getEntry(cmd);
        entry.socket.disconnect();
        return { ok: true };
    },
    // the transport goes, not the socket: with reconnection on, the
    // manager comes back (connection state recovery)
    drop: (cmd) => {
        const entry = getEntry(cmd);
        // the manager opens its next transport to uri: another instance
        if (cmd.url) entry.socket.io.uri = cmd.url;
        const e = entry.socket.io && entry.socket.io.engine;
        if (e) e.close();
        return { ok: true };
    },
    close_all: () => {
        for (const name of [...sockets.keys()]) closeEntry(name);
        return { ok: true };
    },
};

function shutdown(code) {
    for (const name of [...sockets.keys()]) closeEntry(name);
    // stdout is a pipe (asynchronous in node): exit once it has drained
    process.stdout.write("", () => process.exit(code));
    setTimeout(() => process.exit(code), 1000).unref();
}

async function handle(line) {
    line = line.trim();
    if (!line) return;
    let cmd;
    try {
        cmd = JSON.parse(line);
    } catch (e) {
        log("bad JSON line:", line.slice(0, 200));
        answer({ re: null, ok: false, error: "bad JSON: " + e.message });
        return;
    }
    const re = cmd.seq === undefined ? null : cmd.seq;
    if (cmd.op === "exit") {
        answer({ re, ok: true });
        shutdown(0);
        return;
    }
    const fn = ops[cmd.op];
    let res;
    try {
        if (!fn) throw new Error("unknown op: " + cmd.op);
        res = await fn(cmd);
    } catch (e) {
        res = { ok: false, error: String(e && e.message || e) };
    }
    answer(Object.assign({ re }, res));
}

process.on("uncaughtException", (e) => log("uncaught:", e && e.stack || e));
process.on("unhandledRejection", (e) => log("unhandled:", e && e.stack || e));

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => { handle(line); });
rl.on("close", () => shutdown(0));
log("ready, pid", process.pid);
