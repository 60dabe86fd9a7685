//! An agent's life on this host: create (the workspace, the files, the first start), start
//! (`launch` is the pane's first process), stop and destroy.

use super::*;

/// How long `create --prompt` waits for the agent's screen to settle before typing.
const PROMPT_READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The screen must stay unchanged this long to count as settled.
const PROMPT_QUIET: Duration = Duration::from_millis(600);

impl HostCtl {
    pub fn create(&self, mut request: CreateRequest, secrets: &Secrets) -> Result<AgentInfo> {
        validate_request(&request)?;
        // Decided once, here, and written down: later starts and sessions follow meta.json.
        request.sandbox = Some(crate::sandbox::choose(request.sandbox)?);
        if request.network == Some(crate::api::Network::None)
            && request.sandbox != Some(crate::api::Sandbox::Bwrap)
        {
            return Err(Error::InvalidInput(
                "--network none needs the sandbox, and this agent has none: leave out --sandbox none (or install bubblewrap on its host)".into(),
            ));
        }
        let name = request.name.clone();
        // Limits the host cannot apply are refused before anything of the agent exists.
        crate::cgroups::check(&self.files, &name, &request.limits)?;
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
        let prepared = matches!(request.workspace, WorkspaceSource::Prepared);
        match self.create_in(request, secrets) {
            Ok(info) => {
                // An unpacked copy is the agent's workspace now, no operation's.
                let _ = self.forget_copy_mark(&name);
                Ok(info)
            }
            Err(e) => {
                if prepared {
                    self.return_carried_home(&name, &self.files.owned_workspace(&name));
                }
                crate::cgroups::remove(&self.files, &name);
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
        let started = self
            .seed_home(&meta)
            .and_then(|()| self.start_process(&mut meta, secrets));
        if let Err(e) = started {
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

    /// A new sandboxed agent's private home, with its template's files of the host user's
    /// home copied in.
    fn seed_home(&self, meta: &AgentMeta) -> Result<()> {
        if !crate::sandbox::is_sandboxed(meta) || meta.request.sandbox_extras.home_files.is_empty()
        {
            return Ok(());
        }
        let name = &meta.request.name;
        crate::sandbox::prepare(&self.files, name)?;
        let home = crate::sandbox::HostFacts::gather(&self.files, name)?.user_home;
        crate::sandbox::seed_home(&self.files, meta, &home)
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
                // The private home it carried becomes the agent's.
                self.adopt_carried_home(name, &path)?;
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
        let mut env = env;
        if crate::sandbox::is_sandboxed(meta) {
            crate::sandbox::prepare(&self.files, &name)?;
            // What the caller asked to hide (the gateway's data directory on its own host)
            // reaches the launcher in the pane, which builds the sandbox.
            if let Some(hide) = std::env::var_os(crate::sandbox::HIDE_ENV) {
                env.push((
                    crate::sandbox::HIDE_ENV.to_owned(),
                    hide.to_string_lossy().into_owned(),
                ));
            }
        }
        // The agent's cgroups, made and limited before its pane joins them (`launch`).
        crate::cgroups::apply(&self.files, meta)?;
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
        // A window the operator opens in an attached sandboxed agent (tmux's `new-window`,
        // `split-window`) is a session inside its sandbox, as `ssh NAME@gw` is.
        let started = started.and_then(|()| {
            if !crate::sandbox::is_sandboxed(meta) {
                return Ok(());
            }
            let home = self.files.home().to_string_lossy().into_owned();
            let words = [
                "env".to_owned(),
                format!("AGENTGATE_HOME={home}"),
                exe.to_string_lossy().into_owned(),
                "exec".to_owned(),
                name.clone(),
                // As the agent's own processes: the operator's forwarded SSH agent, while one
                // is (`ssh -A`).
                "--env".to_owned(),
                format!(
                    "SSH_AUTH_SOCK={}",
                    self.files.ssh_agent_link(&name).to_string_lossy()
                ),
            ];
            let line = shlex::try_join(words.iter().map(String::as_str)).map_err(|_| {
                Error::InvalidInput(format!("unusable hostctl path {}", exe.display()))
            })?;
            self.tmux
                .set_default_command(&name, &format!("exec {line}"))
        });
        if let Err(e) = started {
            let _ = self.tmux.kill_session(&name);
            let _ = std::fs::remove_file(&launch);
            crate::cgroups::remove(&self.files, &name);
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
        // In its cgroups before anything else runs, so that the sandbox and every process of
        // the agent inherit them.
        if let Err(e) = crate::cgroups::join(&self.files, &meta) {
            return e;
        }
        let Some((program, args)) = argv.split_first() else {
            return Error::InvalidInput("launch: no command given".into());
        };
        use std::os::unix::process::CommandExt;
        // The sandbox (if any) ends with the pane's process: its bwrap has --die-with-parent
        // and is the pane's process. `_filter` must stay open until the exec.
        // bwrap tells what sandbox it made (`_info`), for sessions to join it.
        let (mut cmd, _filter, _info) = if crate::sandbox::is_sandboxed(&meta) {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            let info = match crate::enter::info_file(&self.files, name) {
                Ok(info) => info,
                Err(e) => return e,
            };
            match crate::sandbox::command_with_info(
                &self.files,
                &meta,
                Some(&info),
                &program.into(),
                &args,
            ) {
                Ok((cmd, filter)) => (cmd, Some(filter), Some(info)),
                Err(e) => return e,
            }
        } else {
            let mut cmd = Command::new(program);
            cmd.args(args);
            (cmd, None, None)
        };
        let e = cmd
            // Where an operator's forwarded SSH agent is reached while one is (`ssh -A`); the
            // agent's own variables may name another.
            .env("SSH_AUTH_SOCK", self.files.ssh_agent_link(name))
            .envs(&meta.request.env)
            .env("AGENTGATE_AGENT", name)
            .env("AGENTGATE_WORKSPACE", &meta.workspace_path)
            .envs(&secrets.0)
            // Set last: the agent's own variables cannot unmark its run.
            .env(crate::procs::RUN_MARK, self.files.agent_dir(name))
            .exec();
        Error::Failed(format!(
            "cannot run {}: {e}",
            cmd.get_program().to_string_lossy()
        ))
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
        crate::cgroups::remove(&self.files, name);
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
        // Limits this host cannot apply (it came here by a migration, or lost its delegated
        // cgroups) are refused before the last run is cleared away.
        crate::cgroups::check(&self.files, name, &meta.request.limits)?;
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
        crate::cgroups::remove(&self.files, name);
        if owns_workspace(&meta.request.workspace) {
            let owned = self.files.owned_workspace(name);
            if owned.exists() {
                std::fs::remove_dir_all(&owned).map_err(Error::io("removing", &owned))?;
            }
        }
        let dir = self.files.agent_dir(name);
        std::fs::remove_dir_all(&dir).map_err(Error::io("removing", dir))
    }
}

fn validate_request(request: &CreateRequest) -> Result<()> {
    check_name(&request.name)?;
    request
        .sandbox_extras
        .check(["home_files", "read_only", "read_write"])
        .map_err(Error::InvalidInput)?;
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
