//! `ssh -A` with the real OpenSSH client and a real `ssh-agent`: the gateway does not offer
//! agent forwarding, and a session inside an agent that asked is told so on its stderr (OpenSSH's
//! client asks without wanting a reply, and would say nothing), while its command runs as usual;
//! control commands take no note of it.

use std::process::{Child, Command, Stdio};

use e2e::{TestGateway, stderr, stdout, wait_for};

/// An `ssh-agent` listening at a socket in the test's directory, killed when dropped.
struct TestAgent {
    child: Child,
    socket: std::path::PathBuf,
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
        TestAgent { child, socket }
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn agent_forwarding_is_refused_and_a_command_inside_the_agent_is_told_why() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let agent = TestAgent::start(&gw);

    let out = gw
        .ssh_command()
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args([
            "-A",
            "web@gw",
            "echo ran; echo \"sock=${SSH_AUTH_SOCK:-none}\"",
        ])
        .output()
        .expect("run ssh -A");
    assert!(out.status.success(), "ssh -A failed: {}", stderr(&out));
    assert_eq!(stdout(&out), "ran\nsock=none\n");
    assert!(
        stderr(&out).contains("agent forwarding (ssh -A) is not offered"),
        "the client is not told: {}",
        stderr(&out)
    );

    // Without -A there is no note; on the control route neither.
    let out = gw
        .ssh_command()
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["web@gw", "echo ran"])
        .output()
        .expect("run ssh");
    assert!(
        !stderr(&out).contains("agent forwarding"),
        "{}",
        stderr(&out)
    );
    let out = gw
        .ssh_command()
        .env("SSH_AUTH_SOCK", &agent.socket)
        .args(["-A", "gw", "list", "-q"])
        .output()
        .expect("run ssh -A gw list");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("agent forwarding"),
        "{}",
        stderr(&out)
    );
}
