//! Roles and ownership: an operator sees and touches only their own agents and those shared
//! with them; for anyone else another operator's agent does not exist, on every route
//! (control, attach, exec, SFTP, scp, forwarding), with the same answer as a missing agent.
//! Admins see everything and manage keys and hosts, over ssh; a removed key, or an agent
//! unshared, ends the open connections it allowed at once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::{Options, TestGateway, Viewer, keygen, stderr, stdout};
use serde_json::Value;

/// A gateway whose operators may have agents on its own machine, where these tests run them
/// (the default, admins only, has its own test below).
fn gateway() -> TestGateway {
    let mut gw = TestGateway::prepare(Options::default());
    set_operators_on_local(&gw, true);
    gw.spawn();
    gw
}

/// Sets `hosts.operators_on_local` in the gateway's configuration file (read at its start).
fn set_operators_on_local(gw: &TestGateway, allowed: bool) {
    let config = std::fs::read_to_string(&gw.config_path).expect("config");
    let config = config.replace("operators_on_local = true\n", "").replace(
        "[hosts]\n",
        &format!("[hosts]\noperators_on_local = {allowed}\n"),
    );
    std::fs::write(&gw.config_path, config).expect("config");
}

/// Another operator: a key of their own, registered by the admin over ssh.
struct Other {
    key: PathBuf,
    config: PathBuf,
}

impl Other {
    fn add(gw: &TestGateway, name: &str, role: &str) -> Other {
        let key = keygen(
            gw.dir.path(),
            &format!("{name}_key"),
            &format!("{name}@laptop"),
        );
        let public = std::fs::read(key.with_extension("pub")).expect("pub");
        let out = gw.ssh_with_stdin(&["key", "add", "--role", role], &public);
        assert!(out.status.success(), "key add: {}", stderr(&out));
        assert!(
            stdout(&out).contains(&format!("for operator '{name}' ({role})")),
            "{}",
            stdout(&out)
        );
        Other {
            key,
            config: gw.dir.path().join("ssh_config_other_key"),
        }
    }

    /// A client tool (`ssh`, `scp`, `sftp`) logging in with this operator's key.
    fn tool(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-F")
            .arg(&self.config)
            .arg("-i")
            .arg(&self.key)
            .stdin(Stdio::null());
        cmd
    }

    fn ssh(&self, target: &str, args: &[&str]) -> Output {
        self.tool("ssh")
            .arg(target)
            .args(args)
            .output()
            .expect("ssh")
    }

    fn gw(&self, args: &[&str]) -> Output {
        self.ssh("gw", args)
    }

    /// `ssh gw logs AGENT -f` under way, once its first line (holding `first`) has come.
    fn following(&self, agent: &str, first: &str) -> std::process::Child {
        let mut child = self
            .tool("ssh")
            .args(["gw", "logs", agent, "-f"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh logs -f");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
            &mut line,
        )
        .expect("read");
        assert!(line.contains(first), "{line}");
        child
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.gw(args);
        assert!(
            out.status.success(),
            "ssh gw {args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    }
}

/// How a client that should be ending ended; killed after a minute, so that a connection
/// that is never ended fails the test instead of holding it up.
fn ended(child: std::process::Child) -> Output {
    let pid = child.id().to_string();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watched = done.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if !watched.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let out = child.wait_with_output().expect("wait");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    out
}

/// What a client saw, with the agent's name replaced so two answers can be compared.
fn answer(out: &Output, name: &str) -> (Option<i32>, String, String) {
    (
        out.status.code(),
        stdout(out).replace(name, "NAME"),
        stderr(out).replace(name, "NAME"),
    )
}

/// Runs `run` for a hidden agent and for a missing one: the answers must be the same.
fn same_as_missing(what: &str, hidden: &str, run: impl Fn(&str) -> Output) {
    let seen = run(hidden);
    let missing = run("no-such-agent");
    assert!(!seen.status.success(), "{what}: {hidden} was served");
    assert_eq!(
        answer(&seen, hidden),
        answer(&missing, "no-such-agent"),
        "{what}: a hidden agent is not answered like a missing one"
    );
}

fn names(out: &str) -> Vec<&str> {
    out.lines().collect()
}

#[test]
fn an_operator_cannot_see_or_touch_another_operators_agent_on_any_route() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    gw.ok(&["create", "alpha", "--", "sleep", "600"]);
    let workspace = PathBuf::from(gw.info("alpha")["workspace"].as_str().expect("ws"));
    std::fs::write(workspace.join("secret.txt"), "alpha's file\n").expect("write");
    bob.ok(&["create", "bobs", "--", "sleep", "600"]);

    // Control commands: bob sees only his own agent; alpha is missing to him.
    assert_eq!(names(&bob.ok(&["list", "-q"])), ["bobs"]);
    assert_eq!(names(&gw.ok(&["list", "-q"])), ["alpha", "bobs"]);
    for command in [
        "info", "stop", "start", "restart", "logs", "attach", "destroy", "wait",
    ] {
        same_as_missing(command, "alpha", |name| bob.gw(&[command, name]));
    }
    same_as_missing("send", "alpha", |name| bob.gw(&["send", name, "hello"]));
    same_as_missing("clone", "alpha", |name| {
        bob.gw(&["clone", name, "stolen-copy"])
    });
    same_as_missing("migrate", "alpha", |name| {
        bob.gw(&["migrate", name, "local"])
    });
    same_as_missing("share", "alpha", |name| bob.gw(&["share", name, "bob"]));
    let json: Value = serde_json::from_str(&bob.ok(&["ssh-config", "--json"])).expect("json");
    assert_eq!(json.as_array().map(Vec::len), Some(1), "{json}");

    // Inside an agent: exec, a shell, SFTP, scp and forwarding answer like a missing agent.
    same_as_missing("exec", "alpha", |name| {
        bob.ssh(&format!("{name}@gw"), &["cat", "secret.txt"])
    });
    same_as_missing("sftp", "alpha", |name| {
        let mut cmd = bob.tool("sftp");
        cmd.args(["-b", "-", &format!("{name}@gw")]);
        e2e::run_with_stdin(cmd, b"get secret.txt /dev/null\n")
    });
    let copied = gw.dir.path().join("copied.txt");
    same_as_missing("scp", "alpha", |name| {
        bob.tool("scp")
            .arg(format!("{name}@gw:secret.txt"))
            .arg(&copied)
            .output()
            .expect("scp")
    });
    assert!(!copied.exists());
    same_as_missing("forward", "alpha", |name| {
        bob.tool("ssh")
            .args(["-o", "ExitOnForwardFailure=yes", "-W", "127.0.0.1:9"])
            .arg(format!("{name}@gw"))
            .output()
            .expect("ssh -W")
    });

    // Nothing happened to alpha.
    assert_eq!(gw.status("alpha"), "running");
    assert_eq!(
        std::fs::read_to_string(workspace.join("secret.txt")).expect("read"),
        "alpha's file\n"
    );

    // The audit trail: bob sees his own events, none of the admin's about alpha.
    let events: Value =
        serde_json::from_str(&bob.ok(&["events", "--json", "-n", "500"])).expect("json");
    let events = events.as_array().expect("array");
    assert!(!events.is_empty());
    for e in events {
        assert!(
            e["operator"] == "bob" || e["agent"] == "bobs",
            "bob sees an event that is not his: {e}"
        );
    }
    let all: Value =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "500"])).expect("json");
    assert!(
        all.as_array()
            .expect("array")
            .iter()
            .any(|e| e["operator"] == "tester" && e["agent"] == "alpha"),
        "the admin sees everything"
    );

    // The admin sees and uses bob's agent.
    let out = gw.ssh_run(&["bobs@gw", "echo", "admin-was-here"]);
    assert_eq!(stdout(&out).trim(), "admin-was-here", "{}", stderr(&out));
}

#[test]
fn sharing_lets_an_operator_use_an_agent_but_not_destroy_it() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    gw.ok(&["create", "alpha", "--", "sleep", "600"]);

    gw.ok(&["share", "alpha", "bob"]);
    assert_eq!(names(&bob.ok(&["list", "-q"])), ["alpha"]);
    let info: Value = serde_json::from_str(&bob.ok(&["info", "alpha", "--json"])).expect("json");
    assert_eq!(info["shared_with"], serde_json::json!(["bob"]));
    let out = bob.ssh("alpha@gw", &["pwd"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), info["workspace"].as_str().expect("ws"));

    // Using is not owning: bob may not destroy it, nor share it further.
    let out = bob.gw(&["destroy", "alpha", "--force"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only the owner of agent 'alpha' (tester) or an admin"),
        "{}",
        stderr(&out)
    );
    let out = bob.gw(&["unshare", "alpha", "bob"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(gw.status("alpha"), "running");

    // Errors name what is wrong.
    let out = gw.ssh(&["share", "alpha", "nobody-here"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no operator named 'nobody-here'"));

    gw.ok(&["unshare", "alpha", "bob"]);
    assert_eq!(bob.ok(&["list", "-q"]), "");
    same_as_missing("info after unshare", "alpha", |name| {
        bob.gw(&["info", name])
    });
    let out = gw.ssh(&["unshare", "alpha", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not shared with 'bob'"));
}

#[test]
fn only_admins_manage_keys_and_hosts() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    let carol_key = keygen(gw.dir.path(), "carol", "carol@laptop");
    let carol_pub = std::fs::read(carol_key.with_extension("pub")).expect("pub");

    let refused = |out: Output, what: &str| {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", stdout(&out));
        assert!(
            stderr(&out).contains(&format!("only admins can {what}; you are 'bob'")),
            "{what}: {}",
            stderr(&out)
        );
    };
    let mut cmd = bob.tool("ssh");
    cmd.args(["gw", "key", "add"]);
    refused(e2e::run_with_stdin(cmd, &carol_pub), "add keys");
    refused(bob.gw(&["key", "remove", "tester"]), "remove keys");
    refused(bob.gw(&["host", "add", "box", "10.0.0.1"]), "add hosts");
    refused(bob.gw(&["host", "remove", "local"]), "remove hosts");
    refused(bob.gw(&["host", "check", "local"]), "check hosts");

    // An operator lists their own keys; an admin lists everyone's.
    let mine: Value = serde_json::from_str(&bob.ok(&["key", "list", "--json"])).expect("json");
    let mine = mine.as_array().expect("array");
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["operator"], "bob");
    let all: Value = serde_json::from_str(&gw.ok(&["key", "list", "--json"])).expect("json");
    assert_eq!(all.as_array().map(Vec::len), Some(2));

    // Everyone may see the operators and who they are.
    let operators = bob.ok(&["operator", "list"]);
    assert!(
        operators.contains("bob") && operators.contains("tester"),
        "{operators}"
    );
    assert!(bob.ok(&["whoami"]).contains("role:     operator"));

    // Bad keys and names get clear errors and change nothing.
    let out = gw.ssh_with_stdin(&["key", "add"], b"ssh-ed25519 not-base64 x@y\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("not an OpenSSH public key"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh_with_stdin(&["key", "add", "--name", "bad/name"], &carol_pub);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("invalid operator name"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh_with_stdin(&["key", "add", "--role", "root"], &carol_pub);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown role 'root'"),
        "{}",
        stderr(&out)
    );
    let bob_pub = std::fs::read(bob.key.with_extension("pub")).expect("pub");
    let out = gw.ssh_with_stdin(&["key", "add", "--name", "eve"], &bob_pub);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already registered to operator 'bob'"));
    assert_eq!(
        serde_json::from_str::<Value>(&gw.ok(&["key", "list", "--json"]))
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // The last admin cannot be locked out.
    let out = gw.ssh(&["key", "remove", "tester"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no admin able to log in"),
        "{}",
        stderr(&out)
    );
    assert!(gw.ok(&["whoami"]).contains("tester"));
}

/// A master connection for this operator: later `ssh -S` commands open new channels on it.
fn master(gw: &TestGateway, other: &Other, socket: &Path) {
    let status = other
        .tool("ssh")
        .args(["-M", "-S"])
        .arg(socket)
        .args(["-o", "ControlPersist=60", "-f", "-N", "gw"])
        .status()
        .expect("ssh -M");
    assert!(status.success());
    e2e::wait_for("the master connection", || socket.exists().then_some(()));
    let _ = gw;
}

fn over_master(other: &Other, socket: &Path, args: &[&str]) -> Output {
    other
        .tool("ssh")
        .arg("-S")
        .arg(socket)
        .arg("gw")
        .args(args)
        .output()
        .expect("ssh -S")
}

#[test]
fn a_removed_key_ends_its_open_connections_and_is_refused_on_new_ones() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    let socket = gw.dir.path().join("bob.mux");
    master(&gw, &bob, &socket);
    let out = over_master(&bob, &socket, &["whoami"]);
    assert!(stdout(&out).contains("operator: bob"), "{}", stderr(&out));
    // A command of bob's under way on another connection.
    bob.ok(&[
        "create",
        "bobs",
        "--",
        "sh",
        "-c",
        "'echo bob-was-here; sleep 600'",
    ]);
    let running = bob.following("bobs", "bob-was-here");
    // And the live view, on a terminal.
    let view = Viewer::open_as(&gw, Some(&bob.key), "gw", &[], 120, 24);
    view.wait_for_text("bobs");

    let removed = gw.ok(&["key", "remove", "bob"]);
    assert!(removed.contains("removed 1 key(s)"), "{removed}");

    // Both of bob's connections end at once, saying why...
    let out = ended(running);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("access revoked: your key or login was removed"),
        "{}",
        stderr(&out)
    );
    // The view put the terminal back (its own screen is gone) and said why.
    view.wait_exit();
    let screen = view.screen();
    assert!(
        screen.contains("agentgate: access revoked: your key or login was removed")
            && !screen.contains("agentgate ·"),
        "{screen}"
    );
    e2e::wait_for("bob's master connection to end", || {
        (!socket.exists()).then_some(())
    });
    let out = over_master(&bob, &socket, &["whoami"]);
    assert!(!stdout(&out).contains("operator: bob"), "{}", stdout(&out));
    // ...and a new connection is refused.
    let out = bob.gw(&["whoami"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );

    // The trail says which connections ended and why.
    let events: Value =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "500"])).expect("json");
    let ended = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "session" && e["operator"] == "bob" && e["result"] == "revoked")
        .count();
    assert_eq!(ended, 3, "{events}");
    let out = gw.ssh(&["key", "remove", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no key, tailnet login or operator 'bob'"));
}

#[test]
fn unsharing_an_agent_ends_the_sessions_it_allowed_and_no_others() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    gw.ok(&[
        "create",
        "pair",
        "--",
        "sh",
        "-c",
        "'echo in-pair; sleep 600'",
    ]);
    gw.ok(&[
        "create",
        "solo",
        "--",
        "sh",
        "-c",
        "'echo in-solo; sleep 600'",
    ]);
    gw.ok(&["share", "pair", "bob"]);
    gw.ok(&["share", "solo", "bob"]);
    // Bob in the shared agent on its own route, and attached to it from the control route;
    // and in another shared agent, which stays shared.
    let inside = Viewer::open_as(&gw, Some(&bob.key), "pair@gw", &[], 120, 24);
    let attached = Viewer::open_as(&gw, Some(&bob.key), "gw", &["attach", "pair"], 120, 24);
    let other = Viewer::open_as(&gw, Some(&bob.key), "solo@gw", &[], 120, 24);
    inside.wait_for_text("in-pair");
    attached.wait_for_text("in-pair");
    other.wait_for_text("in-solo");
    // Its output followed on another control connection.
    let following = bob.following("pair", "in-pair");
    // A control connection that is not attached to it.
    let socket = gw.dir.path().join("bob.mux");
    master(&gw, &bob, &socket);

    gw.ok(&["unshare", "pair", "bob"]);
    let out = ended(following);
    assert_eq!(out.status.code(), Some(255), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("access revoked: you may no longer use agent 'pair'"),
        "{}",
        stderr(&out)
    );
    for v in [&inside, &attached] {
        assert_eq!(v.wait_exit(), 255);
        assert!(
            v.screen()
                .contains("access revoked: you may no longer use agent 'pair'"),
            "{}",
            v.screen()
        );
    }
    assert_eq!(other.exited(), None, "{}", other.screen());
    let out = over_master(&bob, &socket, &["whoami"]);
    assert!(stdout(&out).contains("operator: bob"), "{}", stderr(&out));
    let _ = Command::new("ssh")
        .arg("-S")
        .arg(&socket)
        .args(["-O", "exit", "gw"])
        .output();
}

#[test]
fn by_default_only_admins_have_agents_on_the_gateways_own_machine() {
    let mut gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    bob.ok(&["create", "bobs", "--", "sleep", "600"]);
    gw.ok(&["create", "adm", "--", "sleep", "600"]);

    // The same gateway with the default: agents on `local` run as the gateway's own user, who
    // can read its database, so they are for admins only.
    set_operators_on_local(&gw, false);
    assert!(gw.sigterm().success());
    gw.spawn();
    let refused = |out: Output, says: &str| {
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("only admins may have agents"),
            "{}",
            stderr(&out)
        );
    };
    refused(
        bob.gw(&["create", "new", "--", "sleep", "600"]),
        "no host is reachable but 'local'",
    );
    refused(
        bob.gw(&["create", "new", "--host", "local", "--", "sleep", "600"]),
        "host 'local' is",
    );
    // Bob's own agent there: listed, but no command, session or file copy reaches it.
    assert_eq!(names(&bob.ok(&["list", "-q"])), ["bobs"]);
    refused(bob.gw(&["info", "bobs"]), "agent 'bobs' runs on 'local'");
    refused(
        bob.gw(&["send", "bobs", "id"]),
        "agent 'bobs' runs on 'local'",
    );
    refused(bob.ssh("bobs@gw", &["id"]), "agent 'bobs' runs on 'local'");
    let secret_file = gw.agents_home.join("workspaces/bobs/notes.txt");
    std::fs::write(&secret_file, "on the gateway's machine").expect("write");
    let copy = gw.dir.path().join("copy");
    let out = bob
        .tool("scp")
        .arg(format!("bobs@gw:{}", secret_file.display()))
        .arg(&copy)
        .output()
        .expect("scp");
    assert!(!out.status.success());
    assert!(!copy.exists(), "bob copied a file from 'local'");
    // An admin's agent there cannot be shared with an operator.
    refused(gw.ssh(&["share", "adm", "bob"]), "'bob' is an operator");
    // Admins still use both.
    let out = gw.ssh_with_stdin_to("bobs@gw", &["echo admin-here"], b"");
    assert_eq!(stdout(&out).trim(), "admin-here", "{}", stderr(&out));
    assert_eq!(gw.status("adm"), "running");
    assert_eq!(gw.status("bobs"), "running");
    // None of bob's tries made an agent.
    assert_eq!(names(&gw.ok(&["list", "-q"])), ["adm", "bobs"]);
}

#[test]
fn an_operators_agent_on_the_gateways_own_machine_runs_in_a_sandbox() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    let info = |name: &str| -> Value {
        serde_json::from_str(&gw.ok(&["info", name, "--json"])).expect("info --json")
    };
    // Without a sandbox it could read the gateway's database as the gateway's user: refused,
    // whether asked on the command line, and made with none.
    let out = bob.gw(&["create", "bare", "--sandbox", "none", "--", "sleep", "600"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("agent 'bare' would run on 'local' without a sandbox")
            && stderr(&out).contains("leave out --sandbox none"),
        "{}",
        stderr(&out)
    );
    assert!(names(&gw.ok(&["list", "-q"])).is_empty());
    // Asked for nothing: a sandbox.
    bob.ok(&["create", "boxed", "--", "sleep", "600"]);
    assert_eq!(info("boxed")["sandbox"], "bwrap", "{:#}", info("boxed"));
    // Nor can a copy of it leave the sandbox behind: an admin's unsandboxed agent cloned by
    // an operator it is shared with is made in one.
    gw.ok(&["create", "adm", "--sandbox", "none", "--", "sleep", "600"]);
    gw.ok(&["share", "adm", "bob"]);
    bob.ok(&["clone", "adm", "bobs-copy"]);
    assert_eq!(
        info("bobs-copy")["sandbox"],
        "bwrap",
        "{:#}",
        info("bobs-copy")
    );
    // An admin's own is as asked.
    assert_eq!(info("adm")["sandbox"], "none");
}

#[test]
fn acting_by_tag_reaches_only_ones_own_agents() {
    let gw = gateway();
    let bob = Other::add(&gw, "bob", "operator");
    gw.ok(&["create", "adm1", "--tag", "team=x", "--", "sleep", "600"]);
    bob.ok(&["create", "bob1", "--tag", "team=x", "--", "sleep", "600"]);
    // Shared with bob, but still the admin's: not bob's to act on by tag.
    gw.ok(&["share", "adm1", "bob"]);
    let sent = bob.ok(&["send", "--tag", "team=x", "hello"]);
    assert_eq!(
        sent,
        "sent 5 bytes to agent 'bob1' (its program is no CLI agentgate knows: no sign to wait for)\n"
    );
    // An admin's --all is the admin's own agents, not every operator's.
    let sent = gw.ok(&["send", "--all", "hi"]);
    assert_eq!(
        sent,
        "sent 2 bytes to agent 'adm1' (its program is no CLI agentgate knows: no sign to wait for)\n"
    );
    bob.ok(&["stop", "--tag", "team=x", "--yes"]);
    assert_eq!(gw.status("bob1"), "stopped");
    assert_eq!(gw.status("adm1"), "running");
    // A flag after the name is text, not a broadcast.
    let sent = gw.ok(&["send", "adm1", "git", "add", "--all"]);
    assert_eq!(
        sent,
        "sent 13 bytes to agent 'adm1' (its program is no CLI agentgate knows: no sign to wait for)\n"
    );
}
