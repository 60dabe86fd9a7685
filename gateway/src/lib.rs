//! agentgate: one SSH server in front of every AI coding agent you run.
//!
//! The library behind the `agentgate` binary. [`serve`] runs the gateway until its stop token
//! fires; `main.rs` only parses the command line and wires signals. Modules:
//!
//! - [`agents`]: the core of agents' lives (the operations journal).
//! - [`ssh`]: the russh server (accept loop, thin handler, channels).
//! - [`auth`]: who is this and which way in: pure decisions.
//! - [`control`]: the control commands (`ssh gw COMMAND`), one file each.
//! - [`hosts`]: the hosts and their transports (hostctl).
//! - [`store`]: sqlite through sqlx; the only module that writes SQL.
//! - [`model`]: the domain's values (times, statuses, roles, events' kinds), one spelling each.
//! - [`config`]: the TOML configuration and its defaults.
//! - [`tailscale`]: the local tailscaled's LocalAPI and the gateway's view of the tailnet.
//! - [`notify`]: the operators' notification channels (webhooks, ntfy) and their deliverer.
//!
//! **Invariant**: agents live in tmux on their hosts, not in the gateway. Stopping, killing or
//! restarting the gateway never stops an agent or loses its state.

pub mod agents;
pub mod auth;
pub mod bridge;
pub mod config;
pub mod control;
pub mod hosts;
pub mod model;
pub mod notify;
pub mod ssh;
pub mod store;
pub mod streams;
pub mod tailscale;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::Config;
use crate::hosts::{Hosts, LocalHost};
use crate::model::Role;
use crate::store::{NewKey, Store};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long tasks get to end after the grace period, once everything has been cancelled.
const FINAL_WAIT: Duration = Duration::from_secs(5);

/// Why the gateway could not start. Each says what it was doing; the cause is its source,
/// which `main` prints after it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the data directory {}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Mode(#[from] ModeError),
    #[error("cannot check {}", path.display())]
    CheckStore {
        path: PathBuf,
        #[source]
        source: store::StoreError,
    },
    /// sqlite's check found the database damaged: what it found and how to restore it.
    #[error(
        "the database {} is damaged; the gateway does not start on it.\n\
         sqlite's quick_check found:\n  {}\n\
         To restore it: keep the damaged file for inspection (move {} and any \
         agentgate.db-wal and agentgate.db-shm beside it out of {}), put the last \
         backup of agentgate.db in its place, and start the gateway again; the \
         reconciler then takes up the agents from the hosts (see docs/operations.md, \
         \"Backups\"). With no backup, moving the file away starts a new, empty \
         database.",
        path.display(),
        found.join("\n  "),
        path.display(),
        data_dir.display()
    )]
    DamagedStore {
        path: PathBuf,
        data_dir: PathBuf,
        found: Vec<String>,
    },
    #[error("cannot open {}", path.display())]
    OpenStore {
        path: PathBuf,
        #[source]
        source: store::StoreError,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Key(#[from] ssh::KeyError),
    /// A template's status rule does not compile.
    #[error(transparent)]
    StatusRules(agents::activity::InvalidRules),
    #[error("cannot set up the notification channels' HTTP client")]
    Notifier(#[source] notify::http::PostError),
    #[error("the listener has no address")]
    Listener(#[source] std::io::Error),
}

/// A file's or directory's permissions could not be set.
#[derive(Debug, thiserror::Error)]
#[error("cannot set the permissions of {}", path.display())]
pub struct ModeError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Why a stored host cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostRecordError {
    #[error("host '{0}' is missing its address, user, key or hostctl")]
    Incomplete(String),
    #[error("the pinned key of host '{host}' is damaged")]
    DamagedKey {
        host: String,
        #[source]
        source: russh::keys::ssh_key::Error,
    },
}

/// Everything a connection or a command needs, shared.
pub struct Gateway {
    pub config: Config,
    /// The gateway's own key for reaching hosts (`ssh gw host key` prints its public half).
    pub client_key: Arc<russh::keys::PrivateKey>,
    pub store: Store,
    pub hosts: Hosts,
    /// The tailnet, as the local tailscaled reports it.
    pub tailnet: Arc<tailscale::Tailnet>,
    /// Every task the gateway spawns, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Fires when the gateway stops accepting connections (SIGTERM).
    pub shutdown_accepting: CancellationToken,
    /// Fires when the grace period is over: every session is cut.
    pub shutdown: CancellationToken,
    /// The templates' rules for telling that an agent waits for the operator.
    pub status_rules: agents::activity::Rules,
    /// When operators last typed into each agent.
    pub inputs: agents::activity::Inputs,
    /// When each host was last asked for its agents' screens.
    pub screen_marks: hosts::looks::ScreenMarks,
    /// One change of an agent's life at a time.
    pub agent_locks: agents::locks::AgentLocks,
    /// The connections logged in now, to end those whose access is taken back.
    pub live: Arc<agents::live::LiveConnections>,
    /// Which hosts' snapshots were taken up in this run.
    pub snapshot_scans: agents::reconcile::snapshots::SnapshotScans,
    /// This run's ID, written into the operations it begins (`agents::journal`).
    pub run_id: String,
    /// The notification channels' deliverer (`notify test` tries a channel through it).
    pub notifier: notify::Notifier,
    /// The SSH agents forwarded into each agent now (`ssh -A`).
    pub forwarded_agents: ssh::forward_agent::Registry,
}

impl Gateway {
    /// The gateway's shared state, with nothing running yet: `serve` starts its tasks and
    /// accepts connections. `stop` is `shutdown_accepting`.
    pub fn new(
        config: Config,
        store: Store,
        client_key: Arc<russh::keys::PrivateKey>,
        stop: CancellationToken,
    ) -> Result<Gateway, StartError> {
        let tasks = TaskTracker::new();
        let local = LocalHost::new(
            LocalHost::find_hostctl(config.hosts.hostctl.as_deref()),
            config.hosts.local_home.clone(),
            config.hosts.call_timeout,
            config.hosts.create_timeout,
            tasks.clone(),
        )
        .hiding(config.server.data_dir.clone());
        let tailnet = Arc::new(tailscale::Tailnet::new(
            tailscale::LocalApi::new(&config.tailscale.socket, config.tailscale.call_timeout),
            config.tailscale.poll_interval,
        ));
        let status_rules =
            agents::activity::Rules::new(&config.templates).map_err(StartError::StatusRules)?;
        let notifier = notify::Notifier::new(store.clone(), config.notify.clone())
            .map_err(StartError::Notifier)?;
        Ok(Gateway {
            status_rules,
            inputs: agents::activity::Inputs::default(),
            screen_marks: hosts::looks::ScreenMarks::default(),
            agent_locks: agents::locks::AgentLocks::default(),
            live: Arc::default(),
            snapshot_scans: agents::reconcile::snapshots::SnapshotScans::default(),
            run_id: agents::journal::new_run_id(),
            notifier,
            forwarded_agents: ssh::forward_agent::Registry::default(),
            config,
            client_key,
            store,
            hosts: Hosts::new(local),
            tailnet,
            tasks,
            shutdown_accepting: stop,
            shutdown: CancellationToken::new(),
        })
    }

    /// What the core's operations use, borrowed for one call.
    pub fn core(&self) -> agents::Core<'_> {
        agents::Core {
            store: &self.store,
            hosts: &self.hosts,
            tailnet: &self.tailnet,
            locks: &self.agent_locks,
            inputs: &self.inputs,
            status_rules: &self.status_rules,
            status: &self.config.status,
            policy: self.policy(),
            default_host: self.config.hosts.default_host.as_deref(),
            run_id: &self.run_id,
        }
    }

    /// The settings the access rules read (`agents::access`).
    pub fn policy(&self) -> agents::access::Policy {
        agents::access::Policy::from_config(&self.config)
    }

    /// How connections to hosts are made, from the configuration.
    pub fn leg_settings(&self) -> hosts::remote::leg::LegSettings {
        let h = &self.config.hosts;
        hosts::remote::leg::LegSettings {
            client_key: self.client_key.clone(),
            connect_timeout: h.connect_timeout,
            keepalive_interval: h.keepalive_interval,
            keepalive_max: h.keepalive_max,
            max_sessions: h.max_sessions,
            stall_timeout: h.stall_timeout,
        }
    }

    /// What diagnosing a host (`host check`) uses.
    pub fn diagnostics(&self) -> hosts::remote::diagnose::Diagnostics<'_> {
        hosts::remote::diagnose::Diagnostics {
            leg: self.leg_settings(),
            tasks: &self.tasks,
            tailnet: &self.tailnet,
            connect_timeout: self.config.hosts.connect_timeout,
            call_timeout: self.config.hosts.call_timeout,
            ping_timeout: self.config.tailscale.ping_timeout,
        }
    }

    /// What enrolling a host (`host add`) uses.
    pub fn enrolment(&self) -> hosts::remote::enrol::Enrolment<'_> {
        hosts::remote::enrol::Enrolment {
            leg: self.leg_settings(),
            tasks: &self.tasks,
            call_timeout: self.config.hosts.call_timeout,
            create_timeout: self.config.hosts.create_timeout,
            companion: self.companion_hostctl(),
        }
    }

    pub fn call_limits(&self) -> hosts::remote::CallLimits {
        let h = &self.config.hosts;
        hosts::remote::CallLimits {
            call: h.call_timeout,
            create: h.create_timeout,
            probe: h.probe_timeout,
            serve: h.serve,
        }
    }

    /// The companion hostctl binary, copied to hosts.
    pub fn companion_hostctl(&self) -> PathBuf {
        LocalHost::find_hostctl(self.config.hosts.hostctl.as_deref())
    }

    /// Makes a remote host usable from its stored record.
    pub fn remote_host(
        &self,
        record: &store::HostRecord,
    ) -> Result<hosts::RemoteHost, HostRecordError> {
        let (Some(address), Some(user), Some(key), Some(hostctl)) = (
            &record.address,
            &record.user,
            &record.host_key,
            &record.hostctl_path,
        ) else {
            return Err(HostRecordError::Incomplete(record.name.clone()));
        };
        let host_key = russh::keys::PublicKey::from_openssh(key).map_err(|source| {
            HostRecordError::DamagedKey {
                host: record.name.clone(),
                source,
            }
        })?;
        let spec = hosts::remote::RemoteSpec {
            target: hosts::remote::leg::Target {
                name: record.name.clone(),
                address: address.clone(),
                port: record.port,
                user: user.clone(),
            },
            host_key,
            hostctl: hostctl.clone(),
        };
        Ok(hosts::RemoteHost::new(
            spec,
            self.leg_settings(),
            &self.call_limits(),
            self.tasks.clone(),
            &self.shutdown_accepting,
            &self.shutdown,
        ))
    }

    /// Registers every remote host in the store.
    async fn load_remote_hosts(&self) -> Result<(), StartError> {
        for record in self.store.hosts().await? {
            if record.name == hosts::LOCAL_HOST {
                continue;
            }
            match self.remote_host(&record) {
                Ok(host) => self.hosts.insert(host),
                Err(e) => warn!(host = record.name, error = %e, "host left out"),
            }
        }
        Ok(())
    }
}

/// The files in the data directory.
pub struct DataDir {
    pub path: PathBuf,
}

impl DataDir {
    /// Creates the directory (mode 0700) if needed.
    pub fn prepare(path: &Path) -> Result<DataDir, StartError> {
        std::fs::create_dir_all(path).map_err(|source| StartError::DataDir {
            path: path.to_owned(),
            source,
        })?;
        set_mode(path, 0o700)?;
        Ok(DataDir {
            path: path.to_owned(),
        })
    }

    pub fn database(&self) -> PathBuf {
        self.path.join("agentgate.db")
    }

    pub fn host_key(&self) -> PathBuf {
        self.path.join("host_key")
    }

    /// The gateway's client key, which hosts authorize.
    pub fn client_key(&self) -> PathBuf {
        self.path.join("client_key")
    }

    /// Checks the database with sqlite's `PRAGMA quick_check` for at most `budget`
    /// ([`store::Store::check`]); a damaged one stops the start, naming the file and how to
    /// restore it. One the check could not finish within the budget is used, with a warning.
    pub async fn check_store(&self, budget: Duration) -> Result<(), StartError> {
        let path = self.database();
        let started = std::time::Instant::now();
        let checked =
            store::Store::check(&path, budget)
                .await
                .map_err(|source| StartError::CheckStore {
                    path: path.clone(),
                    source,
                })?;
        match checked {
            store::Checked::Sound => info!(
                database = %path.display(),
                millis = started.elapsed().as_millis(),
                "database checked"
            ),
            store::Checked::Absent => {}
            store::Checked::OutOfTime => warn!(
                database = %path.display(),
                budget_seconds = budget.as_secs(),
                "the database check did not finish within its time budget; starting without it \
                 (check it offline with: sqlite3 FILE 'PRAGMA integrity_check')"
            ),
            store::Checked::Damaged(found) => {
                return Err(StartError::DamagedStore {
                    path,
                    data_dir: self.path.clone(),
                    found,
                });
            }
        }
        Ok(())
    }

    pub async fn open_store(&self) -> Result<Store, StartError> {
        let path = self.database();
        let store = Store::open(&path)
            .await
            .map_err(|source| StartError::OpenStore {
                path: path.clone(),
                source,
            })?;
        set_mode(&path, 0o600)?;
        Ok(store)
    }
}

pub fn set_mode(path: &Path, mode: u32) -> Result<(), ModeError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|source| {
        ModeError {
            path: path.to_owned(),
            source,
        }
    })
}

/// Runs the gateway on `listener` until `stop` fires, then drains: no new connections, open
/// sessions get `shutdown_grace` to finish, then everything is cut. Agents keep running.
pub async fn serve(
    config: Config,
    data_dir: &Path,
    listener: TcpListener,
    stop: CancellationToken,
) -> Result<(), StartError> {
    let data = DataDir::prepare(data_dir)?;
    // The data directory in use, whatever said it: sandboxes on this machine hide it.
    let mut config = config;
    config.server.data_dir = Some(data.path.clone());
    data.check_store(STORE_CHECK_BUDGET).await?;
    let host_key = ssh::load_or_create_key(&data.host_key(), "host key")?;
    let client_key = Arc::new(ssh::load_or_create_key(&data.client_key(), "client key")?);
    let store = data.open_store().await?;
    // Commands left under way by a gateway that died: they end here, as interrupted.
    match store.mark_interrupted_events().await {
        Ok(0) => {}
        Ok(n) => warn!(
            events = n,
            "commands under way when the gateway last stopped are marked interrupted in the \
             audit trail"
        ),
        Err(e) => warn!(error = %e, "cannot mark the interrupted commands in the audit trail"),
    }
    bootstrap_operators(&store).await?;

    let ssh_config = Arc::new(ssh::server_config(&config.ssh, host_key));
    let grace = config.server.shutdown_grace;
    let gw = Arc::new(Gateway::new(config, store, client_key, stop.clone())?);
    let tasks = gw.tasks.clone();

    gw.load_remote_hosts().await?;
    // Following the feed before the first look at the hosts: an agent that exited while the
    // gateway was down is news too.
    gw.notifier.start(&tasks, stop.clone());
    // What the tailnet says of its hosts, before they are asked.
    let view = gw.tailnet.refresh().await;
    agents::reconcile::tailnet::apply(&gw, &view).await;
    tasks.spawn(gw.tailnet.clone().run(stop.clone()));
    tasks.spawn(agents::reconcile::tailnet::follow(gw.clone()));
    // A first look at every host before clients come (each bounded by the probe time limit,
    // all in parallel); versions are asked for in the background.
    agents::reconcile::reconcile_all(&gw).await;
    // Operations an earlier run left half done are finished or undone before clients come,
    // on every host that answers; the rest as their hosts come back.
    if agents::journal::recover(&gw).await > 0 {
        tasks.spawn(agents::journal::follow(gw.clone()));
    }
    let versions = gw.clone();
    tasks.spawn(async move { agents::reconcile::record_versions(&versions).await });
    tasks.spawn(agents::reconcile::run(gw.clone()));
    tasks.spawn(agents::reconcile::hook_watch::run(gw.clone()));
    tasks.spawn(prune_audit_trail(gw.clone()));
    tasks.spawn(write_kept_events(gw.clone()));
    tasks.spawn(agents::live::sweep(gw.clone()));

    let address = listener.local_addr().map_err(StartError::Listener)?;
    info!(%address, data_dir = %data.path.display(), "agentgate listening on {address}");
    ssh::serve(gw.clone(), listener, ssh_config).await;

    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        info!(
            grace_seconds = grace.as_secs(),
            "grace period over; closing the remaining sessions"
        );
    }
    gw.shutdown.cancel();
    if tokio::time::timeout(FINAL_WAIT, tasks.wait())
        .await
        .is_err()
    {
        warn!("some sessions did not end in time");
    }
    // A last chance for audit events the database could not take.
    let _ = gw.store.flush_events().await;
    let kept = gw.store.events_kept().await;
    if kept > 0 {
        warn!(
            events = kept,
            "audit events could not be written to the database and are lost (the `audit` \
             lines of this log have them)"
        );
    }
    gw.store.close().await;
    info!("agentgate stopped; agents keep running");
    Ok(())
}

/// How long the start-up check of the database (`PRAGMA quick_check`) may take: about what
/// reading a 1 GiB database takes on an ordinary disk. A larger one starts unchecked, with a
/// warning (see docs/operations.md).
pub const STORE_CHECK_BUDGET: Duration = Duration::from_secs(10);

/// Writes the audit events the database could not take when they happened, every
/// `store::RETRY_EVERY`, until the gateway shuts down (`serve` tries once more after).
async fn write_kept_events(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(store::RETRY_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = gw.shutdown_accepting.cancelled() => return,
        }
        if gw.store.events_kept().await > 0 {
            // A failure is logged when the write is first refused; it stays kept.
            let _ = gw.store.flush_events().await;
        }
    }
}

/// How often events older than `audit.retention` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Deletes the events older than `audit.retention` (zero: none), at start-up and every hour,
/// until the gateway shuts down.
async fn prune_audit_trail(gw: Arc<Gateway>) {
    let retention = gw.config.audit.retention;
    if retention.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = gw.shutdown_accepting.cancelled() => return,
        }
        let Some(cutoff) = time::OffsetDateTime::now_utc()
            .checked_sub(retention.try_into().unwrap_or(time::Duration::MAX))
        else {
            continue;
        };
        match gw.store.prune_events(cutoff.into()).await {
            Ok(0) => {}
            Ok(n) => info!(
                events = n,
                retention_days = retention.as_secs() / 86_400,
                "audit events past their retention deleted"
            ),
            Err(e) => warn!(error = %e, "could not delete old audit events"),
        }
        // Ended operations go with the events that tell them; open ones are kept.
        if let Err(e) = gw.store.prune_operations(cutoff.into()).await {
            warn!(error = %e, "could not delete old operations");
        }
    }
}

/// With no operator yet, registers the running user's own keys (`~/.ssh/authorized_keys` and
/// `~/.ssh/*.pub`) as an admin, so `ssh -p 2222 localhost list` works at once.
pub async fn bootstrap_operators(store: &Store) -> Result<(), store::StoreError> {
    if store.operator_count().await? > 0 {
        return Ok(());
    }
    let Some(home) = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
    else {
        warn!("no operator yet, and HOME is not set: add one with `agentgate key add < key.pub`");
        return Ok(());
    };
    let ssh_dir = home.join(".ssh");
    let mut lines = Vec::new();
    if let Ok(text) = std::fs::read_to_string(ssh_dir.join("authorized_keys")) {
        lines.extend(text.lines().map(str::to_owned));
    }
    if let Ok(entries) = std::fs::read_dir(&ssh_dir) {
        let mut pubs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        pubs.sort();
        for path in pubs {
            if let Ok(text) = std::fs::read_to_string(&path) {
                lines.extend(text.lines().map(str::to_owned));
            }
        }
    }
    let user = std::env::var("USER")
        .ok()
        .filter(|u| auth::validate_operator_name(u).is_ok())
        .unwrap_or_else(|| "admin".to_owned());
    let mut added = 0;
    for line in lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let Ok(key) = auth::parse_public_key_line(line) else {
            continue;
        };
        let new = NewKey {
            fingerprint: &key.fingerprint,
            algorithm: &key.algorithm,
            public_key: &key.openssh,
            comment: &key.comment,
        };
        match store.add_key(&user, Role::Admin, &new).await {
            Ok(_) => added += 1,
            Err(store::StoreError::Conflict(_)) => {}
            Err(e) => return Err(e),
        }
    }
    if added > 0 {
        info!(
            operator = user,
            keys = added,
            "no operator yet: registered {added} key(s) from {} as admin operator '{user}'",
            ssh_dir.display()
        );
    } else {
        warn!(
            "no operator yet and no public key in {}: add one with `agentgate key add < key.pub`",
            ssh_dir.display()
        );
    }
    Ok(())
}
