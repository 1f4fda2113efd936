// client_test.mjs: drives clients/js/ngx-realtime.js under Node 20 (with
// npm "ws") against nginx, for t/test_js_client.py.
//
//   node client_test.mjs PORT SECRET
//
// Prints one JSON line of what happened; exits 0 (1 on a failure, with
// {"ok": false, "error"}). Every wait is bounded.

import crypto from "node:crypto";
import { createRequire } from "node:module";
import { RealtimeClient } from "../../clients/js/ngx-realtime.js";

const require = createRequire(import.meta.url);
const WebSocket = require("ws");

const [port, secret] = process.argv.slice(2);
const base = "http://127.0.0.1:" + port;
const out = { ok: false, got: [], recovered: [], refreshed: 0, closes: [],
              reconnects: 0 };

function b64u(s) {
    return Buffer.from(s).toString("base64url");
}

function token(ttl) {
    const head = b64u(JSON.stringify({ alg: "HS256", typ: "JWT" }));
    const body = b64u(JSON.stringify({
        sub: "jsclient", exp: Math.floor(Date.now() / 1000) + ttl }));
    const sig = crypto.createHmac("sha256", secret)
        .update(head + "." + body).digest("base64url");
    return head + "." + body + "." + sig;
}

async function push(n) {
    const r = await fetch(base + "/sendPayload", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ room: "r", event: "m", data: n }) });
    if (r.status !== 200) {
        throw new Error("push " + n + ": " + r.status);
    }
}

function until(pred, ms, what) {
    return new Promise((resolve, reject) => {
        const t0 = Date.now();
        const tick = () => {
            if (pred()) {
                resolve();
            } else if (Date.now() - t0 > ms) {
                reject(new Error("timed out: " + what));
            } else {
                setTimeout(tick, 20);
            }
        };
        tick();
    });
}

async function main() {
    // a token that lives 4 s, refreshed 2 s before its exp
    const rt = new RealtimeClient("ws://127.0.0.1:" + port +
                                  "/ws?user=jsclient", {
        token: () => token(4), WebSocket, refreshBefore: 2,
        backoffMin: 100 });
    rt.on("m", (data, msg) => out.got.push([data, msg.offset]));
    rt.on("recovered", (room, ok) => out.recovered.push([room, ok]));
    rt.on("refreshed", () => out.refreshed++);
    rt.on("close", (code) => out.closes.push(code));
    rt.on("reconnecting", () => out.reconnects++);

    out.welcome = await rt.connect();
    out.joined = await rt.join("r");
    await push(1);
    await until(() => out.got.length === 1, 3000, "message 1");

    // the network goes: what is pushed meanwhile comes back on rejoin
    rt.drop();
    // (it may be back already: a backoff below 100 ms)
    await until(() => out.closes.length === 1, 2000, "the drop");
    await push(2);
    await push(3);
    await until(() => out.got.length === 3, 5000, "messages 2 and 3");
    await until(() => out.recovered.length === 1, 3000, "recovered");

    // acks are promises, errors are rejections with the protocol's code
    out.published = await rt.publish("r", "chat", { text: "hi" });
    try {
        await rt.join("bad room");
        out.bad_join = "resolved";
    } catch (e) {
        out.bad_join = e.code;
    }

    // alive past the first token's exp: it was refreshed
    await new Promise((r) => setTimeout(r, 4500));
    await push(4);
    await until(() => out.got.length === 4, 3000, "message 4");
    out.state = rt.state;
    rt.close();
    out.ok = true;
}

const guard = setTimeout(() => {
    out.error = "the test took too long";
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(1);
}, 30000);

main().then(() => {
    clearTimeout(guard);
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(0);
}, (e) => {
    clearTimeout(guard);
    out.error = String(e && e.stack || e);
    process.stdout.write(JSON.stringify(out) + "\n");
    process.exit(1);
});
