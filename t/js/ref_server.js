#!/usr/bin/env node
// ref_server.js: a reference Socket.IO 4.8 server (npm socket.io), used to
// validate the test harness (t/test_sioclient_harness.py) and as the
// benchmark peer. Not the thing under test.
//
//   node ref_server.js <port>
//
// Listens on 127.0.0.1:<port>, prints "listening <port>" on stdout once
// ready. Namespaces "/" and "/admin", each with the handlers:
//   "join"    room | {room}            ack {room, members}
//   "leave"   room | {room}            ack {room, members}
//   "publish" {room, event, data}      nsp.to(room).emit(event, data), ack {ok}
//   "echo"    ...args                  ack(...args)  (binary included)
// and over HTTP:
//   POST /push {"room", "topic", "payload", "nsp"?: "/"}
//        -> io.of(nsp).to(room).emit(topic, payload); 200 {"ok": true}

"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = parseInt(process.argv[2] || "0", 10);
const host = process.env.REF_HOST || "127.0.0.1";

function log(...args) {
    process.stderr.write("[ref_server] " + args.join(" ") + "\n");
}

function roomName(arg) {
    if (typeof arg === "string") return arg;
    if (arg && typeof arg.room === "string") return arg.room;
    return null;
}

function members(nsp, room) {
    const set = nsp.adapter.rooms.get(room);
    return set ? set.size : 0;
}

function reply(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { "Content-Type": "application/json",
                            "Content-Length": Buffer.byteLength(body) });
    res.end(body);
}

const httpServer = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url.split("?")[0] !== "/push") {
        reply(res, 404, { ok: false, error: "not found" });
        return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
        let msg;
        try {
            msg = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch (e) {
            reply(res, 400, { ok: false, error: "bad JSON" });
            return;
        }
        if (!msg || typeof msg.room !== "string" ||
                typeof msg.topic !== "string") {
            reply(res, 400, { ok: false, error: "need room and topic" });
            return;
        }
        const nsp = io.of(typeof msg.nsp === "string" ? msg.nsp : "/");
        nsp.to(msg.room).emit(msg.topic, msg.payload);
        reply(res, 200, { ok: true, members: members(nsp, msg.room) });
    });
});

const io = new Server(httpServer, { serveClient: false });

function onConnection(socket) {
    const nsp = socket.nsp;
    socket.on("join", (arg, ack) => {
        const room = roomName(arg);
        if (room === null) {
            if (typeof ack === "function") ack({ error: "bad room" });
            return;
        }
        socket.join(room);
        if (typeof ack === "function")
            ack({ room, members: members(nsp, room) });
    });
    socket.on("leave", (arg, ack) => {
        const room = roomName(arg);
        if (room !== null) socket.leave(room);
        if (typeof ack === "function")
            ack({ room, members: room === null ? 0 : members(nsp, room) });
    });
    socket.on("publish", (msg, ack) => {
        if (msg && typeof msg.room === "string" &&
                typeof msg.event === "string") {
            nsp.to(msg.room).emit(msg.event, msg.data);
            if (typeof ack === "function") ack({ ok: true });
        } else if (typeof ack === "function") {
            ack({ ok: false, error: "need room and event" });
        }
    });
    socket.on("echo", (...args) => {
        const ack = typeof args[args.length - 1] === "function"
            ? args.pop() : null;
        if (ack) ack(...args);
        else socket.emit("echo", ...args);
    });
}

io.on("connection", onConnection);
io.of("/admin").on("connection", onConnection);

httpServer.listen(port, host, () => {
    process.stdout.write("listening " + httpServer.address().port + "\n");
});

function stop() {
    io.close();
    process.exit(0);
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
