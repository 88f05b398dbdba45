// Prints what the demo page shows (status, participants, media, captions, log) from a headless
// Chromium with remote debugging on :9222, or evaluates the expression given as argument.
// Used by check-demo-page.sh; needs Node >= 20 run with --experimental-websocket.
const targets = await (await fetch("http://127.0.0.1:9222/json")).json();
const page = targets.find((t) => t.type === "page");
const ws = new WebSocket(page.webSocketDebuggerUrl);
await new Promise((r) => (ws.onopen = r));
let id = 0;
const pending = new Map();
ws.onmessage = (e) => { const m = JSON.parse(e.data); if (pending.has(m.id)) { pending.get(m.id)(m); pending.delete(m.id); } };
const call = (method, params) => new Promise((r) => { const i = ++id; pending.set(i, r); ws.send(JSON.stringify({ id: i, method, params })); });
const expr = process.argv[2] || `JSON.stringify({
  status: document.getElementById("status").textContent,
  participants: [...document.querySelectorAll("#participants li")].map((li) => li.textContent + (li.className ? " [" + li.className + "]" : "")),
  audio: [...document.querySelectorAll("#voices audio")].map((a) => ({ owner: a.dataset.owner, paused: a.paused, ready: a.readyState })),
  video: [...document.querySelectorAll("#screens video")].map((v) => ({ w: v.videoWidth, h: v.videoHeight, t: v.currentTime, caption: v.parentElement.querySelector("figcaption").textContent })),
  captions: document.getElementById("captions").textContent,
  log: document.getElementById("log").textContent,
})`;
const result = await call("Runtime.evaluate", { expression: expr, awaitPromise: true, returnByValue: true });
console.log(result.result.result.value ?? JSON.stringify(result.result));
ws.close();
