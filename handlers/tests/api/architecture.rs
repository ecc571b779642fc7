//! The module structure the code keeps: no module imports a module that imports it back.
//!
//! Every `crate::…`, `super::…` and `self::…` path in `handlers/src` is an edge from the file's
//! module to the longest existing module the path names. Edges are compared among siblings at
//! every depth (`http` and `functions` are siblings under the crate; `adapters::embedded::queue`
//! and `adapters::embedded::sqlite` under `adapters::embedded`): an edge from one sibling's
//! subtree into another's is an import between the two. A parent's edges to its own children (a
//! facade re-exporting them) are not imports between siblings and are not counted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `handlers/src/a/b.rs` → `["a", "b"]`; `a/mod.rs` → `["a"]`; `lib.rs` → `[]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            // `bin/` holds binaries, not modules of the library; `tests.rs` files are unit tests.
            if p.file_name().is_some_and(|n| n != "bin") {
                files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_some_and(|n| n != "main.rs" && n != "tests.rs")
        {
            out.push(p);
        }
    }
}

/// The paths a file names: `crate::a::b`, `super::x`, `self::y`, including inside `use` groups
/// (`use crate::{a::b, c}`), resolved to absolute module paths.
fn referenced_paths(module: &[String], is_mod_file: bool, text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    // Drop comments: doc comments name paths without importing them.
    let code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let bytes: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = |kw: &str| {
            code_slice(&bytes, i, kw.len()) == kw
                && (i == 0 || !ident(bytes[i - 1]) && bytes[i - 1] != ':')
                && code_slice(&bytes, i + kw.len(), 2) == "::"
        };
        let base: Option<(Vec<String>, usize)> = if starts("crate") {
            Some((vec![], 5))
        } else if starts("super") {
            // In `a/b.rs` (module a::b) and in `a/b/mod.rs` (module a::b), `super` is `a`.
            let _ = is_mod_file;
            Some((module[..module.len().saturating_sub(1)].to_vec(), 5))
        } else if starts("self") {
            Some((module.to_vec(), 4))
        } else {
            None
        };
        let Some((mut prefix, len)) = base else {
            i += 1;
            continue;
        };
        i += len + 2;
        use_tree(&bytes, &mut i, prefix.clone(), &mut out);
        prefix.clear();
    }
    out
}

/// One `use` tree (or expression path) after `crate::`: segments joined by `::`, `{a, b::c}`
/// groups, `*`, `self`.
fn use_tree(c: &[char], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let ident = |ch: char| ch.is_ascii_alphanumeric() || ch == '_';
    let skip_ws = |i: &mut usize| {
        while *i < c.len() && c[*i].is_whitespace() {
            *i += 1;
        }
    };
    skip_ws(i);
    if *i < c.len() && c[*i] == '{' {
        *i += 1;
        loop {
            skip_ws(i);
            if *i >= c.len() || c[*i] == '}' {
                *i += 1;
                return;
            }
            use_tree(c, i, prefix.clone(), out);
            skip_ws(i);
            if *i < c.len() && c[*i] == ',' {
                *i += 1;
            }
        }
    }
    let start = *i;
    while *i < c.len() && ident(c[*i]) {
        *i += 1;
    }
    if *i > start {
        let seg: String = c[start..*i].iter().collect();
        if seg != "self" {
            prefix.push(seg);
        }
    }
    if code_slice(c, *i, 2) == "::" {
        *i += 2;
        use_tree(c, i, prefix, out);
        return;
    }
    if *i < c.len() && c[*i] == '*' {
        *i += 1;
    }
    // `as alias`: the alias names nothing new.
    skip_ws(i);
    if code_slice(c, *i, 3) == "as " {
        *i += 3;
        skip_ws(i);
        while *i < c.len() && ident(c[*i]) {
            *i += 1;
        }
    }
    out.push(prefix);
}

fn code_slice(chars: &[char], at: usize, len: usize) -> String {
    chars.iter().skip(at).take(len).collect()
}

/// Module-to-module import edges of the library.
fn edges() -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut list = Vec::new();
    files(&src(), &mut list);
    let modules: BTreeSet<Vec<String>> = list.iter().map(|f| module_of(f)).collect();
    let mut edges = BTreeSet::new();
    for file in &list {
        let from = module_of(file);
        let is_mod_file = file.file_name().is_some_and(|n| n == "mod.rs");
        let text = std::fs::read_to_string(file).unwrap();
        // Unit tests inside a file may reach anywhere; only the shipped code counts.
        let text = text.split("#[cfg(test)]").next().unwrap();
        for path in referenced_paths(&from, is_mod_file, text) {
            let to =
                (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default();
            if to != from {
                edges.insert((from.clone(), to));
            }
        }
    }
    edges
}

/// Pairs of sibling modules that import each other (directly or through their subtrees).
fn cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let mut between: BTreeMap<(Vec<String>, Vec<String>), Vec<String>> = BTreeMap::new();
    for (from, to) in edges {
        // The first position where the two paths differ: their sibling ancestors.
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // an ancestor and its descendant
        }
        let a = from[..=common].to_vec();
        let b = to[..=common].to_vec();
        between.entry((a, b)).or_default().push(format!("{} → {}", from.join("::"), to.join("::")));
    }
    let mut out = Vec::new();
    for ((a, b), via) in &between {
        if a < b
            && let Some(back) = between.get(&(b.clone(), a.clone()))
        {
            out.push(format!("{} ⇄ {}: {:?} / {:?}", a.join("::"), b.join("::"), via, back));
        }
    }
    out
}

#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    let edges = edges();
    assert!(edges.len() > 50, "the scanner found the imports ({} edges)", edges.len());
    let found = cycles(&edges);
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_grouped_and_relative_imports() {
    let m = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let paths = referenced_paths(
        &m("adapters::embedded::queue"),
        false,
        "use crate::{domain::{Product, ocr::Status}, ports};\nuse super::sqlite::Db;\nlet x = crate::http::meta::health();\n// crate::ignored::in_comments\n",
    );
    for want in
        ["domain::Product", "domain::ocr::Status", "ports", "adapters::embedded::sqlite::Db", "http::meta::health"]
    {
        assert!(paths.contains(&m(want)), "{want} in {paths:?}");
    }
    assert!(!paths.iter().any(|p| p.first().is_some_and(|s| s == "ignored")));
    let e: BTreeSet<_> = [(m("http"), m("functions")), (m("functions::ocr"), m("http::error"))].into_iter().collect();
    assert_eq!(cycles(&e).len(), 1, "a cycle between siblings through their subtrees is found");
}
