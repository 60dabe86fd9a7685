//! The streams a command talks to: the client's stdin, stdout and stderr, its terminal if it
//! asked for one, and a token that fires when the client goes away. The SSH layer builds one
//! from a channel; commands never see russh.

use std::pin::Pin;

use bytes::Bytes;
use hostctl::api::TermSize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The client's terminal (an SSH `pty-req`).
#[derive(Debug)]
pub struct Terminal {
    pub term: String,
    /// The current size; changes when the client's window does.
    pub size: watch::Receiver<TermSize>,
}

pub struct CommandIo {
    /// What the client sends; the channel ends at the client's EOF.
    pub stdin: mpsc::Receiver<Bytes>,
    pub stdout: Pin<Box<dyn AsyncWrite + Send>>,
    pub stderr: Pin<Box<dyn AsyncWrite + Send>>,
    pub terminal: Option<Terminal>,
    /// Cancelled when the client's channel closes.
    pub closed: CancellationToken,
    /// Signals the client asks to deliver (`INT`, `TERM`, ...), by their SSH names.
    pub signals: mpsc::Receiver<String>,
}

impl CommandIo {
    /// Writes text to stdout. A client that went away is not an error worth reporting.
    pub async fn write_out(&mut self, text: &str) {
        let text = self.for_terminal(text);
        let _ = self.stdout.write_all(text.as_bytes()).await;
    }

    pub async fn write_err(&mut self, text: &str) {
        let text = self.for_terminal(text);
        let _ = self.stderr.write_all(text.as_bytes()).await;
    }

    /// On a terminal the client's tty is raw: a bare `\n` would not return the carriage.
    fn for_terminal(&self, text: &str) -> String {
        if self.terminal.is_some() {
            text.replace('\n', "\r\n")
        } else {
            text.to_owned()
        }
    }

    pub async fn flush(&mut self) {
        let _ = self.stdout.flush().await;
        let _ = self.stderr.flush().await;
    }

    /// Reads stdin to its end (for `send NAME -` and `create --prompt -`), at most `limit` bytes.
    pub async fn read_stdin(&mut self, limit: usize) -> Result<Vec<u8>, String> {
        let mut all = Vec::new();
        loop {
            tokio::select! {
                chunk = self.stdin.recv() => match chunk {
                    Some(bytes) => {
                        all.extend_from_slice(&bytes);
                        if all.len() > limit {
                            return Err(format!("stdin is larger than {limit} bytes"));
                        }
                    }
                    None => return Ok(all),
                },
                () = self.closed.cancelled() => return Ok(all),
            }
        }
    }
}
