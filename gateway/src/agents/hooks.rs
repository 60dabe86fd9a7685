//! What the events an agent's CLI reported through its hooks say about it now: at its prompt,
//! in a turn, asking the operator something, or ended. Pure: the events come from the host
//! (`AgentInfo::hooks`), and `crate::status` weighs this against the screen.

use hostctl::api::{HookEvent, HookKind};
use time::OffsetDateTime;

/// The state the hook events leave the agent in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookState {
    /// At its prompt, the turn over (or not begun); with why, when the turn failed.
    AtPrompt { failed: Option<String> },
    /// In a turn: a prompt was submitted, tools run.
    Working,
    /// Asks the operator: the reason says what.
    Asking(String),
    /// Its session ended: the process is about to exit.
    Ended,
}

/// The state after `events` (oldest first), and the time of the last event that set it; none
/// when no event tells anything.
pub fn state(events: &[HookEvent]) -> Option<(HookState, OffsetDateTime)> {
    let mut out = None;
    for event in events {
        let next = match event.kind {
            HookKind::SessionStarted | HookKind::TurnEnded => HookState::AtPrompt { failed: None },
            HookKind::TurnFailed => HookState::AtPrompt {
                failed: Some(event.detail.clone().unwrap_or_else(|| "an error".into())),
            },
            HookKind::PromptSubmitted | HookKind::ToolStarted | HookKind::ToolEnded => {
                HookState::Working
            }
            HookKind::PermissionAsked => HookState::Asking(permission_reason(event)),
            HookKind::QuestionAsked => HookState::Asking(match &event.detail {
                Some(question) => format!("asks: {question}"),
                None => "asks a question".into(),
            }),
            HookKind::SessionEnded => HookState::Ended,
            HookKind::Other => continue,
        };
        // A repeated permission notice without the tool (Claude Code's Notification, seconds
        // after its PermissionRequest) keeps the better reason.
        if let (Some((HookState::Asking(_), _)), HookState::Asking(_), None) =
            (&out, &next, &event.tool)
            && event.kind == HookKind::PermissionAsked
        {
            continue;
        }
        out = Some((next, event.at));
    }
    out
}

/// "asks permission to run `touch x`", from a permission event.
fn permission_reason(event: &HookEvent) -> String {
    const RUNS: &[&str] = &[
        "Bash",
        "shell",
        "exec_command",
        "local_shell",
        "run_shell_command",
        "unified_exec",
    ];
    const EDITS: &[&str] = &[
        "Write",
        "Edit",
        "MultiEdit",
        "NotebookEdit",
        "write_file",
        "replace",
        "apply_patch",
    ];
    match (event.tool.as_deref(), event.detail.as_deref()) {
        (Some(tool), Some(detail)) if RUNS.contains(&tool) => {
            format!("asks permission to run `{detail}`")
        }
        (Some(tool), Some(detail)) if EDITS.contains(&tool) => {
            format!("asks permission to edit `{detail}`")
        }
        (Some(tool), Some(detail)) => format!("asks permission to use {tool} (`{detail}`)"),
        (Some(tool), None) => format!("asks permission to use {tool}"),
        (None, Some(message)) => format!("asks permission: {message}"),
        (None, None) => "asks permission".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostctl::api::AgentCli;

    fn event(secs: i64, kind: HookKind, tool: Option<&str>, detail: Option<&str>) -> HookEvent {
        HookEvent {
            at: OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("a time"),
            cli: AgentCli::Claude,
            event: format!("{kind:?}"),
            kind,
            tool: tool.map(str::to_owned),
            detail: detail.map(str::to_owned),
            session: None,
        }
    }

    #[test]
    fn a_turn_runs_from_its_prompt_to_its_end_and_a_permission_asked_in_it_waits() {
        let mut events = vec![event(0, HookKind::SessionStarted, None, None)];
        assert_eq!(
            state(&events).map(|s| s.0),
            Some(HookState::AtPrompt { failed: None })
        );
        events.push(event(1, HookKind::PromptSubmitted, None, Some("RUNCMD")));
        events.push(event(
            2,
            HookKind::ToolStarted,
            Some("Bash"),
            Some("touch p"),
        ));
        assert_eq!(state(&events).map(|s| s.0), Some(HookState::Working));
        events.push(event(
            3,
            HookKind::PermissionAsked,
            Some("Bash"),
            Some("touch p"),
        ));
        events.push(event(
            9,
            HookKind::PermissionAsked,
            None,
            Some("Claude needs your permission"),
        ));
        let (asking, at) = state(&events).expect("a state");
        assert_eq!(
            asking,
            HookState::Asking("asks permission to run `touch p`".into())
        );
        assert_eq!(at, events[3].at, "the later notice is not news");
        events.push(event(10, HookKind::ToolEnded, Some("Bash"), None));
        assert_eq!(state(&events).map(|s| s.0), Some(HookState::Working));
        events.push(event(11, HookKind::TurnEnded, None, None));
        events.push(event(12, HookKind::Other, None, None));
        assert_eq!(
            state(&events).map(|s| s.0),
            Some(HookState::AtPrompt { failed: None })
        );
        events.push(event(13, HookKind::SessionEnded, None, None));
        assert_eq!(state(&events).map(|s| s.0), Some(HookState::Ended));
        assert_eq!(state(&[]), None);
    }

    #[test]
    fn permission_reasons_name_what_is_asked() {
        let reason =
            |tool, detail| permission_reason(&event(0, HookKind::PermissionAsked, tool, detail));
        assert_eq!(
            reason(Some("Write"), Some("/w/a.txt")),
            "asks permission to edit `/w/a.txt`"
        );
        assert_eq!(
            reason(Some("WebFetch"), None),
            "asks permission to use WebFetch"
        );
        assert_eq!(reason(None, Some("Allow?")), "asks permission: Allow?");
    }
}
