//! What an SSH client is told when something fails, on either route: `CommandError` (`error:
//! MESSAGE`, an optional `hint: ...`, and the exit status) and how the core's errors, the
//! store's and the hosts' are said that way; the exit statuses ([`exit`]); and how an action
//! that took effect but could not be recorded is told (`recorded`). Below both routes, so the
//! agent route words its refusals as the control commands do without calling into them.

use crate::streams::CommandIo;

/// Exit statuses of control commands and of refused sessions on the agent route.
pub mod exit {
    pub const OK: u32 = 0;
    pub const FAILED: u32 = 1;
    pub const USAGE: u32 = 2;
    /// `wait --timeout` ran out (as `timeout(1)`).
    pub const TIMEOUT: u32 = 124;
    /// The client went away before the session ended (it closed its channel or its
    /// connection): as sshd records such a session, with no status the client saw.
    pub const CLIENT_GONE: u32 = 255;
}
use crate::hosts::HostError;
use crate::store::StoreError;

/// Why a command failed, as the client sees it: `error: MESSAGE` and an optional hint.
#[derive(Debug)]
pub struct CommandError {
    pub status: u32,
    pub message: String,
    pub hint: Option<String>,
}

impl CommandError {
    pub fn failed(message: impl Into<String>) -> Self {
        CommandError {
            status: exit::FAILED,
            message: message.into(),
            hint: None,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CommandError {
            status: exit::USAGE,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn no_agent(name: &str) -> Self {
        CommandError::failed(format!("no agent named '{name}'"))
            .hint("see the agents with: ssh gw list")
    }

    /// A session ended because the connection to the agent's host was lost.
    pub fn host_lost(host: &str, agent: &str) -> Self {
        CommandError {
            status: 255,
            message: format!(
                "the connection to host '{host}' was lost; agent '{agent}' keeps running there"
            ),
            hint: Some(
                "see the hosts with: ssh gw host list; connect again once it is back".into(),
            ),
        }
    }

    pub fn render(&self) -> String {
        match &self.hint {
            Some(hint) => format!("error: {}\nhint: {hint}\n", self.message),
            None => format!("error: {}\n", self.message),
        }
    }
}

impl std::fmt::Display for CommandError {
    /// The message alone (what the operations journal keeps of a failure).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<crate::agents::Error> for CommandError {
    fn from(e: crate::agents::Error) -> Self {
        use crate::agents::{Error, Purpose};
        // The core's own words; what follows adds the exit status and the hint.
        let said = e.to_string();
        match e {
            Error::NoSuchAgent(name) => CommandError::no_agent(&name),
            Error::LocalForAdminsOnly(ref name) => CommandError::failed(e.to_string())
                .hint(format!("an admin can move it: ssh gw migrate {name} HOST")),
            Error::StillCreating(_) => {
                CommandError::failed(e.to_string()).hint("try again in a moment")
            }
            Error::BadName(_) => CommandError::usage(e.to_string())
                .hint("agent names use lowercase letters, digits and '-', like fix-ci"),
            Error::NameOfAnOperator(_) => CommandError::usage(e.to_string()).hint(
                "an agent named like an operator would capture that operator's ssh logins; pick another name",
            ),
            Error::NameTaken(ref name) => CommandError::failed(e.to_string()).hint(format!(
                "pick another name, or remove it first: ssh gw destroy {name}"
            )),
            Error::NoSuchHost(_) => {
                CommandError::usage(e.to_string()).hint("see the hosts with: ssh gw host list")
            }
            Error::HostForAdminsOnly(_) => {
                CommandError::failed(e.to_string()).hint("pick another host: ssh gw host list")
            }
            Error::UnsandboxedOnLocal(_) => CommandError::failed(e.to_string())
                .hint("leave out --sandbox none, or pick another host: ssh gw host list"),
            Error::NoReachableHost { .. } => {
                CommandError::failed(e.to_string()).hint("see the hosts with: ssh gw host list")
            }
            Error::Conflict(message) => CommandError::failed(message),
            Error::CreatedNotRecorded { name, host, cause } => {
                let done = format!("agent '{name}' was created on host {host}");
                CommandError::failed(not_recorded(&done, &cause, SEEN_AGAIN))
                    .hint(format!("see it with: ssh gw info {name}"))
            }
            Error::Running(ref name) => CommandError::failed(e.to_string()).hint(format!(
                "stop it first (ssh gw stop {name}), or pass --force"
            )),
            Error::StateUnknown { .. } => CommandError::failed(e.to_string()).hint(
                "pass --force to forget it anyway; its files on the host are then left alone",
            ),
            Error::NotOwner { .. } | Error::NoSuchTag { .. } | Error::AlreadyOwner { .. } => {
                CommandError::failed(e.to_string())
            }
            Error::BadEnvKey(message) => CommandError::usage(message),
            Error::NulByte { .. } => CommandError::usage(said)
                .hint("a terminal cannot take NUL bytes: send text without them"),
            Error::NoSuchOperator(_) => CommandError::failed(e.to_string())
                .hint("see the operators with: ssh gw operator list"),
            Error::ShareOnLocal { ref agent, .. } => CommandError::failed(e.to_string())
                .hint(format!("move it first: ssh gw migrate {agent} HOST")),
            Error::NotShared { ref agent, .. } => CommandError::failed(e.to_string())
                .hint(format!("see whom it is shared with: ssh gw info {agent}")),
            Error::BadTag { .. } => CommandError::usage(e.to_string()).hint(
                "keys are letters, digits, '.', '_', '-' and '/'; values have no control characters",
            ),
            Error::HostNotAnswering {
                ref host, purpose, ..
            } => {
                let hint = match purpose {
                    Purpose::Migrate => {
                        "its workspace is on that host: migrate it once the host is back".to_owned()
                    }
                    Purpose::Snapshot => format!("see what fails with: ssh gw host check {host}"),
                };
                CommandError::failed(e.to_string()).hint(hint)
            }
            Error::AlreadyOnHost { .. } | Error::BadLabel(_) => CommandError::usage(e.to_string()),
            Error::WorkspaceNotItsOwn {
                ref name, ref to, ..
            } => CommandError::failed(e.to_string()).hint(format!(
                "copy it instead (ssh gw clone {name} NEW --host {to}), then destroy the original"
            )),
            Error::TargetNotAnswering { name, to, cause } => CommandError::from(*cause).hint(
                format!("agent '{name}' was not touched; check the host with: ssh gw host check {to}"),
            ),
            Error::UnlistedOnTarget { ref host, .. } => CommandError::failed(e.to_string()).hint(
                format!("see it with: ssh gw host info {host}; adopt or remove it there first"),
            ),
            Error::CopyFailed { .. }
            | Error::StartOnTargetFailed { .. }
            | Error::WrongSnapshot { .. }
            | Error::Clock(_)
            | Error::NotSnapshotOwner { .. }
            | Error::SnapshotOnLocal(_) => CommandError::failed(e.to_string()),
            Error::StartedDuringMove {
                ref name, ref to, ..
            } => CommandError::failed(e.to_string())
                .hint(format!("stop it, then try again: ssh gw migrate {name} {to}")),
            Error::SnapshotFailed {
                name,
                host,
                running,
                cause,
            } => {
                let hint = if running {
                    format!(
                        "if its files changed while they were read, stop it first: ssh gw stop {name}"
                    )
                } else {
                    format!("see what fails with: ssh gw host check {host}")
                };
                with_cause(said, *cause).hint(hint)
            }
            Error::TooManySnapshots { .. } => {
                CommandError::failed(e.to_string()).hint("try again in a minute")
            }
            Error::SnapshotConflict(message) => {
                CommandError::failed(message).hint("try again in a moment")
            }
            Error::NoSuchSnapshot(_) => CommandError::failed(e.to_string())
                .hint("see the snapshots with: ssh gw snapshot list"),
            Error::SnapshotRemoveFailed { cause, .. } => with_cause(said, *cause),
            Error::SnapshotHostGone { ref id, ref host } => CommandError::failed(e.to_string())
                .hint(format!(
                    "add the host again (ssh gw host add {host} ADDRESS) to reach it, or remove the snapshot: ssh gw snapshot remove {id}"
                )),
            Error::RestoreFailed { id, host, cause } => {
                // The receiving host found the bytes were not the ones recorded.
                let damaged = cause.to_string().contains("damaged");
                let told = with_cause(said, *cause);
                if damaged {
                    told.hint(format!(
                        "the archive on host '{host}' is not what was saved; remove it with: ssh gw snapshot remove {id}"
                    ))
                } else {
                    told
                }
            }
            Error::Secret(e) => e.into(),
            Error::Host(e) => e.into(),
            Error::Store(e) => e.into(),
        }
    }
}

/// `message` with the exit status and hint the host's error `cause` gets on its own.
fn with_cause(message: String, cause: HostError) -> CommandError {
    CommandError {
        message,
        ..CommandError::from(cause)
    }
}

impl From<crate::agents::secrets::SecretError> for CommandError {
    fn from(e: crate::agents::secrets::SecretError) -> Self {
        use crate::agents::secrets::SecretError;
        match e {
            SecretError::Unset(name) => CommandError::usage(format!("secret '{name}' is not set"))
                .hint(format!(
                    "an admin sets it with: ssh gw secret set {name} < file"
                )),
            SecretError::NotText(_) => CommandError::failed(e.to_string()),
            SecretError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error during a control command");
        CommandError::failed(format!(
            "the gateway's database failed: {}; see the gateway's log",
            e.cause()
        ))
    }
}

/// What becomes of a record the gateway could not write, when its next look at the host
/// writes it (a status: the host says it again).
pub const SEEN_AGAIN: &str = "it will be seen again by the next look at the host";

/// After an action took effect on a host, what the gateway's own record of it came to. A
/// record that failed does not make the command fail (what was done stays done): the client
/// is told on stderr what was done and that it was not recorded, and why, and what becomes
/// of the record (`later`, such as [`SEEN_AGAIN`]). Every command that acts on a host and
/// then writes the store says it this way.
pub async fn recorded<T>(
    io: &mut CommandIo,
    written: Result<T, StoreError>,
    done: impl FnOnce() -> String,
    later: &str,
) -> Option<T> {
    match written {
        Ok(value) => Some(value),
        Err(e) => {
            tracing::error!(error = %e, "an action on a host could not be recorded");
            io.write_err(&format!(
                "warning: {}
",
                not_recorded(&done(), &e, later)
            ))
            .await;
            None
        }
    }
}

/// The sentence of [`recorded`]: "agent 'x' was stopped on host h, but the gateway could not
/// record it: disk full (...); it will be seen again by the next look at the host".
pub fn not_recorded(done: &str, e: &StoreError, later: &str) -> String {
    format!(
        "{done}, but the gateway could not record it: {}; {later}",
        e.cause()
    )
}

impl From<HostError> for CommandError {
    fn from(e: HostError) -> Self {
        match &e {
            HostError::NotFound(m) => CommandError::failed(m.clone()),
            HostError::Rejected { code, message } => CommandError {
                status: if *code == hostctl::api::ErrorCode::InvalidInput {
                    exit::USAGE
                } else {
                    exit::FAILED
                },
                message: message.clone(),
                hint: None,
            },
            HostError::HostKeyChanged { host, .. } => {
                CommandError::failed(e.to_string()).hint(format!(
                    "check the key on the host itself; if it did change: ssh gw host check {host}"
                ))
            }
            HostError::AuthRefused { host, .. } => CommandError::failed(e.to_string())
                .hint(format!("see what to do with: ssh gw host check {host}")),
            HostError::Unreachable { host, .. } | HostError::Timeout { host, .. } => {
                tracing::warn!(error = %e, "host error during a control command");
                CommandError::failed(e.to_string())
                    .hint(format!("see what fails with: ssh gw host check {host}"))
            }
            _ => {
                tracing::warn!(error = %e, "host error during a control command");
                CommandError::failed(e.to_string())
            }
        }
    }
}

pub type CommandResult = Result<u32, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agents::{Error, LabelError, Purpose};

    fn said(e: Error) -> (u32, String) {
        let e = CommandError::from(e);
        (e.status, e.render())
    }

    fn unreachable() -> HostError {
        HostError::Unreachable {
            host: "h2".into(),
            reason: "connection refused".into(),
        }
    }

    #[test]
    fn a_bad_label_is_a_usage_error() {
        assert_eq!(
            said(Error::BadLabel(LabelError::NotOneLine)),
            (
                exit::USAGE,
                "error: a label is one line of text: no newlines, tabs or escapes\n".into()
            )
        );
    }

    #[test]
    fn an_agent_whose_host_does_not_answer_is_told_what_to_do_for_each_purpose() {
        let unanswered = |purpose| Error::HostNotAnswering {
            name: "w".into(),
            host: "h1".into(),
            purpose,
        };
        let first = "error: agent 'w' cannot be reached: its host 'h1' does not answer\nhint: ";
        assert_eq!(
            said(unanswered(Purpose::Migrate)).1,
            format!("{first}its workspace is on that host: migrate it once the host is back\n")
        );
        assert_eq!(
            said(unanswered(Purpose::Snapshot)).1,
            format!("{first}see what fails with: ssh gw host check h1\n")
        );
    }

    #[test]
    fn a_failed_transfer_keeps_the_hosts_exit_status_and_says_what_to_do() {
        let refused = HostError::Rejected {
            code: hostctl::api::ErrorCode::InvalidInput,
            message: "no such file".into(),
        };
        let failed = Error::SnapshotFailed {
            name: "w".into(),
            host: "h1".into(),
            running: true,
            cause: Box::new(refused),
        };
        assert_eq!(
            said(failed),
            (
                exit::USAGE,
                "error: snapshot of agent 'w' failed: no such file\nhint: if its files changed \
                 while they were read, stop it first: ssh gw stop w\n"
                    .into()
            )
        );
        // A restore whose bytes were not the ones saved says where the bad archive is; one
        // whose host cannot be reached keeps the host's own hint.
        let damaged = HostError::Rejected {
            code: hostctl::api::ErrorCode::Failed,
            message: "the archive is damaged".into(),
        };
        let restore = |cause| Error::RestoreFailed {
            id: "w-20261123-1215".into(),
            host: "h1".into(),
            cause: Box::new(cause),
        };
        assert_eq!(
            said(restore(damaged)).1,
            "error: restoring snapshot 'w-20261123-1215' failed: the archive is damaged\nhint: \
             the archive on host 'h1' is not what was saved; remove it with: ssh gw snapshot \
             remove w-20261123-1215\n"
        );
        assert_eq!(
            said(restore(unreachable())).1,
            "error: restoring snapshot 'w-20261123-1215' failed: host 'h2' cannot be reached: \
             connection refused\nhint: see what fails with: ssh gw host check h2\n"
        );
        let target = Error::TargetNotAnswering {
            name: "w".into(),
            to: "h2".into(),
            cause: Box::new(unreachable()),
        };
        assert_eq!(
            said(target),
            (
                exit::FAILED,
                "error: host 'h2' cannot be reached: connection refused\nhint: agent 'w' was \
                 not touched; check the host with: ssh gw host check h2\n"
                    .into()
            )
        );
    }
}
