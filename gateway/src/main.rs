//! The `agentgate` binary: parses the command line, sets up logging and signals, and calls the
//! library. `serve` runs the gateway; `key add` and `key list` administer a data directory
//! offline (for bootstrapping and scripts).

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use gateway::config::{Config, ConfigError};
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
    /// Remove a key (by fingerprint), a tailnet login, or every credential of an operator
    /// (by name). A running gateway refuses them at once, on open connections too.
    Remove {
        /// A key's fingerprint (SHA256:...), a tailnet login, or an operator's name.
        what: String,
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
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish()
            // Clients' habits the gateway does not serve are not warnings (`ssh::quiet`).
            .with(gateway::ssh::quiet::QuietRequests)
            .init();
    }
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
        Some(path) => {
            let config = Config::load(path)?;
            // The templates' status rules are part of the file: a bad pattern is its error.
            gateway::agents::activity::Rules::new(&config.templates).map_err(|e| {
                ConfigError::Parse {
                    path: path.clone(),
                    message: e.to_string(),
                }
            })?;
            config
        }
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
            Ok(gateway::serve(config, &data_dir, listener, stop).await?)
        }
        Command::Key { command } => key(command).await,
    }
}

/// `agentgate key ...`: the same work as `ssh gw key ...`, on a data directory, offline.
async fn key(command: KeyCommand) -> anyhow::Result<()> {
    use gateway::control::key as keys;
    let place = match &command {
        KeyCommand::Add { place, .. }
        | KeyCommand::List { place, .. }
        | KeyCommand::Remove { place, .. } => place,
    };
    let (config, data_dir) = load(place)?;
    let store = DataDir::prepare(&data_dir)?.open_store().await?;
    let result = match command {
        KeyCommand::Add {
            name,
            tailscale_login: Some(login),
            role,
            ..
        } => keys::add_login(&store, name, role, &login)
            .await
            .map(|(name, role)| {
                let mut text = format!(
                    "tailnet login {} may log in as operator '{name}' ({})\n",
                    login.trim(),
                    role.as_str()
                );
                if !config.auth.tailscale.enabled {
                    text.push_str("note: login by tailnet identity is off; turn it on with `[auth.tailscale] enabled = true` in the configuration\n");
                }
                text
            }),
        KeyCommand::Add {
            name,
            tailscale_login: None,
            role,
            ..
        } => {
            let mut line = String::new();
            std::io::stdin()
                .read_to_string(&mut line)
                .context("cannot read stdin")?;
            let fallback = std::env::var("USER")
                .ok()
                .filter(|u| auth::validate_operator_name(u).is_ok())
                .unwrap_or_else(|| "admin".into());
            keys::add_key(&store, name, role, &line, Some(&fallback)).await
        }
        KeyCommand::List { json, .. } => keys::credentials_text(&store, None, json).await,
        KeyCommand::Remove { what, .. } => keys::remove(&store, &what).await,
    };
    store.close().await;
    match result {
        Ok(text) => {
            print!("{text}");
            Ok(())
        }
        Err(e) => anyhow::bail!("{}", e.render().trim_end().trim_start_matches("error: ")),
    }
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
