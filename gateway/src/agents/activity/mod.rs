//! Agent-aware status (the activity of a running agent): whether a running agent is `working`, `waiting` for the operator or
//! `idle`, told from its screen as its host reports it (`hostctl list` and `info`).
//!
//! In this order:
//! - `working`: its screen changed within `status.working_for`;
//! - `idle`: no output and no input through the gateway for `status.idle_after`;
//! - `waiting`: a rule of its template matches the last lines of its screen (a permission
//!   dialog, a yes/no question, its input prompt), or, for a shell, the shell itself is in the
//!   foreground (it sits at its prompt);
//! - otherwise plain `running`.
//!
//! Output is a change of the screen's text at an unchanged size: a screen redrawn because a
//! viewer attached with another terminal size is not output, and the gateway's own look at the
//! screen (`tmux capture-pane`) changes nothing. Input is what operators type into the agent
//! through the gateway (`attach`, `send`); a viewer that types nothing adds none.
//!
//! The screen's rules are in [`rules`]; operators' typing in [`input`]. The CLIs' own hooks
//! come first when they are fresh (see [`next`] and `agents::hooks`).

mod input;
mod rules;

pub use input::{Attached, Inputs, typed};
use rules::AT_PROMPT;
pub use rules::{BUILTIN_NAMES, InvalidRules, RuleSet, Rules, ScreenWait};

use hostctl::api::Screen;
use time::OffsetDateTime;

use crate::agents::hooks::HookState;
use crate::config::StatusConfig;
use crate::model::ActivitySource::{Hook, Screen as FromScreen};
use crate::model::ActivityState::{Idle, Waiting, Working};
use crate::model::Timestamp;
use crate::store::AgentActivity;

/// What a host reported of a running agent, for [`next`].
pub struct Look<'a> {
    pub screen: Option<&'a Screen>,
    /// tmux's time of the pane's last output (seconds), when known.
    pub tmux_activity: Option<OffsetDateTime>,
    /// When an operator last typed into it through this gateway.
    pub input: Option<OffsetDateTime>,
    /// The last events its CLI reported through its hooks, oldest first (none: its CLI's
    /// hooks are not wired, or have said nothing yet).
    pub hooks: &'a [hostctl::api::HookEvent],
}

/// The activity of a running agent after a new look at it, `prev` being what was known.
pub fn next(
    config: &StatusConfig,
    rules: &RuleSet,
    prev: &AgentActivity,
    look: &Look<'_>,
    now: OffsetDateTime,
) -> AgentActivity {
    let mut next = prev.clone();
    let prev_input = prev.last_input_at.map(Timestamp::datetime);
    if let Some(input) = look.input
        && prev_input.is_none_or(|p| input > p)
    {
        next.last_input_at = Some(Timestamp::from(input));
    }
    if let Some(screen) = look.screen {
        let size = format!("{}x{}", screen.cols, screen.rows);
        let key = format!("{size} {}", screen.hash);
        let prev_output = prev.last_output_at.map(Timestamp::datetime);
        // When the change happened: tmux's time of the last output, unless it is older than
        // what is already known (tmux counts whole seconds) or in the future.
        let changed_at = look
            .tmux_activity
            .filter(|t| *t <= now && prev_output.is_none_or(|p| *t > p))
            .unwrap_or(now);
        match prev.screen.as_deref() {
            // The first look (or the first since the screen was forgotten): it shows what it
            // got at tmux's last output, which is no output if it is not newer than the last
            // one known.
            None => {
                next.last_output_at = match (prev_output, look.tmux_activity) {
                    (Some(p), Some(t)) => Some(Timestamp::from(p.max(t.min(now)))),
                    (Some(p), None) => Some(Timestamp::from(p)),
                    (None, _) => Some(Timestamp::from(changed_at)),
                }
            }
            Some(old) if old == key => {}
            // Another size: the program redrew its screen for a viewer's terminal.
            Some(old) if old.split(' ').next() != Some(size.as_str()) => {}
            Some(_) => next.last_output_at = Some(Timestamp::from(changed_at)),
        }
        next.screen = Some(key);
        next.last_line = screen.tail.last().cloned();
        let wait = rules.wait(screen);
        next.screen_asks = wait.as_ref().is_some_and(|w| w.asks);
        next.screen_waits = wait.map(|w| w.reason);
    }
    let output = next.last_output_at.map(Timestamp::datetime);
    let input = next.last_input_at.map(Timestamp::datetime);
    let within = |t: OffsetDateTime, limit: std::time::Duration| {
        let age = now - t;
        age < time::Duration::try_from(limit).unwrap_or(time::Duration::MAX)
    };
    // The hooks' word, unless an operator typed into the agent after their last event: what
    // they typed may have answered a dialog or interrupted a turn, which no hook reports, and
    // the screen tells until the CLI's next event.
    let hook = crate::agents::hooks::state(look.hooks)
        .filter(|(_, at)| input.is_none_or(|typed| typed <= *at));
    let quiet_since = output.max(input).max(hook.as_ref().map(|(_, at)| *at));
    let idle = quiet_since.is_some_and(|t| !within(t, config.idle_after));
    // What the screen showed when last read (it has not changed since, or it would have been
    // read again).
    let screen_question = next.screen_waits.clone().filter(|_| next.screen_asks);
    let screen_prompt = next.screen_waits.clone().filter(|_| !next.screen_asks);
    let (state, reason, source) = match hook {
        Some((HookState::Asking(reason), _)) => (Some(Waiting), Some(reason), Hook),
        // A question on the screen is never hidden by output, nor by hooks that say the CLI
        // works (a dialog its hooks do not report).
        _ if screen_question.is_some() => (Some(Waiting), screen_question, FromScreen),
        // A turn whose end no hook reported (an interrupt, a crash of the hook) shows as the
        // CLI's prompt on a screen that has not changed for `working_for` since the last event.
        Some((HookState::Working, at))
            if within(at, config.working_for)
                || output.is_some_and(|t| within(t, config.working_for))
                || screen_prompt.is_none() =>
        {
            (Some(Working), None, Hook)
        }
        Some((HookState::AtPrompt { .. }, _)) if idle => (Some(Idle), None, Hook),
        Some((HookState::AtPrompt { failed }, _)) => (
            Some(Waiting),
            Some(match failed {
                Some(why) => format!("{AT_PROMPT} (its last turn failed: {why})"),
                None => AT_PROMPT.to_owned(),
            }),
            Hook,
        ),
        Some((HookState::Ended, _)) => (None, None, Hook),
        _ if output.is_some_and(|t| within(t, config.working_for)) => {
            (Some(Working), None, FromScreen)
        }
        _ if idle => (Some(Idle), None, FromScreen),
        _ if screen_prompt.is_some() => (Some(Waiting), screen_prompt, FromScreen),
        _ => (None, None, FromScreen),
    };
    next.state = state;
    next.reason = reason;
    next.source = Some(source);
    next
}

/// The question an agent asks the operator (a permission, a dialog, a yes/no question), if it
/// waits on one rather than at its prompt.
pub fn question(activity: &AgentActivity) -> Option<String> {
    if activity.state != Some(Waiting) {
        return None;
    }
    let reason = activity.reason.clone()?;
    let asks = match activity.source {
        Some(Hook) => !reason.starts_with(AT_PROMPT),
        _ => activity.screen_asks,
    };
    asks.then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::rules::tests::rules_for;
    use super::*;
    use crate::config::Template;
    use crate::model::ActivityState;
    use hostctl::api::{AgentCli, AgentCommand};
    use std::time::Duration;

    fn screen(text: &str, foreground: &str) -> Screen {
        Screen::from_text(80, 24, text, Some(foreground.to_owned()))
    }

    fn config() -> StatusConfig {
        StatusConfig {
            working_for: Duration::from_secs(10),
            idle_after: Duration::from_secs(60),
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("a valid time")
    }

    /// A look at `screen` alone (no hooks, no input), tmux's last output at `at(output)`.
    fn screen_look(screen: &Screen, output: i64) -> Look<'_> {
        Look {
            screen: Some(screen),
            tmux_activity: Some(at(output)),
            input: None,
            hooks: &[],
        }
    }

    #[test]
    fn output_makes_working_then_waiting_then_idle() {
        let rules = rules_for(Template::default());
        let set = rules.for_template_named("t");
        let prompt = screen("$ echo hi\nhi\n$", "bash");
        let look = |s| screen_look(s, 0);
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&prompt),
            at(1),
        );
        assert_eq!(first.state, Some(ActivityState::Working));
        assert_eq!(first.last_output_at.map(Timestamp::datetime), Some(at(0)));
        assert_eq!(first.last_line.as_deref(), Some("$"));
        let settled = next(&config(), set, &first, &look(&prompt), at(20));
        assert_eq!(settled.state, Some(ActivityState::Waiting));
        assert_eq!(settled.reason.as_deref(), Some("at the shell prompt"));
        // A screen not read again (no output since) keeps telling what it told.
        let unread = Look {
            screen: None,
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        let still = next(&config(), set, &settled, &unread, at(30));
        assert_eq!(still.state, Some(ActivityState::Waiting));
        assert_eq!(still.reason.as_deref(), Some("at the shell prompt"));
        assert_eq!(still.screen, settled.screen);
        let idle = next(&config(), set, &settled, &look(&prompt), at(61));
        assert_eq!((idle.state, idle.reason), (Some(ActivityState::Idle), None));
    }

    #[test]
    fn a_question_on_the_screen_is_never_hidden_by_recent_output() {
        let rules = rules_for(Template::default());
        let set = rules.for_agent(
            "t",
            &AgentCommand::Argv {
                argv: vec!["claude".into()],
            },
        );
        let dialog = screen(
            "Bash command\n   touch p\n Do you want to proceed?\n ❯ 1. Yes",
            "claude",
        );
        let look = Look {
            screen: Some(&dialog),
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        // The dialog drew a second ago: output, yet the question is what counts.
        let seen = next(&config(), set, &AgentActivity::default(), &look, at(1));
        assert_eq!(seen.state, Some(ActivityState::Waiting));
        assert_eq!(
            seen.reason.as_deref(),
            Some("asks permission to run `touch p`")
        );
        assert_eq!(seen.source, Some(FromScreen));
        assert!(question(&seen).is_some());
    }

    fn hook(
        secs: i64,
        kind: hostctl::api::HookKind,
        tool: Option<&str>,
        detail: Option<&str>,
    ) -> hostctl::api::HookEvent {
        hostctl::api::HookEvent {
            at: at(secs),
            cli: AgentCli::Claude,
            event: String::new(),
            kind,
            tool: tool.map(str::to_owned),
            detail: detail.map(str::to_owned),
            session: None,
        }
    }

    #[test]
    fn hooks_tell_first_until_an_operator_types_after_them() {
        use hostctl::api::HookKind::*;
        let rules = rules_for(Template::default());
        let set = rules.for_agent(
            "t",
            &AgentCommand::Argv {
                argv: vec!["claude".into()],
            },
        );
        let prompt = screen("❯\n? for shortcuts", "claude");
        let events = [
            hook(0, SessionStarted, None, None),
            hook(1, PromptSubmitted, None, Some("RUNCMD")),
            hook(2, ToolStarted, Some("Bash"), Some("touch p")),
            hook(3, PermissionAsked, Some("Bash"), Some("touch p")),
        ];
        let look = |input, hooks| Look {
            screen: Some(&prompt),
            tmux_activity: Some(at(0)),
            input,
            hooks,
        };
        // Asked through the hook, though the screen (read late) shows the prompt.
        let asked = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(None, &events),
            at(4),
        );
        assert_eq!(asked.state, Some(ActivityState::Waiting));
        assert_eq!(
            asked.reason.as_deref(),
            Some("asks permission to run `touch p`")
        );
        assert_eq!(asked.source, Some(Hook));
        // An operator typed after it (an answer no hook reports): the screen tells.
        let answered = next(&config(), set, &asked, &look(Some(at(14)), &events), at(15));
        assert_eq!(answered.source, Some(FromScreen));
        assert_eq!(answered.reason.as_deref(), Some("waits for a prompt"));
        // In a turn: working, until a still screen at the prompt outlasts working_for.
        let working = &events[..3];
        let busy = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(None, working),
            at(4),
        );
        assert_eq!(
            (busy.state, busy.source),
            (Some(ActivityState::Working), Some(Hook))
        );
        let stale = next(&config(), set, &busy, &look(None, working), at(40));
        assert_eq!(
            (stale.state, stale.source),
            (Some(ActivityState::Waiting), Some(FromScreen))
        );
    }

    #[test]
    fn input_ends_idle_and_a_changed_screen_is_output() {
        let rules = rules_for(Template {
            command: "sleep".into(),
            ..Template::default()
        });
        let set = rules.for_template_named("t");
        let blank = screen("", "sleep");
        let look = |s, input| Look {
            screen: Some(s),
            tmux_activity: None,
            input,
            hooks: &[],
        };
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&blank, None),
            at(0),
        );
        let idle = next(&config(), set, &first, &look(&blank, None), at(100));
        assert_eq!(idle.state, Some(ActivityState::Idle));
        let typed = next(&config(), set, &idle, &look(&blank, Some(at(99))), at(100));
        assert_eq!(typed.state, None, "plain running once someone typed");
        let printed = screen("hello", "sleep");
        let out = next(&config(), set, &typed, &look(&printed, None), at(101));
        assert_eq!(out.state, Some(ActivityState::Working));
        assert_eq!(out.last_output_at.map(Timestamp::datetime), Some(at(101)));
    }

    #[test]
    fn a_screen_forgotten_and_read_again_is_not_new_output() {
        let rules = rules_for(Template {
            command: "sleep".into(),
            ..Template::default()
        });
        let set = rules.for_template_named("t");
        let blank = Screen::from_text(80, 24, "", Some("sleep".into()));
        // Known quiet since 0; its screen was forgotten (a host blip); tmux says the last
        // output was at 0.
        let forgotten = AgentActivity {
            last_output_at: Some(Timestamp::from(at(0))),
            ..AgentActivity::default()
        };
        let look = Look {
            screen: Some(&blank),
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        let again = next(&config(), set, &forgotten, &look, at(100));
        assert_eq!(again.last_output_at.map(Timestamp::datetime), Some(at(0)));
        assert_eq!(again.state, Some(ActivityState::Idle));
    }

    #[test]
    fn a_redraw_at_another_size_is_not_output() {
        let rules = rules_for(Template::default());
        let set = rules.for_template_named("t");
        let small = Screen::from_text(80, 24, "a long line", Some("sleep".into()));
        let big = Screen::from_text(120, 40, "a long\nline", Some("sleep".into()));
        let look = |s| screen_look(s, 50);
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&small),
            at(0),
        );
        let resized = next(&config(), set, &first, &look(&big), at(100));
        assert_eq!(resized.last_output_at, first.last_output_at);
        assert_eq!(resized.state, Some(ActivityState::Idle));
    }
}
