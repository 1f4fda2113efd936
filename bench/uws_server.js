#!/usr/bin/env node
// uws_server.js: the uWebSockets.js peer of the bench (bench/run.py
// starts it; bench/package.json pins @trufflesuite/uws-js-unofficial,
// a build of uWebSockets.js 20.30 on npm).  It speaks what the load
// generator speaks to Nchan, so `loadgen --proto nchan` drives it:
//
//   node bench/uws_server.js <port> [host]
//
//   GET  /sub/<room>   a WebSocket subscribed to topic <room>; every
//                      publication comes as a text message, as it was
//                      posted
//   POST /pub/<room>   publishes the body to <room> once, with uWS's own
//                      fan-out (app.publish: one frame shared by every
//                      subscriber); answers 200 "subscribers: <n>"
//
// One process, one thread (uWS's model), no compression (the shared
// compressor with UWS_COMPRESSION=shared, for S7-deflate), no idle
// timeout, and a 1 MB back-pressure limit per socket past which uWS
// closes it (ngx-realtime's realtime_send_buffer in the bench is the
// same order).  Prints "listening <port>" once it listens.

"use strict";

const uWS = require("@trufflesuite/uws-js-unofficial");

const port = parseInt(process.argv[2] || "18082", 10);
const host = process.argv[3] || "127.0.0.1";

const compressed = process.env.UWS_COMPRESSION === "shared";
const app = uWS.App();

app.ws("/sub/*", {
    // S7-deflate: the shared compressor (one deflate per publication)
    compression: compressed ? uWS.SHARED_COMPRESSOR : uWS.DISABLED,
    maxPayloadLength: 64 * 1024,
    maxBackpressure: 1024 * 1024,
    closeOnBackpressureLimit: true,
    idleTimeout: 0,
    upgrade: (res, req, context) => {
        res.upgrade({ room: req.getUrl().slice(5) },
                    req.getHeader("sec-websocket-key"),
                    req.getHeader("sec-websocket-protocol"),
                    req.getHeader("sec-websocket-extensions"),
                    context);
    },
    open: (ws) => {
        ws.subscribe(ws.getUserData().room);
    },
    message: () => {
        // subscribers only listen
    },
});

app.post("/pub/*", (res, req) => {
    const room = req.getUrl().slice(5);
    const parts = [];
    res.aborted = false;
    res.onAborted(() => { res.aborted = true; });
    res.onData((chunk, last) => {
        // the chunk is only valid in this call: copied
        parts.push(Buffer.from(chunk.slice(0)));
        if (!last) return;
        const body = parts.length === 1 ? parts[0] : Buffer.concat(parts);
        // compress: uWS deflates only what is published with it asked
        app.publish(room, body, false, compressed);
        if (res.aborted) return;
        res.cork(() => {
            res.writeStatus("200 OK")
               .end("subscribers: " + app.numSubscribers(room));
        });
    });
});

app.listen(host, port, (token) => {
    if (!token) {
        process.stderr.write("uws_server: cannot listen on " + host + ":"
                             + port + "\n");
        process.exit(1);
    }
    process.stdout.write("listening " + port + "\n");
});
