//! The architecture, checked: no import cycles between the files of a crate,
//! no command module reaching into another, `unsafe` only in `sys`, and
//! every test starting the binary through `support::lockbox()`.
//!
//! It reads the sources as text (every `use` and every `crate::`/`super::`
//! path, resolved to the file that defines the module) rather than asking
//! the compiler: a cycle between files compiles fine, which is why it needs
//! a test to stay gone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The workspace's root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One crate's files by module path (`["commands", "daemon"]`).
struct Crate {
    files: BTreeMap<Vec<String>, String>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn load(src: &Path) -> Crate {
    let mut paths = Vec::new();
    rust_files(src, &mut paths);
    let mut files = BTreeMap::new();
    for p in paths {
        let rel = p.strip_prefix(src).unwrap();
        let mut segs: Vec<String> = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if segs.last().is_some_and(|s| s == "mod") {
            segs.pop();
        }
        if segs.len() == 1 && (segs[0] == "lib" || segs[0] == "main") {
            segs.clear();
        }
        files.insert(segs, strip(&std::fs::read_to_string(&p).unwrap()));
    }
    Crate { files }
}

/// The text without comments, string literals and the trailing unit-test
/// module (whose `super::` means the file itself).
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            // A raw string's hashes are rare here and hold no paths.
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i..].starts_with(b"'\"'") {
            // The char literal '"' would otherwise open a string.
            i += 3;
        } else if b[i..].starts_with(b"'\\") {
            // An escaped char literal ('\'', '\\', '\n').
            i += 3;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Expands a `use` tree (`a::{b, c::{d, e}}`) into paths.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if tree.is_empty() {
        return;
    }
    // Split at top-level commas.
    let mut depth = 0;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    if parts.len() > 1 {
        for p in parts {
            expand(p, prefix, out);
        }
        return;
    }
    let part = parts[0].trim();
    if let Some(open) = part.find('{') {
        let head: Vec<String> = part[..open]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let inner = &part[open + 1..part.rfind('}').unwrap_or(part.len())];
        let mut p = prefix.to_vec();
        p.extend(head);
        expand(inner, &p, out);
    } else {
        let path = part.split(" as ").next().unwrap_or(part);
        let mut p = prefix.to_vec();
        p.extend(
            path.split("::")
                .map(str::trim)
                .filter(|s| !s.is_empty() && *s != "*")
                .map(String::from),
        );
        out.push(p);
    }
}

/// Every path the file names: `use` trees and inline `crate::`/`super::`
/// paths.
fn paths_in(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("use ") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + 4..];
        if before.is_none_or(|c| !is_ident(c))
            && let Some(end) = after.find(';')
        {
            expand(&after[..end], &[], &mut out);
        }
        rest = after;
    }
    for anchor in ["crate::", "super::", "self::"] {
        let mut rest = text;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().next_back();
            let tail = &rest[i..];
            if before.is_none_or(|c| !is_ident(c) && c != ':') {
                let end = tail
                    .find(|c: char| !(is_ident(c) || c == ':'))
                    .unwrap_or(tail.len());
                out.push(
                    tail[..end]
                        .split("::")
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect(),
                );
            }
            rest = &tail[anchor.len()..];
        }
    }
    out
}

/// The files `module`'s file depends on (itself and the crate root left out).
fn edges(krate: &Crate, module: &[String], text: &str) -> BTreeSet<Vec<String>> {
    let mut deps = BTreeSet::new();
    for path in paths_in(text) {
        let Some(first) = path.first() else { continue };
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "super" | "self" => {
                let mut base = module.to_vec();
                let mut segs = path.iter().peekable();
                while let Some(s) = segs.peek() {
                    match s.as_str() {
                        "super" => {
                            base.pop();
                        }
                        "self" => {}
                        _ => break,
                    }
                    segs.next();
                }
                base.extend(segs.cloned());
                deps_of(krate, module, &base, &mut deps);
                continue;
            }
            _ => continue,
        };
        abs.extend(path[1..].iter().cloned());
        deps_of(krate, module, &abs, &mut deps);
    }
    deps
}

fn deps_of(krate: &Crate, module: &[String], abs: &[String], deps: &mut BTreeSet<Vec<String>>) {
    // The longest prefix that is a file.
    let target = (1..=abs.len())
        .rev()
        .map(|n| abs[..n].to_vec())
        .find(|p| krate.files.contains_key(p));
    if let Some(t) = target
        && t != module
        && !module.starts_with(&t)
    {
        deps.insert(t);
    }
}

fn graph(krate: &Crate) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    krate
        .files
        .iter()
        .map(|(m, text)| (m.clone(), edges(krate, m, text)))
        .collect()
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<String>> {
    struct S<'a> {
        g: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<&'a Vec<String>, usize>,
        low: BTreeMap<&'a Vec<String>, usize>,
        stack: Vec<&'a Vec<String>>,
        on: BTreeSet<&'a Vec<String>>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut S<'a>, v: &'a Vec<String>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.get(v).into_iter().flatten() {
            let Some((w, _)) = g.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(name(w));
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = S {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn name(m: &[String]) -> String {
    if m.is_empty() {
        "(root)".into()
    } else {
        m.join("::")
    }
}

const CRATES: [&str; 3] = ["src", "vault/src", "restore/src"];

#[test]
fn no_import_cycles_between_files() {
    let mut found = Vec::new();
    for dir in CRATES {
        let krate = load(&root().join(dir));
        assert!(krate.files.len() > 3, "{dir}: too few files read");
        for c in cycles(&graph(&krate)) {
            found.push(format!("{dir}: {}", c.join(" <-> ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_command_module_imports_another() {
    let krate = load(&root().join("src"));
    let g = graph(&krate);
    let command = |m: &[String]| -> Option<String> {
        (m.len() >= 2 && m[0] == "commands").then(|| m[1].clone())
    };
    let mut found = Vec::new();
    for (m, deps) in &g {
        let Some(from) = command(m) else { continue };
        for d in deps {
            if let Some(to) = command(d)
                && to != from
            {
                found.push(format!("{} uses {}", name(m), name(d)));
            }
        }
    }
    assert!(
        found.is_empty(),
        "command modules import each other:\n{}",
        found.join("\n")
    );
}

#[test]
fn unsafe_code_lives_only_in_sys() {
    let mut found = Vec::new();
    for dir in CRATES {
        let krate = load(&root().join(dir));
        for (m, text) in &krate.files {
            if dir == "vault/src" && m == &["sys".to_string()] {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                let t = line.trim_start();
                if ["unsafe {", "unsafe fn", "unsafe impl", "unsafe extern"]
                    .iter()
                    .any(|k| t.contains(k))
                    || t.contains("= unsafe")
                {
                    found.push(format!("{dir}/{}: line {}: {t}", name(m), n + 1));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "`unsafe` outside vault/src/sys.rs:\n{}",
        found.join("\n")
    );
}

/// `support::lockbox()` points `LOCKBOX_CONFIG` at a path that cannot
/// exist, so a test that forgets `--config` fails instead of reading the
/// host's `/etc/lockbox/lockbox.toml`. A test that starts the binary any
/// other way loses that guard.
#[test]
fn tests_start_the_binary_through_support_lockbox() {
    let mut files = Vec::new();
    rust_files(&root().join("tests/it"), &mut files);
    let mut found = Vec::new();
    for file in files {
        if file.ends_with("support/mod.rs") || file.ends_with("architecture.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("Command::new(") && line.contains("BIN") {
                found.push(format!(
                    "{}: line {}: {}",
                    file.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "start lockbox with support::lockbox():\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checks_see_a_cycle_when_there_is_one() {
    // The resolver must not be so lax that every check passes vacuously.
    let krate = Crate {
        files: [
            (vec!["a".to_string()], "use crate::b::thing;".to_string()),
            (
                vec!["b".to_string()],
                "fn f() { super::a::other(); }".to_string(),
            ),
            (
                vec!["c".to_string()],
                "use crate::{a, b::{x, y}};".to_string(),
            ),
        ]
        .into_iter()
        .collect(),
    };
    let g = graph(&krate);
    assert_eq!(cycles(&g), vec![vec!["a".to_string(), "b".to_string()]]);
    assert_eq!(g[&vec!["c".to_string()]].len(), 2);
}
