//! Real-browser test support, shared by the SFU's browser tests (`sfu/tests/browser.rs`) and the
//! end-to-end tests (`tests/`): [`cdp`] drives headless Chromium over the DevTools protocol, [`demo`]
//! uses the SFU's demo page as a person would (join with a token, read its log), [`captions`] reads
//! the page's live captions over time, and [`chromium_or_skip`] finds the browser — or says why a
//! test is skipped on a developer machine without one, while under CI a missing browser fails the test.

pub mod captions;
pub mod cdp;
pub mod demo;
pub mod process;

use std::io::Write;
use std::path::PathBuf;

pub use cdp::{Chromium, LaunchOptions, Microphone, Page};
pub use process::BrowserProcess;

/// The `chromium` binary on `PATH`, if there is one.
pub fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("chromium"))
        .find(|candidate| candidate.is_file())
}

/// Whether the environment variable `CI` (set by CI services) says the tests run in CI.
fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The Chromium binary for `test`. Without one, outside CI: `None`, after saying on stderr that
/// `test` is skipped and how to install the browser. Under CI (`CI=true`) it panics instead: there
/// `scripts/install-deps.sh` installs Chromium, so a missing browser is a broken setup, not a skip.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let binary = find_chromium();
    if binary.is_none() {
        let ci = std::env::var("CI").ok();
        assert!(
            !is_ci(ci.as_deref()),
            "{test}: no `chromium` on PATH under CI={} (scripts/install-deps.sh installs it)",
            ci.unwrap_or_default()
        );
        // Written to stderr directly, so that the harness's output capture does not hide it.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: no `chromium` on PATH \
             (apt-get install chromium, or run scripts/install-deps.sh)"
        );
    }
    binary
}

/// A JavaScript string literal for `text`.
pub fn js_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_recognised_from_its_variable() {
        assert!(is_ci(Some("true")));
        assert!(is_ci(Some("1")));
        assert!(!is_ci(None));
        assert!(!is_ci(Some("")));
        assert!(!is_ci(Some("false")));
        assert!(!is_ci(Some("0")));
    }

    #[test]
    fn strings_become_javascript_literals() {
        assert_eq!(js_string("it's \"x\"\n"), r#""it's \"x\"\n""#);
    }
}
