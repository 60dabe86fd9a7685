//! The local host: hostctl runs as a child process of the gateway.
//!
//! Each call is `hostctl VERB ARGS... --json` (the words of a [`Call`]) with an argument
//! vector (no shell), a time limit, and the child killed if the call is abandoned. `attach` runs hostctl on a fresh
//! pseudo-terminal.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use hostctl::api::{Call, TermSize};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{
    CallKind, Duplex, HostError, LOCAL_HOST, PipedProcess, ProcessExit, TerminalInput,
    TerminalProcess,
};

#[derive(Debug)]
pub struct LocalHost {
    hostctl: PathBuf,
    /// `$AGENTGATE_HOME` for hostctl, when configured; else hostctl's own default.
    home: Option<PathBuf>,
    call_timeout: Duration,
    create_timeout: Duration,
    tasks: TaskTracker,
    /// What agents' sandboxes on this machine must hide besides what hostctl knows: the
    /// gateway's data directory (its database and keys).
    hidden: Option<PathBuf>,
}

impl LocalHost {
    pub fn new(
        hostctl: PathBuf,
        home: Option<PathBuf>,
        call_timeout: Duration,
        create_timeout: Duration,
        tasks: TaskTracker,
    ) -> LocalHost {
        LocalHost {
            hostctl,
            home,
            call_timeout,
            create_timeout,
            tasks,
            hidden: None,
        }
    }

    /// Hides `dir` (the gateway's data directory) from the sandboxes of this machine's agents.
    pub fn hiding(mut self, dir: Option<PathBuf>) -> LocalHost {
        self.hidden = dir;
        self
    }

    /// The hostctl binary: `configured`, else `hostctl` beside the running executable, else
    /// `hostctl` on PATH.
    pub fn find_hostctl(configured: Option<&Path>) -> PathBuf {
        if let Some(path) = configured {
            return path.to_owned();
        }
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("hostctl")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("hostctl"))
    }

    fn command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(&self.hostctl);
        // Its own process group, as sshd gives each session: a ^C meant for the gateway (in
        // its terminal) must not reach the commands running inside agents.
        cmd.args(args).kill_on_drop(true).process_group(0);
        if let Some(home) = &self.home {
            cmd.env("AGENTGATE_HOME", home);
        }
        if let Some(dir) = &self.hidden {
            cmd.env(hostctl::sandbox::HIDE_ENV, dir);
        }
        cmd
    }

    fn spawn_error(&self, e: std::io::Error) -> HostError {
        // Arguments the system cannot pass are the input's fault, not the host's (the
        // sessions' input is checked before; this names what slipped through).
        let refused = |what: &str| HostError::Rejected {
            code: hostctl::api::ErrorCode::InvalidInput,
            message: format!("{what}: {e}"),
        };
        match e.kind() {
            std::io::ErrorKind::ArgumentListTooLong => {
                return refused("the arguments are too long for the host to run");
            }
            std::io::ErrorKind::InvalidInput => {
                return refused("an argument cannot be passed to a program");
            }
            _ => {}
        }
        HostError::Unreachable {
            host: LOCAL_HOST.to_owned(),
            reason: format!("cannot run hostctl ({}): {e}", self.hostctl.display()),
        }
    }

    /// Runs `call`, feeding it its body if it has one, and decodes its answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        call: &Call,
        kind: CallKind,
    ) -> Result<T, HostError> {
        let what = call.verb().to_owned();
        let (args, stdin) = super::answer_call(LOCAL_HOST, call)?;
        // The local host is not probed with a short limit: a busy machine is not unreachable.
        let limit = match kind {
            CallKind::Long => self.create_timeout,
            CallKind::Normal | CallKind::Probe => self.call_timeout,
        };
        let mut cmd = self.command(&args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let input = child.stdin.take();
        let run = async move {
            if let (Some(mut pipe), Some(body)) = (input, stdin) {
                pipe.write_all(&body).await?;
                drop(pipe);
            }
            child.wait_with_output().await
        };
        let output = match tokio::time::timeout(limit, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(self.spawn_error(e)),
            Err(_) => {
                return Err(HostError::Timeout {
                    host: LOCAL_HOST.to_owned(),
                    what,
                    seconds: limit.as_secs(),
                });
            }
        };
        super::decode_reply(
            LOCAL_HOST,
            &what,
            ProcessExit::from_status(Ok(output.status)),
            &output.stdout,
            &output.stderr,
        )
    }

    /// Runs a hostctl call with its standard streams as pipes (`logs -f`, `exec`, `sftp`).
    /// With `outlives_client`, dropping the process leaves it running: a session's processes
    /// may outlive the client (VS Code's server does), as under sshd, where a client that goes
    /// away closes the pipes but kills nothing.
    pub fn piped(&self, call: &Call, outlives_client: bool) -> Result<PipedProcess, HostError> {
        let mut cmd = self.command(&call.argv());
        // No terminal: no TERM either (the gateway's own must not leak into sessions).
        cmd.env_remove("TERM")
            .kill_on_drop(!outlives_client)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.spawn_error(std::io::Error::other("no pipes")));
        };
        let pid = child.id();
        Ok(PipedProcess {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(async move { ProcessExit::from_status(child.wait().await) }),
            signal: Box::new(move |name| send_signal(pid, name)),
        })
    }

    /// Runs a hostctl call on a new pseudo-terminal of the given size (`attach`, or `exec`
    /// with a terminal).
    pub fn terminal(
        &self,
        call: &Call,
        term: &str,
        size: TermSize,
    ) -> Result<TerminalProcess, HostError> {
        let pty_error = |e: pty_process::Error| HostError::Unreachable {
            host: LOCAL_HOST.to_owned(),
            reason: format!("cannot open a pseudo-terminal: {e}"),
        };
        let (pty, pts) = pty_process::open().map_err(pty_error)?;
        pty.resize(pty_size(size)).map_err(pty_error)?;
        let mut cmd = pty_process::Command::new(&self.hostctl)
            .args(call.argv())
            .env(
                "TERM",
                if term.is_empty() {
                    "xterm-256color"
                } else {
                    term
                },
            )
            .kill_on_drop(true);
        if let Some(home) = &self.home {
            cmd = cmd.env("AGENTGATE_HOME", home);
        }
        if let Some(dir) = &self.hidden {
            cmd = cmd.env(hostctl::sandbox::HIDE_ENV, dir);
        }
        let mut child = cmd.spawn(pts).map_err(pty_error)?;
        let (output, mut writer) = pty.into_split();
        let (input, mut input_rx) = super::terminal_input(size);
        self.tasks.spawn(async move {
            while let Some(item) = input_rx.recv().await {
                let ok = match item {
                    TerminalInput::Data(bytes) => writer.write_all(&bytes).await.is_ok(),
                    TerminalInput::Resize(size) => writer.resize(pty_size(size)).is_ok(),
                };
                if !ok {
                    break;
                }
            }
        });
        let kill = CancellationToken::new();
        let killed = kill.clone();
        let exit = Box::pin(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                () = killed.cancelled() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            ProcessExit::from_status(status)
        });
        Ok(TerminalProcess {
            output: Box::pin(PtyOutput(output)),
            input,
            exit,
            kill,
        })
    }

    /// Dials a TCP address from this machine, with a time limit.
    pub async fn connect_tcp(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Duplex>> {
        let dial = tokio::net::TcpStream::connect((host, port));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")
            })??;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }

    /// Listens on this machine for a remote forward (`super::listen`).
    pub async fn listen(
        &self,
        on: &super::listen::ListenOn,
    ) -> std::io::Result<super::listen::HostListener> {
        super::listen::listen_here(on, &self.tasks).await
    }

    /// Connects to a unix socket on this machine, with a time limit.
    pub async fn connect_unix(&self, path: &str) -> std::io::Result<Box<dyn Duplex>> {
        let dial = tokio::net::UnixStream::connect(path);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out")
            })??;
        Ok(Box::new(stream))
    }
}

/// Time limit of a forwarded connection's dial.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sends a signal named as SSH names them (`INT`, `TERM`, ...) to a process.
fn send_signal(pid: Option<u32>, name: &str) {
    use nix::sys::signal::{Signal, kill};
    let (Some(pid), Ok(signal)) = (pid, format!("SIG{name}").parse::<Signal>()) else {
        return;
    };
    if let Ok(pid) = i32::try_from(pid) {
        let _ = kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

fn pty_size(size: TermSize) -> pty_process::Size {
    pty_process::Size::new(size.rows.max(1), size.cols.max(1))
}

/// The pty's output, where the end of the terminal (EIO once the process and its children
/// are gone) reads as end of file.
struct PtyOutput(pty_process::OwnedReadPty);

impl tokio::io::AsyncRead for PtyOutput {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.raw_os_error() == Some(libc::EIO) => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

/// Reads a whole stream into a string, for small outputs (used by tests and diagnostics).
pub async fn read_all(mut reader: super::BoxRead) -> String {
    let mut out = Vec::new();
    let _ = reader.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}
