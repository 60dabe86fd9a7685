//! Moving workspaces between hosts (`clone`, `migrate`): `pack` writes a workspace as a tar
//! stream on stdout, `unpack` makes a new owned workspace from a tar stream on stdin, `digest`
//! fingerprints a workspace so that a copy can be verified, and `discard` removes an unpacked
//! workspace that no agent owns (a copy that failed verification). `unpack-snapshot` makes a
//! workspace from a snapshot's archive, and unpacks it only once its size and checksum are
//! the ones recorded.
//!
//! A copy made for one of the gateway's operations (`--operation ID`) is marked while it is
//! written and once it is whole (`copies/NAME.json`, a [`CopyMark`]), until an agent takes the
//! workspace or the copy is discarded: a gateway that died during the operation finds a half
//! copy and a whole copy with no agent, knows they are its own, and removes them
//! (`discard NAME --operation ID`); a workspace without its mark is never removed that way.
//!
//! tar is the host's own (GNU `tar`): it keeps modes, symlinks, hard links and empty
//! directories.
//!
//! A sandboxed agent's private home (`agents/NAME/home`) travels in the same tar stream, and in
//! a snapshot's archive, as the top-level directory [`HOME_IN_ARCHIVE`] of the workspace: the
//! copy and the digest both sides compare hold it, and the agent created from the copy takes
//! it as its home ([`HostCtl::adopt_carried_home`]). An archive without it (an agent with no
//! sandbox, a snapshot taken before homes travelled) makes an agent without a carried home.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::WorkspaceDigest;
use crate::disk::{Reserve, crossed_mib};
use crate::error::{Error, Result};
use crate::files::{Carried, HOME_IN_ARCHIVE};
use crate::verbs::{HostCtl, check_name};

/// A real directory at `path` (not a symlink to one), or none.
fn real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

impl HostCtl {
    /// What a transfer of `name` carries: an agent's workspace and its private home (when it
    /// has one), or for a name with no agent, the unpacked workspace and the home it brought.
    /// An agent whose workspace holds a top-level [`HOME_IN_ARCHIVE`] of its own is refused:
    /// on the other side it would be taken for the home.
    pub(crate) fn carried(&self, name: &str) -> Result<Carried> {
        check_name(name)?;
        if self.files.agent_dir(name).exists() {
            let workspace = self.files.read_meta(name)?.workspace_path;
            let home = self.files.private_home(name);
            let reserved = workspace.join(HOME_IN_ARCHIVE);
            if real_dir(&home) && std::fs::symlink_metadata(&reserved).is_ok() {
                return Err(Error::InvalidInput(format!(
                    "the workspace holds {}, a name agentgate keeps for carrying the agent's private home: rename it, then try again",
                    reserved.display()
                )));
            }
            return Ok(Carried {
                workspace,
                home: real_dir(&home).then_some(home),
            });
        }
        let workspace = self.files.owned_workspace(name);
        if !workspace.is_dir() {
            return Err(Error::NotFound(name.to_owned()));
        }
        let home = workspace.join(HOME_IN_ARCHIVE);
        Ok(Carried {
            home: real_dir(&home).then_some(home),
            workspace,
        })
    }

    /// Moves the private home an unpacked copy brought (`workspaces/NAME/.agentgate-home`) to
    /// agent `name`'s directory, as its home. A copy that brought none leaves nothing to do;
    /// one whose entry is not a directory is refused (the archive was not made by `pack`).
    pub fn adopt_carried_home(&self, name: &str, workspace: &Path) -> Result<()> {
        let carried = workspace.join(HOME_IN_ARCHIVE);
        match std::fs::symlink_metadata(&carried) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("reading", &carried)(e)),
            Ok(m) if !m.is_dir() => Err(Error::InvalidInput(format!(
                "{} is not a directory: the copy was not made by hostctl pack, and its private home cannot be taken",
                carried.display()
            ))),
            Ok(_) => {
                let home = self.files.private_home(name);
                std::fs::rename(&carried, &home).map_err(Error::io("moving", &carried))?;
                // What was moved is checked again, not followed: a symlink swapped in since it
                // was looked at is not chmod-ed through.
                if !real_dir(&home) {
                    let _ = std::fs::rename(&home, &carried);
                    return Err(Error::InvalidInput(format!(
                        "{} is not a directory: the copy's private home cannot be taken",
                        carried.display()
                    )));
                }
                // It will hold the agent CLI's credentials, as a home made here would.
                std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))
                    .map_err(Error::io("protecting", &home))
            }
        }
    }

    /// Puts an adopted home back into the unpacked copy (a create that failed after taking
    /// it), so that the copy is whole again for the next attempt.
    pub fn return_carried_home(&self, name: &str, workspace: &Path) {
        let home = self.files.private_home(name);
        if real_dir(&home) && real_dir(workspace) {
            let _ = std::fs::rename(&home, workspace.join(HOME_IN_ARCHIVE));
        }
    }

    /// Writes the agent's workspace, and its private home if it has one, to stdout as a tar
    /// stream (replaces this process with tar).
    pub fn pack(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let carried = self.carried(name)?;
        let err = Command::new("tar")
            .args(["-cf", "-"])
            .args(carried.tar_members())
            .exec();
        Err(Error::Spawn {
            program: "tar".into(),
            source: err,
        })
    }

    /// Makes `workspaces/NAME/` from a tar stream on stdin. Refused when an agent of that name
    /// exists here or the directory is already there; a failed extraction leaves nothing.
    pub fn unpack(&self, name: &str, operation: Option<&str>) -> Result<PathBuf> {
        let path = self.new_unpacked_dir(name, operation)?;
        let mut tar = Command::new("tar");
        tar.arg("-C")
            .arg(&path)
            // -p: the modes as packed, whatever this user's umask.
            .args(["-xpf", "-"])
            .stdin(Stdio::inherit())
            .stdout(Stdio::null());
        let failed = match Reserve::for_path(&path)
            .and_then(|reserve| reserve.run_watched(&mut tar, "unpacking the workspace"))
        {
            Ok((status, _)) if status.success() => None,
            Ok((status, stderr)) => Some(Error::Command {
                what: "unpacking the workspace",
                argv: format!("tar -C {} -xpf -", path.display()),
                status: status.to_string(),
                stderr,
            }),
            Err(e) => Some(e),
        };
        match failed {
            Some(e) => Err(self.undo_unpack(name, &path, e)),
            None => self.copy_complete(name, operation).map(|()| path),
        }
    }

    /// Makes `workspaces/NAME/` from a snapshot's archive (a gzip-compressed tar) read from
    /// `input`. Nothing is unpacked before the archive is known to be the snapshot's: the
    /// bytes go to an unnamed 0600 file in the agentgate directory while they are hashed and
    /// counted, more than `expected_size` bytes are refused at once, and tar reads the file
    /// only once its SHA-256 is `expected_sha256`. Whatever fails, nothing is kept: a
    /// workspace that cannot be removed is reported as such.
    pub fn unpack_verified(
        &self,
        name: &str,
        expected_sha256: &str,
        expected_size: u64,
        input: &mut dyn Read,
        operation: Option<&str>,
    ) -> Result<PathBuf> {
        crate::api::validate_sha256(expected_sha256).map_err(Error::InvalidInput)?;
        let path = self.new_unpacked_dir(name, operation)?;
        let result = self
            .spool_verified(name, expected_sha256, expected_size, input)
            .and_then(|spooled| extract_file(&path, spooled));
        match result {
            Err(e) => Err(self.undo_unpack(name, &path, e)),
            Ok(()) => self.copy_complete(name, operation).map(|()| path),
        }
    }

    /// Removes what a failed unpack made (the workspace, then its mark); returns the error to
    /// tell.
    fn undo_unpack(&self, name: &str, path: &Path, e: Error) -> Error {
        if let Err(cleanup) = remove_tree(path) {
            return Error::Failed(format!(
                "{e}; and the partial workspace {} could not be removed: {cleanup}",
                path.display()
            ));
        }
        let _ = remove_mark(&self.files.copy_mark(name));
        e
    }

    /// Marks the copy for `name` whole, when it was made for an operation.
    fn copy_complete(&self, name: &str, operation: Option<&str>) -> Result<()> {
        match operation {
            Some(operation) => self.write_mark(
                name,
                &CopyMark {
                    operation: operation.to_owned(),
                    complete: true,
                },
            ),
            None => Ok(()),
        }
    }

    /// The mark of the copy for `name`, if there is one (a damaged one reads as none: it
    /// names no operation, so nothing is removed on its word).
    pub fn copy_mark(&self, name: &str) -> Option<CopyMark> {
        let text = std::fs::read(self.files.copy_mark(name)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the mark whole or not at all (a temporary file renamed over it).
    fn write_mark(&self, name: &str, mark: &CopyMark) -> Result<()> {
        use std::io::Write;
        let path = self.files.copy_mark(name);
        let dir = path.parent().unwrap_or(self.files.home()).to_owned();
        std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
        let partial = dir.join(format!(".{name}.json.{}", std::process::id()));
        let text = serde_json::to_vec(mark)
            .map_err(|e| Error::Failed(format!("writing the copy mark: {e}")))?;
        let written = std::fs::File::create(&partial)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::io("writing", &path)(e));
        }
        Ok(())
    }

    /// Forgets the mark of the copy for `name`: an agent now owns the workspace.
    pub fn forget_copy_mark(&self, name: &str) -> Result<()> {
        remove_mark(&self.files.copy_mark(name))
    }

    /// Copies `input` to a file that has no name (made in the agentgate directory, so on the
    /// same filesystem as the workspaces, and unlinked at once, so that nothing is left
    /// whatever happens), checking its size and SHA-256. Returns the file, rewound.
    fn spool_verified(
        &self,
        name: &str,
        expected_sha256: &str,
        expected_size: u64,
        input: &mut dyn Read,
    ) -> Result<std::fs::File> {
        use std::io::{Seek, Write};
        use std::os::unix::fs::OpenOptionsExt;
        let home = self.files.home();
        let spool_path = home.join(format!(".unpack-{name}-{}.part", std::process::id()));
        let mut spool = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&spool_path)
            .map_err(Error::io("creating", &spool_path))?;
        std::fs::remove_file(&spool_path).map_err(Error::io("removing", &spool_path))?;
        let reserve = Reserve::for_path(home)?;
        reserve.check(expected_size, "receiving the snapshot's archive")?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; 128 * 1024];
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading the archive from", "stdin")(e)),
            };
            size += n as u64;
            if size > expected_size {
                return Err(Error::Failed(format!(
                    "the snapshot's archive is damaged: more than the {expected_size} bytes recorded arrived; nothing was restored"
                )));
            }
            hasher.update(&buf[..n]);
            spool
                .write_all(&buf[..n])
                .map_err(Error::io("writing", &spool_path))?;
            if crossed_mib(size, n) {
                reserve.check(0, "receiving the snapshot's archive")?;
            }
        }
        let sha256 = hex(&hasher.finalize());
        if size != expected_size || !sha256.eq_ignore_ascii_case(expected_sha256) {
            return Err(Error::Failed(format!(
                "the snapshot's archive is damaged: the {size} bytes received have SHA-256 {sha256}, the snapshot recorded {expected_size} bytes with {}; nothing was restored",
                expected_sha256.to_ascii_lowercase()
            )));
        }
        spool.rewind().map_err(Error::io("reading", &spool_path))?;
        Ok(spool)
    }

    /// Creates the empty `workspaces/NAME/` an unpack fills. Refused when an agent of that
    /// name exists here or the directory is already there.
    /// With an `operation`, the workspace is marked as that operation's partial copy before
    /// it is made.
    fn new_unpacked_dir(&self, name: &str, operation: Option<&str>) -> Result<PathBuf> {
        check_name(name)?;
        if let Some(operation) = operation {
            crate::api::validate_operation_id(operation).map_err(Error::InvalidInput)?;
        }
        if self.files.agent_dir(name).exists() {
            return Err(Error::AlreadyExists(format!(
                "an agent named '{name}' already exists on this host"
            )));
        }
        let path = self.files.owned_workspace(name);
        if path.exists() {
            return Err(self.workspace_in_the_way(name, &path));
        }
        if let Some(operation) = operation {
            self.write_mark(
                name,
                &CopyMark {
                    operation: operation.to_owned(),
                    complete: false,
                },
            )?;
        }
        let parent = path.parent().unwrap_or(self.files.home()).to_owned();
        let made = std::fs::create_dir_all(&parent)
            .map_err(Error::io("creating", &parent))
            .and_then(|()| match std::fs::create_dir(&path) {
                Ok(()) => Ok(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Err(self.workspace_in_the_way(name, &path))
                }
                Err(e) => Err(Error::io("creating", &path)(e)),
            });
        if made.is_err() && operation.is_some() {
            let _ = remove_mark(&self.files.copy_mark(name));
        }
        made
    }

    /// Why a workspace already at `path` stops a copy: a copy an operation of the gateway
    /// left (which the gateway removes when it finishes that operation), or an earlier
    /// agent's.
    fn workspace_in_the_way(&self, name: &str, path: &Path) -> Error {
        Error::AlreadyExists(match self.copy_mark(name) {
            Some(mark) => format!(
                "a {} copy {} made by the gateway's operation {} is already there, with no agent; the gateway removes it when it finishes that operation (or: hostctl discard {name} --operation {})",
                if mark.complete { "whole" } else { "partial" },
                path.display(),
                mark.operation,
                mark.operation
            ),
            None => format!(
                "a workspace {} is already there, left by an earlier agent; move it away first",
                path.display()
            ),
        })
    }

    /// Removes an unpacked workspace that no agent owns, and its mark. With an `operation`,
    /// only a copy marked as that operation's (whole or partial) is removed: a workspace
    /// without the mark, or with another operation's, is left alone and the answer says so.
    pub fn discard(&self, name: &str, operation: Option<&str>) -> Result<()> {
        check_name(name)?;
        if let Some(operation) = operation {
            crate::api::validate_operation_id(operation).map_err(Error::InvalidInput)?;
        }
        if self.files.agent_dir(name).exists() {
            return Err(Error::InvalidInput(format!(
                "agent '{name}' owns this workspace: destroy the agent instead"
            )));
        }
        let path = self.files.owned_workspace(name);
        let mark_path = self.files.copy_mark(name);
        if let Some(operation) = operation {
            match self.copy_mark(name) {
                Some(mark) if mark.operation == operation => {}
                Some(mark) => {
                    return Err(Error::InvalidInput(format!(
                        "the workspace {} was copied by operation {}, not {operation}: left alone",
                        path.display(),
                        mark.operation
                    )));
                }
                None if path.exists() => {
                    return Err(Error::InvalidInput(format!(
                        "the workspace {} carries no mark of operation {operation}: it was not copied by it, and is left alone",
                        path.display()
                    )));
                }
                None => return Err(Error::NotFound(name.to_owned())),
            }
        } else if !path.exists() {
            return Err(Error::NotFound(name.to_owned()));
        }
        if path.exists() {
            remove_tree(&path).map_err(Error::io("removing", &path))?;
        }
        // The mark goes last: a discard cut short is done again on its word.
        remove_mark(&mark_path)
    }

    /// Fingerprints a workspace: every entry's relative path, kind and permission bits, each
    /// file's content, each link's target, in a fixed order.
    /// The private home that travels with it counts too, after the workspace, whether it is
    /// the agent's own or the one an unpacked copy brought (so both sides agree).
    pub fn digest(&self, name: &str) -> Result<WorkspaceDigest> {
        let carried = self.carried(name)?;
        let mut hasher = Sha256::new();
        let mut digest = WorkspaceDigest {
            entries: 0,
            bytes: 0,
            sha256: String::new(),
        };
        walk(&carried.workspace, Path::new(""), &mut hasher, &mut digest)?;
        if let Some(home) = &carried.home {
            hasher.update(b"home\0");
            walk(home, Path::new(""), &mut hasher, &mut digest)?;
        }
        digest.sha256 = hex(&hasher.finalize());
        Ok(digest)
    }
}

/// What `copies/NAME.json` says of the workspace being copied, or copied, for `NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyMark {
    /// The gateway's operation that made the copy.
    pub operation: String,
    /// Whether the copy is whole (its tar ended well); a partial one is still being written,
    /// or was cut short.
    pub complete: bool,
}

fn remove_mark(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path)(e)),
    }
}

fn walk(root: &Path, rel: &Path, hasher: &mut Sha256, digest: &mut WorkspaceDigest) -> Result<()> {
    let dir = root.join(rel);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .map_err(Error::io("reading", &dir))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        if rel.as_os_str().is_empty() && name == HOME_IN_ARCHIVE {
            // The carried home, counted apart (see `HostCtl::digest`).
            continue;
        }
        let rel = rel.join(&name);
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).map_err(Error::io("reading", &path))?;
        if meta.file_type().is_socket() {
            // tar does not pack sockets (a socket is a live process's, not a file's).
            continue;
        }
        let mode = meta.permissions().mode() & 0o7777;
        let shown = rel.to_string_lossy();
        digest.entries += 1;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(Error::io("reading", &path))?;
            hasher.update(format!("l {shown}\0{}\0", target.to_string_lossy()));
        } else if meta.is_dir() {
            hasher.update(format!("d {shown}\0{mode:o}\0"));
            walk(root, &rel, hasher, digest)?;
        } else if meta.is_file() {
            hasher.update(format!("f {shown}\0{mode:o}\0{}\0", meta.len()));
            // The workspace and the home are the agent's to change while they are read: a
            // file swapped for a symlink since it was looked at is not followed.
            let mut file =
                crate::files::open_untrusted(&path).map_err(Error::io("reading", &path))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(Error::io("reading", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                digest.bytes += n as u64;
            }
        } else {
            // Fifos, devices: named, not read.
            hasher.update(format!("o {shown}\0{mode:o}\0"));
        }
    }
    Ok(())
}

/// What tar is told when it unpacks a snapshot: `-p` keeps the modes as packed, whatever this
/// user's umask; `--no-same-owner` makes every file this user's (as it is anyway when not
/// root); `--no-overwrite-dir` leaves the new workspace's own directory as made. tar's safe
/// defaults stay: no `-P`, so members with `..` are refused and leading `/` are stripped.
const UNPACK_SNAPSHOT_ARGS: [&str; 4] = ["--no-same-owner", "--no-overwrite-dir", "-xzpf", "-"];

/// Unpacks the verified archive `spooled` (tar's stdin) into `dir`, within the disk reserve:
/// at least the archive's size must be free beyond it (a workspace takes at least as much as
/// its compressed archive), and tar is stopped if the files grow past it.
fn extract_file(dir: &Path, spooled: std::fs::File) -> Result<()> {
    let reserve = Reserve::for_path(dir)?;
    let archive_size = spooled.metadata().map_err(Error::io("reading", dir))?.len();
    reserve.check(archive_size, "unpacking the snapshot")?;
    let mut tar = Command::new("tar");
    tar.arg("-C")
        .arg(dir)
        .args(UNPACK_SNAPSHOT_ARGS)
        .stdin(Stdio::from(spooled))
        .stdout(Stdio::null());
    let (status, stderr) = reserve.run_watched(&mut tar, "unpacking the snapshot")?;
    if status.success() {
        return Ok(());
    }
    Err(Error::Command {
        what: "unpacking the snapshot",
        argv: format!(
            "tar -C {} {}",
            dir.display(),
            UNPACK_SNAPSHOT_ARGS.join(" ")
        ),
        status: status.to_string(),
        stderr,
    })
}

/// Removes `dir` and all in it, first making every directory in it the owner's to change (an
/// archive may hold a 0555 or 0000 directory, which `remove_dir_all` cannot empty). Symlinks
/// are removed, never followed.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    make_owner_writable(dir)?;
    std::fs::remove_dir_all(dir)
}

fn make_owner_writable(dir: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_owner_writable(&entry.path())?;
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    crate::snapshots::hex(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Files;

    fn ctl(dir: &Path) -> HostCtl {
        HostCtl::new(Files::new(dir.to_owned()))
    }

    #[test]
    fn a_digest_changes_with_content_mode_and_names_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let ws = dir.path().join("workspaces/w");
        std::fs::create_dir_all(ws.join("sub")).expect("mkdir");
        std::fs::write(ws.join("a.txt"), "a").expect("write");
        std::fs::write(ws.join("sub/b.txt"), "b").expect("write");
        std::os::unix::fs::symlink("a.txt", ws.join("link")).expect("symlink");
        let first = ctl.digest("w").expect("digest");
        assert_eq!((first.entries, first.bytes), (4, 2));
        assert_eq!(ctl.digest("w").expect("again"), first, "stable");
        std::fs::write(ws.join("sub/b.txt"), "B").expect("write");
        let changed = ctl.digest("w").expect("digest");
        assert_ne!(changed.sha256, first.sha256);
        std::fs::write(ws.join("sub/b.txt"), "b").expect("write");
        assert_eq!(ctl.digest("w").expect("digest"), first);
        std::fs::set_permissions(ws.join("a.txt"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert_ne!(ctl.digest("w").expect("digest").sha256, first.sha256);
        assert!(matches!(ctl.digest("none"), Err(Error::NotFound(_))));
    }

    #[test]
    fn sockets_are_left_out_of_a_digest_as_tar_leaves_them_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let ws = dir.path().join("workspaces/w");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::fs::write(ws.join("a.txt"), "a").expect("write");
        let without = ctl.digest("w").expect("digest");
        let _listener =
            std::os::unix::net::UnixListener::bind(ws.join("server.sock")).expect("bind");
        assert_eq!(ctl.digest("w").expect("digest"), without);
    }

    /// A snapshot-like archive (gzip-compressed tar) of a tree under `dir/src` holding one
    /// file `file` ("content\n"): its bytes, SHA-256 and size.
    fn archive_of(dir: &Path, file: &str) -> (Vec<u8>, String, u64) {
        let src = dir.join("src");
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, "content\n").expect("write");
        let archive = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-czf", "-", "."])
            .output()
            .expect("tar");
        assert!(archive.status.success());
        let sha = hex(&Sha256::digest(&archive.stdout));
        let size = archive.stdout.len() as u64;
        (archive.stdout, sha, size)
    }

    #[test]
    fn a_snapshot_unpacks_only_with_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let (bytes, sha, size) = archive_of(dir.path(), "d/f.txt");

        let made = ctl
            .unpack_verified("good", &sha, size, &mut bytes.as_slice(), None)
            .expect("unpacks");
        assert_eq!(
            std::fs::read_to_string(made.join("d/f.txt")).expect("read"),
            "content\n"
        );

        // One flipped byte: refused as damaged, and nothing is left.
        let mut broken = bytes.clone();
        let middle = broken.len() / 2;
        broken[middle] ^= 0x55;
        let err = ctl
            .unpack_verified("bad", &sha, size, &mut broken.as_slice(), None)
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!dir.path().join("workspaces/bad").exists());
        // Intact bytes, but not the ones recorded.
        let other = "0".repeat(64);
        let err = ctl
            .unpack_verified("bad", &other, size, &mut bytes.as_slice(), None)
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!dir.path().join("workspaces/bad").exists());
        assert!(matches!(
            ctl.unpack_verified("bad", "xyz", size, &mut bytes.as_slice(), None),
            Err(Error::InvalidInput(_))
        ));
    }

    /// One member of a hand-made tar archive.
    enum Member<'a> {
        Dir(&'a str, u32),
        File(&'a str, &'a [u8]),
        Symlink(&'a str, &'a str),
    }

    /// A gzip-compressed ustar archive of `members`, as they are (no path is cleaned up): the
    /// archives a host's tar would never write.
    fn gzipped_tar(members: &[Member]) -> Vec<u8> {
        fn header(name: &str, mode: u32, size: usize, kind: u8, link: &str) -> [u8; 512] {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            for (at, width, value) in [(100, 8, mode as usize), (108, 8, 0), (116, 8, 0)]
                .into_iter()
                .chain([(124, 12, size), (136, 12, 0)])
            {
                let text = format!("{value:0w$o}", w = width - 1);
                h[at..at + width - 1].copy_from_slice(text.as_bytes());
            }
            h[156] = kind;
            h[157..157 + link.len()].copy_from_slice(link.as_bytes());
            h[257..263].copy_from_slice(b"ustar\0");
            h[263..265].copy_from_slice(b"00");
            h[148..156].copy_from_slice(b"        ");
            let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
            h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            h
        }
        let mut tar = Vec::new();
        for member in members {
            match member {
                Member::Dir(name, mode) => tar.extend(header(name, *mode, 0, b'5', "")),
                Member::Symlink(name, target) => tar.extend(header(name, 0o777, 0, b'2', target)),
                Member::File(name, content) => {
                    tar.extend(header(name, 0o644, content.len(), b'0', ""));
                    tar.extend(*content);
                    tar.resize(tar.len().div_ceil(512) * 512, 0);
                }
            }
        }
        tar.extend([0u8; 1024]);
        let mut gzip = Command::new("gzip")
            .arg("-c")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("gzip");
        let mut stdin = gzip.stdin.take().expect("stdin");
        let writer = std::thread::spawn(move || {
            use std::io::Write;
            stdin.write_all(&tar).expect("to gzip");
        });
        let out = gzip.wait_with_output().expect("gzip");
        writer.join().expect("writer");
        assert!(out.status.success());
        out.stdout
    }

    /// The names in `dir`, sorted.
    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_damaged_snapshot_leaves_neither_a_workspace_nor_a_spool_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let bytes = gzipped_tar(&[Member::Dir("./", 0o755), Member::File("./a.txt", b"a\n")]);
        let sha = hex(&Sha256::digest(&bytes));
        let size = bytes.len() as u64;
        let mut broken = bytes.clone();
        let middle = broken.len() / 2;
        broken[middle] ^= 0x55;
        let err = ctl
            .unpack_verified("bad", &sha, size, &mut broken.as_slice(), None)
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        // More bytes than recorded: refused as they arrive.
        let mut longer = bytes.clone();
        longer.extend([0u8; 4096]);
        let err = ctl
            .unpack_verified("bad", &sha, size, &mut longer.as_slice(), None)
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(names_in(dir.path()), ["workspaces"]);
        assert!(names_in(&dir.path().join("workspaces")).is_empty());
        ctl.unpack_verified("good", &sha, size, &mut bytes.as_slice(), None)
            .expect("the intact archive unpacks");
        assert_eq!(names_in(dir.path()), ["workspaces"]);
    }

    /// Hands out `bytes` 4 KiB at a time, then (with `endless`) zeros without end; at its end,
    /// or after `limit` bytes, it notes whether `watched` held anything yet.
    struct Trickle<'a> {
        bytes: &'a [u8],
        endless: bool,
        given: u64,
        limit: u64,
        watched: PathBuf,
        unpacked_early: Option<bool>,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(4096);
            let from_bytes = self.bytes.len().min(n);
            if from_bytes == 0 && !self.endless || self.given >= self.limit {
                if self.unpacked_early.is_none() {
                    // Time for a tar fed so far to have written its first files.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    self.unpacked_early = Some(
                        std::fs::read_dir(&self.watched).is_ok_and(|mut d| d.next().is_some()),
                    );
                }
                if self.given >= self.limit {
                    return Err(std::io::Error::other("the test's limit"));
                }
                return Ok(0);
            }
            let n = if from_bytes > 0 { from_bytes } else { n };
            buf[..from_bytes].copy_from_slice(&self.bytes[..from_bytes]);
            buf[from_bytes..n].fill(0);
            self.bytes = &self.bytes[from_bytes..];
            self.given += n as u64;
            Ok(n)
        }
    }

    #[test]
    fn nothing_is_unpacked_before_the_whole_archive_has_arrived_and_matched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let content: Vec<u8> = (0..512 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
        let bytes = gzipped_tar(&[
            Member::Dir("./", 0o755),
            Member::File("./first.txt", b"first\n"),
            Member::File("./big.bin", &content),
        ]);
        let recorded = hex(&Sha256::digest(b"another archive"));
        let mut input = Trickle {
            bytes: &bytes,
            endless: false,
            given: 0,
            limit: u64::MAX,
            watched: dir.path().join("workspaces/bad"),
            unpacked_early: None,
        };
        let err = ctl
            .unpack_verified("bad", &recorded, bytes.len() as u64, &mut input, None)
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert_eq!(input.unpacked_early, Some(false), "unpacked before checked");
        // An archive that does not end (a gzip bomb's worth of bytes) is refused once it is
        // longer than recorded, not read to the end.
        let size = bytes.len() as u64;
        let mut input = Trickle {
            bytes: &bytes,
            endless: true,
            given: 0,
            limit: 64 * size,
            watched: dir.path().join("workspaces/bomb"),
            unpacked_early: None,
        };
        let err = ctl
            .unpack_verified("bomb", &recorded, size, &mut input, None)
            .expect_err("refused");
        assert!(err.to_string().contains("more than"), "{err}");
        assert!(input.given <= size + 4096, "read {} bytes", input.given);
        assert!(!dir.path().join("workspaces/bomb").exists());
    }

    #[test]
    fn a_read_only_directory_in_a_damaged_snapshot_is_not_left_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let content = vec![b'x'; 256 * 1024];
        let bytes = gzipped_tar(&[
            Member::Dir("./", 0o755),
            Member::Dir("./ro/", 0o555),
            Member::File("./ro/inside.txt", b"kept?\n"),
            Member::File("./big.bin", &content),
        ]);
        let recorded = hex(&Sha256::digest(b"another archive"));
        let err = ctl
            .unpack_verified(
                "bad",
                &recorded,
                bytes.len() as u64,
                &mut bytes.as_slice(),
                None,
            )
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!dir.path().join("workspaces/bad").exists(), "{err}");
    }

    #[test]
    fn a_recorded_hostile_archive_writes_nothing_outside_its_workspace_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        let absolute = format!("{}/absolute.txt", outside.display());
        let absolute_link = outside.display().to_string();
        // workspaces/new/../../outside is `outside`.
        let bytes = gzipped_tar(&[
            Member::Dir("./", 0o755),
            Member::Dir("./ro/", 0o555),
            Member::File("./ro/inside.txt", b"in a read-only directory\n"),
            Member::File("../escape.txt", b"escaped\n"),
            Member::File("./../../escape2.txt", b"escaped\n"),
            Member::File(&absolute, b"escaped\n"),
            Member::Symlink("./up", "../../outside"),
            Member::File("./up/through-relative.txt", b"escaped\n"),
            Member::Symlink("./abs", &absolute_link),
            Member::File("./abs/through-absolute.txt", b"escaped\n"),
        ]);
        // The gateway recorded these very bytes: the checksum matches.
        let sha = hex(&Sha256::digest(&bytes));
        let result =
            ctl.unpack_verified("new", &sha, bytes.len() as u64, &mut bytes.as_slice(), None);
        assert!(names_in(&outside).is_empty(), "{result:?}");
        assert_eq!(
            names_in(dir.path()),
            ["outside", "workspaces"],
            "{result:?}"
        );
        assert!(!dir.path().join("escape.txt").exists());
        // tar refuses the `..` members and says so: the restore fails and, read-only
        // directory and all, nothing of it is kept.
        let err = result.expect_err("tar refuses it");
        assert!(names_in(&dir.path().join("workspaces")).is_empty(), "{err}");
    }

    #[test]
    fn removing_a_workspace_makes_its_directories_writable_and_follows_no_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = dir.path().join("ws");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(ws.join("ro/none")).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(ws.join("ro/none/f.txt"), "f").expect("write");
        std::os::unix::fs::symlink(&outside, ws.join("ro/link")).expect("symlink");
        let mode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .expect("stat")
                .permissions()
                .mode()
                & 0o777
        };
        let chmod = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).expect("chmod")
        };
        chmod(&outside, 0o500);
        chmod(&ws.join("ro/none"), 0o000);
        chmod(&ws.join("ro"), 0o555);
        make_owner_writable(&ws).expect("chmod");
        assert_eq!(mode(&ws.join("ro")), 0o755);
        assert_eq!(mode(&ws.join("ro/none")), 0o700);
        assert_eq!(mode(&outside), 0o500, "not followed");
        remove_tree(&ws).expect("removed");
        assert!(!ws.exists());
        assert_eq!(mode(&outside), 0o500);
    }

    #[test]
    fn discard_refuses_a_workspace_an_agent_owns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        std::fs::create_dir_all(dir.path().join("workspaces/w")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("agents/w")).expect("mkdir");
        assert!(matches!(
            ctl.discard("w", None),
            Err(Error::InvalidInput(_))
        ));
        std::fs::remove_dir(dir.path().join("agents/w")).expect("rmdir");
        ctl.discard("w", None).expect("discard");
        assert!(!dir.path().join("workspaces/w").exists());
    }

    #[test]
    fn a_copy_for_an_operation_is_marked_and_only_that_operation_discards_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let (bytes, sha, size) = archive_of(dir.path(), "f.txt");

        // A whole copy is marked whole, with its operation.
        ctl.unpack_verified("w", &sha, size, &mut bytes.as_slice(), Some("op-1"))
            .expect("unpacks");
        assert_eq!(
            ctl.copy_mark("w"),
            Some(CopyMark {
                operation: "op-1".into(),
                complete: true
            })
        );
        // A second copy of that name says whose copy is in the way.
        let err = ctl
            .unpack_verified("w", &sha, size, &mut bytes.as_slice(), Some("op-2"))
            .expect_err("refused");
        assert!(err.to_string().contains("operation op-1"), "{err}");
        // Another operation may not discard it; its own does, mark and all.
        let err = ctl.discard("w", Some("op-2")).expect_err("not its copy");
        assert!(err.to_string().contains("left alone"), "{err}");
        assert!(dir.path().join("workspaces/w").exists());
        ctl.discard("w", Some("op-1")).expect("discards");
        assert!(!dir.path().join("workspaces/w").exists());
        assert_eq!(ctl.copy_mark("w"), None);
        assert!(matches!(
            ctl.discard("w", Some("op-1")),
            Err(Error::NotFound(_))
        ));

        // A workspace with no mark is never removed on an operation's word.
        std::fs::create_dir_all(dir.path().join("workspaces/plain")).expect("mkdir");
        let err = ctl.discard("plain", Some("op-1")).expect_err("no mark");
        assert!(err.to_string().contains("no mark"), "{err}");
        assert!(dir.path().join("workspaces/plain").exists());

        // A partial copy (a gateway that died while it was written) is marked partial, and a
        // mark left with no workspace (cut short between the two) is cleared by discard.
        std::fs::create_dir_all(dir.path().join("workspaces/half")).expect("mkdir");
        ctl.write_mark(
            "half",
            &CopyMark {
                operation: "op-3".into(),
                complete: false,
            },
        )
        .expect("mark");
        let err = ctl
            .unpack_verified("half", &sha, size, &mut bytes.as_slice(), Some("op-4"))
            .expect_err("refused");
        assert!(err.to_string().contains("partial copy"), "{err}");
        ctl.discard("half", Some("op-3")).expect("discards");
        ctl.write_mark(
            "gone",
            &CopyMark {
                operation: "op-5".into(),
                complete: false,
            },
        )
        .expect("mark");
        ctl.discard("gone", Some("op-5")).expect("clears the mark");
        assert_eq!(ctl.copy_mark("gone"), None);

        // A failed copy leaves neither the workspace nor its mark.
        let mut broken = bytes.clone();
        broken[0] ^= 0x55;
        ctl.unpack_verified("bad", &sha, size, &mut broken.as_slice(), Some("op-6"))
            .expect_err("damaged");
        assert_eq!(ctl.copy_mark("bad"), None);
        assert!(!dir.path().join("workspaces/bad").exists());
        assert!(matches!(
            ctl.unpack_verified("x", &sha, size, &mut bytes.as_slice(), Some("../up")),
            Err(Error::InvalidInput(_))
        ));
    }

    /// Agent `name` on `dir`'s host, its workspace holding `a.txt` and, with `home`, a private
    /// home holding a credentials file (0600), a nested file and a symlink.
    fn agent_with_home(dir: &Path, name: &str, home: bool) -> HostCtl {
        let ctl = ctl(dir);
        let files = Files::new(dir.to_owned());
        let ws = files.owned_workspace(name);
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::fs::write(ws.join("a.txt"), "a\n").expect("write");
        std::fs::create_dir_all(files.agent_dir(name)).expect("mkdir");
        files
            .write_meta(&crate::api::AgentMeta {
                request: crate::api::CreateRequest::login_shell(name),
                workspace_path: ws,
                created_at: "2026-12-01T00:00:00Z".into(),
                starts: 0,
                hooks: None,
            })
            .expect("meta");
        if home {
            let home = files.private_home(name);
            std::fs::create_dir_all(home.join(".config/cli")).expect("mkdir");
            std::fs::write(home.join(".credentials.json"), b"\x00secret\xff").expect("write");
            std::fs::set_permissions(
                home.join(".credentials.json"),
                std::fs::Permissions::from_mode(0o600),
            )
            .expect("chmod");
            std::fs::write(home.join(".config/cli/settings"), "x=1\n").expect("write");
            std::os::unix::fs::symlink("home/.credentials.json", home.join("link"))
                .expect("symlink");
        }
        ctl
    }

    /// What `tar` with the members of `name`'s transfer writes, gzip-compressed (the snapshot's
    /// form, which `unpack_verified` reads).
    fn packed(ctl: &HostCtl, name: &str) -> (Vec<u8>, String, u64) {
        let out = Command::new("tar")
            .args(["-czf", "-"])
            .args(ctl.carried(name).expect("carried").tar_members())
            .output()
            .expect("tar");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sha = hex(&Sha256::digest(&out.stdout));
        let size = out.stdout.len() as u64;
        (out.stdout, sha, size)
    }

    #[test]
    fn a_private_home_travels_with_the_workspace_and_counts_in_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = agent_with_home(dir.path(), "src", true);
        let files = Files::new(dir.path().to_owned());
        let source = ctl.digest("src").expect("digest");
        assert_eq!((source.entries, source.bytes), (6, 2 + 8 + 4));
        let (bytes, sha, size) = packed(&ctl, "src");
        ctl.unpack_verified("dst", &sha, size, &mut bytes.as_slice(), None)
            .expect("unpacks");
        // The copy, home and all, has the digest of what it was copied from.
        assert_eq!(ctl.digest("dst").expect("digest"), source);
        // The agent made from it takes the home, byte for byte, and it is no longer in the
        // workspace.
        std::fs::create_dir_all(files.agent_dir("dst")).expect("mkdir");
        let ws = files.owned_workspace("dst");
        ctl.adopt_carried_home("dst", &ws).expect("adopted");
        let home = files.private_home("dst");
        assert!(!ws.join(HOME_IN_ARCHIVE).exists());
        assert_eq!(
            std::fs::read(home.join(".credentials.json")).expect("read"),
            b"\x00secret\xff"
        );
        let mode = |p: &Path| {
            std::fs::symlink_metadata(p)
                .expect("stat")
                .permissions()
                .mode()
        };
        assert_eq!(mode(&home.join(".credentials.json")) & 0o777, 0o600);
        assert_eq!(mode(&home) & 0o777, 0o700);
        assert_eq!(
            std::fs::read_link(home.join("link")).expect("link"),
            Path::new("home/.credentials.json"),
            "a symlink's target is kept as written"
        );
        // A create that failed hands it back to the copy.
        ctl.return_carried_home("dst", &ws);
        assert!(ws.join(HOME_IN_ARCHIVE).join(".credentials.json").is_file());
        assert!(!home.exists());
    }

    #[test]
    fn an_agent_without_a_home_and_an_old_archive_are_carried_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = agent_with_home(dir.path(), "plain", false);
        let files = Files::new(dir.path().to_owned());
        assert_eq!(
            ctl.carried("plain").expect("carried").tar_members(),
            [
                "-C".into(),
                files.owned_workspace("plain").into_os_string(),
                ".".into()
            ]
            .to_vec()
        );
        // An archive of a workspace alone (a snapshot taken before homes travelled).
        let (bytes, sha, size) = archive_of(dir.path(), "f.txt");
        let ws = ctl
            .unpack_verified("old", &sha, size, &mut bytes.as_slice(), None)
            .expect("unpacks");
        std::fs::create_dir_all(files.agent_dir("old")).expect("mkdir");
        ctl.adopt_carried_home("old", &ws)
            .expect("nothing to adopt");
        assert!(!files.private_home("old").exists());
        // A sandboxed agent's own `.agentgate-home` would be taken for its home elsewhere.
        let ctl = agent_with_home(dir.path(), "clash", true);
        std::fs::create_dir_all(files.owned_workspace("clash").join(HOME_IN_ARCHIVE))
            .expect("mkdir");
        let err = ctl.carried("clash").err().expect("refused");
        assert!(err.to_string().contains("rename it"), "{err}");
    }

    #[test]
    fn a_carried_home_that_is_a_symlink_is_not_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let files = Files::new(dir.path().to_owned());
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let ws = files.owned_workspace("w");
        std::fs::create_dir_all(&ws).expect("mkdir");
        std::os::unix::fs::symlink(&outside, ws.join(HOME_IN_ARCHIVE)).expect("symlink");
        std::fs::create_dir_all(files.agent_dir("w")).expect("mkdir");
        let err = ctl.adopt_carried_home("w", &ws).expect_err("refused");
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert!(!files.private_home("w").exists());
        let mode = std::fs::metadata(&outside)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755, "chmod-ed through the symlink");
        // Nor is it carried on as a home from the copy.
        std::fs::remove_dir(files.agent_dir("w")).expect("rmdir");
        assert_eq!(ctl.carried("w").expect("carried").home, None);
    }
}
