//! Turns an SSH session channel into the neutral [`CommandIo`] that commands use, and ends the
//! channel the way OpenSSH's sshd does: data, then `exit-status` (or `exit-signal`), then EOF,
//! then CLOSE.
//!
//! The channel's read half is drained by its own task at all times: russh stalls the whole
//! connection when any held channel stops being read (head-of-line blocking), so input that
//! nobody wants is discarded rather than left to pile up.

use bytes::Bytes;
use hostctl::api::TermSize;
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Sig};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{CommandIo, Terminal};
use crate::hosts::ProcessExit;

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

/// Splits the channel: a task reads it (stdin, EOF, window changes, signals, close), and the
/// returned [`CommandIo`] writes stdout/stderr through the window-aware write half.
pub fn command_io(
    channel: Channel<Msg>,
    pty: Option<PtyRequest>,
    tasks: &TaskTracker,
) -> (CommandIo, ChannelWriteHalf<Msg>) {
    let (mut reader, writer) = channel.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(64);
    let initial = pty.as_ref().map(|p| p.size).unwrap_or_default();
    let (size_tx, size_rx) = watch::channel(initial);
    let (signal_tx, signal_rx) = mpsc::channel::<String>(8);
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
                ChannelMsg::Signal { signal } => {
                    let _ = signal_tx.try_send(signal_name(&signal));
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
        signals: signal_rx,
    };
    (io, writer)
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

/// The SSH name of a signal (RFC 4254 §6.10: the name without `SIG`).
pub fn signal_name(sig: &Sig) -> String {
    match sig {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => name.clone(),
    }
}

/// The SSH signal for a Unix signal number.
fn ssh_signal(number: i32) -> Sig {
    use nix::sys::signal::Signal;
    match Signal::try_from(number) {
        Ok(Signal::SIGABRT) => Sig::ABRT,
        Ok(Signal::SIGALRM) => Sig::ALRM,
        Ok(Signal::SIGFPE) => Sig::FPE,
        Ok(Signal::SIGHUP) => Sig::HUP,
        Ok(Signal::SIGILL) => Sig::ILL,
        Ok(Signal::SIGINT) => Sig::INT,
        Ok(Signal::SIGKILL) => Sig::KILL,
        Ok(Signal::SIGPIPE) => Sig::PIPE,
        Ok(Signal::SIGQUIT) => Sig::QUIT,
        Ok(Signal::SIGSEGV) => Sig::SEGV,
        Ok(Signal::SIGTERM) => Sig::TERM,
        Ok(Signal::SIGUSR1) => Sig::USR1,
        Ok(other) => Sig::Custom(other.as_str().trim_start_matches("SIG").to_owned()),
        Err(_) => Sig::Custom(number.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_both_ways() {
        assert_eq!(signal_name(&ssh_signal(15)), "TERM");
        assert_eq!(signal_name(&ssh_signal(9)), "KILL");
        assert_eq!(signal_name(&ssh_signal(10)), "USR1");
        assert_eq!(signal_name(&ssh_signal(12)), "USR2");
    }

    #[test]
    fn zero_sizes_become_usable() {
        assert_eq!(term_size(0, 0), TermSize { cols: 80, rows: 24 });
        assert_eq!(
            term_size(100_000, 30),
            TermSize {
                cols: u16::MAX,
                rows: 30
            }
        );
    }
}
