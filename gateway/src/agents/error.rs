//! The one error of the agents core. Each route says it its own way: the control route as an
//! `error:` line, a hint and an exit status (`agents::said::CommandError`), the agent route the
//! same on the session's channel, a forward as the reason of a refused channel.

use std::path::PathBuf;

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
    /// An operator's agent on `local` without a sandbox, which would let it read the
    /// gateway's database and keys.
    #[error(
        "agent '{0}' would run on 'local' without a sandbox: an operator's agent there runs in \
         one, which hides the gateway's database and keys (without one it runs as the gateway's \
         own user)"
    )]
    UnsandboxedOnLocal(String),
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
    /// What only the agent's owner (its creator) or an admin may do (`what`: "share it").
    #[error("only the owner of agent '{agent}' ({}) or an admin can {what}",
        owner.as_deref().unwrap_or("none"))]
    NotOwner {
        agent: String,
        owner: Option<String>,
        what: &'static str,
    },
    /// Text for a terminal with a NUL byte in it, which would cut it short (`what`: whose).
    #[error("{what} contains a NUL byte (at byte {at})")]
    NulByte { what: String, at: usize },
    /// An environment variable's name that no program can be given, in hostctl's words.
    #[error("{0}")]
    BadEnvKey(String),

    // ---- shares and tags (`agents::shares`, `agents::tags`) ----
    #[error("no operator named '{0}'")]
    NoSuchOperator(String),
    /// Sharing an agent on `local` with an operator, who may not have agents there.
    #[error("'{operator}' is an operator and agent '{agent}' runs on 'local', {LOCAL_FOR_ADMINS}")]
    ShareOnLocal { operator: String, agent: String },
    #[error("'{operator}' owns agent '{agent}' already")]
    AlreadyOwner { operator: String, agent: String },
    #[error("agent '{agent}' is not shared with '{operator}'")]
    NotShared { operator: String, agent: String },
    /// A tag that `--tag K=V` could not select again.
    #[error("invalid tag '{key}={value}': {problem}")]
    BadTag {
        key: String,
        value: String,
        problem: TagProblem,
    },
    #[error("agent '{agent}' has no tag '{key}'")]
    NoSuchTag { agent: String, key: String },

    // ---- transfers: clone, migrate, snapshots, restore (`agents::transfer`) ----
    /// The agent's host does not answer, so its workspace cannot be reached (for `purpose`).
    #[error("agent '{name}' cannot be reached: its host '{host}' does not answer")]
    HostNotAnswering {
        name: String,
        host: String,
        purpose: Purpose,
    },
    #[error("agent '{name}' is already on host '{host}'")]
    AlreadyOnHost { name: String, host: String },
    /// A `--dir` workspace belongs to its host, not to the agent: it cannot move.
    #[error("agent '{name}' works in {}, a directory of host '{host}' that is not its own",
        path.display())]
    WorkspaceNotItsOwn {
        name: String,
        path: PathBuf,
        host: String,
        to: String,
    },
    /// The host a move goes to cannot be asked: nothing was touched yet.
    #[error("{cause}")]
    TargetNotAnswering {
        name: String,
        to: String,
        cause: Box<HostError>,
    },
    /// The host a move goes to has an agent of that name the gateway does not list.
    #[error("host '{host}' already has an agent named '{name}' that the gateway does not list")]
    UnlistedOnTarget { name: String, host: String },
    #[error("{cause}; agent '{name}' stays on host '{from}'")]
    CopyFailed {
        name: String,
        from: String,
        cause: Box<HostError>,
    },
    /// Something started the agent again while its workspace was copied: the copy is stale.
    #[error("agent '{name}' was started again during the move; it stays on host '{from}'")]
    StartedDuringMove {
        name: String,
        from: String,
        to: String,
    },
    #[error("starting agent '{name}' on host '{to}' failed: {cause}; it stays on host '{from}'")]
    StartOnTargetFailed {
        name: String,
        from: String,
        to: String,
        cause: Box<HostError>,
    },
    #[error(transparent)]
    BadLabel(#[from] LabelError),
    /// The host could not take the snapshot (`running`: the agent ran, so its files may have
    /// changed while they were read).
    #[error("snapshot of agent '{name}' failed: {cause}")]
    SnapshotFailed {
        name: String,
        host: String,
        running: bool,
        cause: Box<HostError>,
    },
    /// The host answered about another snapshot than the one asked for.
    #[error("the host answered snapshot '{requested}' with snapshot '{}'; nothing was recorded",
        answered.escape_debug())]
    WrongSnapshot { requested: String, answered: String },
    /// The agent has had `limit` snapshots this minute (their IDs are per minute).
    #[error("agent '{name}' has had {limit} snapshots this minute already")]
    TooManySnapshots { name: String, limit: u32 },
    /// What the store refused as a conflict while recording a snapshot, in its words.
    #[error("{0}")]
    SnapshotConflict(String),
    #[error("cannot format the time: {0}")]
    Clock(#[from] time::error::Format),
    /// There is no snapshot of that ID, or the operator may not see it: the same answer.
    #[error("no snapshot '{0}'")]
    NoSuchSnapshot(String),
    #[error("only the owner of snapshot '{id}' ({}) or an admin can remove it",
        owner.as_deref().unwrap_or("none"))]
    NotSnapshotOwner { id: String, owner: Option<String> },
    #[error("removing snapshot '{id}' on host '{host}' failed: {cause}; it is kept")]
    SnapshotRemoveFailed {
        id: String,
        host: String,
        cause: Box<HostError>,
    },
    #[error("snapshot '{id}' is on host '{host}', which the gateway no longer has")]
    SnapshotHostGone { id: String, host: String },
    #[error("snapshot '{0}' is on 'local', {LOCAL_FOR_ADMINS}")]
    SnapshotOnLocal(String),
    /// The snapshot could not be unpacked into the new agent's workspace (`host`: the
    /// snapshot's).
    #[error("restoring snapshot '{id}' failed: {cause}")]
    RestoreFailed {
        id: String,
        host: String,
        cause: Box<HostError>,
    },

    /// The secrets the agent's environment gets cannot be handed to it.
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a tag (`agents::tags::check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TagProblem {
    #[error("keys are 1 to {limit} characters, values at most {limit}")]
    Length { limit: usize },
    #[error("the key has a character other than letters, digits, '.', '_', '-', '/'")]
    KeyCharacter,
    #[error("the value has a control character")]
    ValueControl,
}

/// Why a snapshot's label is refused (`agents::transfer::snapshot::check_label`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("the label is {len} bytes long; the limit is {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("a label is one line of text: no newlines, tabs or escapes")]
    NotOneLine,
}

/// What an agent's workspace was to be reached for, when its host does not answer: each is
/// told what to do next in its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Migrate,
    Snapshot,
}

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
