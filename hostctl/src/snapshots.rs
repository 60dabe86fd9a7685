//! Snapshots of agents' workspaces, kept on the agent's host: `snapshot` writes the workspace
//! (and a sandboxed agent's private home, see [`crate::files::HOME_IN_ARCHIVE`])
//! as `snapshots/ID.tar.gz` (the host's own `tar`, gzip-compressed) and its description with
//! the agent's settings as `snapshots/ID.json`; `snapshot-read` writes an archive to stdout (to
//! be unpacked on any host, which checks its SHA-256, see [`HostCtl::unpack_verified`]);
//! `snapshot-remove` deletes both files; `snapshot-list` reads the descriptions back (so a
//! gateway that lost its records finds the snapshots again).
//!
//! The snapshots directory is the host user's only (0700): a snapshot holds the agent's
//! environment, as its meta.json does.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::api::{
    SnapshotList, SnapshotMeta, SnapshotRemoved, SnapshotRequest, validate_snapshot_id,
};
use crate::disk::{Reserve, crossed_mib};
use crate::error::{Error, Result};
use crate::verbs::{HostCtl, check_name, drain_stderr, now_rfc3339};

/// The longest label a snapshot may have, in bytes.
pub const MAX_LABEL_LEN: usize = 200;

impl HostCtl {
    /// Writes agent `name`'s workspace as snapshot `request.id`. The archive is hashed as it
    /// is written and appears under its name only once complete; a failed `tar` (a file that
    /// changed while it was read, say) leaves nothing behind.
    pub fn snapshot(&self, name: &str, request: &SnapshotRequest) -> Result<SnapshotMeta> {
        check_name(name)?;
        check_id(&request.id)?;
        if let Some(label) = &request.label {
            check_label(label)?;
        }
        let meta = self.files.read_meta(name)?;
        // The private home goes into the archive with the workspace (see `crate::transfer`).
        let carried = self.carried(name)?;
        if !meta.workspace_path.is_dir() {
            return Err(Error::Failed(format!(
                "the workspace {} of agent '{name}' is gone",
                meta.workspace_path.display()
            )));
        }
        let dir = self.files.snapshots_dir();
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        set_private(&dir)?;
        let archive = self.files.snapshot_archive(&request.id);
        let described = self.files.snapshot_meta(&request.id);
        if archive.exists() || described.exists() {
            return Err(Error::AlreadyExists(format!(
                "a snapshot '{}' already exists on this host",
                request.id
            )));
        }
        remove_stale_parts(&dir);
        // The `.part` file, made with O_EXCL, claims the ID: a concurrent snapshot of the same
        // ID gets AlreadyExists here (the gateway then takes the next ID) instead of writing
        // into the same file.
        let partial = dir.join(format!(".{}.tar.gz.part", request.id));
        let described_partial = dir.join(format!(".{}.json.part", request.id));
        let reserve = Reserve::for_path(&dir)?;
        reserve.check(0, "taking the snapshot")?;
        let file = claim(&partial, &request.id)?;
        // What this call made, and so what it removes when it fails: never another call's.
        let mut made = vec![partial.clone()];
        let result =
            write_archive(&carried, file, &partial, &reserve).and_then(|(size, sha256)| {
                let snapshot = SnapshotMeta {
                    id: request.id.clone(),
                    agent: name.to_owned(),
                    label: request.label.clone(),
                    created_at: now_rfc3339(),
                    size,
                    sha256,
                    spec: meta.request,
                    taken_by: request.taken_by.clone(),
                };
                let json = serde_json::to_vec_pretty(&snapshot).map_err(|e| {
                    Error::Failed(format!("encoding the snapshot's description: {e}"))
                })?;
                let mut described_file = claim(&described_partial, &request.id)?;
                made.push(described_partial.clone());
                write_synced(&mut described_file, &described_partial, &json)?;
                publish(&partial, &archive, &request.id)?;
                made.push(archive.clone());
                publish(&described_partial, &described, &request.id)?;
                made.push(described.clone());
                Ok(snapshot)
            });
        match result {
            Ok(snapshot) => {
                // Published under their names (hard links): the claims can go.
                for path in [&partial, &described_partial] {
                    let _ = std::fs::remove_file(path);
                }
                Ok(snapshot)
            }
            Err(e) => {
                for path in &made {
                    let _ = std::fs::remove_file(path);
                }
                Err(e)
            }
        }
    }

    /// Copies snapshot `id`'s archive to `out`, as it is on disk: the receiving side checks it.
    pub fn snapshot_read(&self, id: &str, out: &mut dyn Write) -> Result<u64> {
        check_id(id)?;
        let path = self.files.snapshot_archive(id);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Failed(format!(
                    "snapshot '{id}' is not on this host: {} is missing",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io("opening", path)(e)),
        };
        let copied = std::io::copy(&mut file, out).map_err(Error::io("sending", &path))?;
        out.flush().map_err(Error::io("sending", &path))?;
        Ok(copied)
    }

    /// Deletes snapshot `id`'s files; a snapshot that is not here is not an error (`existed`
    /// says so).
    pub fn snapshot_remove(&self, id: &str) -> Result<SnapshotRemoved> {
        check_id(id)?;
        let mut existed = false;
        for path in [
            self.files.snapshot_archive(id),
            self.files.snapshot_meta(id),
        ] {
            match std::fs::remove_file(&path) {
                Ok(()) => existed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", path)(e)),
            }
        }
        Ok(SnapshotRemoved {
            removed: id.to_owned(),
            existed,
        })
    }
    /// The snapshots on this host, from their descriptions: only whole ones (a description
    /// whose archive is there with the recorded size); the rest are named in `skipped`. A
    /// snapshot being taken (its `.part` files) is not listed.
    pub fn snapshot_list(&self) -> Result<SnapshotList> {
        let dir = self.files.snapshots_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(SnapshotList::default());
            }
            Err(e) => return Err(Error::io("reading", &dir)(e)),
        };
        let mut list = SnapshotList::default();
        for entry in entries {
            let entry = entry.map_err(Error::io("reading", &dir))?;
            let file_name = entry.file_name();
            let Some(id) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .filter(|id| !id.starts_with('.'))
            else {
                continue;
            };
            match self.whole_snapshot(id) {
                Ok(meta) => list.snapshots.push(meta),
                Err(why) => list.skipped.push(format!("{id}: {why}")),
            }
        }
        list.snapshots
            .sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        list.skipped.sort();
        Ok(list)
    }

    /// Snapshot `id`'s description, if its archive is there with the size it records.
    fn whole_snapshot(&self, id: &str) -> std::result::Result<SnapshotMeta, String> {
        validate_snapshot_id(id)?;
        let path = self.files.snapshot_meta(id);
        let text =
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let meta: SnapshotMeta = serde_json::from_slice(&text)
            .map_err(|e| format!("{} is not a snapshot description: {e}", path.display()))?;
        if meta.id != id {
            return Err(format!(
                "{} describes snapshot '{}'",
                path.display(),
                meta.id
            ));
        }
        let archive = self.files.snapshot_archive(id);
        let size = std::fs::metadata(&archive)
            .map_err(|e| format!("its archive {}: {e}", archive.display()))?
            .len();
        if size != meta.size {
            return Err(format!(
                "its archive {} is {size} bytes, not the {} recorded",
                archive.display(),
                meta.size
            ));
        }
        Ok(meta)
    }
}

fn check_id(id: &str) -> Result<()> {
    validate_snapshot_id(id).map_err(Error::InvalidInput)
}

/// A label is one line of printable text.
pub fn check_label(label: &str) -> Result<()> {
    if label.len() > MAX_LABEL_LEN {
        return Err(Error::InvalidInput(format!(
            "the label is {} bytes long; the limit is {MAX_LABEL_LEN}",
            label.len()
        )));
    }
    if label.chars().any(char::is_control) {
        return Err(Error::InvalidInput(
            "a label cannot hold control characters (newlines, tabs, escapes)".into(),
        ));
    }
    Ok(())
}

/// How old a `.part` file is before a snapshot takes it for the remains of one that never
/// finished (a hostctl killed mid-way, a gateway that lost the connection), and removes it.
const STALE_PART_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Creates `path` (0600) for this call only: an existing file means another snapshot of the
/// same ID is being taken (or was left unfinished), reported as AlreadyExists.
fn claim(path: &Path, id: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => Ok(file),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(
            format!("a snapshot '{id}' is being taken on this host"),
        )),
        Err(e) => Err(Error::io("creating", path)(e)),
    }
}

/// Gives the finished `partial` its name `published` without replacing anything there (a
/// hard link fails when the name is taken, where a rename would replace it).
fn publish(partial: &Path, published: &Path, id: &str) -> Result<()> {
    match std::fs::hard_link(partial, published) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(Error::AlreadyExists(
            format!("a snapshot '{id}' already exists on this host"),
        )),
        Err(e) => Err(Error::io("publishing", published)(e)),
    }
}

/// Removes the `.*.part` files in the snapshots directory older than [`STALE_PART_AGE`]:
/// nothing lists them and `snapshot-remove` does not know them. Best effort.
fn remove_stale_parts(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with('.') && name.ends_with(".part")) {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_PART_AGE);
        if old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Runs `tar -czf -` in `workspace`, writing its output to `file` (at `path`) while hashing
/// it. Returns the archive's size and SHA-256.
fn write_archive(
    carried: &crate::files::Carried,
    mut file: std::fs::File,
    path: &Path,
    reserve: &Reserve,
) -> Result<(u64, String)> {
    let mut child = Command::new("tar")
        .args(["-czf", "-"])
        .args(carried.tar_members())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "tar".into(),
            source,
        })?;
    let stderr = drain_stderr(&mut child);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut copy_error = None;
    if let Some(mut out) = child.stdout.take() {
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            match out.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    hasher.update(&buf[..n]);
                    size += n as u64;
                    if let Err(e) = file.write_all(&buf[..n]) {
                        copy_error = Some(Error::io("writing", path)(e));
                        break;
                    }
                    if crossed_mib(size, n)
                        && let Err(e) = reserve.check(0, "the snapshot's archive")
                    {
                        copy_error = Some(e);
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    copy_error = Some(Error::io("reading tar's output for", path)(e));
                    break;
                }
            }
        }
    }
    if copy_error.is_some() {
        let _ = child.kill();
    }
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "tar".into(),
        source,
    })?;
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    if let Some(e) = copy_error {
        return Err(e);
    }
    if !status.success() {
        return Err(Error::Command {
            what: "archiving the workspace",
            argv: format!(
                "tar -czf - {}",
                carried
                    .tar_members()
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            status: status.to_string(),
            stderr,
        });
    }
    file.sync_all().map_err(Error::io("writing", path))?;
    Ok((size, hex(&hasher.finalize())))
}

fn write_synced(file: &mut std::fs::File, path: &Path, bytes: &[u8]) -> Result<()> {
    file.write_all(bytes)
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(Error::io("writing", path))
}

fn set_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io("protecting", dir))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AgentMeta, CreateRequest};
    use crate::files::Files;

    /// An agent `w` on a host in `dir` (its files only: no tmux), with a small workspace.
    fn host_with_agent(dir: &Path) -> HostCtl {
        let files = Files::new(dir.to_owned());
        let ws = dir.join("workspaces/w");
        std::fs::create_dir_all(ws.join("sub")).expect("mkdir");
        std::fs::write(ws.join("a.txt"), "alpha\n").expect("write");
        std::fs::write(ws.join("sub/b.bin"), [0u8, 1, 2, 255]).expect("write");
        std::fs::create_dir_all(files.agent_dir("w")).expect("mkdir");
        files
            .write_meta(&AgentMeta {
                request: CreateRequest {
                    env: [("MARK".to_owned(), "kept".to_owned())].into(),
                    created_by: Some("alice".into()),
                    ..CreateRequest::login_shell("w")
                },
                workspace_path: ws,
                created_at: now_rfc3339(),
                starts: 1,
                hooks: None,
            })
            .expect("meta");
        HostCtl::new(files)
    }

    fn request(id: &str) -> SnapshotRequest {
        SnapshotRequest {
            id: id.into(),
            label: Some("before the refactor".into()),
            taken_by: Some("alice".into()),
        }
    }

    #[test]
    fn the_list_holds_whole_snapshots_only_and_says_why_it_skips_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = host_with_agent(dir.path());
        assert_eq!(ctl.snapshot_list().expect("list"), SnapshotList::default());
        let first = ctl.snapshot("w", &request("w-1")).expect("snapshot");
        let second = ctl.snapshot("w", &request("w-2")).expect("snapshot");
        ctl.snapshot("w", &request("w-3")).expect("snapshot");
        let snapshots = dir.path().join("snapshots");
        // A snapshot being taken, a description that is not one, one for another ID, an
        // archive cut short and one gone.
        std::fs::write(snapshots.join(".w-9.json.part"), "{").expect("write");
        std::fs::write(snapshots.join("junk.json"), "not json").expect("write");
        std::fs::copy(snapshots.join("w-1.json"), snapshots.join("w-5.json")).expect("copy");
        std::fs::copy(snapshots.join("w-1.tar.gz"), snapshots.join("w-5.tar.gz")).expect("copy");
        let archive = snapshots.join("w-2.tar.gz");
        let bytes = std::fs::read(&archive).expect("read");
        std::fs::write(&archive, &bytes[..bytes.len() - 1]).expect("cut");
        std::fs::remove_file(snapshots.join("w-3.tar.gz")).expect("remove");

        let list = ctl.snapshot_list().expect("list");
        assert_eq!(list.snapshots, vec![first]);
        let skipped = list.skipped.join("\n");
        assert_eq!(list.skipped.len(), 4, "{skipped}");
        assert!(
            skipped.contains("junk: ") && skipped.contains("not a snapshot description"),
            "{skipped}"
        );
        assert!(
            skipped.contains("w-5: ") && skipped.contains("describes snapshot 'w-1'"),
            "{skipped}"
        );
        assert!(
            skipped.contains(&format!(
                "is {} bytes, not the {} recorded",
                second.size - 1,
                second.size
            )),
            "{skipped}"
        );
        assert!(skipped.contains("w-3: its archive"), "{skipped}");
    }

    #[test]
    fn a_snapshot_is_an_archive_with_its_checksum_and_the_agents_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = host_with_agent(dir.path());
        let snap = ctl.snapshot("w", &request("w-1")).expect("snapshot");
        let archive = std::fs::read(dir.path().join("snapshots/w-1.tar.gz")).expect("archive");
        assert_eq!(snap.size, archive.len() as u64);
        assert_eq!(snap.sha256, hex(&Sha256::digest(&archive)));
        assert_eq!(&archive[..2], &[0x1f, 0x8b], "gzip");
        assert_eq!(snap.spec.env["MARK"], "kept");
        let described: SnapshotMeta = serde_json::from_slice(
            &std::fs::read(dir.path().join("snapshots/w-1.json")).expect("json"),
        )
        .expect("decodes");
        assert_eq!(described, snap);
        let mut read = Vec::new();
        ctl.snapshot_read("w-1", &mut read).expect("read");
        assert_eq!(read, archive);
        // Nothing half-written is left beside it; an ID is taken once.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(matches!(
            ctl.snapshot("w", &request("w-1")),
            Err(Error::AlreadyExists(_))
        ));
        let removed = ctl.snapshot_remove("w-1").expect("remove");
        assert!(removed.existed);
        assert!(!ctl.snapshot_remove("w-1").expect("again").existed);
        assert!(matches!(
            ctl.snapshot_read("w-1", &mut Vec::new()),
            Err(Error::Failed(_))
        ));
    }

    #[test]
    fn a_part_file_already_there_claims_its_id_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = host_with_agent(dir.path());
        let snapshots = dir.path().join("snapshots");
        std::fs::create_dir_all(&snapshots).expect("mkdir");
        let theirs = snapshots.join(".w-1.tar.gz.part");
        std::fs::write(&theirs, "another snapshot's bytes").expect("write");
        assert!(matches!(
            ctl.snapshot("w", &request("w-1")),
            Err(Error::AlreadyExists(_))
        ));
        assert_eq!(
            std::fs::read_to_string(&theirs).expect("still there"),
            "another snapshot's bytes"
        );
        assert!(!snapshots.join("w-1.tar.gz").exists());
        assert!(!snapshots.join("w-1.json").exists());
        // A day later it is taken for the remains of a snapshot that never finished.
        let long_ago = std::time::SystemTime::now() - 2 * STALE_PART_AGE;
        std::fs::File::options()
            .write(true)
            .open(&theirs)
            .and_then(|f| f.set_modified(long_ago))
            .expect("age it");
        ctl.snapshot("w", &request("w-2")).expect("snapshot");
        assert!(!theirs.exists(), "a stale .part is removed");
        ctl.snapshot("w", &request("w-1"))
            .expect("the ID is free again");
    }

    #[test]
    fn two_snapshots_of_one_id_at_once_give_one_snapshot_whose_archive_is_intact() {
        let dir = tempfile::tempdir().expect("tempdir");
        host_with_agent(dir.path());
        // Enough to compress that the two overlap.
        let mut bytes = Vec::new();
        let mut x = 0x2545_f491_u32;
        for _ in 0..(4 << 20) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            bytes.push((x & 0x3f) as u8);
        }
        std::fs::write(dir.path().join("workspaces/w/big.bin"), &bytes).expect("write");
        for round in 1..=3 {
            let id = format!("w-{round}");
            let barrier = std::sync::Barrier::new(2);
            let results: Vec<Result<SnapshotMeta>> = std::thread::scope(|s| {
                let takers: Vec<_> = (0..2)
                    .map(|_| {
                        s.spawn(|| {
                            let ctl = HostCtl::new(Files::new(dir.path().to_owned()));
                            barrier.wait();
                            ctl.snapshot("w", &request(&id))
                        })
                    })
                    .collect();
                takers
                    .into_iter()
                    .map(|t| t.join().expect("no panic"))
                    .collect()
            });
            let taken: Vec<&SnapshotMeta> =
                results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(taken.len(), 1, "round {round}: {results:?}");
            assert!(
                results
                    .iter()
                    .any(|r| matches!(r, Err(Error::AlreadyExists(_)))),
                "round {round}: {results:?}"
            );
            let archive = std::fs::read(dir.path().join(format!("snapshots/{id}.tar.gz")))
                .expect("the recorded snapshot's archive is there");
            assert_eq!(
                taken[0].sha256,
                hex(&Sha256::digest(&archive)),
                "round {round}"
            );
            assert_eq!(taken[0].size, archive.len() as u64);
        }
        let left: Vec<_> = std::fs::read_dir(dir.path().join("snapshots"))
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left.len(), 6, "no .part left: {left:?}");
    }

    #[test]
    fn bad_ids_and_labels_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = host_with_agent(dir.path());
        for id in ["../w", "W", "", "a/b"] {
            assert!(
                matches!(ctl.snapshot("w", &request(id)), Err(Error::InvalidInput(_))),
                "{id:?}"
            );
        }
        let mut bad = request("w-2");
        bad.label = Some("two\nlines".into());
        assert!(matches!(
            ctl.snapshot("w", &bad),
            Err(Error::InvalidInput(_))
        ));
        bad.label = Some("x".repeat(MAX_LABEL_LEN + 1));
        assert!(matches!(
            ctl.snapshot("w", &bad),
            Err(Error::InvalidInput(_))
        ));
        assert!(!dir.path().join("snapshots/w-2.tar.gz").exists());
        assert!(matches!(
            ctl.snapshot("none", &request("n-1")),
            Err(Error::NotFound(_))
        ));
    }
}
