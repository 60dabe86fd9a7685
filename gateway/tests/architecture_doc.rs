//! docs/ARCHITECTURE.md's code map names every module of `gateway/src` and `hostctl/src`, and
//! every path it names exists: a module added without a word in the map, or one renamed or
//! removed while the map still names it, fails here.
//!
//! How the map names paths (kept simple, so that a renamed module is a one-line fix): a path is
//! a word in backticks made of letters, digits, `_`, `-`, `.` and `/` that ends in `.rs` (a
//! file) or `/` (a directory). In a `### ` heading it is written from the repository's root,
//! and the heading's first such path is the directory that the paths below it, up to the next
//! heading, are written from. Other modules are named the Rust way (`agents::access`), which
//! is no path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The trees whose every `.rs` file and directory the code map must name.
const MAPPED_WHOLE: &[&str] = &["gateway/src", "hostctl/src"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn architecture_md() -> std::io::Result<String> {
    std::fs::read_to_string(repo_root().join("docs/ARCHITECTURE.md"))
}

/// The `## Code map` section, up to the next `## ` heading, and the number of the document's
/// line it starts on (counting from 1), so that a failure can point at the line to fix.
fn code_map(doc: &str) -> Option<(&str, usize)> {
    let heading = doc.find("\n## Code map\n")? + 1;
    let start = heading + "## Code map\n".len();
    let rest = &doc[start..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i + 1);
    Some((&rest[..end], doc[..start].lines().count() + 1))
}

/// The words in backticks on one line that are paths (see the top of this file).
fn paths_on(line: &str) -> Vec<&str> {
    line.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| {
            !word.is_empty()
                && (word.ends_with(".rs") || word.ends_with('/'))
                && word
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        })
        .collect()
}

/// Every path the code map names, as written from the repository's root (a directory keeps
/// its `/`), with the line it is on.
fn named_paths(map: &str) -> Vec<(String, usize)> {
    let mut base = String::new();
    let mut named = Vec::new();
    for (number, line) in map.lines().enumerate() {
        if line.starts_with("### ") {
            let heading = paths_on(line);
            base = heading
                .iter()
                .find(|p| p.ends_with('/'))
                .map_or_else(String::new, |dir| (*dir).to_owned());
            named.extend(heading.into_iter().map(|p| (p.to_owned(), number)));
        } else {
            named.extend(
                paths_on(line)
                    .into_iter()
                    .map(|p| (format!("{base}{p}"), number)),
            );
        }
    }
    named
}

/// Every `.rs` file (`dir/file.rs`) and directory (`dir/sub/`) under `dir`, `dir/` itself
/// included, written from the repository's root.
fn modules_under(root: &Path, dir: &str) -> std::io::Result<Vec<String>> {
    let mut found = vec![format!("{dir}/")];
    for entry in std::fs::read_dir(root.join(dir))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{dir}/{name}");
        if entry.file_type()?.is_dir() {
            found.extend(modules_under(root, &path)?);
        } else if name.ends_with(".rs") {
            found.push(path);
        }
    }
    Ok(found)
}

#[test]
fn every_path_the_code_map_names_exists() {
    let doc = architecture_md().expect("docs/ARCHITECTURE.md can be read");
    let (map, first_line) =
        code_map(&doc).expect("docs/ARCHITECTURE.md has a `## Code map` section");
    let root = repo_root();
    let missing: Vec<String> = named_paths(map)
        .into_iter()
        .filter(|(path, _)| {
            let on_disk = root.join(path);
            if path.ends_with('/') {
                !on_disk.is_dir()
            } else {
                !on_disk.is_file()
            }
        })
        .map(|(path, line)| format!("{path} (docs/ARCHITECTURE.md:{})", first_line + line))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md's code map names paths that do not exist (a module renamed or \
         removed? a path written from the wrong heading?): {missing:#?}"
    );
}

#[test]
fn the_code_map_names_every_module() {
    let doc = architecture_md().expect("docs/ARCHITECTURE.md can be read");
    let (map, _) = code_map(&doc).expect("docs/ARCHITECTURE.md has a `## Code map` section");
    let named: BTreeSet<String> = named_paths(map).into_iter().map(|(p, _)| p).collect();
    let root = repo_root();
    let unnamed: Vec<String> = MAPPED_WHOLE
        .iter()
        .flat_map(|dir| modules_under(&root, dir).expect("a source directory can be read"))
        .filter(|module| !named.contains(module))
        .collect();
    assert!(
        unnamed.is_empty(),
        "docs/ARCHITECTURE.md's code map does not name these modules (say in a line what each \
         does, under the heading of its directory): {unnamed:#?}"
    );
}

#[test]
fn paths_are_read_from_their_heading() {
    let map = "\
Intro naming `tests/` from the root.
### `gateway/src/hosts/`
- `mod.rs` and `remote/`: the hosts; `agents::access` and `Host` are no paths.
- `remote/leg.rs` (not `hostctl serve`, not `copies/NAME.json`).
### `Cargo.toml`
- `fuzz/` from the root again.
";
    let named: Vec<String> = named_paths(map).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        named,
        [
            "tests/",
            "gateway/src/hosts/",
            "gateway/src/hosts/mod.rs",
            "gateway/src/hosts/remote/",
            "gateway/src/hosts/remote/leg.rs",
            "fuzz/",
        ]
    );
}
