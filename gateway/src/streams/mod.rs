//! The streams a command talks to: the client's stdin, stdout and stderr, its terminal if it
//! asked for one, and a token that fires when the client goes away. The SSH layer builds one
//! from a channel; commands never see russh. Below every route and the hosts: the bounded
//! inbox ([`Inbound`]) also carries what a host's process sends, and [`signals`] the names of
//! the signals both sides exchange.

pub mod signals;

use std::pin::Pin;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use hostctl::api::TermSize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The client's terminal (an SSH `pty-req`).
#[derive(Debug)]
pub struct Terminal {
    pub term: String,
    /// The current size; changes when the client's window does.
    pub size: watch::Receiver<TermSize>,
}

/// Bytes the client sends on a channel, in order; `recv` returns `None` after the client's EOF.
///
/// russh advertises more window to the client as soon as data arrives, not when it has been
/// consumed, and it stalls every channel of a connection while one channel's reader is not
/// reading. A reader that waits for a slow consumer can therefore deadlock a channel whose
/// output waits for the client's window adjustments (they queue behind the client's data). So
/// the SSH layer's reader task never waits: it buffers here, counts what is buffered in the
/// connection's [`Backlog`] (which makes the connection advertise a tiny window until the
/// consumers catch up, see `ssh::handler`), and only waits once a single channel holds
/// [`INBOUND_BUDGET`] bytes, as a last resort against unbounded memory.
pub struct Inbound {
    rx: mpsc::UnboundedReceiver<Bytes>,
    budget: Arc<Semaphore>,
    backlog: Backlog,
}

/// Bytes received on a connection and not yet taken by their consumers.
#[derive(Clone, Debug, Default)]
pub struct Backlog(Arc<AtomicUsize>);

impl Backlog {
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The most bytes one channel buffers for a consumer that is behind.
pub const INBOUND_BUDGET: usize = 32 * 1024 * 1024;

/// The sending side of an [`Inbound`], for the SSH layer's reader task.
pub struct InboundSender {
    tx: mpsc::UnboundedSender<Bytes>,
    budget: Arc<Semaphore>,
    backlog: Backlog,
}

impl Inbound {
    pub fn channel(backlog: &Backlog) -> (InboundSender, Inbound) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Semaphore::new(INBOUND_BUDGET));
        (
            InboundSender {
                tx,
                budget: budget.clone(),
                backlog: backlog.clone(),
            },
            Inbound {
                rx,
                budget,
                backlog: backlog.clone(),
            },
        )
    }

    pub async fn recv(&mut self) -> Option<Bytes> {
        let bytes = self.rx.recv().await?;
        self.taken(bytes.len());
        Some(bytes)
    }

    fn taken(&self, len: usize) {
        self.budget.add_permits(len);
        self.backlog.0.fetch_sub(len, Ordering::Relaxed);
    }

    /// Stops receiving: what the client sends from now on is discarded.
    pub fn close(&mut self) {
        self.rx.close();
        self.budget.close();
        while let Ok(bytes) = self.rx.try_recv() {
            self.backlog.0.fetch_sub(bytes.len(), Ordering::Relaxed);
        }
    }
}

/// [`Inbound`] as a byte stream, for consumers that want `AsyncRead` (the host leg's pipes).
pub struct InboundReader {
    inbound: Inbound,
    pending: Bytes,
}

impl From<Inbound> for InboundReader {
    fn from(inbound: Inbound) -> InboundReader {
        InboundReader {
            inbound,
            pending: Bytes::new(),
        }
    }
}

impl tokio::io::AsyncRead for InboundReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let this = &mut *self;
        while this.pending.is_empty() {
            match this.inbound.rx.poll_recv(cx) {
                Poll::Ready(Some(bytes)) => {
                    this.inbound.taken(bytes.len());
                    this.pending = bytes;
                }
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = this.pending.len().min(buf.remaining());
        buf.put_slice(&this.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.close();
    }
}

impl InboundSender {
    /// Queues `bytes`; waits only while this channel's consumer is more than the budget
    /// behind. Returns false once the consumer has gone (the bytes are then discarded).
    pub async fn send(&self, bytes: Bytes) -> bool {
        let len = bytes.len();
        let want = u32::try_from(len).unwrap_or(u32::MAX);
        tokio::select! {
            permit = self.budget.acquire_many(want) => match permit {
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            },
            () = self.tx.closed() => return false,
        }
        self.backlog.0.fetch_add(len, Ordering::Relaxed);
        if self.tx.send(bytes).is_err() {
            self.backlog.0.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

pub struct CommandIo {
    /// What the client sends; ends at the client's EOF.
    pub stdin: Inbound,
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
                            return Err(format!(
                                "stdin is larger than {} KiB, the most this command takes",
                                limit / 1024
                            ));
                        }
                    }
                    None => return Ok(all),
                },
                () = self.closed.cancelled() => return Ok(all),
            }
        }
    }
}
