//! Turns an SSH session channel into the neutral [`CommandIo`] that commands use, and ends the
//! channel the way OpenSSH's sshd does: data, then `exit-status` (or `exit-signal`), then EOF,
//! then CLOSE.
//!
//! The channel's read half is drained by its own task at all times, from the moment the
//! channel opens: russh queues everything a client sends on a channel (data and every request,
//! `env` and `window-change` included) in a per-channel queue of 100 and stalls the whole
//! connection when any held channel's queue is full (head-of-line blocking), so input that
//! nobody wants is discarded rather than left to pile up.

use std::sync::Arc;

use hostctl::api::TermSize;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{SessionEnv, term_size};
use crate::hosts::ProcessExit;
use crate::streams::signals::{signal_name, ssh_signal};
use crate::streams::{Backlog, Inbound};
use crate::streams::{CommandIo, Terminal};

/// A session channel between `channel-open` and the request that starts it. It is read from
/// the start (see [`OpenChannel`]), so no number of requests before that can stall the
/// connection. (`C` is the open channel; the session's tests hold a stand-in.)
pub struct PendingChannel<C = OpenChannel> {
    pub channel: C,
    pub pty: Option<PtyRequest>,
    /// The environment: the gateway's variables and the accepted `env` requests, bounded.
    pub env: SessionEnv,
    /// Written on the session's stderr before anything else: why a request the client made on
    /// the channel, which its ssh does not report, was refused (`auth-agent-req@openssh.com`).
    pub notice: Option<String>,
    /// Whether the channel asked for agent forwarding (`ssh -A`) and was granted it: its
    /// session gets the connection's forwarded agent (`super::session`).
    pub forwards_agent: bool,
}

/// What the client asked for with `pty-req` (its size is in [`OpenChannel`]).
#[derive(Clone, Debug)]
pub struct PtyRequest {
    pub term: String,
}

/// What a channel's reader task delivers.
pub struct ChannelInput {
    pub data: Inbound,
    pub size: watch::Receiver<TermSize>,
    pub signals: mpsc::Receiver<String>,
    /// Cancelled when the client closes the channel.
    pub closed: CancellationToken,
}

/// A channel whose read half is drained by its own task from the moment it is opened, so
/// that nothing a client sends before (or instead of) the request that starts it can fill
/// russh's per-channel queue and stall the connection.
pub struct OpenChannel {
    pub writer: ChannelWriteHalf<Msg>,
    pub input: ChannelInput,
    /// The terminal's size: set by `pty-req` (in the handler), changed by `window-change`
    /// (in the reader task), always within [`super::limits`].
    size: Arc<watch::Sender<TermSize>>,
}

impl OpenChannel {
    /// Splits `channel` and starts its reader task.
    pub fn open(channel: Channel<Msg>, backlog: &Backlog, tasks: &TaskTracker) -> OpenChannel {
        let (reader, writer) = channel.split();
        let size = Arc::new(watch::Sender::new(TermSize::default()));
        let input = spawn_reader(reader, size.clone(), backlog, tasks);
        OpenChannel {
            writer,
            input,
            size,
        }
    }
}

/// A channel whose terminal size a `pty-req` sets (`super::session` decides it; its tests hold
/// a stand-in).
pub trait Resize {
    fn set_size(&self, size: TermSize);
}

impl Resize for OpenChannel {
    /// Sets the terminal's size (a `pty-req`, whose size is already clamped).
    fn set_size(&self, new: TermSize) {
        set_size(&self.size, new);
    }
}

/// Sets `size` to `new`; readers are woken only by a real change, and only the newest size is
/// kept: however many window changes a client sends, one resize at most is waiting.
fn set_size(size: &watch::Sender<TermSize>, new: TermSize) {
    size.send_if_modified(|current| {
        let changed = *current != new;
        *current = new;
        changed
    });
}

/// Reads a channel until it closes: data into an [`Inbound`] buffer (ended by the client's
/// EOF), window changes (clamped), signals, and the close itself. Requests are answered by the
/// handler's callbacks; their copies here are dropped.
fn spawn_reader(
    mut reader: ChannelReadHalf,
    size: Arc<watch::Sender<TermSize>>,
    backlog: &Backlog,
    tasks: &TaskTracker,
) -> ChannelInput {
    let (data_tx, data) = Inbound::channel(backlog);
    let size_rx = size.subscribe();
    let (signal_tx, signals) = mpsc::channel::<String>(8);
    let closed = CancellationToken::new();
    let closed_by_reader = closed.clone();
    tasks.spawn(async move {
        let mut data_tx = Some(data_tx);
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(tx) = &data_tx {
                        // A consumer that went away (a command that does not read stdin)
                        // closed its end: the data is dropped.
                        if !tx.send(data).await {
                            data_tx = None;
                        }
                    }
                }
                ChannelMsg::Eof => data_tx = None,
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    ..
                } => set_size(&size, term_size(col_width, row_height)),
                ChannelMsg::Signal { signal } => {
                    // At most 8 wait; a flood of signals loses the excess, never blocks.
                    let _ = signal_tx.try_send(signal_name(&signal));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        closed_by_reader.cancel();
    });
    ChannelInput {
        data,
        size: size_rx,
        signals,
        closed,
    }
}

/// The [`CommandIo`] of an open channel: stdin from its reader task, stdout/stderr through the
/// window-aware write half. The writer is returned to end the channel with.
pub fn command_io(
    channel: OpenChannel,
    pty: Option<PtyRequest>,
) -> (CommandIo, ChannelWriteHalf<Msg>) {
    let OpenChannel {
        writer, mut input, ..
    } = channel;
    // The size the session starts with is the one it is opened at, not a change.
    input.size.borrow_and_update();
    let io = CommandIo {
        stdin: input.data,
        stdout: Box::pin(writer.make_writer()),
        stderr: Box::pin(writer.make_writer_ext(Some(1))),
        terminal: pty.map(|p| Terminal {
            term: p.term,
            size: input.size,
        }),
        closed: input.closed,
        signals: input.signals,
    };
    (io, writer)
}

/// Splices a channel and a byte stream both ways until both directions have ended; an end
/// of one direction is passed on as a half-close (EOF), like OpenSSH does for forwards.
pub async fn splice(channel: OpenChannel, upstream: Box<dyn crate::hosts::Duplex>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let OpenChannel { writer, input, .. } = channel;
    let ChannelInput {
        mut data, closed, ..
    } = input;
    let (mut up_read, mut up_write) = tokio::io::split(upstream);
    // Runs until the client's data ends, including what arrived before its CLOSE: a client
    // whose own side ended sends its last data, EOF and CLOSE at once, and that data is still
    // owed to the stream.
    let to_upstream = async {
        while let Some(bytes) = data.recv().await {
            if up_write.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    let to_client = async {
        let mut out = writer.make_writer();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).await.is_err() || out.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = writer.eof().await;
    };
    // Once the client closed the channel nothing more can reach it: the stream's side stops.
    let to_client = async {
        tokio::select! {
            () = to_client => {}
            () = closed.cancelled() => {}
        }
    };
    tokio::join!(to_upstream, to_client);
    let _ = writer.close().await;
}

/// Sends the exit status and closes the channel, after everything written so far.
pub async fn finish(io: CommandIo, writer: ChannelWriteHalf<Msg>, status: u32) {
    finish_process(
        io,
        writer,
        None,
        Some(ProcessExit::Code(i32::try_from(status).unwrap_or(1))),
    )
    .await;
}

/// Ends a channel with how its process ended: `exit-status`, or `exit-signal` (which needs the
/// session's handle), then EOF and CLOSE. `None`: the client is gone; only close.
pub async fn finish_process(
    mut io: CommandIo,
    writer: ChannelWriteHalf<Msg>,
    handle: Option<&Handle>,
    exit: Option<ProcessExit>,
) {
    io.flush().await;
    drop(io);
    match exit {
        Some(ProcessExit::Signal {
            signal,
            core_dumped,
        }) => match handle {
            Some(handle) => {
                let _ = handle
                    .exit_signal_request(
                        writer.id(),
                        ssh_signal(signal),
                        core_dumped,
                        String::new(),
                        String::new(),
                    )
                    .await;
            }
            None => {
                let _ = writer
                    .exit_status(
                        ProcessExit::Signal {
                            signal,
                            core_dumped,
                        }
                        .shell_status(),
                    )
                    .await;
            }
        },
        Some(other) => {
            let _ = writer.exit_status(other.shell_status()).await;
        }
        None => {}
    }
    let _ = writer.eof().await;
    let _ = writer.close().await;
}
