//! An agent turned hostile, inside its sandbox: from agent X, every way at agent Y of the same
//! host (its workspace, its secrets through /proc, its processes, typing into it through
//! tmux), at the host user's `~/.ssh`, at hostctl's files and, on `local`, at the gateway's
//! database and client key, and pushing characters into its own terminal (TIOCSTI). With
//! `--sandbox bwrap` every attempt fails; the same attempts from an agent created with
//! `--sandbox none` succeed, so the test can tell. Also what must keep working inside: the
//! workspace and the private home are writable, git works, a file put with scp is where the
//! agent looks, and `stop` ends a daemon the agent started; the private home goes with the
//! agent when it migrates, is cloned and is snapshotted and restored.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::netns::NetnsHost;
use e2e::{Options, TestGateway, shell_quote, stderr, stdout, wait_for};

/// A gateway whose default sandbox is its own (bwrap where the host has it).
fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        sandbox_default: "",
        extra_config: "[templates.open]\ncommand = \"sleep 600\"\nsandbox = \"none\"\n\
                       [templates.boxed]\ncommand = \"sleep 600\"\nsandbox = \"bwrap\"\n"
            .into(),
        ..Options::default()
    })
}

/// The victim's secret, in its environment.
const SECRET: &str = "s3cr3t-of-victim-4711";

/// What the host user's authorized_keys holds before the attacks.
const AUTHORIZED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostUsersOwnKey host@user\n";

/// The victim: agent `victim`, unsandboxed or not (it does not matter for what it suffers),
/// running a process with a name of its own, a file in its workspace and a secret in its
/// environment. Returns its workspace.
fn victim(gw: &TestGateway, marker: &str, on_host: &[&str]) -> PathBuf {
    let token = format!("VICTIM_TOKEN={SECRET}");
    let script = shell_quote(&format!("echo victim-data > data.txt; exec sleep {marker}"));
    let mut create = vec!["create", "victim", "--env", &token];
    create.extend(on_host);
    create.extend(["--", "sh", "-c", &script]);
    gw.ok(&create);
    let workspace = PathBuf::from(gw.info("victim")["workspace"].as_str().expect("workspace"));
    wait_for("the victim's file", || {
        workspace.join("data.txt").is_file().then_some(())
    });
    workspace
}

/// Where the victim's host keeps what an agent there must not reach.
struct Target {
    /// hostctl's home on that host (`AGENTGATE_HOME`).
    agents_home: PathBuf,
    /// The agents' tmux server's socket.
    tmux_socket: PathBuf,
    /// The file that lets keys in as the host user.
    authorized_keys: PathBuf,
    /// The gateway's data directory, when the host is the gateway's own machine.
    gateway_data: Option<PathBuf>,
}

impl Target {
    fn local(gw: &TestGateway) -> Target {
        Target {
            agents_home: gw.agents_home.clone(),
            tmux_socket: gw
                .dir
                .path()
                .join(format!("tmux-{}", nix_uid()))
                .join(&gw.tmux_socket),
            authorized_keys: gw.home.join(".ssh/authorized_keys"),
            gateway_data: Some(gw.data_dir.clone()),
        }
    }

    fn remote(host: &NetnsHost) -> Target {
        Target {
            agents_home: host.agents_home.clone(),
            tmux_socket: host
                .tmux_tmpdir
                .join(format!("tmux-{}", nix_uid()))
                .join(&host.tmux_socket),
            authorized_keys: host.dir.join("authorized_keys"),
            gateway_data: None,
        }
    }
}

/// The attacks, one shell line each: `NAME: yes` when it worked, `NAME: no` when not.
fn attacks(target: &Target, victim_ws: &Path, marker: &str) -> Vec<(&'static str, String)> {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let victim_dir = target.agents_home.join("agents").join("victim");
    let mut attacks = vec![
        (
            "read-workspace",
            format!("grep -q victim-data {}", q(&victim_ws.join("data.txt"))),
        ),
        (
            "write-workspace",
            // Into the real one: a file made in a look-alike directory of the sandbox's own
            // (the parents of the attacker's mounts) is no write to the victim's.
            format!(
                "echo attacker > {} && grep -q victim-data {}",
                q(&victim_ws.join("from-attacker")),
                q(&victim_ws.join("data.txt"))
            ),
        ),
        (
            "read-secret-via-proc",
            format!("cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -q {SECRET}"),
        ),
        (
            "list-processes",
            format!("ps ax -o args= | grep -q '^sleep {marker}$'"),
        ),
        (
            "signal-processes",
            format!("pid=$(pgrep -x -f 'sleep {marker}') && kill -0 $pid"),
        ),
        (
            "tmux-send-keys",
            format!(
                "tmux -S {} send-keys -t =victim: ''",
                q(&target.tmux_socket)
            ),
        ),
        (
            "read-authorized-keys",
            format!("grep -q HostUsersOwnKey {}", q(&target.authorized_keys)),
        ),
        (
            "append-authorized-keys",
            format!(
                "echo 'ssh-ed25519 AAAAevil attacker' >> {f} && grep -q HostUsersOwnKey {f}",
                f = q(&target.authorized_keys)
            ),
        ),
        (
            "read-agent-files",
            format!("grep -q {SECRET} {}", q(&victim_dir.join("meta.json"))),
        ),
    ];
    if let Some(data) = &target.gateway_data {
        attacks.push((
            "read-gateway-database",
            format!(
                "head -c 15 {} | grep -q 'SQLite format'",
                q(&data.join("agentgate.db"))
            ),
        ));
        attacks.push((
            "read-gateway-client-key",
            format!("grep -q 'PRIVATE KEY' {}", q(&data.join("client_key"))),
        ));
    }
    attacks
}

fn nix_uid() -> u32 {
    // The test runs as the user the gateway and its agents run as.
    let out = Command::new("id").arg("-u").output().expect("id -u");
    stdout(&out).trim().parse().expect("a uid")
}

/// Runs every attack inside agent `attacker` (a command through `ssh attacker@gw`, which runs
/// in the agent's sandbox); returns each attack's outcome.
fn attack(
    gw: &TestGateway,
    attacker: &str,
    attacks: &[(&'static str, String)],
) -> Vec<(String, bool)> {
    let script: String = attacks
        .iter()
        .map(|(name, line)| {
            format!("if ( {line} ) >/dev/null 2>&1; then echo '{name}: yes'; else echo '{name}: no'; fi\n")
        })
        .collect();
    let out = gw.ssh_run(&[&format!("{attacker}@gw"), &script]);
    assert!(out.status.success(), "the attack script: {}", stderr(&out));
    let text = stdout(&out);
    let outcomes: Vec<(String, bool)> = text
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(name, said)| (name.to_owned(), said == "yes"))
        .collect();
    assert_eq!(
        outcomes.len(),
        attacks.len(),
        "every attack reports: {text}"
    );
    outcomes
}

/// Whether TIOCSTI works for an unprivileged caller on this kernel at all (Linux 6.2 and later
/// can turn it off for everyone: `dev.tty.legacy_tiocsti=0`).
fn legacy_tiocsti() -> bool {
    std::fs::read_to_string("/proc/sys/dev/tty/legacy_tiocsti").map_or(true, |v| v.trim() == "1")
}

/// Pushes a character into the terminal of a session inside `agent` (`ssh -tt`); whether the
/// ioctl worked.
fn tiocsti(gw: &TestGateway, agent: &str) -> bool {
    let script = "python3 -c 'import fcntl, termios\ntry:\n    fcntl.ioctl(0, termios.TIOCSTI, b\"#\")\n    print(\"tiocsti: yes\")\nexcept OSError as e:\n    print(\"tiocsti: no\", e)'";
    let out = gw
        .ssh_command()
        .args(["-tt", &format!("{agent}@gw"), script])
        .output()
        .expect("ssh -tt");
    let text = stdout(&out);
    assert!(
        text.contains("tiocsti: "),
        "the TIOCSTI try: {text} {}",
        stderr(&out)
    );
    text.contains("tiocsti: yes")
}

/// Agent `victim`, then agent `attacker` in `sandbox`, on `host` (`local` when none), and
/// every attack from the attacker; what each came to.
fn hostile_agent_test(
    gw: &TestGateway,
    host: Option<&NetnsHost>,
    sandbox: &str,
) -> (Target, PathBuf, Vec<(String, bool)>) {
    let target = host.map_or_else(|| Target::local(gw), Target::remote);
    let keys = std::fs::read_to_string(&target.authorized_keys).unwrap_or_default();
    std::fs::write(&target.authorized_keys, format!("{keys}{AUTHORIZED}"))
        .expect("authorized_keys");
    let marker = format!("{}", 7000 + std::process::id() % 1000);
    let on_host: Vec<&str> = host.map_or_else(Vec::new, |h| vec!["--host", h.name.as_str()]);
    let victim_ws = victim(gw, &marker, &on_host);
    let mut create = vec!["create", "attacker", "--sandbox", sandbox];
    create.extend(&on_host);
    create.extend(["--", "sleep", "600"]);
    gw.ok(&create);
    let outcomes = attack(gw, "attacker", &attacks(&target, &victim_ws, &marker));
    (target, victim_ws, outcomes)
}

/// What the attacks from a sandboxed agent came to: nothing.
fn assert_all_failed(
    gw: &TestGateway,
    target: &Target,
    victim_ws: &Path,
    outcomes: &[(String, bool)],
) {
    let got: Vec<&String> = outcomes
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(n, _)| n)
        .collect();
    assert!(
        got.is_empty(),
        "attacks that worked from inside the sandbox: {got:?}"
    );
    // And nothing they tried to change changed.
    assert!(!victim_ws.join("from-attacker").exists());
    assert!(
        !std::fs::read_to_string(&target.authorized_keys)
            .expect("authorized_keys")
            .contains("attacker")
    );
    assert_eq!(gw.status("victim"), "running");
    assert!(
        !tiocsti(gw, "attacker"),
        "TIOCSTI worked inside the sandbox"
    );
    // It says so.
    assert_eq!(gw.info("attacker")["sandbox"], "bwrap");
}

/// What the same attacks came to without a sandbox: each worked.
fn assert_all_worked(
    gw: &TestGateway,
    target: &Target,
    victim_ws: &Path,
    outcomes: &[(String, bool)],
) {
    let failed: Vec<&String> = outcomes
        .iter()
        .filter(|(_, ok)| !*ok)
        .map(|(n, _)| n)
        .collect();
    assert!(
        failed.is_empty(),
        "attacks that failed without a sandbox: {failed:?}"
    );
    assert!(victim_ws.join("from-attacker").exists());
    assert!(
        std::fs::read_to_string(&target.authorized_keys)
            .expect("authorized_keys")
            .contains("attacker")
    );
    if legacy_tiocsti() {
        assert!(tiocsti(gw, "attacker"), "TIOCSTI failed without a sandbox");
    }
    assert_eq!(gw.info("attacker")["sandbox"], "none");
}

#[test]
fn a_sandboxed_agent_reaches_neither_other_agents_nor_the_host_users_keys_nor_the_gateway() {
    let gw = gateway();
    let (target, victim_ws, outcomes) = hostile_agent_test(&gw, None, "bwrap");
    assert_all_failed(&gw, &target, &victim_ws, &outcomes);
    let list = gw.ok(&["list"]);
    assert!(list.contains("SANDBOX"), "{list}");
    // Without a flag: the template's choice, else the sandbox (this host has bwrap); the
    // flag wins.
    gw.ok(&["create", "defaulted", "--", "sleep", "600"]);
    gw.ok(&["create", "templated", "--template", "boxed"]);
    gw.ok(&[
        "create",
        "flagged",
        "--template",
        "open",
        "--sandbox",
        "bwrap",
    ]);
    let sandbox_of = |name: &str| {
        gw.info(name)["sandbox"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(sandbox_of("defaulted"), "bwrap");
    assert_eq!(sandbox_of("templated"), "bwrap");
    assert_eq!(sandbox_of("flagged"), "bwrap");
}

#[test]
fn without_a_sandbox_the_same_attacks_all_work() {
    let gw = gateway();
    let (target, victim_ws, outcomes) = hostile_agent_test(&gw, None, "none");
    assert_all_worked(&gw, &target, &victim_ws, &outcomes);
    let created = gw.ok(&["create", "plain", "--sandbox", "none", "--", "sleep", "600"]);
    assert!(created.contains("no sandbox"), "{created}");
}

/// The same on a remote host (a network namespace running a real sshd: needs root).
#[test]
fn on_a_remote_host_too_a_sandboxed_agent_reaches_neither_another_agent_nor_the_host_users_keys() {
    let gw = gateway();
    let h1 = e2e::netns::add_host(&gw, "h1");
    let (target, victim_ws, outcomes) = hostile_agent_test(&gw, Some(&h1), "bwrap");
    assert_all_failed(&gw, &target, &victim_ws, &outcomes);
    gw.ok(&["destroy", "attacker", "--force"]);
    gw.ok(&["destroy", "victim", "--force"]);
    let (target, victim_ws, outcomes) = hostile_agent_test(&gw, Some(&h1), "none");
    assert_all_worked(&gw, &target, &victim_ws, &outcomes);
}

#[test]
fn inside_the_sandbox_the_workspace_home_git_scp_and_stop_work() {
    let gw = gateway();
    let marker = format!("{}", 8000 + std::process::id() % 1000);
    // The agent waits for a file to arrive in its workspace and shows it; meanwhile a daemon
    // it started leaves its session (setsid) and ignores SIGHUP and SIGTERM.
    let daemon = format!("trap '' HUP TERM; while :; do sleep {marker}; done");
    let command = format!(
        "setsid sh -c {} </dev/null >/dev/null 2>&1 & \
         while [ ! -f incoming.txt ]; do sleep 0.1; done; echo \"agent sees: $(cat incoming.txt)\"; \
         echo home-file > ~/from-agent; sleep 600",
        shell_quote(&daemon)
    );
    let created = gw.ok(&[
        "create",
        "worker",
        "--sandbox",
        "bwrap",
        "--",
        "sh",
        "-c",
        &shell_quote(&command),
    ]);
    assert!(created.contains("sandbox bwrap"), "{created}");
    let workspace = PathBuf::from(gw.info("worker")["workspace"].as_str().expect("workspace"));
    let home = gw.agents_home.join("agents/worker/home");

    // scp puts the file where the agent looks.
    let local = gw.dir.path().join("incoming.txt");
    std::fs::write(&local, "hello from scp\n").expect("write");
    let out = Command::new("scp")
        .arg("-F")
        .arg(gw.ssh_config_path())
        .arg(&local)
        .arg("worker@gw:incoming.txt")
        .output()
        .expect("scp");
    assert!(out.status.success(), "scp: {}", stderr(&out));
    wait_for("the agent to see the file", || {
        gw.pane("worker")
            .contains("agent sees: hello from scp")
            .then_some(())
    });
    // Its private home is writable, kept in its agent directory, and is `~` for sessions too.
    wait_for("the agent's file in its home", || {
        home.join("from-agent").is_file().then_some(())
    });
    let out = gw.ssh_run(&[
        "worker@gw",
        "cat ~/from-agent && echo session > ~/from-session && echo ws > in-workspace && \
         git init -q repo && cd repo && echo a > a && git add a && \
         git -c user.email=a@b -c user.name=a commit -qm first && git log --oneline | wc -l",
    ]);
    assert!(out.status.success(), "inside the sandbox: {}", stderr(&out));
    assert_eq!(stdout(&out), "home-file\n1\n");
    assert!(home.join("from-session").is_file());
    assert!(workspace.join("in-workspace").is_file());
    assert!(workspace.join("repo/.git").is_dir());
    // The real home is not touched.
    assert!(!gw.home.join("from-session").exists());

    // The daemon runs; stop ends it with the agent.
    let daemon_runs = || {
        Command::new("pgrep")
            .args(["-x", "-f", &format!("sleep {marker}")])
            .output()
            .expect("pgrep")
            .status
            .success()
    };
    assert!(daemon_runs(), "the agent's daemon is not running");
    gw.ok(&["stop", "worker"]);
    wait_for("the daemon to end with its agent", || {
        (!daemon_runs()).then_some(())
    });
    // The home stays across a start.
    gw.ok(&["start", "worker"]);
    let out = gw.ssh_run(&["worker@gw", "cat ~/from-session"]);
    assert_eq!(stdout(&out), "session\n", "{}", stderr(&out));
    gw.ok(&["destroy", "worker", "--force"]);
}

#[test]
fn a_host_without_bubblewrap_refuses_the_sandbox_by_name_and_defaults_to_none() {
    let gw = TestGateway::start_with(Options {
        sandbox_default: "",
        env: vec![("AGENTGATE_BWRAP".into(), "/nonexistent/bwrap".into())],
        ..Options::default()
    });
    let out = gw.ssh(&[
        "create",
        "boxed",
        "--sandbox",
        "bwrap",
        "--",
        "sleep",
        "600",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("apt-get install bubblewrap"), "{err}");
    assert!(err.contains("--sandbox none"), "{err}");
    assert!(gw.list().is_empty(), "a refused agent was kept");
    let created = gw.ok(&["create", "open", "--", "sleep", "600"]);
    assert!(created.contains("no sandbox"), "{created}");
    assert_eq!(gw.info("open")["sandbox"], "none");
    let out = gw.ssh(&["create", "bad", "--sandbox", "docker"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// What `~/.cli/blob` holds inside agent `agent`'s sandbox, read through a session (which runs
/// there), and where `~/link` points.
fn home_blob(gw: &TestGateway, agent: &str) -> (Vec<u8>, String) {
    let out = gw.ssh_run(&[&format!("{agent}@gw"), "cat ~/.cli/blob"]);
    assert!(out.status.success(), "{agent}: {}", stderr(&out));
    let link = gw.ssh_run(&[&format!("{agent}@gw"), "readlink ~/link"]);
    assert!(link.status.success(), "{agent}: {}", stderr(&link));
    (out.stdout, stdout(&link))
}

/// The private home a sandboxed agent writes is carried byte for byte by migrate (to a
/// namespace host), clone and snapshot + restore; an agent without a sandbox gets none.
#[test]
fn the_private_home_goes_with_migrate_clone_and_snapshot_byte_for_byte() {
    let gw = gateway();
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&[
        "create",
        "carrier",
        "--sandbox",
        "bwrap",
        "--",
        "sleep",
        "600",
    ]);
    let out = gw.ssh_run(&[
        "carrier@gw",
        "mkdir -p ~/.cli && head -c 65536 /dev/urandom > ~/.cli/blob && chmod 600 ~/.cli/blob \
         && ln -s .cli/blob ~/link && echo in-workspace > w.txt",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let written = gw.agents_home.join("agents/carrier/home/.cli/blob");
    let blob = std::fs::read(&written).expect("the agent's file in its home");
    assert_eq!(blob.len(), 65536);
    let expected = (blob.clone(), ".cli/blob\n".to_owned());
    assert_eq!(home_blob(&gw, "carrier"), expected);

    // migrate to a namespace host: the home is there, the old one gone with the agent.
    let out = gw.ok(&["migrate", "carrier", "h1"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(gw.info("carrier")["host"], "h1");
    assert_eq!(home_blob(&gw, "carrier"), expected);
    let there = h1.agents_home.join("agents/carrier/home/.cli/blob");
    assert_eq!(std::fs::read(&there).expect("carried home"), blob);
    assert!(!gw.agents_home.join("agents/carrier").exists());
    // It is the agent's home, not a directory of its workspace.
    let workspace = PathBuf::from(gw.info("carrier")["workspace"].as_str().expect("ws"));
    assert!(!workspace.join(".agentgate-home").exists());
    assert!(workspace.join("w.txt").is_file());

    // clone (on h1): the copy has the same home, a home of its own.
    let out = gw.ok(&["clone", "carrier", "twin"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(home_blob(&gw, "twin"), expected);
    let out = gw.ssh_run(&["twin@gw", "echo twin > ~/.cli/blob"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(home_blob(&gw, "carrier"), expected);

    // snapshot, then the home changes, then a restore (on local) has it as it was.
    gw.ok(&["stop", "carrier"]);
    let snap: serde_json::Value =
        serde_json::from_str(&gw.ok(&["snapshot", "carrier", "--json"])).expect("json");
    let id = snap["id"].as_str().expect("id").to_owned();
    gw.ok(&["start", "carrier"]);
    let out = gw.ssh_run(&["carrier@gw", "rm ~/.cli/blob ~/link"]);
    assert!(out.status.success(), "{}", stderr(&out));
    gw.ok(&[
        "create",
        "restored",
        "--from-snapshot",
        &id,
        "--host",
        "local",
    ]);
    assert_eq!(home_blob(&gw, "restored"), expected);
    let restored = gw.agents_home.join("agents/restored/home/.cli/blob");
    assert_eq!(std::fs::read(&restored).expect("restored home"), blob);
    assert!(
        !gw.agents_home
            .join("workspaces/restored/.agentgate-home")
            .exists()
    );

    // An agent without a sandbox has no home, and migrates as before.
    gw.ok(&[
        "create",
        "open-one",
        "--sandbox",
        "none",
        "--",
        "sleep",
        "600",
    ]);
    gw.ok(&["migrate", "open-one", "h1"]);
    assert!(h1.agents_home.join("agents/open-one").is_dir());
    assert!(!h1.agents_home.join("agents/open-one/home").exists());
}

/// Whether a process with exactly these arguments runs on this machine (a namespace host's
/// processes are this machine's too).
fn runs(args: &str) -> bool {
    Command::new("pgrep")
        .args(["-x", "-f", args])
        .output()
        .expect("pgrep")
        .status
        .success()
}

/// A session's command killed by a signal, through `ssh -v`: its exit code and whether the
/// client was told of the signal (`exit-signal`) rather than of an exit status.
fn killed_by_term(gw: &TestGateway, agent: &str) -> (Option<i32>, bool) {
    let out = gw.ssh_run(&["-v", &format!("{agent}@gw"), "kill -TERM $$"]);
    (out.status.code(), stderr(&out).contains("exit-signal"))
}

/// Sessions join the running agent's sandbox, on `host` (`local` when none): they see its
/// processes, a daemon one leaves running outlives it and ends with the agent's `stop`, and a
/// command killed by a signal is reported as without a sandbox. A stopped agent's session
/// gets a sandbox of its own with the same view, its daemons ending with it.
fn sessions_join_the_agents_sandbox(gw: &TestGateway, host: Option<&NetnsHost>) {
    let on_host: Vec<&str> = host.map_or_else(Vec::new, |h| vec!["--host", h.name.as_str()]);
    let base = 9000 + std::process::id() % 500;
    let (agent_marker, daemon_marker, stopped_marker) = (base, base + 500, base + 1000);
    let make = |name: &str, sandbox: &str| {
        let mut create = vec!["create", name, "--sandbox", sandbox];
        create.extend(&on_host);
        let line = format!("exec sleep {agent_marker}");
        create.extend(["--", "sh", "-c"]);
        let quoted = shell_quote(&line);
        create.push(&quoted);
        gw.ok(&create);
    };
    make("joined", "bwrap");
    make("plain", "none");
    wait_for("the agent's process", || {
        runs(&format!("sleep {agent_marker}")).then_some(())
    });

    // The agent's own process is one of the session's.
    let out = gw.ssh_run(&["joined@gw", "ps ax -o args="]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l == format!("sleep {agent_marker}")),
        "the session does not see the agent's process: {}",
        stdout(&out)
    );

    // A daemon left by a session lives on after it, in the agent's sandbox.
    let daemon = format!("sleep {daemon_marker}");
    let out = gw.ssh_run(&[
        "joined@gw",
        &format!("setsid nohup {daemon} </dev/null >/dev/null 2>&1 & echo started"),
    ]);
    assert_eq!(stdout(&out), "started\n", "{}", stderr(&out));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(runs(&daemon), "the session's daemon ended with the session");
    let out = gw.ssh_run(&["joined@gw", &format!("pgrep -x -f '{daemon}'")]);
    assert!(
        out.status.success(),
        "another session does not see the daemon: {}",
        stderr(&out)
    );

    // Killed by a signal: reported as without a sandbox.
    let unsandboxed = killed_by_term(gw, "plain");
    assert_eq!(unsandboxed, (Some(255), true));
    assert_eq!(killed_by_term(gw, "joined"), unsandboxed);
    let out = gw.ssh_run(&["joined@gw", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // stop ends the daemon with the agent.
    gw.ok(&["stop", "joined"]);
    wait_for("the session's daemon to end with its agent", || {
        (!runs(&daemon)).then_some(())
    });

    // A stopped agent's session: the same view, the same reports; what it leaves ends with it.
    let out = gw.ssh_run(&[
        "joined@gw",
        &format!("echo home > ~/stopped; sleep {stopped_marker} & cat ~/stopped; ps ax -o args= | grep -c '^sleep {agent_marker}$'"),
    ]);
    assert_eq!(stdout(&out), "home\n0\n", "{}", stderr(&out));
    assert_eq!(killed_by_term(gw, "joined"), unsandboxed);
    wait_for("a stopped agent's session's process to end with it", || {
        (!runs(&format!("sleep {stopped_marker}"))).then_some(())
    });
    gw.ok(&["start", "joined"]);
    let out = gw.ssh_run(&["joined@gw", "cat ~/stopped"]);
    assert_eq!(stdout(&out), "home\n", "{}", stderr(&out));
    gw.ok(&["destroy", "joined", "--force"]);
    gw.ok(&["destroy", "plain", "--force"]);
}

#[test]
fn sessions_join_the_agents_sandbox_on_local() {
    let gw = gateway();
    sessions_join_the_agents_sandbox(&gw, None);
}

/// The same on a remote host (a network namespace running a real sshd: needs root).
#[test]
fn sessions_join_the_agents_sandbox_on_a_remote_host() {
    let gw = gateway();
    let h1 = e2e::netns::add_host(&gw, "h1");
    sessions_join_the_agents_sandbox(&gw, Some(&h1));
}

/// A template's files of the host user's home are copied into its agents' private homes, and
/// its extra paths are shown inside: read-only ones cannot be written, read-write ones can,
/// and the host sees what was written there.
#[test]
fn a_templates_home_files_and_extra_paths_reach_its_agents_sandbox() {
    // Not under /tmp, which the sandbox replaces with its own.
    let shared = tempfile::tempdir_in("/var/tmp").expect("tempdir in /var/tmp");
    let (ro, rw) = (shared.path().join("ro"), shared.path().join("rw"));
    std::fs::create_dir_all(&ro).expect("ro");
    std::fs::create_dir_all(&rw).expect("rw");
    std::fs::write(ro.join("pkg.txt"), "cached package\n").expect("write");
    let gw = TestGateway::start_with(Options {
        sandbox_default: "",
        extra_config: format!(
            "[templates.seeded]\ncommand = \"sleep 600\"\n\
             sandbox_home_files = [\"~/.gitconfig\", \"~/.config/tool\", \"~/.not-on-this-host\"]\n\
             sandbox_read_only = [{}]\nsandbox_read_write = [{}]\n",
            serde_json::json!(ro.display().to_string()),
            serde_json::json!(rw.display().to_string())
        ),
        ..Options::default()
    });
    std::fs::write(gw.home.join(".gitconfig"), "[user]\n\tname = host user\n").expect("write");
    std::fs::create_dir_all(gw.home.join(".config/tool")).expect("mkdir");
    std::fs::write(gw.home.join(".config/tool/settings.json"), "{}\n").expect("write");
    gw.ok(&["create", "seeded-1", "--template", "seeded"]);
    assert_eq!(gw.info("seeded-1")["sandbox"], "bwrap");
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let script = format!(
        "cat ~/.gitconfig ~/.config/tool/settings.json {pkg}; \
         if touch {ro_new} 2>/dev/null; then echo ro-written; else echo ro-refused; fi; \
         echo from-agent > {rw_new} && echo rw-written; \
         [ -e ~/.not-on-this-host ] || echo not-copied; \
         echo changed >> ~/.gitconfig",
        pkg = q(&ro.join("pkg.txt")),
        ro_new = q(&ro.join("new")),
        rw_new = q(&rw.join("out.txt")),
    );
    let out = gw.ssh_run(&["seeded-1@gw", &script]);
    assert_eq!(
        stdout(&out),
        "[user]\n\tname = host user\n{}\ncached package\nro-refused\nrw-written\nnot-copied\n",
        "{}",
        stderr(&out)
    );
    assert!(!ro.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(rw.join("out.txt")).expect("written inside"),
        "from-agent\n"
    );
    // A copy: the host user's own file is as it was.
    assert_eq!(
        std::fs::read_to_string(gw.home.join(".gitconfig")).expect("gitconfig"),
        "[user]\n\tname = host user\n"
    );
    gw.ok(&["destroy", "seeded-1", "--force"]);
}

/// Whether a session inside `agent` can open a TCP connection to `address`:`port`.
fn reaches(gw: &TestGateway, agent: &str, address: &str, port: u16) -> bool {
    let script = format!(
        "python3 -c 'import socket; socket.create_connection((\"{address}\", {port}), 3); print(\"reached\")'"
    );
    let out = gw.ssh_run(&[&format!("{agent}@gw"), &script]);
    stdout(&out).contains("reached")
}

/// What a server on `agent`'s own loopback port `port` answers to a GET of `/hello.txt`,
/// through `ssh -W localhost:PORT agent@gw` (a forward to the agent, as `-L` opens).
fn fetched_through_forward(gw: &TestGateway, agent: &str, port: u16) -> String {
    use std::io::Write;
    let mut ssh = gw
        .ssh_command()
        .args(["-W", &format!("localhost:{port}"), &format!("{agent}@gw")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("ssh -W");
    // The request, and the input left open: the server's answer ends the connection.
    let mut stdin = ssh.stdin.take().expect("stdin");
    stdin
        .write_all(b"GET /hello.txt HTTP/1.0\r\n\r\n")
        .expect("the request");
    let out = ssh.wait_with_output().expect("ssh -W");
    drop(stdin);
    stdout(&out)
}

/// `--network none`: a connection out of the sandbox fails where the same from an agent with
/// the host's network succeeds, while a forward to the agent's own port still reaches it.
fn without_a_network(gw: &TestGateway, host: Option<&NetnsHost>) {
    // Something outside every agent's sandbox that listens: reachable from the host.
    let outside = std::net::TcpListener::bind("0.0.0.0:0").expect("listen");
    let outside_port = outside.local_addr().expect("addr").port();
    let outside_address = host.map_or("127.0.0.1", |h| h.root_address.as_str());
    let on_host: Vec<&str> = host.map_or_else(Vec::new, |h| vec!["--host", h.name.as_str()]);
    let port = 20000 + u16::try_from(std::process::id() % 20000).expect("a port");
    // Each serves its own name, on a port of its own: what answers is known.
    for (name, network, port) in [("cut-off", "none", port), ("connected", "shared", port + 1)] {
        let server = format!(
            "echo served-by-$AGENTGATE_AGENT > hello.txt; exec python3 -m http.server {port} --bind 127.0.0.1"
        );
        let mut create = vec!["create", name, "--network", network];
        create.extend(&on_host);
        let quoted = shell_quote(&server);
        create.extend(["--", "sh", "-c", &quoted]);
        gw.ok(&create);
    }
    assert!(
        reaches(gw, "connected", outside_address, outside_port),
        "an agent with the host's network cannot reach {outside_address}:{outside_port}"
    );
    assert!(
        !reaches(gw, "cut-off", outside_address, outside_port),
        "an agent without a network reached {outside_address}:{outside_port}"
    );
    // Its own server, through a forward: reached from inside its network (from the host's,
    // nothing listens on that port).
    let got = wait_for("the agent's server through a forward", || {
        let got = fetched_through_forward(gw, "cut-off", port);
        got.contains("served-by-cut-off").then_some(got)
    });
    assert!(got.starts_with("HTTP/1.0 200"), "{got}");
    gw.ok(&["destroy", "cut-off", "--force"]);
    gw.ok(&["destroy", "connected", "--force"]);
    // It needs the sandbox.
    let out = gw.ssh(&[
        "create",
        "open",
        "--sandbox",
        "none",
        "--network",
        "none",
        "--",
        "sleep",
        "600",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--network none needs the sandbox"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_a_network_nothing_outside_is_reached_but_a_forward_to_the_agent_is_on_local() {
    let gw = gateway();
    without_a_network(&gw, None);
}

/// The same on a remote host (a network namespace running a real sshd: needs root).
#[test]
fn without_a_network_nothing_outside_is_reached_but_a_forward_to_the_agent_is_on_a_remote_host() {
    let gw = gateway();
    let h1 = e2e::netns::add_host(&gw, "h1");
    without_a_network(&gw, Some(&h1));
}

/// A window the operator opens in an attached sandboxed agent (tmux's `new-window`) runs
/// inside the agent's sandbox: what it writes to `/tmp` lands in the agent's private `/tmp`.
#[test]
fn a_new_window_in_an_attached_sandboxed_agent_is_inside_its_sandbox() {
    let gw = gateway();
    gw.ok(&["create", "windowed", "--", "sleep", "600"]);
    assert_eq!(gw.info("windowed")["sandbox"], "bwrap");
    gw.tmux(&["new-window", "-t", "=windowed:"]);
    let private_tmp = gw.agents_home.join("agents/windowed/tmp");
    wait_for("the new window's shell to write its mark", || {
        gw.tmux(&[
            "send-keys",
            "-t",
            "=windowed:1",
            "echo in-the-sandbox > /tmp/window-mark",
            "Enter",
        ]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        private_tmp.join("window-mark").is_file().then_some(())
    });
    assert!(!Path::new("/tmp/window-mark").exists());
    gw.ok(&["destroy", "windowed", "--force"]);
}
