//! `send NAME TEXT...` or `send NAME -`: types text into the agent (hostctl pastes a text of
//! several lines), then Enter.
//! `send --tag K=V TEXT...` and `send --all TEXT...`: into every such agent you can see.

use std::sync::Arc;

use clap::Args;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::Gateway;
use crate::store::AgentStatus;

/// The most `send NAME -` reads from stdin.
pub const MAX_TEXT: usize = 1024 * 1024;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh gw send fix-ci make the tests pass\n  ssh gw send fix-ci - < prompt.txt\n  ssh gw send --tag team=infra /compact\n  ssh gw send --all --no-enter y"
)]
pub struct SendArgs {
    /// The agent's name (with --tag or --all: the first word of the text).
    #[arg(value_name = "NAME")]
    pub first: Option<String>,
    /// The text; `-` (or no text) reads it from stdin. Options go before it: every word from
    /// its first on is text, `--all` included.
    #[arg(value_name = "TEXT", trailing_var_arg = true)]
    pub rest: Vec<String>,
    /// Send to every running agent of yours with this tag, KEY=VALUE (repeatable: all must
    /// match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_pair)]
    pub tags: Vec<(String, String)>,
    /// Send to every running agent of yours.
    #[arg(long, conflicts_with = "tags")]
    pub all: bool,
    /// Do not press Enter after the text.
    #[arg(long)]
    pub no_enter: bool,
}

impl SendArgs {
    fn broadcast(&self) -> bool {
        self.all || !self.tags.is_empty()
    }

    /// The agent named, when it is one.
    pub fn agent(&self) -> Option<&str> {
        (!self.broadcast())
            .then_some(self.first.as_deref())
            .flatten()
    }

    fn text_words(&self) -> Vec<String> {
        if self.broadcast() {
            self.first.iter().chain(&self.rest).cloned().collect()
        } else {
            self.rest.clone()
        }
    }

    pub fn reads_stdin(&self) -> bool {
        let text = self.text_words();
        text.is_empty() || text == ["-"]
    }
}

pub async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    args: SendArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let single = if args.broadcast() {
        None
    } else {
        Some(args.agent().ok_or_else(|| {
            CommandError::usage("send needs an agent's name (or --tag K=V, or --all)")
                .hint("ssh gw send NAME TEXT...")
        })?)
    };
    // The agent is looked up before stdin is read: a wrong name fails at once.
    let host = match single {
        Some(name) => Some(agent_and_host(gw, caller, name).await?.1),
        None => None,
    };
    let text = if args.reads_stdin() {
        let bytes = io.read_stdin(MAX_TEXT).await.map_err(CommandError::usage)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CommandError::usage("the text on stdin is not UTF-8"))?;
        // The line end of the text's last line (LF, or CR LF from a file written on Windows).
        text.strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text)
            .to_owned()
    } else {
        args.text_words().join(" ")
    };
    check_text(&text, "the text to send")?;
    if let (Some(name), Some(host)) = (single, host) {
        host.send(name, &text, !args.no_enter).await?;
        gw.inputs.touch(name);
        io.write_out(&format!("sent {} bytes to agent '{name}'\n", text.len()))
            .await;
        return Ok(exit::OK);
    }
    let agents: Vec<_> = super::many::select(gw, caller, &args.tags)
        .await?
        .into_iter()
        .filter(|a| a.status == AgentStatus::Running)
        .collect();
    if agents.is_empty() {
        return Err(CommandError::failed(if args.all {
            "no agent is running".to_owned()
        } else {
            "no running agent has those tags".to_owned()
        })
        .hint("see the agents and their tags with: ssh gw list"));
    }
    let by = if args.all {
        "(by --all)".to_owned()
    } else {
        format!("(by tag {})", super::many::tags_text(&args.tags))
    };
    let mut failed = 0;
    for agent in &agents {
        let sent = match gw.hosts.get(&agent.host) {
            Ok(host) => host
                .send(&agent.name, &text, !args.no_enter)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let (status, message) = match &sent {
            Ok(()) => (exit::OK, String::new()),
            Err(e) => (exit::FAILED, e.clone()),
        };
        super::many::record_one(
            gw,
            caller,
            &agent.name,
            &format!("send {} {by}", agent.name),
            status,
            &message,
        )
        .await;
        match sent {
            Ok(()) => {
                gw.inputs.touch(&agent.name);
                io.write_out(&format!(
                    "sent {} bytes to agent '{}'\n",
                    text.len(),
                    agent.name
                ))
                .await;
            }
            Err(e) => {
                failed += 1;
                io.write_err(&format!("error: agent '{}': {e}\n", agent.name))
                    .await;
            }
        }
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

/// Refuses text a terminal cannot be given: a NUL byte ends a C string, so tmux (and the
/// program in the pane) would never see what follows it.
pub fn check_text(text: &str, what: &str) -> Result<(), CommandError> {
    match text.find('\0') {
        Some(at) => Err(
            CommandError::usage(format!("{what} contains a NUL byte (at byte {at})"))
                .hint("a terminal cannot take NUL bytes: send text without them"),
        ),
        None => Ok(()),
    }
}
