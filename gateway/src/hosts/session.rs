//! What runs inside an agent for one SSH session (`AgentSession`: attach, a command, a shell,
//! SFTP, a mosh client's start of `mosh-server`), the process it becomes on the host (`TerminalProcess` or `PipedProcess`), a
//! terminal's input with its sizes, and how a process ended (`ProcessExit`).

use std::sync::Arc;

use hostctl::api::{Call, ErrorCode, TermSize};

use super::mosh::MoshStart;
use super::{BoxRead, BoxWrite, ExitFuture, HostError};

/// How a process on a host ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessExit {
    Code(i32),
    Signal {
        signal: i32,
        core_dumped: bool,
    },
    /// The process could not be waited for.
    Unknown,
    /// The connection to its host was lost: how it ended is not known.
    Lost,
}

impl ProcessExit {
    pub fn from_status(status: std::io::Result<std::process::ExitStatus>) -> ProcessExit {
        use std::os::unix::process::ExitStatusExt;
        match status {
            Ok(s) => match (s.code(), s.signal()) {
                (Some(code), _) => ProcessExit::Code(code),
                (None, Some(signal)) => ProcessExit::Signal {
                    signal,
                    core_dumped: s.core_dumped(),
                },
                (None, None) => ProcessExit::Unknown,
            },
            Err(_) => ProcessExit::Unknown,
        }
    }

    /// The exit status a shell would report: the code, or 128 + the signal.
    pub fn shell_status(self) -> u32 {
        match self {
            ProcessExit::Code(code) => u32::try_from(code).unwrap_or(1),
            ProcessExit::Signal { signal, .. } => 128 + u32::try_from(signal).unwrap_or(0),
            ProcessExit::Unknown => 1,
            ProcessExit::Lost => 255,
        }
    }
}

/// The most bytes an exec session's command line, with the environment variables sent with
/// it, may hold. The command reaches the host's shell as one argument (`$SHELL -c LINE`; on a
/// remote host, inside the one line sshd hands to the user's shell), and Linux takes no
/// argument longer than 128 KiB (`MAX_ARG_STRLEN`): 4 KiB of that is left for hostctl's own
/// words and the quoting.
pub const MAX_COMMAND: usize = 124 * 1024;

/// The longest single argument Linux passes to a program (`MAX_ARG_STRLEN`, less its NUL).
pub const MAX_ARGUMENT: usize = 128 * 1024 - 1;

/// What runs inside an agent's environment for one SSH session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSession {
    /// `ssh NAME@gw COMMAND`: the command line, run by the user's shell with `-c`.
    Exec(String),
    /// `ssh -T NAME@gw`: a login shell reading stdin.
    Shell,
    /// The `sftp` subsystem: OpenSSH's `sftp-server` in the workspace.
    Sftp,
    /// `ssh -t NAME@gw`: the agent's own tmux session.
    Attach,
    /// A mosh client's `mosh-server new ...` (see [`MoshStart`]).
    Mosh(MoshStart),
}

impl AgentSession {
    /// Refuses input no host can run, naming it: a command line or an environment variable
    /// with a NUL byte, or more than [`MAX_COMMAND`] bytes of them.
    pub fn check_input(&self, env: &[(String, String)]) -> Result<(), HostError> {
        let refused = |message: String| HostError::Rejected {
            code: ErrorCode::InvalidInput,
            message,
        };
        let line = match self {
            AgentSession::Exec(line) | AgentSession::Mosh(MoshStart::Command { run: line, .. }) => {
                line.as_str()
            }
            _ => "",
        };
        if line.contains('\0') {
            return Err(refused("the command contains a NUL byte".into()));
        }
        if line.len() > MAX_COMMAND {
            return Err(refused(format!(
                "the command is {} bytes; at most {MAX_COMMAND} are accepted",
                line.len()
            )));
        }
        if let Some((key, _)) = env
            .iter()
            .find(|(k, v)| k.contains('\0') || v.contains('\0'))
        {
            return Err(refused(format!(
                "the environment variable {} contains a NUL byte",
                key.escape_debug()
            )));
        }
        let total = line.len()
            + env
                .iter()
                .map(|(k, v)| k.len() + v.len() + 1)
                .sum::<usize>();
        if total > MAX_COMMAND {
            return Err(refused(format!(
                "the command and the environment variables sent with it are {total} bytes; at most {MAX_COMMAND} are accepted"
            )));
        }
        Ok(())
    }

    /// The hostctl call that runs this session in agent `agent` (the environment variables go
    /// to every session but the attach, whose tmux client takes none to the agent, and only in
    /// part to an attach through mosh: `super::mosh::attach_env`).
    pub(super) fn hostctl_call(&self, agent: &str, env: &[(String, String)]) -> Call {
        let name = agent.to_owned();
        match self {
            AgentSession::Exec(line) => Call::Exec {
                name,
                command: Some(line.clone()),
                env: env.to_vec(),
            },
            AgentSession::Shell => Call::Exec {
                name,
                command: None,
                env: env.to_vec(),
            },
            AgentSession::Sftp => Call::Sftp {
                name,
                env: env.to_vec(),
            },
            AgentSession::Attach => Call::Attach { name },
            AgentSession::Mosh(MoshStart::Attach { server_args }) => Call::Mosh {
                name,
                env: super::mosh::attach_env(env),
                server_args: server_args.clone(),
            },
            AgentSession::Mosh(MoshStart::Command { run, .. }) => Call::Exec {
                name,
                command: Some(run.clone()),
                env: env.to_vec(),
            },
        }
    }
}

/// What goes into a terminal: keystrokes, or a new size.
#[derive(Debug)]
pub enum TerminalInput {
    Data(bytes::Bytes),
    Resize(TermSize),
}

/// Keystroke chunks waiting for a terminal, at most.
const TERMINAL_INPUT_QUEUE: usize = 64;

/// A terminal's input, sending side: keystrokes queue in order, while a new size replaces the
/// one waiting, so however many window changes a client sends, at most one resize per
/// terminal is waiting, the newest (tmux lays its window out again on each).
#[derive(Clone, Debug)]
pub struct TerminalSender {
    data: tokio::sync::mpsc::Sender<bytes::Bytes>,
    size: Arc<tokio::sync::watch::Sender<TermSize>>,
}

impl TerminalSender {
    /// Queues keystrokes; false once the terminal's input side is gone.
    pub async fn data(&self, bytes: bytes::Bytes) -> bool {
        self.data.send(bytes).await.is_ok()
    }

    /// Makes `size` the size waiting to be applied; never waits.
    pub fn resize(&self, size: TermSize) {
        self.size.send_if_modified(|waiting| {
            let changed = *waiting != size;
            *waiting = size;
            changed
        });
    }
}

/// A terminal's input, receiving side: for the task that writes into the terminal.
#[derive(Debug)]
pub struct TerminalReceiver {
    data: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    size: tokio::sync::watch::Receiver<TermSize>,
}

impl TerminalReceiver {
    /// The next input, a new size before keystrokes; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<TerminalInput> {
        tokio::select! {
            biased;
            Ok(()) = self.size.changed() => {
                Some(TerminalInput::Resize(*self.size.borrow_and_update()))
            }
            data = self.data.recv() => data.map(TerminalInput::Data),
        }
    }
}

/// A terminal's input, for a terminal opened at `initial`.
pub fn terminal_input(initial: TermSize) -> (TerminalSender, TerminalReceiver) {
    let (data_tx, data) = tokio::sync::mpsc::channel(TERMINAL_INPUT_QUEUE);
    let (size_tx, size) = tokio::sync::watch::channel(initial);
    (
        TerminalSender {
            data: data_tx,
            size: Arc::new(size_tx),
        },
        TerminalReceiver { data, size },
    )
}

/// A process on a host attached to a terminal: its output, its input and how it ended.
/// Dropping `input` closes the terminal's input side.
pub struct TerminalProcess {
    pub output: BoxRead,
    pub input: TerminalSender,
    pub exit: ExitFuture,
    /// Cancel to end the process (the client went away).
    pub kill: tokio_util::sync::CancellationToken,
}

/// A process on a host with its standard streams as pipes.
pub struct PipedProcess {
    pub stdin: BoxWrite,
    pub stdout: BoxRead,
    pub stderr: BoxRead,
    pub exit: ExitFuture,
    /// Delivers a signal, by its SSH name (`INT`, `TERM`, ...), to the process.
    pub signal: Box<dyn Fn(&str) + Send + Sync>,
}

/// A `hostctl dial` process as a byte stream: its stdout read, its stdin written; the process
/// is held (and ended when this is dropped, as its call is not one that outlives its client).
pub struct DialledAgent {
    io: tokio::io::Join<BoxRead, BoxWrite>,
    _stderr: BoxRead,
    _exit: ExitFuture,
}

impl DialledAgent {
    pub fn new(process: PipedProcess) -> DialledAgent {
        DialledAgent {
            io: tokio::io::join(process.stdout, process.stdin),
            _stderr: process.stderr,
            _exit: process.exit,
        }
    }
}

impl tokio::io::AsyncRead for DialledAgent {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for DialledAgent {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
