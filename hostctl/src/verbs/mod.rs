//! The verbs of hostctl, as a library; the binary in `main.rs` only parses arguments and prints
//! what these return. This file holds `HostCtl` and what an agent is now (`list`, `info`,
//! tags); `lifecycle`, `send`, `logs`, `sessions` and `mosh` the rest.

mod lifecycle;
mod logs;
mod mosh;
mod send;
mod sessions;

pub use logs::MAX_LOG_LINES;
pub use send::submit_delay;

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::{
    AgentCommand, AgentInfo, AgentMeta, CreateRequest, Ending, HostAgentStatus, Key, OwnCall,
    Screen, Secrets, SendReport, TermSize, WorkspaceSource, validate_agent_name,
};
use crate::error::{Error, Result};
use crate::files::Files;
use crate::logview::{LastLines, LineSink, Renderer, WriteLines};
use crate::tmux::{NewSession, Pane, Tmux};

/// One host's agents: its files and its tmux server.
#[derive(Clone, Debug)]
pub struct HostCtl {
    pub files: Files,
    pub tmux: Tmux,
}

impl HostCtl {
    pub fn new(files: Files) -> HostCtl {
        let tmux = Tmux::new(files.home());
        HostCtl { files, tmux }
    }

    pub fn from_env() -> Result<HostCtl> {
        Ok(HostCtl::new(Files::from_env()?))
    }

    /// Every agent; the screens of running ones, or with `screens_after`, only of those with
    /// output at or after that time (Unix seconds).
    /// `hostctl hook-watch` (see [`crate::hooks::watch`]).
    pub fn hook_watch(&self, out: impl std::io::Write) -> Result<()> {
        crate::hooks::watch(&self.files, out)
    }

    pub fn list(&self, screens_after: Option<i64>) -> Result<Vec<AgentInfo>> {
        let seen_at = time::OffsetDateTime::now_utc().unix_timestamp();
        let server = self.tmux.server_panes()?;
        let server_runs = server.is_some();
        let panes = server.unwrap_or_default();
        let mut out = Vec::new();
        for name in self.files.agent_names()? {
            // A meta.json that cannot be read is skipped here and reported by `info`.
            if let Ok(meta) = self.files.read_meta(&name) {
                let pane = panes.iter().find(|p| p.session == name);
                let stopped = self.files.stop_mark_path(&name).exists();
                let mut info = agent_info(meta, pane);
                info.ending = ending(pane, server_runs, stopped);
                info.seen_at = Some(seen_at);
                info.hooks = self.hook_events(&info);
                out.push(info);
            }
        }
        let changed: Vec<Pane> = panes
            .into_iter()
            .filter(|p| match (screens_after, p.activity) {
                (Some(after), Some(activity)) => activity >= after,
                _ => true,
            })
            .collect();
        self.add_screens(&mut out, &changed);
        Ok(out)
    }

    pub fn info(&self, name: &str) -> Result<AgentInfo> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        let server = self.tmux.server_panes()?;
        let pane = server.iter().flatten().find(|p| p.session == name).cloned();
        let stopped = self.files.stop_mark_path(name).exists();
        let mut info = [agent_info(meta, pane.as_ref())];
        info[0].ending = ending(pane.as_ref(), server.is_some(), stopped);
        info[0].hooks = self.hook_events(&info[0]);
        self.add_screens(&mut info, pane.as_slice());
        let [info] = info;
        Ok(info)
    }

    /// The last hook events of a running agent whose CLI's hooks are wired.
    fn hook_events(&self, info: &AgentInfo) -> Vec<crate::api::HookEvent> {
        if info.status == HostAgentStatus::Running && info.meta.hooks.is_some() {
            crate::hooks::recent(&self.files, &info.name)
        } else {
            Vec::new()
        }
    }

    /// Reads the screens of the running agents among `agents`. A screen that cannot be read is
    /// left out: the agent's status does not depend on it.
    fn add_screens(&self, agents: &mut [AgentInfo], panes: &[Pane]) {
        let running: Vec<&str> = agents
            .iter()
            .filter(|a| a.status == HostAgentStatus::Running)
            .filter(|a| panes.iter().any(|p| p.session == a.name))
            .map(|a| a.name.as_str())
            .collect();
        let Ok(screens) = self.tmux.capture_many(&running) else {
            return;
        };
        for (name, text) in screens {
            let (Some(agent), Some(pane)) = (
                agents.iter_mut().find(|a| a.name == name),
                panes.iter().find(|p| p.session == name),
            ) else {
                continue;
            };
            agent.screen = Some(Screen::from_text(
                pane.cols,
                pane.rows,
                &text,
                pane.foreground.clone(),
            ));
        }
    }

    /// Replaces the agent's tags (kept in its meta.json, so an adopting gateway finds them).
    pub fn set_tags(&self, name: &str, tags: BTreeMap<String, String>) -> Result<AgentInfo> {
        check_name(name)?;
        let _held = self.files.lock_meta(name)?;
        let mut meta = self.files.read_meta(name)?;
        meta.request.tags = tags;
        self.files.write_meta(&meta)?;
        self.info(name)
    }
}

/// Writes a new file only its owner may read (0600 from the start, never wider).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io("creating", path))?;
    file.write_all(bytes).map_err(Error::io("writing", path))
}

fn set_private(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io("protecting", dir))
}

pub(crate) fn check_name(name: &str) -> Result<()> {
    validate_agent_name(name).map_err(Error::InvalidInput)
}

/// See [`crate::api::validate_env_key`].
fn validate_env_key(key: &str) -> Result<()> {
    crate::api::validate_env_key(key).map_err(Error::InvalidInput)
}

/// How an agent whose pane is `pane` came not to run (none while it runs). `server_runs`:
/// whether the tmux server answered; `stopped`: whether `hostctl stop` ended it.
fn ending(pane: Option<&Pane>, server_runs: bool, stopped: bool) -> Option<Ending> {
    match pane {
        Some(p) if !p.dead => None,
        Some(p) => match (p.dead_signal, p.dead_status) {
            (Some(signal), _) => Some(Ending::Killed { signal }),
            (None, Some(code)) => Some(Ending::Exited { code }),
            (None, None) => None,
        },
        None if stopped => Some(Ending::Stopped),
        None if server_runs => Some(Ending::SessionGone),
        None => Some(Ending::ServerGone),
    }
}

fn agent_info(meta: AgentMeta, pane: Option<&Pane>) -> AgentInfo {
    let (status, pid, exit_code) = match pane {
        Some(p) if p.dead => (HostAgentStatus::Exited, None, p.dead_status),
        Some(p) => (HostAgentStatus::Running, p.pid, None),
        None => (HostAgentStatus::Stopped, None, None),
    };
    AgentInfo {
        name: meta.request.name.clone(),
        status,
        pid,
        exit_code,
        ending: None,
        last_activity: pane.and_then(|p| p.activity).and_then(unix_to_rfc3339),
        meta,
        screen: None,
        seen_at: None,
        hooks: Vec::new(),
    }
}

/// Reads a child's stderr to its end on a thread of its own (so that a child with much to say
/// never blocks while its other pipes are read or it is waited for); join the thread for the
/// text.
pub(crate) fn drain_stderr(
    child: &mut std::process::Child,
) -> Option<std::thread::JoinHandle<String>> {
    use std::io::Read;
    child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_to_rfc3339(secs: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// The user's login shell: `$SHELL` (what sshd sets on a remote host), else the shell in the
/// user's passwd entry (a gateway started by systemd has no `$SHELL`), else `/bin/sh`.
fn login_shell() -> String {
    let usable = |s: &String| s.starts_with('/') && Path::new(s).exists();
    std::env::var("SHELL")
        .ok()
        .filter(usable)
        .or_else(|| {
            nix::unistd::User::from_uid(nix::unistd::getuid())
                .ok()
                .flatten()
                .map(|user| user.shell.to_string_lossy().into_owned())
                .filter(usable)
        })
        .unwrap_or_else(|| "/bin/sh".to_owned())
}
