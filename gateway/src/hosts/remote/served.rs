//! hostctl calls through one `hostctl serve` per host ([`hostctl::serve`]): a session channel
//! that stays open, so that a call costs the host one hostctl process, not a new SSH session
//! and a run of its user's shell start-up files. Calls go side by side, matched to their
//! replies by ID.
//!
//! A serve that cannot start (a hostctl from before serve, a host that is down) leaves the
//! calls to exec channels for a while; one that ends fails the calls under way as lost, like
//! an exec channel that closes without an exit status.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hostctl::api::{ServeReply, ServeRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use crate::hosts::{BoxWrite, PipedProcess, ProcessExit};

/// The longest reply line: an answer of at most `max_reply` bytes, escaped as a JSON string
/// (at most 6 bytes for one), and its stderr.
fn max_line(max_reply: usize) -> u64 {
    u64::try_from(max_reply.saturating_mul(12)).unwrap_or(u64::MAX)
}

/// One running `hostctl serve`.
pub struct Served {
    /// Whole request lines, written in order by a task of their own: a caller that gives up
    /// half-way never leaves half a line behind.
    requests: mpsc::UnboundedSender<Vec<u8>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<ServeReply>>>,
    next: AtomicU64,
    /// Cancelled when serve ended (or must end): its calls can no longer be answered.
    ended: CancellationToken,
}

/// How a call went: as it would have over an exec channel.
pub type Outcome = (ProcessExit, Vec<u8>, Vec<u8>);

impl Served {
    /// Takes over a `hostctl serve` process just started: its replies are read on a task of
    /// `tasks` until it ends, `cut` is cancelled, or a reply is longer than `max_reply` allows.
    /// Once `stop` is cancelled it takes no more calls: its stdin is closed, and it ends when
    /// the calls under way have.
    pub fn start(
        process: PipedProcess,
        tasks: &TaskTracker,
        stop: &CancellationToken,
        cut: &CancellationToken,
        max_reply: usize,
    ) -> Arc<Served> {
        let PipedProcess {
            stdin,
            stdout,
            mut stderr,
            exit,
            ..
        } = process;
        let (requests, lines) = mpsc::unbounded_channel();
        let served = Arc::new(Served {
            requests,
            pending: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            ended: CancellationToken::new(),
        });
        tasks.spawn(write_requests(stdin, lines, served.clone(), stop.clone()));
        let reading = served.clone();
        let cut = cut.clone();
        tasks.spawn(async move {
            // Holding `exit` holds the channel open; dropping it at the end closes it.
            let _exit = exit;
            let mut stdout = tokio::io::BufReader::new(stdout);
            let mut line = Vec::new();
            let limit = max_line(max_reply);
            loop {
                line.clear();
                let mut bounded = (&mut stdout).take(limit + 1);
                let read = tokio::select! {
                    read = bounded.read_until(b'\n', &mut line) => read,
                    () = reading.ended.cancelled() => break,
                    () = cut.cancelled() => break,
                };
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.len() as u64 > limit => {
                        debug!("hostctl serve sent a reply over the limit; closing it");
                        break;
                    }
                    Ok(_) => reading.answer(&line),
                }
                // A large answer's buffer is not kept for the life of the serve.
                if line.capacity() > 1024 * 1024 {
                    line = Vec::new();
                }
            }
            reading.end();
        });
        // stderr is read as it comes (a channel with unread output would stall its
        // connection); what serve says there (nothing, when all is well) is for the debug log.
        tasks.spawn(async move {
            let mut said = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let room = 4096usize.saturating_sub(said.len()).min(n);
                said.extend_from_slice(&buf[..room]);
            }
            if !said.is_empty() {
                debug!(stderr = %String::from_utf8_lossy(&said), "hostctl serve said");
            }
        });
        served
    }

    fn answer(&self, line: &[u8]) {
        let Ok(reply) = serde_json::from_slice::<ServeReply>(line) else {
            debug!(line = %String::from_utf8_lossy(line), "hostctl serve sent something else than a reply");
            return;
        };
        let waiting = self
            .pending
            .lock()
            .ok()
            .and_then(|mut p| p.remove(&reply.id));
        if let Some(tx) = waiting {
            let _ = tx.send(reply);
        }
    }

    /// No more calls: those under way are lost, and serve's channel is closed.
    pub fn end(&self) {
        self.ended.cancel();
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Runs `hostctl ARGS` through serve. None if the request could not be sent (serve had
    /// ended): nothing ran, the caller may run it another way. A request sent to a serve that
    /// ends before answering is lost, as on an exec channel whose connection dies.
    pub async fn call(&self, args: &[&str], stdin: Option<&str>) -> Option<Outcome> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let request = ServeRequest {
            id,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            stdin: stdin.map(str::to_owned),
        };
        let mut line = serde_json::to_vec(&request).ok()?;
        line.push(b'\n');
        // Longer than serve takes (a request of escaped text can be): over an exec channel.
        if line.len() > hostctl::serve::MAX_REQUEST {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().ok()?.insert(id, tx);
        if self.is_ended() || self.requests.send(line).is_err() {
            if let Ok(mut pending) = self.pending.lock() {
                pending.remove(&id);
            }
            return None;
        }
        // Dropped unanswered (the caller gave up): its reply, if one comes, finds no one.
        let forget = Forget { served: self, id };
        let outcome = match rx.await {
            Ok(reply) => {
                let exit = match (reply.code, reply.signal) {
                    (Some(code), _) => ProcessExit::Code(code),
                    (None, Some(signal)) => ProcessExit::Signal {
                        signal,
                        core_dumped: false,
                    },
                    (None, None) => ProcessExit::Unknown,
                };
                (exit, reply.stdout.into_bytes(), reply.stderr.into_bytes())
            }
            Err(_) => (ProcessExit::Lost, Vec::new(), Vec::new()),
        };
        drop(forget);
        Some(outcome)
    }
}

/// Writes the request lines to serve's stdin until serve ends.
async fn write_requests(
    mut stdin: BoxWrite,
    mut lines: mpsc::UnboundedReceiver<Vec<u8>>,
    served: Arc<Served>,
    stop: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            () = served.ended.cancelled() => None,
            () = stop.cancelled() => {
                // No more calls: serve finishes those under way, then ends.
                let _ = stdin.shutdown().await;
                None
            }
        };
        let Some(line) = line else { break };
        if stdin.write_all(&line).await.is_err() || stdin.flush().await.is_err() {
            served.end();
            break;
        }
    }
}

struct Forget<'a> {
    served: &'a Served,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.served.pending.lock() {
            pending.remove(&self.id);
        }
    }
}
