//! Parsing a control command line: the words split like a POSIX shell would ([`shlex`]), then
//! clap ([`parse`], pure: no I/O, and a refusal is a value); the line as the audit trail shows
//! it ([`redacted`]). Each command's arguments are in its own file.

use clap::{Args, Parser, Subcommand};

use super::*;

#[derive(Debug, Parser)]
#[command(
    name = "ssh gw",
    bin_name = "ssh gw",
    about = "agentgate: your AI coding agents, on every machine, over plain ssh.",
    after_help = "Attach to an agent with `ssh -t NAME@gw`. Every command takes --help.\n\
                  Exit status: 0 ok, 1 failed or not found, 2 usage.",
    disable_version_flag = true,
    help_expected = true
)]
pub struct ControlCli {
    #[command(subcommand)]
    pub command: ControlCommand,
}

#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Create an agent and start it.
    Create(create::CreateArgs),
    /// List agents.
    #[command(visible_alias = "ls")]
    List(list::ListArgs),
    /// Show one agent in detail.
    Info(info::InfoArgs),
    /// Attach to an agent's terminal (needs `ssh -t`).
    Attach(NameArg),
    /// Watch every agent live, full screen: select, attach, stop, start, send a line (needs
    /// a terminal: `ssh -t gw`, which opens it when given no command).
    Top,
    /// Stop an agent (or every agent with a tag); its workspace is kept.
    Stop(many::Targets),
    /// Start a stopped or exited agent (or every agent with a tag).
    Start(many::Targets),
    /// Stop an agent, then start it again.
    Restart(NameArg),
    /// Create an agent from another: its settings and a copy of its workspace.
    Clone(clone::CloneArgs),
    /// Move an agent to another host, workspace and all.
    Migrate(migrate::MigrateArgs),
    /// Save an agent's workspace and settings (snapshot NAME), or list or remove snapshots.
    Snapshot(snapshot::SnapshotArgs),
    /// Delete an agent, its session and its workspace.
    #[command(visible_alias = "rm")]
    Destroy(destroy::DestroyArgs),
    /// Print an agent's output.
    Logs(logs::LogsArgs),
    /// Show what changed in an agent's workspace since it was created.
    Diff(diff::DiffArgs),
    /// Show the CPU, memory and disk each agent uses, busiest first.
    Usage(usage::UsageArgs),
    /// Type text into an agent (or every agent with a tag, or all), then Enter; a text of
    /// several lines is pasted.
    Send(send::SendArgs),
    /// Answer yes to what an agent asks (its CLI's permission dialog, a yes/no question).
    Approve(answer::AnswerArgs),
    /// Answer no to what an agent asks.
    Deny(answer::AnswerArgs),
    /// Set tags on an agent: tag NAME KEY=VALUE...
    Tag(tag::TagArgs),
    /// Remove tags from an agent: untag NAME KEY...
    Untag(tag::UntagArgs),
    /// Wait until an agent exits; exit with its exit code.
    Wait(wait::WaitArgs),
    /// Print agents' status changes as they happen, one per line, until you leave.
    Watch(watch::WatchArgs),
    /// Manage your notification channels (webhooks, ntfy): add, list, remove, test.
    Notify(notify::NotifyArgs),
    /// Let another operator see and use an agent (owner or admin).
    Share(share::ShareArgs),
    /// Take back a share (owner or admin).
    Unshare(share::ShareArgs),
    /// Show the audit trail: logins, commands, sessions, forwards.
    Events(events::EventsArgs),
    /// Manage who may log in: key add, list, remove (admins change, operators list).
    Key(key::KeyArgs),
    /// Manage secrets for agents' environments: set (value on stdin), list, remove.
    Secret(secret::SecretArgs),
    /// List the operators and their roles.
    Operator(key::OperatorArgs),
    /// Manage the hosts that run agents: key, add, list, info, check, remove.
    Host(host::HostArgs),
    /// Print an OpenSSH config with one Host per agent.
    SshConfig(ssh_config::SshConfigArgs),
    /// Show who you are to the gateway.
    Whoami(JsonArg),
    /// Show the gateway's version and its hosts' hostctl versions.
    Version(JsonArg),
    /// Check the gateway's health: local host, hosts, tailscaled.
    Doctor(JsonArg),
}

impl ControlCommand {
    /// The agent a command is about, for the audit trail.
    pub fn agent(&self) -> Option<&str> {
        match self {
            ControlCommand::Create(a) => Some(&a.name),
            ControlCommand::Info(a) => Some(&a.name),
            ControlCommand::Attach(a) | ControlCommand::Restart(a) => Some(&a.name),
            ControlCommand::Stop(a) | ControlCommand::Start(a) => a.name.as_deref(),
            ControlCommand::Destroy(a) => a.targets.name.as_deref(),
            ControlCommand::Tag(a) => Some(&a.name),
            ControlCommand::Untag(a) => Some(&a.name),
            ControlCommand::Clone(a) => Some(&a.dst),
            ControlCommand::Migrate(a) => Some(&a.name),
            ControlCommand::Snapshot(a) => a.agent(),
            ControlCommand::Diff(a) => Some(&a.name),
            ControlCommand::Logs(a) => Some(&a.name),
            ControlCommand::Send(a) => a.agent(),
            ControlCommand::Approve(a) | ControlCommand::Deny(a) => a.name.as_deref(),
            ControlCommand::Wait(a) => Some(&a.name),
            ControlCommand::Events(a) => a.agent.as_deref(),
            ControlCommand::Share(a) | ControlCommand::Unshare(a) => Some(&a.name),
            ControlCommand::List(_)
            | ControlCommand::Watch(_)
            | ControlCommand::Notify(_)
            | ControlCommand::Top
            | ControlCommand::Usage(_)
            | ControlCommand::Key(_)
            | ControlCommand::Secret(_)
            | ControlCommand::Operator(_)
            | ControlCommand::Host(_)
            | ControlCommand::SshConfig(_)
            | ControlCommand::Whoami(_)
            | ControlCommand::Version(_)
            | ControlCommand::Doctor(_) => None,
        }
    }

    /// Whether the command reads the client's stdin (others let it be discarded).
    pub(super) fn reads_stdin(&self) -> bool {
        match self {
            ControlCommand::Send(a) => a.reads_stdin(),
            ControlCommand::Create(a) => a.prompt.as_deref() == Some("-"),
            ControlCommand::Attach(_) | ControlCommand::Top => true,
            // Asking before acting on agents chosen by tag.
            ControlCommand::Stop(t) | ControlCommand::Start(t) => t.name.is_none() && !t.yes,
            ControlCommand::Destroy(a) => a.targets.name.is_none() && !a.targets.yes,
            ControlCommand::Secret(a) => a.command.reads_stdin(),
            ControlCommand::Key(a) => matches!(
                &a.command,
                key::KeyCommand::Add(add) if add.tailscale_login.is_none()
            ),
            _ => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The agent's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The result of parsing a command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<ControlCommand>),
    /// Nothing to run: print `text` (help, or a usage error) and exit with `status`.
    Print {
        text: String,
        status: u32,
        to_stderr: bool,
    },
}

/// Parses an exec string. Pure.
pub fn parse(line: &str) -> Parsed {
    let Some(words) = shlex::split(line) else {
        return Parsed::Print {
            text: "error: the command line has an unterminated quote or a trailing backslash\n"
                .into(),
            status: exit::USAGE,
            to_stderr: true,
        };
    };
    if words.is_empty() {
        return Parsed::Print {
            text: help_text(),
            status: exit::OK,
            to_stderr: false,
        };
    }
    match ControlCli::try_parse_from(std::iter::once("ssh gw".to_owned()).chain(words)) {
        Ok(cli) => Parsed::Run(Box::new(cli.command)),
        Err(e) => Parsed::Print {
            text: e.render().to_string(),
            status: u32::try_from(e.exit_code()).unwrap_or(exit::USAGE),
            to_stderr: e.use_stderr(),
        },
    }
}

/// The top-level help.
pub fn help_text() -> String {
    use clap::CommandFactory;
    ControlCli::command().render_help().to_string()
}

/// The command line as the audit trail and the log show it: the values of `--env K=V` (often
/// API keys) are replaced by `***`, and a channel's `--webhook`/`--ntfy` URL (which may hold
/// a token) is cut to its scheme and host.
pub fn redacted(line: &str) -> String {
    let Some(words) = shlex::split(line) else {
        return "<unparsable command line>".to_owned();
    };
    let mut out = Vec::with_capacity(words.len());
    let mut hide_next = false;
    let mut hide_url = false;
    for word in words {
        if word == "--" {
            hide_next = false;
            hide_url = false;
        }
        let shown = if hide_url {
            crate::store::ChannelUrl::new(word.clone()).masked()
        } else if hide_next {
            hide_value(&word)
        } else if let Some(url) = word
            .strip_prefix("--webhook=")
            .or_else(|| word.strip_prefix("--ntfy="))
        {
            // A channel's URL may hold a token (`notify add`).
            let option = &word[..word.len() - url.len()];
            format!(
                "{option}{}",
                crate::store::ChannelUrl::new(url.to_owned()).masked()
            )
        } else if let Some(pair) = word.strip_prefix("--env=") {
            format!("--env={}", hide_value(pair))
        } else if let Some(pair) = word.strip_prefix("-e").filter(|p| p.contains('=')) {
            format!("-e{}", hide_value(pair))
        } else {
            word.clone()
        };
        hide_next = word == "--env" || word == "-e";
        hide_url = word == "--webhook" || word == "--ntfy";
        out.push(shown);
    }
    shlex::try_join(out.iter().map(String::as_str))
        .unwrap_or_else(|_| "<unprintable command line>".to_owned())
}

fn hide_value(pair: &str) -> String {
    match pair.split_once('=') {
        Some((key, _)) => format!("{key}=***"),
        None => pair.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(line: &str) -> ControlCommand {
        match parse(line) {
            Parsed::Run(c) => *c,
            Parsed::Print { text, .. } => panic!("{line:?} did not parse: {text}"),
        }
    }

    fn printed(line: &str) -> (String, u32, bool) {
        match parse(line) {
            Parsed::Print {
                text,
                status,
                to_stderr,
            } => (text, status, to_stderr),
            Parsed::Run(c) => panic!("{line:?} parsed as {c:?}"),
        }
    }

    #[test]
    fn notify_add_takes_ntfy_options_only_with_ntfy() {
        let add = |line: &str| match run_of(line) {
            ControlCommand::Notify(notify::NotifyArgs {
                command: notify::NotifyCommand::Add(add),
            }) => notify::checked(add),
            other => panic!("{other:?}"),
        };
        let refused = add("notify add x --webhook http://h/ --title t").expect_err("refused");
        assert_eq!(refused.status, exit::USAGE);
        assert!(refused.message.contains("--ntfy"), "{}", refused.message);
        let taken = add("notify add x --ntfy http://h/t --priority 5").expect("taken");
        assert_eq!(taken.priority.as_deref(), Some("5"));
        assert_eq!(taken.events.len(), 4, "all events by default");
        match run_of("notify add x --ntfy http://h/t --title t --tags a,b --on waiting,exited") {
            ControlCommand::Notify(notify::NotifyArgs {
                command: notify::NotifyCommand::Add(add),
            }) => {
                assert_eq!(add.on, ["waiting", "exited"]);
                assert_eq!(add.ntfy_tags.as_deref(), Some("a,b"));
            }
            other => panic!("{other:?}"),
        }
        let (_, status, _) = printed("notify add x");
        assert_eq!(status, exit::USAGE);
    }

    #[test]
    fn send_takes_options_before_its_text_and_none_within() {
        let send = |line: &str| match run_of(line) {
            ControlCommand::Send(args) => args,
            other => panic!("{other:?}"),
        };
        let a = send("send meta --no-enter -");
        assert_eq!(
            (a.agent(), a.no_enter, a.reads_stdin()),
            (Some("meta"), true, true)
        );
        let a = send("send fix-ci git add --all");
        assert!(!a.all, "--all inside the text is text");
        assert_eq!(
            (a.agent(), a.rest.join(" ")),
            (Some("fix-ci"), "git add --all".into())
        );
        let a = send("send --tag k=v echo hi");
        assert_eq!(
            (a.agent(), a.first.as_deref(), a.rest.len()),
            (None, Some("echo"), 1)
        );
        let a = send("send --all --no-enter y");
        assert_eq!(
            (a.all, a.no_enter, a.agent(), a.first.as_deref()),
            (true, true, None, Some("y"))
        );
    }

    #[test]
    fn snapshot_takes_a_name_or_a_subcommand() {
        let snap = |line: &str| match run_of(line) {
            ControlCommand::Snapshot(args) => args,
            other => panic!("{other:?}"),
        };
        let a = snap("snapshot fix-ci --label 'before the refactor' --json");
        assert!(a.command.is_none());
        assert_eq!(
            (a.name.as_deref(), a.label.as_deref(), a.json),
            (Some("fix-ci"), Some("before the refactor"), true)
        );
        assert_eq!(a.agent(), Some("fix-ci"));
        match snap("snapshot list").command {
            Some(snapshot::SnapshotCommand::List(l)) => assert_eq!(l.name, None),
            other => panic!("{other:?}"),
        }
        match snap("snapshot list fix-ci --json").command {
            Some(snapshot::SnapshotCommand::List(l)) => {
                assert_eq!((l.name.as_deref(), l.json), (Some("fix-ci"), true))
            }
            other => panic!("{other:?}"),
        }
        match snap("snapshot remove fix-ci-20261123-1215").command {
            Some(snapshot::SnapshotCommand::Remove(r)) => assert_eq!(r.id, "fix-ci-20261123-1215"),
            other => panic!("{other:?}"),
        }
        // No agent, or an agent and a subcommand at once: usage errors.
        for bad in [
            "snapshot",
            "snapshot --label x",
            "snapshot remove",
            "snapshot fix-ci list",
            "snapshot list --label x",
        ] {
            let (text, status, _) = printed(bad);
            assert_eq!(status, exit::USAGE, "{bad}: {text}");
        }
        // The subcommands' names cannot be agents' names.
        for name in ["list", "remove", "snapshot", "diff"] {
            assert!(
                crate::auth::name_unavailable_reason(name).is_some(),
                "{name}"
            );
        }
    }

    #[test]
    fn from_snapshot_refuses_what_the_snapshot_decides() {
        match run_of("create new --from-snapshot x-20261123-1215 --host h2 --tag k=v --json") {
            ControlCommand::Create(a) => {
                assert_eq!(a.from_snapshot.as_deref(), Some("x-20261123-1215"));
                assert_eq!(a.template, None);
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "create new --from-snapshot s --git https://x/y",
            "create new --from-snapshot s --dir /srv",
            "create new --from-snapshot s --template claude",
            "create new --from-snapshot s --count 2",
            "create new --from-snapshot s -- make watch",
        ] {
            let (text, status, _) = printed(bad);
            assert_eq!(status, exit::USAGE, "{bad}: {text}");
            assert!(text.contains("--from-snapshot"), "{bad}: {text}");
        }
        match run_of("diff fix-ci --stat") {
            ControlCommand::Diff(a) => assert!(a.stat && !a.json),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resource_limits_parse_and_bad_ones_say_the_form_expected() {
        match run_of("create x --memory 512M --cpus 1.5 --pids 256") {
            ControlCommand::Create(a) => {
                assert_eq!(a.memory, Some(512 << 20));
                assert_eq!(a.cpus, Some(1500));
                assert_eq!(a.pids, Some(256));
            }
            other => panic!("{other:?}"),
        }
        match run_of("create x --cpus 0.5") {
            ControlCommand::Create(a) => {
                assert_eq!((a.memory, a.cpus, a.pids), (None, Some(500), None))
            }
            other => panic!("{other:?}"),
        }
        for (bad, says) in [
            ("create x --memory 0", "512M, 1.5G"),
            ("create x --memory 12X", "K, M, G or T"),
            ("create x --memory -1G", "--memory"),
            ("create x --cpus 0", "like 0.5, 1.5 or 2"),
            ("create x --cpus -1", "--cpus"),
            ("create x --pids 0", "a whole number like 256"),
            ("create x --pids 12X", "a whole number like 256"),
            (
                "create new --from-snapshot s --memory 1G",
                "--from-snapshot",
            ),
        ] {
            let (text, status, _) = printed(bad);
            assert_eq!(status, exit::USAGE, "{bad}: {text}");
            assert!(text.contains(says), "{bad}: {text}");
        }
    }

    #[test]
    fn status_lists_parse_into_their_fields() {
        match run_of("wait x --until waiting,exited --timeout 5") {
            ControlCommand::Wait(args) => {
                assert_eq!(
                    args.until.map(|s| s.0),
                    Some(vec!["waiting".into(), "exited".into()])
                );
            }
            other => panic!("{other:?}"),
        }
        match run_of("list --status idle") {
            ControlCommand::List(args) => {
                assert_eq!(args.status.map(|s| s.0), Some(vec!["idle".into()]))
            }
            other => panic!("{other:?}"),
        }
        match run_of("create x --idle-stop 30m") {
            ControlCommand::Create(args) => assert_eq!(args.idle_stop.as_deref(), Some("30m")),
            other => panic!("{other:?}"),
        }
        let (text, status, _) = printed("wait x --until sleeping");
        assert_eq!(status, exit::USAGE);
        assert!(text.contains("'sleeping' is not a status"), "{text}");
    }

    #[test]
    fn env_values_are_redacted_from_the_record() {
        assert_eq!(
            redacted("create x --env API_KEY=sekrit -e 'B=two words' --env=C=3 -eD=4 --tag k=v"),
            "create x --env 'API_KEY=***' -e 'B=***' '--env=C=***' '-eD=***' --tag 'k=v'"
        );
        assert_eq!(redacted("create x -- env A=1"), "create x -- env 'A=1'");
        assert_eq!(
            redacted("notify add p --ntfy https://u:tk_1@ntfy.sh/topic --title hi"),
            "notify add p --ntfy 'https://ntfy.sh/***' --title hi"
        );
        assert_eq!(
            redacted("notify add p --webhook=https://h.example/T0K3N"),
            "notify add p '--webhook=https://h.example/***'"
        );
    }

    #[test]
    fn words_are_split_like_a_shell() {
        match run_of("create fix-ci --env 'GREETING=hello world' -- sh -c 'echo hi'") {
            ControlCommand::Create(a) => {
                assert_eq!(a.env, [("GREETING".to_owned(), "hello world".to_owned())]);
                assert_eq!(a.command, ["sh", "-c", "echo hi"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_command_prints_help_and_succeeds() {
        let (text, status, to_stderr) = printed("");
        assert!(text.contains("create"), "{text}");
        assert_eq!((status, to_stderr), (0, false));
        let (text, status, _) = printed("help");
        assert!(text.contains("Usage"), "{text}");
        assert_eq!(status, 0);
    }

    #[test]
    fn unknown_commands_and_flags_are_usage_errors() {
        let (text, status, to_stderr) = printed("frobnicate");
        assert!(text.contains("error:"), "{text}");
        assert_eq!((status, to_stderr), (2, true));
        let (text, status, _) = printed("list --bogus");
        assert!(text.contains("--bogus"), "{text}");
        assert_eq!(status, 2);
        let (_, status, _) = printed("info");
        assert_eq!(status, 2);
        let (_, status, _) = printed("create x 'unterminated");
        assert_eq!(status, 2);
    }

    #[test]
    fn every_command_has_help() {
        for name in [
            "create", "list", "info", "attach", "stop", "start", "restart", "destroy", "logs",
            "send", "wait", "whoami", "version", "tag", "untag", "snapshot", "diff",
        ] {
            let (text, status, _) = printed(&format!("{name} --help"));
            assert_eq!(status, 0, "{name}");
            assert!(text.contains("Usage: ssh gw"), "{name}: {text}");
        }
    }
}
