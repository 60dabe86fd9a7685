//! The `hostctl` binary: parses arguments, calls [`hostctl::HostCtl`], prints the result.
//!
//! With `--json`, success prints the result as JSON on stdout and exits 0; failure prints an
//! [`hostctl::api::ErrorReply`] on stdout and exits 1 (2 for bad input). Without `--json` the
//! output is for people.

use std::io::{Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostctl::api::{
    AgentCli, CreateInput, ErrorBody, ErrorCode, ErrorReply, Key, StartInput, TermSize, VersionInfo,
};
use hostctl::{Error, HostCtl};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "hostctl",
    version,
    about = "The host side of agentgate: agents in tmux on this machine"
)]
struct Cli {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, Subcommand)]
enum Verb {
    /// Create an agent from a JSON CreateRequest read on stdin.
    Create {
        #[arg(long)]
        json: bool,
    },
    /// List the agents on this host.
    List {
        #[arg(long)]
        json: bool,
        /// Read the screens only of panes with output at or after this time (Unix seconds):
        /// the others are as the caller last saw them.
        #[arg(long, value_name = "UNIX_SECONDS")]
        screens_after: Option<i64>,
    },
    /// Run hostctl calls sent as JSON lines on stdin, answering each as a JSON line on
    /// stdout (for the gateway: one process for many calls).
    Serve {
        /// The hostctl each call runs (default: the path this one was started as).
        #[arg(long, value_name = "PATH")]
        program: Option<std::path::PathBuf>,
    },
    /// Show one agent.
    Info {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Replace an agent's tags with the JSON object on stdin (`{"KEY": "VALUE", ...}`).
    Tags {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// End an agent's session, keeping its workspace.
    Stop {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Start a stopped or exited agent again.
    Start {
        name: String,
        #[arg(long)]
        cols: Option<u16>,
        #[arg(long)]
        rows: Option<u16>,
        /// Read the secrets for the agent's environment on stdin (JSON: {"secrets": {...}}).
        #[arg(long)]
        secrets_on_stdin: bool,
        #[arg(long)]
        json: bool,
    },
    /// Record an event an agent's CLI reports through its hooks (run by the CLI; see
    /// `hostctl::hooks`). Always exits 0 and prints nothing.
    #[command(hide = true)]
    Hook {
        /// hostctl's home (where `agents/` is).
        #[arg(long)]
        home: std::path::PathBuf,
        #[arg(long)]
        agent: String,
        /// The CLI: claude, codex, gemini or aider.
        cli: String,
        /// The event, for a CLI that passes it as an argument rather than on stdin.
        arg: Option<String>,
    },
    /// Print the name of each agent whose CLI reports a hook event, one per line, until stdin
    /// ends (for the gateway). The first line is empty: the watch is ready.
    HookWatch,
    /// Run as an agent's pane: set its environment and exec COMMAND (hostctl's own use).
    #[command(hide = true)]
    Launch {
        /// hostctl's home (where `agents/` is): the pane's environment does not say.
        #[arg(long)]
        home: std::path::PathBuf,
        name: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Run COMMAND as a session inside an agent's sandbox, which hostctl has joined
    /// (hostctl's own use).
    #[command(hide = true)]
    SandboxChild {
        #[arg(last = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// End an agent's session and delete its files and the workspace hostctl created.
    Destroy {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Print an agent's output.
    Logs {
        name: String,
        /// Only the last N lines.
        #[arg(short = 'n', long = "lines")]
        lines: Option<usize>,
        /// Keep printing new output.
        #[arg(short, long)]
        follow: bool,
        /// Keep terminal escape sequences.
        #[arg(long)]
        raw: bool,
    },
    /// Type text into an agent (paste it, when it has a line break), then Enter. Without TEXT
    /// (or with -), the text is read on stdin.
    Send {
        name: String,
        text: Vec<String>,
        /// Do not press Enter after the text.
        #[arg(long)]
        no_enter: bool,
        #[arg(long)]
        json: bool,
    },
    /// Press keys in an agent, by name (Enter, Esc, Tab, Up, Down, C-c, 1, y, ...).
    Keys {
        name: String,
        #[arg(required = true)]
        keys: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Attach this terminal to an agent's tmux session.
    Attach { name: String },
    /// Run a command (or, without -c, a login shell reading stdin) in an agent's workspace,
    /// with the agent's environment.
    Exec {
        name: String,
        /// The command line, run by the user's shell with -c.
        #[arg(short = 'c', long = "command", value_name = "COMMAND")]
        command: Option<String>,
        /// An extra environment variable, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
    },
    /// Serve SFTP on stdin/stdout (OpenSSH's sftp-server) from an agent's workspace.
    Sftp {
        name: String,
        /// An extra environment variable, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
    },
    /// Start mosh-server (with SERVER_ARGS, the options of `mosh-server new`) in an agent's
    /// workspace, on this host and outside the agent's sandbox, with an attach to the agent's
    /// tmux session as its command.
    Mosh {
        name: String,
        /// An extra environment variable, KEY=VALUE (repeatable).
        #[arg(long = "env", value_name = "K=V")]
        env: Vec<String>,
        #[arg(last = true)]
        server_args: Vec<String>,
    },
    /// Relay stdin and stdout to TCP PORT on agent NAME's own loopback (inside its sandbox's
    /// network when it has none of the host's).
    Dial { name: String, port: u16 },
    /// Write an agent's workspace to stdout as a tar stream.
    Pack { name: String },
    /// Make workspaces/NAME from a tar stream on stdin (for a clone or a migration).
    Unpack {
        name: String,
        /// The gateway's operation the copy is for: it is marked as that operation's until an
        /// agent takes it.
        #[arg(long, value_name = "ID")]
        operation: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Make workspaces/NAME from a snapshot's archive (gzip-compressed tar) on stdin, once its
    /// size and SHA-256 are found to be the ones given.
    UnpackSnapshot {
        name: String,
        #[arg(long, value_name = "HEX")]
        sha256: String,
        /// The archive's size in bytes, as recorded: more is refused before it is unpacked.
        #[arg(long, value_name = "BYTES")]
        size: u64,
        /// The gateway's operation the copy is for (see `unpack`).
        #[arg(long, value_name = "ID")]
        operation: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Save an agent's workspace and settings as a snapshot (JSON SnapshotRequest on stdin).
    Snapshot {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a snapshot's archive to stdout.
    SnapshotRead { id: String },
    /// List the snapshots on this host (whole ones; the rest are named as skipped).
    SnapshotList {
        #[arg(long)]
        json: bool,
    },
    /// Delete a snapshot's archive and description.
    SnapshotRemove {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Show what changed in an agent's workspace since it was created.
    Diff {
        name: String,
        /// Names and counts only.
        #[arg(long)]
        stat: bool,
        #[arg(long)]
        json: bool,
    },
    /// Fingerprint a workspace (paths, modes, contents, link targets).
    Digest {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an unpacked workspace that no agent owns.
    Discard {
        name: String,
        /// Only a copy marked as this operation's (whole or partial).
        #[arg(long, value_name = "ID")]
        operation: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Keep a pane's output (stdin) in PATH, moving it to PATH.1 and starting anew whenever it
    /// would pass MAX bytes (what tmux's pipe-pane runs for each agent).
    #[command(hide = true)]
    LogWriter {
        path: std::path::PathBuf,
        #[arg(long)]
        max: u64,
    },
    /// Show the CPU, memory and disk each agent uses (or only agent NAME's).
    Usage {
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Arrange the directory of the SSH agents forwarded into agent NAME (`ssh -A`): keep
    /// the sockets named, remove the others, and point the stable link (what SSH_AUTH_SOCK
    /// names inside the agent) at one, or remove it.
    AgentSocket {
        name: String,
        /// A live socket to keep (its name in the directory).
        #[arg(long, value_name = "ID")]
        keep: Vec<String>,
        /// Point the stable link at this socket.
        #[arg(long, value_name = "ID", conflicts_with = "unlink")]
        link: Option<String>,
        /// Remove the stable link.
        #[arg(long)]
        unlink: bool,
        #[arg(long)]
        json: bool,
    },
    /// Print hostctl's version, its API version and tmux's version.
    Version {
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod call_agreement;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Verb::Hook {
        home,
        agent,
        cli,
        arg,
    } = &cli.verb
    {
        // A hook never changes what the CLI does: whatever happens, exit 0 and print nothing
        // on stdout (the CLI would read it as a decision).
        if let Some(cli) = AgentCli::from_name(cli) {
            let files = hostctl::files::Files::new(home.clone());
            if let Err(e) =
                hostctl::hooks::record(&files, agent, cli, arg.as_deref(), std::io::stdin())
            {
                eprintln!("hostctl hook: {e}");
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Verb::Launch {
        home,
        name,
        command,
    } = &cli.verb
    {
        let ctl = HostCtl::new(hostctl::files::Files::new(home.clone()));
        let e = ctl.launch(name, command);
        eprintln!("hostctl: {e}");
        return ExitCode::from(127);
    }
    if let Verb::SandboxChild { command } = &cli.verb {
        let e = hostctl::enter::child(command);
        eprintln!("hostctl: {e}");
        return ExitCode::from(127);
    }
    let ctl = match HostCtl::from_env() {
        Ok(c) => c,
        Err(e) => return fail(&e, false),
    };
    match cli.verb {
        Verb::Create { json } => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                return fail(&Error::InvalidInput(format!("reading stdin: {e}")), json);
            }
            let input: CreateInput = match serde_json::from_str(&input) {
                Ok(r) => r,
                Err(e) => {
                    return fail(
                        &Error::InvalidInput(format!("stdin is not a CreateRequest: {e}")),
                        json,
                    );
                }
            };
            report(ctl.create(input.request, &input.secrets), json, |i| {
                format!("created {} ({})", i.name, i.status.as_str())
            })
        }
        Verb::List {
            json,
            screens_after,
        } => report(ctl.list(screens_after), json, |agents| {
            agents
                .iter()
                .map(|a| format!("{}\t{}", a.name, a.status.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        }),
        Verb::Info { name, json } => report(ctl.info(&name), json, |i| {
            serde_json::to_string_pretty(i).unwrap_or_default()
        }),
        Verb::Tags { name, json } => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                return fail(&Error::InvalidInput(format!("reading stdin: {e}")), json);
            }
            match serde_json::from_str(&input) {
                Ok(tags) => report(ctl.set_tags(&name, tags), json, |i| {
                    format!("tags of {} set", i.name)
                }),
                Err(e) => fail(
                    &Error::InvalidInput(format!(
                        "the tags on stdin are not a JSON object of strings: {e}"
                    )),
                    json,
                ),
            }
        }
        Verb::Stop { name, json } => {
            report(ctl.stop(&name), json, |i| format!("stopped {}", i.name))
        }
        Verb::Start {
            name,
            cols,
            rows,
            secrets_on_stdin,
            json,
        } => {
            let size = match (cols, rows) {
                (Some(cols), Some(rows)) => Some(TermSize { cols, rows }),
                _ => None,
            };
            let mut input = StartInput::default();
            if secrets_on_stdin {
                let mut text = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut text) {
                    return fail(&Error::InvalidInput(format!("reading stdin: {e}")), json);
                }
                input = match serde_json::from_str(&text) {
                    Ok(i) => i,
                    Err(e) => {
                        return fail(
                            &Error::InvalidInput(format!("stdin is not a StartInput: {e}")),
                            json,
                        );
                    }
                };
            }
            report(ctl.start(&name, size, &input.secrets), json, |i| {
                format!("{} is {}", i.name, i.status.as_str())
            })
        }
        Verb::HookWatch => match ctl.hook_watch(std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, false),
        },
        // Answered above, before hostctl's home is read from the environment.
        Verb::Hook { .. } | Verb::Launch { .. } | Verb::SandboxChild { .. } => ExitCode::SUCCESS,
        Verb::Destroy { name, json } => report(
            ctl.destroy(&name)
                .map(|()| serde_json::json!({ "destroyed": name })),
            json,
            |_| "destroyed".to_owned(),
        ),
        Verb::Logs {
            name,
            lines,
            follow,
            raw,
        } => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            match ctl.logs(&name, lines, follow, raw, &mut lock) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, false),
            }
        }
        Verb::Send {
            name,
            text,
            no_enter,
            json,
        } => {
            let text = if text.is_empty() || text == ["-"] {
                let mut input = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                    return fail(&Error::InvalidInput(format!("reading stdin: {e}")), json);
                }
                // A trailing newline is the end of the input, not a key press.
                input.strip_suffix('\n').unwrap_or(&input).to_owned()
            } else {
                text.join(" ")
            };
            report(ctl.send(&name, &text, !no_enter), json, |_| {
                "sent".to_owned()
            })
        }
        Verb::Keys { name, keys, json } => {
            let keys: Result<Vec<Key>, String> = keys.iter().map(|k| Key::parse(k)).collect();
            match keys {
                Ok(keys) => report(ctl.keys(&name, &keys), json, |_| "pressed".to_owned()),
                Err(e) => fail(&Error::InvalidInput(e), json),
            }
        }
        Verb::Attach { name } => match ctl.attach(&name) {
            Ok(never) => match never {},
            Err(e) => fail(&e, false),
        },
        Verb::Exec { name, command, env } => {
            let mut pairs = Vec::new();
            for word in env {
                match word.split_once('=') {
                    Some((k, v)) => pairs.push((k.to_owned(), v.to_owned())),
                    None => {
                        return fail(
                            &Error::InvalidInput(format!("--env {word} is not KEY=VALUE")),
                            false,
                        );
                    }
                }
            }
            match ctl.exec(&name, command.as_deref(), &pairs) {
                Ok(never) => match never {},
                Err(e) => fail(&e, false),
            }
        }
        Verb::Dial { name, port } => match hostctl::enter::dial(&ctl.files, &name, port) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e, false),
        },
        Verb::Sftp { name, env } => match env_pairs(&env).and_then(|env| ctl.sftp(&name, &env)) {
            Ok(never) => match never {},
            Err(e) => fail(&e, false),
        },
        Verb::Mosh {
            name,
            env,
            server_args,
        } => match env_pairs(&env).and_then(|env| ctl.mosh(&name, &env, &server_args)) {
            Ok(never) => match never {},
            Err(e) => fail(&e, false),
        },
        Verb::Pack { name } => match ctl.pack(&name) {
            Ok(never) => match never {},
            Err(e) => fail(&e, false),
        },
        Verb::Unpack {
            name,
            operation,
            json,
        } => report(
            ctl.unpack(&name, operation.as_deref())
                .map(|workspace| hostctl::api::Unpacked { workspace }),
            json,
            |u| format!("unpacked into {}", u.workspace.display()),
        ),
        Verb::UnpackSnapshot {
            name,
            sha256,
            size,
            operation,
            json,
        } => report(
            ctl.unpack_verified(
                &name,
                &sha256,
                size,
                &mut std::io::stdin().lock(),
                operation.as_deref(),
            )
            .map(|workspace| hostctl::api::Unpacked { workspace }),
            json,
            |u| format!("unpacked into {}", u.workspace.display()),
        ),
        Verb::Snapshot { name, json } => {
            let mut input = String::new();
            if let Err(e) = std::io::stdin().read_to_string(&mut input) {
                return fail(&Error::InvalidInput(format!("reading stdin: {e}")), json);
            }
            match serde_json::from_str::<hostctl::api::SnapshotRequest>(&input) {
                Ok(request) => report(ctl.snapshot(&name, &request), json, |s| {
                    format!("snapshot {} ({} bytes, sha256 {})", s.id, s.size, s.sha256)
                }),
                Err(e) => fail(
                    &Error::InvalidInput(format!("stdin is not a SnapshotRequest: {e}")),
                    json,
                ),
            }
        }
        Verb::SnapshotRead { id } => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            match ctl.snapshot_read(&id, &mut lock) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => fail(&e, false),
            }
        }
        Verb::SnapshotList { json } => report(ctl.snapshot_list(), json, |list| {
            let mut text: Vec<String> = list
                .snapshots
                .iter()
                .map(|s| format!("{}\t{}\t{}\t{} bytes", s.id, s.agent, s.created_at, s.size))
                .collect();
            text.extend(list.skipped.iter().map(|why| format!("skipped {why}")));
            if text.is_empty() {
                "no snapshots".to_owned()
            } else {
                text.join("\n")
            }
        }),
        Verb::SnapshotRemove { id, json } => report(ctl.snapshot_remove(&id), json, |r| {
            format!("removed {}", r.removed)
        }),
        Verb::Diff { name, stat, json } => {
            // Errors go to stderr even with --json: stdout is the report, passed on as it is.
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            let options = hostctl::diff::DiffOptions { stat, json };
            match ctl.diff(&name, options, &mut lock) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e, false),
            }
        }
        Verb::Digest { name, json } => report(ctl.digest(&name), json, |d| {
            format!(
                "{} entries, {} bytes, sha256 {}",
                d.entries, d.bytes, d.sha256
            )
        }),
        Verb::Discard {
            name,
            operation,
            json,
        } => report(
            ctl.discard(&name, operation.as_deref())
                .map(|()| serde_json::json!({ "discarded": name })),
            json,
            |_| "discarded".to_owned(),
        ),
        Verb::LogWriter { path, max } => {
            match hostctl::logwriter::write_log(std::io::stdin().lock(), &path, max) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hostctl log-writer: {}: {e}", path.display());
                    ExitCode::FAILURE
                }
            }
        }
        Verb::Serve { program } => {
            // Each call runs the hostctl at that path: an upgraded one once it is in place.
            let program = program
                .map(std::ffi::OsString::from)
                .or_else(|| std::env::args_os().next())
                .unwrap_or_else(|| "hostctl".into());
            match hostctl::serve::run(&program, std::io::stdin().lock(), std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(
                    &Error::Failed(format!("reading requests from stdin: {e}")),
                    false,
                ),
            }
        }
        Verb::Usage { name, json } => report(ctl.usage(name.as_deref()), json, |report| {
            hostctl::usage::text(report)
        }),
        Verb::AgentSocket {
            name,
            keep,
            link,
            unlink,
            json,
        } => {
            let link = match (link, unlink) {
                (Some(id), _) => hostctl::api::SocketLink::To(id),
                (None, true) => hostctl::api::SocketLink::Remove,
                (None, false) => hostctl::api::SocketLink::Keep,
            };
            report(
                hostctl::agent_socket::arrange(&ctl.files, &name, &keep, &link),
                json,
                |sockets| sockets.link.display().to_string(),
            )
        }
        Verb::Version { json } => {
            let info = VersionInfo {
                version: hostctl::VERSION.to_owned(),
                api_version: hostctl::api::API_VERSION,
                tmux: hostctl::tmux::Tmux::version(),
            };
            report(Ok(info), json, |v| {
                format!(
                    "hostctl {} (api {}, {})",
                    v.version,
                    v.api_version,
                    v.tmux.as_deref().unwrap_or("tmux not found")
                )
            })
        }
    }
}

fn report<T: Serialize>(
    result: hostctl::Result<T>,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> ExitCode {
    match result {
        Ok(value) => {
            let text = if json {
                serde_json::to_string(&value).unwrap_or_default()
            } else {
                human(&value)
            };
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e, json),
    }
}

/// `--env` words (`KEY=VALUE`) as pairs; a word without `=` is refused, naming it.
fn env_pairs(words: &[String]) -> Result<Vec<(String, String)>, Error> {
    words
        .iter()
        .map(|word| match word.split_once('=') {
            Some((key, value)) => Ok((key.to_owned(), value.to_owned())),
            None => Err(Error::InvalidInput(format!(
                "--env {word} is not KEY=VALUE"
            ))),
        })
        .collect()
}

fn fail(error: &Error, json: bool) -> ExitCode {
    if json {
        let reply = ErrorReply {
            error: ErrorBody {
                code: error.code(),
                message: error.to_string(),
            },
        };
        println!("{}", serde_json::to_string(&reply).unwrap_or_default());
    } else {
        eprintln!("hostctl: error: {error}");
    }
    match error.code() {
        ErrorCode::InvalidInput => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}
