//! `notify add|list|remove|test`: each operator's notification channels. A channel is a
//! webhook (an HTTP POST of a JSON document) or an ntfy topic, paged when one of the operator's
//! agents (those they may see) starts waiting, exits, is stopped for being idle or loses its
//! host. Delivering is `crate::notify`'s; this file only manages and shows the channels.
//!
//! A channel's URL can hold a token: it is kept in the database like the secrets and never
//! printed whole, here, in `events` or in the log (its scheme and host only).

use std::collections::BTreeMap;

use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;

use super::output::{json_text, parse_pair, table};
use super::{Caller, CommandError, CommandIo, CommandResult, JsonArg, exit};
use crate::model::ChannelKind;
use crate::notify::Notifier;
use crate::notify::{Message, NotifyEvent, check_header_value, check_priority};
use crate::store::Store;
use crate::store::{ChannelUrl, NewChannel, NotifyChannel, StoreError};

/// The most channels one operator may have.
const MAX_CHANNELS: usize = 32;

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(subcommand)]
    pub command: NotifyCommand,
}

#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Add a channel: a webhook or an ntfy topic, paged about your agents.
    #[command(after_help = "Examples:\n  \
        ssh gw notify add phone --ntfy https://ntfy.sh/my-agents-7f3a --on waiting,exited \\\n      \
            --title '{agent} needs you' --priority high --tags robot\n  \
        ssh gw notify add ci --webhook https://hooks.example.com/agentgate/T0K3N --tag team=web\n\n\
        Events: waiting, exited, idle-stopped, host-unreachable (all by default).\n\
        A webhook gets a POST of {\"event\", \"agent\", \"host\", \"from\", \"to\", \"reason\",\n\
        \"time\", \"gateway\", \"text\"}; ntfy gets the text as the body and Title, Priority,\n\
        Tags, Click headers. A user part in the URL (https://user:token@host/topic) is sent as\n\
        Basic authorization. The URL is never shown whole again.")]
    Add(AddArgs),
    /// List your channels (their URLs masked).
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Remove one of your channels.
    #[command(visible_alias = "rm")]
    Remove(ChannelName),
    /// Send a test notification to one of your channels now (one try), and say how it went.
    Test(ChannelName),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["webhook", "ntfy"])))]
pub struct AddArgs {
    /// The channel's name (yours only): letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// POST a JSON document to this URL (http:// or https://).
    #[arg(long, value_name = "URL")]
    pub webhook: Option<String>,
    /// Publish to this ntfy topic (https://ntfy.sh/TOPIC, or your own server's).
    #[arg(long, value_name = "TOPIC-URL")]
    pub ntfy: Option<String>,
    /// The events to page for, comma-separated: waiting, exited, idle-stopped,
    /// host-unreachable (default: all).
    #[arg(long, value_name = "EVENT[,EVENT]", value_delimiter = ',')]
    pub on: Vec<String>,
    /// Only agents with this tag, KEY=VALUE (repeatable: all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// ntfy: the title ({agent}, {event} and {host} are filled in).
    #[arg(long)]
    pub title: Option<String>,
    /// ntfy: the priority, 1-5 or min, low, default, high, max, urgent.
    #[arg(long)]
    pub priority: Option<String>,
    /// ntfy: tags (emoji short codes), comma-separated.
    #[arg(long = "tags", value_name = "TAG[,TAG]")]
    pub ntfy_tags: Option<String>,
    /// ntfy: the URL opened when the notification is clicked ({agent} is filled in).
    #[arg(long, value_name = "URL")]
    pub click: Option<String>,
}

#[derive(Debug, Args)]
pub struct ChannelName {
    /// The channel's name.
    pub name: String,
}

pub async fn run(
    store: &Store,
    notifier: &Notifier,
    caller: &Caller,
    args: NotifyArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let me = &caller.operator.name;
    match args.command {
        NotifyCommand::Add(add) => {
            let channel = checked(add)?;
            if store.channels_of(me).await?.len() >= MAX_CHANNELS {
                return Err(CommandError::failed(format!(
                    "you have {MAX_CHANNELS} channels, the most one operator may have"
                ))
                .hint("remove one with: ssh gw notify remove NAME"));
            }
            store.add_channel(me, &channel).await.map_err(|e| match e {
                StoreError::Conflict(m) => CommandError::failed(m)
                    .hint("remove it first (ssh gw notify remove NAME), or pick another name"),
                e => e.into(),
            })?;
            io.write_out(&format!(
                "added {} channel '{}' ({}) for {}{}; try it with: ssh gw notify test {}\n",
                channel.kind.as_str(),
                channel.name,
                channel.url.masked(),
                channel.events.join(", "),
                tags_text(&channel.tags),
                channel.name
            ))
            .await;
        }
        NotifyCommand::List(args) => {
            let channels = store.channels_of(me).await?;
            let text = if args.json {
                json_text(&serde_json::Value::Array(
                    channels.iter().map(channel_json).collect(),
                ))
            } else {
                let rows: Vec<Vec<String>> = channels
                    .iter()
                    .map(|c| {
                        vec![
                            c.name.clone(),
                            c.kind.as_str().to_owned(),
                            c.url.masked(),
                            c.events.join(","),
                            c.tags
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join(","),
                        ]
                    })
                    .collect();
                table(&["NAME", "KIND", "URL", "EVENTS", "TAGS"], &rows)
            };
            io.write_out(&text).await;
        }
        NotifyCommand::Remove(ChannelName { name }) => {
            if !store.remove_channel(me, &name).await? {
                return Err(no_channel(&name));
            }
            io.write_out(&format!("removed channel '{name}'\n")).await;
        }
        NotifyCommand::Test(ChannelName { name }) => {
            let channel = store
                .channels_of(me)
                .await?
                .into_iter()
                .find(|c| c.name == name)
                .ok_or_else(|| no_channel(&name))?;
            let message = Message {
                event: NotifyEvent::Test,
                agent: String::new(),
                host: String::new(),
                from: None,
                to: "test".into(),
                reason: None,
                at: crate::model::Timestamp::now(),
            };
            let shown = format!("'{}' ({})", channel.name, channel.url.masked());
            match notifier.try_once(&channel, &message).await {
                Ok(()) => {
                    io.write_out(&format!("delivered a test notification to {shown}\n"))
                        .await;
                }
                Err(e) => {
                    return Err(CommandError::failed(format!(
                        "the test notification to {shown} failed: {e}"
                    ))
                    .hint("check the URL (ssh gw notify remove, then add it again)"));
                }
            }
        }
    }
    Ok(exit::OK)
}

fn no_channel(name: &str) -> CommandError {
    CommandError::failed(format!("you have no channel named '{name}'"))
        .hint("see yours with: ssh gw notify list")
}

/// The channel `notify add` asked for, every value checked.
pub(super) fn checked(add: AddArgs) -> Result<NewChannel, CommandError> {
    let name_ok = !add.name.is_empty()
        && add.name.len() <= 64
        && add
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err(CommandError::usage(format!(
            "invalid channel name '{}': use 1 to 64 letters, digits, '-', '_' or '.'",
            add.name
        )));
    }
    let (kind, url) = match (add.webhook, add.ntfy) {
        (Some(url), None) => (ChannelKind::Webhook, url),
        (None, Some(url)) => (ChannelKind::Ntfy, url),
        _ => {
            return Err(CommandError::usage(
                "give one of --webhook URL or --ntfy TOPIC-URL",
            ));
        }
    };
    if kind == ChannelKind::Webhook
        && (add.title.is_some()
            || add.priority.is_some()
            || add.ntfy_tags.is_some()
            || add.click.is_some())
    {
        return Err(CommandError::usage(
            "--title, --priority, --tags and --click are for --ntfy channels",
        )
        .hint("a webhook gets the whole change as JSON; shape it at the receiving end"));
    }
    let url = ChannelUrl::new(url);
    crate::notify::http::check_url(url.expose()).map_err(|e| {
        // The message never repeats the URL: it may hold a token.
        CommandError::usage(format!("the channel's URL is not usable: {e}"))
            .hint("give a whole URL, such as https://ntfy.sh/my-topic")
    })?;
    let mut events = Vec::new();
    for word in add.on.iter().map(|w| w.trim()) {
        let event = NotifyEvent::parse(word).ok_or_else(|| {
            CommandError::usage(format!(
                "unknown event '{word}' for --on (use waiting, exited, idle-stopped, \
                 host-unreachable)"
            ))
        })?;
        if !events.contains(&event.as_str().to_owned()) {
            events.push(event.as_str().to_owned());
        }
    }
    if events.is_empty() {
        events = NotifyEvent::CHOOSABLE
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect();
    }
    for (option, value) in [
        ("--title", &add.title),
        ("--tags", &add.ntfy_tags),
        ("--click", &add.click),
    ] {
        if let Some(value) = value {
            check_header_value(option, value).map_err(|e| CommandError::usage(e.to_string()))?;
        }
    }
    if let Some(p) = &add.priority {
        check_priority(p).map_err(|e| CommandError::usage(e.to_string()))?;
    }
    if let Some(click) = &add.click
        && !(click.starts_with("https://") || click.starts_with("http://"))
    {
        return Err(CommandError::usage(
            "--click must be an http:// or https:// URL",
        ));
    }
    Ok(NewChannel {
        name: add.name,
        kind,
        url,
        events,
        tags: add.tags.into_iter().collect(),
        title: add.title,
        priority: add.priority,
        ntfy_tags: add.ntfy_tags,
        click: add.click,
    })
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    if tags.is_empty() {
        return ", every agent you may see".to_owned();
    }
    let list: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(", agents tagged {}", list.join(" "))
}

fn channel_json(c: &NotifyChannel) -> serde_json::Value {
    json!({
        "name": c.name,
        "kind": c.kind.as_str(),
        "url": c.url.masked(),
        "events": c.events,
        "tags": c.tags,
        "title": c.title,
        "priority": c.priority,
        "ntfy_tags": c.ntfy_tags,
        "click": c.click,
        "created_at": c.created_at,
    })
}
