//! Tidy: the rules of docs/ARCHITECTURE.md and docs STYLE that a machine can check, checked on every
//! `cargo test` (after rust-analyzer's `xtask/src/tidy.rs`). Each rule reads the source tree as text; an
//! exception is listed here by file, with why, so that it is a decision someone can revisit, not a habit.
//!
//! - every path the code map in docs/ARCHITECTURE.md names exists (relative to the section's crate);
//! - bollard (Docker) is used only in `offloader/src/backend/`;
//! - every channel in program code has a capacity (no unbounded channel);
//! - no `try_send` result is discarded (`let _ = ….try_send(…)`): a drop is counted or handled;
//! - every config `KEYS` table is checked against its docs table by a test (those tests live next to
//!   the tables, in `sfu/src/config_tests.rs` and `offloader/src/config/tests.rs`; this only makes sure
//!   each table has one);
//! - every key of a `KEYS` table has its row in the docs page, naming its environment variable and
//!   the default the table gives (read from the tables themselves, not from their source text).

use std::path::{Path, PathBuf};

/// Program crates: their `src/` is held to the channel and `try_send` rules (test-support crates such
/// as `tests/` and `browser-test/` are not programs).
const PROGRAM_CRATES: &[&str] = &[
    "protocol",
    "participant",
    "sfu",
    "offloader",
    "job",
    "recorder",
    "transcriber",
];

/// Files outside `offloader/src/backend/` that may name bollard, with why.
const BOLLARD_EXCEPTIONS: &[(&str, &str)] = &[(
    "offloader/src/error.rs",
    "the crate's one error enum wraps bollard's error type (owned by the offloader work; to move \
     behind the backend)",
)];

/// Discarded `try_send` results still allowed, per file: how many, and why.
const DISCARDED_TRY_SEND_EXCEPTIONS: &[(&str, usize, &str)] = &[
    (
        "sfu/src/negotiation.rs",
        3,
        "the SFU's peer-event handler; issue 16 item 2 replaces it with the shared WebRTC crate's, \
         which counts its drops",
    ),
    (
        "sfu/src/session.rs",
        2,
        "a session's last error reply to a client whose queue is full (SFU hardening work owns it)",
    ),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .to_path_buf()
}

/// Every file below `dir` (relative to the root), build output and hidden folders left out.
fn files_under(root: &Path, dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![root.join(dir)];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if let Ok(relative) = path.strip_prefix(root) {
                found.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

fn read(root: &Path, file: &str) -> String {
    std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

/// A file's code without comment lines and without its `#[cfg(test)]` tail (unit tests sit at the end).
fn program_code(text: &str) -> String {
    let code = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    code.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Rust files of the program crates' `src/`, unit-test files left out.
fn program_sources(root: &Path) -> Vec<String> {
    PROGRAM_CRATES
        .iter()
        .flat_map(|krate| files_under(root, &format!("{krate}/src")))
        .filter(|file| file.ends_with(".rs") && !file.ends_with("_tests.rs"))
        .filter(|file| !file.ends_with("/tests.rs") && !file.contains("/tests/"))
        .collect()
}

/// The backticked names in `line` that look like paths in the tree.
fn path_tokens(line: &str) -> Vec<String> {
    const EXTENSIONS: &[&str] = &[".rs", ".md", ".sh", ".toml", ".yml", ".html", ".js"];
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|token| {
            !token.is_empty()
                && !token.starts_with('/')
                && !token.contains(|c: char| c.is_whitespace() || "<>{}*:()$,".contains(c))
                && (token.ends_with('/') || EXTENSIONS.iter().any(|ext| token.ends_with(ext)))
        })
        .map(str::to_owned)
        .collect()
}

/// Where a code-map path may be: from the root, or anywhere inside the crate (folder) of its section.
fn map_path_exists(
    root: &Path,
    context: Option<&str>,
    token: &str,
    crate_files: &[String],
) -> bool {
    if root.join(token).exists() {
        return true;
    }
    let Some(context) = context else {
        return false;
    };
    let token = token.trim_end_matches('/');
    crate_files.iter().any(|file| {
        file.strip_prefix(context.trim_end_matches('/'))
            .is_some_and(|inside| {
                inside.ends_with(&format!("/{token}")) || inside.contains(&format!("/{token}/"))
            })
    })
}

#[test]
fn every_path_in_the_code_map_exists() {
    let root = root();
    let architecture = read(&root, "docs/ARCHITECTURE.md");
    let map = architecture
        .split("## Code map")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/ARCHITECTURE.md has a `## Code map` section");
    let mut missing = Vec::new();
    let mut section: Option<String> = None;
    let mut bullet: Option<String> = None;
    let mut checked = 0;
    for line in map.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            // `### `sfu/` — calls-sfu`: paths in the section are the crate's.
            section = path_tokens(heading).into_iter().find(|t| t.ends_with('/'));
            bullet = None;
        }
        // `- `images/` — …` in a section of several folders: the bullet's folder, on its
        // continuation lines too.
        if let Some(rest) = line.strip_prefix("- ") {
            bullet = rest
                .strip_prefix('`')
                .and_then(|rest| rest.split('`').next())
                .filter(|dir| dir.ends_with('/') && root.join(dir).is_dir())
                .map(str::to_owned);
        }
        let context = bullet.clone().or_else(|| section.clone());
        let crate_files = context
            .as_deref()
            .map(|dir| files_under(&root, dir))
            .unwrap_or_default();
        for token in path_tokens(line) {
            checked += 1;
            if !map_path_exists(&root, context.as_deref(), &token, &crate_files) {
                missing.push(format!(
                    "`{token}` (in {})",
                    context.as_deref().unwrap_or("the root")
                ));
            }
        }
    }
    assert!(checked > 50, "the code map names only {checked} paths");
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md's code map names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn bollard_is_used_only_by_the_offloader_backends() {
    let root = root();
    let mut offenders = Vec::new();
    for krate in PROGRAM_CRATES.iter().chain(&["tests", "browser-test"]) {
        let manifest = format!("{krate}/Cargo.toml");
        if *krate != "offloader" && read(&root, &manifest).contains("bollard") {
            offenders.push(manifest);
        }
        for file in files_under(&root, krate) {
            if !file.ends_with(".rs")
                || file.starts_with("offloader/src/backend/")
                || file == "tests/tests/tidy.rs"
            {
                continue;
            }
            if BOLLARD_EXCEPTIONS.iter().any(|(path, _)| *path == file) {
                continue;
            }
            if program_code(&read(&root, &file)).contains("bollard") {
                offenders.push(file);
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "bollard outside offloader/src/backend/ (docs/ARCHITECTURE.md: nothing outside backend/ talks \
         to Docker):\n{}",
        offenders.join("\n")
    );
}

/// The unbounded channels `code` creates: std's `mpsc::channel()` (no capacity argument), tokio's
/// `unbounded_channel`, crossbeam's and flume's `unbounded`.
fn unbounded_channels(code: &str) -> Vec<String> {
    let code: String = code.split_whitespace().collect();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("mpsc::channel") {
        let rest = &code[at + "mpsc::channel".len()..];
        // Skip a turbofish: `channel::<T>()`.
        let arguments = match rest.strip_prefix("::<") {
            Some(generic) => {
                let mut depth = 1;
                let end = generic.char_indices().find_map(|(i, c)| {
                    depth += match c {
                        '<' => 1,
                        '>' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i + 1)
                });
                end.map_or("", |end| &generic[end..])
            }
            None => rest,
        };
        if arguments.starts_with("()") {
            found.push(format!("mpsc::channel{}", &rest[..rest.len().min(24)]));
        }
    }
    for pattern in [
        "unbounded_channel",
        "crossbeam_channel::unbounded",
        "flume::unbounded",
    ] {
        if code.contains(pattern) {
            found.push(pattern.to_owned());
        }
    }
    found
}

#[test]
fn every_channel_has_a_capacity() {
    let root = root();
    let mut offenders = Vec::new();
    for file in program_sources(&root) {
        for channel in unbounded_channels(&program_code(&read(&root, &file))) {
            offenders.push(format!("{file}: {channel}"));
        }
    }
    assert!(
        offenders.is_empty(),
        "unbounded channels (docs/ARCHITECTURE.md: every channel between tasks has a capacity):\n{}",
        offenders.join("\n")
    );
}

/// How many statements in `code` throw a `try_send` result away.
fn discarded_try_sends(code: &str) -> usize {
    code.split(';')
        .map(|statement| statement.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|statement| statement.contains("try_send("))
        .filter(|statement| {
            let tail = statement.rsplit('{').next().unwrap_or(statement);
            tail.trim_start().starts_with("let _ =")
                || tail.trim_start().starts_with("_ =")
                || statement.trim_end().ends_with(".ok()")
        })
        .count()
}

#[test]
fn no_try_send_result_is_discarded() {
    let root = root();
    let mut offenders = Vec::new();
    for file in program_sources(&root) {
        let found = discarded_try_sends(&program_code(&read(&root, &file)));
        let allowed = DISCARDED_TRY_SEND_EXCEPTIONS
            .iter()
            .find(|(path, ..)| *path == file)
            .map_or(0, |(_, count, _)| *count);
        if found > allowed {
            offenders.push(format!("{file}: {found} (allowed {allowed})"));
        }
    }
    assert!(
        offenders.is_empty(),
        "discarded `try_send` results: count the drop in a metric or handle it:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_tidy_rules_catch_what_they_are_for() {
    assert_eq!(discarded_try_sends("fn f() { let _ = tx.try_send(1); }"), 1);
    assert_eq!(
        discarded_try_sends("let _ = self\n    .events\n    .try_send(event)"),
        1
    );
    assert_eq!(
        discarded_try_sends("if tx.try_send(1).is_err() { dropped += 1 }"),
        0
    );
    assert_eq!(
        program_code("a\n// bollard\n#[cfg(test)]\nmod tests {}"),
        "a"
    );
    assert_eq!(
        path_tokens("`router.rs` and `sfu/` but not `/ws`, `voice_<n>` or `calls-sfu`"),
        ["router.rs", "sfu/"]
    );
}

#[test]
fn every_config_keys_table_is_checked_against_its_docs() {
    let root = root();
    let mut tables = 0;
    let mut unchecked = Vec::new();
    for krate in PROGRAM_CRATES {
        let files: Vec<String> = files_under(&root, &format!("{krate}/src"))
            .into_iter()
            .filter(|file| file.ends_with(".rs"))
            .collect();
        let has_table = files
            .iter()
            .any(|file| read(&root, file).contains("pub const KEYS"));
        if !has_table {
            continue;
        }
        tables += 1;
        let checked = files.iter().any(|file| {
            let text = read(&root, file);
            text.contains("include_str!(\"") && text.contains("/docs/") && text.contains("in KEYS")
        });
        if !checked {
            unchecked.push(*krate);
        }
    }
    assert!(tables >= 2, "the SFU's and the offloader's KEYS tables");
    assert!(
        unchecked.is_empty(),
        "config KEYS tables without a test against their docs table: {unchecked:?}"
    );
}

/// The docs rows of every config key: `| `key` | `ENV` | … |` with the table's default in a cell.
#[test]
fn every_config_key_has_its_docs_row() {
    use calls_offloader::config as offloader;
    let root = root();
    let mut missing = Vec::new();
    let offloader_doc = read(&root, "docs/offloader.md");
    for (key, _, default, _) in offloader::KEYS {
        let row = format!("| `{key}` | `{}` | `{default}` |", offloader::env_name(key));
        if !offloader_doc.contains(&row) {
            missing.push(format!("docs/offloader.md: {row}"));
        }
    }
    let sfu_doc = read(&root, "docs/sfu-config.md");
    for key in calls_sfu::config::KEYS {
        let start = format!("| `{}` | `{}` |", key.file_key, key.env_var());
        let row = sfu_doc.lines().find(|line| line.starts_with(&start));
        let documented = match (row, key.default) {
            (None, _) => false,
            (Some(row), Some(default)) => row.contains(&format!("| `{default}` |")),
            (Some(_), None) => true,
        };
        if !documented {
            missing.push(format!(
                "docs/sfu-config.md: {start} (default {:?})",
                key.default
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "config keys without their docs row:\n{}",
        missing.join("\n")
    );
}
