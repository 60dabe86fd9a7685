//! `top` (and `ssh -t gw` with no command): a full-screen live view of every agent the
//! operator can see, drawn with ratatui into the client's own terminal over the SSH channel.
//! Enter attaches to the selected agent; detaching returns to the view. Keys stop, start and
//! send a line, through the same commands (and the same audit trail) as `ssh gw stop NAME`.

mod keys;
mod view;

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hostctl::api::TermSize;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::{Caller, CommandError, CommandIo, CommandResult, Parsed, exit};
use crate::Gateway;
use crate::agents::reconcile;
use crate::store::{AgentRecord, Operator, StatusChange};
use crate::streams::{Backlog, Inbound};
use view::{Action, Usage, View};

/// The largest terminal the view draws into (columns, rows): a client may claim any size up
/// to 65535x65535, and a frame holds a cell for each; the rest of a larger terminal stays blank.
const MAX_COLS: u16 = 512;
const MAX_ROWS: u16 = 256;

/// How often the view looks at the hosts again (the reconciler's own passes come between).
const REFRESH: Duration = Duration::from_secs(2);

/// How often the view asks the hosts what their running agents use (CPU, memory): less often
/// than it looks at their statuses, since a host counts each workspace's disk as well.
const USAGE_EVERY: Duration = Duration::from_secs(10);

/// How long a lone ESC waits for the rest of a sequence before it is the Escape key (the bytes
/// of one key or of a paste's start may come in two chunks).
const ESC_WAIT: Duration = Duration::from_millis(100);

/// Into the alternate screen, bracketed paste on (a paste comes marked, so that none of it is
/// read as keys), cursor hidden, screen cleared.
const ENTER: &[u8] = b"\x1b[?1049h\x1b[?2004h\x1b[?25l\x1b[H\x1b[2J";
/// Back to the terminal as it was. Every way out of the view sends it (quitting, attaching,
/// the gateway stopping).
const LEAVE: &[u8] = crate::agents::attach::TERMINAL_RESET.as_bytes();

pub async fn run(gw: &Arc<Gateway>, caller: &Caller, io: &mut CommandIo) -> CommandResult {
    let Some(terminal) = io.terminal.as_ref() else {
        return Err(CommandError::usage("the live view needs a terminal")
            .hint("ask ssh for one: ssh -t <gateway>  (or, for a script: ssh <gateway> list)"));
    };
    let mut size = terminal.size.clone();
    let mut screen = Screen::new(*size.borrow_and_update());
    let mut looks = Looks::start(gw, caller);
    let mut fresh = looks.fresh.clone();
    let mut view = View::new();
    let mut decoder = keys::Decoder::new();
    // When a lone ESC held by the decoder becomes the Escape key.
    let mut flush_at: Option<tokio::time::Instant> = None;
    if let Some((agents, warnings, usage)) = fresh.borrow_and_update().clone() {
        view.set_agents(agents, warnings);
        view.usage = usage;
    }
    if !send(io, ENTER).await {
        return Ok(exit::OK);
    }
    // Access taken back (the key removed): the view puts the terminal back before the
    // connection is cut.
    let revocation = gw.live.revocation(caller.connection).unwrap_or_default();
    // The status changes, to ring the terminal when an agent starts waiting or exits.
    let mut changes = gw.store.subscribe_changes();
    loop {
        let frame = screen.draw(&mut view);
        if !frame.is_empty() && !send(io, &frame).await {
            break;
        }
        let event = tokio::select! {
            chunk = io.stdin.recv() => Event::Input(chunk),
            changed = size.changed() => Event::Resized(changed.is_ok()),
            changed = fresh.changed() => Event::Looked(changed.is_ok()),
            change = changes.recv() => Event::Changed(change.ok()),
            () = io.closed.cancelled() => Event::Gone,
            // The gateway is stopping: the view has nothing to finish, so it ends at once (its
            // terminal put back) rather than hold the shutdown for the grace period.
            () = gw.shutdown_accepting.cancelled() => Event::Stopping,
            why = revocation.revoked() => Event::Revoked(why),
            () = sleep_until(flush_at), if flush_at.is_some() => Event::Flush,
        };
        let keys = match event {
            Event::Input(None) | Event::Resized(false) | Event::Looked(false) | Event::Gone => {
                break;
            }
            Event::Stopping => {
                send(io, LEAVE).await;
                io.write_err("agentgate: the gateway is stopping; the agents keep running\n")
                    .await;
                return Ok(exit::OK);
            }
            Event::Revoked(why) => {
                send(io, LEAVE).await;
                io.write_err(&format!("agentgate: access revoked: {why}\n"))
                    .await;
                return Ok(exit::FAILED);
            }
            Event::Resized(true) => {
                screen.resize(*size.borrow_and_update());
                continue;
            }
            Event::Looked(true) => {
                if let Some((agents, warnings, usage)) = fresh.borrow_and_update().clone() {
                    view.set_agents(agents, warnings);
                    view.usage = usage;
                }
                continue;
            }
            Event::Changed(change) => {
                if let Some(ring) = change.as_ref().and_then(|c| ring_for(c, &caller.operator)) {
                    if !send(io, &ring).await {
                        break;
                    }
                    looks.now();
                }
                continue;
            }
            Event::Input(Some(bytes)) => decoder.feed(&bytes),
            Event::Flush => decoder.flush(),
        };
        flush_at = decoder
            .waiting()
            .then(|| tokio::time::Instant::now() + ESC_WAIT);
        let page = View::page(screen.area.height);
        match answer(&mut view, keys, page, Instant::now()) {
            Action::None => {}
            Action::Redraw => screen.clear(),
            Action::Quit => {
                send(io, LEAVE).await;
                return Ok(exit::OK);
            }
            Action::Attach(name) => {
                if !send(io, LEAVE).await {
                    return Ok(exit::OK);
                }
                // No looks for the view while it is not shown.
                drop(looks);
                view.message = Some(attach(gw, caller, &name, io).await);
                if io.closed.is_cancelled() || !send(io, ENTER).await {
                    return Ok(exit::OK);
                }
                // What the terminal sent during the attach went to the agent.
                decoder = keys::Decoder::new();
                flush_at = None;
                looks = Looks::start(gw, caller);
                fresh = looks.fresh.clone();
                // What changed during the attach is not rung now: the operator was there.
                changes = gw.store.subscribe_changes();
                screen.resize(*size.borrow_and_update());
            }
            Action::Stop(name) => {
                view.message = Some(command(gw, caller, &["stop", &name], None).await);
                looks.now();
            }
            Action::Start(name) => {
                view.message = Some(command(gw, caller, &["start", &name], None).await);
                looks.now();
            }
            Action::Send { agent, text } => {
                view.message = Some(command(gw, caller, &["send", &agent, "-"], Some(text)).await);
                looks.now();
            }
        }
    }
    send(io, LEAVE).await;
    Ok(exit::OK)
}

/// Answers the keys of one chunk the client sent, up to the first that acts (attach, stop,
/// start, send, quit), which is returned. What came after it in the same chunk is not read as
/// keys: the next lines of a text pasted by a terminal without bracketed paste must not
/// select, stop or attach anything. (A bracketed paste is one key, [`keys::Key::Paste`].)
fn answer(view: &mut View, keys: Vec<keys::Key>, page: usize, now: Instant) -> Action {
    let mut redraw = false;
    for key in keys {
        match view.key(key, page, now) {
            Action::None => {}
            Action::Redraw => redraw = true,
            acts => return acts,
        }
    }
    if redraw { Action::Redraw } else { Action::None }
}

enum Event {
    Input(Option<Bytes>),
    /// false: the terminal's size can no longer change (the session is ending).
    Resized(bool),
    Looked(bool),
    /// A status change was recorded (None: some were missed, too many at once).
    Changed(Option<StatusChange>),
    Gone,
    Stopping,
    /// The connection's access was taken back, for this reason.
    Revoked(String),
    /// No more bytes came after a lone ESC.
    Flush,
}

/// Waits until `at` (for ever without it: the caller does not poll it then).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What rings the client's terminal for a change of an agent it shows, if the change
/// rings: the agent started waiting or exited. BEL, then the desktop notifications common
/// terminals show: OSC 9 (iTerm2, Windows Terminal, kitty, WezTerm) and OSC 777 (`notify;
/// TITLE;BODY`: urxvt, foot, Ghostty, VTE). Terminals that know neither ignore them.
fn ring_for(change: &StatusChange, viewer: &Operator) -> Option<Vec<u8>> {
    let rings = matches!(change.to.as_str(), "waiting" | "exited")
        && change.from.as_deref() != Some(change.to.as_str())
        && crate::agents::access::may_see(viewer, change.into());
    if !rings {
        return None;
    }
    // Text inside an OSC ends at a control character; `;` separates OSC 777's fields.
    let clean = |t: &str| -> String {
        t.chars()
            .map(|c| if c.is_control() || c == ';' { ' ' } else { c })
            .take(200)
            .collect()
    };
    let title = clean(&format!("agentgate: {} is {}", change.agent, change.to));
    let body = clean(&match &change.reason {
        Some(reason) => format!("{} on {}: {reason}", change.agent, change.host),
        None => format!("{} on {}", change.agent, change.host),
    });
    Some(format!("\x07\x1b]9;{title}: {body}\x07\x1b]777;notify;{title};{body}\x07").into_bytes())
}

/// Writes to the client's terminal; false once the client has gone.
async fn send(io: &mut CommandIo, bytes: &[u8]) -> bool {
    io.stdout.write_all(bytes).await.is_ok() && io.stdout.flush().await.is_ok()
}

/// Attaches the client's terminal to an agent until it detaches (or the agent ends), like
/// `ssh gw attach NAME`, recorded the same way; returns what to tell the operator after.
async fn attach(
    gw: &Arc<Gateway>,
    caller: &Caller,
    name: &str,
    io: &mut CommandIo,
) -> (String, bool) {
    let line = shlex::try_join(["attach", name]).unwrap_or_else(|_| format!("attach {name}"));
    let core = gw.core();
    let result = crate::agents::attach::run(&core, &gw.live, caller, name, io).await;
    let (status, message, shown) = match result {
        Ok(exit::OK) => (
            exit::OK,
            String::new(),
            (format!("back from '{name}'"), false),
        ),
        Ok(status) => (
            status,
            String::new(),
            (
                format!("'{name}' ended (its session exited with status {status})"),
                false,
            ),
        ),
        Err(e) => (e.status, e.message.clone(), (e.message, true)),
    };
    super::record(
        &core,
        caller,
        crate::model::EventKind::Command,
        Some(name.to_owned()),
        &line,
        status,
        &message,
    )
    .await;
    shown
}

/// Runs a command as `ssh gw WORDS...` would (its checks, its audit event), with `stdin` as
/// its input and its output kept; returns the line of it to show the operator.
async fn command(
    gw: &Arc<Gateway>,
    caller: &Caller,
    words: &[&str],
    stdin: Option<String>,
) -> (String, bool) {
    let Ok(line) = shlex::try_join(words.iter().copied()) else {
        return (
            format!("{words:?} cannot be written as a command line"),
            true,
        );
    };
    let Parsed::Run(parsed) = super::parse(&line) else {
        return (format!("'{line}' is not a command the gateway knows"), true);
    };
    let (input, inbound) = Inbound::channel(&Backlog::default());
    if let Some(text) = stdin {
        input.send(Bytes::from(text)).await;
    }
    drop(input);
    let output = Captured::default();
    let (_signal, signals) = mpsc::channel(1);
    let mut io = CommandIo {
        stdin: inbound,
        stdout: Box::pin(output.clone()),
        stderr: Box::pin(output.clone()),
        terminal: None,
        closed: CancellationToken::new(),
        signals,
    };
    // Boxed: `top` is itself run by `control::run`.
    let status = Box::pin(super::dispatch::run(gw, caller, &line, *parsed, &mut io)).await;
    drop(io);
    let text = output.text();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let shown = lines
        .iter()
        .find(|l| l.starts_with("error:"))
        .or(lines.last())
        .map_or_else(|| format!("{line}: done"), |l| (*l).to_owned());
    (shown, status != exit::OK)
}

/// Output kept in memory, for the commands the view runs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written so far; the buffer is empty after.
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.take()).into_owned()
    }
}

/// For the terminal backend, which draws into memory.
impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(buf);
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The agents, the hosts' warnings and what the running agents use, as last looked at.
type Seen = Option<(Vec<AgentRecord>, Vec<String>, Usage)>;

/// Looks at the hosts every [`REFRESH`] (or at once when asked) in a task of its own, so
/// that keys are answered while a slow host is waited for. Ends with the view.
struct Looks {
    fresh: watch::Receiver<Seen>,
    asked: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Looks {
    fn start(gw: &Arc<Gateway>, caller: &Caller) -> Looks {
        let (tx, fresh) = watch::channel(None);
        let asked = Arc::new(Notify::new());
        let wake = asked.clone();
        let (gw, caller) = (gw.clone(), caller.clone());
        let task = gw.clone().tasks.spawn(async move {
            let mut usage = Usage::default();
            let mut usage_due = tokio::time::Instant::now();
            loop {
                let not_asked = reconcile::reconcile_within(&gw, super::seen::LIST_WAIT).await;
                let warnings = not_asked.iter().map(super::seen::not_asked_text).collect();
                match crate::agents::access::agents(&gw.store, &caller.operator).await {
                    Ok(agents) => {
                        if tokio::time::Instant::now() >= usage_due {
                            usage = running_usage(&gw.core(), &agents, &not_asked).await;
                            usage_due = tokio::time::Instant::now() + USAGE_EVERY;
                        }
                        if tx.send(Some((agents, warnings, usage.clone()))).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the live view could not read the agents"),
                }
                tokio::select! {
                    () = tokio::time::sleep(REFRESH) => {}
                    () = wake.notified() => {}
                }
            }
        });
        Looks { fresh, asked, task }
    }

    /// Looks again now (after an action, so that its outcome shows at once).
    fn now(&self) {
        self.asked.notify_one();
    }
}

/// What the running agents among `agents` use, as their hosts say; a host that was too slow
/// or down for the statuses is not asked (its agents show no figures).
async fn running_usage(
    core: &crate::agents::Core<'_>,
    agents: &[AgentRecord],
    not_asked: &[reconcile::NotAsked],
) -> Usage {
    let silent: Vec<&str> = not_asked
        .iter()
        .filter_map(reconcile::NotAsked::silent_host)
        .collect();
    let running: Vec<AgentRecord> = agents
        .iter()
        .filter(|a| {
            a.status == crate::model::AgentStatus::Running && !silent.contains(&a.host.as_str())
        })
        .cloned()
        .collect();
    crate::agents::usage::of_agents(core, &running).await.usage
}

impl Drop for Looks {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The part of a terminal of `size` that the view draws into.
fn drawn_area(size: TermSize) -> Rect {
    Rect::new(0, 0, size.cols.min(MAX_COLS), size.rows.min(MAX_ROWS))
}

/// The client's terminal as last drawn: each frame sends only the cells that changed.
struct Screen {
    backend: CrosstermBackend<Captured>,
    drawn: Captured,
    shown: Buffer,
    area: Rect,
    /// The terminal must be cleared and drawn whole (after a resize, or an attach).
    whole: bool,
}

impl Screen {
    fn new(size: TermSize) -> Screen {
        let area = drawn_area(size);
        let drawn = Captured::default();
        Screen {
            backend: CrosstermBackend::new(drawn.clone()),
            drawn,
            shown: Buffer::empty(area),
            area,
            whole: true,
        }
    }

    fn resize(&mut self, size: TermSize) {
        self.area = drawn_area(size);
        self.clear();
    }

    fn clear(&mut self) {
        self.whole = true;
    }

    /// The bytes that bring the terminal to the view's current state.
    fn draw(&mut self, view: &mut View) -> Vec<u8> {
        let mut next = Buffer::empty(self.area);
        view::render(view, self.area, &mut next);
        let mut out = Vec::new();
        if std::mem::take(&mut self.whole) {
            out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
            self.shown = Buffer::empty(self.area);
        }
        let updates = self.shown.diff(&next);
        if !updates.is_empty() {
            // Writing into memory cannot fail.
            let _ = self.backend.draw(updates.into_iter());
            out.extend(self.drawn.take());
        }
        self.shown = next;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three_agents() -> View {
        let mut view = View::new();
        let mut agents: Vec<_> = ["alpha", "beta", "gamma"]
            .into_iter()
            .map(|n| crate::store::sample_agent(n, "local", crate::model::AgentStatus::Running))
            .collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        view.set_agents(agents, Vec::new());
        view
    }

    #[test]
    fn text_pasted_without_brackets_sends_its_first_line_and_its_other_lines_do_nothing() {
        let mut view = three_agents();
        let mut decoder = keys::Decoder::new();
        let now = Instant::now();
        assert_eq!(
            answer(&mut view, decoder.feed(b"\x14"), 10, now),
            Action::None
        );
        // The paste's second line would find gamma and attach to it; its ^S y would stop it.
        let pasted = b"make test\rgam\r\x13y\x03";
        assert_eq!(
            answer(&mut view, decoder.feed(pasted), 10, now),
            Action::Send {
                agent: "alpha".into(),
                text: "make test".into()
            }
        );
        assert_eq!(view.selected(), Some("alpha"));
        // Keys that do not act are all answered, and a redraw asked among them is kept.
        assert_eq!(
            answer(&mut view, decoder.feed(b"\x1b[B\x0c\x1b[B"), 10, now),
            Action::Redraw
        );
        assert_eq!(view.selected(), Some("gamma"));
    }

    #[test]
    fn a_bracketed_paste_goes_whole_into_the_line_and_acts_nowhere_else() {
        let mut view = three_agents();
        let mut decoder = keys::Decoder::new();
        let now = Instant::now();
        // In the list, the lines of a paste do not find gamma, attach, stop or quit.
        let pasted = b"\x1b[200~gam\r\x13y\r\x03\x1b[201~";
        assert_eq!(
            answer(&mut view, decoder.feed(pasted), 10, now),
            Action::None
        );
        assert_eq!(view.selected(), Some("alpha"));
        assert_eq!(view.mode, view::Mode::Browse);
        // After ^T the whole paste is the text, in however many chunks it comes; Enter sends it.
        let mut actions = Vec::new();
        for chunk in [
            &b"\x14\x1b[2"[..],
            b"00~make test\rgam\r\x13y\x1b",
            b"[201",
            b"~\r",
        ] {
            actions.push(answer(&mut view, decoder.feed(chunk), 10, now));
        }
        assert_eq!(
            actions,
            [
                Action::None,
                Action::None,
                Action::None,
                Action::Send {
                    agent: "alpha".into(),
                    text: "make test\ngam\ny".into()
                }
            ]
        );
    }

    #[test]
    fn the_terminal_rings_when_an_agent_it_shows_starts_waiting_or_exits() {
        let change = |from: &str, to: &str, owner: &str| StatusChange {
            at: time::OffsetDateTime::UNIX_EPOCH.into(),
            agent: "fix-ci".into(),
            host: "local".into(),
            from: Some(from.into()),
            to: to.into(),
            reason: Some("asks; a\x1b]question".into()),
            owner: Some(owner.into()),
            shared_with: Vec::new(),
            tags: std::collections::BTreeMap::new(),
            host_unreachable: false,
        };
        let ann = Operator {
            id: 1,
            name: "ann".into(),
            role: crate::model::Role::Operator,
        };
        let ring = ring_for(&change("working", "waiting", "ann"), &ann).expect("rings");
        assert_eq!(
            String::from_utf8(ring).expect("text"),
            "\x07\x1b]9;agentgate: fix-ci is waiting: fix-ci on local: asks  a ]question\x07\
             \x1b]777;notify;agentgate: fix-ci is waiting;fix-ci on local: asks  a ]question\x07"
        );
        assert!(ring_for(&change("running", "exited", "ann"), &ann).is_some());
        assert!(ring_for(&change("waiting", "waiting", "ann"), &ann).is_none());
        assert!(ring_for(&change("waiting", "working", "ann"), &ann).is_none());
        assert!(ring_for(&change("working", "waiting", "bob"), &ann).is_none());
    }

    #[test]
    fn a_huge_terminal_is_drawn_into_a_bounded_frame() {
        let mut screen = Screen::new(TermSize {
            cols: u16::MAX,
            rows: u16::MAX,
        });
        assert_eq!(screen.area, Rect::new(0, 0, MAX_COLS, MAX_ROWS));
        let frame = screen.draw(&mut View::new());
        assert!(frame.starts_with(b"\x1b[0m\x1b[H\x1b[2J"));
        // A second frame of the same view sends nothing: only changed cells are sent.
        assert!(screen.draw(&mut View::new()).is_empty());
        screen.resize(TermSize { cols: 80, rows: 24 });
        assert_eq!(screen.area, Rect::new(0, 0, 80, 24));
        assert!(!screen.draw(&mut View::new()).is_empty());
    }
}
