//! `key add|list|remove` and `operator list|set`: who may log in, and with what. Adding and removing are for
//! admins; an operator lists only their own keys. The same functions serve the offline
//! `agentgate key ...` commands on the gateway's machine.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::output::{KeyJson, OperatorJson, TailnetLoginJson, json_text, table, to_json};
use super::{Caller, CommandError, CommandIo, CommandResult, JsonArg, exit, require_admin};
use crate::agents::live::LiveConnections;
use crate::auth;
use crate::config::Config;
use crate::model::Role;
use crate::store::{NewKey, Store, StoreError};

/// The most `key add` reads from stdin: one public-key line (an RSA 16384 key is ~2.8 KiB).
const MAX_KEY_LINE: usize = 16 * 1024;

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Register a public key (one OpenSSH line on stdin), or a tailnet login (admins only).
    #[command(
        after_help = "Examples:\n  ssh gw key add --name bob < bob.pub\n  ssh gw key add --name carol --role admin < carol.pub\n  ssh gw key add --name dave --tailscale-login dave@example.com"
    )]
    Add(KeyAddArgs),
    /// List the keys and tailnet logins that may log in (an operator sees their own).
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Remove one key (by fingerprint), one tailnet login, or every credential of an
    /// operator (by name) (admins only). Takes effect at once, on open connections too.
    #[command(visible_alias = "rm")]
    Remove(KeyRemoveArgs),
}

#[derive(Debug, Args)]
pub struct KeyAddArgs {
    /// The operator's name (default: the user part of the key's comment or of the login).
    #[arg(long)]
    pub name: Option<String>,
    /// admin or operator (default: operator; an existing operator keeps their role).
    #[arg(long)]
    pub role: Option<String>,
    /// Register this tailnet login (alice@example.com) instead of a key on stdin.
    #[arg(long, value_name = "LOGIN")]
    pub tailscale_login: Option<String>,
}

#[derive(Debug, Args)]
pub struct KeyRemoveArgs {
    /// A key's fingerprint (SHA256:...), a tailnet login, or an operator's name.
    pub what: String,
}

#[derive(Debug, Args)]
pub struct OperatorArgs {
    #[command(subcommand)]
    pub command: OperatorCommand,
}

#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// List the operators, their roles and how many keys, logins and agents each has.
    #[command(visible_alias = "ls")]
    List(JsonArg),
    /// Change what an operator may do (admins only).
    #[command(
        after_help = "Examples:\n  ssh gw operator set alice --agent-forwarding on\n  ssh gw operator set alice --agent-forwarding off"
    )]
    Set(OperatorSetArgs),
}

#[derive(Debug, Args)]
pub struct OperatorSetArgs {
    /// The operator's name.
    pub name: String,
    /// Whether their SSH agent may be forwarded into the agents they reach (`ssh -A NAME@gw`).
    /// Off by default: while their connection is open, the agent's processes can use the key.
    #[arg(long, value_name = "on|off")]
    pub agent_forwarding: Option<OnOff>,
}

/// A switch's two words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

pub async fn run(
    store: &Store,
    config: &Config,
    caller: &Caller,
    args: KeyArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let text = match args.command {
        KeyCommand::Add(args) => {
            require_admin(caller, "add keys")?;
            match args.tailscale_login {
                Some(login) => {
                    let (name, role) = add_login(store, args.name, args.role, &login).await?;
                    let mut text = format!(
                        "tailnet login {} may log in as operator '{name}' ({})\n",
                        login.trim(),
                        role.as_str()
                    );
                    if !config.auth.tailscale.enabled {
                        text.push_str("note: login by tailnet identity is off on this gateway (auth.tailscale.enabled)\n");
                    }
                    text
                }
                None => {
                    let bytes = io
                        .read_stdin(MAX_KEY_LINE)
                        .await
                        .map_err(CommandError::usage)?;
                    let line = String::from_utf8(bytes).map_err(|_| {
                        CommandError::usage("the key on stdin is not UTF-8 text")
                            .hint("send one OpenSSH public-key line: ssh gw key add < key.pub")
                    })?;
                    add_key(store, args.name, args.role, &line, None).await?
                }
            }
        }
        KeyCommand::List(args) => {
            let only = (!crate::agents::access::may_administer(&caller.operator))
                .then_some(caller.operator.name.as_str());
            credentials_text(store, only, args.json).await?
        }
        KeyCommand::Remove(args) => {
            require_admin(caller, "remove keys")?;
            remove(store, &args.what).await?
        }
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}

pub async fn run_operator(
    store: &Store,
    live: &LiveConnections,
    caller: &Caller,
    args: OperatorArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let args = match args.command {
        OperatorCommand::List(args) => args,
        OperatorCommand::Set(args) => {
            require_admin(caller, "change what operators may do")?;
            let text = set_operator(store, live, &args).await?;
            io.write_out(&text).await;
            return Ok(exit::OK);
        }
    };
    let operators = store.operators().await?;
    let text = if args.json {
        json_text(&to_json(
            &operators.iter().map(OperatorJson::of).collect::<Vec<_>>(),
        ))
    } else {
        let rows: Vec<Vec<String>> = operators
            .iter()
            .map(|o| {
                vec![
                    o.name.clone(),
                    o.role.as_str().to_owned(),
                    o.keys.to_string(),
                    o.tailscale_logins.to_string(),
                    o.agents.to_string(),
                    if o.agent_forwarding { "on" } else { "off" }.to_owned(),
                    o.created_at.to_string(),
                ]
            })
            .collect();
        table(
            &[
                "NAME",
                "ROLE",
                "KEYS",
                "LOGINS",
                "AGENTS",
                "AGENT-FORWARDING",
                "CREATED",
            ],
            &rows,
        )
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}

/// `operator set`: changes what one operator may do, saying what it is now.
async fn set_operator(
    store: &Store,
    live: &LiveConnections,
    args: &OperatorSetArgs,
) -> Result<String, CommandError> {
    let Some(forwarding) = args.agent_forwarding else {
        return Err(CommandError::usage("nothing to set")
            .hint("say what to change: ssh gw operator set NAME --agent-forwarding on|off"));
    };
    let on = forwarding == OnOff::On;
    if !store.set_agent_forwarding(&args.name, on).await? {
        return Err(
            CommandError::failed(format!("no operator named '{}'", args.name))
                .hint("see the operators: ssh gw operator list"),
        );
    }
    Ok(if on {
        format!(
            "operator '{}' may forward their SSH agent into agents (ssh -A NAME@gw); their \
             connections from now on get SSH_AUTH_SOCK\n",
            args.name
        )
    } else {
        let ended = live.end_forwardings(&args.name);
        format!(
            "operator '{}' may not forward their SSH agent into agents; {ended} open \
             forwarding(s) of theirs ended\n",
            args.name
        )
    })
}

/// Registers the first public-key line of `text`. Without `--name` the operator is the user
/// part of the key's comment, else `fallback`; without `--role`, admin for the first operator
/// and operator after.
pub async fn add_key(
    store: &Store,
    name: Option<String>,
    role: Option<String>,
    text: &str,
    fallback: Option<&str>,
) -> Result<String, CommandError> {
    let key =
        auth::parse_public_key_line(text.lines().find(|l| !l.trim().is_empty()).unwrap_or(""))
            .map_err(|e| {
                CommandError::usage(e.to_string())
                    .hint("send one OpenSSH public-key line: ssh gw key add < key.pub")
            })?;
    let (name, role) = operator_to_add(store, name, &key.comment, role, fallback).await?;
    let record = store
        .add_key(
            &name,
            role,
            &NewKey {
                fingerprint: &key.fingerprint,
                algorithm: &key.algorithm,
                public_key: &key.openssh,
                comment: &key.comment,
            },
        )
        .await
        .map_err(conflict)?;
    Ok(format!(
        "added key {} for operator '{}' ({})\n",
        record.fingerprint,
        record.operator,
        record.role.as_str()
    ))
}

/// Lets a tailnet login log in as an operator (see [`add_key`] for the defaults).
pub async fn add_login(
    store: &Store,
    name: Option<String>,
    role: Option<String>,
    login: &str,
) -> Result<(String, Role), CommandError> {
    let login = login.trim();
    auth::validate_tailscale_login(login).map_err(|e| CommandError::usage(e.to_string()))?;
    let (name, role) = operator_to_add(store, name, login, role, None).await?;
    store
        .add_tailscale_login(&name, role, login)
        .await
        .map_err(conflict)?;
    Ok((name, role))
}

fn conflict(e: StoreError) -> CommandError {
    match e {
        StoreError::Conflict(message) => CommandError::failed(message),
        other => other.into(),
    }
}

/// The operator a `key add` registers for, and its role: `--name`, else the user part of
/// `comment` (a key's comment, a tailnet login), else `fallback`; `--role`, else admin for
/// the first operator and operator after. An agent's name is refused.
async fn operator_to_add(
    store: &Store,
    name: Option<String>,
    comment: &str,
    role: Option<String>,
    fallback: Option<&str>,
) -> Result<(String, Role), CommandError> {
    let name = match name {
        Some(name) => name,
        None => match auth::default_operator_name(comment, "") {
            guessed if !guessed.is_empty() => guessed,
            _ => fallback.map(str::to_owned).ok_or_else(|| {
                CommandError::usage("the key's comment names no operator")
                    .hint("give the operator's name: --name NAME")
            })?,
        },
    };
    auth::validate_operator_name(&name).map_err(|e| CommandError::usage(e.to_string()))?;
    if store.agent_exists(&name).await? {
        return Err(CommandError::usage(format!(
            "'{name}' is the name of an agent: an operator of that name would be routed into the agent"
        ))
        .hint("pick another --name"));
    }
    let role = match role {
        Some(r) => r
            .parse::<Role>()
            .map_err(|e| CommandError::usage(e.to_string()))?,
        None if store.operator_count().await? == 0 => Role::Admin,
        None => Role::Operator,
    };
    Ok((name, role))
}

/// The keys and tailnet logins that may log in, as a table or JSON; `only` limits them to
/// one operator's.
pub async fn credentials_text(
    store: &Store,
    only: Option<&str>,
    json: bool,
) -> Result<String, CommandError> {
    let keep = |operator: &str| only.is_none_or(|o| o == operator);
    let keys: Vec<_> = store
        .keys()
        .await?
        .into_iter()
        .filter(|k| keep(&k.operator))
        .collect();
    let logins: Vec<_> = store
        .tailscale_logins()
        .await?
        .into_iter()
        .filter(|(_, operator, _)| keep(operator))
        .collect();
    if json {
        let mut all: Vec<Value> = keys.iter().map(|k| to_json(&KeyJson::of(k))).collect();
        all.extend(logins.iter().map(|(login, operator, role)| {
            to_json(&TailnetLoginJson {
                operator,
                role: *role,
                tailscale_login: login,
            })
        }));
        return Ok(json_text(&Value::Array(all)));
    }
    let mut rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.operator.clone(),
                k.role.as_str().into(),
                k.fingerprint.clone(),
                k.comment.clone(),
            ]
        })
        .collect();
    rows.extend(logins.iter().map(|(login, operator, role)| {
        vec![
            operator.clone(),
            role.as_str().into(),
            format!("tailscale:{login}"),
            "tailnet identity".into(),
        ]
    }));
    Ok(table(
        &["OPERATOR", "ROLE", "FINGERPRINT", "COMMENT"],
        &rows,
    ))
}

/// Removes a key, a tailnet login, or every credential of an operator.
pub async fn remove(store: &Store, what: &str) -> Result<String, CommandError> {
    let what = what.strip_prefix("tailscale:").unwrap_or(what);
    let removed = store.remove_credentials(what).await.map_err(|e| match e {
        StoreError::Conflict(message) => CommandError::failed(message)
            .hint("add another admin first: ssh gw key add --name NAME --role admin < key.pub"),
        other => other.into(),
    })?;
    if removed.keys + removed.logins == 0 {
        return Err(
            CommandError::failed(format!("no key, tailnet login or operator '{what}'"))
                .hint("see them with: ssh gw key list"),
        );
    }
    Ok(format!(
        "removed {} key(s) and {} tailnet login(s) of '{what}'; they can no longer log in or open channels\n",
        removed.keys, removed.logins
    ))
}
