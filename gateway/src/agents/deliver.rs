//! Text and keys that reach an agent's CLI, and the proof that they did: `send` (one agent, a
//! tag, all), `create --prompt`, `approve` and `deny` all come here.
//!
//! A text is put into the pane and Enter pressed after a pause (hostctl's `send`). The CLI took
//! it when, after that Enter, its hooks report an event (its prompt submitted, a tool started),
//! or, for a CLI whose hooks have reported nothing, its screen changed. Enter is pressed once
//! more if neither happened within [`RETRY_ENTER_AFTER`]; after [`CONFIRM_WITHIN`] the text is
//! reported not taken, with what the screen shows. What the agent does then is recorded
//! before the caller goes on, so that a `wait` right after a `send` cannot see the state from
//! before it.

use std::time::Duration;

use hostctl::api::{AgentCli, AgentInfo, HookKind, Key, SendReport};
use time::OffsetDateTime;

use crate::agents::Core;
use crate::hosts::{Host, HostError};
use crate::store::AgentRecord;

/// How long a CLI has to show that it took a text or an answer.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(5);

/// When Enter is pressed again for a text that shows no sign of being taken.
pub const RETRY_ENTER_AFTER: Duration = Duration::from_millis(1500);

/// How long a program that is no known CLI has to change its screen after a text.
const UNKNOWN_PROGRAM_WITHIN: Duration = Duration::from_secs(1);

/// How long the screen has to show a question its CLI's hooks reported, before `approve` or
/// `deny` gives up on it.
const SCREEN_SHOWS_WITHIN: Duration = Duration::from_secs(3);

/// How often the agent is looked at meanwhile.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Refuses text a terminal cannot be given (`what`: "the text to send"): a NUL byte ends a C
/// string, so tmux (and the program in the pane) would never see what follows it.
pub fn check_text(text: &str, what: &str) -> Result<(), super::Error> {
    match text.find('\0') {
        Some(at) => Err(super::Error::NulByte {
            what: what.to_owned(),
            at,
        }),
        None => Ok(()),
    }
}

/// How the agent showed that it took what it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TakenBy {
    /// An event its CLI reported through its hooks (its name).
    Hook(&'static str),
    /// Its screen changed.
    Screen,
}

impl TakenBy {
    /// In words, for the command's output: "its CLI reported the prompt".
    pub fn text(self) -> String {
        match self {
            TakenBy::Hook(what) => format!("its CLI reported {what}"),
            TakenBy::Screen => "its screen changed".into(),
        }
    }
}

/// What became of a text or keys given to an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The agent took it.
    Taken(TakenBy),
    /// Typed with no Enter: nothing to take yet.
    Typed,
    /// Typed and submitted to a program that is no CLI agentgate knows, whose screen did not
    /// change: there is nothing to tell whether it took it.
    Submitted,
    /// No sign of it within the time limit; the last line its screen showed.
    NotTaken { last_line: Option<String> },
}

/// Puts `text` into the agent and, with `enter`, submits it, then waits (bounded) for the
/// agent to take it and records what it does.
pub async fn send_text(
    core: &Core<'_>,
    agent: &AgentRecord,
    host: &Host,
    text: &str,
    enter: bool,
) -> Result<Delivery, HostError> {
    // Input counts from when it was asked for: the CLI's hooks answer within milliseconds of
    // the Enter, and must read as news after it.
    core.inputs.touch(&agent.name);
    let report = host.send(&agent.name, text, enter).await?;
    if !enter {
        return Ok(Delivery::Typed);
    }
    if agent.spec.cli.is_none() {
        // A program agentgate knows nothing of (a shell, a script) may take a line without
        // a sign, and a second Enter would be a second, empty line: a changed screen is
        // waited for briefly, and nothing is pressed again.
        let seen = confirm(
            core,
            agent,
            host,
            &report,
            None,
            UNKNOWN_PROGRAM_WITHIN,
            |info| took_text(info, &report),
        )
        .await?;
        return Ok(match seen {
            Delivery::NotTaken { .. } => Delivery::Submitted,
            other => other,
        });
    }
    confirm(
        core,
        agent,
        host,
        &report,
        Some(&[Key::Enter]),
        CONFIRM_WITHIN,
        |info| took_text(info, &report),
    )
    .await
}

/// How long a new agent's CLI has to come to its prompt for its first prompt.
pub const READY_WITHIN: Duration = Duration::from_secs(120);

/// Gives a new agent its first prompt (`create --prompt`) once its CLI is at its prompt (told
/// by its hooks or its screen), as `send` gives a text. An agent that does not come to its
/// prompt within [`READY_WITHIN`] is not given it: what it shows instead is the error.
pub async fn first_prompt(
    core: &Core<'_>,
    agent: &AgentRecord,
    host: &Host,
    text: &str,
) -> Result<Delivery, HostError> {
    let started = tokio::time::Instant::now();
    let mut last_line = None;
    while started.elapsed() < READY_WITHIN {
        let info = host.info(&agent.name).await?;
        let seen = crate::agents::reconcile::observed_from(core, agent, &info);
        if seen.status != crate::model::AgentStatus::Running {
            break;
        }
        let activity = seen.activity.unwrap_or_default();
        if activity.state == Some(crate::model::ActivityState::Waiting)
            && crate::agents::activity::question(&activity).is_none()
        {
            return send_text(core, agent, host, text, true).await;
        }
        last_line = info.screen.and_then(|s| s.tail.last().cloned());
        tokio::time::sleep(LOOK_EVERY * 2).await;
    }
    Ok(Delivery::NotTaken { last_line })
}

/// Presses `keys` in the agent and waits (bounded) until `done` says the agent took them.
pub async fn press(
    core: &Core<'_>,
    agent: &AgentRecord,
    host: &Host,
    keys: &[Key],
    done: impl Fn(&AgentRecord, &AgentInfo, &SendReport) -> Option<TakenBy>,
) -> Result<Delivery, HostError> {
    core.inputs.touch(&agent.name);
    let report = host.keys(&agent.name, keys).await?;
    confirm(core, agent, host, &report, None, CONFIRM_WITHIN, |info| {
        done(agent, info, &report)
    })
    .await
}

/// Keys pressed with no check: any change of the screen is the agent taking them.
pub fn screen_changed(_: &AgentRecord, info: &AgentInfo, report: &SendReport) -> Option<TakenBy> {
    changed(info, report).then_some(TakenBy::Screen)
}

async fn confirm(
    core: &Core<'_>,
    agent: &AgentRecord,
    host: &Host,
    report: &SendReport,
    retry: Option<&[Key]>,
    within: Duration,
    taken: impl Fn(&AgentInfo) -> Option<TakenBy>,
) -> Result<Delivery, HostError> {
    let started = tokio::time::Instant::now();
    let mut retried = retry.is_none();
    let mut last = None;
    while started.elapsed() < within {
        tokio::time::sleep(LOOK_EVERY).await;
        let info = match host.info(&agent.name).await {
            Ok(info) => info,
            Err(e) if started.elapsed() + LOOK_EVERY < within => {
                tracing::debug!(agent = agent.name, error = %e, "cannot look at the agent");
                continue;
            }
            Err(e) => return Err(e),
        };
        if let Some(by) = taken(&info) {
            record(core, agent, &info).await;
            return Ok(Delivery::Taken(by));
        }
        // Only a screen on which nothing at all happened gets Enter again: on one that
        // changed, the CLI did something with the first (a dialog it opened would take the
        // second Enter as its answer).
        if let (false, Some(keys)) = (retried, retry)
            && started.elapsed() >= RETRY_ENTER_AFTER
            && !changed(&info, report)
        {
            retried = true;
            tracing::info!(
                agent = agent.name,
                "pressing Enter again: the text was not taken"
            );
            host.keys(&agent.name, keys).await?;
        }
        last = Some(info);
    }
    if let Some(info) = &last {
        record(core, agent, info).await;
    }
    Ok(Delivery::NotTaken {
        last_line: last
            .and_then(|i| i.screen)
            .and_then(|s| s.tail.last().cloned()),
    })
}

/// Whether the agent took a submitted text: an event of its CLI after the Enter, or, from a
/// CLI whose hooks do not report a submitted prompt (Codex's `notify` tells only a turn's
/// end; none wired; hooks that have told nothing, being broken), a change of its screen.
fn took_text(info: &AgentInfo, report: &SendReport) -> Option<TakenBy> {
    if let Some(event) = event_after(info, report.at) {
        return Some(TakenBy::Hook(event));
    }
    let prompt_hook = matches!(info.meta.hooks, Some(AgentCli::Claude | AgentCli::Gemini))
        && !info.hooks.is_empty();
    (!prompt_hook && changed(info, report)).then_some(TakenBy::Screen)
}

/// The first event the agent's CLI reported after `at` that shows it acting, in words.
pub fn event_after(info: &AgentInfo, at: OffsetDateTime) -> Option<&'static str> {
    info.hooks
        .iter()
        .filter(|e| e.at >= at)
        .find_map(|e| match e.kind {
            HookKind::PromptSubmitted => Some("the prompt"),
            HookKind::ToolStarted | HookKind::ToolEnded => Some("a tool"),
            HookKind::PermissionAsked | HookKind::QuestionAsked => Some("a question"),
            HookKind::TurnEnded | HookKind::TurnFailed => Some("the end of its turn"),
            HookKind::SessionEnded => Some("the end of its session"),
            HookKind::SessionStarted | HookKind::Other => None,
        })
}

fn changed(info: &AgentInfo, report: &SendReport) -> bool {
    match (&info.screen, &report.screen) {
        (Some(now), Some(before)) => now.hash != before.hash,
        // Its process ended: what it was given was taken, one way or another.
        (None, _) => info.status != hostctl::api::HostAgentStatus::Running,
        (Some(_), None) => true,
    }
}

async fn record(core: &Core<'_>, agent: &AgentRecord, info: &AgentInfo) {
    if let Err(e) = crate::agents::reconcile::observe(core, agent, info).await {
        tracing::warn!(agent = agent.name, error = %e, "cannot record an agent's status");
    }
}

/// What became of an answer to an agent's question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answered {
    /// The question (its reason) is gone: the agent took the answer.
    Taken { question: String, by: TakenBy },
    /// The agent asks nothing: what it shows instead.
    NothingAsked { status: String },
    /// The question is still there after the time limit.
    NotTaken { question: String },
    /// Its hooks say it asks (the reason), but its screen shows no question to answer.
    NotOnScreen { asked: String },
}

/// Answers the question the agent asks (a permission, a yes/no question) with yes
/// (`approve`) or no, with the keys its CLI's dialog takes, and waits (bounded) until the
/// question is gone.
pub async fn answer(
    core: &Core<'_>,
    agent: &AgentRecord,
    host: &Host,
    approve: bool,
) -> Result<Answered, HostError> {
    let mut info = host.info(&agent.name).await?;
    let mut seen = crate::agents::reconcile::observed_from(core, agent, &info);
    // A CLI's hook may report its question a moment before the dialog is drawn: the screen
    // is given a little time to show it.
    let started = tokio::time::Instant::now();
    while seen
        .activity
        .as_ref()
        .is_some_and(|a| crate::agents::activity::question(a).is_some() && !a.screen_asks)
        && started.elapsed() < SCREEN_SHOWS_WITHIN
    {
        tokio::time::sleep(LOOK_EVERY).await;
        info = host.info(&agent.name).await?;
        seen = crate::agents::reconcile::observed_from(core, agent, &info);
    }
    record(core, agent, &info).await;
    let Some(asked) = seen
        .activity
        .as_ref()
        .and_then(crate::agents::activity::question)
    else {
        let mut now = agent.clone();
        now.status = seen.status;
        now.activity = seen.activity.unwrap_or_default();
        return Ok(Answered::NothingAsked {
            status: match &now.activity.reason {
                Some(reason) => format!("{} ({reason})", now.shown_status()),
                None => now.shown_status().to_owned(),
            },
        });
    };
    // The keys answer what is on the screen: the screen must show the question, and it is
    // what the answer names (an agent can write its own hook events; not its CLI's dialog).
    let on_screen = seen
        .activity
        .as_ref()
        .filter(|a| a.screen_asks)
        .and_then(|a| a.screen_waits.clone());
    let Some(question) = on_screen else {
        return Ok(Answered::NotOnScreen { asked });
    };
    let keys = answer_keys(agent.spec.cli, approve);
    let delivery = press(core, agent, host, &keys, |agent, info, report| {
        let after = crate::agents::reconcile::observed_from(core, agent, info).activity;
        let still = after
            .as_ref()
            .and_then(crate::agents::activity::question)
            .is_some();
        (!still).then(|| match event_after(info, report.at) {
            Some(event) => TakenBy::Hook(event),
            None => TakenBy::Screen,
        })
    })
    .await?;
    Ok(match delivery {
        Delivery::Taken(by) => Answered::Taken { question, by },
        _ => Answered::NotTaken { question },
    })
}

/// What answers a CLI's permission dialog, yes or no.
pub fn answer_keys(cli: Option<AgentCli>, approve: bool) -> Vec<Key> {
    match (cli, approve) {
        // Their dialogs list the choices with numbers; 1 is "yes, once". Esc says no.
        (Some(AgentCli::Claude | AgentCli::Gemini), true) => vec![Key::Char('1')],
        (Some(AgentCli::Claude | AgentCli::Gemini | AgentCli::Codex), false) => vec![Key::Escape],
        // Codex names its choices by letter: "Yes, proceed (y)".
        (Some(AgentCli::Codex), true) => vec![Key::Char('y')],
        // aider and any program asking "[y/n]" read a line.
        (_, true) => vec![Key::Char('y'), Key::Enter],
        (_, false) => vec![Key::Char('n'), Key::Enter],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_with_a_nul_byte_is_refused_where_it_is() {
        assert!(check_text("make test\n", "the prompt").is_ok());
        assert_eq!(
            check_text("ab\0c", "the prompt").map_err(|e| e.to_string()),
            Err("the prompt contains a NUL byte (at byte 2)".to_owned())
        );
    }
    use hostctl::api::{HookEvent, Screen};

    fn info(screen: &str, hooks: Vec<HookEvent>) -> AgentInfo {
        let meta: hostctl::api::AgentMeta = serde_json::from_value(serde_json::json!({
            "name": "a", "command": {"kind": "login_shell"}, "workspace": {"kind": "empty"},
            "workspace_path": "/w", "created_at": "2026-01-01T00:00:00Z", "hooks": "claude"
        }))
        .expect("meta");
        AgentInfo {
            name: "a".into(),
            status: hostctl::api::HostAgentStatus::Running,
            pid: None,
            exit_code: None,
            ending: None,
            last_activity: None,
            meta,
            screen: Some(Screen::from_text(80, 24, screen, None)),
            seen_at: None,
            hooks,
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("a time")
    }

    fn event(secs: i64, kind: HookKind) -> HookEvent {
        HookEvent {
            at: at(secs),
            cli: AgentCli::Claude,
            event: "x".into(),
            kind,
            tool: None,
            detail: None,
            session: None,
        }
    }

    #[test]
    fn a_text_is_taken_when_the_cli_reports_it_or_a_screen_without_hooks_changes() {
        let report = SendReport {
            at: at(10),
            screen: Some(Screen::from_text(80, 24, "> hello", None)),
        };
        // Hooks that work: only an event after the Enter counts, not the screen.
        let started = vec![event(0, HookKind::SessionStarted)];
        assert_eq!(
            took_text(&info("> hello\nthinking", started.clone()), &report),
            None
        );
        let mut submitted = started;
        submitted.push(event(9, HookKind::PromptSubmitted));
        assert_eq!(
            took_text(&info("> ", submitted.clone()), &report),
            None,
            "before the Enter"
        );
        submitted.push(event(11, HookKind::PromptSubmitted));
        assert_eq!(
            took_text(&info("> hello", submitted), &report),
            Some(TakenBy::Hook("the prompt"))
        );
        // No hooks: the screen tells.
        assert_eq!(took_text(&info("> hello", vec![]), &report), None);
        assert_eq!(
            took_text(&info("> hello\nok", vec![]), &report),
            Some(TakenBy::Screen)
        );
        // Hooks that tell only a turn's end (Codex's notify): the screen tells too.
        let mut codex = info("> hello\nok", vec![event(0, HookKind::TurnEnded)]);
        codex.meta.hooks = Some(AgentCli::Codex);
        assert_eq!(took_text(&codex, &report), Some(TakenBy::Screen));
    }

    #[test]
    fn each_cli_gets_the_keys_its_dialog_takes() {
        assert_eq!(answer_keys(Some(AgentCli::Claude), true), [Key::Char('1')]);
        assert_eq!(answer_keys(Some(AgentCli::Codex), true), [Key::Char('y')]);
        assert_eq!(answer_keys(Some(AgentCli::Codex), false), [Key::Escape]);
        assert_eq!(answer_keys(None, false), [Key::Char('n'), Key::Enter]);
    }
}
