//! An agent's tags, the labels `--tag K=V` selects agents by: what a tag may be ([`check`],
//! pure) and changing them ([`edit`]: on the agent's host first, whose files describe it,
//! then in the gateway's records). Only the agent's owner or an admin may change them.

use std::collections::BTreeMap;

use super::error::{Error, Result, TagProblem};
use super::lifecycle::{Done, usable};
use crate::agents::Core;
use crate::store::Operator;

/// The longest tag key and value.
pub const MAX_TAG_LEN: usize = 128;

/// Checks a tag's key and value: what `--tag K=V` can select again.
pub fn check(key: &str, value: &str) -> Result<()> {
    let bad = |problem| Error::BadTag {
        key: key.to_owned(),
        value: value.to_owned(),
        problem,
    };
    if key.is_empty() || key.len() > MAX_TAG_LEN || value.len() > MAX_TAG_LEN {
        return Err(bad(TagProblem::Length { limit: MAX_TAG_LEN }));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err(bad(TagProblem::KeyCharacter));
    }
    if value.chars().any(char::is_control) {
        return Err(bad(TagProblem::ValueControl));
    }
    Ok(())
}

/// A change of one agent's tags: `set` (a key already set gets the new value), then `remove`
/// (each of which it must have).
#[derive(Clone, Debug)]
pub struct TagEdit {
    pub agent: String,
    pub set: Vec<(String, String)>,
    pub remove: Vec<String>,
}

/// The agent's tags after an edit, and its host.
#[derive(Clone, Debug)]
pub struct Tagged {
    pub host: String,
    pub tags: BTreeMap<String, String>,
}

/// Applies `edit` for `operator`: on the agent's host, then in the store (`Done::recorded`
/// says whether the store took it; the host has them either way).
pub async fn edit(core: &Core<'_>, operator: &Operator, edit: &TagEdit) -> Result<Done<Tagged>> {
    for (k, v) in &edit.set {
        check(k, v)?;
    }
    let name = edit.agent.as_str();
    let (agent, host) = usable(core, operator, name).await?;
    super::shares::require_owner(operator, &agent, "change its tags")?;
    let tags = edited(agent.tags.clone(), edit)?;
    host.set_tags(name, &tags).await?;
    let recorded = core.store.set_tags(name, &tags).await;
    Ok(Done {
        value: Tagged {
            host: agent.host,
            tags,
        },
        recorded,
    })
}

/// `tags` after `edit`: the keys removed first (each must be there), then the ones set.
fn edited(mut tags: BTreeMap<String, String>, edit: &TagEdit) -> Result<BTreeMap<String, String>> {
    for key in &edit.remove {
        if tags.remove(key).is_none() {
            return Err(Error::NoSuchTag {
                agent: edit.agent.clone(),
                key: key.clone(),
            });
        }
    }
    tags.extend(edit.set.iter().cloned());
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked() {
        assert!(check("team", "infra").is_ok());
        assert!(check("k8s.io/app", "a b").is_ok());
        for (k, v) in [("", "x"), ("a b", "x"), ("k", "a\nb"), ("k;rm", "x")] {
            assert!(check(k, v).is_err(), "{k:?}={v:?}");
        }
        assert!(check("k", &"v".repeat(MAX_TAG_LEN + 1)).is_err());
        assert_eq!(
            check("a b", "x").map_err(|e| e.to_string()),
            Err(
                "invalid tag 'a b=x': the key has a character other than letters, digits, \
                 '.', '_', '-', '/'"
                    .to_owned()
            )
        );
    }

    #[test]
    fn an_edit_removes_only_keys_that_are_there() {
        let tags: BTreeMap<String, String> = [("team".to_owned(), "infra".to_owned())].into();
        let edit = |set: &[(&str, &str)], remove: &[&str]| TagEdit {
            agent: "w".into(),
            set: set
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            remove: remove.iter().map(|k| (*k).into()).collect(),
        };
        let both = edited(
            tags.clone(),
            &edit(&[("team", "web"), ("a", "1")], &["team"]),
        );
        assert_eq!(
            both.map(|t| t.into_iter().collect::<Vec<_>>()).ok(),
            Some(vec![
                ("a".into(), "1".into()),
                ("team".into(), "web".into())
            ])
        );
        let missing = edited(tags, &edit(&[], &["nope"])).map_err(|e| e.to_string());
        assert_eq!(missing, Err("agent 'w' has no tag 'nope'".to_owned()));
    }
}
