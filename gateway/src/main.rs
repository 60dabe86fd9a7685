//! The `agentgate` binary: parses the command line, sets up logging and signals, and calls the
//! library. `serve` runs the gateway; `key add` and `key list` administer a data directory
//! offline (for bootstrapping and scripts).

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::Config;
use gateway::store::{NewKey, Role};
use gateway::{DataDir, auth};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "agentgate",
    version,
    about = "One SSH server in front of every AI coding agent you run."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Place {
    /// The data directory (default: $XDG_DATA_HOME/agentgate or ~/.local/share/agentgate).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The configuration file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The address to listen on (default 127.0.0.1:2222).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// tailscaled's LocalAPI socket (default /var/run/tailscale/tailscaled.sock).
        #[arg(long, value_name = "PATH")]
        tailscale_socket: Option<PathBuf>,
        #[command(flatten)]
        place: Place,
    },
    /// Manage operator keys offline (works on a data directory that does not exist yet).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Register one OpenSSH public-key line, read on stdin (or, with --tailscale-login, a
    /// tailnet identity).
    Add {
        /// The operator's name (default: the user part of the key's comment or of the tailnet
        /// login, else $USER).
        #[arg(long)]
        name: Option<String>,
        /// Let the operator log in by tailnet identity instead of a key: the login name as
        /// tailscale shows it (alice@example.com). Needs auth.tailscale.enabled in the config.
        #[arg(long, value_name = "LOGIN")]
        tailscale_login: Option<String>,
        /// admin or operator (default: admin for the first operator, operator after).
        #[arg(long)]
        role: Option<String>,
        #[command(flatten)]
        place: Place,
    },
    /// List registered keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        place: Place,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("agentgate: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agentgate: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(place: &Place) -> anyhow::Result<(Config, PathBuf)> {
    let mut config = match &place.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(dir) = &place.data_dir {
        config.server.data_dir = Some(dir.clone());
    }
    let data_dir = config.data_dir()?;
    Ok((config, data_dir))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            listen,
            tailscale_socket,
            place,
        } => {
            let (mut config, data_dir) = load(&place)?;
            if let Some(addr) = listen {
                config.server.listen = addr;
            }
            if let Some(socket) = tailscale_socket {
                config.tailscale.socket = socket;
            }
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.server.listen))?;
            let stop = CancellationToken::new();
            let on_signal = stop.clone();
            tokio::spawn(async move {
                wait_for_stop_signal().await;
                tracing::info!(
                    "stop signal received: no new connections; open sessions may finish \
                     (a second signal stops at once)"
                );
                on_signal.cancel();
                wait_for_stop_signal().await;
                tracing::warn!("second stop signal: stopping now; agents keep running");
                std::process::exit(1);
            });
            gateway::serve(config, &data_dir, listener, stop).await
        }
        Command::Key {
            command:
                KeyCommand::Add {
                    name,
                    tailscale_login: Some(login),
                    role,
                    place,
                },
        } => {
            let (config, data_dir) = load(&place)?;
            let login = login.trim().to_owned();
            auth::validate_tailscale_login(&login).map_err(anyhow::Error::msg)?;
            let store = DataDir::prepare(&data_dir)?.open_store().await?;
            let (name, role) = operator_to_add(&store, name, &login, role).await?;
            store.add_tailscale_login(&name, role, &login).await?;
            println!(
                "tailnet login {login} may log in as operator '{name}' ({})",
                role.as_str()
            );
            if !config.auth.tailscale.enabled {
                eprintln!(
                    "note: login by tailnet identity is off; turn it on with `[auth.tailscale] enabled = true` in the configuration"
                );
            }
            store.close().await;
            Ok(())
        }
        Command::Key {
            command:
                KeyCommand::Add {
                    name,
                    tailscale_login: None,
                    role,
                    place,
                },
        } => {
            let (_config, data_dir) = load(&place)?;
            let mut line = String::new();
            std::io::stdin()
                .read_to_string(&mut line)
                .context("cannot read stdin")?;
            let key = auth::parse_public_key_line(
                line.lines().find(|l| !l.trim().is_empty()).unwrap_or(""),
            )
            .map_err(anyhow::Error::msg)?;
            let store = DataDir::prepare(&data_dir)?.open_store().await?;
            let (name, role) = operator_to_add(&store, name, &key.comment, role).await?;
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
                .await?;
            println!(
                "added key {} for operator '{}' ({})",
                record.fingerprint,
                record.operator,
                record.role.as_str()
            );
            store.close().await;
            Ok(())
        }
        Command::Key {
            command: KeyCommand::List { json, place },
        } => {
            let (_config, data_dir) = load(&place)?;
            let store = DataDir::prepare(&data_dir)?.open_store().await?;
            let keys = store.keys().await?;
            let logins = store.tailscale_logins().await?;
            if json {
                let mut all: Vec<serde_json::Value> = keys
                    .iter()
                    .map(serde_json::to_value)
                    .collect::<Result<_, _>>()?;
                all.extend(logins.iter().map(|(login, operator, role)| {
                    serde_json::json!({
                        "operator": operator, "role": role.as_str(), "tailscale_login": login,
                    })
                }));
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
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
                print!(
                    "{}",
                    gateway::control::output::table(
                        &["OPERATOR", "ROLE", "FINGERPRINT", "COMMENT"],
                        &rows
                    )
                );
            }
            store.close().await;
            Ok(())
        }
    }
}

/// The operator a `key add` registers for, and its role: `--name`, else the user part of
/// `comment` (a key's comment, a tailnet login), else `$USER`, else `admin`; `--role`, else
/// admin for the first operator and operator after. An agent's name is refused.
async fn operator_to_add(
    store: &gateway::store::Store,
    name: Option<String>,
    comment: &str,
    role: Option<String>,
) -> anyhow::Result<(String, Role)> {
    let fallback = std::env::var("USER")
        .ok()
        .filter(|u| auth::validate_operator_name(u).is_ok())
        .unwrap_or_else(|| "admin".into());
    let name = name.unwrap_or_else(|| auth::default_operator_name(comment, &fallback));
    auth::validate_operator_name(&name).map_err(anyhow::Error::msg)?;
    if store.agent_exists(&name).await? {
        anyhow::bail!(
            "'{name}' is the name of an agent: an operator of that name would be routed into the agent; pick another --name"
        );
    }
    let role = match role {
        Some(r) => r.parse::<Role>().map_err(anyhow::Error::msg)?,
        None if store.operator_count().await? == 0 => Role::Admin,
        None => Role::Operator,
    };
    Ok((name, role))
}

async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the gateway can only be killed; never stop on our own.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
