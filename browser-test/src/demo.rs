//! The SFU's demo page (`sfu/static/index.html`) used as a person uses it: open it, paste a join
//! token, press Join and wait until the call is up; and, when a test fails, what the page and the
//! browser said.

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use crate::{js_string, Chromium, Page};

/// A page in a call.
#[derive(Debug, Clone)]
pub struct Joined {
    /// The page's session id in the call.
    pub session_id: String,
    /// When Join was pressed: the page opened its microphone right after.
    pub clicked_at: Instant,
}

/// Opens the demo page served at `base_url` (`http://host:port`), pastes `token`, presses Join and
/// returns once the page's media connection is up and its status says it is in the call.
pub async fn join(page: &Page, base_url: &str, token: &str) -> Result<Joined> {
    page.navigate(&format!("{base_url}/")).await?;
    let clicked_at = Instant::now();
    page.evaluate(&format!(
        "document.getElementById('token').value = {}; document.getElementById('join').click(); true",
        js_string(token)
    ))
    .await?;
    let session = page
        .wait_for(
            "the page's media connection",
            "state.pc && state.pc.connectionState === 'connected' && state.sessionId",
            Duration::from_secs(20),
        )
        .await?;
    let status = page
        .evaluate("document.getElementById('status').textContent")
        .await?;
    anyhow::ensure!(
        status.as_str().is_some_and(|s| s.starts_with("in call")),
        "page status {status}"
    );
    Ok(Joined {
        session_id: session.as_str().unwrap_or_default().to_string(),
        clicked_at,
    })
}

/// What the page logged (its `#log`), its console and Chromium's stderr, for a failure message.
pub async fn report(page: &Page, chromium: &Chromium) -> String {
    let page_log = page
        .evaluate("document.getElementById('log').textContent")
        .await
        .unwrap_or_default();
    format!(
        "--- page log ---\n{}\n--- console ---\n{}\n--- chromium stderr ---\n{}",
        page_log.as_str().unwrap_or(""),
        page.console(),
        chromium.stderr_tail()
    )
}
