//! `create NAME [--template T] [--dir PATH | --git URL [--ref REF]] [--tag K=V]... [--env K=V]...
//! [--memory SIZE] [--cpus N] [--pids N] [--prompt TEXT | --prompt -] [-- COMMAND ARGS...]`, and `create NAME --from-snapshot ID`
//! (the restore is `agents::transfer::restore`'s).

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use hostctl::api::{AgentCommand, CreateRequest, Limits, Sandbox, WorkspaceSource};

use super::output::{agent_json, json_text, parse_pair};
use super::{Caller, CommandError, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::create::{Origin, create_reserved, reserve};
use crate::agents::deliver::Delivery;
use crate::agents::transfer::restore::{RestoreRequest, restore};
use crate::agents::{placement, tags};
use crate::config::Config;
use crate::config::Template;
use crate::store::AgentRecord;

fn parse_idle_stop_arg(text: &str) -> Result<String, crate::config::BadDuration> {
    crate::config::parse_idle_stop(text).map(|_| text.to_owned())
}

/// The template of an agent created without `--template`.
const DEFAULT_TEMPLATE: &str = "shell";

/// The most `--prompt -` reads from stdin.
const MAX_PROMPT: usize = 1024 * 1024;

#[derive(Clone, Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh core create scratch\n  ssh core create fix-ci --template claude --git https://github.com/me/app\n  ssh core \"create fix-ci --template claude --prompt 'make CI green'\"\n  ssh core \"create build --dir /srv/app -- make watch\"\n  ssh core create fix-ci-2 --from-snapshot fix-ci-20261123-1215 --host gpu-box\n\nssh joins the words of a remote command with spaces: quote the whole command line\nwhen an argument holds spaces."
)]
pub struct CreateArgs {
    /// The agent's name: lowercase letters, digits and '-', at most 63 characters.
    pub name: String,
    /// The template to run (see the gateway's config); default: `shell`, the login shell.
    #[arg(long, short = 't', value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Use this existing directory on the host as the workspace (it is never deleted).
    #[arg(long, value_name = "PATH", conflicts_with = "git")]
    pub dir: Option<PathBuf>,
    /// Clone this git repository as the workspace.
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
    /// Check out this branch, tag or commit of --git.
    #[arg(long = "ref", value_name = "REF", requires = "git")]
    pub git_ref: Option<String>,
    /// A label, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// An environment variable for the agent, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "K=V", value_parser = parse_pair)]
    pub env: Vec<(String, String)>,
    /// Text typed into the agent once it has started; `-` reads it from stdin.
    #[arg(long, value_name = "TEXT")]
    pub prompt: Option<String>,
    /// The host to run it on (see `host list`); default: the configured default host, else
    /// the reachable host with the fewest running agents.
    #[arg(long, short = 'H', value_name = "HOST")]
    pub host: Option<String>,
    /// Stop the agent once it has had neither output nor input this long (30m, 2h); it
    /// starts again on the next attach. Default: the template's `idle_stop`, else never.
    #[arg(long, value_name = "DURATION", value_parser = parse_idle_stop_arg)]
    pub idle_stop: Option<String>,
    /// What the agent runs in: `bwrap` (a bubblewrap sandbox: its workspace and a private
    /// home writable, the system read-only, the host user's other files and other agents
    /// hidden) or `none`. Default: the template's, else the gateway's, else bwrap where the
    /// host has it.
    #[arg(long, value_name = "bwrap|none")]
    pub sandbox: Option<Sandbox>,
    /// The sandbox's network: `shared` (the host's, the default) or `none` (a loopback of its
    /// own: nothing outside is reachable, `ssh -L` to its own ports still is).
    #[arg(long, value_name = "shared|none")]
    pub network: Option<hostctl::api::Network>,
    /// The most memory the agent's processes may use together (512M, 2G); past it the
    /// kernel kills one. Default: the template's `memory`, else no limit. Needs cgroups its
    /// host delegates to its user.
    #[arg(long, value_name = "SIZE", value_parser = hostctl::api::parse_memory, allow_hyphen_values = true)]
    pub memory: Option<u64>,
    /// How many CPUs' worth of time the agent may use (0.5, 1.5, 2). Default: the template's
    /// `cpus`, else no limit.
    #[arg(long, value_name = "N", value_parser = hostctl::api::parse_cpus, allow_hyphen_values = true)]
    pub cpus: Option<u32>,
    /// The most processes (and threads) the agent may have at once (256). Default: the
    /// template's `pids`, else no limit.
    #[arg(long, value_name = "N", value_parser = hostctl::api::parse_pids, allow_hyphen_values = true)]
    pub pids: Option<u32>,
    /// Make N agents, NAME-1 to NAME-N, alike (the names are all checked first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub count: Option<u32>,
    /// Start it from a snapshot (see `snapshot list`): its settings and exactly its
    /// workspace, on the snapshot's host unless --host says otherwise.
    #[arg(
        long,
        value_name = "ID",
        conflicts_with_all = ["template", "dir", "git", "git_ref", "count", "command", "memory", "cpus", "pids"]
    )]
    pub from_snapshot: Option<String>,
    /// Print the new agent as JSON (an array with --count).
    #[arg(long)]
    pub json: bool,
    /// Run this command instead of the template's (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub async fn run(
    core: &Core<'_>,
    config: &Config,
    caller: &Caller,
    mut args: CreateArgs,
    io: &mut CommandIo,
) -> CommandResult {
    if let Some(id) = args.from_snapshot.clone() {
        let prompt = match args.prompt.as_deref() {
            Some("-") => Some(read_prompt(io).await?),
            other => other.map(str::to_owned),
        };
        let agent = create_from(core, caller, &args, &id, prompt, io).await?;
        report(&args, &agent, io).await;
        if !args.json {
            io.write_out(&format!(
                "its workspace is snapshot {id}'s, checksum verified\n"
            ))
            .await;
        }
        return Ok(exit::OK);
    }
    let Some(count) = args.count else {
        let agent = create_one(core, config, caller, &args, io).await?;
        report(&args, &agent, io).await;
        return Ok(exit::OK);
    };
    // NAME-1 .. NAME-N: every name is checked before any agent is made.
    let names: Vec<String> = (1..=count).map(|i| format!("{}-{i}", args.name)).collect();
    for name in &names {
        placement::check_new_name(core, name).await?;
    }
    if args.prompt.as_deref() == Some("-") {
        args.prompt = Some(read_prompt(io).await?);
    }
    let mut made = Vec::new();
    for name in names {
        args.name = name;
        match create_one(core, config, caller, &args, io).await {
            Ok(agent) => {
                if !args.json {
                    report(&args, &agent, io).await;
                }
                made.push(agent);
            }
            Err(e) => {
                // The ones made stay; the error says which one failed and the rest is not tried.
                if args.json {
                    io.write_out(&json_text(&serde_json::Value::Array(
                        made.iter().map(agent_json).collect(),
                    )))
                    .await;
                }
                return Err(CommandError {
                    message: format!("agent '{}': {}", args.name, e.message),
                    ..e
                });
            }
        }
    }
    if args.json {
        io.write_out(&json_text(&serde_json::Value::Array(
            made.iter().map(agent_json).collect(),
        )))
        .await;
    }
    Ok(exit::OK)
}

async fn report(args: &CreateArgs, agent: &AgentRecord, io: &mut CommandIo) {
    if args.json {
        io.write_out(&json_text(&agent_json(agent))).await;
    } else {
        let name = &agent.name;
        // Limits are said only when there are some, so the usual line stays as it was.
        let limits = if agent.spec.limits.is_empty() {
            String::new()
        } else {
            format!(", limits {}", agent.spec.limits.display())
        };
        io.write_out(&format!(
            "created agent '{name}' on host {} ({}), workspace {}, {}{limits}\nattach with: ssh -t {name}@<gateway>\n",
            agent.host,
            super::output::status_text(agent),
            agent.workspace,
            super::output::sandbox_text(agent)
        ))
        .await;
    }
}

pub(super) async fn read_prompt(io: &mut CommandIo) -> Result<String, CommandError> {
    let bytes = io
        .read_stdin(MAX_PROMPT)
        .await
        .map_err(CommandError::usage)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CommandError::usage("the prompt on stdin is not UTF-8"))?;
    crate::agents::deliver::check_text(&text, "the prompt on stdin")?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

async fn create_one(
    core: &Core<'_>,
    config: &Config,
    caller: &Caller,
    args: &CreateArgs,
    io: &mut CommandIo,
) -> Result<AgentRecord, CommandError> {
    let name = args.name.clone();
    placement::check_new_name(core, &name).await?;
    for (k, v) in &args.tags {
        tags::check(k, v)?;
    }
    let template_name = args.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
    let template = config.templates.get(template_name).ok_or_else(|| {
        let known: Vec<&str> = config.templates.keys().map(String::as_str).collect();
        CommandError::usage(format!("no template named '{template_name}'"))
            .hint(format!("templates: {}", known.join(", ")))
    })?;
    let env = agent_env(template_name, template, &args.env)?;
    let prompt = match args.prompt.as_deref() {
        Some("-") => Some(read_prompt(io).await?),
        other => other.map(str::to_owned),
    };
    let (command, restart_command) = if args.command.is_empty() {
        (
            template_command(&template.command),
            template.restart_command.as_deref().map(template_command),
        )
    } else {
        (
            AgentCommand::Argv {
                argv: args.command.clone(),
            },
            None,
        )
    };
    check_command_size(&command)?;
    let workspace = match (&args.dir, &args.git) {
        (Some(dir), _) => {
            if !dir.is_absolute() {
                return Err(CommandError::usage(format!(
                    "--dir {} is not an absolute path",
                    dir.display()
                )));
            }
            WorkspaceSource::Dir { path: dir.clone() }
        }
        (None, Some(url)) => WorkspaceSource::Git {
            url: url.clone(),
            git_ref: args.git_ref.clone(),
        },
        (None, None) => WorkspaceSource::Empty,
    };
    let tags: BTreeMap<String, String> = args.tags.iter().cloned().collect();
    let cli = core.status_rules.cli_for(template_name, &command);
    // A CLI agentgate knows gets its first prompt from the gateway, once at its prompt, as
    // `send` gives one (and `create` says whether it took it); any other program from its
    // host, once its screen settles.
    let (prompt, first_prompt) = match cli {
        Some(_) => (None, prompt),
        None => (prompt, None),
    };
    let mut request = CreateRequest {
        name: name.clone(),
        template: template_name.to_owned(),
        command,
        restart_command,
        workspace,
        env,
        tags: tags.clone(),
        prompt,
        size: io.terminal.as_ref().map(|t| *t.size.borrow()),
        created_by: Some(caller.operator.name.clone()),
        secret_names: template.secrets.clone(),
        cli,
        sandbox: args.sandbox.or(template.sandbox).or(config.hosts.sandbox),
        sandbox_extras: template.sandbox_extras(),
        network: args.network,
        limits: limits_of(args, template),
    };
    // Placement counts the agents being created: choosing a host and reserving the new row
    // there are one step, so a create placed meanwhile sees this one.
    let placing = placement::PLACING.lock().await;
    let host_name = placement::choose_host(core, &caller.operator, args.host.as_deref()).await?;
    let host_name = host_name.as_str();
    placement::settle_sandbox(&caller.operator, host_name, &mut request, false)?;
    let host = core.hosts.get(host_name)?;
    let idle_stop = args
        .idle_stop
        .clone()
        .or_else(|| template.idle_stop.clone());
    let intent = reserve(core, host_name, &request, idle_stop, Origin::create()).await?;
    drop(placing);
    let agent = create_reserved(core, &host, &request, intent, |_| async {
        Ok::<(), CommandError>(())
    })
    .await?;
    let Some(text) = first_prompt else {
        return Ok(agent);
    };
    match crate::agents::deliver::first_prompt(core, &agent, &host, &text).await? {
        Delivery::Taken(_) | Delivery::Typed | Delivery::Submitted => Ok(core
            .store
            .agent(&agent.name)
            .await?
            .unwrap_or(agent)),
        Delivery::NotTaken { last_line } => Err(CommandError::failed(format!(
            "agent '{name}' was created on host {}, but did not take its prompt: its screen shows {}",
            agent.host,
            last_line
                .as_deref()
                .map_or_else(|| "nothing".to_owned(), |l| format!("{:?}", l.trim()))
        ))
        .hint(format!(
            "look at it with: ssh {name}@core; give the prompt again with: ssh core send {name} -"
        ))),
    }
}

/// `create NEW --from-snapshot ID [--host H]`: a new agent with the snapshot's settings (its
/// `--env` and `--tag` values added) and exactly the snapshot's workspace, on the snapshot's
/// host or on H.
async fn create_from(
    core: &Core<'_>,
    caller: &Caller,
    args: &CreateArgs,
    id: &str,
    prompt: Option<String>,
    io: &mut CommandIo,
) -> Result<AgentRecord, CommandError> {
    let request = RestoreRequest {
        snapshot: id.to_owned(),
        name: args.name.clone(),
        host: args.host.clone(),
        env: args.env.clone(),
        tags: args.tags.clone(),
        idle_stop: args.idle_stop.clone(),
        prompt,
        size: io.terminal.as_ref().map(|t| *t.size.borrow()),
        sandbox: args.sandbox,
    };
    Ok(restore(core, &caller.operator, request).await?)
}

/// The agent's environment: the template's, then `--env` values; every variable the template
/// requires must end up with a value (the gateway's own environment may supply it).
fn agent_env(
    template_name: &str,
    template: &Template,
    given: &[(String, String)],
) -> Result<BTreeMap<String, String>, CommandError> {
    let mut env = template.env.clone();
    for (key, value) in given {
        hostctl::api::validate_env_key(key).map_err(CommandError::usage)?;
        // The agent's program gets each variable as one `KEY=VALUE` string, which Linux takes
        // no longer than one argument: past that the agent could not start.
        let size = key.len() + 1 + value.len();
        if size > crate::hosts::MAX_ARGUMENT {
            return Err(CommandError::usage(format!(
                "the environment variable {key} is {size} bytes; at most {} are accepted",
                crate::hosts::MAX_ARGUMENT
            ))
            .hint("pass a long value in a file in the workspace"));
        }
        env.insert(key.clone(), value.clone());
    }
    for required in &template.required_env {
        if env.contains_key(required) {
            continue;
        }
        match std::env::var(required) {
            Ok(value) if !value.is_empty() => {
                env.insert(required.clone(), value);
            }
            _ => {
                return Err(CommandError::usage(format!(
                    "template '{template_name}' needs the environment variable {required}, which has no value"
                ))
                .hint(format!("pass it with --env {required}=VALUE")));
            }
        }
    }
    Ok(env)
}

/// The most bytes an agent's command may hold. tmux takes the command that starts a session
/// in one message of at most 16 KiB, paths and the rest of the command included.
pub const MAX_AGENT_COMMAND: usize = 8 * 1024;

/// Refuses an agent's command that its host could not start, naming it.
fn check_command_size(command: &AgentCommand) -> Result<(), CommandError> {
    let size = match command {
        AgentCommand::Argv { argv } => argv.iter().map(|a| a.len() + 1).sum::<usize>(),
        AgentCommand::Shell { line } => line.len(),
        AgentCommand::LoginShell => 0,
    };
    if size > MAX_AGENT_COMMAND {
        return Err(CommandError::usage(format!(
            "the agent's command is {size} bytes; at most {MAX_AGENT_COMMAND} are accepted"
        ))
        .hint("put a long command in a script in the workspace and run that"));
    }
    Ok(())
}

/// The agent's resource limits: each of `create`'s options, else its template's.
fn limits_of(args: &CreateArgs, template: &Template) -> Limits {
    let from_template = template.limits();
    Limits {
        memory_bytes: args.memory.or(from_template.memory_bytes),
        cpu_millis: args.cpus.or(from_template.cpu_millis),
        pids: args.pids.or(from_template.pids),
    }
}

fn template_command(line: &str) -> AgentCommand {
    if line.trim().is_empty() {
        AgentCommand::LoginShell
    } else {
        AgentCommand::Shell {
            line: line.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_required_variable_must_have_a_value() {
        let template = Template {
            command: "claude".into(),
            required_env: vec!["AGENTGATE_TEST_SURELY_UNSET_VAR".into()],
            ..Template::default()
        };
        let err = agent_env("claude", &template, &[]).expect_err("refused");
        assert!(
            err.message.contains("AGENTGATE_TEST_SURELY_UNSET_VAR"),
            "{}",
            err.message
        );
        assert_eq!(err.status, exit::USAGE);
        let env = agent_env(
            "claude",
            &template,
            &[("AGENTGATE_TEST_SURELY_UNSET_VAR".into(), "v".into())],
        )
        .expect("given");
        assert_eq!(env["AGENTGATE_TEST_SURELY_UNSET_VAR"], "v");
    }

    #[test]
    fn an_environment_variable_longer_than_a_program_can_get_is_refused() {
        let fits = "v".repeat(crate::hosts::MAX_ARGUMENT - 2);
        assert!(agent_env("shell", &Template::default(), &[("A".into(), fits)]).is_ok());
        let long = "v".repeat(crate::hosts::MAX_ARGUMENT);
        let err =
            agent_env("shell", &Template::default(), &[("A".into(), long)]).expect_err("refused");
        assert_eq!(err.status, exit::USAGE);
        assert_eq!(
            err.message,
            "the environment variable A is 131073 bytes; at most 131071 are accepted"
        );
    }

    #[test]
    fn bad_env_names_are_refused() {
        let err = agent_env("shell", &Template::default(), &[("A-B".into(), "x".into())])
            .expect_err("refused");
        assert_eq!(err.status, exit::USAGE);
    }
}
