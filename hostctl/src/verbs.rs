//! The verbs of hostctl, as a library: create, list, info, stop, start, destroy, logs, send.
//! The binary in `main.rs` only parses arguments and prints what these return.

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

/// How long `create --prompt` waits for the agent's screen to settle before typing.
const PROMPT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The screen must stay unchanged this long to count as settled.
const PROMPT_QUIET: Duration = Duration::from_millis(600);

/// How long after a text is put into an agent Enter is pressed: long enough for a CLI that
/// reads a burst of keys as a paste to have closed it (Codex waits 120 ms after the last key
/// of a burst, Gemini CLI 30 ms), and longer after a paste of many lines, which a CLI may
/// take in with a delay of its own (Claude Code shows `[Pasted text]` first).
pub fn submit_delay(text: &str) -> Duration {
    let base = Duration::from_millis(if text.contains('\n') { 500 } else { 250 });
    let per_kib = Duration::from_millis(20) * u32::try_from(text.len() / 1024).unwrap_or(u32::MAX);
    (base + per_kib).min(Duration::from_secs(2))
}

/// How long `send` waits for the agent's screen to show the text before the pause and Enter.
const ECHO_WITHIN: Duration = Duration::from_secs(2);

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

    pub fn create(&self, request: CreateRequest, secrets: &Secrets) -> Result<AgentInfo> {
        validate_request(&request)?;
        let name = request.name.clone();
        std::fs::create_dir_all(self.files.agents_dir())
            .map_err(Error::io("creating", self.files.agents_dir()))?;
        let agent_dir = self.files.agent_dir(&name);
        // create_dir (not create_dir_all) is the lock: two creates of one name cannot both win.
        match std::fs::create_dir(&agent_dir) {
            // meta.json holds the agent's environment: only the host user may read it.
            Ok(()) => set_private(&agent_dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(format!(
                    "an agent named '{name}' already exists on this host"
                )));
            }
            Err(e) => return Err(Error::io("creating", agent_dir)(e)),
        }
        match self.create_in(request, secrets) {
            Ok(info) => {
                // An unpacked copy is the agent's workspace now, no operation's.
                let _ = self.forget_copy_mark(&name);
                Ok(info)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&agent_dir);
                Err(e)
            }
        }
    }

    fn create_in(&self, request: CreateRequest, secrets: &Secrets) -> Result<AgentInfo> {
        let name = request.name.clone();
        let workspace_path = self.prepare_workspace(&name, &request.workspace)?;
        // What `diff` compares with later; an agent is not refused for want of it.
        let _ = crate::diff::record_baseline(self, &name, &workspace_path);
        let mut meta = AgentMeta {
            request,
            workspace_path,
            created_at: now_rfc3339(),
            starts: 0,
            hooks: None,
        };
        self.files.write_meta(&meta)?;
        if let Err(e) = self.start_process(&mut meta, secrets) {
            if owns_workspace(&meta.request.workspace) {
                let _ = std::fs::remove_dir_all(&meta.workspace_path);
            }
            return Err(e);
        }
        if let Some(prompt) = meta.request.prompt.clone() {
            self.wait_until_settled(&name);
            let sent = self.tmux.put_text(&name, &prompt).and_then(|()| {
                std::thread::sleep(submit_delay(&prompt));
                self.tmux.press(&name, &[Key::Enter])
            });
            if let Err(e) = sent {
                let _ = self.tmux.kill_session(&name);
                if owns_workspace(&meta.request.workspace) {
                    let _ = std::fs::remove_dir_all(&meta.workspace_path);
                }
                return Err(e);
            }
        }
        self.info(&name)
    }

    fn prepare_workspace(&self, name: &str, source: &WorkspaceSource) -> Result<PathBuf> {
        match source {
            WorkspaceSource::Dir { path } => {
                if !path.is_absolute() {
                    return Err(Error::InvalidInput(format!(
                        "workspace directory {} is not an absolute path",
                        path.display()
                    )));
                }
                if !path.is_dir() {
                    return Err(Error::InvalidInput(format!(
                        "workspace directory {} does not exist on this host (create it first, or leave out --dir)",
                        path.display()
                    )));
                }
                path.canonicalize().map_err(Error::io("resolving", path))
            }
            WorkspaceSource::Prepared => {
                // Unpacked beforehand (`hostctl unpack`): it becomes the agent's own.
                let path = self.files.owned_workspace(name);
                if !path.is_dir() {
                    return Err(Error::InvalidInput(format!(
                        "no unpacked workspace {} for agent '{name}'",
                        path.display()
                    )));
                }
                Ok(path)
            }
            WorkspaceSource::Empty | WorkspaceSource::Git { .. } => {
                let path = self.files.owned_workspace(name);
                if path.exists() {
                    return Err(Error::AlreadyExists(format!(
                        "a workspace {} is already there, left by an earlier agent; move it away first",
                        path.display()
                    )));
                }
                let parent = path.parent().unwrap_or(self.files.home());
                std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
                match source {
                    WorkspaceSource::Git { url, git_ref } => {
                        git_clone(url, git_ref.as_deref(), &path)?;
                    }
                    _ => std::fs::create_dir(&path).map_err(Error::io("creating", &path))?,
                }
                Ok(path)
            }
        }
    }

    /// Starts the agent's tmux session from its meta.json, with the restart command when the
    /// agent has run before and has one.
    ///
    /// The pane runs `hostctl launch NAME -- COMMAND...`, which sets the agent's environment
    /// and execs the command: no variable, secret or not, is on a command line (tmux's `-e`
    /// would put them on one). The secrets wait in `launch.json` (0600) until the launcher
    /// reads and removes it.
    fn start_process(&self, meta: &mut AgentMeta, secrets: &Secrets) -> Result<()> {
        let name = meta.request.name.clone();
        let command = match (&meta.request.restart_command, meta.starts) {
            (Some(restart), n) if n > 0 => restart.clone(),
            _ => meta.request.command.clone(),
        };
        for key in secrets.0.keys() {
            validate_env_key(key)?;
        }
        let exe = std::env::current_exe().map_err(|e| {
            Error::Failed(format!(
                "cannot find hostctl's own path to launch the agent: {e}"
            ))
        })?;
        // The CLI's hooks, when it is one hostctl knows: the events of a run before are
        // forgotten, and this run's settings written.
        crate::hooks::forget(&self.files, &name);
        meta.hooks = crate::hooks::wirable(meta.request.cli, &command);
        let (command, env) = match meta.hooks {
            Some(cli) => {
                let wired = crate::hooks::wire(&self.files, meta, cli, &command, &exe)?;
                (wired.command, wired.env)
            }
            None => (command, Vec::new()),
        };
        let launch = self.files.launch_path(&name);
        let _ = std::fs::remove_file(&launch);
        write_private(
            &launch,
            &serde_json::to_vec(secrets).map_err(|e| Error::Failed(e.to_string()))?,
        )?;
        let pane = OwnCall::Launch {
            home: self.files.home().to_owned(),
            name: name.clone(),
            command: command_argv(&command),
        };
        let argv: Vec<String> = std::iter::once(exe.to_string_lossy().into_owned())
            .chain(pane.argv())
            .collect();
        let log_writer = OwnCall::LogWriter {
            path: self.files.log_path(&name),
            max: crate::logwriter::max_from_env(),
        };
        let log_writer: Vec<String> = std::iter::once(exe.to_string_lossy().into_owned())
            .chain(log_writer.argv())
            .collect();
        let started = self.tmux.new_session(&NewSession {
            name: &name,
            cwd: &meta.workspace_path,
            size: meta.request.size.unwrap_or_default(),
            env,
            argv,
            log_writer,
        });
        if let Err(e) = started {
            let _ = std::fs::remove_file(&launch);
            return Err(e);
        }
        // Only once the session runs: a start that failed leaves the agent stopped as it was.
        let _ = std::fs::remove_file(self.files.stop_mark_path(&name));
        meta.starts += 1;
        self.files.write_meta(meta)
    }

    /// `hostctl launch NAME -- COMMAND...`, run as the agent's pane: sets the agent's
    /// environment (its variables, `AGENTGATE_AGENT`, `AGENTGATE_WORKSPACE`, and the secrets of
    /// `launch.json`, which it removes) and replaces itself with the command. Returns only on
    /// failure.
    pub fn launch(&self, name: &str, argv: &[String]) -> Error {
        let meta = match self.files.read_meta(name) {
            Ok(meta) => meta,
            Err(e) => return e,
        };
        let launch = self.files.launch_path(name);
        let secrets: Secrets = std::fs::read(&launch)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let _ = std::fs::remove_file(&launch);
        let Some((program, args)) = argv.split_first() else {
            return Error::InvalidInput("launch: no command given".into());
        };
        use std::os::unix::process::CommandExt;
        let e = Command::new(program)
            .args(args)
            .envs(&meta.request.env)
            .env("AGENTGATE_AGENT", name)
            .env("AGENTGATE_WORKSPACE", &meta.workspace_path)
            .envs(&secrets.0)
            // Set last: the agent's own variables cannot unmark its run.
            .env(crate::procs::RUN_MARK, self.files.agent_dir(name))
            .exec();
        Error::Failed(format!("cannot run {program}: {e}"))
    }

    /// Waits (bounded) until the agent's screen shows something and stops changing, so that
    /// typed text reaches the program rather than its start-up.
    fn wait_until_settled(&self, name: &str) {
        let started = Instant::now();
        let mut last = String::new();
        let mut last_change = Instant::now();
        while started.elapsed() < PROMPT_READY_TIMEOUT {
            std::thread::sleep(Duration::from_millis(100));
            let screen = match self.tmux.capture(name) {
                Ok(s) => s,
                Err(_) => return,
            };
            if screen != last {
                last = screen;
                last_change = Instant::now();
            } else if !last.trim().is_empty() && last_change.elapsed() >= PROMPT_QUIET {
                return;
            }
        }
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

    /// Ends the agent's session; the workspace and files stay. Stopping a stopped agent is
    /// not an error.
    pub fn stop(&self, name: &str) -> Result<AgentInfo> {
        check_name(name)?;
        self.files.read_meta(name)?;
        // Marked before the session ends, so that no look at the host sees the agent gone
        // without knowing it was stopped.
        let mark = self.files.stop_mark_path(name);
        std::fs::write(&mark, b"").map_err(Error::io("writing", &mark))?;
        if let Err(e) = self.tmux.kill_session(name) {
            let _ = std::fs::remove_file(&mark);
            return Err(e);
        }
        crate::procs::end_run(&self.files.agent_dir(name), crate::procs::GRACE);
        self.info(name)
    }

    /// Starts a stopped or exited agent again; a running agent is left as it is.
    pub fn start(
        &self,
        name: &str,
        size: Option<TermSize>,
        secrets: &Secrets,
    ) -> Result<AgentInfo> {
        check_name(name)?;
        let _held = self.files.lock_meta(name)?;
        let mut meta = self.files.read_meta(name)?;
        match self.tmux.pane(name)? {
            Some(pane) if !pane.dead => return self.info(name),
            Some(_) => self.tmux.kill_session(name)?,
            None => {}
        }
        // What the last run left running (a daemon of an agent that exited) ends with it.
        crate::procs::end_run(&self.files.agent_dir(name), crate::procs::GRACE);
        if let Some(size) = size {
            meta.request.size = Some(size);
        }
        if !meta.workspace_path.is_dir() {
            return Err(Error::Failed(format!(
                "the workspace {} is gone; recreate the agent",
                meta.workspace_path.display()
            )));
        }
        self.start_process(&mut meta, secrets)?;
        self.info(name)
    }

    /// Ends the session and deletes the agent's files and the workspace hostctl created
    /// (a `--dir` workspace belongs to the user and is never deleted).
    pub fn destroy(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        self.tmux.kill_session(name)?;
        crate::procs::end_run(&self.files.agent_dir(name), crate::procs::GRACE);
        if owns_workspace(&meta.request.workspace) {
            let owned = self.files.owned_workspace(name);
            if owned.exists() {
                std::fs::remove_dir_all(&owned).map_err(Error::io("removing", &owned))?;
            }
        }
        let dir = self.files.agent_dir(name);
        std::fs::remove_dir_all(&dir).map_err(Error::io("removing", dir))
    }

    /// Types text into the agent (pastes it, when it has a line break), then Enter unless
    /// `enter` is false.
    /// Puts `text` into the agent (typed, or pasted when it has a line break), then, after the
    /// CLI has had the time to take it in, presses Enter. A CLI that reads fast keystrokes
    /// as a paste (Codex, Gemini CLI) turns an Enter that follows them closely into a line
    /// break: the pause makes it a submit.
    pub fn send(&self, name: &str, text: &str, enter: bool) -> Result<SendReport> {
        let pane = self.running_pane(name)?;
        // The screen before the text, for telling when it shows the text (only needed when
        // Enter follows).
        let before = enter.then(|| self.tmux.capture(name).unwrap_or_default());
        self.tmux.put_text(name, text)?;
        let Some(before) = before else {
            return Ok(self.report_before_keys(name, &pane));
        };
        // A CLI that is busy reads the text late, and then the Enter with it, as one burst:
        // the pause counts from when its screen shows the text.
        self.wait_for_echo(name, text, &before);
        std::thread::sleep(submit_delay(text));
        let report = self.report_before_keys(name, &pane);
        self.tmux.press(name, &[Key::Enter])?;
        Ok(report)
    }

    /// Waits (at most [`ECHO_WITHIN`]) until the agent's screen shows the end of `text` (or,
    /// for a pasted text, which a CLI may show as `[Pasted text]`, until it changed from
    /// `before`).
    fn wait_for_echo(&self, name: &str, text: &str, before: &str) {
        let last_line = text.lines().last().unwrap_or_default().trim_end();
        let tail: String = {
            let chars: Vec<char> = last_line.chars().collect();
            chars[chars.len().saturating_sub(16)..].iter().collect()
        };
        let started = Instant::now();
        while started.elapsed() < ECHO_WITHIN {
            let Ok(screen) = self.tmux.capture(name) else {
                return;
            };
            let shown = if text.contains('\n') || tail.trim().is_empty() {
                screen != before
            } else {
                screen.contains(tail.as_str())
            };
            if shown {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Presses `keys` in the agent, one after the other (answering a dialog).
    pub fn keys(&self, name: &str, keys: &[Key]) -> Result<SendReport> {
        let pane = self.running_pane(name)?;
        let report = self.report_before_keys(name, &pane);
        self.tmux.press(name, keys)?;
        Ok(report)
    }

    fn running_pane(&self, name: &str) -> Result<Pane> {
        check_name(name)?;
        self.files.read_meta(name)?;
        match self.tmux.pane(name)? {
            Some(pane) if !pane.dead => Ok(pane),
            Some(_) => Err(Error::Failed(format!(
                "agent '{name}' has exited; start it first (start {name})"
            ))),
            None => Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (start {name})"
            ))),
        }
    }

    fn report_before_keys(&self, name: &str, pane: &Pane) -> SendReport {
        SendReport {
            at: time::OffsetDateTime::now_utc(),
            screen: self.tmux.capture(name).ok().map(|text| {
                Screen::from_text(pane.cols, pane.rows, &text, pane.foreground.clone())
            }),
        }
    }

    /// Writes the last `lines` lines of the agent's output (all of it for `None`), then, with
    /// `follow`, keeps writing what the agent prints until the writer fails.
    ///
    /// Without `raw` the output is rendered through a terminal emulator at the pane's size
    /// (see [`crate::logview`]): lines as they read on the screen, each redraw printed once.
    /// With `raw` the bytes are written as the pane printed them, and `lines` counts line
    /// breaks in them.
    pub fn logs(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        raw: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        if let Some(n) = lines
            && n > MAX_LOG_LINES
        {
            return Err(Error::InvalidInput(format!(
                "-n {n} is more lines than logs keeps ({MAX_LOG_LINES}); ask for fewer, or leave -n out for the whole log"
            )));
        }
        if raw {
            return self.logs_raw(name, lines, follow, out);
        }
        let path = self.files.log_path(name);
        let previous = crate::logwriter::previous(&path);
        let size = self.pane_size(name, &meta);
        let mut renderer = Renderer::new(size.cols, size.rows);
        let mut last = lines.map(|n| LastLines::new(n, MAX_LOG_TAIL_BYTES));
        let mut writer = WriteLines(out);
        // The whole output is replayed, the file the last one moved to first (see
        // `logwriter`): what a line reads depends on everything printed before it.
        {
            let sink: &mut dyn LineSink = match last.as_mut() {
                Some(last) => last,
                None => &mut writer,
            };
            if let Ok(mut before) = std::fs::File::open(&previous) {
                let mut times = Times::open(&previous);
                render_file(&mut before, times.as_mut(), &mut renderer, sink)
                    .map_err(|e| e.into_error(&previous))?;
            }
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening", path)(e)),
        };
        {
            let sink: &mut dyn LineSink = match last.as_mut() {
                Some(last) => last,
                None => &mut writer,
            };
            if let Some(f) = file.as_mut() {
                let mut times = Times::open(&path);
                render_file(f, times.as_mut(), &mut renderer, sink)
                    .map_err(|e| e.into_error(&path))?;
            }
            if follow {
                renderer.settle(true, sink)
            } else {
                renderer.finish(sink)
            }
            .map_err(Error::io("writing", "stdout"))?;
        }
        if let Some(last) = last {
            for line in last.into_lines() {
                writer.line(&line).map_err(Error::io("writing", "stdout"))?;
            }
        }
        writer.0.flush().map_err(Error::io("writing", "stdout"))?;
        if !follow {
            return Ok(());
        }
        // Rows are printed once they stayed the same for one poll, so a new line shows within
        // two polls and a spinner that turns at each poll shows when it stops.
        let mut polls = 0u32;
        loop {
            std::thread::sleep(LOG_POLL);
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(LOG_SIZE_POLLS)
                && let Ok(Some(pane)) = self.tmux.pane(name)
            {
                renderer.resize(pane.cols, pane.rows);
            }
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                match render_file(f, None, &mut renderer, &mut writer) {
                    Ok(_) => {}
                    // A write error means the reader went away: that ends `-f`.
                    Err(RenderError::Write(_)) => return Ok(()),
                    Err(e) => return Err(e.into_error(&path)),
                }
                // The writer started a new file: the one read is now output.log.1, which it
                // no longer writes to; read what it wrote there last, then go on from the new
                // file's start.
                if replaced(f, &path) {
                    match render_file(f, None, &mut renderer, &mut writer) {
                        Ok(_) => {}
                        Err(RenderError::Write(_)) => return Ok(()),
                        Err(e) => return Err(e.into_error(&path)),
                    }
                    file = std::fs::File::open(&path).ok();
                }
            }
            if renderer.settle(false, &mut writer).is_err() || writer.0.flush().is_err() {
                return Ok(());
            }
            if !self.files.meta_path(name).exists() {
                return Ok(());
            }
        }
    }

    /// The size the agent's output is rendered at: its pane's now, else the size it was
    /// created or last started with.
    fn pane_size(&self, name: &str, meta: &AgentMeta) -> TermSize {
        match self.tmux.pane(name) {
            Ok(Some(pane)) if pane.cols > 0 && pane.rows > 0 => TermSize {
                cols: pane.cols,
                rows: pane.rows,
            },
            _ => meta.request.size.unwrap_or_default(),
        }
        .bounded()
    }

    /// `logs --raw`: the bytes as the pane printed them.
    fn logs_raw(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let path = self.files.log_path(name);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening", path)(e)),
        };
        // The whole output: the file the last one moved to first (see `logwriter`).
        if lines.is_none() {
            let previous = crate::logwriter::previous(&path);
            if let Ok(mut before) = std::fs::File::open(&previous) {
                copy_to(&mut before, out).map_err(Error::io("reading", &previous))?;
            }
        }
        if let Some(file) = file.as_mut() {
            let start = match lines {
                Some(n) => tail_offset(file, n).map_err(Error::io("reading", &path))?,
                None => 0,
            };
            file.seek(SeekFrom::Start(start))
                .map_err(Error::io("reading", &path))?;
            copy_to(file, out).map_err(Error::io("reading", &path))?;
        }
        out.flush().map_err(Error::io("writing", "stdout"))?;
        if !follow {
            return Ok(());
        }
        loop {
            std::thread::sleep(LOG_POLL);
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                // A write error means the reader went away: that ends `-f`.
                if copy_to(f, out).is_err() || out.flush().is_err() {
                    return Ok(());
                }
                if replaced(f, &path) {
                    if copy_to(f, out).is_err() || out.flush().is_err() {
                        return Ok(());
                    }
                    file = std::fs::File::open(&path).ok();
                    continue;
                }
            }
            if !self.files.meta_path(name).exists() {
                return Ok(());
            }
        }
    }

    /// Replaces this process with the host user's shell in the agent's workspace, with the
    /// agent's environment plus `extra_env`: `shell -c COMMAND` for a command, else a login
    /// shell reading its standard input. The agent need not be running: its workspace is
    /// what counts.
    pub fn exec(
        &self,
        name: &str,
        command: Option<&str>,
        extra_env: &[(String, String)],
    ) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let meta = self.agent_for_session(name)?;
        let shell = login_shell();
        let mut cmd = Command::new(&shell);
        match command {
            Some(line) => cmd.arg("-c").arg(line),
            None => cmd.arg("-l"),
        };
        self.session_env(&mut cmd, &meta, extra_env)?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: shell,
            source: err,
        })
    }

    /// Replaces this process with OpenSSH's `sftp-server`, starting in the agent's workspace.
    pub fn sftp(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        let meta = self.agent_for_session(name)?;
        let server = sftp_server().ok_or_else(|| {
            Error::Failed(
                "OpenSSH's sftp-server is not installed on this host (Debian and Ubuntu: apt-get install openssh-sftp-server)"
                    .into(),
            )
        })?;
        let mut cmd = Command::new(&server);
        cmd.arg("-d").arg(&meta.workspace_path);
        self.session_env(&mut cmd, &meta, &[])?;
        let err = cmd.exec();
        Err(Error::Spawn {
            program: server.display().to_string(),
            source: err,
        })
    }

    fn agent_for_session(&self, name: &str) -> Result<AgentMeta> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        if !meta.workspace_path.is_dir() {
            return Err(Error::Failed(format!(
                "the workspace {} of agent '{name}' is gone",
                meta.workspace_path.display()
            )));
        }
        Ok(meta)
    }

    /// The environment of a session inside an agent, built like sshd builds a session's:
    /// the user's basics (not whatever hostctl's caller had), then the agent's own variables,
    /// then what the client sent (accepted `env` requests, `SSH_CONNECTION`, ...).
    fn session_env(
        &self,
        cmd: &mut Command,
        meta: &AgentMeta,
        extra_env: &[(String, String)],
    ) -> Result<()> {
        crate::userenv::clear_to_basics(cmd, &[]);
        cmd.current_dir(&meta.workspace_path)
            .envs(&meta.request.env)
            .env("AGENTGATE_AGENT", &meta.request.name)
            .env("AGENTGATE_WORKSPACE", &meta.workspace_path)
            .env("PWD", &meta.workspace_path);
        for (key, value) in extra_env {
            validate_env_key(key)?;
            cmd.env(key, value);
        }
        Ok(())
    }

    /// Replaces this process with `tmux attach` to the agent's session.
    pub fn attach(&self, name: &str) -> Result<std::convert::Infallible> {
        use std::os::unix::process::CommandExt;
        check_name(name)?;
        self.files.read_meta(name)?;
        if self.tmux.pane(name)?.is_none() {
            return Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (start {name})"
            )));
        }
        let err = self.tmux.attach_command(name).exec();
        Err(Error::Spawn {
            program: "tmux".into(),
            source: err,
        })
    }
}

/// Whether `path` is now another file than `open` (it was moved away and a new one made).
fn replaced(open: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
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

fn validate_request(request: &CreateRequest) -> Result<()> {
    check_name(&request.name)?;
    for key in request.env.keys() {
        validate_env_key(key)?;
    }
    if let AgentCommand::Argv { argv } = &request.command
        && argv.first().is_none_or(|a| a.is_empty())
    {
        return Err(Error::InvalidInput("the agent's command is empty".into()));
    }
    if let WorkspaceSource::Git { url, git_ref } = &request.workspace {
        if url.is_empty() || url.starts_with('-') {
            return Err(Error::InvalidInput(format!("'{url}' is not a git URL")));
        }
        if git_ref
            .as_deref()
            .is_some_and(|r| r.is_empty() || r.starts_with('-'))
        {
            return Err(Error::InvalidInput(
                "a git ref cannot be empty or start with '-'".into(),
            ));
        }
    }
    Ok(())
}

/// See [`crate::api::validate_env_key`].
fn validate_env_key(key: &str) -> Result<()> {
    crate::api::validate_env_key(key).map_err(Error::InvalidInput)
}

fn owns_workspace(source: &WorkspaceSource) -> bool {
    !matches!(source, WorkspaceSource::Dir { .. })
}

/// The argv tmux runs for an agent command. tmux hands a single argument to a shell, so a
/// one-word argv goes through `env` to keep it an argv.
fn command_argv(command: &AgentCommand) -> Vec<String> {
    let shell = login_shell();
    match command {
        AgentCommand::LoginShell => vec![shell, "-l".into()],
        AgentCommand::Shell { line } => vec![shell, "-l".into(), "-c".into(), line.clone()],
        AgentCommand::Argv { argv } if argv.len() == 1 => {
            vec!["env".into(), "--".into(), argv[0].clone()]
        }
        AgentCommand::Argv { argv } => argv.clone(),
    }
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

/// Where OpenSSH's `sftp-server` lives on common systems.
fn sftp_server() -> Option<PathBuf> {
    [
        "/usr/lib/openssh/sftp-server",
        "/usr/libexec/openssh/sftp-server",
        "/usr/libexec/sftp-server",
        "/usr/lib/ssh/sftp-server",
        "/usr/local/libexec/sftp-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn git_clone(url: &str, git_ref: Option<&str>, dest: &Path) -> Result<()> {
    let mut clone = Command::new("git");
    clone
        .args(["clone", "--quiet", "--"])
        .arg(url)
        .arg(dest)
        .env("GIT_TERMINAL_PROMPT", "0");
    run_checked("cloning the git repository", clone)?;
    if let Some(r) = git_ref {
        let mut checkout = Command::new("git");
        checkout
            .arg("-C")
            .arg(dest)
            .args(["checkout", "--quiet", r, "--"]);
        if let Err(e) = run_checked("checking out the git ref", checkout) {
            let _ = std::fs::remove_dir_all(dest);
            return Err(e);
        }
    }
    Ok(())
}

fn run_checked(what: &'static str, mut cmd: Command) -> Result<()> {
    cmd.stdin(Stdio::null());
    let argv = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| Error::Spawn {
        program: cmd.get_program().to_string_lossy().into_owned(),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Command {
        what,
        argv,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
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

/// The byte offset where the last `lines` lines of `file` begin.
fn tail_offset(file: &mut std::fs::File, lines: usize) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    // A final newline ends the last line rather than starting an empty one.
    let mut skip_last_newline = true;
    while pos > 0 {
        let chunk = buf.len().min(pos as usize);
        pos -= chunk as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..chunk])?;
        for i in (0..chunk).rev() {
            if buf[i] != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if skip_last_newline {
                skip_last_newline = false;
                continue;
            }
            newlines += 1;
            if newlines == lines {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    Ok(0)
}

fn copy_to(file: &mut std::fs::File, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

/// How often `logs -f` looks for new output.
const LOG_POLL: Duration = Duration::from_millis(200);

/// `logs -f` looks at the pane's size every this many polls (each look runs tmux).
const LOG_SIZE_POLLS: u32 = 5;

/// The most lines `logs -n` keeps: they are held until the log is rendered to its end.
pub const MAX_LOG_LINES: usize = 100_000;

/// The most text `logs -n` holds, whatever the number of lines.
const MAX_LOG_TAIL_BYTES: usize = 32 * 1024 * 1024;

/// A failure while rendering a file: reading it or writing the lines out.
enum RenderError {
    Read(std::io::Error),
    Write(std::io::Error),
}

impl RenderError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            RenderError::Read(e) => Error::io("reading", path)(e),
            RenderError::Write(e) => Error::io("writing", "stdout")(e),
        }
    }
}

/// The times of a log (see [`crate::logwriter`]), read a line at a time.
struct Times {
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
}

impl Times {
    /// The times of the log at `log`, if it has them (logs written before they were kept
    /// do not, and are replayed without: a line erased in place is then lost).
    fn open(log: &Path) -> Option<Times> {
        let file = std::fs::File::open(crate::logwriter::times(log)).ok()?;
        Some(Times {
            reader: std::io::BufReader::new(file),
            line: Vec::new(),
        })
    }

    /// The next pause at or after byte `from` of the log.
    fn next_from(&mut self, from: u64) -> Option<crate::logwriter::Pause> {
        use std::io::BufRead;
        loop {
            self.line.clear();
            // A line is a few digits: one longer than this is not a line of ours.
            let read = (&mut self.reader)
                .take(64)
                .read_until(b'\n', &mut self.line)
                .ok()?;
            if read == 0 {
                return None;
            }
            let pause = std::str::from_utf8(&self.line)
                .ok()
                .and_then(crate::logwriter::Pause::parse);
            if let Some(pause) = pause
                && pause.offset >= from
            {
                return Some(pause);
            }
        }
    }
}

/// Of the marks in a log's times that output went on without pausing, one in this many is
/// replayed (see [`render_file`]), times one per 50 rows of the screen.
const BUSY_MARKS_REPLAYED: u64 = 5;

/// Feeds what is left of `file` to the renderer, its lines to `sink`, with the pauses its
/// `times` note where they happened.
fn render_file(
    file: &mut std::fs::File,
    mut times: Option<&mut Times>,
    renderer: &mut Renderer,
    sink: &mut dyn LineSink,
) -> std::result::Result<(), RenderError> {
    let mut at = file.stream_position().map_err(RenderError::Read)?;
    let mut pause = times.as_mut().and_then(|t| t.next_from(at));
    let tick = crate::logwriter::TICK.as_millis().max(1) as u64;
    let mut busy_marks = 0u64;
    // A look reads the rows that changed, every row when the screen scrolled: on a tall
    // screen, fewer looks while output goes on (a pause is always replayed).
    let rows = renderer.size().1 as u64;
    let busy_every = BUSY_MARKS_REPLAYED * (rows / 50).max(1);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RenderError::Read(e)),
        };
        let mut chunk = &buf[..n];
        while let Some(p) = pause
            && p.offset <= at + chunk.len() as u64
        {
            let cut = usize::try_from(p.offset.saturating_sub(at)).unwrap_or(chunk.len());
            let (before, after) = chunk.split_at(cut.min(chunk.len()));
            renderer.feed(before, sink).map_err(RenderError::Write)?;
            // A mark of output that did not pause (one per poll of it) is replayed one in
            // five: a line must stay a second, not a fifth, to print before the next pause or
            // scrolls off, and the replay costs a fifth (one look is a screen's worth of work).
            let polls = p.millis / tick;
            busy_marks = if polls == 0 { busy_marks + 1 } else { 0 };
            if polls > 0 || busy_marks.is_multiple_of(busy_every) {
                renderer.quiet(polls, sink).map_err(RenderError::Write)?;
            }
            chunk = after;
            at = at.max(p.offset);
            pause = times.as_mut().and_then(|t| t.next_from(at + 1));
        }
        renderer.feed(chunk, sink).map_err(RenderError::Write)?;
        at += chunk.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(content: &str, n: usize) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, content).expect("write");
        let mut f = std::fs::File::open(&path).expect("open");
        let off = tail_offset(&mut f, n).expect("tail") as usize;
        content[off..].to_owned()
    }

    #[test]
    fn tail_finds_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn tail_crosses_block_boundaries() {
        let content: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&content, 3), "line 19997\nline 19998\nline 19999\n");
    }
}
