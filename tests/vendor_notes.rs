//! Keeps `vendor-notes.md` in step with `Cargo.lock` (the dependency audit's source of truth).
//!
//! Every package in the lock file (all targets: build-only and Windows/macOS-only crates too; our
//! own crate excluded) must have a row in the crate table of vendor-notes.md whose licence cell is
//! the crate's own SPDX expression, the table must not list packages that are no longer locked,
//! and the `allowed-licenses:` line must be the allow-list of deny.toml. Whether each licence
//! passes that list is cargo-deny's check (`.ci/deny`), not this file's. Runs offline:
//! `cargo metadata --offline` plus `Cargo.lock` itself.
//!
//! `cargo metadata` needs the source of every locked package, including platform-only crates that
//! a Linux build never downloads. When some are missing (e.g. a plain `cargo build` cache instead
//! of a full `cargo vendor`/`cargo fetch`), the test falls back to `--filter-platform <host>` for
//! the packages whose sources are present and takes the full package list from `Cargo.lock`.
//!
//! Print every row as generated from `cargo metadata` (for regenerating the table):
//! `VENDOR_NOTES_PRINT=1 cargo test --test vendor_notes -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

const NOTES_FILE: &str = "vendor-notes.md";
const TABLE_BEGIN: &str = "<!-- crate-table:begin -->";
const TABLE_END: &str = "<!-- crate-table:end -->";
const ALLOW_KEY: &str = "allowed-licenses:";
const DENY_FILE: &str = "deny.toml";
const OWN_CRATE: &str = env!("CARGO_PKG_NAME");
const PRINT_ENV: &str = "VENDOR_NOTES_PRINT";
const HOW_TO_REGENERATE: &str = "How to regenerate: see \"Regenerating and checking the list\" in vendor-notes.md; \
     `VENDOR_NOTES_PRINT=1 cargo test --test vendor_notes -- --nocapture` prints every row as generated from \
     `cargo metadata` (keep the hand-written Kind and C/C++/asm cells of rows that did not change).";

/// (name, version)
type Key = (String, String);

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn show(key: &Key) -> String {
    format!("`{} {}`", key.0, key.1)
}

// ---------------------------------------------------------------------------------------------
// Inputs: vendor-notes.md, Cargo.lock, cargo metadata
// ---------------------------------------------------------------------------------------------

/// One row of the crate table: its first three cells.
#[derive(Debug)]
struct Row {
    line: usize,
    name: String,
    version: String,
    licence: String,
}

impl Row {
    fn key(&self) -> Key {
        (self.name.clone(), self.version.clone())
    }
}

fn cell(s: &str) -> String {
    s.trim().trim_matches('`').trim().to_string()
}

/// The licences named on the single `allowed-licenses:` line.
fn allow_list(notes: &str) -> BTreeSet<String> {
    let lines: Vec<&str> = notes.lines().filter_map(|l| l.trim().strip_prefix(ALLOW_KEY)).collect();
    assert_eq!(
        lines.len(),
        1,
        "{NOTES_FILE} must contain exactly one line starting with `{ALLOW_KEY}` (found {})",
        lines.len()
    );
    let allow: BTreeSet<String> = lines[0].split(',').map(cell).filter(|s| !s.is_empty()).collect();
    assert!(
        !allow.is_empty(),
        "the `{ALLOW_KEY}` line in {NOTES_FILE} names no licence"
    );
    allow
}

/// The rows of the markdown table between the crate-table markers (header and separator skipped).
fn table_rows(notes: &str) -> Vec<Row> {
    let mut inside = false;
    let mut seen_begin = false;
    let mut seen_end = false;
    let mut rows = Vec::new();
    for (i, line) in notes.lines().enumerate() {
        let line = line.trim();
        if line == TABLE_BEGIN {
            assert!(!seen_begin, "{NOTES_FILE}:{}: second `{TABLE_BEGIN}`", i + 1);
            seen_begin = true;
            inside = true;
            continue;
        }
        if line == TABLE_END {
            assert!(inside, "{NOTES_FILE}:{}: `{TABLE_END}` without `{TABLE_BEGIN}`", i + 1);
            seen_end = true;
            inside = false;
            continue;
        }
        if !inside || !line.starts_with('|') {
            continue;
        }
        let cells: Vec<String> = line.trim_matches('|').split('|').map(cell).collect();
        let is_separator = cells
            .iter()
            .all(|c| !c.is_empty() && c.chars().all(|ch| matches!(ch, '-' | ':')));
        if is_separator || cells[0].eq_ignore_ascii_case("crate") {
            continue;
        }
        assert!(
            cells.len() >= 3 && !cells[0].is_empty() && !cells[1].is_empty() && !cells[2].is_empty(),
            "{NOTES_FILE}:{}: a crate-table row needs at least `| name | version | licence |`: {line}",
            i + 1
        );
        rows.push(Row {
            line: i + 1,
            name: cells[0].clone(),
            version: cells[1].clone(),
            licence: cells[2].clone(),
        });
    }
    assert!(
        seen_begin && seen_end,
        "{NOTES_FILE} must delimit the crate table with `{TABLE_BEGIN}` and `{TABLE_END}`"
    );
    assert!(!rows.is_empty(), "the crate table in {NOTES_FILE} has no rows");
    rows
}

/// `key = "value"` in a Cargo.lock line.
fn lock_value(line: &str, key: &str) -> Option<String> {
    let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?.trim();
    Some(rest.strip_prefix('"')?.strip_suffix('"')?.to_string())
}

/// Every `[[package]]` of Cargo.lock except our own crate.
fn locked_packages() -> BTreeSet<Key> {
    let path = manifest_dir().join("Cargo.lock");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut out = BTreeSet::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let mut flush = |current: &mut Option<(Option<String>, Option<String>)>| {
        if let Some((name, version)) = current.take() {
            let name = name.expect("a [[package]] in Cargo.lock without a name");
            let version = version.unwrap_or_else(|| panic!("package {name} in Cargo.lock has no version"));
            if name != OWN_CRATE {
                out.insert((name, version));
            }
        }
    };
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(&mut current);
            if line == "[[package]]" {
                current = Some((None, None));
            }
        } else if let Some((name, version)) = current.as_mut() {
            if let Some(v) = lock_value(line, "name") {
                *name = Some(v);
            } else if let Some(v) = lock_value(line, "version") {
                *version = Some(v);
            }
        }
    }
    flush(&mut current);
    assert!(!out.is_empty(), "found no packages in {}", path.display());
    out
}

fn cargo() -> Command {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(manifest_dir());
    cmd
}

/// `cargo metadata --format-version 1 --locked --offline [--filter-platform <triple>]`.
fn cargo_metadata(platform: Option<&str>) -> Result<Value, String> {
    let mut cmd = cargo();
    cmd.args([
        "metadata",
        "--format-version",
        "1",
        "--locked",
        "--offline",
        "--manifest-path",
    ])
    .arg(manifest_dir().join("Cargo.toml"));
    if let Some(triple) = platform {
        cmd.args(["--filter-platform", triple]);
    }
    let out = cmd.output().map_err(|e| format!("cannot run {}: {e}", env!("CARGO")))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata printed invalid JSON: {e}"))
}

fn host_triple() -> String {
    let out = cargo().arg("-vV").output().expect("cannot run cargo -vV");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| panic!("`cargo -vV` printed no `host:` line:\n{text}"))
}

#[derive(Debug)]
struct Package {
    licence: Option<String>,
    licence_file: Option<String>,
    dir: PathBuf,
    build_script: bool,
    proc_macro: bool,
}

/// The parts of `cargo metadata` output these checks use.
struct Metadata {
    packages: BTreeMap<Key, Package>,
    ids: BTreeMap<String, Key>,
    root: Option<String>,
    /// parent id -> (child id, "normal" | "build" | "dev")
    edges: BTreeMap<String, Vec<(String, String)>>,
}

fn text(v: &Value, field: &str) -> Option<String> {
    v.get(field).and_then(Value::as_str).map(str::to_string)
}

impl Metadata {
    fn from_json(v: &Value) -> Metadata {
        let mut packages = BTreeMap::new();
        let mut ids = BTreeMap::new();
        for p in v["packages"].as_array().expect("cargo metadata: no `packages` array") {
            let key = (
                text(p, "name").expect("package name"),
                text(p, "version").expect("package version"),
            );
            let target_kinds: Vec<&str> = p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|t| t["kind"].as_array().into_iter().flatten().filter_map(Value::as_str))
                .collect();
            let manifest = PathBuf::from(text(p, "manifest_path").expect("manifest_path"));
            ids.insert(text(p, "id").expect("package id"), key.clone());
            packages.insert(
                key,
                Package {
                    licence: text(p, "license"),
                    licence_file: text(p, "license_file"),
                    dir: manifest.parent().map(Path::to_path_buf).unwrap_or_default(),
                    build_script: target_kinds.contains(&"custom-build"),
                    proc_macro: target_kinds.contains(&"proc-macro"),
                },
            );
        }
        let resolve = &v["resolve"];
        let mut edges: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for node in resolve["nodes"].as_array().into_iter().flatten() {
            let parent = text(node, "id").expect("resolve node id");
            for dep in node["deps"].as_array().into_iter().flatten() {
                let child = text(dep, "pkg").expect("resolve dep pkg");
                for dk in dep["dep_kinds"].as_array().into_iter().flatten() {
                    let kind = text(dk, "kind").unwrap_or_else(|| "normal".to_string());
                    let entry = edges.entry(parent.clone()).or_default();
                    if !entry.contains(&(child.clone(), kind.clone())) {
                        entry.push((child.clone(), kind));
                    }
                }
            }
        }
        Metadata {
            packages,
            ids,
            root: text(resolve, "root"),
            edges,
        }
    }

    fn root_key(&self) -> Option<&Key> {
        self.root.as_ref().and_then(|r| self.ids.get(r))
    }

    /// Every package except our own crate.
    fn keys(&self) -> BTreeSet<Key> {
        let root = self.root_key();
        self.packages
            .keys()
            .filter(|k| Some(*k) != root && k.0 != OWN_CRATE)
            .cloned()
            .collect()
    }
}

/// Everything the checks compare.
struct World {
    notes: String,
    allow: BTreeSet<String>,
    rows: Vec<Row>,
    locked: BTreeSet<Key>,
    meta: Metadata,
    /// Why the full (all-targets) metadata was unavailable, if it was.
    partial: Option<String>,
}

/// Loaded once per test run: the checks run in parallel and would otherwise queue on cargo's locks.
fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(World::load)
}

impl World {
    fn load() -> World {
        let path = manifest_dir().join(NOTES_FILE);
        let notes = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let (meta, partial) = match cargo_metadata(None) {
            Ok(v) => (Metadata::from_json(&v), None),
            Err(full_err) => {
                // Only a missing download may be worked around; anything else (a stale Cargo.lock...) fails.
                let cause = full_err
                    .lines()
                    .find(|l| l.trim_start().starts_with("error"))
                    .unwrap_or_else(|| full_err.lines().last().unwrap_or_default())
                    .trim()
                    .to_string();
                assert!(
                    full_err.contains("failed to download") || full_err.contains("--offline"),
                    "`cargo metadata --format-version 1 --locked --offline` failed:\n{full_err}"
                );
                let host = host_triple();
                let v = cargo_metadata(Some(&host)).unwrap_or_else(|e| {
                    panic!(
                        "`cargo metadata --locked --offline` failed, for all targets:\n{full_err}\n\
                         and with --filter-platform {host}:\n{e}"
                    )
                });
                let why = format!(
                    "sources of some platform-only crates are not downloaded (`cargo fetch --locked` gets them), \
                     so the licences of those were taken from {NOTES_FILE} and the rest from \
                     `--filter-platform {host}`; cargo said: {cause}"
                );
                (Metadata::from_json(&v), Some(why))
            }
        };
        World {
            allow: allow_list(&notes),
            rows: table_rows(&notes),
            notes,
            locked: locked_packages(),
            meta,
            partial,
        }
    }

    /// Every locked package: Cargo.lock and cargo metadata should agree; take the union.
    fn required(&self) -> BTreeSet<Key> {
        let mut all = self.locked.clone();
        all.extend(self.meta.keys());
        all
    }

    fn rows_by_key(&self) -> BTreeMap<Key, Vec<&Row>> {
        let mut map: BTreeMap<Key, Vec<&Row>> = BTreeMap::new();
        for row in &self.rows {
            map.entry(row.key()).or_default().push(row);
        }
        map
    }

    fn note(&self) -> String {
        match &self.partial {
            Some(why) => format!("\n(Note: {why}.)"),
            None => String::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row generation (for failure messages and VENDOR_NOTES_PRINT)
// ---------------------------------------------------------------------------------------------

const SOURCE_EXTS: &[&str] = &["c", "cc", "cpp", "cxx", "h", "hh", "hpp", "inc", "s", "asm"];
const BINARY_EXTS: &[&str] = &["a", "lib", "o", "obj", "so", "dll", "dylib"];

/// Counts of C/C++/asm sources and prebuilt binaries by extension, and of the word `unsafe` in .rs files.
fn scan_sources(dir: &Path) -> Option<(BTreeMap<String, usize>, usize)> {
    fn is_ident(c: char) -> bool {
        c.is_alphanumeric() || c == '_'
    }
    fn walk(dir: &Path, exts: &mut BTreeMap<String, usize>, unsafe_words: &mut usize) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, exts, unsafe_words);
                continue;
            }
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_lowercase())
                .unwrap_or_default();
            if SOURCE_EXTS.contains(&ext.as_str()) || BINARY_EXTS.contains(&ext.as_str()) {
                *exts.entry(ext).or_default() += 1;
            } else if ext == "rs" {
                let Ok(bytes) = fs::read(&path) else { continue };
                let src = String::from_utf8_lossy(&bytes);
                for (i, _) in src.match_indices("unsafe") {
                    let before = src[..i].chars().next_back();
                    let after = src[i + "unsafe".len()..].chars().next();
                    if !before.is_some_and(is_ident) && !after.is_some_and(is_ident) {
                        *unsafe_words += 1;
                    }
                }
            }
        }
    }
    if !dir.is_dir() {
        return None;
    }
    let mut exts = BTreeMap::new();
    let mut unsafe_words = 0;
    walk(dir, &mut exts, &mut unsafe_words);
    Some((exts, unsafe_words))
}

/// normal / build context of every package built for `triple`, from `cargo tree` (which, unlike the
/// `resolve` of cargo metadata, applies cargo's feature resolver). None if cargo tree fails.
fn tree_kinds(triple: &str) -> Option<BTreeMap<Key, BTreeSet<&'static str>>> {
    let out = cargo()
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal,build",
            "--no-dedupe",
            "--charset",
            "ascii",
        ])
        .args(["--format", "{p}", "--target", triple])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut kinds: BTreeMap<Key, BTreeSet<&'static str>> = BTreeMap::new();
    // By depth: the context of the package on the current path, and the section its children are in.
    let mut ctx: Vec<&'static str> = Vec::new();
    let mut section: Vec<&'static str> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(col) = line.find(|c: char| !matches!(c, ' ' | '|' | '`' | '-')) else {
            continue;
        };
        let depth = col / 4;
        let content = &line[col..];
        if content.starts_with('[') {
            // `[build-dependencies]` under the package at this depth
            if let Some(s) = section.get_mut(depth) {
                *s = if content.starts_with("[build") {
                    "build"
                } else {
                    "normal"
                };
            }
            continue;
        }
        let mut words = content.split_whitespace();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        ctx.truncate(depth);
        section.truncate(depth);
        let here = match depth.checked_sub(1) {
            None => "normal",
            Some(up) if ctx.get(up) == Some(&"build") || section.get(up) == Some(&"build") => "build",
            Some(_) => "normal",
        };
        if depth > 0 {
            let key = (name.to_string(), version.trim_start_matches('v').to_string());
            kinds.entry(key).or_default().insert(here);
        }
        ctx.push(here);
        section.push("normal");
    }
    Some(kinds)
}

/// Table rows as this test would write them (Kind and C/C++/asm cells to be reviewed by hand).
fn generated_rows(world: &World, keys: &[Key]) -> Vec<String> {
    let host = host_triple();
    let kinds = tree_kinds(&host);
    let host_resolve = cargo_metadata(Some(&host)).ok().map(|v| Metadata::from_json(&v).keys());
    let meta = &world.meta;
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    for (name, _) in meta.packages.keys() {
        *versions.entry(name.as_str()).or_default() += 1;
    }
    let id_of: BTreeMap<&Key, &String> = meta.ids.iter().map(|(id, k)| (k, id)).collect();
    keys.iter()
        .map(|key| {
            let Some(pkg) = meta.packages.get(key) else {
                return format!(
                    "| {} | {} | ? | ? (source not downloaded) | ? | ? | ? | ? |",
                    key.0, key.1
                );
            };
            let mut kind = match kinds.as_ref().map(|k| k.get(key)) {
                Some(Some(k)) => k.iter().rev().copied().collect::<Vec<_>>().join("+"),
                Some(None) if host_resolve.as_ref().is_some_and(|r| r.contains(key)) => {
                    format!("in the {host} resolve, not compiled (feature-gated)")
                }
                Some(None) => format!("platform-only (not built for {host})"),
                None => "? (cargo tree failed)".to_string(),
            };
            if pkg.proc_macro {
                kind.push_str(", proc-macro");
            }
            let mut parents: Vec<String> = Vec::new();
            if let Some(id) = id_of.get(key) {
                for (parent, edges) in &meta.edges {
                    for (child, dep_kind) in edges {
                        if child != *id {
                            continue;
                        }
                        let mut p = match meta.ids.get(parent) {
                            Some(pk) if Some(pk) == meta.root_key() => "direct".to_string(),
                            Some(pk) if versions.get(pk.0.as_str()).copied().unwrap_or(0) > 1 => {
                                format!("{} {}", pk.0, pk.1)
                            }
                            Some(pk) => pk.0.clone(),
                            None => parent.clone(),
                        };
                        if dep_kind == "build" {
                            p.push_str(" [build]");
                        }
                        if !parents.contains(&p) {
                            parents.push(p);
                        }
                    }
                }
            }
            parents.sort_by_key(|p| (!p.starts_with("direct"), p.clone()));
            let (c, unsafe_cell) = match scan_sources(&pkg.dir) {
                Some((exts, n)) => {
                    let c = if exts.is_empty() {
                        "no".to_string()
                    } else {
                        let list: Vec<String> = exts.iter().map(|(e, n)| format!("{n} .{e}")).collect();
                        format!("yes ({})", list.join(", "))
                    };
                    (c, if n == 0 { "no".to_string() } else { format!("yes ({n})") })
                }
                None => ("?".to_string(), "?".to_string()),
            };
            let licence = pkg
                .licence
                .clone()
                .unwrap_or_else(|| format!("? (license-file {})", pkg.licence_file.as_deref().unwrap_or("none")));
            format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                key.0,
                key.1,
                licence,
                kind,
                parents.join(", "),
                if pkg.build_script { "yes" } else { "no" },
                c,
                unsafe_cell
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------------------------

/// (a) Every locked package (name and version) has a row in the crate table.
#[test]
fn every_locked_package_has_a_row() {
    let world = world();
    let rows = world.rows_by_key();
    let missing: Vec<Key> = world.required().into_iter().filter(|k| !rows.contains_key(k)).collect();
    if missing.is_empty() {
        return;
    }
    let generated = generated_rows(world, &missing);
    let mut msg = format!(
        "{NOTES_FILE} has no crate-table row for {} package(s) in Cargo.lock. Add these rows to the table \
         between `{TABLE_BEGIN}` and `{TABLE_END}` (then review their Kind and C/C++/asm cells, and justify \
         any new direct dependency in the direct-dependencies section):\n",
        missing.len()
    );
    for (key, row) in missing.iter().zip(&generated) {
        msg.push_str(&format!("- add {}:\n    {row}\n", show(key)));
        let stale: Vec<String> = world
            .rows
            .iter()
            .filter(|r| r.name == key.0 && !world.required().contains(&r.key()))
            .map(|r| format!("{} (line {})", r.version, r.line))
            .collect();
        if !stale.is_empty() {
            msg.push_str(&format!(
                "    (the table still lists {} {}: update that row)\n",
                key.0,
                stale.join(", ")
            ));
        }
    }
    panic!("{msg}\n{HOW_TO_REGENERATE}{}", world.note());
}

/// (b) The licence allow-list is one policy in two places: the `allowed-licenses:` line of
/// vendor-notes.md (the human record) and `[licenses] allow` of deny.toml, which cargo-deny
/// (`.ci/deny`, run by CI) enforces over every locked package's SPDX expression.
#[test]
fn allow_list_matches_deny_toml() {
    let world = world();
    let deny_path = manifest_dir().join(DENY_FILE);
    let deny = fs::read_to_string(&deny_path).unwrap_or_else(|e| panic!("cannot read {}: {e}", deny_path.display()));
    let machine = deny_allow_list(&deny).unwrap_or_else(|e| panic!("{DENY_FILE}: {e}"));
    let only_notes: Vec<&String> = world.allow.difference(&machine).collect();
    let only_deny: Vec<&String> = machine.difference(&world.allow).collect();
    assert!(
        only_notes.is_empty() && only_deny.is_empty(),
        "the licence allow-lists differ: only on the `{ALLOW_KEY}` line of {NOTES_FILE}: {only_notes:?}; \
         only in `[licenses] allow` of {DENY_FILE}: {only_deny:?}. Change both together (cargo-deny \
         enforces {DENY_FILE}; {NOTES_FILE} says why each licence is there)"
    );
    assert!(world.notes.contains(TABLE_BEGIN));
}

/// The strings of the `allow = [...]` array in deny.toml's `[licenses]` table.
fn deny_allow_list(toml: &str) -> Result<BTreeSet<String>, String> {
    let mut in_licenses = false;
    let mut collecting: Option<String> = None;
    for line in toml.lines() {
        let code = line.split('#').next().unwrap_or("").trim();
        if let Some(acc) = collecting.as_mut() {
            acc.push_str(code);
            if code.contains(']') {
                break;
            }
            continue;
        }
        if code.starts_with('[') && !code.starts_with("[[") && code.ends_with(']') {
            in_licenses = code == "[licenses]";
            continue;
        }
        if in_licenses {
            if let Some(rest) = code.strip_prefix("allow") {
                let rest = rest.trim_start();
                if let Some(value) = rest.strip_prefix('=') {
                    collecting = Some(value.trim().to_string());
                    if value.contains(']') {
                        break;
                    }
                }
            }
        }
    }
    let value = collecting.ok_or("no `allow = [...]` in its `[licenses]` table")?;
    let inner = value
        .trim()
        .strip_prefix('[')
        .and_then(|v| v.trim_end().strip_suffix(']'))
        .ok_or("`[licenses] allow` is not an array")?;
    let mut out = BTreeSet::new();
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let id = item
            .strip_prefix('"')
            .and_then(|i| i.strip_suffix('"'))
            .ok_or_else(|| format!("`{item}` in `[licenses] allow` is not a quoted string"))?;
        out.insert(id.to_string());
    }
    Ok(out)
}

/// (c) Every table row names a locked package (no stale or duplicate rows).
#[test]
fn table_has_no_stale_rows() {
    let world = world();
    let required = world.required();
    let mut problems = Vec::new();
    for (key, rows) in world.rows_by_key() {
        if !required.contains(&key) {
            for row in &rows {
                let now: Vec<&str> = required.iter().filter(|k| k.0 == key.0).map(|k| k.1.as_str()).collect();
                let hint = if now.is_empty() {
                    String::new()
                } else {
                    format!(" (Cargo.lock now has {} {})", key.0, now.join(", "))
                };
                problems.push(format!(
                    "remove the row for {} ({NOTES_FILE} line {}): it is not in Cargo.lock{hint}",
                    show(&key),
                    row.line
                ));
            }
        } else if rows.len() > 1 {
            let lines: Vec<String> = rows.iter().map(|r| r.line.to_string()).collect();
            problems.push(format!(
                "{} has {} rows (lines {}): keep one",
                show(&key),
                rows.len(),
                lines.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the crate table in {NOTES_FILE} is out of date:\n- {}\n\n{HOW_TO_REGENERATE}{}",
        problems.join("\n- "),
        world.note()
    );
}

/// The licence cell of each row is the crate's own SPDX expression, so the table can be trusted
/// for crates whose source is not downloaded.
#[test]
fn table_licences_match_cargo_metadata() {
    let world = world();
    let mut problems = Vec::new();
    for row in &world.rows {
        let Some(expr) = world.meta.packages.get(&row.key()).and_then(|p| p.licence.as_ref()) else {
            continue;
        };
        if row.licence != *expr {
            problems.push(format!(
                "{NOTES_FILE} line {}: set the licence of {} to `{expr}` (the row says `{}`)",
                row.line,
                show(&row.key()),
                row.licence
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "licence cells differ from cargo metadata:\n- {}",
        problems.join("\n- ")
    );
}

/// `VENDOR_NOTES_PRINT=1 cargo test --test vendor_notes -- --nocapture` prints the whole table.
#[test]
fn print_generated_table_on_request() {
    if std::env::var_os(PRINT_ENV).is_none() {
        return;
    }
    let world = world();
    let keys: Vec<Key> = world.required().into_iter().collect();
    println!("| Crate | Version | Licence (SPDX) | Kind | Pulled in by | Build script | C/C++/asm | unsafe |");
    println!("|---|---|---|---|---|---|---|---|");
    for row in generated_rows(world, &keys) {
        println!("{row}");
    }
    if let Some(why) = &world.partial {
        println!("\n(partial: {why})");
    }
}

#[cfg(test)]
mod parsing {
    use super::*;

    #[test]
    fn table_and_lock_parsing() {
        let notes = format!(
            "intro\n{ALLOW_KEY} MIT, Apache-2.0 ,\n\n| a | b | c |\n|---|---|---|\n| not | in | table |\n\n\
             {TABLE_BEGIN}\n| Crate | Version | Licence |\n|---|:---:|---|\n| `foo` | 1.0.0 | MIT | x |\n\
             | bar | 0.2.1 | MIT/Apache-2.0 |\n{TABLE_END}\n| after | 9 | MIT |\n"
        );
        let rows = table_rows(&notes);
        let keys: Vec<Key> = rows.iter().map(Row::key).collect();
        assert_eq!(
            keys,
            vec![("foo".into(), "1.0.0".into()), ("bar".into(), "0.2.1".into())]
        );
        assert_eq!(rows[1].licence, "MIT/Apache-2.0");
        assert_eq!(rows[0].line, 11);
        assert_eq!(
            allow_list(&notes),
            ["Apache-2.0", "MIT"].iter().map(|s| s.to_string()).collect()
        );
        assert_eq!(lock_value(r#"name = "libc""#, "name"), Some("libc".into()));
        assert_eq!(lock_value(r#"version = "0.2.191""#, "name"), None);
    }

    #[test]
    fn deny_allow_list_parsing() {
        let toml = "[graph]\nallow = [\"no\"]\n\n[licenses]\nversion = 2\n# allow = [\"comment\"]\nallow = [\n    \"MIT\", # why\n    \"ISC\",\n]\n[bans]\n";
        assert_eq!(
            deny_allow_list(toml),
            Ok(["ISC", "MIT"].iter().map(|s| s.to_string()).collect())
        );
        assert_eq!(
            deny_allow_list("[licenses]\nallow = [\"MIT\", \"Apache-2.0\"]\n"),
            Ok(["Apache-2.0", "MIT"].iter().map(|s| s.to_string()).collect())
        );
        assert!(deny_allow_list("[licenses]\nversion = 2\n").is_err());
        assert!(deny_allow_list("[licenses]\nallow = [MIT]\n").is_err());
    }
}
