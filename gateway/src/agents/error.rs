//! The one error of the agents core. Each route says it its own way: the control route as an
//! `error:` line, a hint and an exit status (`agents::said::CommandError`), the agent route the
//! same on the session's channel, a forward as the reason of a refused channel.

use crate::agents::secrets::SecretError;
use crate::hosts::HostError;
use crate::store::StoreError;

/// Why `local` is refused to an operator: every refusal of it ends with these words.
pub const LOCAL_FOR_ADMINS: &str = "the gateway's own machine, where only admins may have agents \
     (they run as the gateway's own user)";

/// Why an operation on an agent did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// There is no agent of that name, or the operator may not see it: the same answer.
    #[error("no agent named '{0}'")]
    NoSuchAgent(String),
    /// The agent runs on `local`, where only admins may have agents.
    #[error("agent '{0}' runs on 'local', {LOCAL_FOR_ADMINS}")]
    LocalForAdminsOnly(String),
    /// A `create` of the agent is under way: its host may not have it yet.
    #[error("agent '{0}' is still being created")]
    StillCreating(String),
    /// A name no agent may take (invalid, or reserved), and why.
    #[error("{0}")]
    BadName(String),
    /// An agent named like an operator would capture that operator's logins.
    #[error("'{0}' is the name of an operator")]
    NameOfAnOperator(String),
    #[error("an agent named '{0}' already exists")]
    NameTaken(String),
    #[error("no host named '{0}'")]
    NoSuchHost(String),
    /// The host is `local`, where only admins may have agents.
    #[error("host '{0}' is, {LOCAL_FOR_ADMINS}")]
    HostForAdminsOnly(String),
    /// No host the operator may use is reachable (`but_local`: `local` is, and they may not).
    #[error("no host is reachable{}", if *.but_local {
        format!(" but 'local', {LOCAL_FOR_ADMINS}")
    } else {
        String::new()
    })]
    NoReachableHost { but_local: bool },
    /// What the store refused as a conflict (a name taken meanwhile), in its words.
    #[error("{0}")]
    Conflict(String),
    /// The agent was made on its host, but the gateway could not record it.
    #[error(
        "agent '{name}' was created on host {host}, but the gateway could not record it: {cause}"
    )]
    CreatedNotRecorded {
        name: String,
        host: String,
        cause: StoreError,
    },
    /// The agent runs, and what was asked would end it without `--force`.
    #[error("agent '{0}' is running")]
    Running(String),
    /// Its host cannot be asked, so what is on it is not known.
    #[error("the state of agent '{name}' is unknown (its host '{host}' cannot be asked)")]
    StateUnknown { name: String, host: String },
    /// The secrets the agent's environment gets cannot be handed to it.
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_of_local_says_why_in_the_same_words() {
        let why = "the gateway's own machine, where only admins may have agents (they run as \
                   the gateway's own user)";
        assert_eq!(
            Error::LocalForAdminsOnly("w".into()).to_string(),
            format!("agent 'w' runs on 'local', {why}")
        );
        assert_eq!(
            Error::HostForAdminsOnly("local".into()).to_string(),
            format!("host 'local' is, {why}")
        );
        assert_eq!(
            Error::NoReachableHost { but_local: true }.to_string(),
            format!("no host is reachable but 'local', {why}")
        );
        assert_eq!(
            Error::NoReachableHost { but_local: false }.to_string(),
            "no host is reachable"
        );
    }
}
