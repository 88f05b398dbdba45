//! A minimal WebDriver BiDi client for the Firefox test: it launches headless Firefox ESR with a
//! fresh profile (fake, auto-granted microphone; loopback ICE; autoplay allowed) in its own
//! process group, opens a BiDi session over the WebSocket Firefox announces on stderr, and
//! navigates and evaluates JavaScript in the first tab. Commands run one at a time; every wait is
//! bounded, and dropping the [`Firefox`] handle kills the whole process group.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use calls_browser_test::BrowserProcess;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long one BiDi command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Preferences of the test profile: the prefs issue 12 names, plus what a headless test needs.
const PREFS: &str = r#"
user_pref("media.navigator.streams.fake", true);
user_pref("media.navigator.permission.disabled", true);
user_pref("media.peerconnection.ice.loopback", true);
user_pref("media.peerconnection.ice.obfuscate_host_addresses", false);
user_pref("media.autoplay.default", 0);
user_pref("media.autoplay.block-webaudio", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("app.update.disabledForTesting", true);
"#;

/// `firefox-esr` (or `firefox`) on `PATH`, if there is one.
pub fn find_firefox() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["firefox-esr", "firefox"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// A running headless Firefox and its BiDi session.
pub struct Firefox {
    socket: tokio::sync::Mutex<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    next_id: std::sync::atomic::AtomicU64,
    context: String,
    // Declared after the socket, so that the session closes before the process group is killed.
    process: BrowserProcess,
}

impl Firefox {
    /// Starts Firefox and opens a BiDi session on its first tab.
    pub async fn launch(binary: &Path) -> Result<Firefox> {
        let profile = tempfile::tempdir().context("temporary profile directory")?;
        std::fs::write(profile.path().join("user.js"), PREFS).context("writing user.js")?;
        let mut command = Command::new(binary);
        command
            .args([
                "--headless",
                "--no-remote",
                "--remote-debugging-port=0",
                "--profile",
            ])
            .arg(profile.path())
            .arg("about:blank")
            .env("MOZ_CRASHREPORTER_DISABLE", "1");
        let (process, url) = BrowserProcess::start(
            command,
            profile,
            "firefox",
            "WebDriver BiDi listening on ",
            Duration::from_secs(60),
        )
        .await?;
        let (socket, _) = tokio_tungstenite::connect_async(format!("{url}/session"))
            .await
            .context("connecting to the BiDi session endpoint")?;
        let mut firefox = Firefox {
            socket: tokio::sync::Mutex::new(socket),
            next_id: std::sync::atomic::AtomicU64::new(1),
            context: String::new(),
            process,
        };
        firefox
            .command("session.new", json!({ "capabilities": {} }))
            .await?;
        let tree = firefox
            .command("browsingContext.getTree", json!({}))
            .await?;
        firefox.context = tree["contexts"][0]["context"]
            .as_str()
            .ok_or_else(|| anyhow!("no browsing context in {tree}"))?
            .to_owned();
        Ok(firefox)
    }

    /// Sends one command and waits for its result, skipping events.
    async fn command(&self, method: &str, params: Value) -> Result<Value> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut socket = self.socket.lock().await;
        let request = json!({ "id": id, "method": method, "params": params });
        socket
            .send(Message::Text(request.to_string().into()))
            .await
            .context("sending a BiDi command")?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let frame = timeout(deadline - Instant::now(), socket.next())
                .await
                .map_err(|_| anyhow!("{method} timed out"))?
                .ok_or_else(|| anyhow!("the BiDi connection closed"))??;
            let Message::Text(text) = frame else { continue };
            let reply: Value = serde_json::from_str(&text).context("BiDi reply is not JSON")?;
            if reply["id"].as_u64() != Some(id) {
                continue;
            }
            if reply["type"] == "error" {
                bail!("{method}: {} {}", reply["error"], reply["message"]);
            }
            return Ok(reply["result"].clone());
        }
    }

    /// Loads `url` in the tab and waits for the load to complete.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        self.command(
            "browsingContext.navigate",
            json!({ "context": self.context, "url": url, "wait": "complete" }),
        )
        .await?;
        Ok(())
    }

    /// Evaluates `expression` (awaiting a promise) and returns its value when it is a string,
    /// number or boolean; anything else becomes `null`.
    pub async fn evaluate(&self, expression: &str) -> Result<Value> {
        let result = self
            .command(
                "script.evaluate",
                json!({
                    "expression": expression,
                    "target": { "context": self.context },
                    "awaitPromise": true,
                }),
            )
            .await?;
        if result["type"] == "exception" {
            bail!("page threw: {}", result["exceptionDetails"]["text"]);
        }
        Ok(result["result"]["value"].clone())
    }

    /// The last lines Firefox wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.process.stderr_tail()
    }
}
