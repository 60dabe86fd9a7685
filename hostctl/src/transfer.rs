//! Moving workspaces between hosts (`clone`, `migrate`): `pack` writes a workspace as a tar
//! stream on stdout, `unpack` makes a new owned workspace from a tar stream on stdin, `digest`
//! fingerprints a workspace so that a copy can be verified, and `discard` removes an unpacked
//! workspace that no agent owns (a copy that failed verification). `unpack --sha256` makes a
//! workspace from a snapshot's archive, checking its checksum as the bytes arrive.
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
        let path = self.new_unpacked_dir(name)?;
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

    /// Makes `workspaces/NAME/` from a snapshot's archive (a gzip-compressed tar) read from
    /// `input`, hashing every byte on the way: when the SHA-256 of what arrived is not
    /// `expected_sha256`, the archive is damaged (or not the snapshot's) and nothing is kept,
    /// whatever tar made of it. The whole input is read even when tar gives up early, so that
    /// a damaged archive is reported as such rather than as tar's complaint.
    pub fn unpack_verified(
        &self,
        name: &str,
        expected_sha256: &str,
        input: &mut dyn Read,
    ) -> Result<PathBuf> {
        if expected_sha256.len() != 64 || !expected_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "'{}' is not a SHA-256 in hex",
                expected_sha256.escape_debug()
            )));
        }
        let path = self.new_unpacked_dir(name)?;
        let result = extract_hashed(&path, input).and_then(|(sha256, tar)| {
            if !sha256.eq_ignore_ascii_case(expected_sha256) {
                return Err(Error::Failed(format!(
                    "the snapshot's archive is damaged: the bytes received have SHA-256 {sha256}, the snapshot recorded {}; nothing was restored",
                    expected_sha256.to_ascii_lowercase()
                )));
            }
            tar
        });
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&path);
            return Err(e);
        }
        Ok(path)
    }

    /// Creates the empty `workspaces/NAME/` an unpack fills. Refused when an agent of that
    /// name exists here or the directory is already there.
    fn new_unpacked_dir(&self, name: &str) -> Result<PathBuf> {
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
            Ok(()) => Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(format!(
                    "a workspace {} is already there, left by an earlier agent; move it away first",
                    path.display()
                )))
            }
            Err(e) => Err(Error::io("creating", &path)(e)),
        }
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

/// Feeds `input` to `tar -xzpf -` in `dir` while hashing it. Returns the input's SHA-256 and
/// how tar ended (its own error, if it failed).
fn extract_hashed(dir: &Path, input: &mut dyn Read) -> Result<(String, Result<()>)> {
    use std::io::Write;
    let mut child = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["-xzpf", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "tar".into(),
            source,
        })?;
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    });
    let mut into_tar = child.stdin.take();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::io("reading the archive from", "stdin")(e));
            }
        };
        hasher.update(&buf[..n]);
        // A tar that stopped reading (it found the archive broken) is left alone; the rest is
        // still hashed.
        if into_tar
            .as_mut()
            .is_some_and(|pipe| pipe.write_all(&buf[..n]).is_err())
        {
            into_tar = None;
        }
    }
    drop(into_tar);
    let status = child.wait().map_err(|source| Error::Spawn {
        program: "tar".into(),
        source,
    })?;
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let tar = if status.success() {
        Ok(())
    } else {
        Err(Error::Command {
            what: "unpacking the snapshot",
            argv: format!("tar -C {} -xzpf -", dir.display()),
            status: status.to_string(),
            stderr,
        })
    };
    Ok((hex(&hasher.finalize()), tar))
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

    #[test]
    fn a_snapshot_unpacks_only_with_its_checksum() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ctl = ctl(dir.path());
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("d")).expect("mkdir");
        std::fs::write(src.join("d/f.txt"), "content\n").expect("write");
        let archive = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-czf", "-", "."])
            .output()
            .expect("tar");
        assert!(archive.status.success());
        let bytes = archive.stdout;
        let sha = hex(&Sha256::digest(&bytes));

        let made = ctl
            .unpack_verified("good", &sha, &mut bytes.as_slice())
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
            .unpack_verified("bad", &sha, &mut broken.as_slice())
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!dir.path().join("workspaces/bad").exists());
        // Intact bytes, but not the ones recorded.
        let other = "0".repeat(64);
        let err = ctl
            .unpack_verified("bad", &other, &mut bytes.as_slice())
            .expect_err("refused");
        assert!(err.to_string().contains("damaged"), "{err}");
        assert!(!dir.path().join("workspaces/bad").exists());
        assert!(matches!(
            ctl.unpack_verified("bad", "xyz", &mut bytes.as_slice()),
            Err(Error::InvalidInput(_))
        ));
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
