//! A browser under test as a process: started headless in its own process group with a temporary
//! profile, the last lines of its stderr kept for failure reports, and the whole group (renderers,
//! content processes, helpers) killed when the handle drops. Chromium (DevTools) and the SFU's
//! Firefox test (WebDriver BiDi) start theirs here and differ only in their command line and in
//! the stderr line that announces their debugging address.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::time::Instant;

/// How many lines of a browser's stderr (and of a page's console) are kept for failure reports.
const KEPT_LINES: usize = 60;

/// The last [`KEPT_LINES`] lines of some output.
pub(crate) type Lines = Arc<Mutex<VecDeque<String>>>;

/// Adds `line` to `lines`, forgetting the oldest beyond [`KEPT_LINES`].
pub(crate) fn keep(lines: &Lines, line: String) {
    let mut lines = lines.lock().expect("line buffer lock is never poisoned");
    if lines.len() == KEPT_LINES {
        lines.pop_front();
    }
    lines.push_back(line);
}

/// The lines kept, oldest first.
pub(crate) fn tail(lines: &Lines) -> String {
    let lines = lines.lock().expect("line buffer lock is never poisoned");
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// A running browser's process group, killed on drop, and its temporary profile.
pub struct BrowserProcess {
    child: Child,
    stderr: Lines,
    // Removed after the process group is killed (fields drop after `Drop::drop`).
    _profile: tempfile::TempDir,
}

impl BrowserProcess {
    /// Starts `command` (a browser using `profile`) with stdin and stdout closed and stderr read,
    /// as the leader of its own process group, and waits up to `limit` for the stderr line that
    /// starts with `announce`. Returns the process and the rest of that line (its debugging
    /// address). `what` names the browser in errors.
    pub async fn start(
        mut command: Command,
        profile: tempfile::TempDir,
        what: &str,
        announce: &'static str,
        limit: Duration,
    ) -> Result<(BrowserProcess, String)> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own group, so that dropping the handle can kill its helpers too.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", command.get_program()))?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let process = BrowserProcess {
            child,
            stderr: Lines::default(),
            _profile: profile,
        };
        let (url_tx, url_rx) = std_mpsc::channel();
        let kept = Arc::clone(&process.stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix(announce) {
                    let _ = url_tx.send(url.trim().to_owned());
                }
                keep(&kept, line);
            }
        });
        let deadline = Instant::now() + limit;
        loop {
            match url_rx.try_recv() {
                Ok(url) => return Ok((process, url)),
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    bail!("{what} exited early:\n{}", process.stderr_tail())
                }
                Err(std_mpsc::TryRecvError::Empty) if Instant::now() > deadline => {
                    bail!(
                        "{what} printed no {announce:?} line within {limit:?}:\n{}",
                        process.stderr_tail()
                    )
                }
                Err(std_mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
            }
        }
    }

    /// The last lines the browser wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        // The browser was started as the leader of its own process group.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        // Should the group kill fail, the process itself still goes, so `wait` cannot hang.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
