//! `clone SRC DST [--host H] [--json]`: a new agent with another agent's settings and a copy
//! of its workspace, on the same host or another one.

use std::sync::Arc;

use clap::Args;
use hostctl::api::WorkspaceSource;

use super::output::{agent_json, json_text, status_text};
use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;
use crate::agents::create::{Origin, create_reserved, reserve};
use crate::hosts::copy_workspace;
use crate::model::OperationKind;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh gw clone fix-ci fix-ci-2\n  ssh gw clone fix-ci try-gpu --host gpu-box\n\nThe workspace is copied as it is at that moment: stop SRC first for a quiet copy (a copy\nthat changed while it was made is refused)."
)]
pub struct CloneArgs {
    /// The agent to copy.
    pub src: String,
    /// The new agent's name.
    pub dst: String,
    /// The host to create it on (default: SRC's host).
    #[arg(long, short = 'H', value_name = "HOST")]
    pub host: Option<String>,
    /// Print the new agent as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: CloneArgs,
    io: &mut CommandIo,
) -> CommandResult {
    crate::agents::placement::check_new_name(gw, &args.dst).await?;
    let (src, from) = agent_and_host(gw, caller, &args.src).await?;
    crate::agents::lifecycle::ready(&src)?;
    let host_name = match &args.host {
        Some(host) => {
            crate::agents::placement::choose_host(gw, &caller.operator, Some(host)).await?
        }
        None => src.host.clone(),
    };
    let to = gw.hosts.get(&host_name)?;
    let mut request = src.spec.clone();
    request.name = args.dst.clone();
    request.workspace = WorkspaceSource::Prepared;
    request.prompt = None;
    request.size = io.terminal.as_ref().map(|t| *t.size.borrow());
    request.created_by = Some(caller.operator.name.clone());
    let origin = Origin {
        kind: OperationKind::Clone,
        from_host: Some(src.host.clone()),
        source: Some(src.name.clone()),
    };
    let intent = reserve(gw, &host_name, &request, src.idle_stop.clone(), origin).await?;
    let mut copied = None;
    let slot = &mut copied;
    let (from_host, to_host, src_name, dst) = (&from, &to, &src.name, &args.dst);
    let copy = move |operation: String| async move {
        *slot = Some(copy_workspace(from_host, src_name, to_host, dst, &operation).await?);
        Ok::<(), CommandError>(())
    };
    let agent = create_reserved(gw, &to, &request, intent, copy).await?;
    if args.json {
        io.write_out(&json_text(&agent_json(&agent))).await;
    } else {
        let digest = copied
            .map(|d| format!("{} entries, {} bytes, verified", d.entries, d.bytes))
            .unwrap_or_default();
        io.write_out(&format!(
            "cloned '{}' (host {}) as '{}' on host {host_name} ({}); workspace {} ({digest})\n",
            src.name,
            src.host,
            agent.name,
            status_text(&agent),
            agent.workspace
        ))
        .await;
    }
    Ok(exit::OK)
}
