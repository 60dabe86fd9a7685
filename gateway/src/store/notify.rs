//! Notification channels (table `notify_channels`): each operator's webhooks and ntfy topics.
//!
//! A channel's URL can hold a secret (a token in its path, query or user part), so it is
//! wrapped ([`ChannelUrl`]): its `Debug` prints `***`, and what may be shown of it is its
//! scheme and host ([`ChannelUrl::masked`]). Only the deliverer (`crate::notify`) reads it
//! whole. This module decides nothing about what is sent where.

use std::collections::BTreeMap;

use super::{Result, Store, StoreError};
use crate::model::{ChannelKind, Role, Timestamp};

/// A channel's URL, which may hold a token: never printed whole.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelUrl(String);

impl std::fmt::Debug for ChannelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for ChannelUrl {
    fn from(url: String) -> ChannelUrl {
        ChannelUrl(url)
    }
}

impl ChannelUrl {
    pub fn new(url: String) -> ChannelUrl {
        ChannelUrl(url)
    }

    /// The whole URL, for the request only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What may be shown: the scheme and host (and port), the rest as `***`
    /// (`https://ntfy.sh/***`). A user part (`user:token@`) is never shown.
    pub fn masked(&self) -> String {
        let Some((scheme, rest)) = self.0.split_once("://") else {
            return "***".to_owned();
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let hidden = end < rest.len() && rest[end..] != *"/" || authority.contains('@');
        format!("{scheme}://{host}{}", if hidden { "/***" } else { "" })
    }
}

/// A channel as stored, with its operator's role (for the access rule).
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct NotifyChannel {
    pub operator: String,
    pub operator_role: Role,
    pub name: String,
    pub kind: ChannelKind,
    #[sqlx(try_from = "String")]
    pub url: ChannelUrl,
    /// The events it is for (`waiting`, `exited`, `idle-stopped`, `host-unreachable`).
    #[sqlx(try_from = "super::columns::Json<Vec<String>>")]
    pub events: Vec<String>,
    /// Only agents with all these tags.
    #[sqlx(try_from = "super::columns::Json<BTreeMap<String, String>>")]
    pub tags: BTreeMap<String, String>,
    pub title: Option<String>,
    pub priority: Option<String>,
    pub ntfy_tags: Option<String>,
    pub click: Option<String>,
    pub created_at: Timestamp,
}

/// What `notify add` stores.
#[derive(Clone, Debug)]
pub struct NewChannel {
    pub name: String,
    pub kind: ChannelKind,
    pub url: ChannelUrl,
    pub events: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub title: Option<String>,
    pub priority: Option<String>,
    pub ntfy_tags: Option<String>,
    pub click: Option<String>,
}

const CHANNEL_SELECT: &str =
    "SELECT o.name AS operator, o.role AS operator_role, c.name, c.kind, c.url, c.events,
        c.tags, c.title, c.priority, c.ntfy_tags, c.click, c.created_at
    FROM notify_channels c JOIN operators o ON o.id = c.operator_id";

impl Store {
    /// Adds channel `channel.name` for `operator`; a name the operator already uses is a
    /// conflict.
    pub async fn add_channel(&self, operator: &str, channel: &NewChannel) -> Result<()> {
        let events = serde_json::to_string(&channel.events)
            .map_err(|e| StoreError::Corrupt(format!("encoding events: {e}")))?;
        let tags = serde_json::to_string(&channel.tags)
            .map_err(|e| StoreError::Corrupt(format!("encoding tags: {e}")))?;
        let result = sqlx::query(
            "INSERT INTO notify_channels (operator_id, name, kind, url, events, tags, title,
                                          priority, ntfy_tags, click, created_at)
             SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 FROM operators WHERE name = ?1",
        )
        .bind(operator)
        .bind(&channel.name)
        .bind(channel.kind.as_str())
        .bind(channel.url.expose())
        .bind(events)
        .bind(tags)
        .bind(&channel.title)
        .bind(&channel.priority)
        .bind(&channel.ntfy_tags)
        .bind(&channel.click)
        .bind(Timestamp::now())
        .execute(&self.pool)
        .await;
        match result {
            Ok(done) if done.rows_affected() == 0 => Err(StoreError::Conflict(format!(
                "no operator named '{operator}'"
            ))),
            Ok(_) => {
                self.feed_channels_changed();
                Ok(())
            }
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Conflict(
                format!("you already have a channel named '{}'", channel.name),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// `operator`'s channels, by name.
    pub async fn channels_of(&self, operator: &str) -> Result<Vec<NotifyChannel>> {
        let rows = sqlx::query_as::<_, NotifyChannel>(&format!(
            "{CHANNEL_SELECT} WHERE o.name = ? ORDER BY c.name"
        ))
        .bind(operator)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Every operator's channels (for the deliverer).
    pub async fn all_channels(&self) -> Result<Vec<NotifyChannel>> {
        let rows = sqlx::query_as::<_, NotifyChannel>(&format!(
            "{CHANNEL_SELECT} ORDER BY o.name, c.name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    /// Removes `operator`'s channel `name`; false if there was none.
    pub async fn remove_channel(&self, operator: &str, name: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM notify_channels WHERE name = ?2
               AND operator_id = (SELECT id FROM operators WHERE name = ?1)",
        )
        .bind(operator)
        .bind(name)
        .execute(&self.pool)
        .await?;
        self.feed_channels_changed();
        Ok(done.rows_affected() > 0)
    }

    /// How many times the channels were changed: the deliverer reads them again when this moves.
    pub fn channels_generation(&self) -> u64 {
        self.channels_changed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn feed_channels_changed(&self) {
        self.channels_changed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelUrl;

    #[test]
    fn a_url_is_shown_by_its_scheme_and_host_only() {
        let shown = |u: &str| ChannelUrl::new(u.to_owned()).masked();
        assert_eq!(shown("https://ntfy.sh/secret-topic"), "https://ntfy.sh/***");
        assert_eq!(
            shown("https://user:tk_abc@ntfy.example.com:8443/t?auth=x"),
            "https://ntfy.example.com:8443/***"
        );
        assert_eq!(shown("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
        assert_eq!(shown("http://127.0.0.1:9000/"), "http://127.0.0.1:9000");
        assert_eq!(shown("http://u:p@h"), "http://h/***");
        assert_eq!(shown("not a url"), "***");
        assert_eq!(
            format!("{:?}", ChannelUrl::new("https://x/y".into())),
            "***"
        );
    }
}
