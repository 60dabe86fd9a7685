//! Moving bytes between a client's streams ([`CommandIo`]) and a process on a host: a
//! terminal (attach, `ssh -t NAME@gw CMD`) or pipes (exec, the no-terminal shell, SFTP).
//!
//! Reads are 32 KiB at a time and every write waits for the client's SSH window, so a large
//! stream flows under backpressure and is never held whole in memory.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::hosts::{BoxRead, PipedProcess, ProcessExit, TerminalProcess};
use crate::streams::CommandIo;

const CHUNK: usize = 32 * 1024;

/// Copies `from` to `to` until `from` ends or `to` fails; flushes after every chunk, since
/// the chunk may be a keystroke's echo that someone is waiting for.
async fn pump(mut from: BoxRead, to: &mut std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// How long a terminal session whose client went away waits for its process to end.
const GONE_CLIENT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a terminal session to its end. Returns `None` when the client went away first (the
/// process is then ended: it is a viewer such as `tmux attach`, or a command on a terminal
/// that would get SIGHUP from a real one). `on_input` is called with each chunk the client
/// sends.
pub async fn terminal(
    io: &mut CommandIo,
    mut process: TerminalProcess,
    on_input: impl Fn(&[u8]) + Send,
) -> Option<ProcessExit> {
    let input = process.input.clone();
    let mut size = io.terminal.as_ref().map(|t| t.size.clone());
    let CommandIo {
        stdin,
        stdout,
        closed,
        signals,
        ..
    } = io;
    let output = std::mem::replace(&mut process.output, Box::pin(tokio::io::empty()));
    let pump_output = pump(output, stdout);
    let pump_input = async {
        loop {
            tokio::select! {
                chunk = stdin.recv() => match chunk {
                    Some(bytes) => {
                        on_input(&bytes);
                        if !input.data(bytes).await {
                            break;
                        }
                    }
                    None => break,
                },
                changed = async {
                    match size.as_mut() {
                        Some(rx) => rx.changed().await.map(|()| *rx.borrow_and_update()),
                        None => std::future::pending().await,
                    }
                } => {
                    // Never waits: only the newest size is kept for the terminal.
                    let Ok(new_size) = changed else { break };
                    input.resize(new_size);
                }
                // A terminal turns ^C into SIGINT by itself; explicit signal requests are rare
                // here and the terminal's line discipline is the better path for them.
                _ = signals.recv() => {}
            }
        }
    };
    let client_gone = {
        tokio::pin!(pump_output, pump_input);
        let mut input_open = true;
        loop {
            tokio::select! {
                () = &mut pump_output => break false,
                () = &mut pump_input, if input_open => input_open = false,
                () = closed.cancelled() => break true,
            }
        }
    };
    if client_gone {
        process.kill.cancel();
        drop(input);
        // How the process ended is not wanted once the client has gone, and may never be
        // told: once the gateway has closed a remote host's channel, its reader has been seen
        // to wait for ever (the host's tmux client gone, no close delivered), which left the
        // session, and its audit record, open. The wait only gives the process time to go.
        let _ = tokio::time::timeout(GONE_CLIENT_GRACE, process.exit).await;
        return None;
    }
    drop(input);
    Some(process.exit.await)
}

/// Runs a piped session to its end: stdin to the process (EOF when the client sends EOF),
/// stdout and stderr back separately, signals delivered; returns how the process ended.
/// Like sshd, the session lasts until the process has exited and its output pipes are closed.
pub async fn piped(io: &mut CommandIo, process: PipedProcess) -> Option<ProcessExit> {
    let PipedProcess {
        mut stdin,
        stdout,
        stderr,
        exit,
        signal,
    } = process;
    let CommandIo {
        stdin: client_stdin,
        stdout: client_stdout,
        stderr: client_stderr,
        closed,
        signals,
        ..
    } = io;
    let feed = async {
        loop {
            tokio::select! {
                chunk = client_stdin.recv() => match chunk {
                    Some(bytes) => {
                        if stdin.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                Some(name) = signals.recv() => signal(&name),
            }
        }
        // The process's EOF: a shutdown (a channel to a remote host sends EOF then; a local
        // pipe closes when dropped).
        let _ = stdin.shutdown().await;
        drop(stdin);
        // Signals still reach the process after its stdin has ended.
        while let Some(name) = signals.recv().await {
            signal(&name);
        }
    };
    let drain = async {
        tokio::join!(pump(stdout, client_stdout), pump(stderr, client_stderr));
        exit.await
    };
    tokio::pin!(feed, drain);
    let mut feeding = true;
    loop {
        tokio::select! {
            exit = &mut drain => return Some(exit),
            () = &mut feed, if feeding => feeding = false,
            () = closed.cancelled() => return None,
        }
    }
}
