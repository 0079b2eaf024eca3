//! The code's shape, checked against the tree: no import cycle between the
//! modules of `routemq-gateway`, no long function in `crates/*/src`, and an
//! architecture map (`docs/architecture.md`) that names every module of the
//! gateway crate and nothing that is not there.
//!
//! Written with `syn` rather than taken from a tool: `cargo-modules` builds
//! rust-analyzer (minutes on a 2-core machine) and reports cycles between
//! every pair of modules, parents and children included, where this checks
//! the rule we keep — siblings never import each other in a circle.

#[path = "layout/graph.rs"]
mod graph;
#[path = "layout/source.rs"]
mod source;

use std::path::Path;

use source::Crate;

/// Above this, a function is split; tests are held to it too.
const MAX_FUNCTION_LINES: usize = 60;

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
}

#[test]
fn routemq_gateway_has_no_import_cycle() {
    let gateway = Crate::read(&workspace().join("crates/routemq-gateway/src"));
    let cycles = graph::cycles(&gateway);
    assert!(
        cycles.is_empty(),
        "import cycles between sibling modules of routemq-gateway:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_function_in_crates_src_is_longer_than_the_limit() {
    let crates = std::fs::read_dir(workspace().join("crates")).expect("crates/");
    let mut long = Vec::new();
    for entry in crates {
        let src = entry.expect("a crate directory").path().join("src");
        if !src.is_dir() {
            continue;
        }
        for (function, lines) in Crate::read(&src).functions() {
            if lines > MAX_FUNCTION_LINES {
                long.push(format!("{lines:>4} lines  {function}"));
            }
        }
    }
    long.sort();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_architecture_map_names_every_gateway_module_and_only_those() {
    let map = std::fs::read_to_string(workspace().join("docs/architecture.md"))
        .expect("docs/architecture.md");
    let gateway = Crate::read(&workspace().join("crates/routemq-gateway/src"));
    let named = source::named_modules(&map);
    let existing = gateway.module_files();
    let missing: Vec<_> = existing.iter().filter(|m| !named.contains(*m)).collect();
    let stale: Vec<_> = named.iter().filter(|m| !existing.contains(*m)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/architecture.md drifted from crates/routemq-gateway/src:\n\
         not in the map: {missing:?}\nin the map but not in the tree: {stale:?}"
    );
}
