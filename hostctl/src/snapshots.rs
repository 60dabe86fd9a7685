//! Snapshots of agents' workspaces, kept on the agent's host: `snapshot` writes the workspace
//! as `snapshots/ID.tar.gz` (the host's own `tar`, gzip-compressed) and its description with
//! the agent's settings as `snapshots/ID.json`; `snapshot-read` writes an archive to stdout (to
//! be unpacked on any host, which checks its SHA-256, see [`HostCtl::unpack_verified`]);
//! `snapshot-remove` deletes both files.
//!
//! The snapshots directory is the host user's only (0700): a snapshot holds the agent's
//! environment, as its meta.json does.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::api::{SnapshotMeta, SnapshotRemoved, SnapshotRequest, validate_snapshot_id};
use crate::error::{Error, Result};
use crate::verbs::{HostCtl, check_name, now_rfc3339};

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
        let partial = dir.join(format!(".{}.tar.gz.part", request.id));
        let written = write_archive(&meta.workspace_path, &partial);
        let (size, sha256) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
        };
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
        let json = serde_json::to_vec_pretty(&snapshot)
            .map_err(|e| Error::Failed(format!("encoding the snapshot's description: {e}")))?;
        let described_partial = dir.join(format!(".{}.json.part", request.id));
        let finished = write_synced(&described_partial, &json)
            .and_then(|()| {
                std::fs::rename(&partial, &archive).map_err(Error::io("renaming", &partial))
            })
            .and_then(|()| {
                std::fs::rename(&described_partial, &described)
                    .map_err(Error::io("renaming", &described_partial))
            });
        if let Err(e) = finished {
            for path in [&partial, &described_partial, &archive] {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        Ok(snapshot)
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

/// Runs `tar -czf -` in `workspace`, writing its output to `path` (0600) while hashing it.
/// Returns the archive's size and SHA-256.
fn write_archive(workspace: &Path, path: &Path) -> Result<(u64, String)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("creating", path))?;
    let mut child = Command::new("tar")
        .arg("-C")
        .arg(workspace)
        .args(["-czf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "tar".into(),
            source,
        })?;
    // stderr is drained beside stdout, so that a tar with much to say never blocks.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
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
            argv: format!("tar -C {} -czf - .", workspace.display()),
            status: status.to_string(),
            stderr,
        });
    }
    file.sync_all().map_err(Error::io("writing", path))?;
    Ok((size, hex(&hasher.finalize())))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("creating", path))?;
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
    use crate::api::{AgentCommand, AgentMeta, CreateRequest, WorkspaceSource};
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
                    name: "w".into(),
                    template: "shell".into(),
                    command: AgentCommand::LoginShell,
                    restart_command: None,
                    workspace: WorkspaceSource::Empty,
                    env: [("MARK".to_owned(), "kept".to_owned())].into(),
                    tags: Default::default(),
                    prompt: None,
                    size: None,
                    created_by: Some("alice".into()),
                    secret_names: Vec::new(),
                },
                workspace_path: ws,
                created_at: now_rfc3339(),
                starts: 1,
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
