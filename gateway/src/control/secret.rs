//! `secret set|list|remove`: values handed to agents' environments by name. Templates name
//! the secrets an agent gets (`secrets = ["ANTHROPIC_API_KEY"]`); the gateway looks the
//! values up at every start and passes them to hostctl on stdin. A value is read on stdin,
//! stored in the gateway's database (mode 0600), and never printed: not by `secret list`,
//! `info`, `list`, `events` or the log.

use clap::{Args, Subcommand};

use super::output::{SecretJson, json_text, table, to_json};
use super::{Caller, CommandError, CommandIo, CommandResult, JsonArg, exit, require_admin};
use crate::store::Store;

/// The largest secret `secret set` takes.
const MAX_SECRET: usize = 64 * 1024;

#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret, its value read on stdin (admins only). Trailing newlines are dropped.
    #[command(
        after_help = "Examples:\n  ssh gw secret set ANTHROPIC_API_KEY < key.txt\n  \
                            printf %s \"$TOKEN\" | ssh gw secret set GH_TOKEN"
    )]
    Set(SecretName),
    /// List the secrets' names (never their values).
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Remove a secret (admins only). Agents that use it keep it until they stop; they cannot
    /// start again until it is set.
    #[command(visible_alias = "rm")]
    Remove(SecretName),
}

#[derive(Debug, Args)]
pub struct SecretName {
    /// The secret's name, which is also the variable the agent sees: letters, digits and `_`.
    pub name: String,
}

impl SecretCommand {
    pub fn reads_stdin(&self) -> bool {
        matches!(self, SecretCommand::Set(_))
    }
}

pub async fn run(
    store: &Store,
    caller: &Caller,
    args: SecretArgs,
    io: &mut CommandIo,
) -> CommandResult {
    match args.command {
        SecretCommand::Set(SecretName { name }) => {
            require_admin(caller, "set secrets")?;
            check_name(&name)?;
            let mut value = io
                .read_stdin(MAX_SECRET)
                .await
                .map_err(CommandError::usage)?;
            while matches!(value.last(), Some(b'\n' | b'\r')) {
                value.pop();
            }
            if value.is_empty() {
                return Err(CommandError::usage("no value on stdin")
                    .hint(format!("send it on stdin: ssh gw secret set {name} < file")));
            }
            if std::str::from_utf8(&value).is_err() || value.contains(&0) {
                return Err(CommandError::usage(
                    "the value is not text (an environment variable cannot hold it)",
                ));
            }
            let replaced = store
                .set_secret(&name, &value, &caller.operator.name)
                .await?;
            let verb = if replaced { "replaced" } else { "stored" };
            io.write_out(&format!(
                "{verb} secret '{name}' ({} bytes); agents get it at their next start\n",
                value.len()
            ))
            .await;
        }
        SecretCommand::List(args) => {
            let secrets = store.secrets().await?;
            let text = if args.json {
                json_text(&to_json(
                    &secrets.iter().map(SecretJson::of).collect::<Vec<_>>(),
                ))
            } else {
                let rows: Vec<Vec<String>> = secrets
                    .iter()
                    .map(|s| vec![s.name.clone(), s.set_by.clone(), s.updated_at.to_string()])
                    .collect();
                table(&["NAME", "SET BY", "UPDATED"], &rows)
            };
            io.write_out(&text).await;
        }
        SecretCommand::Remove(SecretName { name }) => {
            require_admin(caller, "remove secrets")?;
            if !store.remove_secret(&name).await? {
                return Err(CommandError::failed(format!("no secret named '{name}'"))
                    .hint("see them with: ssh gw secret list"));
            }
            io.write_out(&format!("removed secret '{name}'\n")).await;
        }
    }
    Ok(exit::OK)
}

fn check_name(name: &str) -> Result<(), CommandError> {
    hostctl::api::validate_env_key(name).map_err(|e| {
        CommandError::usage(format!("invalid secret name: {e}"))
            .hint("a secret's name is the variable the agent sees, like ANTHROPIC_API_KEY")
    })
}
