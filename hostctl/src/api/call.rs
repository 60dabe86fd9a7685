//! The calls the gateway makes of hostctl: each verb with its arguments, its flags and the body
//! it reads on stdin, as one type ([`Call`]) that renders the words after `hostctl`.
//!
//! The gateway builds a [`Call`] and never writes a verb name or a flag itself; hostctl parses
//! the same words with its command-line parser (people use that command line too), and a test
//! in hostctl's `main.rs` parses every variant's words back into the verb they name.
//!
//! The calls hostctl makes of itself, through tmux and through an agent CLI's hooks
//! ([`OwnCall`]), are written here too, so that every verb's words are written in one place.
//!
//! **Invariant**: the words a variant renders are the ones the gateway sent before this type
//! existed, byte for byte, so that a hostctl of an older release on a host still understands
//! them. Rendering a call differently is an API change (see [`super::API_VERSION`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    AgentCli, CreateInput, Key, Secrets, SnapshotRequest, SocketLink, StartInput, TermSize,
};

/// One call of hostctl: `hostctl ARGV...`, and what goes on its stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// Creates an agent; the request and the secrets of its first start go on stdin.
    Create(Box<CreateInput>),
    /// Every agent on the host; with `screens_after` (Unix seconds, the host's clock), the
    /// screens only of panes with output since then.
    List {
        screens_after: Option<i64>,
    },
    Info {
        name: String,
    },
    /// Replaces an agent's tags (a JSON object on stdin).
    Tags {
        name: String,
        tags: BTreeMap<String, String>,
    },
    Stop {
        name: String,
    },
    /// Starts a stopped or exited agent, at `size` when given; `secrets` (when there are any)
    /// go on stdin, never on the command line.
    Start {
        name: String,
        size: Option<TermSize>,
        secrets: Secrets,
    },
    Destroy {
        name: String,
    },
    /// Fingerprints a workspace (an agent's, or one unpacked for it).
    Digest {
        name: String,
    },
    /// Removes an unpacked workspace that no agent owns; with `operation`, only a copy marked
    /// as that operation's.
    Discard {
        name: String,
        operation: Option<String>,
    },
    /// Types `text` into an agent (on stdin: text never goes on a command line), then Enter
    /// unless `enter` is false.
    Send {
        name: String,
        text: String,
        enter: bool,
    },
    /// Presses keys in an agent.
    Keys {
        name: String,
        keys: Vec<Key>,
    },
    /// Saves an agent's workspace and settings as a snapshot (the request on stdin).
    Snapshot {
        name: String,
        request: SnapshotRequest,
    },
    SnapshotList,
    SnapshotRemove {
        id: String,
    },
    Version,
    /// The CPU, memory and disk each agent uses (only agent `name`'s, when given).
    Usage {
        name: Option<String>,
    },
    /// Arranges the directory of agent `name`'s forwarded SSH agents: removes every socket
    /// but those in `keep` (and the link's), and does `link` to the stable link.
    AgentSocket {
        name: String,
        keep: Vec<String>,
        link: SocketLink,
    },
    /// What changed in an agent's workspace, as a report on stdout (JSON with `json`).
    Diff {
        name: String,
        stat: bool,
        json: bool,
    },
    /// An agent's output on stdout: the last `lines`, then, with `follow`, what comes.
    Logs {
        name: String,
        lines: Option<usize>,
        follow: bool,
        raw: bool,
    },
    /// A line with an agent's name for each event its CLI reports through its hooks.
    HookWatch,
    /// A command line run by the user's shell in an agent's workspace (a login shell reading
    /// stdin without `command`), with extra environment variables.
    Exec {
        name: String,
        command: Option<String>,
        env: Vec<(String, String)>,
    },
    /// OpenSSH's sftp-server on stdin and stdout, rooted at an agent's workspace, with extra
    /// environment variables (what sshd gives a subsystem: `SSH_CONNECTION`, ...).
    Sftp {
        name: String,
        env: Vec<(String, String)>,
    },
    /// A TCP connection to `port` on an agent's own loopback, relayed on stdin and stdout:
    /// inside its network namespace when its sandbox has no network (`ssh -L` to it).
    Dial {
        name: String,
        port: u16,
    },
    /// The agent's tmux session, on the terminal hostctl runs on.
    Attach {
        name: String,
    },
    /// `mosh-server new SERVER_ARGS... -- ` an attach to the agent's tmux session, started on
    /// the host (outside the agent's sandbox, where its tmux server is) in its workspace, with
    /// extra environment variables (`SSH_CONNECTION`, which `mosh-server -s` binds by, ...).
    Mosh {
        name: String,
        env: Vec<(String, String)>,
        server_args: Vec<String>,
    },
    /// An agent's workspace as a tar stream on stdout.
    Pack {
        name: String,
    },
    /// Makes `workspaces/NAME` from a tar stream on stdin, marked as `operation`'s.
    Unpack {
        name: String,
        operation: Option<String>,
    },
    /// A snapshot's archive on stdout.
    SnapshotRead {
        id: String,
    },
    /// Makes `workspaces/NAME` from a snapshot's archive on stdin, once it is found to be
    /// `size` bytes with SHA-256 `sha256`.
    UnpackSnapshot {
        name: String,
        sha256: String,
        size: u64,
        operation: Option<String>,
    },
    /// Runs calls sent as JSON lines on stdin ([`super::ServeRequest`]), each by `program`.
    Serve {
        program: Option<String>,
    },
}

/// How a call's standard streams are used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// It reads its body, if it has one ([`Call::body`]), and prints one JSON document on
    /// stdout: the answer, or an [`super::ErrorReply`].
    Answer,
    /// Its streams are the caller's to pump while it runs: a tar stream in or out, a log, a
    /// session's input and output, serve's request and reply lines.
    Streams,
}

/// The flag that asks a verb for JSON on stdout.
const JSON: &str = "--json";

impl Call {
    /// The verb's name: hostctl's first word, and how errors and time limits name the call.
    pub fn verb(&self) -> &'static str {
        match self {
            Call::Create(_) => "create",
            Call::List { .. } => "list",
            Call::Info { .. } => "info",
            Call::Tags { .. } => "tags",
            Call::Stop { .. } => "stop",
            Call::Start { .. } => "start",
            Call::Destroy { .. } => "destroy",
            Call::Digest { .. } => "digest",
            Call::Discard { .. } => "discard",
            Call::Send { .. } => "send",
            Call::Keys { .. } => "keys",
            Call::Snapshot { .. } => "snapshot",
            Call::SnapshotList => "snapshot-list",
            Call::SnapshotRemove { .. } => "snapshot-remove",
            Call::Version => "version",
            Call::Usage { .. } => "usage",
            Call::AgentSocket { .. } => "agent-socket",
            Call::Diff { .. } => "diff",
            Call::Logs { .. } => "logs",
            Call::HookWatch => "hook-watch",
            Call::Exec { .. } => "exec",
            Call::Sftp { .. } => "sftp",
            Call::Dial { .. } => "dial",
            Call::Attach { .. } => "attach",
            Call::Mosh { .. } => "mosh",
            Call::Pack { .. } => "pack",
            Call::Unpack { .. } => "unpack",
            Call::SnapshotRead { .. } => "snapshot-read",
            Call::UnpackSnapshot { .. } => "unpack-snapshot",
            Call::Serve { .. } => "serve",
        }
    }

    /// How its standard streams are used.
    pub fn exchange(&self) -> Exchange {
        match self {
            Call::Create(_)
            | Call::List { .. }
            | Call::Info { .. }
            | Call::Tags { .. }
            | Call::Stop { .. }
            | Call::Start { .. }
            | Call::Destroy { .. }
            | Call::Digest { .. }
            | Call::Discard { .. }
            | Call::Send { .. }
            | Call::Keys { .. }
            | Call::Snapshot { .. }
            | Call::SnapshotList
            | Call::SnapshotRemove { .. }
            | Call::Version
            | Call::Usage { .. }
            | Call::AgentSocket { .. } => Exchange::Answer,
            Call::Diff { .. }
            | Call::Logs { .. }
            | Call::HookWatch
            | Call::Exec { .. }
            | Call::Sftp { .. }
            | Call::Dial { .. }
            | Call::Attach { .. }
            | Call::Mosh { .. }
            | Call::Pack { .. }
            | Call::Unpack { .. }
            | Call::SnapshotRead { .. }
            | Call::UnpackSnapshot { .. }
            | Call::Serve { .. } => Exchange::Streams,
        }
    }

    /// The words after `hostctl`: the verb, its arguments and its flags.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec![self.verb().to_owned()];
        let mut push = |word: &str| words.push(word.to_owned());
        match self {
            Call::Create(_) | Call::SnapshotList | Call::Version => {}
            Call::List { screens_after } => {
                if let Some(t) = screens_after {
                    push("--screens-after");
                    push(&t.to_string());
                }
            }
            Call::Info { name }
            | Call::Tags { name, .. }
            | Call::Stop { name }
            | Call::Destroy { name }
            | Call::Digest { name }
            | Call::Snapshot { name, .. }
            | Call::Attach { name }
            | Call::Pack { name } => push(name),
            Call::SnapshotRemove { id } | Call::SnapshotRead { id } => push(id),
            Call::Dial { name, port } => {
                push(name);
                push(&port.to_string());
            }
            Call::Usage { name } => {
                if let Some(name) = name {
                    push(name);
                }
            }
            Call::AgentSocket { name, keep, link } => {
                push(name);
                for id in keep {
                    push("--keep");
                    push(id);
                }
                match link {
                    SocketLink::Keep => {}
                    SocketLink::To(id) => {
                        push("--link");
                        push(id);
                    }
                    SocketLink::Remove => push("--unlink"),
                }
            }
            Call::Start {
                name,
                size,
                secrets,
            } => {
                push(name);
                if let Some(size) = size {
                    push("--cols");
                    push(&size.cols.to_string());
                    push("--rows");
                    push(&size.rows.to_string());
                }
                if !secrets.0.is_empty() {
                    push("--secrets-on-stdin");
                }
            }
            Call::Discard { name, operation } | Call::Unpack { name, operation } => {
                push(name);
                if let Some(operation) = operation {
                    push("--operation");
                    push(operation);
                }
            }
            Call::Send { name, enter, .. } => {
                // `-`: the text is on stdin.
                push(name);
                push("-");
                if !enter {
                    push("--no-enter");
                }
            }
            Call::Keys { name, keys } => {
                push(name);
                for key in keys {
                    push(&key.tmux_name());
                }
            }
            Call::Diff { name, stat, json } => {
                push(name);
                if *stat {
                    push("--stat");
                }
                if *json {
                    push(JSON);
                }
            }
            Call::Logs {
                name,
                lines,
                follow,
                raw,
            } => {
                push(name);
                if let Some(n) = lines {
                    push("-n");
                    push(&n.to_string());
                }
                if *follow {
                    push("-f");
                }
                if *raw {
                    push("--raw");
                }
            }
            Call::HookWatch => {}
            Call::Exec { name, command, env } => {
                push(name);
                if let Some(line) = command {
                    push("-c");
                    push(line);
                }
                for (key, value) in env {
                    push("--env");
                    push(&format!("{key}={value}"));
                }
            }
            Call::Sftp { name, env } => {
                push(name);
                push_env(&mut push, env);
            }
            Call::Mosh {
                name,
                env,
                server_args,
            } => {
                push(name);
                push_env(&mut push, env);
                // mosh-server's own words follow, whatever they look like.
                push("--");
                for word in server_args {
                    push(word);
                }
            }
            Call::UnpackSnapshot {
                name,
                sha256,
                size,
                operation,
            } => {
                push(name);
                push("--sha256");
                push(sha256);
                push("--size");
                push(&size.to_string());
                if let Some(operation) = operation {
                    push("--operation");
                    push(operation);
                }
            }
            Call::Serve { program } => {
                if let Some(program) = program {
                    push("--program");
                    push(program);
                }
            }
        }
        // Every call with one answer asks for it as JSON, last (as the gateway always has);
        // so does unpack's, whose answer follows the stream it reads.
        if self.exchange() == Exchange::Answer
            || matches!(self, Call::Unpack { .. } | Call::UnpackSnapshot { .. })
        {
            words.push(JSON.to_owned());
        }
        words
    }

    /// What an [`Exchange::Answer`] call reads on stdin; none when it reads nothing (its
    /// stdin is then empty), and none for the calls whose streams the caller pumps.
    pub fn body(&self) -> Result<Option<Vec<u8>>, serde_json::Error> {
        Ok(match self {
            Call::Create(input) => Some(serde_json::to_vec(input)?),
            Call::Tags { tags, .. } => Some(serde_json::to_vec(tags)?),
            Call::Start { secrets, .. } if !secrets.0.is_empty() => {
                Some(serde_json::to_vec(&StartInput {
                    secrets: secrets.clone(),
                })?)
            }
            Call::Snapshot { request, .. } => Some(serde_json::to_vec(request)?),
            // A trailing newline ends the text; hostctl takes it off.
            Call::Send { text, .. } => Some(format!("{text}\n").into_bytes()),
            _ => None,
        })
    }
}

/// Pushes `--env KEY=VALUE` for each variable of `env`.
fn push_env(push: &mut impl FnMut(&str), env: &[(String, String)]) {
    for (key, value) in env {
        push("--env");
        push(&format!("{key}={value}"));
    }
}

/// A call hostctl makes of itself: no gateway makes it. tmux runs `launch` as an agent's pane
/// and `log-writer` for its output; an agent's CLI runs `hook` for each event it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnCall {
    /// Sets an agent's environment and execs `command` (hostctl's `home` is given, since the
    /// pane's environment does not say).
    Launch {
        home: PathBuf,
        name: String,
        command: Vec<String>,
    },
    /// Keeps a pane's output (stdin) in `path`, at most `max` bytes a file.
    LogWriter { path: PathBuf, max: u64 },
    /// Records an event `cli` reports for agent `agent`; `event` for a CLI that passes it as
    /// an argument rather than on stdin.
    Hook {
        home: PathBuf,
        agent: String,
        cli: AgentCli,
        event: Option<String>,
    },
    /// Runs a session's command inside an agent's sandbox, once hostctl has joined it
    /// (`crate::enter`); the command's words follow.
    SandboxChild { command: Vec<String> },
}

impl OwnCall {
    /// The verb's name: hostctl's first word.
    pub fn verb(&self) -> &'static str {
        match self {
            OwnCall::Launch { .. } => "launch",
            OwnCall::LogWriter { .. } => "log-writer",
            OwnCall::Hook { .. } => "hook",
            OwnCall::SandboxChild { .. } => "sandbox-child",
        }
    }

    /// The words after `hostctl`. A path that is not UTF-8 is written as far as it is.
    pub fn argv(&self) -> Vec<String> {
        let mut words = vec![self.verb().to_owned()];
        match self {
            OwnCall::Launch {
                home,
                name,
                command,
            } => {
                words.extend([
                    "--home".to_owned(),
                    home.to_string_lossy().into_owned(),
                    name.clone(),
                    // The command's own words follow, whatever they look like.
                    "--".to_owned(),
                ]);
                words.extend(command.iter().cloned());
            }
            OwnCall::LogWriter { path, max } => words.extend([
                path.to_string_lossy().into_owned(),
                "--max".to_owned(),
                max.to_string(),
            ]),
            OwnCall::Hook {
                home,
                agent,
                cli,
                event,
            } => {
                words.extend([
                    "--home".to_owned(),
                    home.to_string_lossy().into_owned(),
                    "--agent".to_owned(),
                    agent.clone(),
                    cli.name().to_owned(),
                ]);
                words.extend(event.clone());
            }
            OwnCall::SandboxChild { command } => {
                // The command's own words follow, whatever they look like.
                words.push("--".to_owned());
                words.extend(command.iter().cloned());
            }
        }
        words
    }
}
