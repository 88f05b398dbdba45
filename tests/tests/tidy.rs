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
//! - no non-test function is longer than [`MAX_FUNCTION_LINES`] lines (a long function hides decisions
//!   that belong in a pure core, and nobody reads it in one sitting).

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

/// The longest a non-test function may be, in lines from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 100;

/// Non-test functions allowed over [`MAX_FUNCTION_LINES`]: file, function, why. An entry whose function
/// is no longer too long fails the rule too, so the list only shrinks.
const LONG_FUNCTION_EXCEPTIONS: &[(&str, &str, &str)] = &[
    (
        "transcriber/src/bin/transcriber-bench.rs",
        "run",
        "a benchmark's one measuring sequence, read top to bottom (not program code)",
    ),
    // Temporary, issue 16: being split by other work of the same issue; removed when it merges.
    (
        "offloader/src/config.rs",
        "validate",
        "issue 16 item 4: split by section",
    ),
    (
        "offloader/src/metrics.rs",
        "new",
        "issue 16 item 4 (offloader config and metrics work)",
    ),
    (
        "offloader/src/backend/swarm/spec.rs",
        "service_spec",
        "issue 16 item 4 (offloader backend work)",
    ),
    (
        "offloader/src/api/jobs.rs",
        "validate_request",
        "issue 16 item 4: input keys checked against protocol's lists",
    ),
    (
        "sfu/src/config.rs",
        "validate",
        "issue 16 item 4: split by section",
    ),
    (
        "sfu/src/session.rs",
        "run_joined",
        "issue 16 item 2 (shared WebRTC crate, SFU session work)",
    ),
    (
        "participant/src/client.rs",
        "join_inner",
        "issue 16 item 2 (shared WebRTC crate, participant work)",
    ),
    (
        "participant/src/cli.rs",
        "run",
        "issue 16 item 2 (participant work)",
    ),
    (
        "transcriber/src/engine.rs",
        "decode_cancellable",
        "issue 16 (transcriber engine work)",
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

/// Whether a token may start after `before`: not inside an identifier (a `b` prefix of a byte
/// string counts as part of the literal).
fn starts_token(before: &[char]) -> bool {
    let is_ident = |c: &char| c.is_alphanumeric() || *c == '_';
    match before {
        ['b'] => true,
        [.., p, 'b'] => !is_ident(p),
        [.., p] => !is_ident(p),
        [] => true,
    }
}

/// `code` with comments, string literals and char literals blanked out (newlines kept, so line numbers
/// stay true), leaving only the braces that are code.
fn blank_literals_and_comments(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let blank = |out: &mut String, c: char| out.push(if c == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && starts_token(&chars[..i]) {
            // A raw string: r"…", r#"…"# (any number of #), br"…".
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let closing: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = i + 2 + hashes;
            let rest: String = chars[body_start..].iter().collect();
            let body_len = rest
                .find(&closing)
                .map_or(chars.len() - body_start, |at| rest[..at].chars().count());
            let end = (body_start + body_len + closing.chars().count()).min(chars.len());
            for c in &chars[i..end] {
                blank(&mut out, *c);
            }
            i = end;
        } else if c == '"' {
            blank(&mut out, c);
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
                if i < chars.len() {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
            if i < chars.len() {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{7f}') or a lifetime ('a): only the former is blanked.
            let literal_len = match (next, chars.get(i + 2)) {
                (Some('\\'), _) => chars[i + 2..]
                    .iter()
                    .skip(1)
                    .position(|c| *c == '\'')
                    .map(|at| at + 4),
                (Some(_), Some('\'')) => Some(3),
                _ => None,
            };
            let len = literal_len.unwrap_or(1);
            for c in &chars[i..(i + len).min(chars.len())] {
                if literal_len.is_some() {
                    blank(&mut out, *c);
                } else {
                    out.push(*c);
                }
            }
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The functions in `code` (test module excluded) longer than `limit` lines: name, first line
/// (1-based), length in lines. A nested function counts as part of the one around it.
fn long_functions(code: &str, limit: usize) -> Vec<(String, usize, usize)> {
    let code = match code.find("#[cfg(test)]") {
        Some(at) => &code[..at],
        None => code,
    };
    let text: Vec<char> = blank_literals_and_comments(code).chars().collect();
    let line_at = |at: usize| 1 + text[..at].iter().filter(|c| **c == '\n').count();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut i = 0;
    while i + 2 < text.len() {
        let keyword = text[i] == 'f'
            && text[i + 1] == 'n'
            && text[i + 2].is_whitespace()
            && (i == 0 || !is_ident(text[i - 1]));
        if !keyword {
            i += 1;
            continue;
        }
        let name_start = i
            + 2
            + text[i + 2..]
                .iter()
                .take_while(|c| c.is_whitespace())
                .count();
        let name: String = text[name_start..]
            .iter()
            .take_while(|c| is_ident(**c))
            .collect();
        if name.is_empty() {
            i += 2;
            continue;
        }
        // The body starts at the first `{` outside parentheses and brackets; a `;` there first means a
        // declaration without a body.
        let mut nesting = 0i32;
        let mut body = None;
        for (at, c) in text.iter().enumerate().skip(name_start) {
            match c {
                '(' | '[' => nesting += 1,
                ')' | ']' => nesting -= 1,
                ';' if nesting == 0 => break,
                '{' if nesting == 0 => {
                    body = Some(at);
                    break;
                }
                _ => {}
            }
        }
        let Some(open) = body else {
            i = name_start;
            continue;
        };
        let mut depth = 0;
        let mut close = text.len() - 1;
        for (at, c) in text.iter().enumerate().skip(open) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => continue,
            }
            if depth == 0 {
                close = at;
                break;
            }
        }
        let (first, last) = (line_at(i), line_at(close));
        if last - first + 1 > limit {
            found.push((name, first, last - first + 1));
        }
        i = close + 1;
    }
    found
}

/// The workspace members that are not test support (`tests/`, `browser-test/`), read from the root
/// manifest so a new crate is held to the rules from its first day.
fn non_test_crates(root: &Path) -> Vec<String> {
    let manifest = read(root, "Cargo.toml");
    let members = manifest
        .split("members = [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("the root Cargo.toml lists its members");
    members
        .split(',')
        .map(|member| member.trim().trim_matches('"').to_owned())
        .filter(|member| !member.is_empty() && member != "tests" && member != "browser-test")
        .collect()
}

#[test]
fn no_non_test_function_is_over_the_length_limit() {
    let root = root();
    let mut offenders = Vec::new();
    let mut excepted = Vec::new();
    for krate in non_test_crates(&root) {
        let sources = files_under(&root, &format!("{krate}/src"))
            .into_iter()
            .filter(|file| file.ends_with(".rs") && !file.ends_with("_tests.rs"))
            .filter(|file| !file.ends_with("/tests.rs") && !file.contains("/tests/"));
        for file in sources {
            for (name, line, length) in long_functions(&read(&root, &file), MAX_FUNCTION_LINES) {
                if LONG_FUNCTION_EXCEPTIONS
                    .iter()
                    .any(|(path, function, _)| *path == file && *function == name)
                {
                    excepted.push((file.clone(), name));
                } else {
                    offenders.push(format!("{file}:{line} `{name}`: {length} lines"));
                }
            }
        }
    }
    let stale: Vec<String> = LONG_FUNCTION_EXCEPTIONS
        .iter()
        .filter(|(path, function, _)| {
            !excepted
                .iter()
                .any(|(file, name)| file == path && name == function)
        })
        .map(|(path, function, _)| format!("{path} `{function}`"))
        .collect();
    assert!(
        offenders.is_empty(),
        "non-test functions over {MAX_FUNCTION_LINES} lines (split them: the decisions into a pure \
         core, the steps into named functions):\n{}",
        offenders.join("\n")
    );
    assert!(
        stale.is_empty(),
        "exceptions in LONG_FUNCTION_EXCEPTIONS that are no longer needed: remove them:\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_length_rule_reads_rust_as_rust() {
    let body = |lines: usize| "    x();\n".repeat(lines);
    let long = format!("fn long() {{\n{}}}\n", body(99));
    assert_eq!(long_functions(&long, 100), [("long".to_owned(), 1, 101)]);
    let short = format!("fn short() {{\n{}}}\n", body(98));
    assert!(long_functions(&short, 100).is_empty());
    // Braces in strings, raw strings, chars and comments are not code; lifetimes are not chars.
    let tricky = format!(
        "fn a<'x>(s: &'x str) -> [u8; 2] {{\n    let _ = \"}}\";\n    let _ = r#\"}}\"#;\n    \
         let _ = '}}';\n    let _ = '\\'';\n    // }}\n    /* }} */\n{}}}\nfn b() {{}}\n",
        body(100)
    );
    assert_eq!(long_functions(&tricky, 100), [("a".to_owned(), 1, 108)]);
    // A declaration without a body, and the test module, are not functions to measure.
    let declared = format!(
        "trait T {{ fn f(&self); }}\n#[cfg(test)]\nmod tests {{ fn t() {{\n{}}} }}",
        body(200)
    );
    assert!(long_functions(&declared, 100).is_empty());
}
