//! The import graph between sibling modules, and its cycles.
//!
//! An import from module `a::x` of an item of `b::y` is an edge between the
//! siblings `a` and `b` under their common parent (here the crate root). A
//! module using its parent's or its children's items adds no edge: a parent
//! owns its children. A re-export is followed to where the item is defined,
//! so `crate::ForwardRoute` counts as an import of the module defining it.

use std::collections::{BTreeMap, BTreeSet};

use syn::visit::Visit;

use super::source::{self, Crate, ModulePath};

/// An edge between two siblings, with the imports that make it.
type Edges = BTreeMap<(ModulePath, String, String), BTreeSet<String>>;

/// Each cycle as a line: the parent, the siblings, and one import per edge.
pub fn cycles(krate: &Crate) -> Vec<String> {
    let edges = edges(krate);
    let mut parents: BTreeMap<&ModulePath, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for (parent, from, to) in edges.keys() {
        let graph = parents.entry(parent).or_default();
        graph.entry(from).or_default().insert(to);
        graph.entry(to).or_default();
    }
    let mut found = Vec::new();
    for (parent, graph) in parents {
        for component in strongly_connected(&graph) {
            let evidence: Vec<String> = edges
                .iter()
                .filter(|((p, from, to), _)| {
                    p == parent
                        && component.contains(&from.as_str())
                        && component.contains(&to.as_str())
                })
                .map(|((_, from, to), why)| {
                    format!(
                        "    {from} → {to}: {}",
                        why.iter().next().expect("evidence")
                    )
                })
                .collect();
            found.push(format!(
                "under `{}`: {{{}}}\n{}",
                display(parent),
                component.join(", "),
                evidence.join("\n")
            ));
        }
    }
    found
}

fn display(path: &[String]) -> String {
    if path.is_empty() {
        "crate".into()
    } else {
        path.join("::")
    }
}

fn edges(krate: &Crate) -> Edges {
    let mut edges = Edges::new();
    let imports: BTreeMap<&ModulePath, _> = krate
        .modules
        .iter()
        .map(|module| (&module.path, source::imports(module, krate)))
        .collect();
    for module in krate.modules.iter().filter(|m| !source::is_test(&m.path)) {
        let mut paths = Paths::default();
        paths.visit_file(&module.syntax);
        for written in paths.found {
            let Some(path) = source::absolute(&module.path, &written, krate) else {
                continue;
            };
            let target = defining_module(path, krate, &imports);
            let common = module
                .path
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == module.path.len() || common == target.len() {
                continue;
            }
            let key = (
                module.path[..common].to_vec(),
                module.path[common].clone(),
                target[common].clone(),
            );
            let why = format!("{} uses {}", module.file, written.join("::"));
            edges.entry(key).or_default().insert(why);
        }
    }
    edges
}

/// The module that defines what `path` names, following `use` re-exports.
fn defining_module(
    mut path: ModulePath,
    krate: &Crate,
    imports: &BTreeMap<&ModulePath, BTreeMap<String, ModulePath>>,
) -> ModulePath {
    for _ in 0..16 {
        let module_len = (0..=path.len())
            .rev()
            .find(|len| krate.is_module(&path[..*len]))
            .unwrap_or(0);
        let module = path[..module_len].to_vec();
        let Some(name) = path.get(module_len) else {
            return module;
        };
        match imports.get(&module).and_then(|names| names.get(name)) {
            Some(target) if *target != path[..=module_len] => {
                path = target
                    .iter()
                    .chain(&path[module_len + 1..])
                    .cloned()
                    .collect();
            }
            _ => return module,
        }
    }
    path
}

/// Every `crate::`, `self::` and `super::` path a module writes, in `use`
/// items and in code; other paths start from a name one of those brought in.
#[derive(Default)]
struct Paths {
    found: Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Paths {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        source::use_tree(&item.tree, Vec::new(), &mut |_, path| self.found.push(path));
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if matches!(
            segments.first().map(String::as_str),
            Some("crate" | "self" | "super")
        ) {
            self.found.push(segments);
        }
        syn::visit::visit_path(self, path);
    }
}

/// Components of more than one node (Kosaraju's algorithm).
fn strongly_connected<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    fn finish<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        seen: &mut BTreeSet<&'a str>,
        order: &mut Vec<&'a str>,
    ) {
        if !seen.insert(node) {
            return;
        }
        for next in &graph[node] {
            finish(next, graph, seen, order);
        }
        order.push(node);
    }
    let mut reversed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (from, tos) in graph {
        reversed.entry(from).or_default();
        for to in tos {
            reversed.entry(to).or_default().insert(from);
        }
    }
    let (mut seen, mut order) = (BTreeSet::new(), Vec::new());
    for node in graph.keys() {
        finish(node, graph, &mut seen, &mut order);
    }
    let mut assigned = BTreeSet::new();
    let mut components = Vec::new();
    for node in order.into_iter().rev() {
        let mut component = Vec::new();
        finish(node, &reversed, &mut assigned, &mut component);
        if component.len() > 1 {
            component.sort();
            components.push(component);
        }
    }
    components
}
