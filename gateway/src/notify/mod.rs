//! Notification channels: telling operators about their agents when they are not looking.
//!
//! A deliverer task ([`Notifier::start`]) follows the store's feed of status changes
//! (`store::StatusChange`), turns the ones that page (an agent starts waiting, exits, is
//! stopped for being idle, its host becomes unreachable: [`event_of`]) into deliveries for the
//! channels that want them, and hands each to its channel's own worker, which POSTs it
//! (a webhook's JSON document, or ntfy's publish format) with retries and records the outcome
//! in the audit trail.
//!
//! This is a lower layer, beside `store` and `tailscale`: it knows channels, events and HTTP,
//! nothing of SSH or the control commands, which call it (`notify test`). It is the only module
//! besides `tailscale` that speaks HTTP (hyper), and the only one that reads a channel's URL
//! whole.
//!
//! **Invariant:** nothing here waits on a channel on behalf of anyone else. Each channel has its
//! own worker and a bounded queue (`notify.queue`); a full queue records the delivery as failed
//! rather than wait, so a channel that is down or never answers delays only itself, never the
//! feed, `list`, or other channels.
//!
//! **Invariant:** an operator is told only about agents they may see (the rule of `list`,
//! `agents::access::may_see`), decided when the change is published.

mod deliver;
pub mod http;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::NotifyConfig;
use crate::model::ChannelKind;
use crate::store::{NotifyChannel, Operator, StatusChange, Store};
use http::{HttpClient, Post, PostError};

/// What a channel can be paged for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotifyEvent {
    /// An agent started waiting for its operator.
    Waiting,
    /// An agent's process ended.
    Exited,
    /// The gateway stopped an agent that was idle for its idle-stop period.
    IdleStopped,
    /// An agent's host could not be reached (its agents are `unknown`).
    HostUnreachable,
    /// `notify test`.
    Test,
}

impl NotifyEvent {
    /// The events a channel can choose (`--on`), all of them by default.
    pub const CHOOSABLE: [NotifyEvent; 4] = [
        NotifyEvent::Waiting,
        NotifyEvent::Exited,
        NotifyEvent::IdleStopped,
        NotifyEvent::HostUnreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Waiting => "waiting",
            NotifyEvent::Exited => "exited",
            NotifyEvent::IdleStopped => "idle-stopped",
            NotifyEvent::HostUnreachable => "host-unreachable",
            NotifyEvent::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<NotifyEvent> {
        NotifyEvent::CHOOSABLE.into_iter().find(|e| e.as_str() == s)
    }
}

/// The event a change pages for, if any. A change of reason within the same status (a new
/// question while it waits) shows in `watch`, and pages no one.
pub fn event_of(change: &StatusChange) -> Option<NotifyEvent> {
    if change.from.as_deref() == Some(change.to.as_str()) {
        return None;
    }
    match change.to.as_str() {
        "waiting" => Some(NotifyEvent::Waiting),
        "exited" => Some(NotifyEvent::Exited),
        "stopped" if change.reason.as_deref() == Some("idle") => Some(NotifyEvent::IdleStopped),
        "unknown" if change.host_unreachable => Some(NotifyEvent::HostUnreachable),
        _ => None,
    }
}

/// Whether `channel` wants `change` (as `event`): one of its events, an agent its operator may
/// see, with its tags.
pub fn wants(channel: &NotifyChannel, change: &StatusChange, event: NotifyEvent) -> bool {
    let owner = Operator {
        id: 0,
        name: channel.operator.clone(),
        role: channel.operator_role,
    };
    channel.events.iter().any(|e| e == event.as_str())
        && crate::agents::access::may_see(&owner, change.into())
        && channel
            .tags
            .iter()
            .all(|(k, v)| change.tags.get(k) == Some(v))
}

/// What is told: one event of one agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub event: NotifyEvent,
    /// Empty for a test.
    pub agent: String,
    pub host: String,
    pub from: Option<String>,
    pub to: String,
    pub reason: Option<String>,
    /// When the gateway recorded the change.
    pub at: crate::model::Timestamp,
}

impl Message {
    pub fn of(change: &StatusChange, event: NotifyEvent) -> Message {
        Message {
            event,
            agent: change.agent.clone(),
            host: change.host.clone(),
            from: change.from.clone(),
            to: change.to.clone(),
            reason: change.reason.clone(),
            at: change.at,
        }
    }

    /// One line for a person: "agent 'fix-ci' is waiting on host local: asks permission".
    pub fn text(&self) -> String {
        if self.event == NotifyEvent::Test {
            return "a test notification from agentgate: this channel works".to_owned();
        }
        let what = match self.event {
            NotifyEvent::IdleStopped => "was stopped for being idle".to_owned(),
            NotifyEvent::HostUnreachable => "is unknown: its host is unreachable".to_owned(),
            _ => format!("is {}", self.to),
        };
        let reason = match (&self.reason, self.event) {
            (
                Some(r),
                NotifyEvent::Waiting | NotifyEvent::Exited | NotifyEvent::HostUnreachable,
            ) => {
                format!(": {r}")
            }
            _ => String::new(),
        };
        format!(
            "agent '{}' {what} on host {}{reason}",
            self.agent, self.host
        )
    }

    /// The webhook's JSON document.
    pub fn webhook_body(&self, gateway: &str) -> Vec<u8> {
        let blank = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let doc = json!({
            "event": self.event.as_str(),
            "agent": blank(&self.agent),
            "host": self.host,
            "from": self.from,
            "to": self.to,
            "reason": self.reason,
            "time": self.at,
            "gateway": gateway,
            "text": self.text(),
        });
        let mut body = doc.to_string().into_bytes();
        body.push(b'\n');
        body
    }

    /// ntfy's publish format: the message as the body, title, priority, tags and click URL as
    /// headers. `{agent}`, `{event}` and `{host}` in the channel's title are filled in.
    pub fn ntfy_headers(&self, channel: &NotifyChannel) -> Vec<(&'static str, String)> {
        let fill = |t: &str| {
            t.replace("{agent}", &self.agent)
                .replace("{event}", self.event.as_str())
                .replace("{host}", &self.host)
        };
        let title = match (&channel.title, self.event) {
            (Some(t), _) => fill(t),
            (None, NotifyEvent::Test) => "agentgate: test".to_owned(),
            (None, _) => format!("{}: {}", self.agent, self.event.as_str()),
        };
        let mut headers = vec![("title", title)];
        if let Some(priority) = &channel.priority {
            headers.push(("priority", priority.clone()));
        }
        if let Some(tags) = &channel.ntfy_tags {
            headers.push(("tags", tags.clone()));
        }
        if let Some(click) = &channel.click {
            headers.push(("click", fill(click)));
        }
        // A header carries visible ASCII only; a name or reason that is not stays in the body.
        headers.retain(|(_, v)| v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()));
        headers
    }
}

/// An ntfy option given to `notify add` that cannot be sent, and why.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidOption {
    #[error("{option} must be 1 to 512 characters")]
    Length { option: String },
    #[error("{option} must be printable ASCII (an HTTP header carries it)")]
    NotPrintable { option: String },
    #[error("unknown ntfy priority '{0}' (use 1-5, or min, low, default, high, max, urgent)")]
    Priority(String),
}

/// Checks an ntfy header value given to `notify add` (`--title` and the others).
pub fn check_header_value(option: &str, value: &str) -> Result<(), InvalidOption> {
    let option = option.to_owned();
    if value.is_empty() || value.len() > 512 {
        return Err(InvalidOption::Length { option });
    }
    if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
        return Err(InvalidOption::NotPrintable { option });
    }
    Ok(())
}

/// ntfy's priorities, by number or name.
pub fn check_priority(value: &str) -> Result<(), InvalidOption> {
    const KNOWN: [&str; 11] = [
        "1", "2", "3", "4", "5", "min", "low", "default", "high", "max", "urgent",
    ];
    if KNOWN.contains(&value) {
        Ok(())
    } else {
        Err(InvalidOption::Priority(value.to_owned()))
    }
}

/// Pages each channel once for an agent's event within a window. Pure: the caller gives the
/// time.
#[derive(Debug)]
pub struct Debouncer {
    window: Duration,
    paged: HashMap<(String, String, String, NotifyEvent), Instant>,
}

/// The most (channel, agent, event) entries a debouncer keeps; past that (after dropping those
/// older than the window) it starts afresh, paging again rather than growing.
const MAX_DEBOUNCED: usize = 100_000;

impl Debouncer {
    pub fn new(window: Duration) -> Debouncer {
        Debouncer {
            window,
            paged: HashMap::new(),
        }
    }

    /// Whether `channel` (of `operator`) is paged for `agent`'s `event` now: not if it was
    /// paged for the same within the window.
    pub fn admit(
        &mut self,
        operator: &str,
        channel: &str,
        agent: &str,
        event: NotifyEvent,
        now: Instant,
    ) -> bool {
        let key = (
            operator.to_owned(),
            channel.to_owned(),
            agent.to_owned(),
            event,
        );
        if let Some(at) = self.paged.get(&key)
            && now.saturating_duration_since(*at) < self.window
        {
            return false;
        }
        if self.paged.len() >= MAX_DEBOUNCED {
            let window = self.window;
            self.paged
                .retain(|_, at| now.saturating_duration_since(*at) < window);
            if self.paged.len() >= MAX_DEBOUNCED {
                self.paged.clear();
            }
        }
        self.paged.insert(key, now);
        true
    }
}

/// The deliverer's handle: its HTTP client and settings, for the deliverer task and for
/// `notify test`.
#[derive(Clone, Debug)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: HttpClient,
    settings: NotifyConfig,
    /// The gateway's name in webhook documents (its machine's host name).
    gateway: String,
    store: Store,
}

impl Notifier {
    pub fn new(store: Store, settings: NotifyConfig) -> Result<Notifier, PostError> {
        let gateway = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "agentgate".to_owned());
        Ok(Notifier {
            inner: Arc::new(Inner {
                client: HttpClient::new(settings.try_timeout)?,
                settings,
                gateway,
                store,
            }),
        })
    }

    pub fn settings(&self) -> &NotifyConfig {
        &self.inner.settings
    }

    /// One try of one message to one channel, within `notify.try_timeout`.
    pub async fn try_once(
        &self,
        channel: &NotifyChannel,
        message: &Message,
    ) -> Result<(), PostError> {
        let post = match channel.kind {
            ChannelKind::Webhook => Post {
                url: channel.url.expose(),
                content_type: "application/json",
                headers: Vec::new(),
                body: message.webhook_body(&self.inner.gateway),
            },
            ChannelKind::Ntfy => Post {
                url: channel.url.expose(),
                content_type: "text/plain; charset=utf-8",
                headers: message.ntfy_headers(channel),
                body: message.text().into_bytes(),
            },
        };
        self.inner
            .client
            .post(post, self.inner.settings.try_timeout)
            .await
    }

    /// Starts the deliverer: it follows the feed until `stop` fires.
    pub fn start(&self, tasks: &TaskTracker, stop: CancellationToken) {
        let feed = self.inner.store.subscribe_changes();
        tasks.spawn(deliver::dispatch(self.clone(), feed, tasks.clone(), stop));
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn change(from: Option<&str>, to: &str, reason: Option<&str>) -> StatusChange {
        StatusChange {
            at: time::OffsetDateTime::UNIX_EPOCH.into(),
            agent: "fix-ci".into(),
            host: "local".into(),
            from: from.map(str::to_owned),
            to: to.into(),
            reason: reason.map(str::to_owned),
            owner: Some("ann".into()),
            shared_with: Vec::new(),
            tags: BTreeMap::from([("team".to_owned(), "web".to_owned())]),
            host_unreachable: false,
        }
    }

    #[test]
    fn only_entering_a_paging_status_pages() {
        let e = |from, to, reason| event_of(&change(from, to, reason));
        assert_eq!(
            e(Some("working"), "waiting", None),
            Some(NotifyEvent::Waiting)
        );
        assert_eq!(
            e(Some("waiting"), "waiting", Some("another question")),
            None
        );
        assert_eq!(e(Some("waiting"), "working", None), None);
        assert_eq!(
            e(Some("running"), "exited", Some("exit 3")),
            Some(NotifyEvent::Exited)
        );
        assert_eq!(
            e(Some("idle"), "stopped", Some("idle")),
            Some(NotifyEvent::IdleStopped)
        );
        assert_eq!(e(Some("idle"), "stopped", None), None);
        assert_eq!(e(Some("running"), "unknown", None), None);
        let mut unreachable = change(Some("working"), "unknown", Some("host 'h' is unreachable"));
        unreachable.host_unreachable = true;
        assert_eq!(event_of(&unreachable), Some(NotifyEvent::HostUnreachable));
    }

    #[test]
    fn a_flapping_agent_pages_once_per_window_and_channel() {
        let mut d = Debouncer::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let w = NotifyEvent::Waiting;
        assert!(d.admit("ann", "phone", "a", w, t0));
        assert!(!d.admit("ann", "phone", "a", w, t0 + Duration::from_secs(5)));
        assert!(!d.admit("ann", "phone", "a", w, t0 + Duration::from_secs(29)));
        // Another channel, agent or event is paged on its own.
        assert!(d.admit("ann", "hook", "a", w, t0 + Duration::from_secs(5)));
        assert!(d.admit("ann", "phone", "b", w, t0 + Duration::from_secs(5)));
        assert!(d.admit("ann", "phone", "a", NotifyEvent::Exited, t0));
        // After the window, it pages again.
        assert!(d.admit("ann", "phone", "a", w, t0 + Duration::from_secs(31)));
    }

    #[test]
    fn ntfy_headers_fill_the_title_and_keep_to_ascii() {
        let channel = NotifyChannel {
            operator: "ann".into(),
            operator_role: crate::model::Role::Operator,
            name: "phone".into(),
            kind: ChannelKind::Ntfy,
            url: crate::store::ChannelUrl::new("http://x/t".into()),
            events: vec!["waiting".into()],
            tags: BTreeMap::new(),
            title: Some("{agent} needs you".into()),
            priority: Some("high".into()),
            ntfy_tags: Some("robot,warning".into()),
            click: Some("https://gw.example/{agent}".into()),
            created_at: crate::model::Timestamp::now(),
        };
        let message = Message::of(
            &change(Some("working"), "waiting", Some("asks a yes/no question")),
            NotifyEvent::Waiting,
        );
        assert_eq!(
            message.ntfy_headers(&channel),
            [
                ("title", "fix-ci needs you".to_owned()),
                ("priority", "high".to_owned()),
                ("tags", "robot,warning".to_owned()),
                ("click", "https://gw.example/fix-ci".to_owned()),
            ]
        );
        assert_eq!(
            message.text(),
            "agent 'fix-ci' is waiting on host local: asks a yes/no question"
        );
        assert!(wants(
            &channel,
            &change(None, "waiting", None),
            NotifyEvent::Waiting
        ));
        let other = NotifyChannel {
            operator: "eve".into(),
            ..channel.clone()
        };
        assert!(!wants(
            &other,
            &change(None, "waiting", None),
            NotifyEvent::Waiting
        ));
        let tagged = NotifyChannel {
            tags: BTreeMap::from([("team".to_owned(), "api".to_owned())]),
            ..channel
        };
        assert!(!wants(
            &tagged,
            &change(None, "waiting", None),
            NotifyEvent::Waiting
        ));
    }
}
