// calls-sfu demo page logic: WebSocket signalling (docs/protocol.md) plus one RTCPeerConnection.
//
// The page is the "polite" peer of perfect negotiation: when an SFU offer collides with an offer of
// ours, it rolls its own back, answers the SFU, and lets `negotiationneeded` offer again. Forwarded
// tracks are attributed through their stream id, which the SFU sets to the owner's session id.
"use strict";

const PROTOCOL_VERSION = 1;
const $ = (id) => document.getElementById(id);

const state = {
  ws: null,
  pc: null,
  sessionId: null,
  participants: new Map(), // session id -> ParticipantInfo
  mic: null,               // local microphone track
  muted: false,
  screenSender: null,
  makingOffer: false,
  pendingCandidates: [],
};

function log(text) {
  const line = `${new Date().toISOString().slice(11, 19)} ${text}\n`;
  $("log").textContent += line;
  $("log").scrollTop = $("log").scrollHeight;
}

function setStatus(text) { $("status").textContent = text; }

function send(message) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(message));
  }
}

function wsUrl(base) {
  const url = new URL(base || window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.pathname = "/ws";
  url.search = "";
  url.hash = "";
  return url.toString();
}

function nameOf(sessionId) {
  const p = state.participants.get(sessionId);
  return p ? p.name : sessionId;
}

function renderParticipants() {
  const list = $("participants");
  list.replaceChildren();
  const me = document.createElement("li");
  me.textContent = "you";
  me.classList.toggle("muted", state.muted);
  me.classList.toggle("screen", state.screenSender !== null);
  list.appendChild(me);
  for (const p of state.participants.values()) {
    const item = document.createElement("li");
    item.textContent = `${p.name}${p.role === "bot" ? " [bot]" : ""}`;
    item.classList.toggle("muted", p.muted);
    item.classList.toggle("screen", p.screen_on);
    list.appendChild(item);
  }
  for (const label of document.querySelectorAll("[data-owner]")) {
    label.title = nameOf(label.dataset.owner);
    if (label.tagName === "FIGCAPTION") label.textContent = `${nameOf(label.dataset.owner)}'s screen`;
  }
}

function addCaption(caption) {
  const box = $("captions");
  const id = `cap-${caption.speaker_session}-${caption.start_ms}`;
  let line = document.getElementById(id);
  if (!line) {
    line = document.createElement("div");
    line.id = id;
    box.appendChild(line);
  }
  const who = caption.speaker_name || nameOf(caption.speaker_session);
  line.textContent = `${who}: ${caption.text}`;
  line.classList.toggle("partial", !caption.final);
  box.scrollTop = box.scrollHeight;
}

function onRemoteTrack(event) {
  const track = event.track;
  const owner = event.streams[0] ? event.streams[0].id : "unknown";
  log(`receiving ${track.kind} of ${nameOf(owner)}`);
  const stream = new MediaStream([track]);
  let container;
  if (track.kind === "audio") {
    const audio = document.createElement("audio");
    audio.autoplay = true;
    audio.dataset.owner = owner;
    audio.srcObject = stream;
    $("voices").appendChild(audio);
    container = audio;
  } else {
    const video = document.createElement("video");
    video.autoplay = true;
    video.muted = true;
    video.playsInline = true;
    video.srcObject = stream;
    const caption = document.createElement("figcaption");
    caption.dataset.owner = owner;
    container = document.createElement("figure");
    container.append(video, caption);
    $("screens").appendChild(container);
  }
  // Forwarded tracks end when the SFU removes them (owner left, screen stopped).
  track.addEventListener("ended", () => container.remove());
  renderParticipants();
}

function removeEndedMedia() {
  // A transceiver the SFU stopped leaves its track ended without always firing "ended".
  for (const media of document.querySelectorAll("#voices audio, #screens video")) {
    const tracks = media.srcObject ? media.srcObject.getTracks() : [];
    if (tracks.every((t) => t.readyState === "ended")) {
      (media.closest("figure") || media).remove();
    }
  }
}

function createPeerConnection() {
  const pc = new RTCPeerConnection({ bundlePolicy: "max-bundle" });
  pc.onicecandidate = ({ candidate }) => {
    if (candidate && candidate.candidate) send({ type: "ice_candidate", candidate: candidate.toJSON() });
  };
  pc.ontrack = onRemoteTrack;
  pc.onconnectionstatechange = () => {
    log(`connection ${pc.connectionState}`);
    if (pc.connectionState === "connected") setStatus(`in call as ${state.sessionId}`);
    if (pc.connectionState === "failed") setStatus("media connection failed");
  };
  pc.onnegotiationneeded = async () => {
    try {
      state.makingOffer = true;
      await pc.setLocalDescription();
      send({ type: "offer", sdp: pc.localDescription.sdp });
    } catch (error) {
      log(`offer failed: ${error}`);
    } finally {
      state.makingOffer = false;
    }
  };
  return pc;
}

async function flushCandidates() {
  const candidates = state.pendingCandidates;
  state.pendingCandidates = [];
  for (const candidate of candidates) {
    try { await state.pc.addIceCandidate(candidate); } catch (error) { log(`bad candidate: ${error}`); }
  }
}

async function handleServerOffer(sdp) {
  const pc = state.pc;
  const collision = state.makingOffer || pc.signalingState !== "stable";
  if (collision) {
    log("offer collision: rolling back ours");
    await pc.setLocalDescription({ type: "rollback" });
  }
  await pc.setRemoteDescription({ type: "offer", sdp });
  await flushCandidates();
  await pc.setLocalDescription();
  send({ type: "answer", sdp: pc.localDescription.sdp });
  removeEndedMedia();
}

async function handleMessage(message) {
  switch (message.type) {
    case "joined":
      state.sessionId = message.session_id;
      for (const p of message.participants) state.participants.set(p.session_id, p);
      setStatus(`joined ${message.call_id}, connecting media`);
      $("mute").disabled = $("screen").disabled = $("leave").disabled = false;
      renderParticipants();
      await startMedia();
      break;
    case "offer":
      await handleServerOffer(message.sdp);
      break;
    case "answer":
      await state.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      await flushCandidates();
      removeEndedMedia();
      break;
    case "ice_candidate":
      if (state.pc.remoteDescription) {
        await state.pc.addIceCandidate(message.candidate).catch((e) => log(`bad candidate: ${e}`));
      } else {
        state.pendingCandidates.push(message.candidate);
      }
      break;
    case "participant_joined":
      state.participants.set(message.participant.session_id, message.participant);
      log(`${message.participant.name} joined`);
      renderParticipants();
      break;
    case "participant_left":
      log(`${nameOf(message.session_id)} left`);
      state.participants.delete(message.session_id);
      for (const media of document.querySelectorAll(`[data-owner="${CSS.escape(message.session_id)}"]`)) {
        (media.closest("figure") || media).remove();
      }
      renderParticipants();
      break;
    case "mute_state":
    case "screen_state": {
      const p = state.participants.get(message.session_id);
      if (p) {
        if ("muted" in message) p.muted = message.muted;
        if ("screen_on" in message) p.screen_on = message.screen_on;
      }
      renderParticipants();
      break;
    }
    case "caption":
      addCaption(message);
      break;
    case "job_stop":
      log(`job stop: ${message.reason}`);
      break;
    case "error":
      log(`error ${message.code}: ${message.message}`);
      if (message.code === "bad_token" || message.code === "call_full") setStatus(message.message);
      break;
    default:
      log(`unknown message ${message.type}`);
  }
}

async function startMedia() {
  state.pc = createPeerConnection();
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    state.mic = stream.getAudioTracks()[0];
    state.pc.addTrack(state.mic, stream); // fires negotiationneeded -> offer
  } catch (error) {
    log(`no microphone (${error.name}); joining to listen only`);
    state.pc.addTransceiver("audio", { direction: "recvonly" });
  }
}

async function toggleScreen() {
  if (state.screenSender) {
    const track = state.screenSender.track;
    state.pc.removeTrack(state.screenSender);
    state.screenSender = null;
    if (track) track.stop();
    send({ type: "screen_off" });
    $("screen").textContent = "Share screen";
  } else {
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: 15 } });
    } catch (error) {
      log(`screen share refused (${error.name})`);
      return;
    }
    const track = stream.getVideoTracks()[0];
    send({ type: "screen_on" });
    state.screenSender = state.pc.addTrack(track, stream);
    track.addEventListener("ended", () => { if (state.screenSender) toggleScreen(); });
    $("screen").textContent = "Stop sharing";
  }
  renderParticipants();
}

function toggleMute() {
  state.muted = !state.muted;
  if (state.mic) state.mic.enabled = !state.muted;
  send({ type: state.muted ? "mute" : "unmute" });
  $("mute").textContent = state.muted ? "Unmute" : "Mute";
  renderParticipants();
}

function teardown(reason) {
  if (state.pc) state.pc.close();
  if (state.mic) state.mic.stop();
  if (state.screenSender && state.screenSender.track) state.screenSender.track.stop();
  Object.assign(state, { ws: null, pc: null, mic: null, screenSender: null, sessionId: null, muted: false });
  state.participants.clear();
  $("voices").replaceChildren();
  $("screens").replaceChildren();
  $("mute").disabled = $("screen").disabled = $("leave").disabled = true;
  $("join").disabled = false;
  $("mute").textContent = "Mute";
  $("screen").textContent = "Share screen";
  renderParticipants();
  setStatus(reason);
}

function join() {
  const token = $("token").value.trim();
  if (!token) { setStatus("paste a join token first"); return; }
  let url;
  try { url = wsUrl($("sfu-url").value.trim()); } catch (error) { setStatus(`bad SFU URL: ${error.message}`); return; }
  $("join").disabled = true;
  setStatus(`connecting to ${url}`);
  const ws = new WebSocket(url);
  state.ws = ws;
  ws.onopen = () => send({ type: "join", version: PROTOCOL_VERSION, token });
  // Messages are handled one at a time so that SDP steps never interleave.
  let queue = Promise.resolve();
  ws.onmessage = (event) => {
    let message;
    try { message = JSON.parse(event.data); } catch { log("unparsable message from SFU"); return; }
    queue = queue.then(() => handleMessage(message)).catch((error) => log(`${message.type}: ${error}`));
  };
  ws.onclose = (event) => { if (state.ws === ws) teardown(`disconnected${event.reason ? `: ${event.reason}` : ""}`); };
  ws.onerror = () => log("websocket error");
}

$("join").addEventListener("click", join);
$("leave").addEventListener("click", () => { send({ type: "leave" }); if (state.ws) state.ws.close(); teardown("left the call"); });
$("mute").addEventListener("click", toggleMute);
$("screen").addEventListener("click", toggleScreen);
const params = new URLSearchParams(window.location.search);
if (params.get("token")) $("token").value = params.get("token");
if (params.get("sfu")) $("sfu-url").value = params.get("sfu");
renderParticipants();
