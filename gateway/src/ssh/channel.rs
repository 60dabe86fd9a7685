//! Turns an SSH session channel into the neutral [`CommandIo`] that commands use, and ends the
//! channel the way OpenSSH's sshd does: data, then `exit-status`, then EOF, then CLOSE.
//!
//! The channel's read half is drained by its own task at all times: russh stalls the whole
//! connection when any held channel stops being read (head-of-line blocking), so input that
//! nobody wants is discarded rather than left to pile up.

use bytes::Bytes;
use hostctl::api::TermSize;
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{CommandIo, Terminal};

/// What the client asked for with `pty-req`.
#[derive(Clone, Debug)]
pub struct PtyRequest {
    pub term: String,
    pub size: TermSize,
}

/// Clamps an SSH window size (u32, possibly 0) to a usable terminal size.
pub fn term_size(cols: u32, rows: u32) -> TermSize {
    let clamp = |v: u32, default: u16| {
        if v == 0 {
            default
        } else {
            u16::try_from(v).unwrap_or(u16::MAX)
        }
    };
    TermSize {
        cols: clamp(cols, 80),
        rows: clamp(rows, 24),
    }
}

/// Splits the channel: a task reads it (stdin, EOF, window changes, close), and the returned
/// [`CommandIo`] writes stdout/stderr through the window-aware write half.
pub fn command_io(
    channel: Channel<Msg>,
    pty: Option<PtyRequest>,
    tasks: &TaskTracker,
) -> (CommandIo, ChannelWriteHalf<Msg>) {
    let (mut reader, writer) = channel.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let initial = pty.as_ref().map(|p| p.size).unwrap_or_default();
    let (size_tx, size_rx) = watch::channel(initial);
    let closed = CancellationToken::new();
    let closed_by_reader = closed.clone();
    tasks.spawn(async move {
        let mut stdin = Some(stdin_tx);
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(tx) = &stdin {
                        // A command that does not read stdin closed its end: drop the data.
                        if tx.send(data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                ChannelMsg::Eof => stdin = None,
                ChannelMsg::WindowChange {
                    col_width,
                    row_height,
                    ..
                } => {
                    size_tx.send_replace(term_size(col_width, row_height));
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        closed_by_reader.cancel();
    });
    let io = CommandIo {
        stdin: stdin_rx,
        stdout: Box::pin(writer.make_writer()),
        stderr: Box::pin(writer.make_writer_ext(Some(1))),
        terminal: pty.map(|p| Terminal {
            term: p.term,
            size: size_rx,
        }),
        closed,
    };
    (io, writer)
}

/// Sends the exit status and closes the channel, after everything written so far.
pub async fn finish(mut io: CommandIo, writer: ChannelWriteHalf<Msg>, status: u32) {
    io.flush().await;
    drop(io);
    let _ = writer.exit_status(status).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
}
