//! The layout's rule that no two modules import each other, checked on the source itself.
//!
//! A module here is a top-level module (`config`, `printer`, …) or one module of a side
//! (`login::pipeline`, `cluster::setup`, `commands::github`, …). Every `crate::…` and `super::…`
//! path outside comments and test code is an edge from the module of its file to the module it
//! names; a path into one's own module, a parent or a child does not count. The graph must have
//! no cycle: docs/architecture.md draws it, and a cycle would mean two modules that can only be
//! understood (and changed) together.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules split one level further: the two sides and the commands.
const SIDES: [&str; 3] = ["login", "cluster", "commands"];

fn node_of(segments: &[String]) -> Option<String> {
    match segments {
        [] => None,
        [side, module, ..] if SIDES.contains(&side.as_str()) => Some(format!("{side}::{module}")),
        [first, ..] => Some(first.clone()),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file under `src/` (`login/oidc/mod.rs` → `[login, oidc]`).
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut segments: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        segments.pop();
    }
    segments
}

/// The code of a file without comments and without its `#[cfg(test)] mod tests`.
fn code(text: &str) -> String {
    let text = text
        .find("#[cfg(test)]\nmod tests {")
        .map_or(text, |at| &text[..at]);
    text.lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The paths a piece of code names: `crate::a::b` and `super::a` (resolved against `me`).
fn named_paths(code: &str, me: &[String]) -> Vec<Vec<String>> {
    let is_ident = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_';
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::").chain(code.match_indices("super::")) {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let rest = &code[at..];
        let path: Vec<&str> = rest
            .split(|c: char| !(is_ident(c) || c == ':'))
            .next()
            .unwrap_or_default()
            .split("::")
            .filter(|s| !s.is_empty())
            .collect();
        let mut segments: Vec<String> = if path.first() == Some(&"crate") {
            Vec::new()
        } else {
            me.to_vec()
        };
        for segment in path {
            match segment {
                "crate" => {}
                "super" => {
                    segments.pop();
                }
                _ => segments.push(segment.to_owned()),
            }
        }
        out.push(segments);
    }
    out
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_path(&src, f)).collect();
    // The module a path names: its longest prefix that is a module (`crate::commands::run` is in
    // `commands`); the crate root itself counts as no module.
    let module_of = |path: &[String]| -> Option<String> {
        (1..=path.len())
            .rev()
            .find(|n| modules.contains(&path[..*n]))
            .and_then(|n| node_of(&path[..n]))
    };
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let me = module_path(&src, file);
        if me.iter().any(|s| s == "tests" || s.ends_with("_tests")) {
            continue;
        }
        let Some(from) = node_of(&me) else { continue };
        let text = std::fs::read_to_string(file).unwrap();
        for path in named_paths(&code(&text), &me) {
            let Some(to) = module_of(&path) else { continue };
            let related =
                to == from || to.starts_with(&format!("{from}::")) || from.starts_with(&format!("{to}::"));
            if !related {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

/// The modules reachable from `start`.
fn reachable(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![start.to_owned()];
    while let Some(node) = todo.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if seen.insert(next.clone()) {
                todo.push(next.clone());
            }
        }
    }
    seen
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = import_graph();
    assert!(
        graph.contains_key("login::pipeline") && graph.contains_key("commands::setup"),
        "the import graph misses modules it must have: {graph:?}"
    );
    let cycles: Vec<String> = graph
        .iter()
        .flat_map(|(from, tos)| {
            tos.iter()
                .filter(|to| reachable(&graph, to).contains(from))
                .map(move |to| format!("{from} -> {to}"))
        })
        .collect();
    assert!(cycles.is_empty(), "edges on an import cycle: {cycles:#?}");
}

#[test]
fn the_import_graph_sees_crate_and_super_paths_but_not_comments_or_tests() {
    let me: Vec<String> = vec!["commands".into(), "setup".into()];
    let text = "use crate::login::oidc::Provider;\n\
                // crate::printer is only mentioned here\n\
                let x = super::github::args(); f(crate::config::X);\n\
                #[cfg(test)]\nmod tests { use crate::cli::Cli; }";
    let paths = named_paths(&code(text), &me);
    let nodes: BTreeSet<String> = paths.iter().filter_map(|p| node_of(p)).collect();
    let want: BTreeSet<String> = ["login::oidc", "commands::github", "config"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(nodes, want);
}
