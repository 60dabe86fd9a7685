//! An agent as both sides see it: what is asked at `create` (`CreateRequest`, its command
//! and workspace), what hostctl keeps (`AgentMeta`) and reports (`AgentInfo`, its status, how
//! its process ended, its screen), and terminal sizes.

use super::*;

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
    /// What the agent's processes (and the sessions inside it) run in. In a request, none
    /// means the host's default, bwrap where it works (see `hostctl::sandbox::choose`). hostctl
    /// writes down what it chose, so in a stored `meta.json` it
    /// is always set, except in one written before sandboxes existed: that agent runs
    /// without one (see [`AgentMeta::sandbox`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Sandbox>,
    /// What its template adds to its sandbox (files copied into its private home, paths
    /// bound in); nothing for an agent without a sandbox.
    #[serde(default, skip_serializing_if = "SandboxExtras::is_empty")]
    pub sandbox_extras: SandboxExtras,
    /// The sandbox's network: the host's (none said), or none at all (`create --network
    /// none`), which needs the sandbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// What its processes may use of the host (memory, CPU, processes); none asked, none
    /// applied. hostctl refuses an agent whose limits its host cannot apply.
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

/// What a template adds to its agents' sandboxes. Paths are written as the host user's
/// (`~/` is their real home on the agent's host) or absolute, and checked by [`Self::check`]
/// on both sides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxExtras {
    /// Files or directories of the host user's home (`~/.gitconfig`), copied into a new
    /// agent's private home at the same place when the host has them and the home does not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub home_files: Vec<String>,
    /// Shown read-only inside, at their own paths (a shared package cache, a monorepo).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_only: Vec<String>,
    /// Shown read-write inside, at their own paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_write: Vec<String>,
}

impl SandboxExtras {
    pub fn is_empty(&self) -> bool {
        self.home_files.is_empty() && self.read_only.is_empty() && self.read_write.is_empty()
    }

    /// Refuses a path that is not what its list needs, saying which and how to write it.
    /// `lists` names the three lists as the caller's user knows them (the configuration's
    /// keys).
    pub fn check(&self, lists: [&str; 3]) -> Result<(), String> {
        for path in &self.home_files {
            match path.strip_prefix("~/") {
                Some(rest) if plain_relative(rest) => {}
                _ => {
                    return Err(format!(
                        "{}: '{path}' is not a file of the host user's home: write it as ~/PATH (for example ~/.gitconfig), without '..'",
                        lists[0]
                    ));
                }
            }
        }
        for (list, paths) in [(lists[1], &self.read_only), (lists[2], &self.read_write)] {
            for path in paths {
                let ok = match path.strip_prefix("~/") {
                    Some(rest) => plain_relative(rest),
                    None => path
                        .strip_prefix('/')
                        .is_some_and(|rest| plain_relative(rest.trim_end_matches('/'))),
                };
                if !ok {
                    return Err(format!(
                        "{list}: '{path}' is not a path to bind into the sandbox: write an absolute path (/srv/cache) or one in the host user's home (~/.cache/pip), not / itself, without '..'"
                    ));
                }
            }
        }
        Ok(())
    }

    /// `path` as a path of this host, `~/` being `home`.
    pub fn resolve(path: &str, home: &std::path::Path) -> PathBuf {
        match path.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(path),
        }
    }
}

/// A relative path of plain names: not empty, no `.` or `..`, no empty component.
fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

impl CreateRequest {
    /// The plainest request: agent `name` runs the host user's login shell in a new empty
    /// workspace, with nothing else asked (the `shell` template's).
    pub fn login_shell(name: &str) -> CreateRequest {
        CreateRequest {
            name: name.to_owned(),
            template: default_template(),
            command: AgentCommand::LoginShell,
            restart_command: None,
            workspace: WorkspaceSource::Empty,
            env: BTreeMap::new(),
            tags: BTreeMap::new(),
            prompt: None,
            size: None,
            created_by: None,
            secret_names: Vec::new(),
            cli: None,
            sandbox: None,
            sandbox_extras: SandboxExtras::default(),
            network: None,
            limits: Limits::default(),
        }
    }
}

/// What an agent runs in on its host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sandbox {
    /// A bubblewrap sandbox: the system read-only, its workspace and its private home
    /// writable, the rest of the host user's files and other agents hidden, its own PID, IPC
    /// and UTS namespaces.
    Bwrap,
    /// No sandbox: the agent runs as the host user, seeing all the user can.
    None,
}

impl Sandbox {
    pub const ALL: [Sandbox; 2] = [Sandbox::Bwrap, Sandbox::None];

    /// Its name in flags, configuration and output (`bwrap`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Sandbox::Bwrap => "bwrap",
            Sandbox::None => "none",
        }
    }

    pub fn from_name(name: &str) -> Option<Sandbox> {
        Sandbox::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl std::fmt::Display for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sandbox {
    type Err = String;
    fn from_str(s: &str) -> Result<Sandbox, String> {
        Sandbox::from_name(s)
            .ok_or_else(|| format!("'{}' is not a sandbox: use bwrap or none", s.escape_debug()))
    }
}

/// A sandboxed agent's network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's, as any program of the host user has it (agents need their model's API).
    Shared,
    /// None: only a loopback of its own. Forwards to its own ports (`ssh -L`) still reach it.
    None,
}

impl Network {
    pub const ALL: [Network; 2] = [Network::Shared, Network::None];

    /// Its name in flags and output (`shared`, `none`).
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Shared => "shared",
            Network::None => "none",
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Network {
    type Err = String;
    fn from_str(s: &str) -> Result<Network, String> {
        Network::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "'{}' is not a network: use shared or none",
                    s.escape_debug()
                )
            })
    }
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

impl AgentMeta {
    /// What the agent runs in: as chosen at `create`, and none for an agent created before
    /// hostctl had sandboxes (it ran without one, and keeps doing so).
    pub fn sandbox(&self) -> Sandbox {
        self.request.sandbox.unwrap_or(Sandbox::None)
    }

    /// Whether its sandbox has a network of its own with nothing but a loopback.
    pub fn no_network(&self) -> bool {
        self.request.network == Some(Network::None) && self.sandbox() == Sandbox::Bwrap
    }
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

/// Where the SSH agents forwarded into an agent (`ssh -A NAME@gw`) are reached on its host
/// (`hostctl agent-socket`): a directory of the agent's own, holding one socket per
/// connection that forwards its agent, and the stable link its environment's `SSH_AUTH_SOCK`
/// names, which points at the newest of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSockets {
    /// The directory the sockets are made in (0700).
    pub dir: PathBuf,
    /// The stable link (`SSH_AUTH_SOCK` in the agent's environment and attached sessions).
    pub link: PathBuf,
}

/// What `hostctl agent-socket` does with the stable link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketLink {
    /// Leaves it as it is.
    Keep,
    /// Points it at this socket of the directory.
    To(String),
    /// Removes it: no connection forwards its agent any more.
    Remove,
}

/// The longest name a forwarded agent's socket has in its directory.
pub const MAX_SOCKET_ID_LEN: usize = 16;

/// Checks a forwarded agent's socket name: 1 to 16 lowercase hexadecimal digits (the gateway
/// makes them; the check keeps any other file name out of the directory's arrangement).
pub fn validate_socket_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_SOCKET_ID_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "invalid socket name '{}': 1 to {MAX_SOCKET_ID_LEN} lowercase hexadecimal digits",
            id.escape_debug()
        ));
    }
    Ok(())
}
