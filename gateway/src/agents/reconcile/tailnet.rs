//! Hosts added by tailnet name (`host add NAME --tailscale PEER`) follow their peer: the
//! gateway reaches them at the peer's current tailnet address, and a peer that the tailnet
//! says is offline (or gone, or expired) makes its host `unreachable` at once, without
//! waiting for an SSH time limit. When tailscaled cannot be asked, these hosts are treated
//! like any other: SSH decides.

use std::sync::Arc;

use tracing::{info, warn};

use crate::Gateway;
use crate::store::HostRecord;
use crate::tailscale::verdict::{PeerVerdict, verdict};
use crate::tailscale::{PeerStatus, View};

/// Why the tailnet says host `name` cannot be reached, if it says so: such a host is not
/// asked anything (its agents are `unknown`).
pub async fn down_reason(core: &crate::agents::Core<'_>, name: &str) -> Option<String> {
    let record = core.store.host(name).await.ok().flatten()?;
    crate::tailscale::verdict::down(&core.tailnet.view(), &record)
}

/// Applies every new view of the tailnet to the tailnet hosts, until the gateway stops.
pub async fn follow(gw: Arc<Gateway>) {
    let mut views = gw.tailnet.subscribe();
    loop {
        tokio::select! {
            _ = gw.shutdown_accepting.cancelled() => return,
            changed = views.changed() => if changed.is_err() { return },
        }
        let view = views.borrow_and_update().clone();
        apply(&gw, &view).await;
    }
}

/// Brings every tailnet host in line with `view`.
pub async fn apply(gw: &Gateway, view: &View) {
    let records = match gw.store.hosts().await {
        Ok(records) => records,
        Err(e) => {
            warn!(error = %e, "cannot read the hosts to follow the tailnet");
            return;
        }
    };
    for record in records.iter().filter(|r| r.tailscale_id.is_some()) {
        let outcome = match verdict(view, record) {
            PeerVerdict::Silent => Ok(()),
            PeerVerdict::Down(reason) => super::mark_unreachable(gw, &record.name, &reason).await,
            PeerVerdict::Online(peer) => follow_address(gw, record, peer).await,
        };
        if let Err(e) = outcome {
            warn!(host = record.name, error = %e, "cannot follow the tailnet");
        }
    }
}

/// Moves a host to its peer's current address, and asks it again if it was unreachable.
async fn follow_address(
    gw: &Gateway,
    record: &HostRecord,
    peer: &PeerStatus,
) -> Result<(), crate::store::StoreError> {
    let Some(address) = peer.address().map(|a| a.to_string()) else {
        return Ok(());
    };
    let moved = record.address.as_deref() != Some(address.as_str());
    if moved {
        info!(
            host = record.name,
            from = record.address.as_deref().unwrap_or(""),
            to = address,
            "the host's tailnet address changed"
        );
        gw.store.set_host_address(&record.name, &address).await?;
        let mut updated = record.clone();
        updated.address = Some(address);
        match gw.remote_host(&updated) {
            // A new connection pool at the new address; sessions on the old one carry on
            // as long as it lasts.
            Ok(host) => gw.hosts.insert(host),
            Err(e) => warn!(host = record.name, error = %e, "cannot use the new address"),
        }
    }
    if (moved || record.status == crate::model::HostStatus::Unreachable)
        && let Ok(host) = gw.hosts.get(&record.name)
    {
        super::reconcile_host(gw, &host).await?;
    }
    Ok(())
}
