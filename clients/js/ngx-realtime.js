// ngx-realtime.js: the native client of ngx_http_realtime_module, for
// browsers and Node 20 (pass a WebSocket class there: npm "ws"). An ES
// module without dependencies.
//
//   import { RealtimeClient } from "./ngx-realtime.js";
//   const rt = new RealtimeClient("wss://host/ws", { token: getToken });
//   rt.on("chat", (data, msg) => ...);
//   await rt.connect();
//   await rt.join("battle:42");
//   await rt.publish("battle:42", "chat", { text: "hi" });
//
// It reconnects with exponential backoff and full jitter, joins its rooms
// again "since" the last message it got from each (realtime_history), so
// that nothing is missed or seen twice when the server still holds it
// ("recovered" tells), refreshes its token before the token's exp, and
// answers commands with promises (the protocol's ids).
//
// Copyright (C) ngx-realtime developers. BSD-2-Clause.

const CLOSED = 3;

export class RealtimeError extends Error {
    constructor(code, message) {
        super(message || code);
        this.name = "RealtimeError";
        this.code = code;
    }
}

function jwtExp(token) {
    try {
        const part = token.split(".")[1]
            .replace(/-/g, "+").replace(/_/g, "/");
        const json = typeof atob === "function"
            ? atob(part + "===".slice((part.length + 3) % 4))
            : Buffer.from(part, "base64").toString("utf8");
        const exp = JSON.parse(json).exp;
        return typeof exp === "number" ? exp : null;
    } catch (e) {
        return null;
    }
}

export class RealtimeClient {
    constructor(url, options = {}) {
        this.url = url;
        this.options = Object.assign({
            token: null,            // string, or () => string | Promise
            tokenParam: "token",
            WebSocket: globalThis.WebSocket,
            reconnect: true,
            backoffMin: 250,        // ms
            backoffMax: 10000,
            refreshBefore: 30,      // s before exp
            ackTimeout: 10000,      // ms
        }, options);
        this.ws = null;
        this.state = "closed";      // connecting, open, closed
        this.welcome = null;
        this.token = null;
        this.rooms = new Map();     // room -> {epoch, offset} or {}
        this.handlers = new Map();
        this.pending = new Map();   // id -> {resolve, reject, timer}
        this.nextId = 1;
        this.attempt = 0;
        this.timer = null;
        this.refreshTimer = null;
        this.wanted = false;
    }

    // -- events ----------------------------------------------------------

    on(event, fn) {
        if (!this.handlers.has(event)) {
            this.handlers.set(event, new Set());
        }
        this.handlers.get(event).add(fn);
        return this;
    }

    off(event, fn) {
        const set = this.handlers.get(event);
        if (set) {
            set.delete(fn);
        }
        return this;
    }

    emitLocal(event, ...args) {
        const set = this.handlers.get(event);
        if (set) {
            for (const fn of [...set]) {
                try {
                    fn(...args);
                } catch (e) {
                    setTimeout(() => { throw e; });
                }
            }
        }
    }

    // -- connection -------------------------------------------------------

    async connect() {
        this.wanted = true;
        return new Promise((resolve, reject) => {
            const done = (err) => {
                this.off("welcome", ok);
                this.off("fatal", bad);
                err ? reject(err) : resolve(this.welcome);
            };
            const ok = () => done();
            const bad = (e) => done(e);
            this.on("welcome", ok);
            this.on("fatal", bad);
            this.open();
        });
    }

    async currentToken() {
        const t = this.options.token;
        return typeof t === "function" ? await t() : t;
    }

    async open() {
        clearTimeout(this.timer);
        this.state = "connecting";
        let url = this.url;
        try {
            this.token = await this.currentToken();
        } catch (e) {
            this.token = null;
        }
        if (this.token) {
            url += (url.includes("?") ? "&" : "?") + this.options.tokenParam +
                   "=" + encodeURIComponent(this.token);
        }
        const ws = new this.options.WebSocket(url);
        this.ws = ws;
        ws.onmessage = (ev) => this.receive(ev.data);
        ws.onclose = (ev) => this.closed(ws, ev.code, ev.reason);
        ws.onerror = () => {};
    }

    close() {
        this.wanted = false;
        clearTimeout(this.timer);
        clearTimeout(this.refreshTimer);
        if (this.ws && this.ws.readyState !== CLOSED) {
            this.ws.close(1000, "bye");
        }
        this.state = "closed";
    }

    // drops the socket as a network would: for tests and "go offline"
    drop() {
        if (this.ws) {
            if (typeof this.ws.terminate === "function") {
                this.ws.terminate();
            } else {
                this.ws.close(4000, "dropped");
            }
        }
    }

    closed(ws, code, reason) {
        if (ws !== this.ws) {
            return;
        }
        this.ws = null;
        this.state = "closed";
        clearTimeout(this.refreshTimer);
        for (const [id, p] of this.pending) {
            clearTimeout(p.timer);
            p.reject(new RealtimeError("DISCONNECTED", "the socket closed"));
        }
        this.pending.clear();
        this.emitLocal("close", code, reason);

        // 4003: another user's token; nothing to retry with
        if (!this.wanted || !this.options.reconnect || code === 4003) {
            if (code === 4003 || code === 4001) {
                this.emitLocal("fatal", new RealtimeError(
                    code === 4001 ? "UNAUTHORIZED" : "FORBIDDEN", reason));
            }
            return;
        }

        const cap = Math.min(this.options.backoffMax,
                             this.options.backoffMin * 2 ** this.attempt);
        const delay = Math.floor(Math.random() * cap);
        this.attempt++;
        this.emitLocal("reconnecting", { attempt: this.attempt, delay, code });
        this.timer = setTimeout(() => this.open(), delay);
    }

    send(event, data, id) {
        const msg = { event, data };
        if (id !== undefined) {
            msg.id = id;
        }
        this.ws.send(JSON.stringify(msg));
    }

    // a command whose reply (or error) resolves (or rejects) the promise
    request(event, data) {
        if (!this.ws || this.state !== "open") {
            return Promise.reject(new RealtimeError("DISCONNECTED",
                                                    "not connected"));
        }
        const id = this.nextId++;
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => {
                this.pending.delete(id);
                reject(new RealtimeError("TIMEOUT", "no answer"));
            }, this.options.ackTimeout);
            this.pending.set(id, { resolve, reject, timer });
            this.send(event, data, id);
        });
    }

    // -- what the server sends --------------------------------------------

    receive(text) {
        let msg;
        try {
            msg = JSON.parse(text);
        } catch (e) {
            return;
        }

        if (msg.id !== undefined && this.pending.has(msg.id)) {
            const p = this.pending.get(msg.id);
            this.pending.delete(msg.id);
            clearTimeout(p.timer);
            if (msg.event === "error") {
                p.reject(new RealtimeError(msg.data && msg.data.code,
                                           msg.data && msg.data.message));
            } else {
                p.resolve(msg.data);
            }
            return;
        }

        if (msg.event === "welcome") {
            this.welcomed(msg.data);
            return;
        }

        // the place of the last message of each room, to come back to
        if (msg.room && typeof msg.offset === "number" &&
            this.rooms.has(msg.room)) {
            this.rooms.set(msg.room, { epoch: msg.epoch, offset: msg.offset });
        }

        this.emitLocal("message", msg);
        this.emitLocal(msg.event, msg.data, msg);
    }

    async welcomed(data) {
        this.state = "open";
        this.welcome = data;
        this.attempt = 0;
        this.scheduleRefresh();

        // the rooms again, each since its last message
        for (const [room, place] of this.rooms) {
            const join = { room };
            if (place.epoch !== undefined) {
                join.since = { epoch: place.epoch, offset: place.offset };
            }
            this.request("join", join).then((d) => {
                if (d && d.epoch !== undefined && !d.recovered) {
                    // nothing partial: from here on
                    this.rooms.set(room, { epoch: d.epoch,
                                           offset: d.offset });
                }
                if (join.since) {
                    this.emitLocal("recovered", room, !!(d && d.recovered));
                }
            }, (e) => this.emitLocal("rejoin_failed", room, e));
        }
        this.emitLocal("welcome", data);
    }

    scheduleRefresh() {
        clearTimeout(this.refreshTimer);
        const exp = this.token && jwtExp(this.token);
        if (!exp || typeof this.options.token !== "function") {
            return;
        }
        const ms = Math.max(0, (exp - this.options.refreshBefore) * 1000 -
                               Date.now());
        this.refreshTimer = setTimeout(() => this.refresh(), ms);
    }

    async refresh() {
        let token;
        try {
            token = await this.currentToken();
            const d = await this.request("refresh", { token });
            this.token = token;
            this.emitLocal("refreshed", d);
        } catch (e) {
            this.emitLocal("refresh_failed", e);
            return;
        }
        this.scheduleRefresh();
    }

    // -- commands ---------------------------------------------------------

    async join(room) {
        const d = await this.request("join", { room });
        this.rooms.set(room, d && d.epoch !== undefined
                             ? { epoch: d.epoch, offset: d.offset } : {});
        return d;
    }

    async leave(room) {
        this.rooms.delete(room);
        return this.request("leave", { room });
    }

    publish(room, event, data, options = {}) {
        return this.request("publish", Object.assign({ room, event, data },
                                                     options));
    }

    presence(room) {
        return this.request("presence", { room });
    }
}
