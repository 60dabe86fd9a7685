//! Remote hosts: any machine with sshd and tmux, reached over SSH with the gateway's own key.
//!
//! Every operation is a channel on the host's connection pool ([`leg`]): hostctl calls are
//! `'HOSTCTL' 'VERB' 'ARG'... '--json'` exec requests (the words of a [`Call`], each
//! shell-quoted, since sshd hands the string to the user's shell), or lines to the host's
//! `hostctl serve` ([`served`]); sessions are exec channels with or without a PTY;
//! forwards are `direct-tcpip` and `direct-streamlocal` channels. [`install`] sets a host up
//! (`host add`) and diagnoses it (`host check`).

pub mod diagnose;
pub mod enrol;
pub mod install;
pub mod leg;
pub mod pool;
pub mod served;
pub mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hostctl::api::{Call, TermSize};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use self::leg::{Forward, LegSettings, LinkId, Target};
use self::pool::{Lane, Patience, Pool};
use self::served::Served;
use super::{
    CallKind, Duplex, HostError, PipedProcess, ProcessExit, TerminalInput, TerminalProcess,
};
use crate::streams::InboundReader;

/// What the gateway needs to know to use a remote host.
#[derive(Clone, Debug)]
pub struct RemoteSpec {
    pub target: Target,
    pub host_key: russh::keys::PublicKey,
    /// hostctl's absolute path on the host.
    pub hostctl: String,
}

pub struct RemoteHost {
    name: String,
    hostctl: String,
    pool: Arc<Pool>,
    call_timeout: Duration,
    create_timeout: Duration,
    probe_timeout: Duration,
    tasks: TaskTracker,
    /// Whether calls go through `hostctl serve` (`hosts.serve`).
    serve: bool,
    /// The host's `hostctl serve`, which its calls go through once it runs.
    serve_state: Arc<ServeState>,
    /// Cancelled when the gateway stops accepting clients or the host is dropped: serve takes
    /// no more calls and ends once those under way have.
    stop: CancellationToken,
    /// Cancelled when the gateway's grace period is over: serve ends at once.
    cut: CancellationToken,
}

/// A host's `hostctl serve`: the one running, or one being started, or when the last start
/// failed.
#[derive(Default)]
struct ServeState {
    current: std::sync::Mutex<Option<Arc<Served>>>,
    /// The connection the current serve runs on.
    link: std::sync::Mutex<LinkId>,
    starting: std::sync::atomic::AtomicBool,
    failed_at: std::sync::Mutex<Option<Instant>>,
}

impl ServeState {
    /// The serve calls go through now, if one runs. One that has run for [`SERVE_RENEW`] is
    /// retired (it ends once its calls have), so that the next one reads the host user's
    /// environment again.
    fn current(&self) -> Option<Arc<Served>> {
        let current = self.current.lock().ok()?;
        let served = current.as_ref()?;
        if served.is_open() && served.age() >= SERVE_RENEW {
            served.retire();
        }
        served.is_open().then(|| served.clone())
    }

    fn failed_lately(&self) -> bool {
        self.failed_at
            .lock()
            .ok()
            .and_then(|at| *at)
            .is_some_and(|at| at.elapsed() < SERVE_RETRY)
    }

    /// The connection the current serve runs on.
    fn link(&self) -> LinkId {
        self.link.lock().map(|l| *l).unwrap_or_default()
    }

    /// A start is over: `started` is the new serve (and its connection), or none if it failed.
    fn settle(&self, started: Option<(Arc<Served>, LinkId)>) {
        if let Ok(mut failed_at) = self.failed_at.lock() {
            *failed_at = started.is_none().then(Instant::now);
        }
        let (started, link) = started.map_or((None, LinkId::default()), |(s, l)| (Some(s), l));
        if let Ok(mut current) = self.link.lock() {
            *current = link;
        }
        if let Ok(mut current) = self.current.lock() {
            *current = started;
        }
        self.starting
            .store(false, std::sync::atomic::Ordering::Release);
    }
}

/// How long one `hostctl serve` takes calls before another replaces it.
const SERVE_RENEW: Duration = Duration::from_secs(3600);

/// How long a new `hostctl serve` has to answer its first call (a slow shell start-up on the
/// host comes first).
const SERVE_START: Duration = Duration::from_secs(10);

/// Runs the command line `line` on an exec channel of `lane` with its standard streams as
/// pipes ([`RemoteHost::piped`]); also says which connection it runs on.
async fn open_piped(
    pool: &Pool,
    tasks: &TaskTracker,
    host: &str,
    line: &str,
    lane: Lane,
    patience: Patience,
) -> Result<(PipedProcess, LinkId), HostError> {
    let (channel, slot) = pool.open_session(lane, patience).await?;
    let link = slot.link();
    let (reader, writer) = channel.split();
    let output = leg::spawn_reader(reader, slot, tasks);
    writer
        .exec(true, line.as_bytes())
        .await
        .map_err(|e| HostError::Unreachable {
            host: host.to_owned(),
            reason: format!("cannot run hostctl: {e}"),
        })?;
    let writer = Arc::new(writer);
    let signaller = writer.clone();
    let signal_tasks = tasks.clone();
    // A channel's halves do not close it when dropped: the exit does, when it is done with
    // (awaited or abandoned), so that a host process whose client left is not left holding a
    // channel and a session slot.
    let close = CloseOnDrop {
        writer: writer.clone(),
        tasks: tasks.clone(),
    };
    Ok((
        PipedProcess {
            stdin: Box::pin(writer.make_writer()),
            stdout: Box::pin(InboundReader::from(output.stdout)),
            stderr: Box::pin(InboundReader::from(output.stderr)),
            exit: Box::pin(async move {
                let _close = close;
                output.exit.await.unwrap_or(ProcessExit::Lost)
            }),
            signal: Box::new(move |name| {
                let writer = signaller.clone();
                let sig = crate::streams::signals::sig_from_name(name);
                signal_tasks.spawn(async move {
                    let _ = writer.signal(sig).await;
                });
            }),
        },
        link,
    ))
}

impl Drop for RemoteHost {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// How long calls use exec channels after `hostctl serve` failed to start.
const SERVE_RETRY: Duration = Duration::from_secs(30);

impl std::fmt::Debug for RemoteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHost")
            .field("name", &self.name)
            .field("target", self.pool.target())
            .finish_non_exhaustive()
    }
}

/// The limits of calls to hosts, from the configuration.
#[derive(Clone, Debug)]
pub struct CallLimits {
    pub call: Duration,
    pub create: Duration,
    pub probe: Duration,
    /// Whether calls go through `hostctl serve`.
    pub serve: bool,
}

/// The most a hostctl call's answer may hold (answers are small JSON documents).
const MAX_REPLY: usize = 16 * 1024 * 1024;

impl RemoteHost {
    pub fn new(
        spec: RemoteSpec,
        settings: LegSettings,
        limits: &CallLimits,
        tasks: TaskTracker,
        stopping: &CancellationToken,
        cut: &CancellationToken,
    ) -> RemoteHost {
        RemoteHost {
            name: spec.target.name.clone(),
            hostctl: spec.hostctl,
            pool: Arc::new(Pool::new(spec.target, spec.host_key, settings)),
            call_timeout: limits.call,
            create_timeout: limits.create,
            probe_timeout: limits.probe,
            tasks,
            serve: limits.serve,
            serve_state: Arc::default(),
            stop: stopping.child_token(),
            cut: cut.child_token(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn target(&self) -> &Target {
        self.pool.target()
    }

    /// The command line that runs hostctl with `args` on the host, every word quoted.
    fn command_line(&self, args: &[String]) -> Result<String, HostError> {
        let line = quote_words(
            std::iter::once(self.hostctl.as_str()).chain(args.iter().map(String::as_str)),
        )
        .ok_or_else(|| HostError::Rejected {
            code: hostctl::api::ErrorCode::InvalidInput,
            message: "an argument holds a NUL byte".into(),
        })?;
        // sshd hands the line to the user's shell as one argument: past the system's limit
        // the host would refuse to run it (and the shell would say so on stderr, which reads
        // as the host failing).
        if line.len() > super::MAX_ARGUMENT {
            return Err(HostError::Rejected {
                code: hostctl::api::ErrorCode::InvalidInput,
                message: format!(
                    "the command is {} bytes once quoted for the shell of host '{}'; at most {} are accepted",
                    line.len(),
                    self.name,
                    super::MAX_ARGUMENT
                ),
            });
        }
        Ok(line)
    }

    /// Runs `call` on the host, feeding it its body if it has one, and decodes its answer.
    /// `limit`: the call's time limit.
    pub async fn call<T: DeserializeOwned>(
        &self,
        call: &Call,
        limit: CallKind,
    ) -> Result<T, HostError> {
        self.call_judged(call, limit).await.0
    }

    /// [`call`](Self::call), and the connections it went over: what its failure judges.
    pub async fn call_judged<T: DeserializeOwned>(
        &self,
        call: &Call,
        limit: CallKind,
    ) -> (Result<T, HostError>, Vec<LinkId>) {
        let judged = std::sync::Mutex::new(Vec::new());
        let went_over = |link: LinkId| {
            if let Ok(mut links) = judged.lock() {
                links.push(link);
            }
        };
        let result = self.call_over(call, limit, &went_over).await;
        (result, judged.into_inner().unwrap_or_default())
    }

    async fn call_over<T: DeserializeOwned>(
        &self,
        call: &Call,
        limit: CallKind,
        went_over: &(dyn Fn(LinkId) + Sync),
    ) -> Result<T, HostError> {
        let what = call.verb().to_owned();
        let (words, stdin) = super::answer_call(&self.name, call)?;
        let line = self.command_line(&words)?;
        let probe = matches!(limit, CallKind::Probe);
        let limit = match limit {
            CallKind::Normal => self.call_timeout,
            CallKind::Long => self.create_timeout,
            CallKind::Probe => self.probe_timeout,
        };
        let run = async {
            // Through serve when it runs (the words as they are: no shell reads them there);
            // over an exec channel of its own when it does not, or for a stdin that is not text.
            if let Ok(text) = stdin.as_deref().map(std::str::from_utf8).transpose()
                && let Some((served, link)) = self.served()
                && let Some(outcome) = {
                    went_over(link);
                    served.call(&words, text).await
                }
            {
                // Serve ended before answering: its connection may be lost, or only serve.
                // A question that changes nothing (`list`, `version`) is asked again over an
                // exec channel, which tells; any other call may have run, and is lost.
                if !(probe && outcome.0 == ProcessExit::Lost) {
                    return Ok(outcome);
                }
            }
            let patience = if probe {
                Patience::BackOff
            } else {
                Patience::Try
            };
            let (channel, slot) = self.pool.open_session(Lane::Control, patience).await?;
            went_over(slot.link());
            leg::exec_collect(
                channel,
                slot,
                &self.tasks,
                &line,
                stdin.as_deref(),
                MAX_REPLY,
            )
            .await
            .map_err(|e| self.unreachable(format!("cannot run hostctl: {e}")))
        };
        match tokio::time::timeout(limit, run).await {
            Ok(Ok((ProcessExit::Lost, _, _))) => {
                Err(self.unreachable("the connection was lost during the call".into()))
            }
            Ok(Ok((exit, out, err))) => super::decode_reply(&self.name, &what, exit, &out, &err),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // A call that does not finish may be a dead connection: check it, so that the
                // next call does not wait on it again. A question that changes nothing and
                // got no answer may be a stuck serve: the next calls start another.
                if probe && let Some(served) = self.serve_state.current() {
                    served.end();
                }
                self.pool.check_control().await;
                Err(HostError::Timeout {
                    host: self.name.clone(),
                    what,
                    seconds: limit.as_secs(),
                })
            }
        }
    }

    /// The host's running `hostctl serve`, if there is one. If there is none, one is started
    /// in the background (unless one is starting, or failed lately): calls do not wait for it,
    /// they use exec channels until it answers.
    fn served(&self) -> Option<(Arc<Served>, LinkId)> {
        if !self.serve || self.stop.is_cancelled() {
            return None;
        }
        if let Some(served) = self.serve_state.current() {
            return Some((served, self.serve_state.link()));
        }
        if !self.serve_state.failed_lately()
            && !self
                .serve_state
                .starting
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            self.start_serve();
        }
        None
    }

    /// Lets the running `hostctl serve` finish its calls and end; the next call starts another
    /// (after a hostctl upgrade, say: the new one serves).
    pub fn retire_serve(&self) {
        if let Some(served) = self.serve_state.current() {
            served.retire();
        }
    }

    /// Starts `hostctl serve` on a task of its own, and takes it for calls once it answers a
    /// `version` call (a hostctl from before serve ends at once, with a usage error).
    fn start_serve(&self) {
        let state = self.serve_state.clone();
        // Each call runs hostctl by the very path an exec channel would.
        let serve = Call::Serve {
            program: Some(self.hostctl.clone()),
        };
        let Ok(line) = self.command_line(&serve.argv()) else {
            state.settle(None);
            return;
        };
        let (pool, tasks, name) = (self.pool.clone(), self.tasks.clone(), self.name.clone());
        let (stop, cut) = (self.stop.clone(), self.cut.clone());
        self.tasks.spawn(async move {
            let opened = tokio::time::timeout(
                SERVE_START,
                open_piped(&pool, &tasks, &name, &line, Lane::Control, Patience::BackOff),
            )
            .await;
            let (process, link) = match opened {
                Ok(Ok(opened)) => opened,
                Ok(Err(e)) => {
                    debug!(host = name, error = %e, "cannot start hostctl serve");
                    state.settle(None);
                    return;
                }
                Err(_) => {
                    debug!(host = name, "hostctl serve did not start in time");
                    state.settle(None);
                    return;
                }
            };
            let served = Served::start(process, &tasks, &stop, &cut, MAX_REPLY);
            let check =
                tokio::time::timeout(SERVE_START, served.call(&Call::Version.argv(), None)).await;
            if let Ok(Some((ProcessExit::Code(0), _, _))) = check {
                debug!(host = name, "hostctl serve started");
                state.settle(Some((served, link)));
            } else {
                debug!(host = name, answer = ?check, "hostctl serve does not answer; calls use exec channels");
                served.end();
                state.settle(None);
            }
        });
    }

    fn unreachable(&self, reason: String) -> HostError {
        HostError::Unreachable {
            host: self.name.clone(),
            reason,
        }
    }

    /// Runs a hostctl call with its standard streams as pipes (`logs -f`, `exec`, `sftp`, and
    /// on `lane` Transfer, `pack`). Once its exit is awaited or dropped, the channel is
    /// closed; as under sshd, nothing is killed.
    pub async fn piped(&self, call: &Call, lane: Lane) -> Result<PipedProcess, HostError> {
        let line = self.command_line(&call.argv())?;
        open_piped(
            &self.pool,
            &self.tasks,
            &self.name,
            &line,
            lane,
            Patience::Try,
        )
        .await
        .map(|(process, _)| process)
    }

    /// Runs a hostctl call on a new terminal on the host (`attach`, or `exec` with a PTY).
    pub async fn terminal(
        &self,
        call: &Call,
        term: &str,
        size: TermSize,
    ) -> Result<TerminalProcess, HostError> {
        let line = self.command_line(&call.argv())?;
        let (channel, slot) = self
            .pool
            .open_session(Lane::Sessions, Patience::Try)
            .await?;
        let term = if term.is_empty() {
            "xterm-256color"
        } else {
            term
        };
        channel
            .request_pty(
                false,
                term,
                u32::from(size.cols),
                u32::from(size.rows),
                0,
                0,
                &[],
            )
            .await
            .map_err(|e| self.unreachable(format!("cannot open a terminal: {e}")))?;
        let (reader, writer) = channel.split();
        let output = leg::spawn_reader(reader, slot, &self.tasks);
        writer
            .exec(true, line.as_bytes())
            .await
            .map_err(|e| self.unreachable(format!("cannot run hostctl: {e}")))?;
        let (input, mut input_rx) = super::terminal_input(size);
        let kill = CancellationToken::new();
        let killed = kill.clone();
        let channel_ended = output.ended.clone();
        self.tasks.spawn(async move {
            loop {
                let item = tokio::select! {
                    item = input_rx.recv() => item,
                    () = killed.cancelled() => None,
                    () = channel_ended.cancelled() => None,
                };
                let write = async {
                    match item {
                        Some(TerminalInput::Data(bytes)) => writer.data_bytes(bytes).await.is_ok(),
                        Some(TerminalInput::Resize(size)) => writer
                            .window_change(u32::from(size.cols), u32::from(size.rows), 0, 0)
                            .await
                            .is_ok(),
                        None => false,
                    }
                };
                // A write waiting for the host's window waits for ever once the connection
                // is gone: the channel's end stops it.
                let ok = tokio::select! {
                    ok = write => ok,
                    () = channel_ended.cancelled() => false,
                };
                if !ok {
                    break;
                }
            }
            // The client went away, or asked for the end: closing the channel hangs up the
            // terminal on the host, which ends the process there.
            if killed.is_cancelled() {
                let _ = writer.close().await;
            } else {
                let _ = writer.eof().await;
            }
        });
        Ok(TerminalProcess {
            output: Box::pin(InboundReader::from(output.stdout)),
            input,
            exit: Box::pin(async move { output.exit.await.unwrap_or(ProcessExit::Lost) }),
            kill,
        })
    }

    /// Opens a TCP connection from the host: `localhost` is the host's.
    pub async fn connect_tcp(&self, host: &str, port: u16) -> std::io::Result<Box<dyn Duplex>> {
        let channel = self.pool.open_forward(Forward::Tcp { host, port }).await?;
        Ok(self.duplex(channel))
    }

    /// Connects to a unix socket on the host.
    pub async fn connect_unix(&self, path: &str) -> std::io::Result<Box<dyn Duplex>> {
        let channel = self.pool.open_forward(Forward::Unix { path }).await?;
        Ok(self.duplex(channel))
    }

    /// Asks the host's sshd to listen for a remote forward (`tcpip-forward` on its loopback,
    /// or `streamlocal-forward@openssh.com`), on a connection of the forward's own; each
    /// connection sshd accepts arrives as a channel on it and is handed on as a stream. The
    /// listener ends when the returned one is dropped: the connection is closed, and sshd
    /// closes the listener with it.
    pub async fn listen(
        &self,
        on: &crate::hosts::listen::ListenOn,
    ) -> std::io::Result<crate::hosts::listen::HostListener> {
        use crate::hosts::listen::{ACCEPTED_QUEUE, Accepted, HostListener, ListenOn};
        let (channels_tx, mut channels) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE);
        let conn = self
            .pool
            .forwarding_connection(channels_tx)
            .await
            .map_err(std::io::Error::other)?;
        let ask = async {
            match on {
                ListenOn::Tcp { port } => {
                    let bound = conn
                        .handle
                        .tcpip_forward("127.0.0.1", u32::from(*port))
                        .await?;
                    // sshd reports the port only when it chose it.
                    Ok(if *port == 0 {
                        u16::try_from(bound).unwrap_or(0)
                    } else {
                        *port
                    })
                }
                ListenOn::Unix(path) => conn
                    .handle
                    .streamlocal_forward(path.as_str())
                    .await
                    .map(|()| 0),
            }
        };
        let refused = |e: russh::Error| {
            std::io::Error::other(match e {
                russh::Error::RequestDenied => "the host's sshd refused to listen there (is the port or path in use, or forwarding off in its sshd_config?)".to_owned(),
                other => other.to_string(),
            })
        };
        let port = match tokio::time::timeout(self.pool.step_timeout(), ask).await {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                conn.close("the remote forward was refused").await;
                return Err(refused(e));
            }
            Err(_) => {
                conn.close("the remote forward was not answered").await;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the host's sshd did not answer the request to listen",
                ));
            }
        };
        let (tx, rx) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE);
        let close = tokio_util::sync::CancellationToken::new();
        let stop = close.clone();
        let tasks = self.tasks.clone();
        let host = self.name.clone();
        self.tasks.spawn(async move {
            loop {
                let forwarded = tokio::select! {
                    () = stop.cancelled() => break,
                    forwarded = channels.recv() => forwarded,
                };
                let Some(forwarded) = forwarded else { break };
                let accepted = Accepted {
                    stream: channel_duplex(forwarded.channel, &tasks),
                    originator: forwarded.originator,
                };
                if tx.send(accepted).await.is_err() {
                    break;
                }
            }
            debug!(host, "remote forward closed");
            conn.close("the remote forward ended").await;
        });
        Ok(HostListener::new(port, rx, close))
    }

    fn duplex(&self, channel: russh::Channel<russh::client::Msg>) -> Box<dyn Duplex> {
        channel_duplex(channel, &self.tasks)
    }

    /// Installs this gateway's hostctl on the host if it runs another version, as `host add`
    /// does. Returns the version now there and whether it was installed.
    pub async fn upgrade_hostctl(
        &self,
        companion: &std::path::Path,
    ) -> Result<(hostctl::api::VersionInfo, bool), HostError> {
        let (conn, _slot) = self.pool.connection(Lane::Control, Patience::Try).await?;
        let probe = install::probe(&conn, &self.tasks, self.call_timeout)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        if probe.hostctl_path() != self.hostctl {
            return Err(HostError::Rejected {
                code: hostctl::api::ErrorCode::Failed,
                message: format!(
                    "hostctl is now expected at {} on the host, not {}: remove the host and add it again",
                    probe.hostctl_path(),
                    self.hostctl
                ),
            });
        }
        install::ensure_hostctl(&conn, &self.tasks, &probe, companion, self.create_timeout)
            .await
            .map_err(|e| HostError::Rejected {
                code: hostctl::api::ErrorCode::Failed,
                message: e.to_string(),
            })
    }

    /// Drops the host's connections: the next operation connects again.
    pub async fn reset(&self) {
        self.pool.reset().await;
    }

    /// Retires the connections a failed call went over (the reconciler judged the host
    /// unreachable through them): no new channel goes to them, their sessions end as lost.
    /// Connections made since are kept.
    pub async fn retire_links(&self, links: &[LinkId], why: &str) {
        for link in links {
            if *link == self.serve_state.link()
                && let Some(served) = self.serve_state.current()
            {
                served.end();
            }
            self.pool.retire(*link, why).await;
        }
    }
}

/// Closes a channel when dropped (on a task: closing is a message to the connection).
struct CloseOnDrop {
    writer: Arc<russh::ChannelWriteHalf<russh::client::Msg>>,
    tasks: TaskTracker,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let writer = self.writer.clone();
        self.tasks.spawn(async move {
            let _ = writer.close().await;
        });
    }
}

/// A forward's write side; keeps the channel's write half (and with it the channel) alive
/// while the forward lasts, and closes the channel when the forward ends: without the close,
/// the host's sshd kept its connection to the forwarded port open for as long as the server
/// there did not close it.
struct ChannelWriter {
    inner: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    _close: CloseOnDrop,
}

impl tokio::io::AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.inner.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.inner.as_mut().poll_shutdown(cx)
    }
}

/// Joins words into one shell command line, each single-quoted where needed. `None` when a
/// word holds a NUL byte (no shell can receive it).
pub fn quote_words<'a>(words: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let quoted: Option<Vec<String>> = words
        .into_iter()
        .map(|w| shlex::try_quote(w).ok().map(|q| q.into_owned()))
        .collect();
    quoted.map(|q| q.join(" "))
}

/// A host channel as a byte stream; closing the stream's write side closes the channel.
fn channel_duplex(
    channel: russh::Channel<russh::client::Msg>,
    tasks: &TaskTracker,
) -> Box<dyn Duplex> {
    let (reader, writer) = channel.split();
    let output = leg::spawn_reader(reader, leg::Slot::none(), tasks);
    Box::new(tokio::io::join(
        InboundReader::from(output.stdout),
        ChannelWriter {
            inner: Box::pin(writer.make_writer()),
            _close: CloseOnDrop {
                writer: Arc::new(writer),
                tasks: tasks.clone(),
            },
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_any_posix_shell() {
        let line = quote_words(["/h/bin/hostctl", "exec", "a b", "$(rm -rf ~)", "it's"]).unwrap();
        let back = shlex::split(&line).unwrap();
        assert_eq!(
            back,
            ["/h/bin/hostctl", "exec", "a b", "$(rm -rf ~)", "it's"]
        );
        assert!(quote_words(["a\0b"]).is_none());
    }
}
