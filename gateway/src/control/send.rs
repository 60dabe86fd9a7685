//! `send NAME TEXT...` or `send NAME -`: types text into the agent (hostctl pastes a text of
//! several lines), then Enter.
//! `send --tag K=V TEXT...` and `send --all TEXT...`: into every such agent you can see.

use clap::Args;

use hostctl::api::Key;

use super::output::parse_pair;
use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::agents::Core;
use crate::agents::deliver::{self, Delivery};
use crate::model::AgentStatus;
use crate::store::AgentRecord;

/// How many agents of a `send --tag` or `--all` are given the text at once.
const BROADCAST_AT_ONCE: usize = 16;

/// The most `send NAME -` reads from stdin.
pub const MAX_TEXT: usize = 1024 * 1024;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh core send fix-ci make the tests pass\n  ssh core send fix-ci - < prompt.txt\n  ssh core send fix-ci --key Down --key Enter\n  ssh core send --tag team=infra /compact\n  ssh core send --all --no-enter y"
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
    /// Press this key instead of sending a text (repeatable, in order): Enter, Esc, Tab,
    /// BTab, Up, Down, Left, Right, Space, BSpace, C-a ... C-z, a digit or a letter.
    #[arg(long = "key", value_name = "KEY")]
    pub keys: Vec<String>,
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
    core: &Core<'_>,
    caller: &Caller,
    args: SendArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let single = if args.broadcast() {
        None
    } else {
        Some(args.agent().ok_or_else(|| {
            CommandError::usage("send needs an agent's name (or --tag K=V, or --all)")
                .hint("ssh core send NAME TEXT...")
        })?)
    };
    let keys = args
        .keys
        .iter()
        .map(|k| Key::parse(k))
        .collect::<Result<Vec<Key>, String>>()
        .map_err(|e| CommandError::usage(e).hint("ssh core send NAME --key Enter"))?;
    if !keys.is_empty() && !args.text_words().is_empty() {
        return Err(CommandError::usage("send takes a text or --key, not both")
            .hint("send the text first, then the keys: ssh core send NAME --key Enter"));
    }
    // The agent is looked up before stdin is read: a wrong name fails at once.
    let target = match single {
        Some(name) => Some(agent_and_host(core, caller, name).await?),
        None => None,
    };
    let what = if !keys.is_empty() {
        What::Keys(keys)
    } else if args.reads_stdin() {
        let bytes = io.read_stdin(MAX_TEXT).await.map_err(CommandError::usage)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| CommandError::usage("the text on stdin is not UTF-8"))?;
        // The line end of the text's last line (LF, or CR LF from a file written on Windows).
        What::Text(
            text.strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text)
                .to_owned(),
        )
    } else {
        What::Text(args.text_words().join(" "))
    };
    if let What::Text(text) = &what {
        crate::agents::deliver::check_text(text, "the text to send")?;
    }
    if let Some((agent, host)) = target {
        let delivery = what.deliver(core, &agent, &host, !args.no_enter).await?;
        return match delivery_line(&agent.name, &what, &delivery) {
            Ok(line) => {
                io.write_out(&line).await;
                Ok(exit::OK)
            }
            Err(e) => Err(e),
        };
    }
    let agents: Vec<_> = super::many::select(core, caller, &args.tags)
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
        .hint("see the agents and their tags with: ssh core list"));
    }
    let by = if args.all {
        "(by --all)".to_owned()
    } else {
        format!("(by tag {})", super::many::tags_text(&args.tags))
    };
    // Side by side, a few at a time: each agent takes its time to show it took the text.
    use futures::StreamExt;
    type Delivered<'a> = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<String, CommandError>> + Send + 'a>,
    >;
    let enter = !args.no_enter;
    let jobs: Vec<Delivered<'_>> = agents
        .iter()
        .map(|agent| -> Delivered<'_> {
            let what = &what;
            let core: &Core<'_> = core;
            Box::pin(async move {
                let host = core.hosts.get(&agent.host).map_err(CommandError::from)?;
                let delivery = what.deliver(core, agent, &host, enter).await?;
                delivery_line(&agent.name, what, &delivery)
            })
        })
        .collect();
    let deliveries: Vec<_> = futures::stream::iter(jobs)
        .buffered(BROADCAST_AT_ONCE)
        .collect()
        .await;
    let results = agents.iter().zip(deliveries).collect();
    Ok(super::many::report_each(core, caller, ("send", &by), results, io).await)
}

/// A text or keys, to give an agent.
enum What {
    Text(String),
    Keys(Vec<Key>),
}

impl What {
    async fn deliver(
        &self,
        core: &Core<'_>,
        agent: &AgentRecord,
        host: &crate::hosts::Host,
        enter: bool,
    ) -> Result<Delivery, CommandError> {
        let delivery = match self {
            What::Text(text) => deliver::send_text(core, agent, host, text, enter).await,
            What::Keys(keys) => deliver::press(core, agent, host, keys, deliver::screen_changed)
                .await
                .map(|d| match d {
                    Delivery::NotTaken { .. } if agent.spec.cli.is_none() => Delivery::Submitted,
                    other => other,
                }),
        };
        delivery.map_err(|e| CommandError::from(e).hint(format!("ssh core info {}", agent.name)))
    }
}

/// The line that says what became of a delivery, or the error that says it was not taken.
fn delivery_line(name: &str, what: &What, delivery: &Delivery) -> Result<String, CommandError> {
    let given = match what {
        What::Text(text) => format!("{} bytes", text.len()),
        What::Keys(keys) => keys
            .iter()
            .map(Key::to_string)
            .collect::<Vec<_>>()
            .join(" "),
    };
    match delivery {
        Delivery::Taken(by) => Ok(format!("agent '{name}' took {given} ({})\n", by.text())),
        Delivery::Typed => Ok(format!("typed {given} into agent '{name}' (no Enter)\n")),
        Delivery::Submitted => Ok(format!(
            "sent {given} to agent '{name}' (its program is no CLI agentgate knows: no sign to wait for)\n"
        )),
        Delivery::NotTaken { last_line } => Err(CommandError::failed(format!(
            "agent '{name}' did not take {given} within {} s: its screen shows {}",
            deliver::CONFIRM_WITHIN.as_secs(),
            last_line
                .as_deref()
                .map_or_else(|| "nothing".to_owned(), |l| format!("{:?}", l.trim())),
        ))
        .hint(format!(
            "look at it with: ssh {name}@core (or ssh core attach {name})"
        ))),
    }
}
