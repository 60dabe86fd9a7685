//! How fresh what a command shows is: `list`, `info` and the live view look at the hosts
//! first, waiting at most [`LIST_WAIT`] for each, and say of a host not asked why its agents
//! are shown as last seen ([`not_asked_text`]). No command of its own.

use crate::agents::reconcile::NotAsked;

/// How long `list` waits for each host before answering from what was last seen.
pub const LIST_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// Why a host's agents are shown as last seen, for `list`'s warnings and the live view.
pub fn not_asked_text(host: &NotAsked) -> String {
    match host {
        NotAsked::Slow(host) => format!(
            "host '{host}' did not answer within {} ms; its agents are shown as last seen",
            LIST_WAIT.as_millis()
        ),
        NotAsked::Unreachable(host, reason) => {
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            format!(
                "host '{host}' is unreachable{reason}; its agents are shown as last seen \
                 (see: ssh gw host info {host})"
            )
        }
        NotAsked::NotSaved(host, cause) => format!(
            "what host '{host}' reports could not be saved (the gateway's database: {cause}); \
             its agents are shown as last saved"
        ),
        NotAsked::Unwritable { cause, kept } => format!(
            "the gateway's database cannot be written ({cause}): the statuses shown may be out \
             of date, and {kept} audit event{} wait{} in memory until it can",
            if *kept == 1 { "" } else { "s" },
            if *kept == 1 { "s" } else { "" }
        ),
    }
}
