//! The words of the audit trail: what kind of thing an event records, and how it ended.

use std::fmt;
use std::str::FromStr;

use super::{AgentStatus, Outcome, UnknownWord, words};

words! {
    /// What an audit event records.
    pub enum EventKind ("event kind") {
        /// A control command (`ssh gw list`), or one agent's part of a command on many.
        Command = "command",
        /// A command run in an agent's environment (`ssh fix-ci@gw make test`).
        Exec = "exec",
        /// A terminal on an agent's tmux session.
        Attach = "attach",
        /// A login shell in an agent's workspace without a terminal (`ssh -T fix-ci@gw`).
        Shell = "shell",
        /// An SFTP session in an agent's workspace.
        Sftp = "sftp",
        /// A port forward through an agent's host (`ssh -L`, `ssh -D`).
        Forward = "forward",
        /// An operator's SSH agent forwarded into an agent (`ssh -A`): while it is open,
        /// and each time a process on the agent's host uses it.
        AgentForward = "agent-forward",
        /// A channel refused on a connection whose credential was taken back.
        Channel = "channel",
        /// A login refused.
        Login = "login",
        /// A source refused for a while: its connections kept ending without a login.
        Penalty = "penalty",
        /// A connection ended because its access was taken back.
        Session = "session",
        /// A multi-step operation settled after a restart (`agents::journal`).
        Operation = "operation",
        /// A notification delivered, or not.
        Notify = "notify",
        /// A host that became reachable or unreachable.
        Host = "host",
        /// An agent stopped for being idle.
        IdleStop = "idle-stop",
        /// An agent's end that no stop explains (its process exited or was killed).
        Agent = "agent",
        /// Events lost from the audit trail's memory while the database could not take them.
        Audit = "audit",
    }
}

/// How an audit event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventResult {
    /// Done (exit status 0).
    Ok,
    /// Ended with this exit status (not 0).
    Exit(u32),
    /// Under way: its command has not ended yet.
    Started,
    /// Under way when the gateway stopped.
    Interrupted,
    Failed,
    Refused,
    Revoked,
    /// Dropped from memory before the database could take it (the `audit` event's count).
    Lost,
    /// A host that became unreachable.
    Unreachable,
    /// An operation settled after a restart: done, undone or finished (`Failed` is one too).
    Done,
    Undone,
    Finished,
    /// The status an agent came to without a stop (`exited`, `stopped`).
    Ended(AgentStatus),
}

/// The fixed words of [`EventResult`], for the error that names them.
const RESULT_WORDS: &[&str] = &[
    "ok",
    "exit N",
    "started",
    "interrupted",
    "failed",
    "refused",
    "revoked",
    "lost",
    "unreachable",
    "done",
    "undone",
    "finished",
    "an agent status",
];

impl EventResult {
    /// The result of a command that ended with exit status `status`.
    pub fn of_exit(status: u32) -> EventResult {
        match status {
            0 => EventResult::Ok,
            n => EventResult::Exit(n),
        }
    }
}

impl From<Outcome> for EventResult {
    fn from(outcome: Outcome) -> EventResult {
        match outcome {
            Outcome::Done => EventResult::Done,
            Outcome::Failed => EventResult::Failed,
            Outcome::Undone => EventResult::Undone,
            Outcome::Finished => EventResult::Finished,
        }
    }
}

impl fmt::Display for EventResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            EventResult::Exit(status) => return write!(f, "exit {status}"),
            EventResult::Ended(status) => status.as_str(),
            EventResult::Ok => "ok",
            EventResult::Started => "started",
            EventResult::Interrupted => "interrupted",
            EventResult::Failed => "failed",
            EventResult::Refused => "refused",
            EventResult::Revoked => "revoked",
            EventResult::Lost => "lost",
            EventResult::Unreachable => "unreachable",
            EventResult::Done => "done",
            EventResult::Undone => "undone",
            EventResult::Finished => "finished",
        };
        f.write_str(word)
    }
}

impl FromStr for EventResult {
    type Err = UnknownWord;
    fn from_str(text: &str) -> Result<EventResult, UnknownWord> {
        Ok(match text {
            "ok" => EventResult::Ok,
            "started" => EventResult::Started,
            "interrupted" => EventResult::Interrupted,
            "failed" => EventResult::Failed,
            "refused" => EventResult::Refused,
            "revoked" => EventResult::Revoked,
            "lost" => EventResult::Lost,
            "unreachable" => EventResult::Unreachable,
            "done" => EventResult::Done,
            "undone" => EventResult::Undone,
            "finished" => EventResult::Finished,
            _ => {
                // `exit N` as written (N not 0, no leading zero), so that it reads back the same.
                let exit = text
                    .strip_prefix("exit ")
                    .and_then(|n| {
                        n.parse::<u32>()
                            .ok()
                            .filter(|s| *s != 0 && s.to_string() == n)
                    })
                    .map(EventResult::Exit);
                match exit.or_else(|| text.parse().ok().map(EventResult::Ended)) {
                    Some(result) => result,
                    None => {
                        return Err(UnknownWord {
                            what: "event result",
                            word: text.to_owned(),
                            known: RESULT_WORDS,
                        });
                    }
                }
            }
        })
    }
}

impl serde::Serialize for EventResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_reads_back_and_others_are_refused() {
        crate::model::assert_words(EventKind::ALL, "event kind");
        assert_eq!(EventKind::IdleStop.to_string(), "idle-stop");
    }

    #[test]
    fn each_result_reads_back_and_others_are_refused() {
        let mut all = vec![
            EventResult::Ok,
            EventResult::Exit(1),
            EventResult::Exit(255),
            EventResult::Started,
            EventResult::Interrupted,
            EventResult::Failed,
            EventResult::Refused,
            EventResult::Revoked,
            EventResult::Lost,
            EventResult::Unreachable,
            EventResult::Done,
            EventResult::Undone,
            EventResult::Finished,
        ];
        all.extend(AgentStatus::ALL.iter().map(|s| EventResult::Ended(*s)));
        crate::model::assert_words(&all, "event result");
        assert_eq!(EventResult::of_exit(0), EventResult::Ok);
        assert_eq!(EventResult::of_exit(3).to_string(), "exit 3");
        assert_eq!(
            EventResult::Ended(AgentStatus::Exited).to_string(),
            "exited"
        );
        for bad in ["exit 0", "exit 01", "exit", "exit -1", "OK"] {
            assert!(bad.parse::<EventResult>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&EventResult::Exit(2)).expect("json"),
            "\"exit 2\""
        );
    }
}
