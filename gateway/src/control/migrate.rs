//! `migrate NAME HOST [--json]`: moves an agent to another host. It is stopped, its workspace
//! streamed to the other host and verified there, started there, and only then removed from
//! the old host. A failure before the move is complete leaves the agent where it was, as it
//! was.

use std::sync::Arc;

use clap::Args;
use hostctl::api::{Secrets, WorkspaceDigest, WorkspaceSource};
use tracing::warn;

use super::output::{agent_json, json_text, status_text};
use super::{Caller, CommandError, CommandIo, CommandResult, exit, refreshed_agent};
use crate::Gateway;
use crate::agents::journal::{Intent, Planned};
use crate::hosts::{Host, copy_workspace, reconciler};
use crate::model::{AgentStatus, OperationKind, Step};
use crate::store::AgentRecord;

#[derive(Debug, Args)]
#[command(after_help = "Example:\n  ssh gw migrate fix-ci gpu-box")]
pub struct MigrateArgs {
    /// The agent to move.
    pub name: String,
    /// The host to move it to (see `host list`).
    pub host: String,
    /// Print the moved agent as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: MigrateArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let name = args.name.as_str();
    let (agent, from) = refreshed_agent(gw, caller, name).await?;
    if agent.host == args.host {
        return Err(CommandError::usage(format!(
            "agent '{name}' is already on host '{}'",
            args.host
        )));
    }
    let to = gw.hosts.get(
        &crate::agents::placement::choose_host(gw, &caller.operator, Some(&args.host)).await?,
    )?;
    match agent.status {
        AgentStatus::Creating => crate::agents::lifecycle::ready(&agent)?,
        AgentStatus::Unknown => {
            return Err(CommandError::failed(format!(
                "agent '{name}' cannot be reached: its host '{}' does not answer",
                agent.host
            ))
            .hint("its workspace is on that host: migrate it once the host is back"));
        }
        _ => {}
    }
    if let WorkspaceSource::Dir { path } = &agent.spec.workspace {
        return Err(CommandError::failed(format!(
            "agent '{name}' works in {}, a directory of host '{}' that is not its own",
            path.display(),
            agent.host
        ))
        .hint(format!(
            "copy it instead (ssh gw clone {name} NEW --host {}), then destroy the original",
            args.host
        )));
    }
    // The target is asked before the agent is stopped: an unreachable host, or one that has
    // an agent of that name already, refuses the move while nothing has happened yet.
    let there = to.probe(None).await.map_err(|e| {
        CommandError::from(e).hint(format!(
            "agent '{name}' was not touched; check the host with: ssh gw host check {}",
            args.host
        ))
    })?;
    if there.iter().any(|a| a.name == name) {
        return Err(CommandError::failed(format!(
            "host '{}' already has an agent named '{name}' that the gateway does not list",
            args.host
        ))
        .hint(format!(
            "see it with: ssh gw host info {}; adopt or remove it there first",
            args.host
        )));
    }
    let was_running = agent.status == AgentStatus::Running;
    let secrets = super::secret::values(gw, &agent.spec.secret_names).await?;
    let intent = Intent::begin(
        gw,
        Planned {
            kind: OperationKind::Migrate,
            agent: name.to_owned(),
            from_host: Some(agent.host.clone()),
            host: args.host.clone(),
            source: None,
            was_running,
            operator: Some(caller.operator.name.clone()),
        },
    )
    .await?;
    let moving = Move {
        gw,
        intent: &intent,
        agent: &agent,
        from: &from,
        to: &to,
        to_name: &args.host,
        secrets: &secrets,
        was_running,
    };
    let result = moving.run().await;
    intent.end(&result.as_ref().map_err(|e| &e.message)).await;
    let (digest, leftover) = result?;
    let moved = gw
        .store
        .agent(name)
        .await?
        .ok_or_else(|| CommandError::no_agent(name))?;
    if args.json {
        io.write_out(&json_text(&agent_json(&moved))).await;
    } else {
        io.write_out(&format!(
            "moved agent '{name}' from host {} to host {} ({}); workspace {} ({} entries, {} bytes, verified)\n",
            agent.host,
            args.host,
            status_text(&moved),
            moved.workspace,
            digest.entries,
            digest.bytes
        ))
        .await;
    }
    if let Some(e) = leftover {
        io.write_err(&format!(
            "warning: the old copy on host '{}' could not be removed ({e}); remove it there with: hostctl destroy {name}\n",
            agent.host
        ))
        .await;
    }
    Ok(exit::OK)
}

/// One move under way, step by step, each step written to the operation's journal.
struct Move<'a> {
    gw: &'a Gateway,
    intent: &'a Intent,
    agent: &'a AgentRecord,
    from: &'a Host,
    to: &'a Host,
    to_name: &'a str,
    secrets: &'a Secrets,
    was_running: bool,
}

impl Move<'_> {
    /// Starts the agent again where it was, if it ran (after a step that failed).
    async fn restore(&self) {
        let name = self.agent.name.as_str();
        if self.was_running
            && let Ok(info) = self.from.start(name, None, self.secrets).await
        {
            let _ = self
                .gw
                .store
                .observe_agent(name, &reconciler::observed(&info))
                .await;
        }
    }

    /// Returns the verified copy's digest, and why the old copy could not be removed if so.
    async fn run(&self) -> Result<(WorkspaceDigest, Option<String>), CommandError> {
        let (gw, from, to) = (self.gw, self.from, self.to);
        let name = self.agent.name.as_str();
        let (from_name, to_name) = (self.agent.host.as_str(), self.to_name);
        let operation = self.intent.id();
        if self.was_running {
            // A stop whose answer was lost may still have stopped it: start it again then.
            let stopped = match from.stop(name).await {
                Ok(info) => info,
                Err(e) => {
                    self.restore().await;
                    return Err(e.into());
                }
            };
            gw.store
                .observe_agent(name, &reconciler::observed(&stopped))
                .await?;
        }
        self.intent.step(Step::SourceStopped).await?;
        let digest = match copy_workspace(from, name, to, name, operation).await {
            Ok(digest) => digest,
            Err(e) => {
                self.restore().await;
                let e = CommandError::from(e);
                return Err(CommandError::failed(format!(
                    "{}; agent '{name}' stays on host '{from_name}'",
                    e.message
                )));
            }
        };
        // Nothing may have started it again meanwhile (an attach, say): then what was copied
        // is already stale, and the agent stays where it runs.
        if let Ok(now) = from.info(name).await
            && now.status == hostctl::api::HostAgentStatus::Running
        {
            let _ = to.discard(name, Some(operation)).await;
            return Err(CommandError::failed(format!(
                "agent '{name}' was started again during the move; it stays on host '{from_name}'"
            ))
            .hint(format!(
                "stop it, then try again: ssh gw migrate {name} {to_name}"
            )));
        }
        self.intent.step(Step::Copied).await?;
        // On the new host it starts as a restart would: with the restart command, if any.
        let mut request = self.agent.spec.clone();
        request.workspace = WorkspaceSource::Prepared;
        request.prompt = None;
        if let Some(again) = request.restart_command.clone() {
            request.command = again;
        }
        let info = match to.create(&request, self.secrets).await {
            Ok(info) => info,
            Err(e) => {
                let _ = to.discard(name, Some(operation)).await;
                self.restore().await;
                return Err(CommandError::failed(format!(
                    "starting agent '{name}' on host '{to_name}' failed: {e}; it stays on host '{from_name}'"
                )));
            }
        };
        let info = if self.was_running {
            info
        } else {
            // It was not running: it is not running after the move either.
            to.stop(name).await.unwrap_or(info)
        };
        self.intent.step(Step::Created).await?;
        gw.store.set_agent_host(name, to_name).await?;
        self.intent.step(Step::Switched).await?;
        gw.store
            .observe_agent(name, &reconciler::observed(&info))
            .await?;
        let leftover = match from.destroy(name).await {
            Ok(()) => None,
            Err(e) => {
                warn!(agent = name, host = from_name, error = %e, "the old copy was not removed");
                Some(e.to_string())
            }
        };
        Ok((digest, leftover))
    }
}
