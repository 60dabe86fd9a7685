//! `send NAME TEXT...` or `send NAME -`: types text into the agent, then Enter.

use std::sync::Arc;

use clap::Args;

use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;

/// The most `send NAME -` reads from stdin.
const MAX_TEXT: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct SendArgs {
    /// The agent's name.
    pub name: String,
    /// The text; `-` (or nothing) reads it from stdin.
    #[arg(value_name = "TEXT")]
    pub text: Vec<String>,
    /// Do not press Enter after the text.
    #[arg(long)]
    pub no_enter: bool,
}

impl SendArgs {
    pub fn reads_stdin(&self) -> bool {
        self.text.is_empty() || self.text == ["-"]
    }
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: SendArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (_agent, host) = agent_and_host(gw, caller, &args.name).await?;
    let text = if args.reads_stdin() {
        let bytes = io.read_stdin(MAX_TEXT).await.map_err(CommandError::usage)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CommandError::usage("the text on stdin is not UTF-8"))?;
        text.strip_suffix('\n').unwrap_or(&text).to_owned()
    } else {
        args.text.join(" ")
    };
    host.send(&args.name, &text, !args.no_enter).await?;
    io.write_out(&format!(
        "sent {} bytes to agent '{}'\n",
        text.len(),
        args.name
    ))
    .await;
    Ok(exit::OK)
}
