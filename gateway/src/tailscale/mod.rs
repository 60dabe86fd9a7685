//! Tailscale: the gateway's view of the tailnet, from the local tailscaled's LocalAPI.
//!
//! [`client`] speaks the LocalAPI; [`types`] reads its JSON. [`Tailnet`] keeps the latest
//! `status` and refreshes it on every notification of the IPN bus (`watch-ipn-bus`), with a
//! slow poll as the fallback, reconnecting when tailscaled restarts. Hosts added by tailnet
//! name follow it (see `hosts::tailnet`). When tailscaled is absent or not logged in, the view
//! says so, and every tailnet feature reports it; nothing else depends on it.

pub mod client;
pub mod types;
pub mod verdict;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use self::client::{LocalApi, LocalApiError};
pub use self::types::{PeerStatus, Status};

/// `NotifyInitialState | NotifyPeerChanges | NotifyPeerPatches`: a first message at once,
/// then one per change of a peer (daemons before 1.98 ignore the last two bits and send
/// whole network maps instead).
const WATCH_MASK: u64 = 2 | (1 << 12) | (1 << 15);

/// How long a burst of notifications is gathered before `status` is asked again.
const COALESCE: Duration = Duration::from_millis(50);

/// The longest wait between two attempts to reach a tailscaled that is not there.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the gateway knows of the tailnet.
#[derive(Clone, Debug)]
pub enum View {
    /// Not asked yet.
    Unknown,
    /// tailscaled could not be asked.
    Unavailable(LocalApiError),
    /// tailscaled's latest `status` (whatever its `BackendState`).
    Status(Arc<Status>),
}

impl View {
    /// The status when tailscaled runs and is logged in; otherwise why not, in words for an
    /// operator.
    pub fn running(&self) -> Result<&Arc<Status>, String> {
        match self {
            View::Unknown => Err("tailscaled has not been asked yet; try again in a moment".into()),
            View::Unavailable(e) => Err(e.to_string()),
            View::Status(s) if s.backend_state == "Running" => Ok(s),
            View::Status(s) => Err(backend_problem(s)),
        }
    }
}

/// Why a tailscaled that answers is not usable, with what to do.
pub fn backend_problem(s: &Status) -> String {
    match s.backend_state.as_str() {
        "NeedsLogin" => {
            "tailscaled is not logged in: run `tailscale up` (or `tailscale login`) on the gateway's machine".into()
        }
        "NeedsMachineAuth" => {
            "this machine waits for a tailnet admin to approve it in the admin console".into()
        }
        "Stopped" => "tailscale is stopped: run `tailscale up` on the gateway's machine".into(),
        "Starting" | "NoState" => "tailscaled is starting; try again in a moment".into(),
        other => format!("tailscaled is in state {other:?}"),
    }
}

/// The tailnet as the local tailscaled sees it, kept current.
#[derive(Debug)]
pub struct Tailnet {
    api: LocalApi,
    poll: Duration,
    view: watch::Sender<View>,
}

impl Tailnet {
    pub fn new(api: LocalApi, poll: Duration) -> Tailnet {
        Tailnet {
            api,
            poll,
            view: watch::Sender::new(View::Unknown),
        }
    }

    pub fn api(&self) -> &LocalApi {
        &self.api
    }

    /// The latest view.
    pub fn view(&self) -> View {
        self.view.borrow().clone()
    }

    /// Notified on every new view.
    pub fn subscribe(&self) -> watch::Receiver<View> {
        self.view.subscribe()
    }

    /// Asks `status` now and publishes it.
    pub async fn refresh(&self) -> View {
        let view = match self.api.status().await {
            Ok(s) => View::Status(Arc::new(s)),
            Err(e) => View::Unavailable(e),
        };
        self.publish(view.clone());
        view
    }

    fn publish(&self, view: View) {
        let before = self.view.borrow().clone();
        match (&before, &view) {
            (View::Status(_), View::Unavailable(e)) => warn!(error = %e, "tailscaled is gone"),
            (View::Unknown, View::Unavailable(e)) => {
                info!(error = %e, "no tailscaled: tailnet features are off until it runs")
            }
            (View::Unknown | View::Unavailable(_), View::Status(s)) => info!(
                version = s.version,
                state = s.backend_state,
                tailnet = s.tailnet_name().unwrap_or(""),
                "tailscaled found"
            ),
            (View::Status(a), View::Status(b)) if a.backend_state != b.backend_state => info!(
                from = a.backend_state,
                to = b.backend_state,
                "tailscaled changed state"
            ),
            _ => {}
        }
        self.view.send_replace(view);
    }

    /// Follows the IPN bus until `stop`: a fresh `status` after every burst of
    /// notifications and every `poll` interval; reconnects with back-off when tailscaled
    /// goes away.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        loop {
            match self.api.watch(WATCH_MASK).await {
                Ok(mut bus) => {
                    backoff = Duration::from_millis(250);
                    self.refresh().await;
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            line = bus.next() => match line {
                                Ok(Some(_)) => {
                                    // Gather the rest of a burst, then ask once.
                                    let more = async { while let Ok(Some(_)) = bus.next().await {} };
                                    let _ = tokio::time::timeout(COALESCE, more).await;
                                    self.refresh().await;
                                }
                                Ok(None) => {
                                    debug!("the IPN bus ended");
                                    break;
                                }
                                Err(e) => {
                                    debug!(error = %e, "the IPN bus broke");
                                    break;
                                }
                            },
                            _ = tokio::time::sleep(self.poll) => {
                                self.refresh().await;
                            }
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "cannot watch the IPN bus");
                }
            }
            // The watch ended or could not start: say what status says now, then try again.
            if let View::Status(_) = self.refresh().await {
                // tailscaled answers but will not stream (an older daemon, or a proxy): poll.
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(self.poll.min(MAX_BACKOFF)) => {}
                }
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}
