//! The end-to-end harness: runs the built `agentgate` and `hostctl` binaries with the real
//! OpenSSH client and real tmux, each test in its own temporary directory, with its own tmux
//! server socket, its own operator key and a `known_hosts` that pins the gateway's host key.
//!
//! The binaries must be built first (`cargo build --workspace`; `scripts/test.sh` does it).
//! Waits here are bounded polls that fail the test when they run out; no test asserts on time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod agent_clis;
pub mod bench;
pub mod fake_model;
pub mod netns;
pub mod tailscale_emu;
pub mod webhook;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// How long a poll waits before it fails the test.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The directory holding the built binaries (`target/debug`), found from this test binary's
/// own path (`target/debug/deps/...`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned();
    for bin in ["agentgate", "hostctl"] {
        assert!(
            dir.join(bin).is_file(),
            "{} is missing: build the binaries first (cargo build --workspace)",
            dir.join(bin).display()
        );
    }
    dir
}

/// A name unique to this test process and call, for tmux sockets and agents.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or fails the test with `what`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Generates an Ed25519 key pair with ssh-keygen; returns the private key's path.
pub fn keygen(dir: &Path, name: &str, comment: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(&path)
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed");
    path
}

/// Options for a test gateway.
#[derive(Clone, Debug)]
pub struct Options {
    /// Register the operator key by putting it in the gateway user's `~/.ssh` (the first-start
    /// bootstrap). When false, the test registers keys itself with `agentgate key add`.
    pub bootstrap_key: bool,
    /// Extra TOML appended to the test configuration.
    pub extra_config: String,
    /// Listen on every address (0.0.0.0), so that namespace hosts can connect too; else on
    /// 127.0.0.1 only.
    pub listen_all: bool,
    /// Extra environment for the gateway (and so for the local host's hostctl).
    pub env: Vec<(String, String)>,
    /// Keep the test's directory where no other user may write to any of its parents (under
    /// `$HOME/.cache/agentgate-e2e`), not in /tmp: Gemini CLI refuses a settings file below a
    /// directory others may write to.
    pub private_dir: bool,
    /// `hosts.reconcile_interval` (the harness's default is short, so that tests settle fast).
    pub reconcile_interval: &'static str,
    /// The `[hosts]` line that sets the gateway's default sandbox. The harness's default is
    /// empty: the gateway's own default (bwrap wherever the host has it), so every topic runs
    /// its agents as operators get them; a topic that needs another says so.
    pub sandbox_default: &'static str,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            bootstrap_key: true,
            extra_config: String::new(),
            listen_all: false,
            env: Vec::new(),
            private_dir: false,
            reconcile_interval: "500ms",
            sandbox_default: "",
        }
    }
}

/// One gateway under test, with everything it needs in a temporary directory.
pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    pub data_dir: PathBuf,
    pub agents_home: PathBuf,
    pub tmux_socket: String,
    pub config_path: PathBuf,
    pub key: PathBuf,
    pub port: u16,
    bins: PathBuf,
    listen_ip: &'static str,
    child: Option<Child>,
    log_path: PathBuf,
    starts: u32,
    env: Vec<(String, String)>,
}

impl TestGateway {
    pub fn start() -> TestGateway {
        TestGateway::start_with(Options::default())
    }

    /// Prepares the directory and the operator key, without starting the gateway.
    pub fn prepare(options: Options) -> TestGateway {
        let bins = bin_dir();
        let mut builder = tempfile::Builder::new();
        builder.prefix("agentgate-e2e-");
        let dir = if options.private_dir {
            let root = std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|h| h.is_absolute())
                .expect("HOME, for a private test directory")
                .join(".cache")
                .join("agentgate-e2e");
            std::fs::create_dir_all(&root).expect("create the private test root");
            builder.tempdir_in(root)
        } else {
            builder.tempdir()
        }
        .expect("tempdir");
        let home = dir.path().join("home");
        let ssh_dir = home.join(".ssh");
        std::fs::create_dir_all(&ssh_dir).expect("mkdir home/.ssh");
        let key = keygen(dir.path(), "operator_key", "tester@e2e");
        if options.bootstrap_key {
            std::fs::copy(key.with_extension("pub"), ssh_dir.join("id_ed25519.pub"))
                .expect("copy pub");
        }
        let config_path = dir.path().join("agentgate.toml");
        let config = format!(
            "[server]\nshutdown_grace = \"3s\"\n\n[hosts]\nreconcile_interval = \"{}\"\n{}\n\
             [tailscale]\nsocket = \"{}\"\n\n\
             [templates.needs-token]\ncommand = \"sleep 600\"\nrequired_env = [\"AGENTGATE_E2E_TOKEN\"]\n\n\
             [templates.{}]\nsandbox_home_files = [\"~/{}\"]\nsandbox_read_only = [{:?}]\n\n{}\n",
            options.reconcile_interval,
            options.sandbox_default,
            dir.path().join("tailscaled.sock").display(),
            agent_clis::TEMPLATE,
            agent_clis::HOME_DIR,
            // The CLIs are installed in the checkout's target directory, which a sandbox hides
            // when the checkout is under /tmp (its /tmp is private).
            agent_clis::cache_dir().display().to_string(),
            options.extra_config
        );
        std::fs::write(&config_path, config).expect("write config");
        TestGateway {
            home,
            data_dir: dir.path().join("data"),
            agents_home: dir.path().join("agents"),
            tmux_socket: unique("agtest"),
            config_path,
            key,
            port: 0,
            bins,
            listen_ip: if options.listen_all {
                "0.0.0.0"
            } else {
                "127.0.0.1"
            },
            child: None,
            log_path: dir.path().join("gateway.log"),
            starts: 0,
            env: options.env,
            dir,
        }
    }

    pub fn start_with(options: Options) -> TestGateway {
        let mut gw = TestGateway::prepare(options);
        gw.spawn();
        gw
    }

    /// Where the gateway looks for tailscaled's LocalAPI (nothing is there unless a test
    /// starts the emulator: `e2e::tailscale_emu`).
    pub fn tailscale_socket(&self) -> PathBuf {
        self.dir.path().join("tailscaled.sock")
    }

    pub fn agentgate(&self) -> Command {
        let mut cmd = Command::new(self.bins.join("agentgate"));
        cmd.env("HOME", &self.home)
            .env("AGENTGATE_HOME", &self.agents_home)
            .env("AGENTGATE_TMUX_SOCKET", &self.tmux_socket)
            .env("TMUX_TMPDIR", self.dir.path())
            .env("USER", "tester")
            .env_remove("XDG_DATA_HOME")
            // No locale, as under systemd or in many sshd sessions (and in CI).
            .env_remove("LANG")
            .env_remove("LC_ALL")
            .env_remove("LC_CTYPE")
            .env("RUST_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// `agentgate key add --data-dir DIR [args] < pubkey`.
    pub fn key_add(&self, public_key_line: &str, args: &[&str]) -> Output {
        let mut cmd = self.agentgate();
        cmd.args(["key", "add", "--data-dir"])
            .arg(&self.data_dir)
            .args(args);
        run_with_stdin(cmd, public_key_line.as_bytes())
    }

    /// Starts the gateway (on the same port as before when restarting) and waits until it
    /// listens; then pins its host key for the ssh client.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "the gateway is already running");
        self.starts += 1;
        let log =
            std::fs::File::create(self.log_path.with_extension(format!("{}.log", self.starts)))
                .expect("create log");
        let listen = format!("{}:{}", self.listen_ip, self.port);
        let child = self
            .agentgate()
            .args(["serve", "--listen", &listen, "--data-dir"])
            .arg(&self.data_dir)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start agentgate");
        self.child = Some(child);
        let log_path = self.current_log();
        let port = wait_for("the gateway to listen", || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "agentgate exited with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            let log = std::fs::read_to_string(&log_path).ok()?;
            let marker = format!("address={}:", self.listen_ip);
            let at = log.find(&marker)?;
            let rest = &log[at + marker.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u16>()
                .ok()
        });
        self.port = port;
        self.write_ssh_config();
    }

    fn current_log(&self) -> PathBuf {
        self.log_path.with_extension(format!("{}.log", self.starts))
    }

    /// Everything the gateway logged in its current run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.current_log()).unwrap_or_default()
    }

    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    fn write_ssh_config(&self) {
        let host_key =
            std::fs::read_to_string(self.data_dir.join("host_key.pub")).expect("host key .pub");
        let known_hosts = self.dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{} {}\n", self.port, host_key.trim()),
        )
        .expect("known_hosts");
        let config = format!(
            "Host gw\n  HostName 127.0.0.1\n  Port {port}\n  User tester\n  IdentityFile {key}\n  IdentitiesOnly yes\n  \
             BatchMode yes\n  StrictHostKeyChecking yes\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
             LogLevel ERROR\n  ConnectTimeout 10\n  ServerAliveInterval 0\n",
            port = self.port,
            key = self.key.display(),
            kh = known_hosts.display(),
        );
        std::fs::write(self.ssh_config_path(), &config).expect("ssh config");
        let without_key: String = config
            .lines()
            .filter(|l| !l.contains("IdentityFile"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(self.dir.path().join("ssh_config_other_key"), without_key)
            .expect("ssh config");
    }

    /// `ssh` with the same settings but another key instead of the operator's.
    pub fn ssh_with_key(&self, key: &Path) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(self.dir.path().join("ssh_config_other_key"))
            .arg("-i")
            .arg(key)
            .stdin(Stdio::null());
        cmd
    }

    /// `ssh -F <config> ARGS...` with no stdin.
    pub fn ssh_command(&self) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-F")
            .arg(self.ssh_config_path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `ssh ARGS...` (target included in ARGS) with no stdin and returns its output.
    pub fn ssh_run(&self, args: &[&str]) -> Output {
        self.ssh_command().args(args).output().expect("run ssh")
    }

    /// Runs `ssh gw ARGS...` (the control route) and returns its output.
    pub fn ssh(&self, args: &[&str]) -> Output {
        self.ssh_command()
            .arg("gw")
            .args(args)
            .output()
            .expect("run ssh")
    }

    /// Runs `ssh gw ARGS...` with `input` on stdin.
    pub fn ssh_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        self.ssh_with_stdin_to("gw", args, input)
    }

    /// Runs `ssh TARGET ARGS...` with `input` on stdin (then EOF).
    pub fn ssh_with_stdin_to(&self, target: &str, args: &[&str], input: &[u8]) -> Output {
        let mut cmd = self.ssh_command();
        cmd.arg(target).args(args);
        run_with_stdin(cmd, input)
    }

    /// Runs a control command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ssh(args);
        assert!(
            out.status.success(),
            "ssh gw {args:?} failed with {}:\nstdout: {}\nstderr: {}\ngateway log:\n{}",
            out.status,
            stdout(&out),
            stderr(&out),
            self.log()
        );
        stdout(&out)
    }

    /// `list --json` as a JSON array.
    pub fn list(&self) -> Vec<Value> {
        let v: Value =
            serde_json::from_str(&self.ok(&["list", "--json"])).expect("list --json is JSON");
        v.as_array().expect("an array").clone()
    }

    /// `info NAME --json`.
    pub fn info(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["info", name, "--json"])).expect("info --json is JSON")
    }

    /// The agent's lifecycle state: running, exited, stopped, unknown or creating.
    /// Agent `name`'s workspace, as `info --json` gives it.
    pub fn workspace(&self, name: &str) -> PathBuf {
        PathBuf::from(self.info(name)["workspace"].as_str().expect("workspace"))
    }

    pub fn status(&self, name: &str) -> String {
        self.info(name)["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The status an operator sees: working, waiting or idle for a running agent whose
    /// activity is known, else its lifecycle state.
    pub fn shown_status(&self, name: &str) -> String {
        self.info(name)["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Runs tmux on the agents' tmux server.
    pub fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env("TMUX_TMPDIR", self.dir.path())
            .args(["-L", &self.tmux_socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// Creates an agent running [`PASTE_RECEIVER`] and waits until it is ready; returns the
    /// file in its workspace that keeps every byte it reads.
    pub fn create_paste_receiver(&self, name: &str) -> PathBuf {
        self.ok(&[
            "create",
            name,
            "--",
            "sh",
            "-c",
            &shell_quote(PASTE_RECEIVER),
        ]);
        wait_for("the paste receiver to be ready", || {
            self.pane(name).contains("ready").then_some(())
        });
        let workspace = self.info(name)["workspace"]
            .as_str()
            .expect("workspace")
            .to_owned();
        Path::new(&workspace).join("got")
    }

    /// The agent's pane as text.
    pub fn pane(&self, agent: &str) -> String {
        stdout(&self.tmux(&["capture-pane", "-p", "-J", "-t", &format!("={agent}:")]))
    }

    /// The agent's pane size as (cols, rows).
    pub fn pane_size(&self, agent: &str) -> (u16, u16) {
        let out = stdout(&self.tmux(&[
            "display-message",
            "-p",
            "-t",
            &format!("={agent}:"),
            "#{pane_width} #{pane_height}",
        ]));
        let mut it = out
            .split_whitespace()
            .map(|v| v.parse::<u16>().expect("a number"));
        (it.next().expect("width"), it.next().expect("height"))
    }

    /// Kills the gateway with SIGKILL (no chance to clean up).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the gateway to exit.
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway is running");
        signal(child.id(), libc::SIGTERM);
        wait_for("the gateway to exit after SIGTERM", || {
            child.try_wait().ok().flatten()
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sets (or, with `None`, removes) a variable of the gateway's environment from its next
    /// start on.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_owned(), value.to_owned()));
        }
    }

    /// Waits for the gateway to end by itself (a fault injected into it), and returns how.
    pub fn wait_exited(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway is running");
        wait_for("the gateway to end", || child.try_wait().ok().flatten())
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.kill9();
        let _ = Command::new("tmux")
            .env("TMUX_TMPDIR", self.dir.path())
            .args(["-L", &self.tmux_socket, "kill-server"])
            .output();
    }
}

/// Runs `cmd` with `input` on its stdin (then EOF) and collects its output. The input is
/// written from a thread: a command that does not read its stdin must not block the test.
pub fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// Sends a signal with kill(1): the harness stays free of unsafe code.
pub fn signal(pid: u32, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed");
}

/// An interactive `ssh -tt` session, running in a terminal of its own (a tmux session on a
/// separate tmux server), so a test can type into it and read its screen like a person.
pub struct Viewer {
    socket: String,
    /// Where its tmux socket lives (the test's directory, like the agents' tmux server).
    tmpdir: PathBuf,
    exit_file: PathBuf,
}

impl Viewer {
    /// Opens `ssh -tt <target> ARGS...` in a terminal of `cols` x `rows`.
    pub fn open(gw: &TestGateway, target: &str, args: &[&str], cols: u16, rows: u16) -> Viewer {
        Viewer::open_as(gw, None, target, args, cols, rows)
    }

    /// [`Viewer::open`], logging in with `key` (another operator's) if given.
    pub fn open_as(
        gw: &TestGateway,
        key: Option<&Path>,
        target: &str,
        args: &[&str],
        cols: u16,
        rows: u16,
    ) -> Viewer {
        Viewer::open_inner(gw, key, None, target, args, cols, rows)
    }

    /// [`Viewer::open`] with `ssh -A`, forwarding the SSH agent at `agent`.
    pub fn open_forwarding(
        gw: &TestGateway,
        agent: &Path,
        target: &str,
        cols: u16,
        rows: u16,
    ) -> Viewer {
        Viewer::open_inner(gw, None, Some(agent), target, &["-A"], cols, rows)
    }

    fn open_inner(
        gw: &TestGateway,
        key: Option<&Path>,
        agent: Option<&Path>,
        target: &str,
        args: &[&str],
        cols: u16,
        rows: u16,
    ) -> Viewer {
        let socket = unique("agview");
        let exit_file = gw.dir.path().join(format!("{socket}.exit"));
        let login = match key {
            Some(key) => format!(
                "-F {} -i {}",
                shell_quote(&gw.dir.path().join("ssh_config_other_key").to_string_lossy()),
                shell_quote(&key.to_string_lossy())
            ),
            None => format!(
                "-F {}",
                shell_quote(&gw.ssh_config_path().to_string_lossy())
            ),
        };
        // OpenSSH forwards only an agent its environment names, whatever ForwardAgent says.
        let agent = agent.map_or(String::new(), |a| {
            format!("SSH_AUTH_SOCK={} ", shell_quote(&a.to_string_lossy()))
        });
        let mut ssh = format!("{agent}ssh {login} -tt {}", shell_quote(target));
        for a in args {
            ssh.push(' ');
            ssh.push_str(&shell_quote(a));
        }
        let script = format!(
            "{ssh}; echo $? > {}; sleep 600",
            shell_quote(&exit_file.to_string_lossy())
        );
        let out = Command::new("tmux")
            .env("TMUX_TMPDIR", gw.dir.path())
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                &cols.to_string(),
                "-y",
                &rows.to_string(),
            ])
            .args(["sh", "-c", &script])
            .env_remove("TMUX")
            .output()
            .expect("run tmux for the viewer");
        assert!(out.status.success(), "viewer tmux failed: {}", stderr(&out));
        Viewer {
            socket,
            tmpdir: gw.dir.path().to_owned(),
            exit_file,
        }
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env("TMUX_TMPDIR", &self.tmpdir)
            .args(["-L", &self.socket])
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux")
    }

    /// What the viewer's terminal shows now.
    pub fn screen(&self) -> String {
        stdout(&self.tmux(&["capture-pane", "-p"]))
    }

    /// The screen with its colours and attributes, as SGR escape sequences (capture-pane -e).
    pub fn styled_screen(&self) -> String {
        stdout(&self.tmux(&["capture-pane", "-p", "-e"]))
    }

    /// Waits until the screen contains `text`; returns the screen.
    pub fn wait_for_text(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let last = self.screen();
            if last.contains(text) {
                return last;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {text:?} on the viewer's screen:\n{last}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the agent's shell for its working directory and waits for the answer: proves the
    /// shell is up, reads what is typed, and runs in the agent's workspace (whatever its prompt).
    pub fn wait_for_shell_in(&self, gw: &TestGateway, agent: &str) {
        self.wait_for_shell_in_dir(&gw.agents_home.join("workspaces").join(agent));
    }

    /// The same, for a workspace anywhere (an agent on a remote host).
    pub fn wait_for_shell_in_dir(&self, workspace: &Path) {
        self.type_text("echo \"cwd=$PWD\"");
        self.keys(&["Enter"]);
        self.wait_for_text(&format!("cwd={}\n", workspace.display()));
    }

    /// Types literal text.
    pub fn type_text(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-l", "--", text]);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }

    /// Pastes `text` as a terminal does: between the paste marks when the program asked for
    /// bracketed paste, each LF sent as a CR (tmux `paste-buffer -p`).
    pub fn paste(&self, text: &str) {
        let out = self.tmux(&["set-buffer", "-b", "test-paste", "--", text]);
        assert!(out.status.success(), "set-buffer: {}", stderr(&out));
        let out = self.tmux(&["paste-buffer", "-p", "-d", "-b", "test-paste"]);
        assert!(out.status.success(), "paste-buffer: {}", stderr(&out));
    }

    /// Presses keys by tmux name (`Enter`, `C-b`, ...).
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }

    /// Resizes the viewer's terminal (the ssh client sends a window-change).
    pub fn resize(&self, cols: u16, rows: u16) {
        let out = self.tmux(&[
            "resize-window",
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
        ]);
        assert!(out.status.success(), "resize-window: {}", stderr(&out));
    }

    /// Detaches from the agent's tmux (prefix, then d).
    pub fn detach(&self) {
        self.keys(&["C-b"]);
        self.keys(&["d"]);
    }

    /// Waits for the ssh client to exit; returns its exit status.
    pub fn wait_exit(&self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(code) = self.exited() {
                return code;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for the ssh client to exit; its screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The exit status, if the ssh client has exited.
    pub fn exited(&self) -> Option<i32> {
        std::fs::read_to_string(&self.exit_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The command of an agent that asks its terminal for bracketed paste (as Claude Code, Codex,
/// Gemini CLI, Aider and bash's readline do), then keeps every byte it reads from its raw
/// terminal in `got` in its workspace. It prints `ready` once its terminal is raw and tmux has
/// seen the request (tmux reads the pane's output in order).
pub const PASTE_RECEIVER: &str = "stty raw -echo; printf '\\033[?2004hready\\r\\n'; exec cat > got";

/// Waits until the file at `path` holds at least as many bytes as `expected`, then asserts
/// that it holds exactly those (shown escaped when it does not).
pub fn assert_file_gets(path: &Path, expected: &[u8]) {
    let start = Instant::now();
    loop {
        let got = std::fs::read(path).unwrap_or_default();
        if got.len() >= expected.len() || start.elapsed() > PATIENCE {
            // A moment more, for bytes beyond those expected.
            std::thread::sleep(Duration::from_millis(300));
            let got = std::fs::read(path).unwrap_or_default();
            assert_eq!(
                got.escape_ascii().to_string(),
                expected.escape_ascii().to_string(),
                "what {} got",
                path.display()
            );
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Single-quotes a word for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Fails naming the Debian package when `program` is not on PATH (`.ci/run` installs what
/// the tests need; a test never skips silently).
pub fn need(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is not installed: apt-get install {package} (.ci/run installs it)"
    );
}
