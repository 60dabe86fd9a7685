//! `diff`: what changed in an agent's workspace since the agent was created.
//!
//! A workspace that is a git repository is asked with git (`git status`, `git diff HEAD`).
//! Any other is compared with the list of its files that `create` records
//! (`agents/<name>/baseline.json`: every entry's kind, size, mode and modification time, and
//! the SHA-256 of small files, so that an edit that keeps the size and the time is still seen
//! for those). An agent created before that record existed has none, and `diff` says so rather
//! than guess.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::{ChangeKind, FileChange, GitChange, WorkspaceChanges};
use crate::error::{Error, Result};
use crate::verbs::{HostCtl, check_name, now_rfc3339};

/// A workspace with more entries than this gets no baseline (listing it would make `create`
/// slow); `diff` then says it was too large.
const MAX_BASELINE_ENTRIES: usize = 100_000;
/// Files up to this size are hashed in the baseline ...
const MAX_HASHED_FILE: u64 = 1024 * 1024;
/// ... until this many bytes have been hashed in all; larger or later files are compared by
/// size and modification time.
const MAX_HASHED_TOTAL: u64 = 256 * 1024 * 1024;

/// `agents/<name>/baseline.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    created_at: String,
    /// False when the workspace was too large to list: then `entries` is empty.
    complete: bool,
    entries: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    /// `f` file, `d` directory, `l` symlink, `o` other (fifo, device).
    kind: char,
    #[serde(default)]
    size: u64,
    mode: u32,
    mtime_ns: i128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
}

/// Records the baseline of a new agent's workspace. A workspace that is a git repository gets
/// none: git keeps a better record. Failing to record is not a reason to refuse the agent, so
/// the caller ignores the error (and `diff` later says there is no record).
pub fn record_baseline(ctl: &HostCtl, name: &str, workspace: &Path) -> Result<()> {
    if workspace.join(".git").exists() {
        return Ok(());
    }
    let mut entries = BTreeMap::new();
    let mut budget = MAX_HASHED_TOTAL;
    let complete = list(
        workspace,
        Path::new(""),
        &mut entries,
        Some(&mut budget),
        MAX_BASELINE_ENTRIES,
    )?;
    if !complete {
        entries.clear();
    }
    let baseline = Baseline {
        created_at: now_rfc3339(),
        complete,
        entries,
    };
    let path = ctl.files.baseline_path(name);
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec(&baseline)
        .map_err(|e| Error::Failed(format!("encoding the baseline: {e}")))?;
    std::fs::write(&tmp, json).map_err(Error::io("writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(Error::io("renaming", &tmp))
}

/// How `diff` prints.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiffOptions {
    /// Names and counts instead of the patch.
    pub stat: bool,
    pub json: bool,
}

impl HostCtl {
    /// Writes what changed in agent `name`'s workspace to `out` (git's own output is streamed
    /// as git writes it, when `out` is this process's stdout).
    pub fn diff(&self, name: &str, options: DiffOptions, out: &mut dyn Write) -> Result<()> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        let workspace = meta.workspace_path;
        if !workspace.is_dir() {
            return Err(Error::Failed(format!(
                "the workspace {} of agent '{name}' is gone",
                workspace.display()
            )));
        }
        if is_git_work_tree(&workspace) {
            return git_diff(&workspace, options, out);
        }
        let baseline = match std::fs::read(self.files.baseline_path(name)) {
            Ok(bytes) => serde_json::from_slice::<Baseline>(&bytes).map_err(|e| {
                Error::Failed(format!(
                    "the record of agent '{name}''s files is damaged: {e}"
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Failed(format!(
                    "agent '{name}' has no record of its workspace as it was created (it was created by an older agentgate), and its workspace is not a git repository: there is nothing to compare it with"
                )));
            }
            Err(e) => return Err(Error::io("reading", self.files.baseline_path(name))(e)),
        };
        if !baseline.complete {
            return Err(Error::Failed(format!(
                "agent '{name}''s workspace had more than {MAX_BASELINE_ENTRIES} entries when it was created, too many to record, and it is not a git repository: there is nothing to compare it with"
            )));
        }
        let mut now = BTreeMap::new();
        list(&workspace, Path::new(""), &mut now, None, usize::MAX)?;
        let changes = compare(&workspace, &baseline.entries, &now);
        if options.json {
            let report = WorkspaceChanges::Files {
                since: baseline.created_at,
                changes,
            };
            let text = serde_json::to_string(&report)
                .map_err(|e| Error::Failed(format!("encoding the changes: {e}")))?;
            return writeln!(out, "{text}").map_err(Error::io("writing", "stdout"));
        }
        write_file_changes(&baseline.created_at, &changes, options.stat, out)
            .map_err(Error::io("writing", "stdout"))
    }
}

fn write_file_changes(
    since: &str,
    changes: &[FileChange],
    stat: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    writeln!(
        out,
        "not a git repository: files changed since the agent was created ({since})"
    )?;
    let count = |kind| changes.iter().filter(|c| c.change == kind).count();
    if !stat {
        for c in changes {
            let (letter, sizes) = match (c.change, c.size_before, c.size_after) {
                (ChangeKind::Added, _, Some(after)) => ('A', format!("  ({after} bytes)")),
                (ChangeKind::Changed, Some(before), Some(after)) if before != after => {
                    ('M', format!("  ({before} -> {after} bytes)"))
                }
                (ChangeKind::Added, ..) => ('A', String::new()),
                (ChangeKind::Changed, ..) => ('M', String::new()),
                (ChangeKind::Removed, ..) => ('D', String::new()),
            };
            writeln!(out, "{letter}  {}{sizes}", c.path)?;
        }
    }
    if changes.is_empty() {
        writeln!(out, "no changes")
    } else {
        writeln!(
            out,
            "{} change{}: {} added, {} changed, {} removed",
            changes.len(),
            if changes.len() == 1 { "" } else { "s" },
            count(ChangeKind::Added),
            count(ChangeKind::Changed),
            count(ChangeKind::Removed)
        )
    }
}

/// The differences between the baseline and the workspace now, by path. A file whose size is
/// unchanged is compared by content when the baseline has its hash, else by time.
fn compare(
    root: &Path,
    before: &BTreeMap<String, Entry>,
    now: &BTreeMap<String, Entry>,
) -> Vec<FileChange> {
    let mut changes = Vec::new();
    let size_of = |e: &Entry| (e.kind == 'f').then_some(e.size);
    for (path, old) in before {
        match now.get(path) {
            None => changes.push(FileChange {
                change: ChangeKind::Removed,
                path: path.clone(),
                size_before: size_of(old),
                size_after: None,
            }),
            Some(new) if differs(root, path, old, new) => changes.push(FileChange {
                change: ChangeKind::Changed,
                path: path.clone(),
                size_before: size_of(old),
                size_after: size_of(new),
            }),
            Some(_) => {}
        }
    }
    for (path, new) in now {
        if !before.contains_key(path) {
            changes.push(FileChange {
                change: ChangeKind::Added,
                path: path.clone(),
                size_before: None,
                size_after: size_of(new),
            });
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    changes
}

fn differs(root: &Path, path: &str, old: &Entry, new: &Entry) -> bool {
    if old.kind != new.kind || old.mode != new.mode {
        return true;
    }
    match old.kind {
        'l' => old.target != new.target,
        'f' if old.size != new.size => true,
        'f' => match &old.sha256 {
            Some(sha) => hash_file(&root.join(path)).as_ref() != Some(sha),
            None => old.mtime_ns != new.mtime_ns,
        },
        _ => false,
    }
}

/// Lists the entries under `root/rel` into `entries`; hashes small files while `budget`
/// lasts (no hashing without one). Returns false when there were more than `limit` entries.
fn list(
    root: &Path,
    rel: &Path,
    entries: &mut BTreeMap<String, Entry>,
    mut budget: Option<&mut u64>,
    limit: usize,
) -> Result<bool> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(Error::io("reading", &dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        if entries.len() >= limit {
            return Ok(false);
        }
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            // Gone since the directory was read.
            continue;
        };
        let file_type = meta.file_type();
        if file_type.is_socket() {
            continue;
        }
        let kind = if file_type.is_symlink() {
            'l'
        } else if file_type.is_dir() {
            'd'
        } else if file_type.is_file() {
            'f'
        } else {
            'o'
        };
        let mut entry = Entry {
            kind,
            size: if kind == 'f' { meta.len() } else { 0 },
            mode: meta.permissions().mode() & 0o7777,
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            sha256: None,
            target: None,
        };
        if kind == 'l' {
            entry.target = std::fs::read_link(&path)
                .ok()
                .map(|t| t.to_string_lossy().into_owned());
        }
        if let Some(left) = budget.as_deref_mut()
            && kind == 'f'
            && entry.size <= MAX_HASHED_FILE
            && entry.size <= *left
        {
            entry.sha256 = hash_file(&path);
            *left -= entry.size;
        }
        entries.insert(rel.to_string_lossy().into_owned(), entry);
        if kind == 'd' && !list(root, &rel, entries, budget.as_deref_mut(), limit)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn hash_file(path: &Path) -> Option<String> {
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(crate::snapshots::hex(&hasher.finalize()))
}

fn git(workspace: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(workspace)
        .args(["-c", "core.quotepath=off", "-c", "color.ui=never"])
        // Reading the state must not write the index (an agent may be using git right now).
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_PAGER", "cat")
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    cmd
}

/// Whether the workspace is inside a git working tree (false too when git is not installed).
fn is_git_work_tree(workspace: &Path) -> bool {
    git(workspace)
        .args(["rev-parse", "--is-inside-work-tree"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"true"))
}

fn git_output(workspace: &Path, args: &[&str], what: &'static str) -> Result<Vec<u8>> {
    let out = git(workspace)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            program: "git".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(Error::Command {
            what,
            argv: format!("git -C {} {}", workspace.display(), args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(out.stdout)
}

/// Parses `git status --porcelain=v1 -z`: `XY PATH\0`, with the old path in the next field
/// for a rename or a copy.
fn parse_porcelain(bytes: &[u8]) -> Vec<GitChange> {
    let mut fields = bytes
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned());
    let mut changes = Vec::new();
    while let Some(field) = fields.next() {
        let Some((status, path)) = field.split_at_checked(2) else {
            continue;
        };
        let path = path.strip_prefix(' ').unwrap_or(path).to_owned();
        let from = if status.contains('R') || status.contains('C') {
            fields.next()
        } else {
            None
        };
        changes.push(GitChange {
            status: status.to_owned(),
            path,
            from,
        });
    }
    changes
}

fn git_diff(workspace: &Path, options: DiffOptions, out: &mut dyn Write) -> Result<()> {
    let status = git_output(
        workspace,
        &[
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=all",
            ".",
        ],
        "reading the repository's status",
    )?;
    let changes = parse_porcelain(&status);
    let untracked: Vec<String> = changes
        .iter()
        .filter(|c| c.status == "??")
        .map(|c| c.path.clone())
        .collect();
    let has_head = git(workspace)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let diff_args: &[&str] = if options.stat {
        &["diff", "--no-ext-diff", "--stat", "HEAD", "--", "."]
    } else {
        &["diff", "--no-ext-diff", "HEAD", "--", "."]
    };
    if options.json {
        let text = if has_head {
            Some(
                String::from_utf8_lossy(&git_output(workspace, diff_args, "diffing")?).into_owned(),
            )
        } else {
            None
        };
        let (patch, stat) = if options.stat {
            (None, text)
        } else {
            (text, None)
        };
        let report = WorkspaceChanges::Git {
            changes,
            untracked,
            has_head,
            patch,
            stat,
        };
        let text = serde_json::to_string(&report)
            .map_err(|e| Error::Failed(format!("encoding the changes: {e}")))?;
        return writeln!(out, "{text}").map_err(Error::io("writing", "stdout"));
    }
    let written = (|| -> std::io::Result<()> {
        writeln!(out, "git repository: git status")?;
        for c in &changes {
            match &c.from {
                Some(from) => writeln!(out, "{} {from} -> {}", c.status, c.path)?,
                None => writeln!(out, "{} {}", c.status, c.path)?,
            }
        }
        if changes.is_empty() {
            writeln!(
                out,
                "nothing changed: the working tree matches the last commit"
            )?;
        }
        if !untracked.is_empty() {
            writeln!(
                out,
                "untracked (not in the diff below): {}",
                untracked.join(", ")
            )?;
        }
        if !has_head {
            writeln!(out, "no commit yet: there is nothing to diff against")?;
        }
        out.flush()
    })();
    written.map_err(Error::io("writing", "stdout"))?;
    if !has_head || changes.iter().all(|c| c.status == "??") {
        return Ok(());
    }
    writeln!(out).map_err(Error::io("writing", "stdout"))?;
    out.flush().map_err(Error::io("writing", "stdout"))?;
    // git writes the diff straight to our stdout: a large diff is streamed, never held here.
    let status = git(workspace)
        .args(diff_args)
        .stdout(Stdio::inherit())
        .status()
        .map_err(|source| Error::Spawn {
            program: "git".into(),
            source,
        })?;
    if !status.success() {
        return Err(Error::Command {
            what: "diffing",
            argv: format!("git -C {} {}", workspace.display(), diff_args.join(" ")),
            status: status.to_string(),
            stderr: String::new(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(root: &Path) -> BTreeMap<String, Entry> {
        let mut entries = BTreeMap::new();
        let mut budget = MAX_HASHED_TOTAL;
        assert!(list(root, Path::new(""), &mut entries, Some(&mut budget), 1000).expect("list"));
        entries
    }

    #[test]
    fn files_added_changed_and_removed_are_found_even_at_the_same_size_and_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("src")).expect("mkdir");
        std::fs::write(root.join("src/a.txt"), "alpha").expect("write");
        std::fs::write(root.join("same.txt"), "same").expect("write");
        std::fs::write(root.join("gone.txt"), "bye").expect("write");
        let before = listed(root);
        assert!(compare(root, &before, &listed(root)).is_empty());

        // Same size, same second: only the hash can tell.
        let mtime = std::fs::metadata(root.join("src/a.txt"))
            .and_then(|m| m.modified())
            .expect("mtime");
        std::fs::write(root.join("src/a.txt"), "ALPHA").expect("write");
        std::fs::File::options()
            .write(true)
            .open(root.join("src/a.txt"))
            .and_then(|f| f.set_modified(mtime))
            .expect("set mtime");
        std::fs::remove_file(root.join("gone.txt")).expect("rm");
        std::fs::write(root.join("new.txt"), "fresh").expect("write");
        let changes = compare(root, &before, &listed(root));
        let seen: Vec<(ChangeKind, &str)> = changes
            .iter()
            .map(|c| (c.change, c.path.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                (ChangeKind::Removed, "gone.txt"),
                (ChangeKind::Added, "new.txt"),
                (ChangeKind::Changed, "src/a.txt"),
            ]
        );
    }

    #[test]
    fn too_many_entries_make_an_incomplete_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), "x").expect("write");
        }
        let mut entries = BTreeMap::new();
        assert!(!list(dir.path(), Path::new(""), &mut entries, None, 3).expect("list"));
    }

    #[test]
    fn porcelain_entries_keep_renames_and_odd_names() {
        let raw = b" M src/lib.rs\0R  new name.rs\0old name.rs\0?? notes.txt\0";
        let changes = parse_porcelain(raw);
        assert_eq!(changes.len(), 3);
        assert_eq!(changes[0].status, " M");
        assert_eq!(changes[0].path, "src/lib.rs");
        assert_eq!(changes[1].path, "new name.rs");
        assert_eq!(changes[1].from.as_deref(), Some("old name.rs"));
        assert_eq!(
            (changes[2].status.as_str(), changes[2].path.as_str()),
            ("??", "notes.txt")
        );
    }
}
