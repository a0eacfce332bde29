//! The layering of `src/`, checked the way rust-analyzer's `tidy` checks its rules: by reading the
//! source. Every top-level module of the crate has a place in [`LAYERS`], lowest first, and may use
//! only the modules placed before it; so the module graph has no cycle and reads top to bottom as
//! ARCHITECTURE.md draws it. And nothing outside `src/plugin` names wasmtime.
//!
//! A use is a `crate::<module>` path in code (in a `use` tree or inline), comments and string
//! literals left out. Unit tests inside a module count too: they are part of it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The top-level modules, lowest first, a line a layer. A module may use any module listed before
/// it, in its own layer or below, and none after it.
const LAYERS: &[(&str, &[&str])] = &[
    ("foundations", &["completion", "event", "fault", "slot", "telemetry", "tls"]),
    ("formats and storage", &["codec", "wal", "nats_client"]),
    ("the broker", &["broker"]),
    (
        "what rides on the broker",
        &["auth", "permission", "queue", "dead_letter", "unrouted", "tap", "capability", "kafka"],
    ),
    ("roles", &["route", "sink"]),
    ("the plugin runtime", &["plugin"]),
    ("ways in", &["ingest", "gateway", "source"]),
    ("assembly", &["config", "pipeline"]),
    ("control", &["reload", "admin"]),
    ("the program", &["server", "cli"]),
];

/// The one module that may name wasmtime (and wasmtime-wasi, wasmtime-wit-bindgen...).
const WASMTIME_HOME: &str = "plugin";

#[test]
fn lower_modules_never_use_higher_ones() {
    let order: Vec<&str> = LAYERS.iter().flat_map(|(_, modules)| modules.iter().copied()).collect();
    let rank = |module: &str| order.iter().position(|m| *m == module);
    let mut problems = String::new();
    let declared = declared_modules();
    for module in &declared {
        if rank(module).is_none() {
            writeln!(problems, "src/lib.rs: module `{module}` has no place in LAYERS (tests/layering.rs)").unwrap();
        }
    }
    for file in source_files() {
        let Some(module) = top_level_module(&file) else { continue };
        let code = code_only(&std::fs::read_to_string(&file).expect("a readable source file"));
        let Some(own) = rank(&module) else { continue };
        for used in crate_paths(&code) {
            if used == module || !declared.contains(&used) {
                continue;
            }
            match rank(&used) {
                Some(theirs) if theirs < own => {}
                _ => writeln!(
                    problems,
                    "{}: `{module}` ({}) uses `{used}` ({}), which is not below it",
                    relative(&file),
                    layer_of(&module),
                    layer_of(&used),
                )
                .unwrap(),
            }
        }
    }
    assert!(problems.is_empty(), "layering broken:\n{problems}");
}

#[test]
fn only_the_plugin_runtime_names_wasmtime() {
    let mut problems = String::new();
    for file in source_files() {
        if top_level_module(&file).as_deref() == Some(WASMTIME_HOME) {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(&file).expect("a readable source file"));
        if code.contains("wasmtime") {
            writeln!(problems, "{} names wasmtime; only src/{WASMTIME_HOME} may", relative(&file)).unwrap();
        }
    }
    assert!(problems.is_empty(), "{problems}");
}

#[test]
fn the_reader_sees_through_comments_strings_and_use_trees() {
    let code = code_only(
        "use crate::{event::Event, broker::{self, Broker}};\n// crate::admin\n/* crate::cli */\n\
         let s = \"crate::server\"; let r = r#\"crate::reload\"#; let q = '\"'; let l: &'static str = x;\n\
         crate::queue::push(); fn f<'a>() {}\n",
    );
    let used: BTreeSet<String> = crate_paths(&code).into_iter().collect();
    assert_eq!(used, ["broker", "event", "queue"].map(String::from).into());
}

fn layer_of(module: &str) -> &'static str {
    LAYERS.iter().find(|(_, modules)| modules.contains(&module)).map_or("nowhere", |(name, _)| name)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn relative(file: &Path) -> String {
    file.strip_prefix(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap_or(file).display().to_string()
}

/// The modules `src/lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = code_only(&std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs"));
    lib.lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod ").or_else(|| line.trim().strip_prefix("mod ")))
        .map(|rest| rest.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// Every `.rs` file under `src/`.
fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a readable directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, files);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
}

/// The top-level module a file belongs to (`src/broker/cluster/stream.rs` → `broker`); `None` for
/// the crate roots.
fn top_level_module(file: &Path) -> Option<String> {
    let first = file.strip_prefix(src()).ok()?.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// `source` with comments, string literals and character literals blanked out.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let starts = |i: usize, s: &str| s.chars().enumerate().all(|(k, c)| chars.get(i + k) == Some(&c));
    while i < chars.len() {
        if starts(i, "//") {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if starts(i, "/*") {
            let mut depth = 0;
            while i < chars.len() {
                if starts(i, "/*") {
                    depth += 1;
                    i += 2;
                } else if starts(i, "*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if chars[i] == 'r'
            && (starts(i + 1, "\"") || starts(i + 1, "#"))
            && !is_ident(chars.get(i.wrapping_sub(1)))
        {
            // A raw string: r"..." or r#"..."#, as many hashes as it opens with.
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            if chars.get(i + 1 + hashes) != Some(&'"') {
                out.push(chars[i]);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
            i += 2 + hashes;
            while i < chars.len() && !starts(i, &close) {
                i += 1;
            }
            i += close.chars().count();
            out.push_str("\"\"");
        } else if chars[i] == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if chars[i] == '\'' && chars.get(i + 1) == Some(&'\\') {
            // An escaped character literal: '\n', '\'', '\u{7f}'.
            i += 3;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
        } else if chars[i] == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3; // A character literal; otherwise `'` starts a lifetime, kept as code.
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn is_ident(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The top-level modules named by `crate::` paths in `code`: `crate::a::b`, and each first name
/// of a use tree `crate::{a::b, c}`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if is_ident(before.as_ref()) || before == Some('$') {
            continue; // `eventyard_crate::`, `$crate::`
        }
        let rest_trimmed = rest.trim_start();
        if let Some(tree) = rest_trimmed.strip_prefix('{') {
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in tree.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
                if depth == 1 && c != ',' {
                    item.push(c);
                }
            }
            items.push(item);
            used.extend(items.iter().filter_map(|item| first_name(item)));
        } else if let Some(name) = first_name(rest_trimmed) {
            used.push(name);
        }
    }
    used.retain(|name| name != "self");
    used
}

fn first_name(path: &str) -> Option<String> {
    let name: String = path.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!name.is_empty()).then_some(name)
}
