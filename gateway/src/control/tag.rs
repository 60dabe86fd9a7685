//! `tag NAME K=V...` and `untag NAME KEY...`: set or remove the labels that `--tag K=V`
//! selects agents by (`agents::tags`).

use clap::Args;

use super::output::parse_pair;
use super::{Caller, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::agents::tags::{self, TagEdit};

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The agent's name.
    pub name: String,
    /// The tags to set, KEY=VALUE (a key already set gets the new value).
    #[arg(required = true, value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct UntagArgs {
    /// The agent's name.
    pub name: String,
    /// The keys to remove.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,
}

pub async fn tag(
    core: &Core<'_>,
    caller: &Caller,
    args: TagArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let edit = TagEdit {
        agent: args.name,
        set: args.tags,
        remove: Vec::new(),
    };
    edit_tags(core, caller, &edit, io).await
}

pub async fn untag(
    core: &Core<'_>,
    caller: &Caller,
    args: UntagArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let edit = TagEdit {
        agent: args.name,
        set: Vec::new(),
        remove: args.keys,
    };
    edit_tags(core, caller, &edit, io).await
}

/// Applies the edit and prints the agent's tags as they are now.
async fn edit_tags(
    core: &Core<'_>,
    caller: &Caller,
    edit: &TagEdit,
    io: &mut CommandIo,
) -> CommandResult {
    let name = &edit.agent;
    let done = tags::edit(core, &caller.operator, edit).await?;
    let tagged = &done.value;
    let what = || {
        format!(
            "the tags of agent '{name}' were changed on host {}",
            tagged.host
        )
    };
    let later = "the gateway shows and selects by the old tags until the command is run again";
    super::recorded(io, done.recorded, what, later).await;
    let text = if tagged.tags.is_empty() {
        "no tags".to_owned()
    } else {
        tagged
            .tags
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    io.write_out(&format!("agent '{name}': {text}\n")).await;
    Ok(exit::OK)
}
