//! A minimal Chrome DevTools Protocol client for the browser tests: it launches headless Chromium
//! with a fake microphone (a beeping tone, or a WAV file) and a fake, auto-picked screen in its own
//! process group, attaches to pages over the browser's DevTools WebSocket (flattened target
//! sessions) and evaluates JavaScript there. Every wait is bounded, and dropping the [`Chromium`]
//! handle kills the whole process group.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;

use crate::process::{keep, tail, BrowserProcess, Lines};

/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// What Chromium's fake microphone plays.
#[derive(Debug, Clone, Default)]
pub enum Microphone {
    /// Chromium's own fake device: a 400 Hz beep every 500 ms.
    #[default]
    Beep,
    /// A WAV file (PCM; Chromium resamples it to the capture rate), from its start each time a page
    /// opens the microphone: once and then silence, or over and over when `looped`.
    Wav { path: PathBuf, looped: bool },
}

/// How to start Chromium.
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// What the fake microphone plays.
    pub microphone: Microphone,
    /// Plain-HTTP origins (`http://172.17.0.1:8080`) treated as secure, so that a page served on an
    /// address other than localhost may still open the microphone (`getUserMedia` needs a secure context).
    pub secure_origins: Vec<String>,
    /// Further command-line flags, e.g. `--host-resolver-rules=MAP calls.test 127.0.0.1` or
    /// `--ignore-certificate-errors-spki-list=...` (a test's own certificate).
    pub extra_args: Vec<String>,
}

impl LaunchOptions {
    /// The command-line flags these options add.
    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Microphone::Wav { path, looped } = &self.microphone {
            let once = if *looped { "" } else { "%noloop" };
            args.push(format!(
                "--use-file-for-fake-audio-capture={}{once}",
                path.display()
            ));
        }
        if !self.secure_origins.is_empty() {
            args.push(format!(
                "--unsafely-treat-insecure-origin-as-secure={}",
                self.secure_origins.join(",")
            ));
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// A running headless Chromium and its DevTools connection.
pub struct Chromium {
    // Declared first so that the connection closes before the process group is killed.
    devtools: Arc<Devtools>,
    process: BrowserProcess,
}

impl Chromium {
    /// Starts Chromium with a fake, auto-granted microphone (a beeping tone) and screen (whose
    /// capture `getDisplayMedia` picks without asking) and connects to it.
    pub async fn launch(binary: &Path) -> Result<Chromium> {
        Chromium::launch_with(binary, &LaunchOptions::default()).await
    }

    /// Like [`Chromium::launch`], with the microphone and secure origins of `options`.
    pub async fn launch_with(binary: &Path, options: &LaunchOptions) -> Result<Chromium> {
        if let Microphone::Wav { path, .. } = &options.microphone {
            // Chromium plays silence, without a word, when it cannot read the file.
            anyhow::ensure!(
                path.is_file(),
                "fake microphone file {} is missing",
                path.display()
            );
        }
        let profile = tempfile::tempdir().context("temporary profile directory")?;
        let mut command = Command::new(binary);
        command
            .args([
                "--headless=new",
                "--no-sandbox",
                "--no-first-run",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                "--auto-select-desktop-capture-source=Entire",
                "--autoplay-policy=no-user-gesture-required",
                "--allow-loopback-in-peer-connection",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .args(options.args())
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank");
        let (process, url) = BrowserProcess::start(
            command,
            profile,
            "chromium",
            "DevTools listening on ",
            Duration::from_secs(30),
        )
        .await?;
        let devtools = Arc::new(Devtools::connect(&url).await?);
        Ok(Chromium { devtools, process })
    }

    /// Opens a new tab and attaches to it.
    pub async fn new_page(&self) -> Result<Page> {
        let target = self
            .devtools
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| anyhow!("createTarget returned no targetId: {target}"))?;
        let attached = self
            .devtools
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("attachToTarget returned no sessionId: {attached}"))?
            .to_string();
        let page = Page {
            devtools: self.devtools.clone(),
            session,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Runtime.enable", json!({})).await?;
        Ok(page)
    }

    /// The last lines Chromium wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.process.stderr_tail()
    }
}

/// One attached tab.
pub struct Page {
    devtools: Arc<Devtools>,
    session: String,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.devtools
            .call(Some(&self.session), method, params)
            .await
    }

    /// Loads `url` and waits until its document has loaded.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let result = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = result.get("errorText").and_then(Value::as_str) {
            bail!("navigating to {url} failed: {error}");
        }
        self.wait_for(
            "the page to load",
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            Duration::from_secs(15),
        )
        .await?;
        Ok(())
    }

    /// Evaluates `expression` in the page (awaiting a promise result) and returns its JSON value.
    /// It runs as a user gesture, as a click would, so that it may start a screen capture.
    pub async fn evaluate(&self, expression: &str) -> Result<Value> {
        let reply = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "awaitPromise": true,
                    "returnByValue": true,
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(details) = reply.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("unknown exception");
            bail!("`{expression}` threw: {text}");
        }
        Ok(reply["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Polls `expression` every 200 ms until it yields something other than false, null, 0 or
    /// an empty string, and returns that value; fails after `limit`.
    pub async fn wait_for(&self, what: &str, expression: &str, limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            last = self.evaluate(expression).await?;
            let truthy = match &last {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("timed out after {limit:?} waiting for {what} (last value {last})")
    }

    /// The page's recent console messages and uncaught exceptions.
    pub fn console(&self) -> String {
        tail(&self.devtools.console)
    }
}

type Reply = oneshot::Sender<Result<Value>>;

struct Request {
    session: Option<String>,
    method: String,
    params: Value,
    reply: Reply,
}

/// The browser-level DevTools WebSocket, owned by one task that matches replies to requests.
struct Devtools {
    requests: mpsc::Sender<Request>,
    console: Lines,
    task: tokio::task::JoinHandle<()>,
}

impl Devtools {
    async fn connect(url: &str) -> Result<Devtools> {
        let (socket, _) = timeout(COMMAND_TIMEOUT, tokio_tungstenite::connect_async(url))
            .await
            .context("connecting to DevTools timed out")?
            .with_context(|| format!("connecting to DevTools at {url}"))?;
        let (requests, receiver) = mpsc::channel(64);
        let console: Lines = Arc::default();
        let task = tokio::spawn(serve(socket, receiver, console.clone()));
        Ok(Devtools {
            requests,
            console,
            task,
        })
    }

    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            session: session.map(str::to_string),
            method: method.to_string(),
            params,
            reply,
        };
        self.requests
            .send(request)
            .await
            .map_err(|_| anyhow!("DevTools connection is closed"))?;
        timeout(COMMAND_TIMEOUT, answer)
            .await
            .with_context(|| format!("{method} got no reply within {COMMAND_TIMEOUT:?}"))?
            .map_err(|_| anyhow!("DevTools connection closed during {method}"))?
    }
}

impl Drop for Devtools {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(mut socket: Socket, mut requests: mpsc::Receiver<Request>, console: Lines) {
    let mut pending: HashMap<u64, Reply> = HashMap::new();
    let mut next_id = 1u64;
    loop {
        tokio::select! {
            request = requests.recv() => {
                let Some(request) = request else { break };
                let id = next_id;
                next_id += 1;
                let mut message = json!({ "id": id, "method": request.method, "params": request.params });
                if let Some(session) = request.session {
                    message["sessionId"] = Value::String(session);
                }
                if let Err(error) = socket.send(Message::Text(message.to_string().into())).await {
                    let _ = request.reply.send(Err(anyhow!("sending to DevTools: {error}")));
                    break;
                }
                pending.insert(id, request.reply);
            }
            incoming = socket.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                };
                let Ok(message) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                match message.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        if let Some(reply) = pending.remove(&id) {
                            let result = match message.get("error") {
                                Some(error) => Err(anyhow!("DevTools error: {error}")),
                                None => Ok(message["result"].clone()),
                            };
                            let _ = reply.send(result);
                        }
                    }
                    None => note_event(&message, &console),
                }
            }
        }
    }
}

/// Keeps console output and uncaught exceptions for failure reports.
fn note_event(message: &Value, console: &Lines) {
    let params = &message["params"];
    match message["method"].as_str() {
        Some("Runtime.consoleAPICalled") => {
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|arg| match &arg["value"] {
                    Value::String(s) => s.clone(),
                    Value::Null => arg["description"].as_str().unwrap_or("").to_string(),
                    other => other.to_string(),
                })
                .collect();
            keep(
                console,
                format!(
                    "console.{}: {}",
                    params["type"].as_str().unwrap_or("log"),
                    args.join(" ")
                ),
            );
        }
        Some("Runtime.exceptionThrown") => {
            let details = &params["exceptionDetails"];
            let text = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("exception");
            keep(console, format!("uncaught: {text}"));
        }
        _ => {}
    }
}
