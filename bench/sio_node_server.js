#!/usr/bin/env node
// sio_node_server.js: the Node Socket.IO 4.8 peer of the bench's SIO
// scenarios (bench/run.py starts it; bench/package.json pins socket.io).
//
//   node bench/sio_node_server.js <port> [host]
//
// One process, the WebSocket transport only, default pingInterval and
// pingTimeout, no per-message deflate (engine.io's default).  A socket's
//   "join"  room | {room}       ack {room, members}
// and, on the same port, the push API that ngx-realtime's /sendPayload
// takes, with the same JSON:
//   POST /sendPayload {"room", "topic", "payload"} or an array of them
//        -> io.to(room).emit(topic, payload) each;
//        200 {"message", "delivered": <sockets in the room>} (an array:
//        {"message", "results": [{"room", "delivered"}, ...]})
// Prints "listening <port>" on stdout once it listens.

"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = parseInt(process.argv[2] || "18090", 10);
const host = process.argv[3] || "127.0.0.1";

function roomName(arg) {
    if (typeof arg === "string") return arg;
    if (arg && typeof arg.room === "string") return arg.room;
    return null;
}

function members(room) {
    const set = io.of("/").adapter.rooms.get(room);
    return set ? set.size : 0;
}

function reply(res, status, obj) {
    const body = JSON.stringify(obj);
    res.writeHead(status, { "Content-Type": "application/json",
                            "Content-Length": Buffer.byteLength(body) });
    res.end(body);
}

function push(item) {
    if (!item || typeof item.room !== "string" ||
            typeof item.topic !== "string") {
        return null;
    }
    io.to(item.room).emit(item.topic, item.payload);
    return { room: item.room, delivered: members(item.room) };
}

const httpServer = http.createServer((req, res) => {
    if (req.method !== "POST" || req.url.split("?")[0] !== "/sendPayload") {
        reply(res, 404, { message: "not found" });
        return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
        let body;
        try {
            body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
        } catch (e) {
            reply(res, 400, { message: "bad JSON" });
            return;
        }
        if (Array.isArray(body)) {
            const results = body.map(push);
            if (results.some((r) => r === null)) {
                reply(res, 400, { message: "every item needs room and topic",
                                  results });
                return;
            }
            reply(res, 200, { message: "Payload sent successfully",
                              results });
            return;
        }
        const r = push(body);
        if (r === null) {
            reply(res, 400, { message: "need room and topic" });
            return;
        }
        reply(res, 200, { message: "Payload sent successfully",
                          delivered: r.delivered });
    });
});

// the publisher's keep-alive connections stay open for the whole run
httpServer.keepAliveTimeout = 60000;

const io = new Server(httpServer, {
    transports: ["websocket"],
    serveClient: false,
});

io.on("connection", (socket) => {
    socket.on("join", (arg, ack) => {
        const room = roomName(arg);
        if (room === null) {
            if (typeof ack === "function") ack({ error: "bad room" });
            return;
        }
        socket.join(room);
        if (typeof ack === "function") ack({ room, members: members(room) });
    });
});

httpServer.listen({ port, host, backlog: 4096 }, () => {
    process.stdout.write("listening " + httpServer.address().port + "\n");
});

function stop() {
    io.close();
    process.exit(0);
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
