//! `ssh -A` into an agent with the real OpenSSH client, a real `ssh-agent` holding the
//! operator's key, and a real second sshd (a "forge") that trusts only that key. Each flow
//! runs on `local` and on a namespace host, in the agent's sandbox where the host has one:
//!
//! - refused until an admin allows it (`operator set NAME --agent-forwarding on`), with the
//!   reason on the client's stderr and no `SSH_AUTH_SOCK` in the command;
//! - allowed: `ssh-add -l` lists the key in a command and inside the attached session, the
//!   agent's own stable `SSH_AUTH_SOCK` reaches the newest live forwarding and nothing once
//!   the connection that forwarded it ends, and the audit trail has the forwarding and each
//!   use;
//! - `git push` over ssh from inside the agent to the forge succeeds with forwarding and fails
//!   without.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use e2e::{TestGateway, Viewer, shell_quote, stderr, stdout, wait_for};
use serde_json::Value;

use crate::forwarding::{Client, exec, free_port};

/// An `ssh-agent` listening at a socket in the test's directory, holding the operator's key;
/// killed when dropped.
struct TestAgent {
    child: Child,
    socket: PathBuf,
}

impl TestAgent {
    fn start(gw: &TestGateway) -> TestAgent {
        let socket = gw.dir.path().join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh-agent (apt-get install -y openssh-client)");
        wait_for("ssh-agent's socket", || socket.exists().then_some(()));
        let out = Command::new("ssh-add")
            .env("SSH_AUTH_SOCK", &socket)
            .arg(&gw.key)
            .output()
            .expect("run ssh-add");
        assert!(out.status.success(), "ssh-add failed: {}", stderr(&out));
        TestAgent { child, socket }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The operator key's SHA-256 fingerprint, as `ssh-add -l` prints it.
fn fingerprint(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()
        .expect("run ssh-keygen -lf");
    stdout(&out)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned()
}

/// `ssh -A web@gw COMMAND` forwarding `agent`.
fn exec_forwarding(gw: &TestGateway, agent: &TestAgent, command: &str) -> std::process::Output {
    gw.ssh_command()
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["-A", "web@gw", command])
        .output()
        .expect("run ssh -A")
}

/// The agent's own `SSH_AUTH_SOCK`: its command writes it into `sockpath` in its workspace.
fn stable_link(gw: &TestGateway) -> String {
    for _ in 0..100 {
        let path = exec(gw, "web@gw", "cat sockpath 2>/dev/null || true");
        let path = path.trim();
        if !path.is_empty() {
            return path.to_owned();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the agent wrote no SSH_AUTH_SOCK: its workspace has {:?}, its info: {}",
        exec(gw, "web@gw", "ls -la; pwd"),
        gw.ok(&["info", "web"])
    );
}

/// Types `ssh-add -l` into the attached session, its answer and status into `file` in the
/// workspace, and returns what it wrote.
fn ssh_add_typed(gw: &TestGateway, viewer: &Viewer, file: &str) -> String {
    viewer.type_text(&format!(
        "ssh-add -l > {file} 2>&1; echo \"rc=$?\" >> {file}\r"
    ));
    wait_for(&format!("ssh-add's answer in {file}"), || {
        let got = exec(gw, "web@gw", &format!("cat {file} 2>/dev/null || true"));
        got.contains("rc=").then_some(got)
    })
}

fn agent_forward_events(gw: &TestGateway) -> Vec<Value> {
    let events: Vec<Value> =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("events --json");
    events
        .into_iter()
        .filter(|e| e["kind"] == "agent-forward")
        .collect()
}

#[test]
fn agent_forwarding_serves_commands_and_the_attached_session_once_allowed() {
    let gw = TestGateway::start();
    create_web(&gw, &[]);
    forwarding_flow(&gw);
}

#[test]
fn agent_forwarding_serves_an_agent_without_a_sandbox() {
    let gw = TestGateway::start();
    create_web(&gw, &["--sandbox", "none"]);
    forwarding_flow(&gw);
}

#[test]
fn agent_forwarding_serves_an_agent_on_a_remote_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    create_web(&gw, &["--host", "h1"]);
    forwarding_flow(&gw);
}

/// Creates agent `web`, a shell that first writes its `SSH_AUTH_SOCK` to `sockpath`.
fn create_web(gw: &TestGateway, options: &[&str]) {
    // The words go over ssh as one line, which the gateway splits as a shell would.
    let script = shell_quote("echo \"$SSH_AUTH_SOCK\" > sockpath; exec bash --norc -i");
    let mut args = vec!["create", "web"];
    args.extend_from_slice(options);
    args.extend(["--", "bash", "-c", &script]);
    gw.ok(&args);
}

fn forwarding_flow(gw: &TestGateway) {
    let agent = TestAgent::start(gw);
    let key = fingerprint(&gw.key);
    let link = stable_link(gw);
    let probe = "ssh-add -l; echo \"rc=$?\"; echo \"sock=${SSH_AUTH_SOCK:-none}\"";

    // Refused: the operator is not allowed yet.
    let out = exec_forwarding(gw, &agent, probe);
    assert!(out.status.success(), "ssh -A failed: {}", stderr(&out));
    assert!(
        stdout(&out).contains("sock=none") && stdout(&out).contains("rc=2"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("agent forwarding (ssh -A) is not allowed for operator 'tester'")
            && stderr(&out).contains("ssh gw operator set tester --agent-forwarding on"),
        "the client is not told why: {}",
        stderr(&out)
    );

    // Bad input says what is wrong and changes nothing.
    let out = gw.ssh(&["operator", "set", "tester"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing to set"), "{}", stderr(&out));
    let out = gw.ssh(&["operator", "set", "nobody", "--agent-forwarding", "on"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no operator named 'nobody'"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["operator", "set", "tester", "--agent-forwarding", "yes"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    gw.ok(&["operator", "set", "tester", "--agent-forwarding", "on"]);
    let operators: Vec<Value> =
        serde_json::from_str(&gw.ok(&["operator", "list", "--json"])).expect("operator list");
    assert_eq!(operators[0]["agent_forwarding"], true, "{operators:?}");

    // A command: its own socket, reaching the operator's key.
    let out = exec_forwarding(gw, &agent, probe);
    assert!(out.status.success(), "ssh -A failed: {}", stderr(&out));
    let got = stdout(&out);
    assert!(
        got.contains(&key) && got.contains("rc=0"),
        "{got}\n{}",
        gw.log()
    );
    assert!(
        !stderr(&out).contains("agent forwarding"),
        "{}",
        stderr(&out)
    );
    let socket_dir = Path::new(&link).parent().expect("the link's directory");
    assert!(
        got.contains(&format!("sock={}/", socket_dir.display())),
        "{got}"
    );

    // A long-lived connection holds its forwarding: the agent's stable link reaches it from a
    // command that did not forward anything, until that connection ends.
    let mut cmd = gw.ssh_command();
    cmd.env("SSH_AUTH_SOCK", &agent.socket)
        .args(["-A", "web@gw", "echo held; sleep 600"]);
    let mut held = Client::spawn(cmd);
    wait_for("the held connection's command", || {
        held.stdout().contains("held").then_some(())
    });
    let through_link = format!(
        "SSH_AUTH_SOCK={} ssh-add -l; echo \"rc=$?\"",
        shell_quote(&link)
    );
    let got = exec(gw, "web@gw", &through_link);
    assert!(got.contains(&key) && got.contains("rc=0"), "{got}");

    // Turned off by an admin: the held connection's forwarding ends at once, though the
    // connection itself goes on.
    let said = gw.ok(&["operator", "set", "tester", "--agent-forwarding", "off"]);
    assert!(
        said.contains("1 open forwarding(s) of theirs ended"),
        "{said}"
    );
    wait_for("the held forwarding to end", || {
        let got = exec(gw, "web@gw", &through_link);
        (!got.contains(&key) && got.contains("rc=2")).then_some(())
    });
    assert!(held.exited().is_none(), "the held connection ended too");
    gw.ok(&["operator", "set", "tester", "--agent-forwarding", "on"]);

    // The attached session: the agent's shell names the stable link.
    let viewer = Viewer::open_forwarding(gw, &agent.socket, "web@gw", 100, 30);
    let got = ssh_add_typed(gw, &viewer, "seen.txt");
    assert!(
        got.contains(&key) && got.contains("rc=0"),
        "attached: {got}"
    );
    // A window opened now gets the session's environment, which each attach keeps naming
    // the stable link (tmux's update-environment would otherwise drop SSH_AUTH_SOCK).
    viewer.keys(&["C-b", "c"]);
    viewer.wait_for_text("1:");
    let got = ssh_add_typed(gw, &viewer, "seen-in-new-window.txt");
    assert!(
        got.contains(&key) && got.contains("rc=0"),
        "new window: {got}"
    );
    viewer.detach();
    drop(held);

    // Once every forwarding connection is gone, the link reaches nothing.
    wait_for("the stable link to reach nothing", || {
        let got = exec(gw, "web@gw", &through_link);
        (!got.contains(&key) && got.contains("rc=2")).then_some(())
    });

    // The audit trail: each forwarding (ended, with its uses) and each use.
    let mut events = Vec::new();
    for _ in 0..100 {
        events = agent_forward_events(gw);
        let ended = events
            .iter()
            .filter(|e| {
                e["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("ssh -A"))
            })
            .filter(|e| e["result"] != "started")
            .count();
        if ended >= 3 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let ended: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("ssh -A"))
        })
        .collect();
    assert_eq!(ended.len(), 3, "three forwardings: {ended:#?}");
    assert!(
        ended.iter().all(|e| e["result"] == "ok"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("closed after"))),
        "{ended:#?}"
    );
    assert!(
        ended.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("agent forwarding was turned off for the operator"))),
        "{ended:#?}"
    );
    let uses = events
        .iter()
        .filter(|e| e["detail"].as_str().is_some_and(|d| d.contains("used")))
        .count();
    assert!(uses >= 3, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["agent"] == "web" && e["operator"] == "tester")
    );
}

/// A second sshd on the root namespace that trusts only the operator's key, with a bare git
/// repository; killed when dropped.
struct Forge {
    child: Child,
    port: u16,
    repo: PathBuf,
}

impl Forge {
    fn start(gw: &TestGateway) -> Forge {
        let dir = gw.dir.path().join("forge");
        std::fs::create_dir_all(&dir).expect("mkdir forge");
        let host_key = e2e::keygen(&dir, "host_key", "forge");
        let authorized = dir.join("authorized_keys");
        std::fs::copy(gw.key.with_extension("pub"), &authorized).expect("authorized_keys");
        let repo = dir.join("repo.git");
        let out = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&repo)
            .output()
            .expect("git init --bare");
        assert!(out.status.success(), "{}", stderr(&out));
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "ListenAddress 0.0.0.0\nPort {port}\nHostKey {}\nPidFile none\nUsePAM no\n\
                 StrictModes no\nAuthorizedKeysFile {}\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .expect("sshd_config");
        let sshd = ["/usr/sbin/sshd", "/usr/local/sbin/sshd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("sshd (apt-get install -y openssh-server)");
        let child = Command::new(sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
            .spawn()
            .expect("start the forge's sshd");
        wait_for("the forge's sshd", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Forge { child, port, repo }
    }

    /// The command that pushes the workspace's commit to the forge, reached at `address`.
    fn push_command(&self, address: &str) -> String {
        let ssh = format!(
            "ssh -F /dev/null -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
             -o BatchMode=yes -o LogLevel=ERROR",
            self.port
        );
        format!(
            "git init -q pushed 2>/dev/null; cd pushed && git -c user.name=t -c user.email=t@e \
             commit -q --allow-empty -m forwarded && GIT_SSH_COMMAND={} git push -q \
             {} HEAD:refs/heads/main 2>&1; echo \"rc=$?\"",
            shell_quote(&ssh),
            shell_quote(&format!("ssh://root@{address}{}", self.repo.display()))
        )
    }

    /// Whether the forge's repository has a `main` branch.
    fn has_main(&self) -> bool {
        Command::new("git")
            .arg("--git-dir")
            .arg(&self.repo)
            .args(["rev-parse", "--verify", "-q", "refs/heads/main"])
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

impl Drop for Forge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn git_push_from_inside_an_agent_uses_the_forwarded_key() {
    let gw = TestGateway::start();
    create_web(&gw, &[]);
    push_flow(&gw, "127.0.0.1");
}

#[test]
fn git_push_from_inside_an_agent_on_a_remote_host_uses_the_forwarded_key() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    create_web(&gw, &["--host", "h1"]);
    push_flow(&gw, &h1.root_address);
}

fn push_flow(gw: &TestGateway, forge_address: &str) {
    let agent = TestAgent::start(gw);
    let forge = Forge::start(gw);
    gw.ok(&["operator", "set", "tester", "--agent-forwarding", "on"]);
    let push = forge.push_command(forge_address);

    // Without forwarding nothing inside the agent holds the key: the forge refuses.
    let got = exec(gw, "web@gw", &push);
    assert!(
        got.contains("Permission denied") && !got.contains("rc=0"),
        "{got}"
    );
    assert!(!forge.has_main());

    let out = exec_forwarding(gw, &agent, &push);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rc=0"),
        "{}\n{}",
        stdout(&out),
        gw.log()
    );
    assert!(forge.has_main(), "the push did not reach the forge");
}

#[test]
fn a_gateway_killed_while_it_forwards_an_agent_leaves_nothing_in_the_next_ones_way() {
    let mut gw = TestGateway::start();
    create_web(&gw, &[]);
    let agent = TestAgent::start(&gw);
    let key = fingerprint(&gw.key);
    let link = stable_link(&gw);
    gw.ok(&["operator", "set", "tester", "--agent-forwarding", "on"]);
    let through_link = format!(
        "SSH_AUTH_SOCK={} ssh-add -l; echo \"rc=$?\"",
        shell_quote(&link)
    );
    let hold = |gw: &TestGateway| {
        let mut cmd = gw.ssh_command();
        cmd.env("SSH_AUTH_SOCK", &agent.socket)
            .args(["-A", "web@gw", "echo held; sleep 600"]);
        let held = Client::spawn(cmd);
        wait_for("the held connection's command", || {
            held.stdout().contains("held").then_some(())
        });
        held
    };
    let held = hold(&gw);
    let got = exec(&gw, "web@gw", &through_link);
    assert!(got.contains(&key) && got.contains("rc=0"), "{got}");

    // Killed with the forwarding's socket made and linked: the agent keeps running, its link
    // reaches nothing, and the socket's file is left behind.
    gw.kill9();
    drop(held);
    gw.spawn();
    let got = exec(&gw, "web@gw", &through_link);
    assert!(!got.contains(&key) && got.contains("rc=2"), "{got}");

    // The next gateway's forwarding takes the same name for its socket: what the killed one
    // left is cleared first, and the link reaches the key again.
    let held = hold(&gw);
    let got = exec(&gw, "web@gw", &through_link);
    assert!(
        got.contains(&key) && got.contains("rc=0"),
        "{got}\n{}",
        gw.log()
    );
    drop(held);
}
