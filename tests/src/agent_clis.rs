//! The real agent CLIs the end-to-end tests run, installed once from their registries at
//! pinned versions into a cache under `target/agent-clis/`.
//!
//! npm: `tests/fixtures/agent-clis/package.json` pins Claude Code, Codex and Gemini CLI and its
//! `package-lock.json` pins everything they pull in; `npm ci` installs exactly that into
//! `target/agent-clis/npm/`. PyPI: aider-chat at [`AIDER_VERSION`] goes into a venv at
//! `target/agent-clis/venv/` (aider pins its own dependencies exactly).
//!
//! Several tests run at once (threads of the test binary, and other processes: a bench,
//! `install-agent-clis`), so an install happens under a file lock, and a cache is used only
//! when its stamp (written last, after a complete install) matches the pins: a half-finished
//! install has no stamp, and a changed pin changes the stamp, which reinstalls.
//! A test that needs a CLI and cannot have it fails with what is missing and how to get it;
//! nothing is skipped silently. This module never touches the network beyond npm and pip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The pinned npm packages (their lock file pins the rest).
const NPM_PACKAGE_JSON: &str = include_str!("../fixtures/agent-clis/package.json");
const NPM_PACKAGE_LOCK: &str = include_str!("../fixtures/agent-clis/package-lock.json");

/// aider-chat from PyPI.
pub const AIDER_VERSION: &str = "0.86.2";

/// The versions each CLI reports (`--version`), for tests and for the README.
pub const CLAUDE_VERSION: &str = "2.1.197";
pub const CODEX_VERSION: &str = "0.171.0";
pub const GEMINI_VERSION: &str = "0.61.0";

/// How long one install may take before it counts as hung (npm takes ~10 s, pip ~1 min here).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);
/// How long a test waits for another process's install (the lock) before failing.
const LOCK_LIMIT: Duration = Duration::from_secs(900);

/// One of the agent CLIs the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentCli {
    Claude,
    Codex,
    Gemini,
    Aider,
}

impl AgentCli {
    pub const ALL: [AgentCli; 4] = [
        AgentCli::Claude,
        AgentCli::Codex,
        AgentCli::Gemini,
        AgentCli::Aider,
    ];

    /// The command name (what a user types).
    pub fn command_name(self) -> &'static str {
        match self {
            AgentCli::Claude => "claude",
            AgentCli::Codex => "codex",
            AgentCli::Gemini => "gemini",
            AgentCli::Aider => "aider",
        }
    }

    /// The pinned version, as `--version` prints it somewhere in its line.
    pub fn version(self) -> &'static str {
        match self {
            AgentCli::Claude => CLAUDE_VERSION,
            AgentCli::Codex => CODEX_VERSION,
            AgentCli::Gemini => GEMINI_VERSION,
            AgentCli::Aider => AIDER_VERSION,
        }
    }
}

/// `target/agent-clis`, found from this program's path (a test binary in
/// `target/<profile>/deps/`, or `install-agent-clis` in `target/<profile>/`), so it is the same
/// directory `scripts/test.sh` fills. Cargo marks its target directory with `CACHEDIR.TAG`,
/// whatever CARGO_TARGET_DIR names it.
pub fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .find(|p| p.join("CACHEDIR.TAG").is_file())
        .or_else(|| {
            exe.ancestors()
                .find(|p| p.file_name().is_some_and(|n| n == "target"))
        })
        .map(Path::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "{} is not in a cargo target directory (no CACHEDIR.TAG above it)",
                exe.display()
            )
        });
    target.join("agent-clis")
}

/// The executable of `cli`, installing the pinned CLIs first if the cache lacks them. Fails the
/// test with a clear message when they cannot be installed.
pub fn executable(cli: AgentCli) -> PathBuf {
    let result = match cli {
        AgentCli::Aider => install_aider(&cache_dir()),
        _ => install_npm(&cache_dir()),
    };
    let dir = result.unwrap_or_else(|e| {
        panic!(
            "the {} CLI is needed by this test and could not be installed: {e:#}\n\
             hint: `cargo run -p e2e --bin install-agent-clis` installs them (it needs node 20+ \
             with npm, python3 with venv and pip, and access to their registries)",
            cli.command_name()
        )
    });
    let path = match cli {
        AgentCli::Aider => dir.join("bin").join("aider"),
        _ => dir
            .join("node_modules")
            .join(".bin")
            .join(cli.command_name()),
    };
    assert!(
        path.exists(),
        "{} is missing although the install of the pinned CLIs finished: delete {} and retry",
        path.display(),
        dir.display()
    );
    path
}

/// The directory holding `node` and the CLIs' `.bin`, for the PATH of a CLI's environment
/// (codex and gemini are node scripts with `#!/usr/bin/env node`).
pub fn node_bin_dir() -> Result<PathBuf> {
    let node = find_in_path("node").context("node is not on PATH")?;
    Ok(node
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/usr/bin")))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Installs Claude Code, Codex and Gemini CLI (`npm ci` of the pinned lock) unless the cache
/// already has exactly these pins; returns the npm prefix (`target/agent-clis/npm`).
pub fn install_npm(cache: &Path) -> Result<PathBuf> {
    let stamp = format!("{NPM_PACKAGE_JSON}\n{NPM_PACKAGE_LOCK}");
    let dir = cache.join("npm");
    install_once(cache, "npm", &dir, &stamp, |dir| {
        if find_in_path("npm").is_none() {
            bail!("npm is not on PATH (install node.js 20 or newer, which brings npm)");
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("package.json"), NPM_PACKAGE_JSON)?;
        std::fs::write(dir.join("package-lock.json"), NPM_PACKAGE_LOCK)?;
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            // npm's update check would reach for the registry on every run.
            .env("NPM_CONFIG_UPDATE_NOTIFIER", "false");
        run_bounded(npm, "npm ci")
    })
}

/// Installs aider-chat into a venv unless the cache already has this pin; returns the venv.
pub fn install_aider(cache: &Path) -> Result<PathBuf> {
    let stamp = format!("aider-chat=={AIDER_VERSION}\n");
    let dir = cache.join("venv");
    install_once(cache, "venv", &dir, &stamp, |dir| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(dir);
        run_bounded(venv, "python3 -m venv")?;
        let mut pip = Command::new(dir.join("bin").join("pip"));
        pip.args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            &format!("aider-chat=={AIDER_VERSION}"),
        ]);
        run_bounded(pip, "pip install aider-chat")
    })
}

const STAMP_FILE: &str = ".agentgate-stamp";

/// Runs `install` into `dir` unless `dir` carries `stamp`: under a lock, so that only one
/// process installs; the stamp is written after a complete install, so a reader never takes a
/// half-finished one (venvs hold absolute paths, so the install happens in place).
fn install_once(
    cache: &Path,
    name: &str,
    dir: &Path,
    stamp: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let stamped = |dir: &Path| {
        std::fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|found| found == stamp)
    };
    if stamped(dir) {
        return Ok(dir.to_owned());
    }
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let lock_path = cache.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).with_context(|| format!("open {}", lock_path.display()))?;
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_LIMIT => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another process has held {} for {:?} (a hung install? kill it, or delete {})",
                lock_path.display(),
                LOCK_LIMIT,
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("lock {}", lock_path.display()));
            }
        }
    }
    // Another process may have finished the install while this one waited.
    if stamped(dir) {
        return Ok(dir.to_owned());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    eprintln!(
        "installing the pinned agent CLIs ({name}) into {}",
        dir.display()
    );
    install(dir).with_context(|| format!("install into {}", dir.display()))?;
    std::fs::write(dir.join(STAMP_FILE), stamp)
        .with_context(|| format!("write the stamp in {}", dir.display()))?;
    // The lock is released when `lock` is dropped, after the stamp is written.
    Ok(dir.to_owned())
}

/// Runs an installer with a time limit; a failure keeps its argv, status and output.
fn run_bounded(mut command: Command, what: &str) -> Result<()> {
    let argv = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}: {argv}"))?;
    // Drain both pipes on threads so a chatty installer cannot block on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > INSTALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {INSTALL_LIMIT:?}: {argv}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (out, err) = (collect(out), collect(err));
    if !status.success() {
        bail!("{what} failed ({status}): {argv}\nstdout:\n{out}\nstderr:\n{err}");
    }
    Ok(())
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// How to start one CLI unattended against the fake model API: its program and arguments,
/// and the environment to give it. The files it needs are already seeded in its config
/// directory (under the directory given to [`prepare`]).
#[derive(Clone, Debug)]
pub struct CliLaunch {
    pub cli: AgentCli,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The variables the CLI needs (config dirs, the fake's URL, a dummy key, no updates or
    /// telemetry). PATH, HOME, TERM and LANG are not among them: see [`CliLaunch::base_env`].
    pub env: Vec<(String, String)>,
    /// The name of the shell tool the CLI declares and the fake calls for `RUNCMD`.
    pub shell_tool: &'static str,
}

impl CliLaunch {
    /// A PATH with node and the CLIs, a HOME (unless the CLI brings its own: aider), TERM and
    /// LANG: what a clean `env -i` start needs besides [`CliLaunch::env`].
    pub fn base_env(&self, home: &Path) -> Vec<(String, String)> {
        let own_home = self.env.iter().any(|(k, _)| k == "HOME");
        let mut path = vec![
            self.program
                .parent()
                .map(Path::to_owned)
                .unwrap_or_default(),
        ];
        if let Ok(node) = node_bin_dir() {
            path.push(node);
        }
        path.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
        let path = std::env::join_paths(path).expect("PATH entries without ':'");
        let mut env = vec![("PATH".to_owned(), path.to_string_lossy().into_owned())];
        if !own_home {
            env.push(("HOME".into(), home.display().to_string()));
        }
        env.push(("TERM".into(), "xterm-256color".into()));
        env.push(("LANG".into(), "C.UTF-8".into()));
        env
    }

    /// One shell command line that starts the CLI with exactly `base_env(home)` and `env`
    /// (`env -i`), every word quoted: for `tmux new-session` or an agent's command.
    pub fn command_line(&self, home: &Path) -> String {
        let mut words = vec!["env".to_owned(), "-i".to_owned()];
        for (k, v) in self.base_env(home).iter().chain(&self.env) {
            words.push(crate::shell_quote(&format!("{k}={v}")));
        }
        words.push(crate::shell_quote(&self.program.display().to_string()));
        words.extend(self.args.iter().map(|a| crate::shell_quote(a)));
        words.join(" ")
    }
}

impl CliLaunch {
    /// The arguments of `ssh gw create NAME ...` that start this CLI as an agent: an `--env` for
    /// each variable it needs and for a PATH that finds node, then `--` and the command. Each
    /// is one word: quote them (`e2e::shell_quote`) for ssh, which joins its arguments with
    /// spaces.
    pub fn create_args(&self) -> Vec<String> {
        let path = self
            .base_env(Path::new("/nonexistent"))
            .into_iter()
            .filter(|(k, _)| k == "PATH");
        let mut args = Vec::new();
        for (k, v) in path.chain(self.env.iter().cloned()) {
            args.push("--env".to_owned());
            args.push(format!("{k}={v}"));
        }
        args.push("--".to_owned());
        args.push(self.program.display().to_string());
        args.extend(self.args.iter().cloned());
        args
    }
}

/// A dummy Anthropic key (Claude Code remembers approved keys by their last 20 characters).
pub const FAKE_ANTHROPIC_KEY: &str = "sk-ant-api03-agentgate-fake-key-0000000000000000000000AA";
pub const FAKE_OPENAI_KEY: &str = "sk-agentgate-fake-openai-key";
pub const FAKE_GEMINI_KEY: &str = "AIzaSyAgentgateFakeGeminiKey000000000";

/// Seeds `cli`'s configuration under `config_root` (a directory of the test's own) so that it
/// starts straight at its input prompt in `workspace`, talking to `model_url` (the fake's
/// [`base_url`](crate::fake_model::FakeModel::base_url)), with no dialog the user did not ask
/// for (onboarding, theme, API key, folder trust, updates, telemetry), and with its permission
/// dialog left on (a tool call asks). Installs the CLI if needed.
pub fn prepare(cli: AgentCli, config_root: &Path, workspace: &Path, model_url: &str) -> CliLaunch {
    let program = executable(cli);
    let workspace = workspace
        .canonicalize()
        .unwrap_or_else(|e| panic!("workspace {}: {e}", workspace.display()));
    let ws = workspace.display().to_string();
    let write = |path: PathBuf, text: String| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create a config dir");
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    };
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    match cli {
        AgentCli::Claude => {
            let dir = config_root.join("claude");
            let key_tail = &FAKE_ANTHROPIC_KEY[FAKE_ANTHROPIC_KEY.len() - 20..];
            // Onboarding done, this key accepted, the workspace trusted: the state the first-run
            // dialogs (theme, "use this API key?", security notes, folder trust) leave behind.
            let state = serde_json::json!({
                "hasCompletedOnboarding": true,
                "lastOnboardingVersion": CLAUDE_VERSION,
                "theme": "dark",
                "autoUpdates": false,
                "customApiKeyResponses": {"approved": [key_tail], "rejected": []},
                "hasAcknowledgedCostThreshold": true,
                "effortCalloutDismissed": true,
                "projects": {ws.clone(): {
                    "hasTrustDialogAccepted": true,
                    "hasCompletedProjectOnboarding": true,
                    "projectOnboardingSeenCount": 1,
                    "allowedTools": [],
                }},
            });
            write(dir.join(".claude.json"), format!("{state:#}\n"));
            write(
                dir.join("settings.json"),
                format!(
                    "{:#}\n",
                    serde_json::json!({"permissions": {"defaultMode": "default"}})
                ),
            );
            let dir = dir.display().to_string();
            CliLaunch {
                cli,
                program,
                args: vec![],
                env: env(&[
                    ("CLAUDE_CONFIG_DIR", &dir),
                    ("ANTHROPIC_BASE_URL", model_url),
                    ("ANTHROPIC_API_KEY", FAKE_ANTHROPIC_KEY),
                    ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1"),
                    ("DISABLE_AUTOUPDATER", "1"),
                    ("DISABLE_UPDATES", "1"),
                    ("DISABLE_TELEMETRY", "1"),
                    ("DISABLE_ERROR_REPORTING", "1"),
                ]),
                shell_tool: "Bash",
            }
        }
        AgentCli::Codex => {
            let dir = config_root.join("codex");
            // approval_policy on-request with a read-only sandbox: the fake's command asks
            // for escalation, so Codex shows its approval dialog.
            let config = format!(
                r#"model = "gpt-5"
model_provider = "fake"
approval_policy = "on-request"
sandbox_mode = "read-only"
check_for_update_on_startup = false

[model_providers.fake]
name = "Fake model API"
base_url = "{model_url}/v1"
env_key = "OPENAI_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[projects.{ws_key}]
trust_level = "trusted"

[analytics]
enabled = false

[tui]
screen_reader_detection_done = true
"#,
                ws_key = toml_string(&ws),
            );
            write(dir.join("config.toml"), config);
            let dir = dir.display().to_string();
            CliLaunch {
                cli,
                program,
                // Without it Codex 0.171 starts a shared background server (`codex app-server
                // --managed-daemon`, from a copy of itself under CODEX_HOME) that outlives the
                // TUI, its tmux session and the test.
                args: vec!["--no-daemon".to_owned()],
                env: env(&[("CODEX_HOME", &dir), ("OPENAI_API_KEY", FAKE_OPENAI_KEY)]),
                shell_tool: "exec_command",
            }
        }
        AgentCli::Gemini => {
            // GEMINI_CLI_HOME stands for the home directory: settings live in its .gemini/.
            let home = config_root.join("gemini");
            let settings = serde_json::json!({
                "security": {
                    "auth": {"selectedType": "gemini-api-key"},
                    "folderTrust": {"enabled": true},
                },
                "general": {"enableAutoUpdate": false, "enableAutoUpdateNotification": false},
                "privacy": {"usageStatisticsEnabled": false},
                "ui": {"showHomeDirectoryWarning": false, "hideTips": true},
                "ide": {"enabled": false},
            });
            write(
                home.join(".gemini").join("settings.json"),
                format!("{settings:#}\n"),
            );
            write(
                home.join(".gemini").join("trustedFolders.json"),
                format!("{:#}\n", serde_json::json!({ws.clone(): "TRUST_FOLDER"})),
            );
            let home = home.display().to_string();
            CliLaunch {
                cli,
                program,
                args: vec![],
                env: env(&[
                    ("GEMINI_CLI_HOME", &home),
                    ("GEMINI_API_KEY", FAKE_GEMINI_KEY),
                    ("GOOGLE_GEMINI_BASE_URL", model_url),
                ]),
                shell_tool: "run_shell_command",
            }
        }
        AgentCli::Aider => {
            // aider keeps its caches in ~/.aider and has no variable to move them, so it gets
            // a HOME of its own. Its model list (litellm's price table) would be fetched from
            // GitHub when the cached copy is missing or older than a day: the copy litellm
            // ships, written now, is fresh.
            let home = config_root.join("aider");
            let venv = program
                .parent()
                .and_then(Path::parent)
                .expect("aider lives in VENV/bin");
            let table = std::fs::read_dir(venv.join("lib"))
                .ok()
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .map(|python| {
                    python
                        .path()
                        .join("site-packages/litellm/model_prices_and_context_window_backup.json")
                })
                .find(|p| p.is_file())
                .unwrap_or_else(|| {
                    panic!("litellm's price table is missing in {}", venv.display())
                });
            let table = std::fs::read_to_string(&table)
                .unwrap_or_else(|e| panic!("read {}: {e}", table.display()));
            write(
                home.join(".aider/caches/model_prices_and_context_window.json"),
                table,
            );
            // Without a git identity aider prints how to set one at every start.
            write(
                home.join(".gitconfig"),
                "[user]\n\tname = agentgate test\n\temail = agentgate-test@example.invalid\n"
                    .to_owned(),
            );
            let home = home.display().to_string();
            CliLaunch {
                cli,
                program,
                args: [
                    "--no-check-update",
                    "--no-show-release-notes",
                    "--no-analytics",
                    "--no-gitignore",
                    "--no-show-model-warnings",
                    "--model",
                    "gpt-4o",
                    "--openai-api-base",
                    &format!("{model_url}/v1"),
                ]
                .map(str::to_owned)
                .to_vec(),
                // litellm itself would fetch the same table at import.
                env: env(&[
                    ("HOME", &home),
                    ("OPENAI_API_KEY", FAKE_OPENAI_KEY),
                    ("LITELLM_LOCAL_MODEL_COST_MAP", "True"),
                ]),
                shell_tool: "bash block",
            }
        }
    }
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The harness's template for agents that run a CLI: it copies the CLIs' configurations
/// (under [`HOME_DIR`] of the host user's home) into a sandboxed agent's private home, where a
/// CLI keeps its configuration and may write it; an agent without a sandbox reads them where
/// they are, at the same paths.
pub const TEMPLATE: &str = "agent-cli";

/// Where in the host user's home the CLIs' configurations are prepared, one directory per
/// agent.
pub const HOME_DIR: &str = ".agent-cli";

/// Where agent `name`'s CLI configuration is prepared on the gateway's own host: inside the
/// host user's home, as [`TEMPLATE`] copies it.
pub fn config_root(gw: &crate::TestGateway, name: &str) -> PathBuf {
    gw.home.join(HOME_DIR).join(name)
}

/// Creates agent `name` running `cli` against `fake`, in a workspace of its own; returns the
/// workspace. `settings` is merged into the CLI's user settings (Claude Code only).
pub fn create_agent(
    gw: &crate::TestGateway,
    fake: &crate::fake_model::FakeModel,
    cli: AgentCli,
    name: &str,
    settings: Option<serde_json::Value>,
) -> PathBuf {
    create_agent_with(gw, fake, cli, name, settings, &[])
}

/// [`create_agent`], with more options for `create` (`--prompt TEXT`).
pub fn create_agent_with(
    gw: &crate::TestGateway,
    fake: &crate::fake_model::FakeModel,
    cli: AgentCli,
    name: &str,
    settings: Option<serde_json::Value>,
    options: &[&str],
) -> PathBuf {
    let workspace = gw.dir.path().join(format!("ws-{name}"));
    std::fs::create_dir_all(&workspace).expect("workspace");
    // aider asks to make a repository where there is none.
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(&workspace)
        .status()
        .expect("git init");
    assert!(git.success());
    let config = config_root(gw, name).join("config");
    let launch = prepare(cli, &config, &workspace, &fake.base_url());
    if let Some(extra) = settings {
        let path = config.join("claude").join("settings.json");
        let mut current: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("settings")).expect("json");
        for (k, v) in extra.as_object().expect("an object") {
            current[k] = v.clone();
        }
        std::fs::write(&path, current.to_string()).expect("write settings");
    }
    let mut args: Vec<String> = vec![
        "create".into(),
        name.into(),
        "--dir".into(),
        workspace
            .canonicalize()
            .expect("canonical")
            .display()
            .to_string(),
        "--template".into(),
        TEMPLATE.into(),
    ];
    let home = config_root(gw, name).join("home");
    std::fs::create_dir_all(&home).expect("home");
    for (k, v) in launch.base_env(&home).iter().chain(&launch.env) {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.extend(options.iter().map(|o| (*o).to_owned()));
    args.push("--".into());
    args.push(launch.program.display().to_string());
    args.extend(launch.args.iter().cloned());
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    gw.ok(&words);
    workspace
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Installs that take a while, from several threads at once (each opens the lock file
    /// itself, as tests in one binary and separate processes do): one installs, the others wait and take its result.
    #[test]
    fn concurrent_installs_install_once() {
        let cache = tempfile::tempdir().expect("tempdir");
        let runs = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let dir =
                        install_once(cache.path(), "t", &cache.path().join("t"), "pins 1", |d| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::fs::create_dir_all(d)?;
                            std::thread::sleep(Duration::from_millis(300));
                            std::fs::write(d.join("tool"), "installed")?;
                            Ok(())
                        })
                        .expect("install");
                    // Whoever returns sees a complete install.
                    assert_eq!(
                        std::fs::read_to_string(dir.join("tool")).expect("tool"),
                        "installed"
                    );
                });
            }
        });
        assert_eq!(runs.load(Ordering::SeqCst), 1, "installed more than once");
    }

    /// A changed pin reinstalls into a clean directory; a failed install leaves no stamp, so the
    /// next call installs again instead of taking half an install.
    #[test]
    fn a_changed_pin_or_a_failed_install_installs_again() {
        let cache = tempfile::tempdir().expect("tempdir");
        let dir = cache.path().join("t");
        let install = |marker: &'static str| {
            move |d: &Path| -> Result<()> {
                std::fs::create_dir_all(d)?;
                std::fs::write(d.join(marker), "")?;
                Ok(())
            }
        };
        install_once(cache.path(), "t", &dir, "pins 1", install("one")).expect("first");
        install_once(cache.path(), "t", &dir, "pins 1", install("again")).expect("same pins");
        assert!(
            !dir.join("again").exists(),
            "reinstalled with unchanged pins"
        );
        install_once(cache.path(), "t", &dir, "pins 2", install("two")).expect("new pins");
        assert!(
            dir.join("two").exists() && !dir.join("one").exists(),
            "the old install stayed"
        );

        let failed = install_once(cache.path(), "t", &dir, "pins 3", |d| {
            std::fs::create_dir_all(d)?;
            std::fs::write(d.join("half"), "")?;
            bail!("the registry is down")
        });
        assert!(failed.is_err());
        install_once(cache.path(), "t", &dir, "pins 3", install("three")).expect("retry");
        assert!(
            dir.join("three").exists() && !dir.join("half").exists(),
            "half an install was kept"
        );
    }
}
