//! Sessions inside a sandboxed agent (`ssh NAME@gw CMD`, a shell, SFTP) join the agent's own
//! sandbox: its user (when bwrap made one), IPC, UTS, network, PID and mount namespaces, and
//! its root. So a session sees exactly the agent's files and processes, a process it leaves
//! running (a `nohup` daemon, VS Code's server) lives on in the agent's sandbox after the
//! session, and it ends with the agent's: when the sandbox's first process (bwrap's) ends,
//! the kernel ends every process of its PID namespace.
//!
//! The agent's sandbox is found by what its bwrap wrote at launch (`--info-fd` into
//! `agents/NAME/sandbox.json`: the sandbox's first process and its mount namespace), checked
//! to be that process still (its mount namespace is the one recorded, so a reused PID is not
//! joined). An agent that is stopped has no sandbox to join: a session then gets a fresh one
//! with the same view (bwrap running `sleep infinity` as a placeholder, tied to the session),
//! joined the same way, which ends with the session and everything in it.
//!
//! hostctl itself joins (joining a PID namespace only moves the children made afterwards),
//! gives up every capability, sets no-new-privileges and the sandbox's TIOCSTI filter, then
//! runs `hostctl sandbox-child -- COMMAND...`, which asks to be killed if hostctl dies (the
//! session was killed), unblocks its signals and executes the command. hostctl waits: it
//! passes on the signals it is sent, and ends as the command ended (the same exit status, or
//! killed by the same signal), so a session reports what it would without a sandbox.
//!
//! This module joins and waits; what a sandbox shows is [`crate::sandbox`]'s.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use rustix::thread::LinkNameSpaceType;

use crate::api::AgentMeta;
use crate::error::{Error, Result};
use crate::files::Files;

/// The file, in an agent's directory, where its bwrap tells what sandbox it made.
pub const INFO_FILE: &str = "sandbox.json";

/// What bwrap's `--info-fd` says of a sandbox: its first process (in the caller's PID
/// namespace) and the inode of its mount namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SandboxInfo {
    pub pid: i32,
    pub mount_namespace: u64,
}

impl SandboxInfo {
    /// Reads bwrap's JSON (`{"child-pid": 123, "mnt-namespace": 4026532174, ...}`); `None`
    /// when it says no such thing (a launch that failed before bwrap wrote it).
    pub fn parse(text: &[u8]) -> Option<SandboxInfo> {
        SandboxInfo::read(text)
    }

    /// The same, read from `from` up to the end of the first JSON object only: bwrap may keep
    /// its end of a pipe open.
    pub fn read(from: impl Read) -> Option<SandboxInfo> {
        let value: serde_json::Value = serde_json::Deserializer::from_reader(from)
            .into_iter()
            .next()?
            .ok()?;
        let pid = i32::try_from(value.get("child-pid")?.as_u64()?).ok()?;
        let mount_namespace = value.get("mnt-namespace")?.as_u64()?;
        (pid > 1).then_some(SandboxInfo {
            pid,
            mount_namespace,
        })
    }
}

/// Where agent `name`'s bwrap writes its [`SandboxInfo`].
pub fn info_path(files: &Files, name: &str) -> PathBuf {
    files.agent_dir(name).join(INFO_FILE)
}

/// A file for the agent's bwrap to write its info into, emptied, as a descriptor that is
/// inherited across `exec` (bwrap is given its number).
pub fn info_file(files: &Files, name: &str) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = info_path(files, name);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .map_err(Error::io("opening", &path))?;
    // Rust opens files close-on-exec; a duplicate is not.
    rustix::io::dup(&file).map_err(|e| {
        Error::Failed(format!(
            "cannot hand {} to the sandbox: {e}",
            path.display()
        ))
    })
}

/// The namespaces a session joins, in the order it joins them: the user namespace first (it
/// gives the rights the others need), the mount namespace last but for the root.
const NAMESPACES: [(&str, LinkNameSpaceType); 6] = [
    ("user", LinkNameSpaceType::User),
    ("ipc", LinkNameSpaceType::InterProcessCommunication),
    ("uts", LinkNameSpaceType::HostNameAndNISDomainName),
    ("net", LinkNameSpaceType::Network),
    ("pid", LinkNameSpaceType::ProcessID),
    ("mnt", LinkNameSpaceType::Mount),
];

/// How long a sandbox is given to make its root before it is given up on.
const SETUP_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A sandbox held open to be joined: its namespaces and its root, opened from its first
/// process, and (for a stopped agent's session) the bwrap that makes it, which dies with
/// this process.
pub struct Joinable {
    namespaces: Vec<(OwnedFd, LinkNameSpaceType)>,
    root: OwnedFd,
    holder: Option<Child>,
}

impl Joinable {
    /// Ends the bwrap that holds a fresh sandbox open, and with it everything in it (bwrap's
    /// `--die-with-parent` is not counted on alone: hostctl ends with `exit`, which runs no
    /// destructor).
    fn end_holder(&mut self) {
        if let Some(holder) = self.holder.as_mut() {
            let _ = holder.kill();
            let _ = holder.wait();
        }
    }
}

impl Drop for Joinable {
    fn drop(&mut self) {
        self.end_holder();
    }
}

/// Opens the namespaces of process `info.pid` that differ from this process's, and its
/// root; `None` when that process is gone or is no longer the sandbox recorded.
fn open(info: SandboxInfo) -> Option<(Vec<(OwnedFd, LinkNameSpaceType)>, OwnedFd)> {
    let proc = PathBuf::from(format!("/proc/{}", info.pid));
    let ns_inode = |path: &Path| std::fs::metadata(path).ok().map(|m| m.ino());
    // Checked before and after the others are opened: what they were opened from is the
    // sandbox's process, not one that took its PID.
    let is_it = || ns_inode(&proc.join("ns/mnt")) == Some(info.mount_namespace);
    if !is_it() {
        return None;
    }
    // bwrap tells of its sandbox before its first process has made the root; that process
    // starts the command once it has, and not before.
    let children = proc.join(format!("task/{}/children", info.pid));
    let ready = || std::fs::read_to_string(&children).is_ok_and(|c| !c.trim().is_empty());
    let since = std::time::Instant::now();
    while !ready() {
        if since.elapsed() > SETUP_TIME || !is_it() {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let open_path =
        |path: &Path| -> Option<OwnedFd> { std::fs::File::open(path).ok().map(OwnedFd::from) };
    let mut namespaces = Vec::new();
    for (name, kind) in NAMESPACES {
        let theirs = proc.join("ns").join(name);
        let ours = Path::new("/proc/self/ns").join(name);
        // One this process is in already is not joined (setns refuses its own user
        // namespace); a kernel without it has none to join.
        match (ns_inode(&theirs), ns_inode(&ours)) {
            (Some(t), Some(o)) if t == o => continue,
            (None, _) => continue,
            _ => {}
        }
        namespaces.push((open_path(&theirs)?, kind));
    }
    let root = open_path(&proc.join("root"))?;
    is_it().then_some((namespaces, root))
}

/// The running sandbox of agent `name`, if its bwrap runs.
pub fn running(files: &Files, name: &str) -> Option<Joinable> {
    let text = std::fs::read(info_path(files, name)).ok()?;
    let (namespaces, root) = open(SandboxInfo::parse(&text)?)?;
    Some(Joinable {
        namespaces,
        root,
        holder: None,
    })
}

/// A fresh sandbox with agent `meta`'s view, for a session of a stopped agent: bwrap holds it
/// open (its command sleeps) until this process ends.
pub fn fresh(files: &Files, meta: &AgentMeta) -> Result<Joinable> {
    let (read, write) = nix::unistd::pipe()
        .map_err(|e| Error::Failed(format!("cannot make a pipe for the sandbox: {e}")))?;
    let (mut cmd, _filter) = crate::sandbox::command_with_info(
        files,
        meta,
        Some(&write),
        &"sleep".into(),
        &["infinity".into()],
    )?;
    let mut holder = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: "bwrap".into(),
            source,
        })?;
    // bwrap has its own copy; ours would keep the pipe open after bwrap ended.
    drop(write);
    let made = SandboxInfo::read(std::fs::File::from(read)).and_then(open);
    let Some((namespaces, root)) = made else {
        let _ = holder.kill();
        let mut why = String::new();
        if let Some(mut stderr) = holder.stderr.take() {
            let _ = stderr.read_to_string(&mut why);
        }
        let status = holder.wait().map(|s| s.to_string()).unwrap_or_default();
        return Err(Error::Failed(format!(
            "bubblewrap could not make a sandbox for agent '{}' ({status}): {}",
            meta.request.name,
            why.trim()
        )));
    };
    Ok(Joinable {
        namespaces,
        root,
        holder: Some(holder),
    })
}

/// The signals hostctl passes on to the session's command while it waits for it.
const PASSED_ON: [Signal; 6] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Stops that a terminal sends to its foreground group: the command deals with them, hostctl
/// (which never reads the terminal) must not stop for them.
const HELD: [Signal; 3] = [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU];

/// Joins `sandbox`, then runs `cmd` in it (its program, arguments, environment and working
/// directory, which is a path inside) and ends as it ends. Returns only on failure before the
/// command ran.
pub fn run(mut sandbox: Joinable, cmd: &Command) -> Result<std::convert::Infallible> {
    let hostctl = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find hostctl's own path: {e}")))?;
    single_threaded()?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for sig in PASSED_ON.iter().chain(&HELD) {
        mask.add(*sig);
    }
    // Blocked before the command exists, so that none is lost; `sandbox-child` unblocks them.
    mask.thread_block()
        .map_err(|e| Error::Failed(format!("cannot block signals: {e}")))?;
    join(&sandbox)?;
    confine()?;
    if !hostctl.is_file() {
        return Err(Error::Failed(format!(
            "hostctl ({}) is not inside the agent's sandbox: restart the agent (it was started by another hostctl)",
            hostctl.display()
        )));
    }
    let mut child_cmd = Command::new(&hostctl);
    child_cmd
        .args(crate::api::OwnCall::SandboxChild { command: vec![] }.argv())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .env_clear();
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            child_cmd.env(key, value);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        child_cmd.current_dir(dir);
    }
    let child = child_cmd.spawn().map_err(|source| Error::Spawn {
        program: hostctl.display().to_string(),
        source,
    })?;
    let child = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    // A terminal sends ^C and ^\ to its whole foreground group, the command included: hostctl
    // passes on only what is sent to it alone.
    let on_terminal = std::io::IsTerminal::is_terminal(&std::io::stdin());
    loop {
        let Ok(sig) = mask.wait() else { continue };
        match sig {
            Signal::SIGCHLD => {
                if let Some(end) = ended(child) {
                    sandbox.end_holder();
                    end_as(end);
                }
            }
            Signal::SIGINT | Signal::SIGQUIT if on_terminal => {}
            sig if HELD.contains(&sig) => {}
            sig => {
                let _ = kill(child, sig);
            }
        }
    }
}

/// How the command ended, if it has.
enum Ended {
    Exited(i32),
    Killed(Signal),
}

fn ended(child: Pid) -> Option<Ended> {
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(Ended::Exited(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Some(Ended::Killed(sig)),
            Err(nix::errno::Errno::EINTR) => continue,
            // Gone without a status (cannot happen to one's own child): as a failure.
            Err(_) => return Some(Ended::Exited(1)),
            Ok(_) => return None,
        }
    }
}

/// Ends this process as the command ended: the same status, or the same signal (without a
/// core file: the command's was written, if any).
fn end_as(end: Ended) -> ! {
    match end {
        Ended::Exited(code) => std::process::exit(code),
        Ended::Killed(sig) => {
            let _ = rustix::process::setrlimit(
                rustix::process::Resource::Core,
                rustix::process::Rlimit {
                    current: Some(0),
                    maximum: None,
                },
            );
            let _ = kill(Pid::this(), sig);
            let mut only = SigSet::empty();
            only.add(sig);
            // Pending, and blocked while it was waited for: delivered now, with its default
            // action (hostctl never handles a signal).
            let _ = only.thread_unblock();
            std::process::exit(128 + sig as i32)
        }
    }
}

/// Refuses when hostctl runs more than one thread: the kernel lets only a single-threaded
/// process change its user or mount namespace.
fn single_threaded() -> Result<()> {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
    match threads {
        Ok(1) => Ok(()),
        Ok(n) => Err(Error::Failed(format!(
            "cannot join the agent's sandbox: hostctl runs {n} threads"
        ))),
        Err(e) => Err(Error::Failed(format!(
            "cannot join the agent's sandbox: /proc/self/task: {e}"
        ))),
    }
}

/// Moves this process into the sandbox's namespaces and root.
fn join(sandbox: &Joinable) -> Result<()> {
    for (fd, kind) in &sandbox.namespaces {
        rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind)).map_err(|e| {
            Error::Failed(format!(
                "cannot join the agent's sandbox ({kind:?} namespace): {e}"
            ))
        })?;
    }
    // Joining a mount namespace does not move the root: the sandbox's is taken as its first
    // process has it.
    rustix::process::fchdir(&sandbox.root)
        .and_then(|()| rustix::process::chroot("."))
        .and_then(|()| rustix::process::chdir("/"))
        .map_err(|e| Error::Failed(format!("cannot enter the agent's sandbox's root: {e}")))
}

/// Gives up what the sandbox's own processes do not have: every capability (a session of
/// root would keep root's in the sandbox's namespaces, enough to unmount what hides the rest
/// of the host), the right to gain privileges, and TIOCSTI (the sandbox's seccomp filter).
/// What hostctl runs next inherits all three.
fn confine() -> Result<()> {
    use rustix::thread::{CapabilitySet, CapabilitySets};
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        Error::Failed(format!(
            "cannot confine the session to the sandbox ({what}): {e}"
        ))
    };
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
        .min(63);
    for cap in 0..=last {
        match rustix::thread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(
            1 << cap,
        )) {
            // Not a capability of this kernel.
            Ok(()) | Err(rustix::io::Errno::INVAL) => {}
            Err(e) => return Err(failed("bounding set", &e)),
        }
    }
    match rustix::thread::clear_ambient_capability_set() {
        Ok(()) | Err(rustix::io::Errno::INVAL) => {}
        Err(e) => return Err(failed("ambient set", &e)),
    }
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(|e| failed("capabilities", &e))?;
    rustix::thread::set_no_new_privs(true).map_err(|e| failed("no-new-privileges", &e))?;
    seccompiler::apply_filter(&crate::sandbox::tiocsti_program()).map_err(|e| failed("seccomp", &e))
}

/// `hostctl sandbox-child -- COMMAND...`, the session's command as hostctl starts it inside
/// the sandbox: killed if hostctl dies, its signals unblocked, then replaced by the command.
/// Returns only on failure.
pub fn child(command: &[OsString]) -> Error {
    use std::os::unix::process::CommandExt;
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // hostctl is outside this PID namespace: its PID reads as 0 here, until it dies.
    if rustix::process::getppid().is_some() {
        return Error::Failed("the session ended before its command started".into());
    }
    let _ = SigSet::empty().thread_set_mask();
    let Some((program, args)) = command.split_first() else {
        return Error::InvalidInput("sandbox-child: no command given".into());
    };
    let e = Command::new(program).args(args).exec();
    Error::Spawn {
        program: program.to_string_lossy().into_owned(),
        source: e,
    }
}

/// `hostctl dial NAME PORT`: a TCP connection to `PORT` on agent `name`'s loopback, relayed
/// between it and stdin/stdout until the agent's side ends. An agent whose sandbox has no
/// network is dialled from inside its network namespace (joined with its user namespace, if
/// any, and nothing else), so `ssh -L` reaches its ports though nothing of the host's can.
pub fn dial(files: &Files, name: &str, port: u16) -> Result<()> {
    crate::api::validate_agent_name(name).map_err(Error::InvalidInput)?;
    let meta = files.read_meta(name)?;
    if meta.no_network() {
        let info = std::fs::read(info_path(files, name))
            .ok()
            .and_then(|text| SandboxInfo::parse(&text));
        let Some((namespaces, _root)) = info.and_then(open) else {
            return Err(Error::Failed(format!(
                "agent '{name}' is not running: nothing listens on its port {port}"
            )));
        };
        single_threaded()?;
        for (fd, kind) in &namespaces {
            if matches!(kind, LinkNameSpaceType::User | LinkNameSpaceType::Network) {
                rustix::thread::move_into_link_name_space(fd.as_fd(), Some(*kind)).map_err(
                    |e| {
                        Error::Failed(format!(
                            "cannot join agent '{name}''s network ({kind:?} namespace): {e}"
                        ))
                    },
                )?;
            }
        }
    }
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))
        .or_else(|_| std::net::TcpStream::connect(("::1", port)))
        .map_err(|e| {
            Error::Failed(format!(
                "cannot connect to port {port} of agent '{name}': {e}"
            ))
        })?;
    let _ = stream.set_nodelay(true);
    let mut to_agent = stream
        .try_clone()
        .map_err(|e| Error::Failed(format!("cannot relay to agent '{name}': {e}")))?;
    // What the client sends, until it ends; then the agent's side is told (half-close).
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut to_agent);
        let _ = to_agent.shutdown(std::net::Shutdown::Write);
    });
    let mut from_agent = stream;
    let mut out = std::io::stdout().lock();
    std::io::copy(&mut from_agent, &mut out)
        .and_then(|_| std::io::Write::flush(&mut out))
        .map_err(|e| Error::Failed(format!("relaying from agent '{name}': {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bwraps_info_gives_the_sandboxs_process_and_mount_namespace() {
        let text = br#"{
    "child-pid": 16390,
    "ipc-namespace": 4026532176,
    "mnt-namespace": 4026532174,
    "pid-namespace": 4026532177,
    "uts-namespace": 4026532175
}"#;
        assert_eq!(
            SandboxInfo::parse(text),
            Some(SandboxInfo {
                pid: 16390,
                mount_namespace: 4026532174
            })
        );
        // What follows the first object (bwrap may add an exit status) is not read.
        let mut more = text.to_vec();
        more.extend_from_slice(b"\n{\"exit-code\": 0}\n");
        assert!(SandboxInfo::parse(&more).is_some());
        // Nothing written (bwrap failed), cut short, or no PID: nothing to join.
        assert_eq!(SandboxInfo::parse(b""), None);
        assert_eq!(SandboxInfo::parse(br#"{"child-pid": 16"#), None);
        assert_eq!(SandboxInfo::parse(br#"{"mnt-namespace": 1}"#), None);
        assert_eq!(
            SandboxInfo::parse(br#"{"child-pid": 1, "mnt-namespace": 1}"#),
            None
        );
    }

    #[test]
    fn a_process_that_is_not_the_recorded_sandbox_is_not_joined() {
        // A process with a child (as a sandbox's first process has once it is made), in this
        // process's namespaces.
        let mut parent = Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .expect("sh");
        let pid = i32::try_from(parent.id()).expect("a pid");
        let mine = std::fs::metadata("/proc/self/ns/mnt").expect("ns").ino();
        let other = SandboxInfo {
            pid,
            mount_namespace: mine + 1,
        };
        assert!(open(other).is_none());
        // Recorded right: found, with nothing to join but its root (all of its namespaces
        // are this process's own).
        let same = SandboxInfo {
            pid,
            mount_namespace: mine,
        };
        let (namespaces, _root) = open(same).expect("the process");
        assert!(namespaces.is_empty());
        let _ = parent.kill();
        let _ = parent.wait();
        // Gone: not joined.
        assert!(open(same).is_none());
    }
}
