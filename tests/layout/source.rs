//! A crate's source as the layout checks read it: its modules (one per
//! file), the paths each imports, and the length of every function.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module's path from the crate root: `["gateway", "pipeline"]`.
pub type ModulePath = Vec<String>;

pub struct Module {
    pub path: ModulePath,
    /// The file under `src/`, as the architecture map names it.
    pub file: String,
    pub syntax: syn::File,
}

pub struct Crate {
    pub modules: Vec<Module>,
}

impl Crate {
    /// Every `.rs` file under `src`, parsed.
    pub fn read(src: &Path) -> Crate {
        let mut files = Vec::new();
        collect_files(src, &mut files);
        files.sort();
        let modules = files
            .into_iter()
            .map(|file| {
                let relative = file.strip_prefix(src).expect("under src");
                let text = std::fs::read_to_string(&file).expect("a source file");
                Module {
                    path: module_path(relative),
                    file: relative.to_string_lossy().replace('\\', "/"),
                    syntax: syn::parse_file(&text)
                        .unwrap_or_else(|error| panic!("{}: {error}", file.display())),
                }
            })
            .collect();
        Crate { modules }
    }

    /// Each function (free, inherent, trait default) as `file:line name`,
    /// with its length from the signature to the closing brace.
    pub fn functions(&self) -> Vec<(String, usize)> {
        let mut found = Vec::new();
        for module in &self.modules {
            let mut visitor = Functions {
                file: &module.file,
                found: &mut found,
            };
            visitor.visit_file(&module.syntax);
        }
        found
    }

    /// The files the architecture map must name: every module but the
    /// crate root and test modules.
    pub fn module_files(&self) -> BTreeSet<String> {
        self.modules
            .iter()
            .filter(|module| !module.path.is_empty() && !is_test(&module.path))
            .map(|module| module.file.clone())
            .collect()
    }

    pub fn is_module(&self, path: &[String]) -> bool {
        self.modules.iter().any(|module| module.path == path)
    }
}

/// A test module: its paths reach everywhere by design.
pub fn is_test(path: &[String]) -> bool {
    path.iter().any(|segment| segment == "tests")
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

fn module_path(relative: &Path) -> ModulePath {
    let mut path: ModulePath = relative
        .with_extension("")
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        path.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        path.pop();
    }
    path
}

struct Functions<'a> {
    file: &'a str,
    found: &'a mut Vec<(String, usize)>,
}

impl Functions<'_> {
    fn note(&mut self, sig: &syn::Signature, block: &syn::Block) {
        let start = sig.fn_token.span.start().line;
        let end = block.brace_token.span.close().end().line;
        let name = format!("{}:{start} {}", self.file, sig.ident);
        self.found.push((name, end + 1 - start));
    }
}

impl<'ast> Visit<'ast> for Functions<'_> {
    fn visit_item_fn(&mut self, item: &'ast syn::ItemFn) {
        self.note(&item.sig, &item.block);
        syn::visit::visit_item_fn(self, item);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        self.note(&item.sig, &item.block);
        syn::visit::visit_impl_item_fn(self, item);
    }

    fn visit_trait_item_fn(&mut self, item: &'ast syn::TraitItemFn) {
        if let Some(block) = &item.default {
            self.note(&item.sig, block);
        }
        syn::visit::visit_trait_item_fn(self, item);
    }
}

/// The files named in backticks in the map's "Modules of `routemq-gateway`"
/// section; `dir/{a,b}.rs` names two.
pub fn named_modules(map: &str) -> BTreeSet<String> {
    let section = map
        .split("\n## ")
        .find(|section| section.starts_with("Modules of `routemq-gateway`"))
        .expect("docs/architecture.md has a section \"Modules of `routemq-gateway`\"");
    section
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|token| token.ends_with(".rs"))
        .flat_map(expand_braces)
        .collect()
}

fn expand_braces(token: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (token.find('{'), token.find('}')) else {
        return vec![token.to_string()];
    };
    let (head, tail) = (&token[..open], &token[close + 1..]);
    token[open + 1..close]
        .split(',')
        .map(|name| format!("{head}{}{tail}", name.trim()))
        .collect()
}

/// Every name a module brings in with `use`, to the absolute path it
/// stands for (globs are skipped): how a re-export is followed to the
/// module that defines the item.
pub fn imports(module: &Module, krate: &Crate) -> BTreeMap<String, ModulePath> {
    let mut names = BTreeMap::new();
    for item in &module.syntax.items {
        if let syn::Item::Use(item) = item {
            use_tree(&item.tree, Vec::new(), &mut |name, path| {
                if let Some(path) = absolute(&module.path, &path, krate) {
                    names.insert(name, path);
                }
            });
        }
    }
    names
}

/// Calls `each` with the name and written path of every leaf of a use tree.
pub fn use_tree(
    tree: &syn::UseTree,
    prefix: Vec<String>,
    each: &mut dyn FnMut(String, Vec<String>),
) {
    let join = |name: &syn::Ident| {
        let mut path = prefix.clone();
        path.push(name.to_string());
        path
    };
    match tree {
        syn::UseTree::Path(path) => use_tree(&path.tree, join(&path.ident), each),
        syn::UseTree::Name(name) if name.ident == "self" => {
            let last = prefix.last().cloned().unwrap_or_default();
            each(last, prefix)
        }
        syn::UseTree::Name(name) => each(name.ident.to_string(), join(&name.ident)),
        syn::UseTree::Rename(rename) => each(rename.rename.to_string(), join(&rename.ident)),
        syn::UseTree::Glob(_) => {}
        syn::UseTree::Group(group) => {
            for tree in &group.items {
                use_tree(tree, prefix.clone(), each);
            }
        }
    }
}

/// A path written in module `from`, from the crate root; `None` when it
/// leaves the crate.
pub fn absolute(from: &[String], written: &[String], krate: &Crate) -> Option<ModulePath> {
    let (first, rest) = written.split_first()?;
    let mut base: ModulePath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => from.to_vec(),
        "super" => from[..from.len().checked_sub(1)?].to_vec(),
        _ => {
            let child: ModulePath = from.iter().chain([first]).cloned().collect();
            return krate
                .is_module(&child)
                .then(|| from.iter().chain(written).cloned().collect());
        }
    };
    let mut rest = rest;
    while let Some(("super", tail)) = rest.split_first().map(|(s, t)| (s.as_str(), t)) {
        base.pop();
        rest = tail;
    }
    base.extend(rest.iter().cloned());
    Some(base)
}
