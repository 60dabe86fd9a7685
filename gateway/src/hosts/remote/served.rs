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
    /// Cancelled when serve is to take no more calls: its stdin is closed, and it ends once
    /// the calls under way have.
    retired: CancellationToken,
    started: std::time::Instant,
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
            retired: stop.child_token(),
            started: std::time::Instant::now(),
        });
        tasks.spawn(write_requests(stdin, lines, served.clone()));
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

    /// Whether it still takes calls.
    pub fn is_open(&self) -> bool {
        !self.ended.is_cancelled() && !self.retired.is_cancelled()
    }

    /// Takes no more calls; ends once those under way have.
    pub fn retire(&self) {
        self.retired.cancel();
    }

    /// How long it has run.
    pub fn age(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// Runs `hostctl ARGS` (a call's words) through serve. None if the request could not be sent (serve had
    /// ended): nothing ran, the caller may run it another way. A request sent to a serve that
    /// ends before answering is lost, as on an exec channel whose connection dies.
    pub async fn call(&self, args: &[String], stdin: Option<&str>) -> Option<Outcome> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let request = ServeRequest {
            id,
            args: args.to_vec(),
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
        if !self.is_open() || self.requests.send(line).is_err() {
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
) {
    loop {
        let line = tokio::select! {
            // Lines already queued go first: their callers wait for answers.
            biased;
            line = lines.recv() => line,
            () = served.ended.cancelled() => None,
            () = served.retired.cancelled() => {
                // No more calls: serve finishes those under way, then ends.
                let _ = stdin.shutdown().await;
                None
            }
        };
        let Some(line) = line else { break };
        // A write waiting for the host's window would wait for ever once the connection is
        // gone: serve's end (its channel closed) stops it.
        let written = tokio::select! {
            written = async { stdin.write_all(&line).await?; stdin.flush().await } => written.is_ok(),
            () = served.ended.cancelled() => false,
        };
        if !written {
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

#[cfg(test)]
mod tests {
    use super::*;
    use hostctl::api::Call;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    fn info(name: &str) -> Vec<String> {
        Call::Info {
            name: name.to_owned(),
        }
        .argv()
    }

    fn list() -> Vec<String> {
        Call::List {
            screens_after: None,
        }
        .argv()
    }

    /// A `Served` over in-memory pipes, and the serve side of them: the requests it reads,
    /// and a writer for its replies.
    fn pipes() -> (
        Arc<Served>,
        tokio::io::Lines<BufReader<tokio::io::DuplexStream>>,
        tokio::io::DuplexStream,
        CancellationToken,
    ) {
        let (stdin, serve_in) = tokio::io::duplex(1 << 16);
        let (serve_out, stdout) = tokio::io::duplex(1 << 16);
        let (_serve_err, stderr) = tokio::io::duplex(64);
        let process = PipedProcess {
            stdin: Box::pin(stdin),
            stdout: Box::pin(stdout),
            stderr: Box::pin(stderr),
            exit: Box::pin(async { ProcessExit::Code(0) }),
            signal: Box::new(|_| {}),
        };
        let stop = CancellationToken::new();
        let served = Served::start(process, &TaskTracker::new(), &stop, &stop, 1 << 20);
        (served, BufReader::new(serve_in).lines(), serve_out, stop)
    }

    async fn reply(out: &mut tokio::io::DuplexStream, id: u64, code: i32, stdout: &str) {
        let reply = ServeReply {
            id,
            code: Some(code),
            stdout: stdout.to_owned(),
            ..ServeReply::default()
        };
        let mut line = serde_json::to_vec(&reply).expect("json");
        line.push(b'\n');
        out.write_all(&line).await.expect("write");
    }

    #[tokio::test]
    async fn replies_find_their_calls_in_any_order_and_a_retired_serve_takes_no_more() {
        let (served, mut requests, mut out, _stop) = pipes();
        let first = tokio::spawn({
            let served = served.clone();
            async move { served.call(&list(), None).await }
        });
        let second = tokio::spawn({
            let served = served.clone();
            async move { served.call(&info("w"), Some("{}")).await }
        });
        let mut seen = Vec::new();
        for _ in 0..2 {
            let line = requests
                .next_line()
                .await
                .expect("read")
                .expect("a request");
            seen.push(serde_json::from_str::<ServeRequest>(&line).expect("a request line"));
        }
        seen.sort_by_key(|r| r.id);
        // Answered in the other order.
        for r in seen.iter().rev() {
            reply(&mut out, r.id, 0, &r.args.join(" ")).await;
        }
        let (exit, stdout, _) = first.await.expect("join").expect("sent");
        assert_eq!(
            (exit, stdout),
            (ProcessExit::Code(0), b"list --json".to_vec())
        );
        let (_, stdout, _) = second.await.expect("join").expect("sent");
        assert_eq!(stdout, b"info w --json".to_vec());
        assert_eq!(
            seen[1].stdin.as_deref().or(seen[0].stdin.as_deref()),
            Some("{}")
        );

        // A caller that gives up leaves nothing behind: the next call is answered.
        let given_up = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            served.call(&Call::Version.argv(), None),
        )
        .await;
        assert!(given_up.is_err());
        let late = requests
            .next_line()
            .await
            .expect("read")
            .expect("a request");
        let late: ServeRequest = serde_json::from_str(&late).expect("whole");
        reply(&mut out, late.id, 0, "late").await;
        let next = tokio::spawn({
            let served = served.clone();
            async move { served.call(&Call::Version.argv(), None).await }
        });
        let line = requests
            .next_line()
            .await
            .expect("read")
            .expect("a request");
        let request: ServeRequest = serde_json::from_str(&line).expect("whole");
        reply(&mut out, request.id, 3, "next").await;
        let (exit, stdout, _) = next.await.expect("join").expect("sent");
        assert_eq!((exit, stdout), (ProcessExit::Code(3), b"next".to_vec()));

        // Retired: no more calls (their callers use exec), its stdin is closed, and once its
        // output ends it has ended.
        served.retire();
        assert!(!served.is_open());
        let refused = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            served.call(&list(), None),
        )
        .await
        .expect("refused at once");
        assert!(refused.is_none());
        let closed = tokio::time::timeout(std::time::Duration::from_secs(5), requests.next_line())
            .await
            .expect("stdin closed in time");
        assert_eq!(closed.expect("read"), None, "stdin closed");
        drop(out);
        tokio::time::timeout(std::time::Duration::from_secs(5), served.ended.cancelled())
            .await
            .expect("ended at the end of its output");
    }

    #[tokio::test]
    async fn a_serve_that_ends_loses_the_calls_under_way() {
        let (served, mut requests, out, _stop) = pipes();
        let call = tokio::spawn({
            let served = served.clone();
            async move { served.call(&["create".to_owned()], Some("{}")).await }
        });
        requests
            .next_line()
            .await
            .expect("read")
            .expect("a request");
        drop(out);
        let (exit, _, _) = call.await.expect("join").expect("sent");
        assert_eq!(exit, ProcessExit::Lost);
        assert!(served.is_ended());
    }
}
