//! Requests clients make out of habit and the gateway does not serve, kept out of the log's
//! warnings: PuTTY sends `simple@putty.projects.tartarus.org` and
//! `winadj@putty.projects.tartarus.org` on every session, other clients `break`, `eow@openssh.com`
//! or their own. russh answers each as OpenSSH's sshd does (`channel-failure` when a reply is
//! wanted, nothing when not; an unknown global request such as `keepalive@openssh.com` gets
//! `request-failure` without a word) but logs a channel request it does not know as a WARN,
//! once per request: an operator reading the log would take a PuTTY user for trouble.
//!
//! [`QuietRequests`] is a tracing layer that turns exactly that warning into a DEBUG line of
//! the gateway's own; every other event, of russh's or the gateway's, passes untouched. It
//! does not answer anything itself: russh's answer is already sshd's.

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber, debug};
use tracing_subscriber::layer::{Context, Layer};

/// The module of russh that answers a session's channel requests.
const RUSSH_CHANNEL_REQUESTS: &str = "russh::server::encrypted";

/// How russh words its warning for a channel request it has no callback for.
const UNKNOWN_CHANNEL_REQUEST: &str = "unknown channel request ";

/// The request named by an event, if the event is russh's warning about a channel request
/// it does not serve.
pub fn unserved_channel_request<'a>(
    target: &str,
    level: &Level,
    message: &'a str,
) -> Option<&'a str> {
    if target != RUSSH_CHANNEL_REQUESTS || *level != Level::WARN {
        return None;
    }
    message
        .strip_prefix(UNKNOWN_CHANNEL_REQUEST)
        .filter(|request| !request.is_empty())
}

/// Turns russh's warning for a channel request it does not serve into a DEBUG line.
#[derive(Clone, Copy, Debug, Default)]
pub struct QuietRequests;

impl<S: Subscriber> Layer<S> for QuietRequests {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        // Only warnings of russh's (which logs through the `log` crate: such an event's
        // target is `log`, the module's is in its `log.target` field) are read; the gateway's
        // own events cost no formatting here.
        if *metadata.level() != Level::WARN
            || !(metadata.target() == RUSSH_CHANNEL_REQUESTS || metadata.target() == "log")
        {
            return true;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let target = fields.log_target.as_deref().unwrap_or(metadata.target());
        match unserved_channel_request(target, metadata.level(), &fields.message) {
            Some(request) => {
                debug!(
                    request,
                    "channel request not served; answered as sshd answers it (a failure if a reply was wanted)"
                );
                false
            }
            None => true,
        }
    }
}

/// An event's message, and the module that logged it when it came through the `log` crate.
#[derive(Default)]
struct Fields {
    message: String,
    log_target: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => value.clone_into(&mut self.message),
            "log.target" => self.log_target = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "log.target" => self.log_target = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Keeps every event that reaches it: its level, target and message.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<(Level, String, String)>>>);

    impl<S: Subscriber> Layer<S> for Kept {
        fn on_event(&self, event: &Event<'_>, _cx: Context<'_, S>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            let metadata = event.metadata();
            self.0.lock().expect("lock").push((
                *metadata.level(),
                metadata.target().to_owned(),
                fields.message,
            ));
        }
    }

    #[test]
    fn only_russhs_warning_for_an_unserved_channel_request_is_recognised() {
        let warn = &Level::WARN;
        assert_eq!(
            unserved_channel_request(
                RUSSH_CHANNEL_REQUESTS,
                warn,
                "unknown channel request simple@putty.projects.tartarus.org"
            ),
            Some("simple@putty.projects.tartarus.org")
        );
        assert_eq!(
            unserved_channel_request(RUSSH_CHANNEL_REQUESTS, warn, "unknown channel request "),
            None
        );
        assert_eq!(
            unserved_channel_request(
                RUSSH_CHANNEL_REQUESTS,
                warn,
                "Certificate is expired or not yet valid"
            ),
            None
        );
        assert_eq!(
            unserved_channel_request("gateway::ssh", warn, "unknown channel request x"),
            None
        );
        assert_eq!(
            unserved_channel_request(
                RUSSH_CHANNEL_REQUESTS,
                &Level::ERROR,
                "unknown channel request x"
            ),
            None
        );
    }

    /// What reached a subscriber made the way `main` makes the gateway's: [`QuietRequests`]
    /// on the global default. (A scoped subscriber would not do: tracing hands an event sent
    /// from inside another's dispatch to no subscriber at all, and the gateway has only the
    /// global one.) Other tests' events reach it too, so each test looks for its own texts.
    fn global() -> &'static Kept {
        static KEPT: std::sync::OnceLock<Kept> = std::sync::OnceLock::new();
        KEPT.get_or_init(|| {
            let kept = Kept::default();
            let subscriber = tracing_subscriber::registry()
                .with(QuietRequests)
                .with(kept.clone());
            tracing::subscriber::set_global_default(subscriber).expect("the only global");
            kept
        })
    }

    #[test]
    fn a_putty_habit_is_logged_at_debug_and_other_warnings_stay_warnings() {
        let kept = global();
        let request = "winadj@putty.projects.tartarus.org";
        // As `tracing_log` hands on russh's `log::warn!`: target `log`, the module in a field.
        tracing::event!(
            target: "log",
            Level::WARN,
            { log.target = "russh::server::encrypted" },
            "unknown channel request {request}"
        );
        tracing::warn!(target: "russh::server::encrypted", "Certificate is expired or not yet valid");
        tracing::warn!("the gateway's own warning, for the quiet test");
        let events: Vec<(Level, String, String)> = kept
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, target, _)| {
                target == "log"
                    || target.starts_with("russh")
                    || target.starts_with("gateway::ssh::quiet")
            })
            .cloned()
            .collect();
        let levels: Vec<(Level, &str)> = events
            .iter()
            .map(|(level, target, _)| (*level, target.as_str()))
            .collect();
        assert_eq!(
            levels,
            [
                (Level::DEBUG, "gateway::ssh::quiet"),
                (Level::WARN, "russh::server::encrypted"),
                (Level::WARN, "gateway::ssh::quiet::tests"),
            ],
            "{events:?}"
        );
        assert!(events[0].2.starts_with("channel request not served"));
        assert_eq!(events[1].2, "Certificate is expired or not yet valid");
    }
}
