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
//!   the default the table gives (read from the tables themselves, not from their source text);
//! - no import cycle between the files of a crate (`a.rs` using `crate::b` while `b.rs`, directly or
//!   through others, uses `crate::a`): shared pieces move down into a file both use.
//! - no non-test function is longer than [`MAX_FUNCTION_LINES`] lines (a long function hides decisions
//!   that belong in a pure core, and nobody reads it in one sitting).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Program crates: their `src/` is held to the channel and `try_send` rules (test-support crates such
/// as `tests/` and `browser-test/` are not programs).
const PROGRAM_CRATES: &[&str] = &[
    "protocol",
    "rtc",
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
const DISCARDED_TRY_SEND_EXCEPTIONS: &[(&str, usize, &str)] = &[(
    "sfu/src/session.rs",
    2,
    "a session's last error reply to a client whose queue is full (SFU hardening work owns it)",
)];

/// Import cycles between files still allowed, per crate: the files of the cycle (sorted, as the
/// rule prints them), and why.
const IMPORT_CYCLE_EXCEPTIONS: &[(&str, &[&str], &str)] = &[];

/// The longest a non-test function may be, in lines from its `fn` line to its closing brace.
const MAX_FUNCTION_LINES: usize = 100;

/// Non-test functions allowed over [`MAX_FUNCTION_LINES`]: file, function, why. An entry whose function
/// is no longer too long fails the rule too, so the list only shrinks.
const LONG_FUNCTION_EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "transcriber/src/bin/transcriber-bench.rs",
    "run",
    "a benchmark's one measuring sequence, read top to bottom (not program code)",
)];

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
    let files = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter()
            .map(|(file, code)| (file.to_string(), program_code(code)))
            .collect()
    };
    // A cycle through a re-export of the crate root, one through a `use` group, one through
    // `super::` and a three-file one; `$crate::` and comments are not imports.
    let cyclic = files(&[
        ("lib.rs", "mod a;\npub use a::Thing;\nfn f() {}"),
        ("a.rs", "use crate::b::X;\npub struct Thing;"),
        (
            "b.rs",
            "use crate::Thing;\n// crate::c::Y\nmacro_rules! m { () => { $crate::c::Z } }",
        ),
        ("c.rs", "use crate::{d, e::Q};"),
        ("d.rs", "fn f() { super::c::g() }"),
        ("e.rs", "use crate::f::R;"),
        ("f.rs", "fn r() -> crate::e::Q { todo!() }"),
        ("g/mod.rs", "use super::h::S;"),
        ("h.rs", "use crate::g::T;"),
    ]);
    assert_eq!(
        import_cycles(&cyclic),
        [
            vec!["a.rs", "b.rs"],
            vec!["c.rs", "d.rs"],
            vec!["e.rs", "f.rs"],
            vec!["g/mod.rs", "h.rs"]
        ]
    );
    let layered = files(&[
        ("lib.rs", "pub use b::X;\nuse crate::a::A;"),
        ("a.rs", "use crate::X;\nuse crate::b::{self, Y};"),
        (
            "b.rs",
            "pub struct X;\n#[cfg(test)]\nmod tests { use crate::a::A; }",
        ),
    ]);
    assert!(import_cycles(&layered).is_empty());
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

/// The module path of a file below a crate's `src/` (`a/b.rs` and `a/b/mod.rs` are `a::b`; `lib.rs`
/// is the root).
fn module_of(file: &str) -> Vec<String> {
    let mut path: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(path.last().map(String::as_str), Some("mod" | "lib")) {
        path.pop();
    }
    path
}

/// The paths `code` names through `crate::` or `super::`, each as its segments (the first is
/// `crate` or `super`, repeated for `super::super::`); a `use` group gives one path per member.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut found = Vec::new();
    for (at, keyword) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| is_ident(c) || c == '$' || c == ':') {
            continue;
        }
        let mut prefix = vec![keyword.trim_end_matches("::").to_owned()];
        let mut rest = &code[at + keyword.len()..];
        while let Some(after) = rest.strip_prefix("super::") {
            prefix.push("super".to_owned());
            rest = after;
        }
        collect_paths(prefix, rest, &mut found);
    }
    found
}

/// Adds to `found` the path `prefix` continued by the segments at the start of `rest` (a
/// `{…}` group: one path per member).
fn collect_paths(mut prefix: Vec<String>, mut rest: &str, found: &mut Vec<Vec<String>>) {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    loop {
        rest = rest.trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let end = group
                .char_indices()
                .find_map(|(i, c)| {
                    depth += match c {
                        '{' => 1,
                        '}' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i)
                })
                .unwrap_or(group.len());
            let mut member_depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices().chain([(end, ',')]) {
                match c {
                    '{' => member_depth += 1,
                    '}' => member_depth -= 1,
                    ',' if member_depth == 0 => {
                        let member = group[start..i].trim();
                        if member == "self" {
                            found.push(prefix.clone());
                        } else if !member.is_empty() {
                            collect_paths(prefix.clone(), member, found);
                        }
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            return;
        }
        let length = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        if length == 0 {
            break;
        }
        prefix.push(rest[..length].to_owned());
        rest = &rest[length..];
        match rest.strip_prefix("::") {
            Some(after) => rest = after,
            None => break,
        }
    }
    if prefix
        .iter()
        .any(|segment| segment != "crate" && segment != "super")
    {
        found.push(prefix);
    }
}

/// The file a path names: the module of the longest prefix that is a file; a name the crate root
/// re-exports (`pub use a::Thing`) is the file that defines it.
fn file_of(
    path: &[String],
    modules: &BTreeMap<Vec<String>, String>,
    exports: &BTreeMap<String, String>,
) -> Option<String> {
    let (found, length) = (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).map(|file| (file.clone(), n)))?;
    if length == 0 {
        if let Some(file) = path.first().and_then(|name| exports.get(name)) {
            return Some(file.clone());
        }
    }
    Some(found)
}

/// The import cycles among a crate's files (each `(file below src/, program code)`): every group of
/// files that reach each other through `crate::`/`super::` paths, sorted.
fn import_cycles(files: &[(String, String)]) -> Vec<Vec<String>> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|(file, _)| (module_of(file), file.clone()))
        .collect();
    // What the crate root re-exports, by name: `pub use a::b::{X, Y}`.
    let root_code = files
        .iter()
        .find(|(file, _)| file == "lib.rs")
        .map_or("", |(_, code)| code.as_str());
    let mut exports = BTreeMap::new();
    let mut reexports = Vec::new();
    for (at, _) in root_code.match_indices("pub use ") {
        let statement = &root_code[at..];
        let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
        reexports.push(statement);
        let used = statement["pub use ".len()..].trim();
        let mut paths = Vec::new();
        collect_paths(
            vec!["crate".to_owned()],
            used.strip_prefix("crate::").unwrap_or(used),
            &mut paths,
        );
        for mut path in paths {
            let name = path.last().cloned().unwrap_or_default();
            path.remove(0);
            if let Some(file) = file_of(&path, &modules, &BTreeMap::new()) {
                if file != "lib.rs" {
                    exports.insert(name, file);
                }
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in files {
        let module = module_of(file);
        // The crate root's re-exports are its interface, no imports of its own.
        let mut code = code.clone();
        if file == "lib.rs" {
            for statement in &reexports {
                code = code.replace(statement, "");
            }
        }
        let targets = edges.entry(file.clone()).or_default();
        for path in crate_paths(&code) {
            let supers = path.iter().take_while(|s| *s == "super").count();
            // `super` of `a/b.rs` and of `a/b/mod.rs` (both `a::b`) is `a`.
            let mut absolute = match supers {
                0 => Vec::new(),
                _ => module[..module.len().saturating_sub(supers)].to_vec(),
            };
            absolute.extend(path.iter().skip(supers.max(1)).cloned());
            if let Some(target) = file_of(&absolute, &modules, &exports) {
                if &target != file {
                    targets.insert(target);
                }
            }
        }
    }
    strongly_connected(&edges)
        .into_iter()
        .filter(|group| group.len() > 1)
        .collect()
}

/// The strongly connected components of `edges` (Tarjan), each sorted, in sorted order.
fn strongly_connected(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Search<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        groups: Vec<Vec<String>>,
    }
    impl<'a> Search<'a> {
        fn visit(&mut self, node: &'a str) {
            let order = self.index.len();
            self.index.insert(node, order);
            self.low.insert(node, order);
            self.stack.push(node);
            for next in self.edges.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.stack.contains(&next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut group = Vec::new();
                while let Some(member) = self.stack.pop() {
                    group.push(member.to_owned());
                    if member == node {
                        break;
                    }
                }
                group.sort();
                self.groups.push(group);
            }
        }
    }
    let mut search = Search {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        groups: Vec::new(),
    };
    for node in edges.keys() {
        if !search.index.contains_key(node.as_str()) {
            search.visit(node);
        }
    }
    search.groups.sort();
    search.groups
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let root = root();
    let mut cycles = Vec::new();
    for krate in PROGRAM_CRATES
        .iter()
        .chain(&["tls", "browser-test", "tests"])
    {
        let src = format!("{krate}/src/");
        let files: Vec<(String, String)> = files_under(&root, &src)
            .into_iter()
            .filter(|file| file.ends_with(".rs") && !file.ends_with("_tests.rs"))
            .filter_map(|file| {
                let inside = file.strip_prefix(&src)?.to_owned();
                // Binaries are crates of their own; unit-test files only look back at their module.
                let own_crate = inside.starts_with("bin/") || inside == "main.rs";
                let test = inside.ends_with("tests.rs") || inside.contains("tests/");
                (!own_crate && !test).then(|| (inside, program_code(&read(&root, &file))))
            })
            .collect();
        for cycle in import_cycles(&files) {
            let allowed = IMPORT_CYCLE_EXCEPTIONS
                .iter()
                .any(|(exception, members, _)| exception == krate && *members == cycle);
            if !allowed {
                cycles.push(format!("{krate}: {}", cycle.join(" <-> ")));
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files that import each other (docs/ARCHITECTURE.md: move the shared piece down into a file \
         both use):\n{}",
        cycles.join("\n")
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
