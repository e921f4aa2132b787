//! `cargo xtask storage-audit`: where does the code touch the filesystem, and does it go through
//! the storage crate? The method is documented in `docs/storage-audit.md`.
//!
//! Every `.rs` file is parsed with `syn` (line numbers from `proc-macro2` span locations).
//! A *filesystem site* is a call to `std::fs`/`tokio::fs` functions, `File`/`OpenOptions`
//! constructors, `tempfile`, disk-touching `Path` methods, or `Command::new` of a program known
//! to write files; `use` aliases are resolved per file. A *storage site* is a call into the
//! storage crate's `Store`, `Cache`, `SecretStore` APIs (constructors by path; methods by name
//! in files that import that API). Sites are classified by where they are:
//! - `door`: inside the storage crate, which is the door to the disk;
//! - `test` / `tooling`: test code and `xtask` (listed, not counted);
//! - `exempt`: tagged `// storage-audit: allow(<reason>)` on the line or the line above; a tag
//!   without a reason is an error;
//! - `direct`: anything else. `--check` fails on any direct site.
//!
//! Coverage = storage sites / (storage sites + direct sites), over product code.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::json;
use syn::spanned::Spanned;
use syn::visit::Visit;

/// Functions of these modules touch the disk.
const FS_MODULES: &[&str] = &["std::fs", "tokio::fs", "tempfile", "fs_err"];
/// Associated functions that open files.
const FS_FUNCTIONS: &[&str] = &[
    "std::fs::File::open",
    "std::fs::File::create",
    "std::fs::File::create_new",
    "std::fs::File::options",
    "std::fs::OpenOptions::new",
    "tokio::fs::File::open",
    "tokio::fs::File::create",
    "tokio::fs::OpenOptions::new",
];
/// Methods of `Path`/`PathBuf` that read the disk.
const PATH_METHODS: &[&str] = &[
    "exists",
    "try_exists",
    "metadata",
    "symlink_metadata",
    "read_dir",
    "read_link",
    "canonicalize",
    "is_file",
    "is_dir",
    "is_symlink",
];
/// Programs that write files when run (`Command::new("…")`).
const WRITING_PROGRAMS: &[&str] =
    &["cp", "mv", "dd", "tar", "rsync", "tee", "install", "mkdir", "rm", "touch", "curl", "wget"];
/// Constructors of the storage API.
const STORAGE_CONSTRUCTORS: &[&str] = &[
    "Store::open",
    "Store::open_config",
    "Cache::new",
    "SecretStore::open",
    "SecretStore::open_config",
];
/// Methods of the storage API, counted in files that import it.
const STORAGE_METHODS: &[&str] = &[
    "add_path",
    "add_reader",
    "add_bytes",
    "cat_to",
    "cat_bytes",
    "get_to_path",
    "put_blocks",
    "get_block",
    "get_blocks",
    "pin",
    "unpin",
    "pins",
    "gc",
    "stat",
    "status",
    "verify",
    "repair",
    "name_set",
    "name_get",
    "name_remove",
    "name_list",
    "name_history",
    "export_car",
    "export_car_to_path",
    "import_car",
    "import_car_path",
    "get_stale_ok",
    "refresh",
    "flush_stats",
    "encrypted_bytes",
    "restore",
    "rotate_master_key",
];
/// The storage crate's source: the door to the disk.
const DOOR: &str = "crates/common/src/";
const TAG: &str = "storage-audit: allow(";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Storage,
    Direct,
    Exempt,
    Door,
    Test,
    Tooling,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Storage => "storage",
            Class::Direct => "direct",
            Class::Exempt => "exempt",
            Class::Door => "door",
            Class::Test => "test",
            Class::Tooling => "tooling",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Site {
    pub line: usize,
    pub what: String,
    pub class: Class,
    pub reason: Option<String>,
}

#[derive(Debug, Default)]
pub struct FileReport {
    pub path: String,
    pub sites: Vec<Site>,
    /// Problems that fail `--check` besides direct sites (untagged reasons, dead handles).
    pub findings: Vec<String>,
}

impl FileReport {
    fn count(&self, class: Class) -> usize {
        self.sites.iter().filter(|s| s.class == class).count()
    }
}

/// Audits one file's source. `path` is relative to the workspace root.
pub fn audit_source(path: &str, source: &str) -> anyhow::Result<FileReport> {
    let file = syn::parse_file(source).with_context(|| format!("parsing {path}"))?;
    let mut visitor = Visitor {
        aliases: HashMap::new(),
        imports_storage: false,
        raw: Vec::new(),
        test_depth: 0,
        lets: Vec::new(),
    };
    for item in &file.items {
        if let syn::Item::Use(u) = item {
            visitor.collect_use(&u.tree, String::new());
        }
    }
    visitor.visit_file(&file);

    let lines: Vec<&str> = source.lines().collect();
    let in_test_dir = path.contains("/tests/")
        || path.starts_with("tests/")
        || path.contains("/benches/")
        || path.contains("/examples/");
    let mut report = FileReport { path: path.to_string(), ..FileReport::default() };
    let product = !path.starts_with(DOOR) && !in_test_dir && !path.starts_with("xtask/");
    for raw in visitor.raw {
        if raw.storage
            && (!product || raw.in_test || (!visitor.imports_storage && !raw.constructor))
        {
            // Storage calls count where product code uses the door, not inside it or in tests.
            continue;
        }
        let class = if raw.storage {
            Class::Storage
        } else if path.starts_with(DOOR) && !raw.in_test {
            Class::Door
        } else if in_test_dir || raw.in_test {
            Class::Test
        } else if path.starts_with("xtask/") {
            Class::Tooling
        } else {
            match tag(&lines, raw.line) {
                Some(reason) if !reason.trim().is_empty() => {
                    report.sites.push(Site {
                        line: raw.line,
                        what: raw.what,
                        class: Class::Exempt,
                        reason: Some(reason),
                    });
                    continue;
                }
                Some(_) => {
                    report
                        .findings
                        .push(format!("{path}:{}: storage-audit tag without a reason", raw.line));
                    Class::Direct
                }
                None => Class::Direct,
            }
        };
        report.sites.push(Site { line: raw.line, what: raw.what, class, reason: None });
    }
    // Dead handles: a storage handle bound to a name that appears nowhere else. Counted on the
    // text, because uses inside macros (`assert!`, `format!`) are not parsed as expressions.
    for (name, line) in visitor.lets.iter().filter(|_| product) {
        if word_count(source, name) <= 1 && !name.starts_with('_') {
            report.findings.push(format!(
                "{path}:{line}: storage handle `{name}` is constructed but never used"
            ));
        }
    }
    if product && visitor.imports_storage && report.count(Class::Direct) > 0 {
        report.findings.push(format!(
            "{path}: imports the storage API and still touches the filesystem directly"
        ));
    }
    Ok(report)
}

/// Occurrences of `word` in `text` as a whole identifier that is not a path segment
/// (`ipfs_accelerate_common::store::Store` does not use a variable named `store`).
fn word_count(text: &str, word: &str) -> usize {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word)
        .filter(|(i, _)| {
            let (before, after) = (&text[..*i], &text[i + word.len()..]);
            !before.chars().next_back().is_some_and(is_ident)
                && !after.chars().next().is_some_and(is_ident)
                && !before.ends_with("::")
                && !after.starts_with("::")
        })
        .count()
}

/// The reason in a `storage-audit: allow(…)` tag on `line` (1-based) or the line above.
fn tag(lines: &[&str], line: usize) -> Option<String> {
    [line, line.saturating_sub(1)].into_iter().filter(|l| *l >= 1).find_map(|l| {
        let text = lines.get(l - 1)?;
        let start = text.find(TAG)? + TAG.len();
        let end = text[start..].rfind(')')? + start;
        Some(text[start..end].to_string())
    })
}

struct RawSite {
    line: usize,
    what: String,
    storage: bool,
    constructor: bool,
    in_test: bool,
}

struct Visitor {
    /// Local name → full path, from `use` items.
    aliases: HashMap<String, String>,
    imports_storage: bool,
    raw: Vec<RawSite>,
    test_depth: usize,
    /// `let name = <storage constructor>` bindings and their lines.
    lets: Vec<(String, usize)>,
}

impl Visitor {
    fn collect_use(&mut self, tree: &syn::UseTree, prefix: String) {
        let join =
            |p: &str, s: &str| if p.is_empty() { s.to_string() } else { format!("{p}::{s}") };
        match tree {
            syn::UseTree::Path(p) => self.collect_use(&p.tree, join(&prefix, &p.ident.to_string())),
            syn::UseTree::Name(n) => {
                let full = join(&prefix, &n.ident.to_string());
                self.note_import(&full);
                let local = if n.ident == "self" {
                    prefix.rsplit("::").next().unwrap_or_default().to_string()
                } else {
                    n.ident.to_string()
                };
                let full = if n.ident == "self" { prefix.clone() } else { full };
                self.aliases.insert(local, full);
            }
            syn::UseTree::Rename(r) => {
                let full = if r.ident == "self" {
                    prefix.clone()
                } else {
                    join(&prefix, &r.ident.to_string())
                };
                self.note_import(&full);
                self.aliases.insert(r.rename.to_string(), full);
            }
            syn::UseTree::Group(g) => {
                for tree in &g.items {
                    self.collect_use(tree, prefix.clone());
                }
            }
            syn::UseTree::Glob(_) => self.note_import(&prefix),
        }
    }

    fn note_import(&mut self, full: &str) {
        if full.starts_with("ipfs_accelerate_common::store")
            || full.starts_with("ipfs_accelerate_common::cache")
            || full.starts_with("ipfs_accelerate_common::secrets")
        {
            self.imports_storage = true;
        }
    }

    /// The full path of a path expression, with its first segment resolved through `use`.
    fn resolve(&self, path: &syn::Path) -> String {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let Some(first) = segments.first() else { return String::new() };
        let head = self.aliases.get(first).cloned().unwrap_or_else(|| first.clone());
        std::iter::once(head).chain(segments[1..].iter().cloned()).collect::<Vec<_>>().join("::")
    }

    fn push(&mut self, span: proc_macro2::Span, what: String, storage: bool, constructor: bool) {
        self.raw.push(RawSite {
            line: span.start().line,
            what,
            storage,
            constructor,
            in_test: self.test_depth > 0,
        });
    }
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        (a.path().is_ident("cfg")
            && a.meta.require_list().is_ok_and(|l| l.tokens.to_string().contains("test")))
            || a.path().is_ident("test")
    })
}

impl<'ast> Visit<'ast> for Visitor {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        let test = is_cfg_test(&m.attrs);
        self.test_depth += usize::from(test);
        syn::visit::visit_item_mod(self, m);
        self.test_depth -= usize::from(test);
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let test = is_cfg_test(&f.attrs);
        self.test_depth += usize::from(test);
        syn::visit::visit_item_fn(self, f);
        self.test_depth -= usize::from(test);
    }

    fn visit_local(&mut self, local: &'ast syn::Local) {
        if let (syn::Pat::Ident(p), Some(init)) = (&local.pat, &local.init) {
            let text = quote_expr(&init.expr);
            if STORAGE_CONSTRUCTORS.iter().any(|c| text.contains(&c.replace("::", " :: "))) {
                self.lets.push((p.ident.to_string(), p.ident.span().start().line));
            }
        }
        syn::visit::visit_local(self, local);
    }

    fn visit_expr_call(&mut self, call: &'ast syn::ExprCall) {
        if let syn::Expr::Path(p) = &*call.func {
            let full = self.resolve(&p.path);
            let fs_module = FS_MODULES.iter().any(|m| full.starts_with(&format!("{m}::")));
            if fs_module || FS_FUNCTIONS.contains(&full.as_str()) {
                self.push(call.span(), full.clone(), false, false);
            } else if full.ends_with("Command::new") {
                if let Some(syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. })) =
                    call.args.first()
                {
                    if WRITING_PROGRAMS.contains(&s.value().as_str()) {
                        self.push(
                            call.span(),
                            format!("Command::new({:?})", s.value()),
                            false,
                            false,
                        );
                    }
                }
            } else if STORAGE_CONSTRUCTORS.iter().any(|c| full.ends_with(c)) {
                self.push(call.span(), full.clone(), true, true);
            }
        }
        syn::visit::visit_expr_call(self, call);
    }

    fn visit_expr_method_call(&mut self, call: &'ast syn::ExprMethodCall) {
        let method = call.method.to_string();
        if PATH_METHODS.contains(&method.as_str()) && call.args.is_empty() {
            self.push(call.method.span(), format!(".{method}()"), false, false);
        } else if STORAGE_METHODS.contains(&method.as_str()) {
            self.push(call.method.span(), format!(".{method}()"), true, false);
        }
        syn::visit::visit_expr_method_call(self, call);
    }
}

fn quote_expr(expr: &syn::Expr) -> String {
    use quote::ToTokens;
    expr.to_token_stream().to_string()
}

/// Every `.rs` file under `root` that belongs to the workspace (not `target/`, hidden dirs, or
/// `vendor/`: patched third-party crates, whose build scripts write their own build outputs).
fn rust_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if path.is_dir() {
                if !["target", "node_modules", "vendor"].contains(&name.as_str())
                    && !name.starts_with('.')
                {
                    stack.push(path);
                }
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Audits every Rust file under `root`.
pub fn audit_tree(root: &Path) -> anyhow::Result<Vec<FileReport>> {
    rust_files(root)?
        .into_iter()
        .map(|file| {
            let source = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let relative =
                file.strip_prefix(root).unwrap_or(&file).to_string_lossy().replace('\\', "/");
            audit_source(&relative, &source)
        })
        .collect()
}

#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    pub storage: usize,
    pub direct: usize,
    pub exempt: usize,
    pub door: usize,
    pub test: usize,
    pub tooling: usize,
}

impl Totals {
    fn add(&mut self, report: &FileReport) {
        self.storage += report.count(Class::Storage);
        self.direct += report.count(Class::Direct);
        self.exempt += report.count(Class::Exempt);
        self.door += report.count(Class::Door);
        self.test += report.count(Class::Test);
        self.tooling += report.count(Class::Tooling);
    }

    /// storage / (storage + direct), as a percentage; 100 when there is nothing to count.
    pub fn coverage(&self) -> f64 {
        let denominator = self.storage + self.direct;
        if denominator == 0 {
            100.0
        } else {
            100.0 * self.storage as f64 / denominator as f64
        }
    }
}

fn crate_of(path: &str) -> String {
    let mut parts = path.split('/');
    match parts.next() {
        Some("crates") => format!("crates/{}", parts.next().unwrap_or_default()),
        Some(first) if path.contains('/') => first.to_string(),
        _ => "(root)".to_string(),
    }
}

/// Checks the reports: every direct site and finding, and the coverage baseline.
pub fn failures(reports: &[FileReport], baseline: f64) -> Vec<String> {
    let mut out = Vec::new();
    let mut totals = Totals::default();
    for report in reports {
        totals.add(report);
        for site in report.sites.iter().filter(|s| s.class == Class::Direct) {
            out.push(format!("{}:{}: direct filesystem call {} (persist through ipfs-accelerate-common, or tag `// {TAG}<reason>)`)", report.path, site.line, site.what));
        }
        out.extend(report.findings.iter().cloned());
    }
    if totals.coverage() + 1e-9 < baseline {
        out.push(format!(
            "coverage {:.1}% is below the baseline {baseline:.1}%",
            totals.coverage()
        ));
    }
    out
}

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = crate::service::workspace_root()?;
    let baseline_path = root.join("xtask/storage-audit-baseline.json");
    let (mut check, mut update, mut json_out, mut explain) = (false, false, false, None);
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--update-baseline" => update = true,
            "--json" => json_out = true,
            "--explain" => explain = Some(iter.next().context("--explain needs a file")?.clone()),
            other => bail!("unknown flag {other:?} for storage-audit"),
        }
    }
    let reports = audit_tree(&root)?;

    if let Some(file) = explain {
        let report = reports
            .iter()
            .find(|r| r.path == file || r.path.ends_with(&file))
            .with_context(|| format!("{file} is not a workspace .rs file"))?;
        for site in &report.sites {
            let reason = site.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            println!("{}:{}\t{}\t{}{reason}", report.path, site.line, site.class.name(), site.what);
        }
        for finding in &report.findings {
            println!("finding: {finding}");
        }
        return Ok(());
    }

    let mut totals = Totals::default();
    let mut per_crate: BTreeMap<String, Totals> = BTreeMap::new();
    for report in &reports {
        totals.add(report);
        per_crate.entry(crate_of(&report.path)).or_default().add(report);
    }
    let baseline = read_baseline(&baseline_path)?;
    if json_out {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        let files: Vec<_> = reports
            .iter()
            .filter(|r| !r.sites.is_empty() || !r.findings.is_empty())
            .map(|r| {
                json!({
                    "path": r.path,
                    "storage": r.count(Class::Storage), "direct": r.count(Class::Direct), "exempt": r.count(Class::Exempt),
                    "door": r.count(Class::Door), "test": r.count(Class::Test), "tooling": r.count(Class::Tooling),
                    "sites": r.sites.iter().map(|s| json!({"line": s.line, "call": s.what, "class": s.class.name(), "reason": s.reason})).collect::<Vec<_>>(),
                    "findings": r.findings,
                })
            })
            .collect();
        let body = json!({
            "schema_version": 1,
            "commit": commit,
            "files": files,
            "totals": { "storage": totals.storage, "direct": totals.direct, "exempt": totals.exempt, "door": totals.door,
                        "test": totals.test, "tooling": totals.tooling, "coverage_percent": totals.coverage() },
            "baseline_percent": baseline,
        });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!(
            "{:<28} {:>8} {:>7} {:>7} {:>6} {:>6} {:>8} {:>9}",
            "crate", "storage", "direct", "exempt", "door", "test", "tooling", "coverage"
        );
        for (name, t) in &per_crate {
            println!(
                "{name:<28} {:>8} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8.1}%",
                t.storage,
                t.direct,
                t.exempt,
                t.door,
                t.test,
                t.tooling,
                t.coverage()
            );
        }
        println!(
            "{:<28} {:>8} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8.1}%",
            "total",
            totals.storage,
            totals.direct,
            totals.exempt,
            totals.door,
            totals.test,
            totals.tooling,
            totals.coverage()
        );
        println!(
            "baseline: {baseline:.1}% (coverage = storage / (storage + direct), product code only)"
        );
    }

    if update {
        if totals.coverage() + 1e-9 < baseline {
            bail!(
                "refusing to lower the baseline from {baseline:.1}% to {:.1}%",
                totals.coverage()
            );
        }
        std::fs::write(
            &baseline_path,
            format!(
                "{}\n",
                serde_json::to_string_pretty(&json!({ "coverage_percent": totals.coverage() }))?
            ),
        )?;
        eprintln!("storage-audit: baseline set to {:.1}%", totals.coverage());
    }
    if check {
        let problems = failures(&reports, baseline);
        if !problems.is_empty() {
            for problem in &problems {
                eprintln!("storage-audit: {problem}");
            }
            bail!("storage-audit --check: {} problem(s)", problems.len());
        }
        eprintln!(
            "storage-audit: ok ({} files, coverage {:.1}%)",
            reports.len(),
            totals.coverage()
        );
    }
    Ok(())
}

fn read_baseline(path: &Path) -> anyhow::Result<f64> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0.0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    value["coverage_percent"]
        .as_f64()
        .with_context(|| format!("{} has no coverage_percent", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(path: &str, source: &str) -> Vec<(usize, Class, String)> {
        audit_source(path, source)
            .unwrap()
            .sites
            .into_iter()
            .map(|s| (s.line, s.class, s.what))
            .collect()
    }

    #[test]
    fn aliases_are_resolved() {
        let source = "use std::fs as f;\nfn main() {\n    f::write(\"x\", b\"y\").unwrap();\n}\n";
        assert_eq!(
            classes("crates/worker/src/lib.rs", source),
            vec![(3, Class::Direct, "std::fs::write".into())]
        );
        let source = "use std::fs::{self, File};\nfn main() { let _ = File::open(\"x\"); fs::read(\"y\"); }\n";
        let found = classes("crates/worker/src/lib.rs", source);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found.iter().all(|(_, c, _)| *c == Class::Direct));
    }

    #[test]
    fn tokio_fs_tempfile_path_methods_and_writing_programs_are_sites() {
        let source = "async fn f(p: &std::path::Path) {\n tokio::fs::write(p, b\"\").await;\n let _ = tempfile::tempdir();\n let _ = p.exists();\n std::process::Command::new(\"dd\");\n std::process::Command::new(\"ls\");\n}\n";
        let found: Vec<String> =
            classes("crates/cli/src/x.rs", source).into_iter().map(|(_, _, w)| w).collect();
        assert_eq!(
            found,
            ["tokio::fs::write", "tempfile::tempdir", ".exists()", "Command::new(\"dd\")"]
        );
    }

    #[test]
    fn tags_need_a_reason() {
        let ok = "fn f() {\n    // storage-audit: allow(user input file named on the command line)\n    std::fs::read(\"x\");\n}\n";
        let report = audit_source("crates/cli/src/x.rs", ok).unwrap();
        assert_eq!(report.sites[0].class, Class::Exempt);
        assert!(report.findings.is_empty());
        let empty = "fn f() {\n    std::fs::read(\"x\"); // storage-audit: allow()\n}\n";
        let report = audit_source("crates/cli/src/x.rs", empty).unwrap();
        assert_eq!(report.sites[0].class, Class::Direct);
        assert!(report.findings[0].contains("without a reason"));
    }

    #[test]
    fn dead_handles_and_mixed_files_are_findings() {
        let source = "use ipfs_accelerate_common::store::Store;\nasync fn f() {\n    let store = Store::open(\"d\", Default::default()).await;\n    std::fs::write(\"x\", b\"\");\n}\n";
        let report = audit_source("crates/worker/src/lib.rs", source).unwrap();
        assert!(
            report.findings.iter().any(|f| f.contains("`store` is constructed but never used")),
            "{:?}",
            report.findings
        );
        assert!(
            report.findings.iter().any(|f| f.contains("imports the storage API")),
            "{:?}",
            report.findings
        );
        let used = "use ipfs_accelerate_common::store::Store;\nasync fn f() {\n    let store = Store::open(\"d\", Default::default()).await;\n    store.gc().await;\n}\n";
        let report = audit_source("crates/worker/src/lib.rs", used).unwrap();
        assert!(report.findings.is_empty(), "{:?}", report.findings);
        assert_eq!(report.count(Class::Storage), 2);
    }

    #[test]
    fn the_door_tests_and_tooling_are_not_counted_as_direct() {
        let source = "fn f() { std::fs::read(\"x\"); }\n#[cfg(test)]\nmod tests { fn g() { std::fs::read(\"y\"); } }\n";
        assert_eq!(
            classes("crates/common/src/store/x.rs", source).iter().map(|s| s.1).collect::<Vec<_>>(),
            [Class::Door, Class::Test]
        );
        assert_eq!(
            classes("crates/worker/src/x.rs", source).iter().map(|s| s.1).collect::<Vec<_>>(),
            [Class::Direct, Class::Test]
        );
        assert_eq!(classes("tests/tests/x.rs", source)[0].1, Class::Test);
        assert_eq!(classes("xtask/src/x.rs", source)[0].1, Class::Tooling);
    }

    #[test]
    fn the_real_workspace_passes_and_an_added_read_in_worker_fails_naming_the_line() {
        let root = crate::service::workspace_root().unwrap();
        let reports = audit_tree(&root).unwrap();
        assert!(failures(
            &reports,
            read_baseline(&root.join("xtask/storage-audit-baseline.json")).unwrap()
        )
        .is_empty());

        // A temp copy of the workspace's sources with one direct read added to the worker.
        let copy = tempfile::tempdir().unwrap();
        for file in rust_files(&root).unwrap() {
            let relative = file.strip_prefix(&root).unwrap();
            let dest = copy.path().join(relative);
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&file, &dest).unwrap();
        }
        let worker = copy.path().join("crates/worker/src/lib.rs");
        let mut source = std::fs::read_to_string(&worker).unwrap();
        let line = source.lines().count() + 2;
        source.push_str("\npub fn sneaky() -> Vec<u8> {\n    std::fs::read(\"/etc/hostname\").unwrap_or_default()\n}\n");
        std::fs::write(&worker, source).unwrap();
        let problems = failures(&audit_tree(copy.path()).unwrap(), 0.0);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!(
                "crates/worker/src/lib.rs:{}: direct filesystem call std::fs::read",
                line + 1
            )),
            "{problems:?}"
        );
    }
}
