//! Many hosts: agents on machines the gateway reaches over SSH. Every remote host is a network
//! namespace running a real OpenSSH sshd (see `e2e::netns`); these tests need root.

use std::time::{Duration, Instant};

use e2e::netns::{NetnsHost, add_host};
use e2e::{TestGateway, Viewer, stderr, stdout, wait_for};
use serde_json::Value;

fn hosts(gw: &TestGateway) -> Vec<Value> {
    serde_json::from_str(&gw.ok(&["host", "list", "--json"])).expect("host list --json")
}

fn host_json(gw: &TestGateway, name: &str) -> Value {
    serde_json::from_str(&gw.ok(&["host", "info", name, "--json"])).expect("host info --json")
}

#[test]
fn a_host_is_added_with_its_key_pinned_and_hostctl_installed_then_runs_agents() {
    let gw = TestGateway::start();
    let h1 = NetnsHost::start("h1", &gw.dir.path().join("host-h1"));

    // Before the gateway's key is authorized, `host add` says what to do.
    let out = gw.ssh(&["host", "add", "h1", &h1.address, "--user", "root"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let key = gw.ok(&["host", "key"]);
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    assert!(
        stderr(&out).contains("refused the gateway's key")
            && stderr(&out).contains("authorized_keys")
            && stderr(&out).contains(key.trim()),
        "{}",
        stderr(&out)
    );
    assert!(hosts(&gw).iter().all(|h| h["name"] != "h1"));

    h1.authorize(key.trim());
    let added = gw.ok(&["host", "add", "h1", &h1.address, "--user", "root"]);
    let fingerprint = {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-l", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(h1.host_key_pub.as_bytes())?;
                c.wait_with_output()
            })
            .expect("ssh-keygen -l");
        stdout(&out)
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    };
    assert!(added.contains(&fingerprint), "{added}");
    assert!(added.contains("installed hostctl"), "{added}");
    let installed = h1.agents_home.join("bin/hostctl");
    assert_eq!(
        std::fs::read(&installed).expect("hostctl on the host"),
        std::fs::read(e2e::bin_dir().join("hostctl")).expect("companion hostctl"),
        "the host runs the gateway's companion hostctl"
    );
    let info = host_json(&gw, "h1");
    assert_eq!(info["status"], "reachable");
    assert_eq!(info["host_key_fingerprint"], fingerprint.as_str());
    assert_eq!(info["address"], h1.address.as_str());
    assert_eq!(info["user"], "root");
    assert!(info["hostctl_version"].is_string());
    assert_eq!(info["hostctl_path"], installed.to_str().expect("utf-8"));

    // The same name twice, and `local`, are refused.
    let again = gw.ssh(&["host", "add", "h1", &h1.address, "--user", "root"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(
        gw.ssh(&["host", "add", "local", &h1.address]).status.code(),
        Some(2)
    );

    // An agent on the host: a tmux session there, in the host's AGENTGATE_HOME.
    gw.ok(&["create", "far", "--host", "h1"]);
    assert_eq!(gw.info("far")["host"], "h1");
    assert_eq!(gw.status("far"), "running");
    assert!(
        h1.tmux(&["has-session", "-t", "=far"]).status.success(),
        "the agent's tmux session is on h1"
    );
    assert!(
        !gw.tmux(&["has-session", "-t", "=far"]).status.success(),
        "and not on the gateway's machine"
    );

    // Exec inside it: the workspace on the host, stdout and stderr apart, the exit status.
    let out = gw.ssh_with_stdin_to(
        "far@gw",
        &["echo \"$AGENTGATE_AGENT:$PWD\"; echo oops >&2; exit 7"],
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let workspace = h1.agents_home.join("workspaces/far");
    assert_eq!(stdout(&out).trim(), format!("far:{}", workspace.display()));
    assert_eq!(stderr(&out).trim(), "oops");

    // stdin through, byte for byte (1 MiB).
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = gw.ssh_with_stdin_to("far@gw", &["cat > blob && cat blob"], &data);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == data,
        "the round trip through h1 is byte-identical"
    );
    assert_eq!(std::fs::read(workspace.join("blob")).expect("blob"), data);

    // The lifecycle works the same: send, logs, stop, start, destroy.
    gw.ok(&["send", "far", "echo", "remote-$((2*21))"]);
    wait_for("the agent's output in its log", || {
        gw.ok(&["logs", "far"]).contains("remote-42").then_some(())
    });
    gw.ok(&["stop", "far"]);
    assert_eq!(gw.status("far"), "stopped");
    gw.ok(&["start", "far"]);
    assert_eq!(gw.status("far"), "running");
    gw.ok(&["destroy", "far", "--force"]);
    assert!(!workspace.exists());
    assert!(!h1.tmux(&["has-session", "-t", "=far"]).status.success());

    // A host with no agents is removed; nothing on it is touched.
    gw.ok(&["host", "remove", "h1"]);
    assert!(hosts(&gw).iter().all(|h| h["name"] != "h1"));
    assert!(installed.exists());
}

#[test]
fn agents_are_placed_on_the_least_busy_host_and_file_tools_and_forwards_work_there() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    // Three hosts, none busy: local first, then by name; each new agent goes where fewest run.
    for name in ["p1", "p2", "p3"] {
        gw.ok(&["create", name, "--", "sleep", "600"]);
    }
    let mut placed: Vec<String> = ["p1", "p2", "p3"]
        .iter()
        .map(|n| gw.info(n)["host"].as_str().expect("host").to_owned())
        .collect();
    placed.sort();
    assert_eq!(placed, ["h1", "h2", "local"]);
    let on_h2 = ["p1", "p2", "p3"]
        .into_iter()
        .find(|n| gw.info(n)["host"] == "h2")
        .expect("an agent on h2");
    let workspace = h2.agents_home.join("workspaces").join(on_h2);

    // scp (SFTP mode and legacy), sftp and rsync against the agent on h2.
    let local = gw.dir.path().join("local");
    std::fs::create_dir_all(local.join("tree/sub")).expect("mkdir");
    std::fs::write(local.join("tree/a.txt"), "a\n").expect("write");
    std::fs::write(local.join("tree/sub/b.txt"), "b\n").expect("write");
    let tool = |program: &str| {
        let mut cmd = std::process::Command::new(program);
        cmd.arg("-F")
            .arg(gw.ssh_config_path())
            .stdin(std::process::Stdio::null());
        cmd
    };
    let ok = |out: std::process::Output, what: &str| {
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        stdout(&out)
    };
    for extra in [None, Some("-O")] {
        let mut scp = tool("scp");
        scp.args(extra)
            .arg("-r")
            .arg(local.join("tree"))
            .arg(format!("{on_h2}@gw:copied{}", extra.unwrap_or("")));
        ok(scp.output().expect("scp"), "scp -r up");
        assert_eq!(
            std::fs::read_to_string(
                workspace.join(format!("copied{}/sub/b.txt", extra.unwrap_or("")))
            )
            .expect("uploaded"),
            "b\n"
        );
    }
    let back = local.join("back.txt");
    let mut scp = tool("scp");
    scp.arg(format!("{on_h2}@gw:copied/a.txt")).arg(&back);
    ok(scp.output().expect("scp"), "scp down");
    assert_eq!(std::fs::read_to_string(&back).expect("back"), "a\n");

    let batch = local.join("batch");
    std::fs::write(&batch, "mkdir made\nput back.txt made/put.txt\nls made\n").expect("batch");
    let mut sftp = tool("sftp");
    sftp.current_dir(&local)
        .arg("-b")
        .arg(&batch)
        .arg(format!("{on_h2}@gw"));
    let listing = ok(sftp.output().expect("sftp"), "sftp batch");
    assert!(listing.contains("put.txt"), "{listing}");
    assert_eq!(
        std::fs::read_to_string(workspace.join("made/put.txt")).expect("put"),
        "a\n"
    );

    let mut rsync = std::process::Command::new("rsync");
    rsync
        .arg("-a")
        .arg("-e")
        .arg(format!("ssh -F {}", gw.ssh_config_path().display()))
        .arg(format!("{}/", local.join("tree").display()))
        .arg(format!("{on_h2}@gw:synced/"));
    ok(rsync.output().expect("rsync"), "rsync push");
    assert_eq!(
        std::fs::read_to_string(workspace.join("synced/sub/b.txt")).expect("synced"),
        "b\n"
    );

    // -L: 127.0.0.1 is the agent's host. A server listening only inside h2's namespace.
    let port = 8080;
    let script = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\ns.listen()\nwhile True:\n    c, _ = s.accept()\n    \
         c.sendall(b'served-by-h2\\n')\n    c.close()\n"
    );
    let mut server = h2
        .command("python3")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("server on h2");
    let local_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut forward = tool("ssh");
    forward
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{local_port}:127.0.0.1:{port}"))
        .arg(format!("{on_h2}@gw"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut forward = forward.spawn().expect("ssh -L");
    let got = wait_for("a line through the forward", || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", local_port)).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text.contains("served-by-h2").then_some(text)
    });
    assert!(got.contains("served-by-h2"));

    // A forwarded connection the client closes is closed on the host too, even when the
    // server there keeps sending: it learns that its peer is gone.
    let closed = h2.agents_home.join("closed-seen");
    let talker = format!(
        "import socket, time\ns = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('127.0.0.1', 8081))\n\
         s.listen()\nc, _ = s.accept()\ntry:\n    while True:\n        c.sendall(b'tick\\n')\n        \
         time.sleep(0.1)\nexcept OSError:\n    open({:?}, 'w').write('closed')\n",
        closed.display().to_string()
    );
    let mut talker = h2
        .command("python3")
        .arg("-c")
        .arg(talker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("talker on h2");
    let talk_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut talk_forward = tool("ssh")
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{talk_port}:127.0.0.1:8081"))
        .arg(format!("{on_h2}@gw"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ssh -L");
    let stream = wait_for("a tick through the forward", || {
        use std::io::Read;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", talk_port)).ok()?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut tick = [0u8; 5];
        stream.read_exact(&mut tick).ok()?;
        (&tick == b"tick\n").then_some(stream)
    });
    drop(stream);
    wait_for("the server on h2 to see its connection closed", || {
        closed.exists().then_some(())
    });
    let _ = talk_forward.kill();
    let _ = talk_forward.wait();
    let _ = talker.kill();
    let _ = talker.wait();
    let _ = forward.kill();
    let _ = forward.wait();
    let _ = server.kill();
    let _ = server.wait();
    drop(h1);
}

#[test]
fn a_changed_host_key_is_refused_loudly() {
    let gw = TestGateway::start();
    let mut h1 = add_host(&gw, "h1");
    gw.ok(&["create", "keyed", "--host", "h1", "--", "sleep", "600"]);
    // The host is reinstalled: a new key, and the connections of before are gone.
    h1.change_host_key();
    h1.drop_connections();
    wait_for("the host to be unreachable with a changed key", || {
        let info = host_json(&gw, "h1");
        (info["status"] == "unreachable"
            && info["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("host key of 'h1' has changed")))
        .then_some(())
    });
    assert_eq!(gw.status("keyed"), "unknown");
    let out = gw.ssh_with_stdin_to("keyed@gw", &["true"], b"");
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("has changed"),
        "a session says why: {}",
        stderr(&out)
    );
    let check = gw.ssh(&["host", "check", "h1"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("FAIL host key"),
        "{}",
        stdout(&check)
    );
    // A key given with --host-key that is not the host's is refused too.
    let h2 = NetnsHost::start("h2", &gw.dir.path().join("host-h2"));
    h2.authorize(gw.ok(&["host", "key"]).trim());
    let out = gw.ssh(&[
        "host",
        "add",
        "h2",
        &h2.address,
        "--user",
        "root",
        "--host-key",
        &shell_word(&h1.host_key_pub),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("has changed"), "{}", stderr(&out));
    // ... and the right one is accepted.
    gw.ok(&[
        "host",
        "add",
        "h2",
        &h2.address,
        "--user",
        "root",
        "--host-key",
        &shell_word(&h2.host_key_pub),
    ]);
}

/// One word for the gateway's command line (ssh joins the arguments with spaces).
fn shell_word(s: &str) -> String {
    e2e::shell_quote(s)
}

#[test]
fn a_host_cut_off_is_unreachable_within_seconds_and_recovers_by_itself() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let _h2 = add_host(&gw, "h2");
    gw.ok(&["create", "on1", "--host", "h1", "--", "sleep", "600"]);
    gw.ok(&["create", "on2", "--host", "h2", "--", "sleep", "600"]);
    // An attached operator on h1.
    gw.ok(&["create", "sh1", "--host", "h1"]);
    let viewer = Viewer::open(&gw, "sh1@gw", &[], 100, 30);
    viewer.wait_for_shell_in_dir(&h1.agents_home.join("workspaces/sh1"));
    viewer.type_text("echo remote-attach-$((6*7))");
    viewer.keys(&["Enter"]);
    viewer.wait_for_text("remote-attach-42");

    h1.link_down();
    let cut = Instant::now();
    // At first h1 just does not answer: `list` does not wait for it, says so, and shows its
    // agents as last seen.
    let out = gw.ssh(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("host 'h1' did not answer"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out)
            .lines()
            // As last seen: running (just created, so probably `working`), not `unknown`.
            .any(|l| l.starts_with("on1 ") && (l.contains("working") || l.contains("running"))),
        "{}",
        stdout(&out)
    );
    wait_for("h1 to be unreachable and its agent unknown", || {
        let listed: Vec<Value> =
            serde_json::from_str(&gw.ok(&["list", "--json"])).expect("list --json");
        let status = |n: &str| {
            listed
                .iter()
                .find(|a| a["name"] == n)
                .map(|a| a["status"].clone())
        };
        (host_json(&gw, "h1")["status"] == "unreachable" && status("on1") == Some("unknown".into()))
            .then_some(())
    });
    // Reported, not asserted: tests never assert on time.
    eprintln!("h1 became unreachable after {:?}", cut.elapsed());
    // Now that h1 is known to be unreachable, `list` does not wait for it and says why.
    let out = gw.ssh(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("host 'h1' is unreachable (")
            && stderr(&out).contains("host info h1"),
        "{}",
        stderr(&out)
    );
    // `info` does not wait for it either: the agent as last seen, and why.
    let out = gw.ssh(&["info", "on1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("host 'h1' is unreachable (")
            && stderr(&out).contains("the agent is shown as last seen"),
        "{}",
        stderr(&out)
    );
    let shown: Value = serde_json::from_str(&stdout(&out)).expect("info json");
    assert_eq!(shown["status"], "unknown");
    // The other host and its agent are unaffected.
    assert_eq!(host_json(&gw, "h2")["status"], "reachable");
    assert_eq!(gw.status("on2"), "running");
    let out = gw.ssh_with_stdin_to("on2@gw", &["echo fine"], b"");
    assert_eq!(stdout(&out).trim(), "fine", "{}", stderr(&out));

    // The operator attached to on1 is told, and ssh ends with a non-zero status.
    let status = wait_for("the attached session to end", || viewer.exited());
    assert_ne!(status, 0);
    assert!(
        viewer.screen().contains("connection to host 'h1' was lost"),
        "{}",
        viewer.screen()
    );

    h1.link_up();
    wait_for("h1 and its agent to recover", || {
        (host_json(&gw, "h1")["status"] == "reachable" && gw.status("on1") == "running")
            .then_some(())
    });
    let out = gw.ssh_with_stdin_to("on1@gw", &["echo back"], b"");
    assert_eq!(stdout(&out).trim(), "back", "{}", stderr(&out));

    // Both changes are in the audit trail, once each, with the reason.
    let events: Vec<Value> =
        serde_json::from_str(&gw.ok(&["events", "--json"])).expect("events --json");
    let host_events: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "host")
        .map(|e| {
            (
                e["detail"].as_str().unwrap_or(""),
                e["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        host_events,
        [("h1 unreachable", "unreachable"), ("h1 reachable", "ok")],
        "{events:#?}"
    );
    let down = events
        .iter()
        .find(|e| e["detail"] == "h1 unreachable")
        .expect("the event");
    assert!(!down["message"].as_str().unwrap_or("").is_empty(), "{down}");
}

#[test]
fn killing_the_gateway_loses_nothing_on_any_host() {
    let mut gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "keep1", "--host", "h1"]);
    gw.ok(&["create", "keep0", "--host", "local"]);
    gw.ok(&["send", "keep1", "echo", "before-kill-$((40+2))"]);
    gw.kill9();
    gw.spawn();
    assert_eq!(host_json(&gw, "h1")["status"], "reachable");
    assert_eq!(gw.status("keep1"), "running");
    assert_eq!(gw.status("keep0"), "running");
    wait_for("the output from before the kill", || {
        gw.ok(&["logs", "keep1"])
            .contains("before-kill-42")
            .then_some(())
    });
    // Removing the host with its agents needs --force, forgets them, and touches nothing there;
    // adding it again adopts them.
    let out = gw.ssh(&["host", "remove", "h1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("keep1"), "{}", stderr(&out));
    gw.ok(&["host", "remove", "h1", "--force"]);
    assert!(h1.tmux(&["has-session", "-t", "=keep1"]).status.success());
    gw.ok(&["host", "add", "h1", &h1.address, "--user", "root"]);
    assert_eq!(gw.info("keep1")["host"], "h1");
    assert_eq!(gw.status("keep1"), "running");
}

#[test]
fn a_host_with_another_hostctl_version_is_upgraded_when_the_gateway_starts() {
    let mut gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "busy", "--host", "h1"]);
    let ours = host_json(&gw, "h1")["hostctl_version"].clone();
    assert!(ours.is_string(), "{ours}");

    // The host keeps an older hostctl (as after a gateway upgrade): one that says it is 0.0.1
    // and otherwise works.
    gw.kill9();
    let installed = h1.agents_home.join("bin/hostctl");
    let real = h1.agents_home.join("bin/hostctl.real");
    std::fs::rename(&installed, &real).expect("move hostctl");
    let old = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then\n  {real} \"$@\" | sed 's/\"version\":\"[^\"]*\"/\"version\":\"0.0.1\"/'\n  exit\nfi\nexec {real} \"$@\"\n",
        real = real.display()
    );
    std::fs::write(&installed, old).expect("write the old hostctl");
    std::fs::set_permissions(
        &installed,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let said = h1
        .command(installed.to_str().expect("utf-8"))
        .args(["version", "--json"])
        .output()
        .expect("run");
    assert!(stdout(&said).contains("\"0.0.1\""), "{}", stdout(&said));

    gw.spawn();
    wait_for("hostctl to be upgraded on h1", || {
        gw.log()
            .contains("hostctl upgraded on the host")
            .then_some(())
    });
    let now = std::fs::read(&installed).expect("read hostctl");
    assert!(!now.starts_with(b"#!"), "the old hostctl is still there");
    assert_eq!(host_json(&gw, "h1")["hostctl_version"], ours);
    // The agent was not disturbed.
    assert_eq!(gw.status("busy"), "running");
    assert!(h1.tmux(&["has-session", "-t", "=busy"]).status.success());
}

/// A workspace with some variety: nested files, an empty directory, a symlink, an executable,
/// and 3 MiB of bytes that are not text.
fn fill_workspace(gw: &TestGateway, agent: &str) {
    let script = "mkdir -p src/deep empty && echo hello > src/deep/hello.txt && \
                  printf '#!/bin/sh\\necho run\\n' > run.sh && chmod 750 run.sh && \
                  ln -s src/deep/hello.txt link && \
                  head -c 3145728 /dev/urandom > blob.bin";
    let out = gw.ssh_with_stdin_to(&format!("{agent}@gw"), &[script], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A listing of a workspace that shows what a byte-for-byte copy must keep.
fn tree(gw: &TestGateway, agent: &str) -> String {
    let script = "find . -printf '%y %m %p %l\\n' | LC_ALL=C sort && \
                  find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2";
    let out = gw.ssh_with_stdin_to(&format!("{agent}@gw"), &[script], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn clone_and_migrate_across_hosts_keep_the_workspace_byte_for_byte() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    gw.ok(&[
        "create",
        "orig",
        "--host",
        "h1",
        "--env",
        "MARK=kept",
        "--tag",
        "team=infra",
    ]);
    fill_workspace(&gw, "orig");
    let before = tree(&gw, "orig");
    assert!(
        before.contains("l 777 ./link src/deep/hello.txt"),
        "{before}"
    );

    // clone on the same host: the stream out of h1 and the stream into h1 must not hold each
    // other up (40 MiB, more than the gateway buffers per channel).
    let big = gw.ssh_with_stdin_to("orig@gw", &["head -c 41943040 /dev/urandom > big.bin"], b"");
    assert!(big.status.success(), "{}", stderr(&big));
    gw.ok(&["stop", "orig"]);
    let out = gw.ok(&["clone", "orig", "twin"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(gw.info("twin")["host"], "h1");
    assert_eq!(tree(&gw, "twin"), tree(&gw, "orig"));
    gw.ok(&["destroy", "twin", "--force"]);
    let rm = gw.ssh_with_stdin_to("orig@gw", &["rm big.bin"], b"");
    assert!(rm.status.success(), "{}", stderr(&rm));

    // clone to another host: settings and files, the original untouched.
    let out = gw.ok(&["clone", "orig", "copy", "--host", "h2"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(gw.info("copy")["host"], "h2");
    assert_eq!(gw.status("copy"), "running");
    assert_eq!(gw.info("copy")["tags"]["team"], "infra");
    assert_eq!(tree(&gw, "copy"), before);
    let env = gw.ssh_with_stdin_to("copy@gw", &["echo $MARK-$AGENTGATE_AGENT"], b"");
    assert_eq!(stdout(&env).trim(), "kept-copy");
    assert_eq!(tree(&gw, "orig"), before);
    assert_eq!(gw.info("orig")["host"], "h1");
    // A taken name is refused before anything is copied.
    let out = gw.ssh(&["clone", "orig", "copy"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    // migrate: the agent moves, running again, its workspace identical, the old copy gone.
    gw.ok(&["start", "orig"]);
    let out = gw.ok(&["migrate", "orig", "h2"]);
    assert!(out.contains("verified"), "{out}");
    assert_eq!(gw.info("orig")["host"], "h2");
    assert_eq!(gw.status("orig"), "running");
    assert_eq!(tree(&gw, "orig"), before);
    assert!(h2.tmux(&["has-session", "-t", "=orig"]).status.success());
    assert!(!h1.tmux(&["has-session", "-t", "=orig"]).status.success());
    assert!(!h1.agents_home.join("workspaces/orig").exists());
    assert!(!h1.agents_home.join("agents/orig").exists());
    // And back to the gateway's own machine, then a copy there.
    gw.ok(&["migrate", "orig", "local"]);
    assert_eq!(gw.info("orig")["host"], "local");
    assert_eq!(tree(&gw, "orig"), before);
    assert!(!h2.agents_home.join("workspaces/orig").exists());
    gw.ok(&["clone", "orig", "local-twin"]);
    assert_eq!(gw.info("local-twin")["host"], "local");
    assert_eq!(tree(&gw, "local-twin"), before);
    // Usage errors.
    assert_eq!(gw.ssh(&["migrate", "orig", "local"]).status.code(), Some(2));
    assert_eq!(
        gw.ssh(&["migrate", "orig", "nowhere"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_migration_that_fails_leaves_the_agent_where_it_was() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    gw.ok(&["create", "stay", "--host", "h1"]);
    fill_workspace(&gw, "stay");
    let before = tree(&gw, "stay");

    // The target already has a workspace of that name (left by an earlier agent): the copy
    // is refused there, and nothing of the earlier workspace is touched.
    let squatter = h2.agents_home.join("workspaces/stay");
    std::fs::create_dir_all(&squatter).expect("mkdir");
    std::fs::write(squatter.join("mine.txt"), "not yours\n").expect("write");
    let out = gw.ssh(&["migrate", "stay", "h2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("stays on host 'h1'"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.info("stay")["host"], "h1");
    assert_eq!(gw.status("stay"), "running", "started again");
    assert_eq!(tree(&gw, "stay"), before);
    assert_eq!(
        std::fs::read_to_string(squatter.join("mine.txt")).expect("kept"),
        "not yours\n"
    );

    // The target cannot be reached: refused, the agent still running on h1.
    h2.link_down();
    let out = gw.ssh(&["migrate", "stay", "h2"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(gw.info("stay")["host"], "h1");
    assert_eq!(gw.status("stay"), "running");
    assert_eq!(tree(&gw, "stay"), before);
    h2.link_up();
    drop(h1);
}

#[test]
fn two_migrations_of_one_agent_at_once_take_turns() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let _h2 = add_host(&gw, "h2");
    gw.ok(&["create", "mover", "--host", "h1", "--", "sleep", "600"]);
    // Enough to copy that the two moves overlap.
    let out = gw.ssh_with_stdin_to(
        "mover@gw",
        &["head -c 30000000 /dev/urandom > blob && sha256sum blob"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let sum = stdout(&out);
    let moves: Vec<_> = (0..2)
        .map(|_| {
            gw.ssh_command()
                .args(["gw", "migrate", "mover", "h2"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("migrate")
        })
        .collect();
    let outs: Vec<_> = moves
        .into_iter()
        .map(|m| m.wait_with_output().expect("migrate"))
        .collect();
    let done: Vec<_> = outs.iter().filter(|o| o.status.success()).collect();
    let refused: Vec<_> = outs.iter().filter(|o| !o.status.success()).collect();
    assert_eq!(done.len(), 1, "{outs:?}");
    assert_eq!(refused.len(), 1, "{outs:?}");
    assert!(
        stderr(refused[0]).contains("agent 'mover' is already on host 'h2'"),
        "{}",
        stderr(refused[0])
    );
    assert_eq!(gw.info("mover")["host"], "h2");
    assert_eq!(gw.status("mover"), "running");
    assert!(!h1.agents_home.join("workspaces/mover").exists());
    let out = gw.ssh_with_stdin_to("mover@gw", &["sha256sum blob"], b"");
    assert_eq!(stdout(&out), sum);
}

#[test]
fn calls_to_a_host_go_through_one_hostctl_serve_and_its_shell_starts_once() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "w", "--host", "h1", "--", "sleep", "600"]);
    // The gateway's watch of the host's hook events is a session of its own, which runs the
    // shell once when it starts (within a few seconds of the host's enrolment): it is counted
    // from before the count begins.
    let watch = format!(
        "{} .*hook-watch",
        h1.agents_home.join("bin/hostctl").display()
    );
    wait_for("the gateway to watch the host's hook events", || {
        std::process::Command::new("pgrep")
            .args(["-f", &watch])
            .output()
            .expect("pgrep")
            .status
            .success()
            .then_some(())
    });
    // The host user's shell start-up counts its runs: each new SSH session runs it once.
    let count = h1.home().join("shell-starts");
    std::fs::write(
        h1.home().join(".bashrc"),
        format!("echo started >> {}\n", count.display()),
    )
    .expect("write .bashrc");
    let starts = || {
        std::fs::read_to_string(&count)
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    // Twenty calls (each `list` asks the host; the reconciler asks every 500 ms besides).
    for i in 0..10 {
        assert_eq!(gw.status("w"), "running");
        gw.ok(&["tag", "w", &format!("round={i}")]);
    }
    let meta = std::fs::read_to_string(h1.agents_home.join("agents/w/meta.json")).expect("meta");
    assert!(meta.contains("\"round\": \"9\""), "{meta}");
    assert_eq!(starts(), 0, "every call started a shell");

    // Serve ended on the host (killed): the next calls start another, once, and work.
    let serve = format!("{} serve", h1.agents_home.join("bin/hostctl").display());
    let killed = std::process::Command::new("pkill")
        .args(["-f", &serve])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no `{serve}` was running");
    // Until the new serve answers, calls go over exec channels (a shell each); then none.
    wait_for("calls to go through a new serve", || {
        let before = starts();
        let working = gw.ssh(&["info", "w"]).status.success() && gw.status("w") == "running";
        (working && starts() == before).then_some(())
    });
    let settled = starts();
    assert!(settled >= 1, "no shell started for a new serve");
    for _ in 0..5 {
        assert_eq!(gw.status("w"), "running");
    }
    assert_eq!(starts(), settled, "calls started shells again");

    // A hostctl from before serve (it refuses the verb): calls go over exec channels.
    let installed = h1.agents_home.join("bin/hostctl");
    let real = h1.agents_home.join("bin/hostctl.real");
    std::fs::rename(&installed, &real).expect("move hostctl");
    std::fs::write(
        &installed,
        format!(
            "#!/bin/sh\nif [ \"$1\" = serve ]; then echo \"error: unrecognized subcommand 'serve'\" >&2; exit 2; fi\nexec {} \"$@\"\n",
            real.display()
        ),
    )
    .expect("write the old hostctl");
    std::fs::set_permissions(
        &installed,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let killed = std::process::Command::new("pkill")
        .args(["-f", &serve])
        .status()
        .expect("pkill");
    assert!(killed.success(), "no `{serve}` was running");
    let before = starts();
    for i in 0..3 {
        assert_eq!(gw.status("w"), "running");
        gw.ok(&["tag", "w", &format!("old={i}")]);
    }
    assert!(starts() >= before + 6, "{before} then {}", starts());
}

/// Waits up to `limit` for `check`: longer than `wait_for`, for what takes the stall limit
/// (10 s) and more to happen. A hang (the bug this guards against lasted minutes) fails.
fn wait_up_to<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_link_lost_during_an_upload_ends_it_and_an_attach_on_that_host_and_the_host_comes_back_at_once()
{
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "up1", "--host", "h1"]);
    let workspace = h1.agents_home.join("workspaces/up1");
    let viewer = Viewer::open(&gw, "up1@gw", &[], 100, 30);
    viewer.wait_for_shell_in_dir(&workspace);

    // A 1 GiB upload through the gateway, on the same host connection as the attach.
    let upload_err = gw.dir.path().join("upload.stderr");
    let mut upload = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 1G /dev/zero | ssh -F {} up1@gw 'cat > big'",
            e2e::shell_quote(&gw.ssh_config_path().to_string_lossy())
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&upload_err).expect("upload stderr file"))
        .spawn()
        .expect("start the upload");
    let big = workspace.join("big");
    wait_for("the upload to be under way", || {
        let size = std::fs::metadata(&big).map_or(0, |m| m.len());
        (size > 32 << 20).then_some(())
    });

    h1.link_down();
    let cut = Instant::now();
    // Both end, each with the host-lost message, while the link is still down: bounded
    // generously (the goal is 15 s; before, both hung for minutes).
    let patience = Duration::from_secs(60);
    let status = wait_up_to("the upload to end", patience, || {
        upload.try_wait().expect("wait for the upload")
    });
    eprintln!(
        "the upload ended {:?} after the link was lost",
        cut.elapsed()
    );
    let said = std::fs::read_to_string(&upload_err).unwrap_or_default();
    assert_eq!(status.code(), Some(255), "{said}");
    assert!(
        said.contains("the connection to host 'h1' was lost; agent 'up1' keeps running there"),
        "{said}"
    );
    let status = wait_up_to("the attach to end", patience, || viewer.exited());
    eprintln!(
        "the attach ended {:?} after the link was lost",
        cut.elapsed()
    );
    assert_ne!(status, 0);
    assert!(
        viewer.screen().contains("connection to host 'h1' was lost"),
        "{}",
        viewer.screen()
    );
    assert!(
        std::fs::metadata(&big).map_or(0, |m| m.len()) < 1 << 30,
        "the upload was not cut short"
    );
    wait_for("h1 to be unreachable", || {
        (host_json(&gw, "h1")["status"] == "unreachable").then_some(())
    });

    // The first attach once the link is back works: no connection from before is used again.
    h1.link_up();
    let again = Viewer::open(&gw, "up1@gw", &[], 100, 30);
    again.wait_for_shell_in_dir(&workspace);
    again.type_text("echo back-$((6*7))");
    again.keys(&["Enter"]);
    again.wait_for_text("back-42");
    let out = gw.ssh_with_stdin_to("up1@gw", &["echo fine"], b"");
    assert_eq!(stdout(&out).trim(), "fine", "{}", stderr(&out));

    // And the host stays reachable: several reconciler passes (every 5 s) later, it has not
    // gone back to unreachable.
    wait_for("h1 to be reachable", || {
        (host_json(&gw, "h1")["status"] == "reachable").then_some(())
    });
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(15) {
        assert_eq!(host_json(&gw, "h1")["status"], "reachable");
        std::thread::sleep(Duration::from_millis(500));
    }
    again.type_text("echo still-$((6*7))");
    again.keys(&["Enter"]);
    again.wait_for_text("still-42");
    assert_eq!(again.exited(), None);
    let events: Vec<Value> =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("events --json");
    let host_events: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "host")
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert_eq!(host_events, ["h1 unreachable", "h1 reachable"]);
}
