//! The gateway's configuration: the TOML file given with `--config`, plus command-line
//! overrides. Every field has a default, so an empty file (or none) is a working setup.
//! See `config/agentgate.toml` for the commented sample; a test parses it.

mod units;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use units::duration;
pub use units::{
    BadDuration, BadNetwork, duration_text, network_contains, parse_duration, parse_idle_stop,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", .path.display())]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub ssh: SshConfig,
    pub hosts: HostsConfig,
    /// What `ssh gw ssh-config` prints.
    pub ssh_config: SshConfigOutput,
    /// The local tailscaled, for hosts added by tailnet name.
    pub tailscale: TailscaleConfig,
    /// Ways in besides operators' keys.
    pub auth: AuthConfig,
    /// The audit trail (`ssh gw events`).
    pub audit: AuditConfig,
    /// How a running agent's status (working, waiting, idle) is told.
    pub status: StatusConfig,
    /// How notification channels (`ssh gw notify`) are paged.
    pub notify: NotifyConfig,
    /// Agent recipes by name; `shell` is built in and can be overridden.
    pub templates: BTreeMap<String, Template>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Default: `$XDG_DATA_HOME/agentgate` or `~/.local/share/agentgate`.
    pub data_dir: Option<PathBuf>,
    /// How long open sessions may go on after SIGTERM before they are cut.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfig {
    /// Delay before each rejected authentication attempt answers (slows down guessing).
    #[serde(with = "duration")]
    pub auth_rejection_delay: Duration,
    /// Authentication attempts allowed on one connection (offers of a key do not count).
    pub max_auth_attempts: usize,
    /// A connection with no traffic at all for this long is closed. Keepalive replies count
    /// as traffic, so a live but idle `ssh NAME@gw` is never cut.
    #[serde(with = "duration")]
    pub inactivity_timeout: Duration,
    /// How often the gateway checks a quiet client is still there.
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the connection is dropped.
    pub keepalive_max: usize,
    /// Connections open at once; more are refused at accept time.
    pub max_connections: usize,
    /// SSH channel window, in bytes.
    pub window_size: u32,
    /// Environment variables a client may set for sessions inside agents (`SendEnv`); a
    /// trailing `*` matches any suffix.
    pub accept_env: Vec<String>,
    /// Whether `ssh -L`, `-D` and `-W` may open connections from an agent's host.
    pub allow_forwarding: bool,
    /// Whether `ssh -R` may open listeners on an agent's host (its loopback, or a unix
    /// socket) whose connections reach the client's side.
    pub allow_remote_forwarding: bool,
    /// A connection that has not logged in this long after it was accepted is closed
    /// (OpenSSH's `LoginGraceTime`).
    #[serde(with = "duration")]
    pub login_grace_time: Duration,
    /// Connections that have not logged in yet, at most, at once (OpenSSH's `MaxStartups`).
    /// A new one past it closes the oldest of the source that holds the most.
    pub max_startups: usize,
    /// Connections that have not logged in yet, at most, from one source (an IPv4 address or
    /// an IPv6 /64); more from it are refused (OpenSSH's `PerSourceMaxStartups`).
    pub per_source_max_startups: usize,
    /// Penalties for sources whose connections keep ending without a login.
    pub penalties: PenaltyConfig,
}

/// OpenSSH's `PerSourcePenalties`: what a connection that ends without logging in costs its
/// source, and when a source is refused.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PenaltyConfig {
    pub enabled: bool,
    /// It tried to authenticate and failed.
    #[serde(with = "duration")]
    pub authfail: Duration,
    /// It never tried.
    #[serde(with = "duration")]
    pub noauth: Duration,
    /// It ran out of `login_grace_time`.
    #[serde(with = "duration")]
    pub grace_exceeded: Duration,
    /// A source is refused once its penalties add up to this, until they wear off.
    #[serde(with = "duration")]
    pub min: Duration,
    /// Penalties add up to this at most.
    #[serde(with = "duration")]
    pub max: Duration,
    /// Addresses and networks (`10.0.0.0/8`, `fd7a:115c:a1e0::/48`) never penalised.
    pub exempt: Vec<String>,
}

impl Default for PenaltyConfig {
    fn default() -> Self {
        PenaltyConfig {
            enabled: true,
            authfail: Duration::from_secs(5),
            noauth: Duration::from_secs(1),
            grace_exceeded: Duration::from_secs(10),
            min: Duration::from_secs(15),
            max: Duration::from_secs(600),
            exempt: Vec::new(),
        }
    }
}

impl PenaltyConfig {
    /// Whether `ip` is in `exempt` (entries that do not parse match nothing; `validate`
    /// refuses them at load).
    pub fn exempts(&self, ip: std::net::IpAddr) -> bool {
        self.exempt
            .iter()
            .any(|net| network_contains(net, ip).unwrap_or(false))
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostsConfig {
    /// How often the reconciler asks every host for its agents.
    #[serde(with = "duration")]
    pub reconcile_interval: Duration,
    /// Time limit of one hostctl call (create has its own, longer one: a git clone is slow).
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    #[serde(with = "duration")]
    pub create_timeout: Duration,
    /// The hostctl binary for the local host. Default: `hostctl` beside `agentgate`, else on PATH.
    pub hostctl: Option<PathBuf>,
    /// `$AGENTGATE_HOME` of the local host. Default: hostctl's own (`~/.agentgate`).
    pub local_home: Option<PathBuf>,
    /// Where `create` puts an agent without `--host`. Default: the reachable host with the
    /// fewest running agents.
    pub default_host: Option<String>,
    /// Whether operators (not only admins) may have agents on `local`, the gateway's own
    /// machine. Its agents run as the gateway's user, who can read the gateway's database:
    /// every key, secret and agent. Off by default.
    pub operators_on_local: bool,
    /// Time limit of the reconciler's question to a host: past it the host is `unreachable`.
    #[serde(with = "duration")]
    pub probe_timeout: Duration,
    /// Time limit of a TCP connection plus SSH handshake and authentication to a host.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// How often an idle connection to a host is checked; after `keepalive_max` unanswered
    /// checks it is dropped (and the sessions on it end).
    #[serde(with = "duration")]
    pub keepalive_interval: Duration,
    pub keepalive_max: usize,
    /// How long bytes for a host may wait, not taken by the connection's socket, not
    /// acknowledged, or not answered by the host, before the connection is closed and its
    /// sessions end as lost (a link lost during an upload: the keepalives cannot tell then).
    /// Longer than `keepalive_interval`.
    #[serde(with = "duration")]
    pub stall_timeout: Duration,
    /// Session channels per connection to a host (OpenSSH's `MaxSessions`, 10 by default);
    /// past it another connection is opened.
    pub max_sessions: usize,
    /// Whether hostctl calls to a remote host go through one `hostctl serve` per host (on by
    /// default); off, every call is an exec channel of its own, which runs the host user's
    /// shell start-up each time.
    pub serve: bool,
    /// What agents run in when neither `create --sandbox` nor their template says: `bwrap`
    /// (refused on a host without a working bubblewrap) or `none`; unset, each host's own
    /// default: bwrap where it works, none where it does not.
    pub sandbox: Option<hostctl::api::Sandbox>,
}

/// How the gateway reaches the local tailscaled's LocalAPI.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TailscaleConfig {
    /// tailscaled's unix socket (`agentgate serve --tailscale-socket` overrides it).
    pub socket: PathBuf,
    /// Time limit of one LocalAPI call.
    #[serde(with = "duration")]
    pub call_timeout: Duration,
    /// How often the tailnet's status is asked even when the IPN bus says nothing.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// How long `host check` waits for a tailnet ping's answer.
    #[serde(with = "duration")]
    pub ping_timeout: Duration,
}

impl Default for TailscaleConfig {
    fn default() -> Self {
        TailscaleConfig {
            socket: PathBuf::from("/var/run/tailscale/tailscaled.sock"),
            call_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(5),
        }
    }
}

/// The audit trail.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// How long events are kept: older ones are deleted at start-up and every hour. Zero keeps
    /// them for ever.
    #[serde(with = "duration")]
    pub retention: Duration,
}

/// How a running agent's status is told from its screen (see `docs/commands.md`, "Status").
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusConfig {
    /// An agent whose screen changed this recently is `working`.
    #[serde(with = "duration")]
    pub working_for: Duration,
    /// An agent with no output and no input for this long is `idle`.
    #[serde(with = "duration")]
    pub idle_after: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            working_for: Duration::from_secs(10),
            idle_after: Duration::from_secs(600),
        }
    }
}

/// How notification channels are paged (see `docs/operations.md`, "Notifications").
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// A channel is paged once for an agent's event within this window: an agent that flaps
    /// between working and waiting pages once.
    #[serde(with = "duration")]
    pub debounce: Duration,
    /// How many times a delivery is tried before it is recorded as failed.
    pub tries: u32,
    /// How long one try may take (connecting, sending, the answer).
    #[serde(with = "duration")]
    pub try_timeout: Duration,
    /// The wait before the second try; it doubles after each try, up to a minute.
    #[serde(with = "duration")]
    pub retry_after: Duration,
    /// How many deliveries wait for one channel at most; past that new ones are recorded as
    /// failed, unsent.
    pub queue: usize,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            debounce: Duration::from_secs(30),
            tries: 5,
            try_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(2),
            queue: 100,
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: Duration::from_secs(365 * 86_400),
        }
    }
}

/// Ways in besides operators' keys.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub tailscale: TailscaleAuthConfig,
}

/// Login by tailnet identity, as Tailscale SSH does: a connection from a tailnet node whose
/// user's login is registered (`agentgate key add --tailscale-login`) gets in without a key.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TailscaleAuthConfig {
    pub enabled: bool,
}

/// How clients should reach the gateway, for `ssh gw ssh-config`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SshConfigOutput {
    /// The `Host` alias of agent NAME is PREFIX + NAME.
    pub prefix: String,
    /// The gateway's address as clients see it. Default: the listen address, or this machine's
    /// host name when listening on every address.
    pub host_name: Option<String>,
    /// The port clients connect to. Default: the listen port.
    pub port: Option<u16>,
}

impl Default for SshConfigOutput {
    fn default() -> Self {
        SshConfigOutput {
            prefix: "agent-".to_owned(),
            host_name: None,
            port: None,
        }
    }
}

/// A named recipe for an agent.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Template {
    /// A command line, run by the host user's login shell. Empty: the login shell itself.
    pub command: String,
    /// Used instead of `command` when the agent starts again (`claude --continue`).
    pub restart_command: Option<String>,
    /// Variables that must have a value at `create`: from `--env`, `env` below, or the
    /// gateway's own environment.
    pub required_env: Vec<String>,
    /// Extra environment for the agent.
    pub env: BTreeMap<String, String>,
    /// Secrets (`ssh gw secret set NAME`) put in the agent's environment under their names;
    /// their values never appear in the configuration, the agent's records or any output.
    pub secrets: Vec<String>,
    /// One line for `help` and listings.
    pub description: Option<String>,
    /// Which built-in rules tell that the agent waits for the operator: `claude`, `codex`,
    /// `gemini`, `aider`, `shell` or `none`. Default: the command's program name when it is
    /// one of those, `shell` when the command is empty (the login shell).
    pub recognize: Option<String>,
    /// More rules, tried before the built-in ones.
    pub waiting: Vec<WaitingRule>,
    /// Stop the agent once it has had neither output nor input this long (`30m`); it starts
    /// again, with `restart_command`, on the next attach. Default: never.
    pub idle_stop: Option<String>,
    /// What its agents run in (`bwrap` or `none`) unless `create --sandbox` says; default: the
    /// gateway's (`hosts.sandbox`).
    pub sandbox: Option<hostctl::api::Sandbox>,
    /// Files of the host user's home (`~/.gitconfig`) copied into a new sandboxed agent's
    /// private home.
    pub sandbox_home_files: Vec<String>,
    /// Paths shown read-only inside its agents' sandboxes (a shared package cache).
    pub sandbox_read_only: Vec<String>,
    /// Paths shown read-write inside its agents' sandboxes.
    pub sandbox_read_write: Vec<String>,
    /// The most memory its agents' processes may use together (`"512M"`, `"2G"`), unless
    /// `create --memory` says; default: no limit.
    #[serde(deserialize_with = "units::memory_limit")]
    pub memory: Option<u64>,
    /// How many CPUs' worth of time its agents may use (`1.5`), in thousandths, unless
    /// `create --cpus` says; default: no limit.
    #[serde(deserialize_with = "units::cpus_limit")]
    pub cpus: Option<u32>,
    /// The most processes its agents may have at once (`256`), unless `create --pids` says;
    /// default: no limit.
    #[serde(deserialize_with = "units::pids_limit")]
    pub pids: Option<u32>,
}

/// The configuration's names of a template's three lists of sandbox paths.
const SANDBOX_LISTS: [&str; 3] = [
    "sandbox_home_files",
    "sandbox_read_only",
    "sandbox_read_write",
];

impl Template {
    /// Its agents' resource limits, each replaced by `create`'s option when given.
    pub fn limits(&self) -> hostctl::api::Limits {
        hostctl::api::Limits {
            memory_bytes: self.memory,
            cpu_millis: self.cpus,
            pids: self.pids,
        }
    }

    /// What this template adds to its agents' sandboxes.
    pub fn sandbox_extras(&self) -> hostctl::api::SandboxExtras {
        hostctl::api::SandboxExtras {
            home_files: self.sandbox_home_files.clone(),
            read_only: self.sandbox_read_only.clone(),
            read_write: self.sandbox_read_write.clone(),
        }
    }
}

/// A rule that tells an agent waits for the operator: a regular expression, matched against
/// the last lines with text of its screen (joined with newlines; `(?m)` makes `^`/`$` match
/// at each line), and the reason `list` and `info` give.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WaitingRule {
    pub pattern: String,
    /// A pattern that cancels the rule when it matches too (the same prompt while the agent
    /// works, say).
    #[serde(default)]
    pub unless: Option<String>,
    pub reason: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 2222)),
            data_dir: None,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            auth_rejection_delay: Duration::from_secs(1),
            max_auth_attempts: 6,
            inactivity_timeout: Duration::from_secs(3600),
            keepalive_interval: Duration::from_secs(30),
            keepalive_max: 3,
            max_connections: 2048,
            window_size: 8 * 1024 * 1024,
            accept_env: vec!["LANG".into(), "LC_*".into(), "GIT_PROTOCOL".into()],
            allow_forwarding: true,
            allow_remote_forwarding: true,
            login_grace_time: Duration::from_secs(60),
            max_startups: 100,
            per_source_max_startups: 10,
            penalties: PenaltyConfig::default(),
        }
    }
}

impl Default for HostsConfig {
    fn default() -> Self {
        HostsConfig {
            reconcile_interval: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            create_timeout: Duration::from_secs(600),
            hostctl: None,
            local_home: None,
            default_host: None,
            operators_on_local: false,
            probe_timeout: Duration::from_secs(4),
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(5),
            keepalive_max: 2,
            stall_timeout: Duration::from_secs(10),
            max_sessions: 10,
            serve: true,
            sandbox: None,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut config = Config {
            server: ServerConfig::default(),
            ssh: SshConfig::default(),
            hosts: HostsConfig::default(),
            ssh_config: SshConfigOutput::default(),
            tailscale: TailscaleConfig::default(),
            auth: AuthConfig::default(),
            audit: AuditConfig::default(),
            status: StatusConfig::default(),
            notify: NotifyConfig::default(),
            templates: BTreeMap::new(),
        };
        config.add_builtin_templates();
        config
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    pub fn parse(text: &str) -> Result<Config, InvalidConfig> {
        let mut config: Config = toml::from_str(text)?;
        config.add_builtin_templates();
        config.validate()?;
        Ok(config)
    }

    fn add_builtin_templates(&mut self) {
        self.templates
            .entry("shell".to_owned())
            .or_insert_with(|| Template {
                description: Some("the host user's login shell".to_owned()),
                ..Template::default()
            });
    }

    /// Checks what this module can check alone. The templates' status rules are compiled
    /// (and their errors told) by whoever loads the configuration: `agents::activity::Rules`.
    fn validate(&self) -> Result<(), InvalidConfig> {
        for (name, template) in &self.templates {
            if let Some(d) = &template.idle_stop {
                parse_idle_stop(d).map_err(|source| InvalidConfig::IdleStop {
                    template: name.clone(),
                    source,
                })?;
            }
            template
                .sandbox_extras()
                .check(SANDBOX_LISTS)
                .map_err(|message| InvalidConfig::SandboxPath {
                    template: name.clone(),
                    message,
                })?;
            for key in template
                .required_env
                .iter()
                .chain(template.env.keys())
                .chain(&template.secrets)
            {
                hostctl::api::validate_env_key(key).map_err(|message| InvalidConfig::EnvKey {
                    template: name.clone(),
                    message,
                })?;
            }
        }
        for net in &self.ssh.penalties.exempt {
            network_contains(net, std::net::IpAddr::from([127, 0, 0, 1]))
                .map_err(InvalidConfig::Exempt)?;
        }
        let at_least_one = [
            (
                self.ssh.max_startups == 0 || self.ssh.per_source_max_startups == 0,
                "ssh.max_startups and ssh.per_source_max_startups must be at least 1",
            ),
            (
                self.ssh.max_auth_attempts == 0,
                "ssh.max_auth_attempts must be at least 1",
            ),
            (
                self.hosts.max_sessions == 0,
                "hosts.max_sessions must be at least 1",
            ),
            (
                self.notify.tries == 0
                    || self.notify.queue == 0
                    || self.notify.try_timeout.is_zero(),
                "notify.tries, notify.queue and notify.try_timeout must be more than 0",
            ),
            (
                self.hosts.keepalive_max == 0,
                "hosts.keepalive_max must be at least 1",
            ),
        ];
        if let Some((_, why)) = at_least_one.into_iter().find(|(zero, _)| *zero) {
            return Err(InvalidConfig::Zero(why));
        }
        if self.hosts.stall_timeout <= self.hosts.keepalive_interval {
            return Err(InvalidConfig::StallTimeout {
                stall: self.hosts.stall_timeout.as_secs_f32(),
                keepalive: self.hosts.keepalive_interval.as_secs_f32(),
            });
        }
        Ok(())
    }

    /// The data directory: the configured one, else `$XDG_DATA_HOME/agentgate`, else
    /// `~/.local/share/agentgate`.
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(dir) = &self.server.data_dir {
            return Ok(dir.clone());
        }
        default_data_dir()
    }
}

pub fn default_data_dir() -> Result<PathBuf, ConfigError> {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("agentgate"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ConfigError::Invalid("HOME is not set; pass --data-dir".into()))?;
    Ok(PathBuf::from(home).join(".local/share/agentgate"))
}

/// A configuration file that is not valid: its TOML, or a setting's value.
#[derive(Debug, thiserror::Error)]
pub enum InvalidConfig {
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    #[error("template '{template}': idle_stop: {source}")]
    IdleStop {
        template: String,
        source: BadDuration,
    },
    #[error("template '{template}': {message}")]
    EnvKey { template: String, message: String },
    #[error("template '{template}': {message}")]
    SandboxPath { template: String, message: String },
    #[error("ssh.penalties.exempt: {0}")]
    Exempt(BadNetwork),
    /// A setting that must be more than 0; its words name it.
    #[error("{0}")]
    Zero(&'static str),
    #[error(
        "hosts.stall_timeout ({stall} s) must be longer than hosts.keepalive_interval ({keepalive} s): \
         a quiet host is only asked whether it is there after keepalive_interval, and \
         must have time to answer; the defaults are 10s and 5s"
    )]
    StallTimeout { stall: f32, keepalive: f32 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_the_default_with_a_shell_template() {
        let config = Config::parse("").expect("parses");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:2222");
        assert!(config.templates.contains_key("shell"));
    }

    #[test]
    fn a_templates_limits_are_read_as_strings_or_numbers_and_bad_ones_say_the_form() {
        let config = Config::parse(
            "[templates.dev]\ncommand = \"x\"\nmemory = \"512M\"\ncpus = 1.5\npids = 256\n\
             [templates.two]\nmemory = \"2G\"\ncpus = 2\npids = \"64\"\n",
        )
        .expect("parses");
        let dev = config.templates["dev"].limits();
        assert_eq!(dev.memory_bytes, Some(512 << 20));
        assert_eq!(dev.cpu_millis, Some(1500));
        assert_eq!(dev.pids, Some(256));
        let two = config.templates["two"].limits();
        assert_eq!(
            (two.memory_bytes, two.cpu_millis, two.pids),
            (Some(2 << 30), Some(2000), Some(64))
        );
        assert!(config.templates["shell"].limits().is_empty());
        for (line, says) in [
            ("memory = \"12X\"", "not a memory size"),
            ("memory = 0", "not a memory size"),
            ("cpus = -1", "not a number of CPUs"),
            ("cpus = 0", "not a number of CPUs"),
            ("pids = 0", "not a number of processes"),
            ("pids = 1.5", "not a number of processes"),
        ] {
            let err = Config::parse(&format!("[templates.dev]\ncommand = \"x\"\n{line}\n"))
                .expect_err(line)
                .to_string();
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn a_templates_sandbox_paths_are_read_and_a_bad_one_is_refused_with_how_to_write_it() {
        let config = Config::parse(
            "[templates.dev]\ncommand = \"x\"\nsandbox_home_files = [\"~/.gitconfig\", \"~/.config/git\"]\n\
             sandbox_read_only = [\"/srv/cache\", \"~/monorepo\"]\nsandbox_read_write = [\"/var/cache/pip/\"]\n",
        )
        .expect("parses");
        let extras = config.templates["dev"].sandbox_extras();
        assert_eq!(extras.home_files, ["~/.gitconfig", "~/.config/git"]);
        assert_eq!(extras.read_only, ["/srv/cache", "~/monorepo"]);
        assert_eq!(extras.read_write, ["/var/cache/pip/"]);
        for (line, says) in [
            (
                "sandbox_home_files = [\"/etc/passwd\"]",
                "sandbox_home_files: '/etc/passwd'",
            ),
            ("sandbox_home_files = [\"~/../x\"]", "~/PATH"),
            ("sandbox_home_files = [\"~/\"]", "~/PATH"),
            (
                "sandbox_read_only = [\"cache\"]",
                "sandbox_read_only: 'cache'",
            ),
            ("sandbox_read_write = [\"/\"]", "not / itself"),
            ("sandbox_read_write = [\"/srv/../etc\"]", "without '..'"),
        ] {
            let err = Config::parse(&format!("[templates.dev]\ncommand = \"x\"\n{line}\n"))
                .expect_err(line)
                .to_string();
            assert!(err.contains("template 'dev'"), "{err}");
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::parse("[server]\nlisten_on = \"x\"\n")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("listen_on"), "{err}");
    }

    #[test]
    fn a_stall_timeout_within_the_keepalive_interval_is_refused_with_the_fix() {
        let config = Config::parse("").expect("the defaults parse");
        assert_eq!(config.hosts.stall_timeout, Duration::from_secs(10));
        let err = Config::parse("[hosts]\nstall_timeout = \"5s\"\n")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains(
                "hosts.stall_timeout (5 s) must be longer than hosts.keepalive_interval (5 s)"
            ),
            "{err}"
        );
        let config =
            Config::parse("[hosts]\nkeepalive_interval = \"2s\"\nstall_timeout = \"3s\"\n")
                .expect("longer than the keepalive interval");
        assert_eq!(config.hosts.stall_timeout, Duration::from_secs(3));
    }

    #[test]
    fn sandboxes_are_named_in_the_config_and_a_wrong_name_is_refused() {
        use hostctl::api::Sandbox;
        let config = Config::parse(
            "[hosts]\nsandbox = \"none\"\n[templates.boxed]\ncommand = \"x\"\nsandbox = \"bwrap\"\n",
        )
        .expect("parses");
        assert_eq!(config.hosts.sandbox, Some(Sandbox::None));
        assert_eq!(config.templates["boxed"].sandbox, Some(Sandbox::Bwrap));
        // Unset: each host's own default.
        assert_eq!(Config::parse("").expect("parses").hosts.sandbox, None);
        let err = Config::parse("[hosts]\nsandbox = \"docker\"\n")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("bwrap") && err.contains("none"), "{err}");
    }

    #[test]
    fn the_sample_config_parses_with_its_templates() {
        let sample = include_str!("../../../config/agentgate.toml");
        let config = Config::parse(sample).expect("the sample parses");
        for name in ["shell", "claude", "codex", "gemini", "aider"] {
            assert!(config.templates.contains_key(name), "template {name}");
        }
        assert_eq!(
            config.templates["claude"].restart_command.as_deref(),
            Some("claude --continue")
        );
    }
}
