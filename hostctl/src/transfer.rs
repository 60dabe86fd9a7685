//! Moving workspaces between hosts (`clone`, `migrate`): `pack` writes a workspace as a tar
//! stream on stdout, `unpack` makes a new owned workspace from a tar stream on stdin, `digest`
//! fingerprints a workspace so that a copy can be verified, and `discard` removes an unpacked
//! workspace that no agent owns (a copy that failed verification).
//!
//! tar is the host's own (`tar`, everywhere): it keeps modes, symlinks, hard links and empty
//! directories.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::api::WorkspaceDigest;
use crate::error::{Error, Result};
use crate::verbs::{HostCtl, check_name};

impl HostCtl {
    /// The workspace an agent has, or, for a name with no agent, the unpacked one.
    fn workspace_of(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        if self.files.agent_dir(name).exists() {
            return Ok(self.files.read_meta(name)?.workspace_path);
        }
        let owned = self.files.owned_workspace(name);
        if owned.is_dir() {
            Ok(owned)
        } else {
            Err(Error::NotFound(name.to_owned()))
        }
    }

    /// Writes the agent's workspace to stdout as a tar stream (replaces this process with tar).
    pub fn pack(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let dir = self.workspace_of(name)?;
        let err = Command::new("tar")
            .arg("-C")
            .arg(&dir)
            .args(["-cf", "-", "."])
            .exec();
        Err(Error::Spawn {
            program: "tar".into(),
            source: err,
        })
    }

    /// Makes `workspaces/NAME/` from a tar stream on stdin. Refused when an agent of that name
    /// exists here or the directory is already there; a failed extraction leaves nothing.
    pub fn unpack(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        if self.files.agent_dir(name).exists() {
            return Err(Error::AlreadyExists(format!(
                "an agent named '{name}' already exists on this host"
            )));
        }
        let path = self.files.owned_workspace(name);
        let parent = path.parent().unwrap_or(self.files.home()).to_owned();
        std::fs::create_dir_all(&parent).map_err(Error::io("creating", &parent))?;
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(format!(
                    "a workspace {} is already there, left by an earlier agent; move it away first",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io("creating", &path)(e)),
        }
        let out = Command::new("tar")
            .arg("-C")
            .arg(&path)
            // -p: the modes as packed, whatever this user's umask.
            .args(["-xpf", "-"])
            .stdin(Stdio::inherit())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let failed = match out {
            Ok(o) if o.status.success() => None,
            Ok(o) => Some(Error::Command {
                what: "unpacking the workspace",
                argv: format!("tar -C {} -xpf -", path.display()),
                status: o.status.to_string(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }),
            Err(e) => Some(Error::Spawn {
                program: "tar".into(),
                source: e,
            }),
        };
        if let Some(e) = failed {
            let _ = std::fs::remove_dir_all(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Removes an unpacked workspace that no agent owns.
    pub fn discard(&self, name: &str) -> Result<()> {
        check_name(name)?;
        if self.files.agent_dir(name).exists() {
            return Err(Error::InvalidInput(format!(
                "agent '{name}' owns this workspace: destroy the agent instead"
            )));
        }
        let path = self.files.owned_workspace(name);
        if !path.exists() {
            return Err(Error::NotFound(name.to_owned()));
        }
        std::fs::remove_dir_all(&path).map_err(Error::io("removing", path))
    }

    /// Fingerprints a workspace: every entry's relative path, kind and permission bits, each
    /// file's content, each link's target, in a fixed order.
    pub fn digest(&self, name: &str) -> Result<WorkspaceDigest> {
        let root = self.workspace_of(name)?;
        let mut hasher = Sha256::new();
        let mut digest = WorkspaceDigest {
            entries: 0,
            bytes: 0,
            sha256: String::new(),
        };
        walk(&root, Path::new(""), &mut hasher, &mut digest)?;
        digest.sha256 = hex(&hasher.finalize());
        Ok(digest)
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
            let mut file = std::fs::File::open(&path).map_err(Error::io("reading", &path))?;
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

    #[test]
    fn discard_refuses_a_workspace_an_agent_owns() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        std::fs::create_dir_all(dir.path().join("workspaces/w")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("agents/w")).expect("mkdir");
        assert!(matches!(ctl.discard("w"), Err(Error::InvalidInput(_))));
        std::fs::remove_dir(dir.path().join("agents/w")).expect("rmdir");
        ctl.discard("w").expect("discard");
        assert!(!dir.path().join("workspaces/w").exists());
    }
}
