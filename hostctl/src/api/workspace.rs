//! Workspaces moved and kept: the digests of a transfer, snapshots (their IDs, records and
//! lists), and the changes `diff` reports.

use super::*;

/// A workspace's fingerprint (`hostctl digest`): equal digests mean the same paths, kinds,
/// permission bits, file contents and link targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceDigest {
    pub entries: u64,
    pub bytes: u64,
    pub sha256: String,
}

/// `hostctl unpack`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpacked {
    pub workspace: PathBuf,
}

/// The longest snapshot ID: IDs have the shape of agent names (see [`snapshot_id`]).
pub const MAX_SNAPSHOT_ID_LEN: usize = MAX_AGENT_NAME_LEN;

/// Checks a snapshot ID: the alphabet and length of an agent name, since an ID names files
/// under `snapshots/` on a host.
/// A SHA-256 as hostctl writes it: 64 hex digits.
pub fn validate_sha256(hex: &str) -> Result<(), String> {
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("'{}' is not a SHA-256 in hex", hex.escape_debug()))
    }
}

/// Checks the ID of one of the gateway's operations (a clone, a migration, a restore), which
/// hostctl writes into the mark of a copy it makes: 1 to 64 lowercase letters, digits and '-'.
pub fn validate_operation_id(id: &str) -> Result<(), String> {
    if (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not an operation ID (1 to 64 lowercase letters, digits and '-')",
            id.escape_debug()
        ))
    }
}

pub fn validate_snapshot_id(id: &str) -> Result<(), String> {
    validate_name("snapshot", id)
}

/// A new snapshot's ID: `AGENT-YYYYMMDD-HHMM` (UTC), with `-N` added for the `n`th (n >= 2)
/// snapshot of one agent in one minute. A long agent name is shortened so that the ID stays
/// within [`MAX_SNAPSHOT_ID_LEN`].
pub fn snapshot_id(agent: &str, utc_minute: &str, n: u32) -> String {
    let suffix = if n >= 2 {
        format!("-{utc_minute}-{n}")
    } else {
        format!("-{utc_minute}")
    };
    let room = MAX_SNAPSHOT_ID_LEN.saturating_sub(suffix.len());
    let stem: String = agent.chars().take(room).collect();
    format!("{}{suffix}", stem.trim_end_matches('-'))
}

/// `hostctl snapshot NAME --json`'s stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRequest {
    pub id: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Who asked, for the record.
    #[serde(default)]
    pub taken_by: Option<String>,
}

/// A snapshot as its host keeps it: `snapshots/ID.json` beside the archive `snapshots/ID.tar.gz`
/// (the workspace as a gzip-compressed tar). The host describes its snapshots with these files.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub id: String,
    /// The agent it was taken of.
    pub agent: String,
    #[serde(default)]
    pub label: Option<String>,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The archive's SHA-256, hex: a restore checks the bytes it receives against it.
    pub sha256: String,
    /// The agent's settings when it was taken.
    pub spec: CreateRequest,
    #[serde(default)]
    pub taken_by: Option<String>,
}

/// `hostctl snapshot-list --json`'s answer: the snapshots on this host, oldest first, so a
/// gateway that lost its records can take them up again.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotMeta>,
    /// Files in the snapshots directory that are not a whole snapshot, and why (a description
    /// that does not parse, an archive missing or of another size).
    #[serde(default)]
    pub skipped: Vec<String>,
}

/// `hostctl snapshot-remove ID --json`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRemoved {
    pub removed: String,
    /// False when there was nothing of it on the host.
    pub existed: bool,
}

/// `hostctl diff NAME --json`: what changed in an agent's workspace since it was created.
/// The gateway passes it on to the client as it is (`ssh gw diff NAME --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkspaceChanges {
    /// The workspace is a git repository: `git status` and `git diff HEAD`.
    Git {
        /// `git status --porcelain` entries, untracked files included (`??`).
        changes: Vec<GitChange>,
        /// The untracked files (not in `patch`).
        untracked: Vec<String>,
        /// Whether the repository has a commit to compare with.
        has_head: bool,
        /// `git diff HEAD` (without `--stat`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patch: Option<String>,
        /// `git diff HEAD --stat` (with `--stat`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stat: Option<String>,
    },
    /// Not a repository: the files compared with the list made when the agent was created.
    Files {
        /// When that list was made (RFC 3339, UTC).
        since: String,
        changes: Vec<FileChange>,
    },
}

/// One `git status --porcelain` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitChange {
    /// The two status letters (`" M"`, `"A "`, `"??"`, ...).
    pub status: String,
    pub path: String,
    /// The old path of a rename or copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// One file added, changed or removed since the agent was created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChange {
    pub change: ChangeKind,
    /// Relative to the workspace.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_after: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}
