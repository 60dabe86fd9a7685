//! An agent's sandbox on a Linux host: bubblewrap (`bwrap`) around the agent's command in its
//! tmux pane (sessions inside the agent join it: [`crate::enter`]), or around a stopped
//! agent's session, so that all of them see the same files.
//!
//! What a sandboxed process sees ([`View`]): the host's system read-only; its workspace
//! read-write at its usual path; a private home (`agents/NAME/home`, kept across starts) at
//! `$HOME`, so the host user's real home (`~/.ssh`, shell history, other tools' credentials,
//! `~/.agentgate` with every agent's files) is not there; a private `/tmp`
//! (`agents/NAME/tmp`), which also hides tmux's socket; its own agent directory read-only
//! (the CLI settings hostctl wrote) with its hook events writable; empty directories over
//! other agents' workspaces, the tmux socket's directory, hostctl's home when it is not under
//! `$HOME`, and what the caller asks to hide (`AGENTGATE_SANDBOX_HIDE`: the gateway's data
//! directory on its own host). Its own PID, IPC and UTS namespaces, so other agents'
//! processes can be neither seen nor signalled and their environments not read; a seccomp
//! filter that refuses `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)`, so it cannot type into the
//! terminal it runs in. The network is shared (agents need their model's API), or with
//! `--network none` a namespace of its own with only a loopback.
//!
//! `--new-session` would block TIOCSTI too, but it takes the controlling terminal away: an
//! agent's TUI would get no SIGWINCH when its window is resized, and tmux would report
//! `bwrap` as the pane's foreground process (which the status rules read), hence the filter.
//!
//! Everything reaches bwrap as argv: no shell line is built here. This module decides and
//! runs nothing but bwrap; which agents are sandboxed is in their `meta.json`
//! ([`crate::api::AgentMeta::sandbox`]).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::api::{AgentMeta, Sandbox, SandboxExtras};
use crate::error::{Error, Result};
use crate::files::Files;

/// Names a bwrap to use instead of the one on `PATH` (tests use it to play a host without).
pub const BWRAP_ENV: &str = "AGENTGATE_BWRAP";

/// A path the sandbox must hide besides those hostctl knows (the gateway sets it to its data
/// directory when it runs hostctl on its own machine).
pub const HIDE_ENV: &str = "AGENTGATE_SANDBOX_HIDE";

/// What to install when bwrap is missing.
const INSTALL_HINT: &str = "install bubblewrap (Debian and Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap), or create the agent with --sandbox none";

/// The bwrap program: `$AGENTGATE_BWRAP` when set, else `bwrap` on `PATH`.
pub fn bwrap_program() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(BWRAP_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|p| p.is_file())
}

/// Why bwrap cannot sandbox an agent on this host, if it cannot: missing, or refused its
/// namespaces (Ubuntu 23.10 and later restrict them with AppArmor unless a profile allows
/// bwrap).
pub fn unusable() -> Option<String> {
    unusable_program(bwrap_program().as_deref())
}

/// How many times bwrap is tried before a host is judged unable to sandbox: its `--ro-bind / /`
/// remounts every mount read-only, and one that comes or goes meanwhile (a network namespace
/// being made or removed under `/run/netns`) fails that try alone.
const PROBE_TRIES: u32 = 3;

/// The pause between two tries.
const PROBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// Why `bwrap` (none: not found) cannot sandbox an agent, if it cannot.
fn unusable_program(bwrap: Option<&Path>) -> Option<String> {
    let Some(bwrap) = bwrap else {
        return Some(format!(
            "bubblewrap (bwrap) is not installed on this host: {INSTALL_HINT}"
        ));
    };
    let try_once = || {
        let tried = Command::new(bwrap)
            .args(["--ro-bind", "/", "/", "--unshare-pid", "--unshare-ipc"])
            .args(["--unshare-uts", "--proc", "/proc", "--dev", "/dev", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match tried {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(format!(
                "bubblewrap ({}) cannot make a sandbox on this host: {} (on Ubuntu 23.10 and later, AppArmor must allow bwrap to use user namespaces: see docs/operations.md), or create the agent with --sandbox none",
                bwrap.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!(
                "cannot run bubblewrap ({}): {e}; {INSTALL_HINT}",
                bwrap.display()
            )),
        }
    };
    probe(try_once, PROBE_TRIES, PROBE_PAUSE)
}

/// Tries `try_once` up to `tries` times, `pause` apart, until it works: none when it did,
/// else the last try's error.
fn probe(
    try_once: impl Fn() -> std::result::Result<(), String>,
    tries: u32,
    pause: std::time::Duration,
) -> Option<String> {
    let mut last = None;
    for attempt in 0..tries {
        if attempt > 0 {
            std::thread::sleep(pause);
        }
        match try_once() {
            Ok(()) => return None,
            Err(why) => last = Some(why),
        }
    }
    last
}

/// What a new agent runs in: what was asked, else bwrap wherever it works on this host and
/// no sandbox where it does not (`create`, `list` and `info` say so). Asking for bwrap where
/// it cannot work is refused with what to do.
pub fn choose(asked: Option<Sandbox>) -> Result<Sandbox> {
    choose_with(asked, unusable)
}

/// [`choose`], with why this host cannot make a sandbox (if it cannot) asked of `unusable`.
fn choose_with(asked: Option<Sandbox>, unusable: impl Fn() -> Option<String>) -> Result<Sandbox> {
    match asked {
        Some(Sandbox::None) => Ok(Sandbox::None),
        None => Ok(match unusable() {
            None => Sandbox::Bwrap,
            Some(_) => Sandbox::None,
        }),
        Some(Sandbox::Bwrap) => match unusable() {
            None => Ok(Sandbox::Bwrap),
            Some(why) => Err(Error::InvalidInput(why)),
        },
    }
}

/// Makes the agent's private directories (0700: its home will hold its CLI's credentials).
pub fn prepare(files: &Files, name: &str) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    let hooks = files.hooks_socket();
    let hooks = hooks.parent().unwrap_or(files.home());
    for dir in [
        files.private_home(name),
        files.private_tmp(name),
        files.events_dir(name),
        hooks.to_owned(),
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io("creating", &dir))?;
    }
    Ok(())
}

/// Copies the template's files of the host user's home (`home`) into agent `meta`'s private
/// home, each where the home does not have it yet (a home carried by a clone or restore keeps
/// its own); one the host does not have is skipped. Symbolic links are copied as links.
pub fn seed_home(files: &Files, meta: &AgentMeta, home: &Path) -> Result<()> {
    let private = files.private_home(&meta.request.name);
    for path in &meta.request.sandbox_extras.home_files {
        let Some(rest) = path.strip_prefix("~/") else {
            continue;
        };
        let source = home.join(rest);
        let target = private.join(rest);
        if std::fs::symlink_metadata(&source).is_err() || std::fs::symlink_metadata(&target).is_ok()
        {
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        }
        copy_tree(&source, &target)?;
    }
    Ok(())
}

/// Copies `from` to `to`: a file with its permissions, a directory with what it holds, a
/// symbolic link as a link.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let kind = std::fs::symlink_metadata(from).map_err(Error::io("reading", from))?;
    if kind.file_type().is_symlink() {
        let link = std::fs::read_link(from).map_err(Error::io("reading", from))?;
        std::os::unix::fs::symlink(link, to).map_err(Error::io("creating", to))
    } else if kind.is_dir() {
        std::fs::create_dir(to).map_err(Error::io("creating", to))?;
        std::fs::set_permissions(to, kind.permissions()).map_err(Error::io("setting", to))?;
        for entry in std::fs::read_dir(from).map_err(Error::io("reading", from))? {
            let entry = entry.map_err(Error::io("reading", from))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else if kind.is_file() {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(Error::io("copying", from))
    } else {
        // A socket or fifo is no setting to copy.
        Ok(())
    }
}

/// What one sandboxed process sees: the mounts, in the order bwrap makes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// What covers parts of the system first, shallowest first so that none is covered by
    /// another: empty directories over what is hidden, the private home at `$HOME`, the
    /// private `/tmp`.
    pub covers: Vec<Cover>,
    /// Shown read-only at their own paths, on top of the above.
    pub read_only: Vec<PathBuf>,
    /// Shown read-only if they exist (a socket that may come later is not waited for).
    pub read_only_try: Vec<PathBuf>,
    /// Shown read-write at their own paths, last.
    pub read_write: Vec<PathBuf>,
    /// Other agents' workspaces that the binds above would show: hidden after them.
    pub hidden_last: Vec<PathBuf>,
    /// The working directory inside.
    pub chdir: PathBuf,
    /// A network namespace of its own, with only a loopback (`--network none`).
    pub no_network: bool,
}

/// One mount over a part of the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cover {
    /// An empty directory over this one.
    Hide(PathBuf),
    /// `source` (one of the agent's own directories) read-write at `destination`.
    Private {
        source: PathBuf,
        destination: PathBuf,
    },
}

impl Cover {
    fn destination(&self) -> &Path {
        match self {
            Cover::Hide(path) => path,
            Cover::Private { destination, .. } => destination,
        }
    }
}

/// What [`View::for_agent`] needs to know of the host, gathered apart so the view itself is
/// pure.
#[derive(Clone, Debug, Default)]
pub struct HostFacts {
    /// The host user's home (`$HOME`).
    pub user_home: PathBuf,
    /// hostctl's own program (the CLIs' hooks run it inside).
    pub hostctl: Option<PathBuf>,
    /// The directories of tmux's sockets.
    pub tmux_dirs: Vec<PathBuf>,
    /// The workspaces of the host's other agents.
    pub other_workspaces: Vec<PathBuf>,
    /// What the caller asked to hide.
    pub extra_hidden: Vec<PathBuf>,
}

impl HostFacts {
    /// The facts of this host, as hostctl's environment and files tell them.
    pub fn gather(files: &Files, name: &str) -> Result<HostFacts> {
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .ok_or_else(|| {
                Error::Failed("HOME is not set to an absolute path: the sandbox needs it".into())
            })?;
        let mut tmux_dirs = Vec::new();
        // The pane's own server, from the variable tmux sets in it ("SOCKET,PID,INDEX").
        if let Some(tmux) = std::env::var_os("TMUX") {
            let tmux = tmux.to_string_lossy().into_owned();
            let socket = tmux.split(',').next().unwrap_or_default();
            if let Some(dir) = Path::new(socket).parent().filter(|d| d.is_absolute()) {
                tmux_dirs.push(dir.to_owned());
            }
        }
        let base = std::env::var_os("TMUX_TMPDIR")
            .map(PathBuf::from)
            .filter(|d| d.is_absolute())
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        tmux_dirs.push(base.join(format!("tmux-{}", nix::unistd::getuid().as_raw())));
        let mut other_workspaces = Vec::new();
        for other in files.agent_names()? {
            if other == name {
                continue;
            }
            if let Ok(meta) = files.read_meta(&other) {
                other_workspaces.push(meta.workspace_path);
            }
        }
        Ok(HostFacts {
            user_home,
            hostctl: std::env::current_exe().ok(),
            tmux_dirs,
            other_workspaces,
            extra_hidden: std::env::var_os(HIDE_ENV)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .into_iter()
                .collect(),
        })
    }
}

impl View {
    /// The view of agent `meta`, whose files are under `files`, on a host described by
    /// `facts`. Only paths that exist are mounted (bwrap cannot make a directory in the
    /// read-only system).
    pub fn for_agent(files: &Files, meta: &AgentMeta, facts: &HostFacts) -> View {
        let name = &meta.request.name;
        let workspace = &meta.workspace_path;
        let home = &facts.user_home;
        let agent_home = files.home();
        let mut hidden: Vec<PathBuf> = Vec::new();
        // Hidden already when under the private home or the private /tmp.
        let covered = |p: &Path| p.starts_with(home) || p.starts_with("/tmp");
        if !covered(agent_home) {
            hidden.push(agent_home.to_owned());
        }
        for dir in facts.tmux_dirs.iter().chain(&facts.extra_hidden) {
            if !covered(dir) && !workspace.starts_with(dir) {
                hidden.push(dir.clone());
            }
        }
        hidden.retain(|p| p.is_dir());
        hidden.dedup();
        let mut covers: Vec<Cover> = hidden.iter().cloned().map(Cover::Hide).collect();
        covers.push(Cover::Private {
            source: files.private_home(name),
            destination: home.clone(),
        });
        covers.push(Cover::Private {
            source: files.private_tmp(name),
            destination: PathBuf::from("/tmp"),
        });
        // Stable: of two covers of one depth, the order above stands.
        covers.sort_by_key(|c| c.destination().components().count());
        let extras = &meta.request.sandbox_extras;
        let resolved = |paths: &[String]| -> Vec<PathBuf> {
            paths
                .iter()
                .map(|p| SandboxExtras::resolve(p, home))
                .filter(|p| p.exists())
                .collect()
        };
        let mut read_only = vec![files.agent_dir(name)];
        read_only.extend(facts.hostctl.iter().filter(|p| p.is_file()).cloned());
        // The template's, after the agent's own: none of them can cover the agent directory
        // (hostctl's home is no path a template names).
        read_only.extend(resolved(&extras.read_only));
        // The socket's directory, not the socket: a watch that starts later makes it anew.
        let read_only_try: Vec<PathBuf> = files
            .hooks_socket()
            .parent()
            .map(Path::to_owned)
            .into_iter()
            .collect();
        let mut read_write = resolved(&extras.read_write);
        read_write.extend([files.events_dir(name), workspace.clone()]);
        // Another agent's workspace is hidden where this one's binds would show it: inside
        // this workspace, or anywhere outside the hidden places. One that holds this
        // workspace, or is this workspace (two agents on one --dir), cannot be.
        let mut hidden_last: Vec<PathBuf> = facts
            .other_workspaces
            .iter()
            .filter(|other| !workspace.starts_with(other))
            .filter(|other| {
                other.starts_with(workspace)
                    || !(covered(other) || hidden.iter().any(|h| other.starts_with(h)))
            })
            .filter(|other| other.is_dir())
            .cloned()
            .collect();
        hidden_last.sort_by_key(|p| p.components().count());
        hidden_last.dedup();
        View {
            covers,
            read_only,
            read_only_try,
            read_write,
            hidden_last,
            chdir: workspace.clone(),
            no_network: meta.no_network(),
        }
    }

    /// bwrap's arguments for this view, up to (not including) `--` and the command.
    /// `seccomp_fd` is the descriptor bwrap reads the TIOCSTI filter from; `die_with_parent`
    /// ties the sandbox to the process that runs bwrap (the agent's pane).
    pub fn args(&self, seccomp_fd: i32, die_with_parent: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut add = |words: &[&std::ffi::OsStr]| args.extend(words.iter().map(|w| w.into()));
        add(&["--ro-bind".as_ref(), "/".as_ref(), "/".as_ref()]);
        add(&["--dev".as_ref(), "/dev".as_ref()]);
        for cover in &self.covers {
            match cover {
                Cover::Hide(dir) => add(&["--tmpfs".as_ref(), dir.as_os_str()]),
                Cover::Private {
                    source,
                    destination,
                } => add(&[
                    "--bind".as_ref(),
                    source.as_os_str(),
                    destination.as_os_str(),
                ]),
            }
        }
        for path in &self.read_only {
            add(&["--ro-bind".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        for path in &self.read_only_try {
            add(&["--ro-bind-try".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        for path in &self.read_write {
            add(&["--bind".as_ref(), path.as_os_str(), path.as_os_str()]);
        }
        for dir in &self.hidden_last {
            add(&["--tmpfs".as_ref(), dir.as_os_str()]);
        }
        // After the binds (a nested bwrap, such as a CLI's own sandbox, needs this order).
        add(&[
            "--unshare-pid".as_ref(),
            "--unshare-ipc".as_ref(),
            "--unshare-uts".as_ref(),
            "--proc".as_ref(),
            "/proc".as_ref(),
        ]);
        if self.no_network {
            add(&["--unshare-net".as_ref()]);
        }
        if die_with_parent {
            add(&["--die-with-parent".as_ref()]);
        }
        // Whoever reaches tmux's server can run commands outside the sandbox.
        add(&["--unsetenv".as_ref(), "TMUX".as_ref()]);
        add(&["--unsetenv".as_ref(), "TMUX_PANE".as_ref()]);
        add(&["--unsetenv".as_ref(), HIDE_ENV.as_ref()]);
        let fd = seccomp_fd.to_string();
        add(&["--seccomp".as_ref(), fd.as_ref()]);
        add(&["--chdir".as_ref(), self.chdir.as_os_str()]);
        args
    }
}

/// The command that runs `program args...` in agent `meta`'s sandbox, and the descriptor of
/// the seccomp filter it reads (to keep open until the command is executed).
pub fn command(
    files: &Files,
    meta: &AgentMeta,
    die_with_parent: bool,
    program: &OsString,
    args: &[OsString],
) -> Result<(Command, OwnedFd)> {
    command_of(files, meta, die_with_parent, None, program, args)
}

/// The same, tied to the process that runs it, with bwrap telling `info` (an inherited
/// descriptor) what sandbox it made, for sessions to join it ([`crate::enter`]).
pub fn command_with_info(
    files: &Files,
    meta: &AgentMeta,
    info: Option<&OwnedFd>,
    program: &OsString,
    args: &[OsString],
) -> Result<(Command, OwnedFd)> {
    command_of(files, meta, true, info, program, args)
}

fn command_of(
    files: &Files,
    meta: &AgentMeta,
    die_with_parent: bool,
    info: Option<&OwnedFd>,
    program: &OsString,
    args: &[OsString],
) -> Result<(Command, OwnedFd)> {
    let bwrap = bwrap_program().ok_or_else(|| {
        Error::Failed(format!(
            "agent '{}' runs in a sandbox, but bubblewrap (bwrap) is not installed on this host: {INSTALL_HINT}",
            meta.request.name
        ))
    })?;
    prepare(files, &meta.request.name)?;
    let facts = HostFacts::gather(files, &meta.request.name)?;
    let view = View::for_agent(files, meta, &facts);
    let filter = filter_fd()?;
    let mut cmd = Command::new(bwrap);
    if let Some(info) = info {
        cmd.arg("--info-fd").arg(info.as_raw_fd().to_string());
    }
    cmd.args(view.args(filter.as_raw_fd(), die_with_parent))
        .arg("--")
        .arg(program)
        .args(args);
    Ok((cmd, filter))
}

/// A pipe holding the seccomp filter, its write end closed, its read end inherited by what
/// hostctl executes (`pipe(2)` leaves close-on-exec off).
fn filter_fd() -> Result<OwnedFd> {
    use std::io::Write;
    let (read, write) = nix::unistd::pipe().map_err(|e| {
        Error::Failed(format!(
            "cannot make a pipe for the sandbox's seccomp filter: {e}"
        ))
    })?;
    let mut write = std::fs::File::from(write);
    write
        .write_all(&tiocsti_filter())
        .map_err(|e| Error::Failed(format!("cannot write the sandbox's seccomp filter: {e}")))?;
    drop(write);
    Ok(read)
}

/// `struct seccomp_data` offsets: the system call's number, the architecture, the low 32 bits
/// of its second argument (on a little-endian machine).
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARG1_LOW: u32 = 24;

const TIOCSTI: u32 = 0x5412;
const TIOCLINUX: u32 = 0x541C;

/// (native architecture, its `ioctl` numbers, compat architecture, its `ioctl` number), as
/// `<linux/audit.h>` and the system call tables give them.
#[cfg(target_arch = "x86_64")]
const ARCHES: (u32, [u32; 2], u32, u32) = (
    0xC000_003E,             // AUDIT_ARCH_X86_64
    [16, 0x4000_0000 | 514], // ioctl, and x32's
    0x4000_0003,             // AUDIT_ARCH_I386
    54,
);
#[cfg(target_arch = "aarch64")]
const ARCHES: (u32, [u32; 2], u32, u32) = (
    0xC000_00B7, // AUDIT_ARCH_AARCH64
    [29, 29],
    0x4000_0028, // AUDIT_ARCH_ARM
    54,
);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHES: (u32, [u32; 2], u32, u32) = (0, [u32::MAX, u32::MAX], 0, u32::MAX);

/// A classic BPF seccomp program, as bwrap's `--seccomp` reads it: `ioctl` with `TIOCSTI`
/// (push characters into a terminal's input, CVE-2017-5226) or `TIOCLINUX` fails with EPERM,
/// everything else is allowed. The command is compared on its low 32 bits, as the kernel
/// reads it.
pub fn tiocsti_filter() -> Vec<u8> {
    const LD_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET: u16 = 0x06; // BPF_RET | BPF_K
    const ALLOW: u32 = 0x7fff_0000; // SECCOMP_RET_ALLOW
    const EPERM: u32 = 0x0005_0000 | 1; // SECCOMP_RET_ERRNO | EPERM
    let (native, [ioctl_a, ioctl_b], compat, compat_ioctl) = ARCHES;
    // Jumps are relative to the next instruction: ARG is 8, ALLOW 11, DENY 12.
    let program: [(u16, u8, u8, u32); 13] = [
        (LD_ABS, 0, 0, ARCH),      // 0
        (JEQ, 0, 3, native),       // 1: native ? 2 : 5
        (LD_ABS, 0, 0, NR),        // 2
        (JEQ, 4, 0, ioctl_a),      // 3: ? ARG : 4
        (JEQ, 3, 6, ioctl_b),      // 4: ? ARG : ALLOW
        (JEQ, 0, 5, compat),       // 5: compat ? 6 : ALLOW
        (LD_ABS, 0, 0, NR),        // 6
        (JEQ, 0, 3, compat_ioctl), // 7: ? ARG : ALLOW
        (LD_ABS, 0, 0, ARG1_LOW),  // 8: ARG
        (JEQ, 2, 0, TIOCSTI),      // 9: ? DENY : 10
        (JEQ, 1, 0, TIOCLINUX),    // 10: ? DENY : ALLOW
        (RET, 0, 0, ALLOW),        // 11: ALLOW
        (RET, 0, 0, EPERM),        // 12: DENY
    ];
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for (code, jt, jf, k) in program {
        bytes.extend_from_slice(&code.to_ne_bytes());
        bytes.push(jt);
        bytes.push(jf);
        bytes.extend_from_slice(&k.to_ne_bytes());
    }
    bytes
}

/// [`tiocsti_filter`] as instructions, for a process that installs it on itself (a session
/// joining the agent's sandbox, [`crate::enter`]).
pub fn tiocsti_program() -> Vec<seccompiler::sock_filter> {
    tiocsti_filter()
        .chunks_exact(8)
        .map(|c| seccompiler::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect()
}

/// Whether `meta`'s agent runs in bwrap.
pub fn is_sandboxed(meta: &AgentMeta) -> bool {
    meta.sandbox() == Sandbox::Bwrap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_try_of_bwrap_is_tried_again_before_the_host_is_judged_unable() {
        use std::cell::Cell;
        let pause = std::time::Duration::ZERO;
        // Fails once (a mount that came or went), then works: usable.
        let calls = Cell::new(0);
        let flaky = || {
            calls.set(calls.get() + 1);
            if calls.get() == 1 {
                Err("remount failed".to_owned())
            } else {
                Ok(())
            }
        };
        assert_eq!(probe(flaky, 3, pause), None);
        assert_eq!(calls.get(), 2);
        // Fails every time: unusable, with the last try's reason, after every try.
        let calls = Cell::new(0);
        let broken = || {
            calls.set(calls.get() + 1);
            Err(format!("try {}", calls.get()))
        };
        assert_eq!(probe(broken, 3, pause), Some("try 3".to_owned()));
        assert_eq!(calls.get(), 3);
    }
    use crate::api::CreateRequest;

    /// Runs a classic BPF program as the kernel's seccomp would on `(arch, nr, args[1])`.
    fn run_filter(program: &[u8], arch: u32, nr: u32, arg1: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_ne_bytes());
        data[4..8].copy_from_slice(&arch.to_ne_bytes());
        data[24..32].copy_from_slice(&arg1.to_ne_bytes());
        let insns: Vec<(u16, u8, u8, u32)> = program
            .chunks(8)
            .map(|c| {
                (
                    u16::from_ne_bytes([c[0], c[1]]),
                    c[2],
                    c[3],
                    u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                )
            })
            .collect();
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let (code, jt, jf, k) = insns[pc];
            match code {
                0x20 => {
                    let at = k as usize;
                    acc = u32::from_ne_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
                    pc += 1;
                }
                0x15 => pc += 1 + usize::from(if acc == k { jt } else { jf }),
                0x06 => return k,
                other => panic!("instruction {other:#x} not expected"),
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_filter_refuses_tiocsti_and_tioclinux_and_nothing_else() {
        let program = tiocsti_filter();
        assert_eq!(program.len() % 8, 0);
        let eperm = 0x0005_0001;
        let allow = 0x7fff_0000;
        let (x86_64, i386) = (0xC000_003E, 0x4000_0003);
        // ioctl(fd, TIOCSTI), natively, through x32 and through the 32-bit entry.
        assert_eq!(run_filter(&program, x86_64, 16, 0x5412), eperm);
        assert_eq!(
            run_filter(&program, x86_64, 0x4000_0000 | 514, 0x5412),
            eperm
        );
        assert_eq!(run_filter(&program, i386, 54, 0x5412), eperm);
        assert_eq!(run_filter(&program, x86_64, 16, 0x541C), eperm);
        // The kernel reads the command as 32 bits: high bits set change nothing.
        assert_eq!(
            run_filter(&program, x86_64, 16, 0xFFFF_FFFF_0000_5412),
            eperm
        );
        // Other ioctls (TCGETS, TIOCGWINSZ) and other calls with the same argument pass.
        assert_eq!(run_filter(&program, x86_64, 16, 0x5401), allow);
        assert_eq!(run_filter(&program, x86_64, 16, 0x5413), allow);
        assert_eq!(run_filter(&program, x86_64, 0, 0x5412), allow);
        assert_eq!(run_filter(&program, i386, 16, 0x5412), allow);
        assert_eq!(run_filter(&program, 0x1234, 16, 0x5412), allow);
    }

    fn meta(name: &str, workspace: &Path) -> AgentMeta {
        AgentMeta {
            request: CreateRequest {
                sandbox: Some(Sandbox::Bwrap),
                ..CreateRequest::login_shell(name)
            },
            workspace_path: workspace.to_owned(),
            created_at: "2026-12-06T00:00:00Z".into(),
            starts: 1,
            hooks: None,
        }
    }

    fn mkdirs(paths: &[&Path]) {
        for p in paths {
            std::fs::create_dir_all(p).expect("mkdir");
        }
    }

    #[test]
    fn what_is_hidden_comes_first_shallowest_first_and_what_is_shown_goes_on_top() {
        // Not under /tmp, which the sandbox replaces whole (what is under it is hidden), and
        // not under the checkout either, which may itself be under /tmp.
        let root = tempfile::tempdir_in("/var/tmp").expect("tempdir in /var/tmp");
        let r = root.path();
        // hostctl's home outside $HOME, a tmux socket directory, an agent's --dir workspace
        // elsewhere, another inside this agent's workspace, one that holds it.
        let (user_home, agents) = (r.join("home/u"), r.join("srv/agentgate"));
        let files = Files::new(agents.clone());
        let mine = r.join("data/projects/app");
        let (elsewhere, inside, above) =
            (r.join("opt/other"), mine.join("vendor/y"), r.join("data"));
        let tmux = r.join("run/tmux-0");
        mkdirs(&[&user_home, &agents, &mine, &elsewhere, &inside, &tmux]);
        let facts = HostFacts {
            user_home: user_home.clone(),
            hostctl: None,
            tmux_dirs: vec![tmux.clone(), r.join("run/not-there")],
            other_workspaces: vec![
                elsewhere.clone(),
                inside.clone(),
                above.clone(),
                mine.clone(),
                agents.join("workspaces/b"),
            ],
            extra_hidden: vec![],
        };
        let view = View::for_agent(&files, &meta("a", &mine), &facts);
        let private = |source: PathBuf, destination: &Path| Cover::Private {
            source,
            destination: destination.to_owned(),
        };
        assert_eq!(
            view.covers,
            vec![
                private(files.agent_dir("a").join("tmp"), Path::new("/tmp")),
                Cover::Hide(agents.clone()),
                Cover::Hide(tmux),
                private(files.agent_dir("a").join("home"), &user_home),
            ]
        );
        assert_eq!(
            view.read_write,
            vec![files.agent_dir("a").join("events"), mine.clone()]
        );
        assert_eq!(view.read_only, vec![files.agent_dir("a")]);
        // The one elsewhere and the one inside this workspace are hidden, after the binds;
        // the one holding it, this very one, and those already hidden are not.
        assert_eq!(view.hidden_last, vec![elsewhere, inside]);
        let args: Vec<String> = view
            .args(7, true)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let at = |word: &str| args.iter().position(|a| a == word).expect(word);
        assert_eq!(&args[..3], ["--ro-bind", "/", "/"]);
        assert!(at("--tmpfs") < at("--chdir"));
        assert!(args.windows(2).any(|w| w == ["--seccomp", "7"]));
        assert!(args.contains(&"--die-with-parent".to_owned()));
        assert!(!view.args(7, false).contains(&"--die-with-parent".into()));
        assert!(!args.contains(&"--unshare-net".to_owned()));
        let mut cut_off = meta("a", &mine);
        cut_off.request.network = Some(crate::api::Network::None);
        let view = View::for_agent(&files, &cut_off, &facts);
        assert!(view.args(7, true).contains(&"--unshare-net".into()));
    }

    #[test]
    fn without_a_choice_an_agent_gets_the_sandbox_where_the_host_can_make_one() {
        let works = || None;
        let broken = || Some("no bwrap here".to_owned());
        assert_eq!(choose_with(None, works).ok(), Some(Sandbox::Bwrap));
        assert_eq!(choose_with(None, broken).ok(), Some(Sandbox::None));
        assert_eq!(
            choose_with(Some(Sandbox::None), works).ok(),
            Some(Sandbox::None)
        );
        assert_eq!(
            choose_with(Some(Sandbox::Bwrap), works).ok(),
            Some(Sandbox::Bwrap)
        );
        let refused = choose_with(Some(Sandbox::Bwrap), broken).expect_err("refused");
        assert!(refused.to_string().contains("no bwrap here"), "{refused}");
    }

    #[test]
    fn a_templates_home_files_are_copied_once_links_as_links_and_missing_ones_skipped() {
        let root = tempfile::tempdir().expect("tempdir");
        let (home, files) = (root.path().join("home"), Files::new(root.path().join("ag")));
        mkdirs(&[&home.join(".config/tool"), &files.private_home("a")]);
        std::fs::write(home.join(".gitconfig"), "host").expect("write");
        std::fs::write(home.join(".config/tool/s.json"), "{}").expect("write");
        std::os::unix::fs::symlink("s.json", home.join(".config/tool/link")).expect("link");
        std::fs::write(home.join(".kept"), "host").expect("write");
        let private = files.private_home("a");
        // One the home has already (carried by a clone) stays as it is.
        std::fs::write(private.join(".kept"), "agent's own").expect("write");
        let mut agent = meta("a", root.path());
        agent.request.sandbox_extras.home_files =
            ["~/.gitconfig", "~/.config/tool", "~/.kept", "~/.missing"]
                .map(str::to_owned)
                .to_vec();
        seed_home(&files, &agent, &home).expect("seeded");
        let read = |p: &str| std::fs::read_to_string(private.join(p)).expect(p);
        assert_eq!(read(".gitconfig"), "host");
        assert_eq!(read(".config/tool/s.json"), "{}");
        assert_eq!(
            std::fs::read_link(private.join(".config/tool/link")).expect("a link"),
            Path::new("s.json")
        );
        assert_eq!(read(".kept"), "agent's own");
        assert!(!private.join(".missing").exists());
    }

    #[test]
    fn a_missing_or_broken_bwrap_is_refused_with_what_to_do() {
        let missing = unusable_program(None).expect("refused");
        assert!(missing.contains("apt-get install bubblewrap"), "{missing}");
        assert!(missing.contains("--sandbox none"), "{missing}");
        let broken = unusable_program(Some(Path::new("/bin/false"))).expect("refused");
        assert!(broken.contains("cannot make a sandbox"), "{broken}");
        assert!(broken.contains("AppArmor"), "{broken}");
    }
}
