//! The agent files of one host, under `$AGENTGATE_HOME` (default `~/.agentgate`):
//! `agents/<name>/meta.json`, `agents/<name>/output.log`, `agents/<name>/baseline.json`,
//! `agents/<name>/events/` (hook events), `agents/<name>/home/` and `agents/<name>/tmp/` (a
//! sandboxed agent's private home and `/tmp`),
//! `workspaces/<name>/` and `snapshots/<id>.tar.gz` (with `snapshots/<id>.json`); what a
//! transfer carries ([`Carried`]: a workspace and the private home that goes with it).
//!
//! Every path is built from a name that passed [`crate::api::validate_agent_name`], so no
//! path here can leave the home directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::api::AgentMeta;

/// An agent's meta.json held by [`Files::lock_meta`].
pub struct MetaLock {
    _held: nix::fcntl::Flock<std::fs::File>,
}
use crate::error::{Error, Result};

/// The name of the stable link in an agent's `ssh-agent` directory ([`Files::ssh_agent_link`]).
pub const SSH_AGENT_LINK: &str = "agent.sock";

#[derive(Clone, Debug)]
pub struct Files {
    home: PathBuf,
}

impl Files {
    pub fn new(home: PathBuf) -> Files {
        Files { home }
    }

    /// `$AGENTGATE_HOME`, else `$HOME/.agentgate`.
    pub fn from_env() -> Result<Files> {
        if let Some(home) = std::env::var_os("AGENTGATE_HOME").filter(|h| !h.is_empty()) {
            return Ok(Files::new(PathBuf::from(home)));
        }
        let user_home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::Failed("neither AGENTGATE_HOME nor HOME is set".into()))?;
        Ok(Files::new(PathBuf::from(user_home).join(".agentgate")))
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn agents_dir(&self) -> PathBuf {
        self.home.join("agents")
    }

    pub fn agent_dir(&self, name: &str) -> PathBuf {
        self.agents_dir().join(name)
    }

    pub fn meta_path(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("meta.json")
    }

    /// The secrets for the agent's next start, read (and removed) by `hostctl launch`.
    pub fn launch_path(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("launch.json")
    }

    /// Present while the agent is stopped by `hostctl stop`: an agent with no session and
    /// no such file came to an end some other way (see [`crate::api::Ending`]).
    pub fn stop_mark_path(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("stopped")
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("output.log")
    }

    /// A sandboxed agent's private home, bound at `$HOME` inside its sandbox (see
    /// [`crate::sandbox`]).
    pub fn private_home(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("home")
    }

    /// A sandboxed agent's private `/tmp`, shared by the agent and the sessions inside it.
    pub fn private_tmp(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("tmp")
    }

    /// The agent's hook events (see [`crate::hooks`]): the one directory of its agent
    /// directory that its sandbox may write (its CLI's hooks run inside).
    pub fn events_dir(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("events")
    }

    /// The directory of the SSH agents forwarded into agent `name` (`ssh -A`), inside its
    /// agent directory, which its sandbox shows read-only at the same path (see
    /// [`crate::agent_socket`]).
    pub fn ssh_agent_dir(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("ssh-agent")
    }

    /// The stable link to the newest of them: `SSH_AUTH_SOCK` in the agent's environment and
    /// in its attached sessions.
    pub fn ssh_agent_link(&self, name: &str) -> PathBuf {
        self.ssh_agent_dir(name).join(SSH_AGENT_LINK)
    }

    /// The socket `hostctl hook-watch` listens on, alone in a directory: a sandbox shows the
    /// directory, so a socket made anew by a later watch is the one its agent's hooks reach.
    pub fn hooks_socket(&self) -> PathBuf {
        self.home.join("hooks").join("hooks.sock")
    }

    /// Where hostctl puts a workspace it owns.
    pub fn owned_workspace(&self, name: &str) -> PathBuf {
        self.home.join("workspaces").join(name)
    }

    /// The mark a copy in progress leaves for the workspace it writes (see
    /// [`crate::transfer::CopyMark`]).
    pub fn copy_mark(&self, name: &str) -> PathBuf {
        self.home.join("copies").join(format!("{name}.json"))
    }

    /// Where the snapshots of this host's agents are kept: `ID.tar.gz` and `ID.json` each.
    pub fn snapshots_dir(&self) -> PathBuf {
        self.home.join("snapshots")
    }

    /// A snapshot's archive (the ID must have passed [`crate::api::validate_snapshot_id`]).
    pub fn snapshot_archive(&self, id: &str) -> PathBuf {
        self.snapshots_dir().join(format!("{id}.tar.gz"))
    }

    /// A snapshot's description ([`crate::api::SnapshotMeta`]).
    pub fn snapshot_meta(&self, id: &str) -> PathBuf {
        self.snapshots_dir().join(format!("{id}.json"))
    }

    /// The list of the workspace's files as they were when the agent was created, which
    /// `diff` compares with when the workspace is not a git repository.
    pub fn baseline_path(&self, name: &str) -> PathBuf {
        self.agent_dir(name).join("baseline.json")
    }

    pub fn read_meta(&self, name: &str) -> Result<AgentMeta> {
        let path = self.meta_path(name);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(name.to_owned()));
            }
            Err(e) => return Err(Error::io("reading", path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| Error::Failed(format!("{} is not valid: {e}", path.display())))
    }

    /// Holds agent `name`'s meta.json for one read-modify-write: hostctl processes that change
    /// it (`tags`, `start`) take turns, so that neither writes back what it read before the
    /// other's change (an advisory lock on `agents/NAME/meta.lock`, released when dropped).
    pub fn lock_meta(&self, name: &str) -> Result<MetaLock> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.agent_dir(name).join("meta.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::NotFound(name.to_owned()),
                _ => Error::io("opening", &path)(e),
            })?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map(|held| MetaLock { _held: held })
            .map_err(|(_, e)| Error::io("locking", &path)(std::io::Error::from(e)))
    }

    /// Writes meta.json atomically (a temporary file of this process renamed over the old
    /// one), so a crash never leaves a half-written file behind.
    pub fn write_meta(&self, meta: &AgentMeta) -> Result<()> {
        let path = self.meta_path(&meta.request.name);
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let json = serde_json::to_vec_pretty(meta)
            .map_err(|e| Error::Failed(format!("encoding meta.json: {e}")))?;
        let mut file = std::fs::File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        file.write_all(&json)
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(Error::io("writing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(Error::io("renaming", &tmp))
    }

    /// Names of every agent that has a meta.json, sorted.
    pub fn agent_names(&self) -> Result<Vec<String>> {
        let dir = self.agents_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("reading", dir)(e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| crate::api::validate_agent_name(n).is_ok())
            .filter(|n| self.meta_path(n).is_file())
            .collect();
        names.sort();
        Ok(names)
    }
}

/// The name a private home has inside a workspace's archive (and inside an unpacked copy,
/// until an agent takes it): top-level, beside the workspace's own files.
pub const HOME_IN_ARCHIVE: &str = ".agentgate-home";

/// What a transfer carries for one name: the workspace, and the private home that goes with
/// it, if any.
pub struct Carried {
    pub workspace: PathBuf,
    pub home: Option<PathBuf>,
}

impl Carried {
    /// tar's arguments naming what is carried, after its `-c` options: the workspace's files as
    /// `./...`, then an agent's own home renamed `./.agentgate-home/...` on the way (an
    /// unpacked copy's home is in its workspace already). The rename leaves symlink targets
    /// alone (`S`): they are the agent's, kept as written.
    pub fn tar_members(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> =
            vec!["-C".into(), self.workspace.clone().into(), ".".into()];
        if let Some(home) = &self.home
            && !home.starts_with(&self.workspace)
            && let (Some(parent), Some(base)) = (home.parent(), home.file_name())
        {
            let mut rename = std::ffi::OsString::from("--transform=s,^");
            rename.push(base);
            rename.push(format!(",./{HOME_IN_ARCHIVE},S"));
            args.extend([rename, "-C".into(), parent.into(), base.into()]);
        }
        args
    }
}

/// Opens `path` for reading when it is a regular file itself, not a symlink, a fifo or a device:
/// for files in a directory a sandboxed agent can write (its events, its home, its `/tmp`),
/// where a symlink the agent planted would make hostctl, which runs outside the sandbox, read
/// a file the agent cannot (`O_NOFOLLOW`), and a fifo would hang it (`O_NONBLOCK`, then the
/// type is checked on the open file, so nothing can be swapped in between).
pub fn open_untrusted(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => std::io::Error::other(format!(
                "{} is a symlink, which hostctl does not follow here",
                path.display()
            )),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Opens `path` to append to it, creating it (0600) if missing, under the same rules as
/// [`open_untrusted`]: never through a symlink, never anything but a regular file.
pub fn append_untrusted(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// The last `max` bytes of the regular file `path` (see [`open_untrusted`]): what an agent
/// writes can be as large as it likes, what hostctl reads of it is not.
pub fn read_untrusted_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = open_untrusted(path)?;
    let len = file.metadata()?.len();
    if len > max {
        file.seek(SeekFrom::Start(len - max))?;
    }
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::CreateRequest;

    fn meta(dir: &Path) -> AgentMeta {
        AgentMeta {
            request: CreateRequest::login_shell("w"),
            workspace_path: dir.join("workspaces/w"),
            created_at: "2026-11-23T00:00:00Z".into(),
            starts: 0,
            hooks: None,
        }
    }

    #[test]
    fn changes_made_under_the_lock_by_several_writers_are_all_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path().to_owned());
        std::fs::create_dir_all(files.agent_dir("w")).expect("mkdir");
        files.write_meta(&meta(dir.path())).expect("write");
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let files = files.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        let _held = files.lock_meta("w").expect("lock");
                        let mut m = files.read_meta("w").expect("read");
                        m.starts += 1;
                        files.write_meta(&m).expect("write");
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        assert_eq!(files.read_meta("w").expect("read").starts, 200);
        // No agent, no lock: the agent is not there.
        assert!(matches!(files.lock_meta("gone"), Err(Error::NotFound(_))));
    }
    #[test]
    fn a_planted_symlink_or_fifo_is_not_read_or_written_through() {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "the host user's key\n").expect("write");
        let events = dir.path().join("events");
        std::fs::create_dir(&events).expect("mkdir");
        let planted = events.join("hooks.jsonl");
        std::os::unix::fs::symlink(&secret, &planted).expect("symlink");
        let err = open_untrusted(&planted).expect_err("not followed");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert!(read_untrusted_tail(&planted, 1024).is_err());
        assert!(append_untrusted(&planted).is_err());
        assert_eq!(
            std::fs::read_to_string(&secret).expect("read"),
            "the host user's key\n",
            "not written through"
        );
        let fifo = events.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let err = open_untrusted(&fifo).expect_err("not a file");
        assert!(err.to_string().contains("not a regular file"), "{err}");
        // A regular file is read, its tail only when it is long.
        let plain = events.join("plain");
        std::fs::write(&plain, "0123456789").expect("write");
        assert_eq!(read_untrusted_tail(&plain, 4).expect("tail"), b"6789");
        assert_eq!(read_untrusted_tail(&plain, 64).expect("all"), b"0123456789");
    }
}
