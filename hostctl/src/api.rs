//! The JSON contract between the gateway and hostctl.
//!
//! Every type that crosses the process boundary (gateway → `hostctl VERB ... --json` on a host)
//! lives here and only here: the calls themselves, their words and bodies ([`Call`]), what
//! they answer, and the install probe a host answers before it has a hostctl ([`HostProbe`]). Changing a type in this module is an API change: bump
//! [`API_VERSION`] when an old peer could misread the new shape. Decoding is lenient on purpose
//! (unknown fields are ignored, new fields are optional) so a newer gateway can talk to an older
//! hostctl and the other way round.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod call;
mod probe;

pub use call::{Call, Exchange, OwnCall};
pub use probe::{HostProbe, PROBE_SCRIPT, ProbeNotUnderstood};

/// Version of this contract. hostctl reports it in `hostctl version --json`.
pub const API_VERSION: u32 = 7;

/// The longest agent name: a DNS label, so a name can also serve as a host alias.
pub const MAX_AGENT_NAME_LEN: usize = 63;

/// Checks an agent name: lowercase ASCII letters, digits and `-`, starting with a letter or a
/// digit, at most [`MAX_AGENT_NAME_LEN`] characters.
///
/// Names end up in tmux targets, file paths and SSH usernames, so this check is the first line
/// of defence against path traversal and option injection; both sides run it.
pub fn validate_agent_name(name: &str) -> Result<(), String> {
    validate_name("agent", name)
}

/// Checks a name of the same shape as an agent's (a host's, say); `kind` names it in errors.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a {kind} name cannot be empty"));
    }
    if name.len() > MAX_AGENT_NAME_LEN {
        return Err(format!(
            "{kind} name is {} characters long; the limit is {MAX_AGENT_NAME_LEN}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "invalid {kind} name '{}': it must start with a lowercase letter or a digit",
            name.escape_debug()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "invalid {kind} name '{}': '{}' is not allowed (use lowercase letters, digits and '-')",
            name.escape_debug(),
            bad.escape_debug()
        ));
    }
    Ok(())
}

/// Checks an environment variable name: a letter or `_`, then letters, digits and `_`.
pub fn validate_env_key(key: &str) -> Result<(), String> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a valid environment variable name",
            key.escape_debug()
        ))
    }
}

/// What an agent runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AgentCommand {
    /// The host user's login shell, interactive.
    LoginShell,
    /// A command line, run by the host user's login shell with `-c` (templates use this, so
    /// that the user's PATH from their profile applies).
    Shell { line: String },
    /// An argument vector executed as it is, with no shell in between.
    Argv { argv: Vec<String> },
}

impl AgentCommand {
    /// A one-line rendering for tables and `info`. Not meant to be parsed back.
    pub fn display(&self) -> String {
        match self {
            AgentCommand::LoginShell => "$SHELL -l".to_owned(),
            AgentCommand::Shell { line } => line.clone(),
            AgentCommand::Argv { argv } => argv
                .iter()
                .map(|a| {
                    shlex::try_quote(a)
                        .map(|q| q.into_owned())
                        .unwrap_or_else(|_| a.escape_debug().to_string())
                })
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// Where an agent's workspace comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkspaceSource {
    /// A new, empty directory `workspaces/<name>/`, owned (and destroyed) by hostctl.
    Empty,
    /// An existing directory on the host. hostctl never deletes it.
    Dir { path: PathBuf },
    /// A clone of a git repository into `workspaces/<name>/`, checked out at `git_ref` if given.
    Git {
        url: String,
        #[serde(default, rename = "ref")]
        git_ref: Option<String>,
    },
    /// `workspaces/<name>/` made beforehand by `hostctl unpack` (a clone or a migration),
    /// owned (and destroyed) by hostctl.
    Prepared,
}

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

/// One call through `hostctl serve`: the words after `hostctl` (`["list", "--json"]`), and
/// what to give it on stdin. A line of JSON on serve's stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeRequest {
    /// Chosen by the caller; the reply carries it back (replies come as calls end, in any
    /// order).
    pub id: u64,
    pub args: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
}

/// How a call through `hostctl serve` ended: a line of JSON on serve's stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeReply {
    pub id: u64,
    /// The exit status; none if it was ended by a signal (then `signal`) or could not run.
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
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

/// A terminal size in character cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

impl Default for TermSize {
    fn default() -> Self {
        TermSize {
            cols: 120,
            rows: 40,
        }
    }
}

/// The widest terminal an agent's window is given, in columns. tmux itself stops at 10,000,
/// where laying out and redrawing one window costs its server (which every agent on the host
/// shares) seconds of CPU per change.
pub const MAX_TERM_COLS: u16 = 1000;

/// The tallest terminal an agent's window is given, in rows.
pub const MAX_TERM_ROWS: u16 = 1000;

impl TermSize {
    /// The size within [`MAX_TERM_COLS`] x [`MAX_TERM_ROWS`], and at least 1 x 1. The gateway
    /// bounds what clients send; hostctl bounds it again, whoever asks.
    pub fn bounded(self) -> TermSize {
        TermSize {
            cols: self.cols.clamp(1, MAX_TERM_COLS),
            rows: self.rows.clamp(1, MAX_TERM_ROWS),
        }
    }
}

/// What the gateway asks for when it creates an agent (`hostctl create --json`, on stdin).
/// hostctl stores it, with what it adds, as `agents/<name>/meta.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    pub name: String,
    #[serde(default = "default_template")]
    pub template: String,
    pub command: AgentCommand,
    /// Used by `start` once the agent has run before (`claude --continue`, for example).
    #[serde(default)]
    pub restart_command: Option<AgentCommand>,
    pub workspace: WorkspaceSource,
    /// Environment of the agent's process, on top of the host user's own.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Text typed into the agent once, when it first starts.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub size: Option<TermSize>,
    /// Who asked, for the record.
    #[serde(default)]
    pub created_by: Option<String>,
    /// The names of the secrets in the agent's environment (their values are never stored
    /// here: they come with each start, see [`Secrets`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_names: Vec<String>,
    /// The agent CLI the gateway's rules recognise in the command, if any: hostctl wires that
    /// CLI's own hooks to `hostctl hook` at every start (see `hostctl::hooks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<AgentCli>,
}

/// An agent CLI whose screens and hooks agentgate knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentCli {
    Claude,
    Codex,
    Gemini,
    Aider,
}

impl AgentCli {
    pub const ALL: [AgentCli; 4] = [
        AgentCli::Claude,
        AgentCli::Codex,
        AgentCli::Gemini,
        AgentCli::Aider,
    ];

    /// Its name, which is also the name of its program.
    pub fn name(self) -> &'static str {
        match self {
            AgentCli::Claude => "claude",
            AgentCli::Codex => "codex",
            AgentCli::Gemini => "gemini",
            AgentCli::Aider => "aider",
        }
    }

    pub fn from_name(name: &str) -> Option<AgentCli> {
        AgentCli::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl std::fmt::Display for AgentCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a CLI's hook event means for its agent, whatever the CLI calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// The CLI started (or resumed) a session: it is at its prompt.
    SessionStarted,
    /// The operator's prompt reached the CLI: a turn begins.
    PromptSubmitted,
    /// A tool is about to run (or to be asked about).
    ToolStarted,
    /// A tool ran (or failed, or was refused).
    ToolEnded,
    /// The CLI asks permission to use a tool.
    PermissionAsked,
    /// The CLI asks the operator a question (a dialog that is not a permission).
    QuestionAsked,
    /// The turn ended: the CLI is back at its prompt.
    TurnEnded,
    /// The turn ended in an error (a refused API call, a rate limit).
    TurnFailed,
    /// The CLI's session ends: its process is about to exit.
    SessionEnded,
    /// Any other event: recorded, and means nothing for the status.
    #[serde(other)]
    Other,
}

/// One event an agent's CLI reported through its hooks (`hostctl hook`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    /// When hostctl received it (the host's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub cli: AgentCli,
    /// The CLI's own name of the event (`PermissionRequest`, `AfterAgent`), for people.
    pub event: String,
    pub kind: HookKind,
    /// The tool it is about (`Bash`, `run_shell_command`), when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What it is about, on one line and cut short: the command a tool runs, the file it
    /// writes, the question asked, the prompt submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The CLI's session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// What `hostctl send` and `hostctl keys` did: the time just before the last key (Enter, for
/// a text) and the screen then, so that the caller can tell whether the agent took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    /// The host's time just before the last key was pressed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The screen just before it (none when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
}

/// A key by name, for answering a dialog (`hostctl keys`, `ssh gw send --key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Key {
    Enter,
    Escape,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    Space,
    Backspace,
    /// Control and a letter (`C-c`).
    Ctrl(char),
    /// A digit or a lowercase or uppercase letter, as typed (`1`, `y`, `n`).
    Char(char),
}

impl Key {
    /// The names [`Key::parse`] takes, for messages.
    pub const NAMES: &str =
        "Enter, Esc, Tab, BTab, Up, Down, Left, Right, Space, BSpace, C-a ... C-z, 0-9, a-z, A-Z";

    pub fn parse(name: &str) -> Result<Key, String> {
        let key = match name {
            "Enter" | "enter" | "Return" | "CR" => Key::Enter,
            "Esc" | "esc" | "Escape" => Key::Escape,
            "Tab" | "tab" => Key::Tab,
            "BTab" | "BackTab" => Key::BackTab,
            "Up" | "up" => Key::Up,
            "Down" | "down" => Key::Down,
            "Left" | "left" => Key::Left,
            "Right" | "right" => Key::Right,
            "Space" | "space" => Key::Space,
            "BSpace" | "Backspace" => Key::Backspace,
            _ => {
                let mut chars = name.chars();
                match (chars.next(), chars.next(), chars.next(), chars.next()) {
                    (Some(c), None, None, None) if c.is_ascii_alphanumeric() => Key::Char(c),
                    (Some('C' | 'c'), Some('-'), Some(c), None) if c.is_ascii_alphabetic() => {
                        Key::Ctrl(c.to_ascii_lowercase())
                    }
                    _ => {
                        return Err(format!(
                            "'{}' is not a key name (keys: {})",
                            name.escape_debug(),
                            Key::NAMES
                        ));
                    }
                }
            }
        };
        Ok(key)
    }

    /// tmux's name of the key, for `send-keys`.
    pub fn tmux_name(self) -> String {
        match self {
            Key::Enter => "Enter".into(),
            Key::Escape => "Escape".into(),
            Key::Tab => "Tab".into(),
            Key::BackTab => "BTab".into(),
            Key::Up => "Up".into(),
            Key::Down => "Down".into(),
            Key::Left => "Left".into(),
            Key::Right => "Right".into(),
            Key::Space => "Space".into(),
            Key::Backspace => "BSpace".into(),
            Key::Ctrl(c) => format!("C-{c}"),
            Key::Char(c) => c.to_string(),
        }
    }
}

impl TryFrom<String> for Key {
    type Error = String;
    fn try_from(name: String) -> Result<Key, String> {
        Key::parse(&name)
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.tmux_name()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.tmux_name())
    }
}

/// The most hook events [`AgentInfo::hooks`] carries.
pub const HOOK_EVENTS_REPORTED: usize = 16;

/// Secret values for the agent's process, by variable name. They travel on hostctl's stdin
/// (never on a command line), reach the process through a file only its launcher reads (mode
/// 0600, removed at once), and are never written to meta.json.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("{k}=***")))
            .finish()
    }
}

/// `hostctl create`'s stdin: the request, and the secrets for the first start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateInput {
    #[serde(flatten)]
    pub request: CreateRequest,
    #[serde(default, skip_serializing_if = "is_empty")]
    pub secrets: Secrets,
}

/// `hostctl start --secrets-on-stdin`'s stdin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartInput {
    #[serde(default)]
    pub secrets: Secrets,
}

fn is_empty(s: &Secrets) -> bool {
    s.0.is_empty()
}

fn default_template() -> String {
    "shell".to_owned()
}

/// `agents/<name>/meta.json`: what was asked, plus what hostctl decided. The host describes
/// itself with these files, so the gateway's view can always be rebuilt from the hosts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMeta {
    #[serde(flatten)]
    pub request: CreateRequest,
    /// The absolute path of the workspace on this host.
    pub workspace_path: PathBuf,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// How many times the agent's process was started (1 after `create`).
    #[serde(default)]
    pub starts: u32,
    /// The CLI whose hooks were wired at the last start (none: the command is not a CLI whose
    /// hooks hostctl knows how to wire, and only its screen tells its state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<AgentCli>,
}

/// The state of an agent as its host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAgentStatus {
    /// Its tmux session exists and the process runs.
    Running,
    /// Its process ended; the session keeps the last screen (`remain-on-exit`).
    Exited,
    /// No tmux session: stopped by hand (or the host rebooted). The workspace is kept.
    Stopped,
}

impl HostAgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HostAgentStatus::Running => "running",
            HostAgentStatus::Exited => "exited",
            HostAgentStatus::Stopped => "stopped",
        }
    }
}

/// How an agent that does not run came to stop running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Ending {
    /// Its process exited with this code.
    Exited { code: i32 },
    /// Its process was killed by this signal.
    Killed { signal: i32 },
    /// `hostctl stop` ended it (a stop by hand, an idle stop, a migration).
    Stopped,
    /// Its tmux session was ended by something else than hostctl while the tmux server runs
    /// (`tmux kill-session` by hand, say).
    SessionGone,
    /// Its tmux server is not running, and hostctl did not stop the agent: the server was
    /// killed or crashed, or the host restarted.
    ServerGone,
}

impl Ending {
    /// Why the agent does not run, in words for `list` and the audit trail; none for a stop
    /// through hostctl (the gateway knows why it stopped it).
    pub fn reason(self) -> Option<String> {
        match self {
            Ending::Exited { code } => Some(format!("its process exited with {code}")),
            Ending::Killed { signal } => Some(match signal_name(signal) {
                Some(name) => format!("its process was killed by signal {signal} ({name})"),
                None => format!("its process was killed by signal {signal}"),
            }),
            Ending::Stopped => None,
            Ending::SessionGone => Some("its tmux session was ended outside agentgate".into()),
            Ending::ServerGone => Some("tmux server gone".into()),
        }
    }
}

/// The name of a Linux signal number, for the common ones.
pub fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        10 => "SIGUSR1",
        11 => "SIGSEGV",
        12 => "SIGUSR2",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        _ => return None,
    })
}

/// One agent, as `hostctl list --json` and `hostctl info NAME --json` report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub name: String,
    pub status: HostAgentStatus,
    /// The pid of the pane's process, while it runs.
    #[serde(default)]
    pub pid: Option<u32>,
    /// The exit code, once the process has ended.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// How the agent came not to run, as far as its host can tell (none while it runs, and
    /// from a hostctl older than API version 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ending: Option<Ending>,
    /// RFC 3339 time of the last output, when tmux knows it.
    #[serde(default)]
    pub last_activity: Option<String>,
    /// Everything that was asked, so an agent unknown to the gateway can be adopted.
    pub meta: AgentMeta,
    /// What its pane shows, while its process runs (the gateway tells from it whether the
    /// agent is working, waiting for the operator or idle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
    /// The host's time (Unix seconds) just before it looked at its panes: the caller's mark
    /// for the next `list --screens-after` (on the host's own clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<i64>,
    /// The last events its CLI reported through its hooks, oldest first (at most
    /// [`HOOK_EVENTS_REPORTED`]; none from a CLI without hooks, or from a hostctl older than
    /// API version 7).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<HookEvent>,
}

/// The most lines of a screen that [`Screen::tail`] carries.
pub const SCREEN_TAIL_LINES: usize = 20;

/// A running agent's pane, as it looked when the host was asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Screen {
    pub cols: u16,
    pub rows: u16,
    /// A fingerprint of the visible text (SHA-256, hex, of its lines trimmed on the right):
    /// equal fingerprints at the same size mean the screen did not change.
    pub hash: String,
    /// The last lines with text on them (at most [`SCREEN_TAIL_LINES`]), top to bottom,
    /// trimmed on the right.
    pub tail: Vec<String>,
    /// The name of the pane's foreground process (`bash` at a shell prompt, `make` during a
    /// build), as tmux reports it.
    #[serde(default)]
    pub foreground: Option<String>,
}

impl Screen {
    /// The screen of a pane of `cols` x `rows` showing `text` (as `tmux capture-pane -p`
    /// prints it), its foreground process being `foreground`.
    pub fn from_text(cols: u16, rows: u16, text: &str, foreground: Option<String>) -> Screen {
        use sha2::Digest;
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        let mut hasher = sha2::Sha256::new();
        for line in &lines {
            hasher.update(line.as_bytes());
            hasher.update(b"\n");
        }
        let hash = hasher
            .finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut tail: Vec<String> = lines
            .iter()
            .rev()
            .filter(|l| !l.is_empty())
            .take(SCREEN_TAIL_LINES)
            .map(|l| (*l).to_owned())
            .collect();
        tail.reverse();
        Screen {
            cols,
            rows,
            hash,
            tail,
            foreground,
        }
    }
}

/// `hostctl version --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub api_version: u32,
    pub tmux: Option<String>,
}

/// What every failing `--json` verb prints on stdout (and exits non-zero).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable failure classes, so the gateway can pick its exit status and hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidInput,
    Failed,
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        for good in ["a", "fix-ci", "0day", "a-b-c-9", &"x".repeat(63)] {
            assert!(validate_agent_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn names_refuse_everything_else() {
        for bad in [
            "",
            "-x",
            "Fix",
            "a_b",
            "a.b",
            "a/b",
            "../etc",
            "a b",
            "a;rm -rf",
            "$(id)",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(validate_agent_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn snapshot_ids_are_names_and_fit_the_limit() {
        assert_eq!(
            snapshot_id("fix-ci", "20261123-1215", 1),
            "fix-ci-20261123-1215"
        );
        assert_eq!(
            snapshot_id("fix-ci", "20261123-1215", 3),
            "fix-ci-20261123-1215-3"
        );
        let long = "a".repeat(50) + "-" + &"b".repeat(12);
        for n in [1, 2, 100] {
            let id = snapshot_id(&long, "20261123-1215", n);
            assert!(validate_snapshot_id(&id).is_ok(), "{id}");
            assert!(id.ends_with("-20261123-1215") || id.ends_with(&format!("-{n}")));
        }
        // A cut that ends on '-' does not leave "--".
        let id = snapshot_id(&("x".repeat(48) + "-yyyy"), "20261123-1215", 1);
        assert!(!id.contains("--"), "{id}");
        assert!(validate_snapshot_id("../x").is_err());
    }

    #[test]
    fn env_keys_are_checked() {
        assert!(validate_env_key("ANTHROPIC_API_KEY").is_ok());
        assert!(validate_env_key("_x1").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B", "$(id)"] {
            assert!(validate_env_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meta_round_trips_and_ignores_unknown_fields() {
        let json = r#"{"name":"a","command":{"kind":"argv","argv":["sleep","1"]},
            "workspace":{"kind":"git","url":"https://x/y.git","ref":"main"},
            "workspace_path":"/w/a","created_at":"2026-01-01T00:00:00Z","future_field":1}"#;
        let meta: AgentMeta = serde_json::from_str(json).expect("decodes");
        assert_eq!(meta.request.template, "shell");
        assert_eq!(
            meta.request.workspace,
            WorkspaceSource::Git {
                url: "https://x/y.git".into(),
                git_ref: Some("main".into())
            }
        );
        let again: AgentMeta =
            serde_json::from_str(&serde_json::to_string(&meta).expect("encodes")).expect("decodes");
        assert_eq!(again, meta);
    }

    #[test]
    fn screens_hash_their_text_and_keep_the_last_lines() {
        let a = Screen::from_text(80, 24, "one  \n\ntwo\n\n\n", Some("bash".into()));
        assert_eq!(a.tail, vec!["one", "two"]);
        assert_eq!(a.hash.len(), 32);
        // Trailing spaces do not count; any other change does.
        assert_eq!(
            a.hash,
            Screen::from_text(80, 24, "one\n\ntwo\n\n\n", None).hash
        );
        assert_ne!(
            a.hash,
            Screen::from_text(80, 24, "one\n\ntwo!\n\n\n", None).hash
        );
        let long: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let b = Screen::from_text(80, 40, &long, None);
        assert_eq!(b.tail.len(), SCREEN_TAIL_LINES);
        assert_eq!(b.tail.last().map(String::as_str), Some("line 39"));
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let cmd = AgentCommand::Argv {
            argv: vec!["echo".into(), "a b".into(), "it's".into()],
        };
        assert_eq!(cmd.display(), r#"echo 'a b' "it's""#);
    }

    #[test]
    fn terminal_sizes_are_bounded_both_ways() {
        let huge = TermSize {
            cols: u16::MAX,
            rows: 5000,
        };
        assert_eq!(
            huge.bounded(),
            TermSize {
                cols: MAX_TERM_COLS,
                rows: MAX_TERM_ROWS
            }
        );
        let zero = TermSize { cols: 0, rows: 0 };
        assert_eq!(zero.bounded(), TermSize { cols: 1, rows: 1 });
        assert_eq!(TermSize::default().bounded(), TermSize::default());
    }
}
