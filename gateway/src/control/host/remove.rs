//! `host remove NAME`: forgets a host that runs no agent.

use super::*;

pub(super) async fn remove(
    store: &Store,
    hosts: &Hosts,
    args: RemoveArgs,
    io: &mut CommandIo,
) -> CommandResult {
    if args.name == LOCAL_HOST {
        return Err(CommandError::usage(
            "'local' is the gateway's own machine and cannot be removed",
        ));
    }
    let h = host_record(store, &args.name).await?;
    let agents = store.agents_on_host(&h.name).await?;
    if !agents.is_empty() && !args.force {
        let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
        return Err(CommandError::failed(format!(
            "host '{}' has {} agent(s): {}",
            h.name,
            agents.len(),
            names.join(", ")
        ))
        .hint(format!(
            "destroy or migrate them first, or forget them with: ssh gw host remove {} --force (they keep running on the host)",
            h.name
        )));
    }
    if let Some(crate::hosts::Host::Remote(host)) = hosts.remove(&h.name) {
        host.reset().await;
    }
    let forgotten = store.delete_host(&h.name).await?;
    let mut text = format!("removed host '{}'", h.name);
    if forgotten > 0 {
        text.push_str(&format!(
            "; forgot {forgotten} agent(s), which keep running there"
        ));
    }
    io.write_out(&format!("{text}\n")).await;
    Ok(exit::OK)
}
