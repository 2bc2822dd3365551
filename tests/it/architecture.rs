//! The module rules of `DESIGN.md` ("who may use whom"), read off the source: every `crate::part`
//! path under `src/` (in `use` lines, groups and inline paths, as `../shared/tools/module-rules.py`
//! reads them). Units, supervisors and engines never import one another; `render/` and
//! `inspector/` read only the SAB and the protocol's vocabulary; nothing but `main.rs` imports
//! `cli`; the parts form no cycle.
//!
//! `KNOWN` lists the imports that still break a rule, each with the work that removes it: a new
//! break fails the test, and so does an entry that no longer occurs (the list only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// part -> the parts it must never use.
const NEVER: &[(&str, &[&str])] = &[
    (
        "sab",
        &[
            "units",
            "supervisors",
            "engines",
            "mesh",
            "protocol",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "protocol",
        &[
            "units",
            "supervisors",
            "engines",
            "mesh",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "units",
        &[
            "supervisors",
            "engines",
            "mesh",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "supervisors",
        &[
            "units",
            "engines",
            "mesh",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "engines",
        &[
            "units",
            "supervisors",
            "mesh",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "mesh",
        &[
            "units",
            "supervisors",
            "engines",
            "render",
            "inspector",
            "cli",
            "bench",
            "headless",
        ],
    ),
    (
        "render",
        &["units", "supervisors", "engines", "mesh", "cli", "bench", "headless"],
    ),
    (
        "inspector",
        &["units", "supervisors", "engines", "mesh", "cli", "bench", "headless"],
    ),
];

/// Imports that still break a rule: (file, the part it uses). None are left; a break that must
/// stay for a while is listed here with the work that removes it.
const KNOWN: &[(&str, &str)] = &[];

/// Folders whose members are separate parts too: a unit never uses another unit, an engine never
/// another engine (they meet in the SAB like everyone else; a plain `crate::units::boids::Flock`
/// inside a function counts as much as a `use` line). Their shared ground (`mod.rs`, and the
/// units' job host and worker pool) is not a member.
const MEMBERS: &[(&str, &[&str])] = &[("units", &["mod", "host", "pool"]), ("engines", &["mod"])];

/// The top-level part a source file belongs to (`src/units/boids/grid.rs` -> `units`).
fn part_of(path: &Path) -> String {
    let first = path.components().nth(1).expect("a file under src/");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_owned()
}

/// Every `.rs` file under `dir`, generated code left out.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "generated") {
                sources(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The parts `text` names as `crate::part` (plain paths and `crate::{a, b::c}` groups).
fn parts_used(text: &str) -> BTreeSet<String> {
    let word = |s: &str| {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
    };
    let mut used = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            // The first word of each comma-separated path in the group (nested groups included).
            used.extend(
                group
                    .split([',', '{'])
                    .map(|path| word(path.trim()))
                    .filter(|w| !w.is_empty()),
            );
        } else {
            used.insert(word(rest));
        }
    }
    used
}

/// Part -> the parts it uses.
type Edges = BTreeMap<String, BTreeSet<String>>;

/// Every (file, part used) in `src/`, and the edges between parts (the crate root left out).
fn imports() -> (BTreeSet<(String, String)>, Edges) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    let (mut uses, mut edges) = (BTreeSet::new(), Edges::new());
    for path in files {
        let rel = path.strip_prefix(root).expect("under the root").to_path_buf();
        let me = part_of(&rel);
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for other in parts_used(&text) {
            if other != me {
                uses.insert((rel.to_string_lossy().into_owned(), other.clone()));
                if me != "lib" && other != "lib" {
                    edges.entry(me.clone()).or_default().insert(other);
                }
            }
        }
    }
    (uses, edges)
}

/// The rules `file` (of `part`) breaks by using `other`.
fn broken(file: &str, part: &str, other: &str) -> Option<String> {
    if other == "cli" && part != "main" {
        return Some("nothing but main.rs imports cli".into());
    }
    NEVER
        .iter()
        .find(|(p, _)| *p == part)
        .filter(|(_, never)| never.contains(&other))
        .map(|_| format!("{part}/ never uses {other}/ (DESIGN.md, \"who may use whom\"): {file}"))
}

#[test]
fn the_module_rules_hold() {
    let (uses, _) = imports();
    let mut found = BTreeSet::new();
    let mut new = Vec::new();
    for (file, other) in &uses {
        let part = part_of(Path::new(file));
        if let Some(rule) = broken(file, &part, other) {
            found.insert((file.as_str(), other.as_str()));
            if !KNOWN.contains(&(file.as_str(), other.as_str())) {
                new.push(rule);
            }
        }
    }
    assert!(
        new.is_empty(),
        "imports that break the module rules:\n  {}",
        new.join("\n  ")
    );
    let fixed: Vec<_> = KNOWN.iter().filter(|k| !found.contains(*k)).collect();
    assert!(fixed.is_empty(), "no longer broken, remove from KNOWN: {fixed:?}");
}

/// The members of a `MEMBERS` folder: its modules (files and folders) but the shared ones.
fn members(root: &Path, folder: &str, shared: &[&str]) -> BTreeSet<String> {
    std::fs::read_dir(root.join("src").join(folder))
        .expect("read a part's folder")
        .map(|e| e.expect("a directory entry").file_name().to_string_lossy().into_owned())
        .map(|name| name.strip_suffix(".rs").map_or(name.clone(), str::to_owned))
        .filter(|name| !shared.contains(&name.as_str()))
        .collect()
}

/// The names `text` reaches under `prefix` (`crate::units::`): single paths and `{...}` groups.
fn names_under(text: &str, prefix: &str) -> BTreeSet<String> {
    let word = |s: &str| -> String { s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect() };
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let rest = &text[i + prefix.len()..];
        let Some(group) = rest.strip_prefix('{') else {
            names.insert(word(rest));
            continue;
        };
        // The first name of each path directly in the group (nested groups are deeper names).
        let (mut depth, mut at_start) = (0, true);
        for (k, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => at_start = true,
                c if at_start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                    names.insert(word(&group[k..]));
                    at_start = false;
                }
                _ => {}
            }
        }
    }
    names
}

#[test]
fn units_and_engines_never_use_one_another() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut broken = Vec::new();
    for (folder, shared) in MEMBERS {
        let members = members(root, folder, shared);
        assert!(members.len() >= 2, "{folder}/ has members: {members:?}");
        let mut files = Vec::new();
        sources(&root.join("src").join(folder), &mut files);
        for path in files {
            let rel = path.strip_prefix(root).expect("under the root");
            let me = rel
                .components()
                .nth(2)
                .expect("a file in the folder")
                .as_os_str()
                .to_string_lossy();
            let me = me.strip_suffix(".rs").unwrap_or(&me).to_owned();
            let text = std::fs::read_to_string(&path).expect("read a source file");
            for other in names_under(&text, &format!("crate::{folder}::")) {
                if members.contains(&other) && other != me {
                    broken.push(format!("{}: {folder}/{me} uses {folder}/{other}", rel.display()));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "parts that use one another:\n  {}",
        broken.join("\n  ")
    );
    assert_eq!(
        names_under(
            "use crate::units::{host::X, boids::{A, B}};\nlet f = crate::units::physics::g;",
            "crate::units::"
        ),
        ["boids", "host", "physics"].map(String::from).into_iter().collect()
    );
}

#[test]
fn the_parts_form_no_cycle() {
    let (_, edges) = imports();
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit<'a>(
        part: &'a str,
        edges: &'a Edges,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == part) {
            let mut cycle: Vec<String> = path[at..].iter().map(|p| p.to_string()).collect();
            cycle.push(part.to_owned());
            return Some(cycle);
        }
        if !done.insert(part) {
            return None;
        }
        path.push(part);
        for next in edges.get(part).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for part in edges.keys() {
        if let Some(cycle) = visit(part, &edges, &mut Vec::new(), &mut done) {
            panic!("the parts import one another in a cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_scanner_sees_plain_paths_and_groups() {
    let text =
        "use crate::sab::{Sab, X};\nuse crate::{engines::Y, units::{boids, matrices}};\nfn f() { crate::cli::main() }";
    let used: Vec<String> = parts_used(text).into_iter().collect();
    assert_eq!(used, ["boids", "cli", "engines", "matrices", "sab", "units"]);
    assert!(broken("src/engines/x.rs", "engines", "units").is_some());
    assert!(broken("src/headless.rs", "headless", "cli").is_some());
    assert!(broken("src/main.rs", "main", "cli").is_none());
    assert!(broken("src/units/x.rs", "units", "sab").is_none());
}
