#!/usr/bin/env node
// demo_page.js: the native demo page (conf-examples/html/index.html) in
// Debian's headless Chromium, two browser contexts as two people, driven
// by playwright-core, for t/test_demo_browser.py.
//
//   node demo_page.js URL ROOM TIMEOUT_S SCREENSHOT_PNG
//
// 1. alice and bob open URL?user=..., fill #room with ROOM and join; each
//    waits until #presence lists both;
// 2. alice sends a chat message, bob's #events shows it;
// 3. prints {"ready": true, "curl": <the curl line on alice's page>} and
//    reads one stdin line: the push was sent;
// 4. both pages show the "notice" push; a screenshot of bob's page goes
//    to SCREENSHOT_PNG; one JSON line {"ok": true, ...} and exit 0.
//
// Every wait is bounded by TIMEOUT_S; a failure prints {"ok": false,
// "error"} with what the pages show, keeps a -failure.png, exits 1.

"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

const [url, room, timeoutArg, shot] = process.argv.slice(2);
const timeoutS = Number(timeoutArg);
if (!url || !room || !shot || !(timeoutS > 0)) {
    process.stderr.write("usage: node demo_page.js URL ROOM TIMEOUT_S " +
                         "SCREENSHOT_PNG\n");
    process.exit(2);
}
const TIMEOUT = Math.round(timeoutS * 1000);
const EXECUTABLE = process.env.CHROMIUM || "/usr/bin/chromium";
const out = { console_errors: [], failed_requests: [] };

function emit(obj) {
    process.stdout.write(JSON.stringify(obj) + "\n");
}

function readLine(ms) {
    const rl = readline.createInterface({ input: process.stdin });
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
            rl.close();
            reject(new Error("no push signal on stdin in " + ms + " ms"));
        }, ms);
        rl.once("line", (line) => {
            clearTimeout(timer);
            rl.close();
            resolve(line.trim());
        });
    });
}

async function state(page) {
    return page.evaluate(() => ({
        status: document.getElementById("status").textContent,
        presence: Array.from(document.querySelectorAll("#presence li"),
                             (li) => li.textContent),
        events: Array.from(document.querySelectorAll("#events div"),
                           (d) => ({ event: d.dataset.event || null,
                                     text: d.textContent })),
    }));
}

async function open(browser, user) {
    const context = await browser.newContext({
        viewport: { width: 900, height: 700 } });
    const page = await context.newPage();
    page.on("console", (m) => {
        if (m.type() === "error") out.console_errors.push(user + ": " +
                                                          m.text());
    });
    page.on("pageerror", (e) => out.console_errors.push(user + ": " +
                                                        String(e)));
    page.on("response", (r) => {
        if (r.status() >= 400) out.failed_requests.push(r.url() + " " +
                                                        r.status());
    });
    const res = await page.goto(url + "?user=" + user, { timeout: TIMEOUT });
    if (!res || !res.ok()) {
        throw new Error("GET " + url + ": " + (res && res.status()));
    }
    await page.fill("#room", room, { timeout: TIMEOUT });
    await page.click("#join", { timeout: TIMEOUT });
    await page.waitForFunction((r) => document.body.dataset.joined === r,
                               room, { timeout: TIMEOUT });
    return page;
}

function waitFor(page, what, pred, arg) {
    return page.waitForFunction(pred, arg, { timeout: TIMEOUT, polling: 50 })
        .catch(async (e) => {
            throw new Error("waiting for " + what + ": " + e.message +
                            "; the page shows " +
                            JSON.stringify(await state(page)));
        });
}

async function main() {
    let browser, alice, bob;
    try {
        browser = await chromium.launch({ executablePath: EXECUTABLE,
                                          args: ["--no-sandbox"],
                                          timeout: TIMEOUT });
        alice = await open(browser, "alice");
        bob = await open(browser, "bob");

        const both = () => {
            const names = Array.from(document.querySelectorAll("#presence li"),
                                     (li) => li.textContent);
            return names.includes("alice") && names.includes("bob");
        };
        await waitFor(alice, "alice to see bob", both);
        await waitFor(bob, "bob to see alice", both);

        await alice.fill("#text", "hi bob");
        await alice.click("#send");
        const chat = (t) => Array.from(document.querySelectorAll("#events div"))
            .some((d) => d.dataset.event === "chat" && d.textContent.includes(t));
        await waitFor(bob, "bob to get alice's message", chat, "alice: hi bob");
        await waitFor(alice, "alice to see her message", chat,
                      "alice: hi bob");

        emit({ ready: true, curl: await alice.textContent("#curl") });
        await readLine(TIMEOUT);

        const notice = () => Array.from(document.querySelectorAll("#events div"))
            .some((d) => d.dataset.event === "notice");
        await waitFor(alice, "alice to get the push", notice);
        await waitFor(bob, "bob to get the push", notice);

        out.alice = await state(alice);
        out.bob = await state(bob);
        fs.mkdirSync(path.dirname(path.resolve(shot)), { recursive: true });
        await bob.screenshot({ path: shot, fullPage: true, timeout: TIMEOUT });
        out.screenshot = shot;
        out.ok = true;
        emit(out);
        return 0;
    } catch (e) {
        out.ok = false;
        out.error = String(e.stack || e);
        try {
            if (alice) out.alice = await state(alice);
            if (bob) {
                out.bob = await state(bob);
                const fail = shot.replace(/\.png$/, "") + "-failure.png";
                fs.mkdirSync(path.dirname(path.resolve(fail)),
                             { recursive: true });
                await bob.screenshot({ path: fail, fullPage: true,
                                       timeout: 5000 });
            }
        } catch (_) { /* gone */ }
        emit(out);
        return 1;
    } finally {
        if (browser) {
            await Promise.race([browser.close().catch(() => {}),
                                new Promise((r) => setTimeout(r, 5000))]);
        }
    }
}

main().then((code) => process.exit(code), (e) => {
    process.stderr.write(String(e.stack || e) + "\n");
    process.exit(1);
});
