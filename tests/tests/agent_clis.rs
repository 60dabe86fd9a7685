//! The real agent CLIs, at their pinned versions, against the fake model API, each in a tmux
//! server of the test's own (no gateway): they start unattended at their input prompt, a typed
//! prompt reaches the fake and its answer shows on the screen, and a tool call shows the CLI's
//! permission dialog, which runs the command when approved and not when denied. These are the
//! ground the gateway's own CLI tests stand on: when a CLI release changes what it sends or
//! shows, these fail first and say what changed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use e2e::agent_clis::{self, AgentCli, CliLaunch};
use e2e::fake_model::{FakeModel, HELLO_REPLY, PROBE_DONE, PROBE_FILE, SLOW_REPLY};

/// How long a CLI may take to reach a screen (start-up of a 250 MB binary or of node on two
/// busy cores, a model round trip): a bound that fails a hung test, not a measurement.
const SCREEN_PATIENCE: Duration = Duration::from_secs(90);

/// The pause between typing a prompt and pressing Enter. Codex takes keys that come within
/// 120 ms of the last typed character as part of a paste (Enter becomes a newline), Gemini
/// within 30 ms; 300 ms is past both.
const ENTER_AFTER_TYPING: Duration = Duration::from_millis(300);

/// Whether the screen shows `cli` ready for a prompt.
fn at_input_prompt(cli: AgentCli, screen: &str) -> bool {
    match cli {
        AgentCli::Claude | AgentCli::Codex => screen.contains("? for shortcuts"),
        AgentCli::Gemini => screen.contains("Type your message"),
        // aider's prompt is a bare `>` on the last line it wrote.
        AgentCli::Aider => screen
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| l.trim_end() == ">"),
    }
}

fn permission_dialog(cli: AgentCli) -> &'static str {
    match cli {
        AgentCli::Claude => "Do you want to proceed?",
        AgentCli::Codex => "Would you like to run the following command?",
        AgentCli::Gemini => "Allow execution",
        AgentCli::Aider => "Run shell command?",
    }
}

/// Dialogs nobody asked for: each of these on the first screen means the seeded configuration
/// no longer covers what the CLI asks at start.
const UNASKED_DIALOGS: [&str; 12] = [
    "Choose the text style",
    "Do you want to use this API key",
    "Security notes",
    "Do you trust",
    "trust this folder",
    "Trust this folder",
    "Sign in",
    "How would you like to authenticate",
    "Enter Gemini API Key",
    "Update available",
    "update available",
    "telemetry",
];

/// One CLI in a tmux server of its own, in a fresh workspace, talking to its own fake model.
struct CliSession {
    cli: AgentCli,
    socket: String,
    dir: tempfile::TempDir,
    model: FakeModel,
}

impl CliSession {
    fn start(cli: AgentCli) -> CliSession {
        let model = FakeModel::start();
        let dir = tempfile::tempdir().expect("tempdir");
        let workspace = dir.path().join("workspace");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&workspace).expect("workspace");
        std::fs::create_dir_all(&home).expect("home");
        // A fresh repository, as an agent's workspace usually is.
        let git = Command::new("git")
            .args(["init", "-q"])
            .current_dir(&workspace)
            .status()
            .expect("run git init");
        assert!(git.success(), "git init failed");
        let launch: CliLaunch = agent_clis::prepare(
            cli,
            &dir.path().join("config"),
            &workspace,
            &model.base_url(),
        );
        let socket = e2e::unique(&format!("clis-{}", cli.command_name()));
        let session = CliSession {
            cli,
            socket,
            dir,
            model,
        };
        // The pane stays after the CLI exits, so a failure shows its last words and exit code.
        let command = format!(
            "{}; echo \"[exited rc=$?]\"; sleep 600",
            launch.command_line(&home)
        );
        let workspace = session.workspace();
        let out = session.tmux(&[
            "new-session",
            "-d",
            "-s",
            "cli",
            "-x",
            "120",
            "-y",
            "40",
            "-c",
            workspace.to_str().expect("utf-8 path"),
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        session
    }

    fn workspace(&self) -> PathBuf {
        self.dir
            .path()
            .join("workspace")
            .canonicalize()
            .expect("workspace")
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            // The socket lives in the test's directory and goes with it.
            .env("TMUX_TMPDIR", self.dir.path())
            .env_remove("TMUX")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-J", "-t", "cli"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text`; fails with the screen and the fake's requests.
    fn wait_for_screen(&self, what: &str, text: &str) -> String {
        self.wait_for_screen_where(what, |screen| screen.contains(text))
    }

    fn wait_for_screen_where(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < SCREEN_PATIENCE,
                "{}: timed out after {SCREEN_PATIENCE:?} waiting for {what}; the screen:\n{screen}\n\
                 the fake model API saw:\n{}",
                self.cli.command_name(),
                self.model.summary()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Types `text` as keystrokes, waits until the CLI shows it (it has taken the keys), then
    /// presses Enter as a key of its own, later. The pause counts from when the CLI drew the
    /// text: on a busy machine a CLI can read keys late, and Codex and Gemini CLI time their
    /// paste rule from when they read a key, not from when it was sent.
    fn type_line(&self, text: &str) {
        let before = self.screen().matches(text).count();
        let out = self.tmux(&["send-keys", "-t", "cli", "-l", text]);
        assert!(out.status.success(), "send-keys failed");
        self.wait_for_screen_where(&format!("the typed {text:?} on the screen"), |screen| {
            screen.matches(text).count() > before
        });
        std::thread::sleep(ENTER_AFTER_TYPING);
        self.key("Enter");
    }

    /// Answers a dialog: a key, or for aider (whose questions read a line) a word and Enter.
    fn answer(&self, key: &str) {
        if self.cli == AgentCli::Aider {
            self.type_line(key);
        } else {
            self.key(key);
        }
    }

    fn key(&self, key: &str) {
        let out = self.tmux(&["send-keys", "-t", "cli", key]);
        assert!(out.status.success(), "send-keys {key} failed");
    }

    /// Waits for the input prompt, and checks that no dialog stands before it.
    fn wait_for_input_prompt(&self) {
        let screen =
            self.wait_for_screen_where("the input prompt", |s| at_input_prompt(self.cli, s));
        for dialog in UNASKED_DIALOGS {
            assert!(
                !screen.contains(dialog),
                "{}: an unasked dialog ({dialog:?}) is on the first screen:\n{screen}",
                self.cli.command_name()
            );
        }
    }

    /// `hello there` reaches the fake, and its answer shows.
    fn says_hello(&self) {
        self.type_line("hello there");
        self.model.wait_for_prompt("hello there");
        self.wait_for_screen("the model's answer", HELLO_REPLY);
    }

    /// `RUNCMD please` shows the permission dialog for the probe command.
    fn asks_to_run_the_probe(&self) {
        self.type_line("RUNCMD please");
        self.model.wait_for_prompt("RUNCMD please");
        let screen = self.wait_for_screen("the permission dialog", permission_dialog(self.cli));
        assert!(
            screen.contains("touch agentgate-probe.txt"),
            "the dialog does not name the command:\n{screen}"
        );
        assert!(
            !self.workspace().join(PROBE_FILE).exists(),
            "the probe ran before anyone approved it"
        );
    }

    fn probe(&self) -> PathBuf {
        self.workspace().join(PROBE_FILE)
    }
}

impl CliSession {
    /// Ends the session as a user closing the terminal would (the tmux server goes, the CLI
    /// gets SIGHUP) and checks that nothing the CLI started lives on: a daemon it leaves behind
    /// would outlive every agent the gateway stops.
    fn end_leaving_no_process(self) {
        let _ = self.tmux(&["kill-server"]);
        let dir = self.dir.path().to_owned();
        let start = Instant::now();
        let mut left = processes_under(&dir);
        while !left.is_empty() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(200));
            left = processes_under(&dir);
        }
        assert!(
            left.is_empty(),
            "{}: processes outlived the session: {left:#?}",
            self.cli.command_name()
        );
    }
}

/// The processes (other than this test) whose command line names `dir` or whose working
/// directory is in it.
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let needle = dir.display().to_string();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            (cmdline.contains(&needle) || cwd.starts_with(dir)).then_some((pid, cmdline))
        })
        .collect()
}

impl Drop for CliSession {
    fn drop(&mut self) {
        // Shown with --nocapture, and on failure: what the CLI asked and what it showed last.
        eprintln!(
            "{}: the fake model API saw:\n{}\nthe last screen:\n{}",
            self.cli.command_name(),
            self.model.summary(),
            self.screen()
        );
        if let Ok(dump) = std::env::var("AGENT_CLIS_DUMP") {
            let bodies: Vec<_> = self.model.requests().into_iter().map(|r| r.body).collect();
            let _ = std::fs::write(
                dump,
                serde_json::to_string_pretty(&bodies).unwrap_or_default(),
            );
        }
        let _ = self.tmux(&["kill-server"]);
        // Whatever the CLI left behind (a failed test, a CLI that forks a daemon) is this
        // test's to stop: by pid, after a moment to exit on its own.
        let start = Instant::now();
        while !processes_under(self.dir.path()).is_empty()
            && start.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        for (pid, _) in processes_under(self.dir.path()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Start, hello, RUNCMD, approve with `yes_key`: the probe appears and the model hears back.
fn approved_probe_runs(cli: AgentCli, yes_key: &str) {
    let session = CliSession::start(cli);
    session.wait_for_input_prompt();
    session.says_hello();
    session.asks_to_run_the_probe();
    session.answer(yes_key);
    e2e::wait_for(&format!("{PROBE_FILE} in the workspace"), || {
        session.probe().exists().then_some(())
    });
    // aider runs the command itself and tells the model nothing unless asked to.
    if cli != AgentCli::Aider {
        let result = session.model.wait_for_tool_result();
        assert_eq!(
            result.answer, PROBE_DONE,
            "the fake's answer to the tool result"
        );
        session.wait_for_screen("the model's answer to the tool's result", PROBE_DONE);
    }
    session.end_leaving_no_process();
}

/// Start, RUNCMD, deny with `no_key`: the dialog goes, a next prompt is answered, and the probe
/// never appears (the next answer bounds the wait: a command the CLI ran would be done by then).
fn denied_probe_does_not_run(cli: AgentCli, no_key: &str) {
    let session = CliSession::start(cli);
    session.wait_for_input_prompt();
    session.asks_to_run_the_probe();
    session.answer(no_key);
    session.wait_for_screen_where("the dialog to close", |screen| {
        // aider's question stays in its scrolling output; its prompt comes back under it.
        if cli == AgentCli::Aider {
            at_input_prompt(cli, screen)
        } else {
            !screen.contains(permission_dialog(cli))
        }
    });
    // The CLI may need a moment after the dialog before it takes a prompt again.
    session.wait_for_screen_where("the input prompt after the denial", |s| {
        at_input_prompt(cli, s)
    });
    session.type_line("hello there");
    session.model.wait_for_prompt("hello there");
    session.wait_for_screen("the answer after the denial", HELLO_REPLY);
    assert!(
        !session.probe().exists(),
        "{}: the probe ran although the dialog was denied",
        cli.command_name()
    );
    assert!(
        !session
            .model
            .requests()
            .iter()
            .any(|r| r.answer == PROBE_DONE),
        "{}: a tool result reached the model although the dialog was denied:\n{}",
        cli.command_name(),
        session.model.summary()
    );
}

#[test]
fn claude_code_answers_and_runs_the_probe_when_approved() {
    approved_probe_runs(AgentCli::Claude, "Enter");
}

#[test]
fn claude_code_does_not_run_the_probe_when_denied() {
    denied_probe_does_not_run(AgentCli::Claude, "Escape");
}

#[test]
fn codex_answers_and_runs_the_probe_when_approved() {
    approved_probe_runs(AgentCli::Codex, "y");
}

#[test]
fn codex_does_not_run_the_probe_when_denied() {
    denied_probe_does_not_run(AgentCli::Codex, "Escape");
}

#[test]
fn gemini_cli_answers_and_runs_the_probe_when_approved() {
    approved_probe_runs(AgentCli::Gemini, "Enter");
}

#[test]
fn gemini_cli_does_not_run_the_probe_when_denied() {
    denied_probe_does_not_run(AgentCli::Gemini, "Escape");
}

#[test]
fn aider_answers_and_runs_the_probe_when_approved() {
    approved_probe_runs(AgentCli::Aider, "y");
}

#[test]
fn aider_does_not_run_the_probe_when_denied() {
    denied_probe_does_not_run(AgentCli::Aider, "n");
}

/// Through the gateway: `create --dir WORKSPACE` with the launch's `create_args` starts the CLI
/// at its prompt (the trust and configuration seeded for that workspace hold as an agent), and
/// a prompt typed into its pane reaches the fake. What the tests of agentgate's own commands
/// (send, approve, wait) build on.
#[test]
fn claude_code_starts_at_its_prompt_as_a_gateway_agent() {
    let gw = e2e::TestGateway::start();
    let model = FakeModel::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    let launch = agent_clis::prepare(
        AgentCli::Claude,
        &agent_clis::config_root(&gw, "claude-1"),
        &workspace,
        &model.base_url(),
    );
    let workspace = workspace
        .canonicalize()
        .expect("workspace")
        .display()
        .to_string();
    let mut args = vec![
        "create".to_owned(),
        "claude-1".to_owned(),
        "--dir".to_owned(),
        workspace,
        "--template".to_owned(),
        agent_clis::TEMPLATE.to_owned(),
    ];
    args.extend(launch.create_args().iter().map(|a| e2e::shell_quote(a)));
    gw.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let start = Instant::now();
    while !at_input_prompt(AgentCli::Claude, &gw.pane("claude-1")) {
        assert!(
            start.elapsed() < SCREEN_PATIENCE,
            "claude did not reach its prompt as an agent:\n{}",
            gw.pane("claude-1")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    gw.tmux(&["send-keys", "-t", "=claude-1:", "-l", "hello there"]);
    e2e::wait_for("the typed text in the agent's pane", || {
        gw.pane("claude-1").contains("hello there").then_some(())
    });
    std::thread::sleep(ENTER_AFTER_TYPING);
    gw.tmux(&["send-keys", "-t", "=claude-1:", "Enter"]);
    model.wait_for_prompt("hello there");
    e2e::wait_for("the model's answer in the agent's pane", || {
        gw.pane("claude-1").contains(HELLO_REPLY).then_some(())
    });
    gw.ok(&["destroy", "claude-1", "--force"]);
}

/// A slow reply keeps the CLI busy for the delay the test sets (the prompt reached the model
/// and no answer is on the screen yet), then its text shows.
fn slow_reply_shows_when_it_comes(cli: AgentCli) {
    let session = CliSession::start(cli);
    session.model.set_slow_delay(Duration::from_secs(3));
    session.wait_for_input_prompt();
    session.type_line("SLOWREPLY please");
    session.model.wait_for_prompt("SLOWREPLY please");
    assert!(
        !session.screen().contains(SLOW_REPLY),
        "the slow reply showed before the fake sent it"
    );
    session.wait_for_screen("the slow reply", SLOW_REPLY);
}

#[test]
fn claude_code_shows_a_slow_reply_when_it_comes() {
    slow_reply_shows_when_it_comes(AgentCli::Claude);
}

#[test]
fn codex_shows_a_slow_reply_when_it_comes() {
    slow_reply_shows_when_it_comes(AgentCli::Codex);
}

#[test]
fn gemini_cli_shows_a_slow_reply_when_it_comes() {
    slow_reply_shows_when_it_comes(AgentCli::Gemini);
}

#[test]
fn aider_shows_a_slow_reply_when_it_comes() {
    slow_reply_shows_when_it_comes(AgentCli::Aider);
}

/// Each CLI's own quit command ends it with exit status 0, and nothing it started lives on.
fn quits_with_status_zero(cli: AgentCli, command: &str) {
    let session = CliSession::start(cli);
    session.wait_for_input_prompt();
    session.type_line(command);
    session.wait_for_screen("the CLI's exit status", "[exited rc=0]");
    session.end_leaving_no_process();
}

#[test]
fn claude_code_quits_with_exit() {
    quits_with_status_zero(AgentCli::Claude, "/exit");
}

#[test]
fn codex_quits_with_quit() {
    quits_with_status_zero(AgentCli::Codex, "/quit");
}

#[test]
fn gemini_cli_quits_with_quit() {
    quits_with_status_zero(AgentCli::Gemini, "/quit");
}

#[test]
fn aider_quits_with_exit() {
    quits_with_status_zero(AgentCli::Aider, "/exit");
}

/// The versions the cache holds are the pinned ones.
#[test]
fn the_cached_clis_are_the_pinned_versions() {
    for cli in AgentCli::ALL {
        let program = agent_clis::executable(cli);
        let out = Command::new(&program)
            .arg("--version")
            .env("PATH", path_with_node(&program))
            .output()
            .unwrap_or_else(|e| panic!("run {} --version: {e}", program.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(cli.version()),
            "{} --version says {text:?} (stderr {:?}), not {}",
            program.display(),
            String::from_utf8_lossy(&out.stderr),
            cli.version()
        );
    }
}

fn path_with_node(program: &Path) -> String {
    let mut dirs = vec![program.parent().map(Path::to_owned).unwrap_or_default()];
    dirs.extend(agent_clis::node_bin_dir().ok());
    dirs.extend(["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from));
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}
