#!/usr/bin/env node
// browser_page.js: opens the Socket.IO demo page (conf-examples/html/
// socketio.html) in Debian's headless Chromium, driven by playwright-core,
// and reports what a person would have seen (t/test_socketio_browser.py).
//
//   node browser_page.js URL ROOM TIMEOUT_S SCREENSHOT_PNG
//
// 1. opens URL, waits until #transport says "websocket" (the client polled
//    first, then upgraded), fills #room with ROOM, clicks #join and waits
//    until #joined shows the ack {"room": ROOM, ...};
// 2. prints {"ready": true, ...} on one stdout line and reads one line from
//    stdin: "the push was sent" (the line may name the event to wait for;
//    an empty line: any event);
// 3. waits until #events shows that event, takes a screenshot to
//    SCREENSHOT_PNG (its directory is created), prints one JSON line
//    {"ok": true, "transports": [...], "events": [...], "joined": ...,
//     "console_errors": [...], ...} and exits 0.
//
// Every wait is bounded by TIMEOUT_S seconds. On a timeout or any other
// failure: a clear message on stderr, one JSON line {"ok": false, "error",
// ...what was seen so far} on stdout, a screenshot next to SCREENSHOT_PNG
// (-failure.png) when the page is open, and exit status 1 (2: bad usage).
// stdout carries only those JSON lines. The browser is closed on every
// exit path; SIGTERM / SIGINT close it too (playwright's handlers).
//
// The browser is the system one, never a download: /usr/bin/chromium
// (CHROMIUM env to override), --no-sandbox because the tests run as root.

"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const [url, room, timeoutArg, shot] = process.argv.slice(2);
const timeoutS = Number(timeoutArg);
if (!url || !room || !shot || !(timeoutS > 0)) {
    process.stderr.write("usage: node browser_page.js URL ROOM TIMEOUT_S " +
                         "SCREENSHOT_PNG\n");
    process.exit(2);
}
const TIMEOUT = Math.round(timeoutS * 1000);
const EXECUTABLE = process.env.CHROMIUM || "/usr/bin/chromium";
const t0 = Date.now();

const out = {
    transports: [],         // every value #transport showed, in order
    console_errors: [],     // console.error messages and uncaught errors
    failed_requests: [],    // requests that failed or got an HTTP >= 400
    timings_ms: {},
};

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function log(msg) {
    process.stderr.write("[browser_page] " + msg + "\n");
}

class Timeout extends Error {}

// one stdin line, bounded
function readLine(ms) {
    const rl = readline.createInterface({ input: process.stdin });
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            rl.close();
            reject(new Timeout("no line on stdin (the push signal) within " +
                               ms / 1000 + "s"));
        }, ms);
        let done = false;
        rl.once("line", (line) => {
            done = true;
            clearTimeout(timer);
            rl.close();
            resolve(line.trim());
        });
        rl.once("close", () => {
            if (done) return;
            clearTimeout(timer);
            reject(new Error("stdin closed before the push signal"));
        });
    });
}

// waits for pred(arg) in the page; on a timeout, what for and what the
// page shows instead
async function waitPage(page, what, pred, arg) {
    try {
        await page.waitForFunction(pred, arg, { timeout: TIMEOUT,
                                                polling: 50 });
    } catch (e) {
        if (e.name !== "TimeoutError") throw e;
        let state = "";
        try {
            state = JSON.stringify(await snapshot(page));
        } catch (_) { /* page gone */ }
        throw new Timeout("timeout after " + timeoutS + "s waiting for " +
                          what + "; the page shows " + state);
    }
}

async function snapshot(page) {
    return page.evaluate(() => {
        const text = (id) => {
            const el = document.getElementById(id);
            return el ? el.textContent : null;
        };
        return {
            status: text("status"),
            transport: text("transport"),
            transport_history: text("transport-history"),
            joined: text("joined"),
            events: Array.from(document.querySelectorAll("#events li"),
                               (li) => ({
                event: li.dataset.event,
                data: (li.querySelector("code") || li).textContent,
                text: li.textContent,
            })),
        };
    });
}

async function main() {
    let browser, page;
    try {
        browser = await chromium.launch({
            executablePath: EXECUTABLE,
            args: ["--no-sandbox"],
            timeout: TIMEOUT,
        });
        out.browser = browser.version();
        page = await browser.newPage({
            viewport: { width: 900, height: 800 } });

        page.on("console", (msg) => {
            if (msg.type() !== "error") return;
            const loc = msg.location();
            out.console_errors.push(msg.text() +
                (loc && loc.url ? " (" + loc.url + ":" + loc.lineNumber + ")"
                                : ""));
        });
        page.on("pageerror", (err) => {
            out.console_errors.push("uncaught: " + (err.stack || err));
        });
        page.on("requestfailed", (req) => {
            out.failed_requests.push(req.method() + " " + req.url() + ": " +
                                     (req.failure() || {}).errorText);
        });
        page.on("response", (res) => {
            if (res.status() >= 400)
                out.failed_requests.push(res.request().method() + " " +
                                         res.url() + ": HTTP " + res.status());
        });

        // every value #transport takes, seen by a MutationObserver that is
        // there before the page's own scripts run
        await page.exposeFunction("__browserPageTransport", (name) => {
            if (out.transports[out.transports.length - 1] !== name) {
                out.transports.push(name);
                out.timings_ms["transport:" + name] = Date.now() - t0;
            }
        });
        await page.addInitScript(() => {
            let last = null;
            const check = () => {
                const el = document.getElementById("transport");
                if (el && el.textContent !== last) {
                    last = el.textContent;
                    window.__browserPageTransport(last);
                }
            };
            new MutationObserver(check).observe(document, {
                childList: true, subtree: true, characterData: true });
        });

        const res = await page.goto(url, { timeout: TIMEOUT,
                                           waitUntil: "load" });
        if (!res || !res.ok())
            throw new Error("GET " + url + ": HTTP " + (res && res.status()));
        out.timings_ms.loaded = Date.now() - t0;

        await waitPage(page, '#transport to say "websocket"', () =>
            document.getElementById("transport").textContent === "websocket");
        out.timings_ms.websocket = Date.now() - t0;

        await page.fill("#room", room, { timeout: TIMEOUT });
        await page.click("#join", { timeout: TIMEOUT });
        await waitPage(page, "#joined to show the ack of the join of " + room,
            (r) => {
                try {
                    const ack = JSON.parse(
                        document.getElementById("joined").textContent);
                    return ack && (ack.room === r || ack.error);
                } catch (_) {
                    return false;
                }
            }, room);
        out.joined = JSON.parse(await page.textContent("#joined"));
        out.timings_ms.joined = Date.now() - t0;
        if (out.joined.error)
            throw new Error("the join was refused: " +
                            JSON.stringify(out.joined));

        emit({ ready: true, joined: out.joined,
               transports: out.transports });

        const event = await readLine(TIMEOUT);
        out.timings_ms.pushed = Date.now() - t0;
        await waitPage(page, "#events to show " +
                       (event ? 'the event "' + event + '"' : "an event"),
            (ev) => Array.from(document.querySelectorAll("#events li"))
                .some((li) => !ev || li.dataset.event === ev), event);
        out.timings_ms.event = Date.now() - t0;

        Object.assign(out, await snapshot(page));
        fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
        await page.screenshot({ path: shot, fullPage: true,
                                timeout: TIMEOUT });
        out.screenshot = shot;
        out.timings_ms.total = Date.now() - t0;
        out.ok = true;
        emit(out);
        return 0;
    } catch (e) {
        out.ok = false;
        out.error = e instanceof Timeout ? e.message : String(e.stack || e);
        log(out.error);
        if (page) {
            try {
                Object.assign(out, await snapshot(page));
                const fail = shot.replace(/\.png$/, "") + "-failure.png";
                fs.mkdirSync(path.dirname(path.resolve(fail)),
                             { recursive: true });
                await page.screenshot({ path: fail, fullPage: true,
                                        timeout: 5000 });
                out.screenshot = fail;
            } catch (_) { /* the page is gone: report what we have */ }
        }
        emit(out);
        return 1;
    } finally {
        if (browser) {
            await Promise.race([
                browser.close().catch(() => {}),
                new Promise((r) => setTimeout(r, 5000)),
            ]);
        }
    }
}

main().then((code) => process.exit(code), (e) => {
    log("unexpected: " + (e.stack || e));
    process.exit(1);
});
