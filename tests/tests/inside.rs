//! `ssh NAME@gw COMMAND` and `ssh -T NAME@gw`: commands run inside the agent's environment
//! (its workspace, its variables) with exact streams, exit statuses and signals.

use std::io::{Read, Write};
use std::process::Stdio;

use e2e::{TestGateway, stderr, stdout};

fn agent(gw: &TestGateway, name: &str) -> String {
    gw.ok(&[
        "create",
        name,
        "--env",
        "FROM_CREATE=yes",
        "--",
        "sleep",
        "600",
    ]);
    gw.info(name)["workspace"]
        .as_str()
        .expect("workspace")
        .to_owned()
}

#[test]
fn exec_runs_in_the_workspace_with_the_agents_environment() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "box");
    let out = gw.ssh_run(&["box@gw", "pwd; echo $AGENTGATE_AGENT $FROM_CREATE"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{workspace}\nbox yes\n"));
}

#[test]
fn the_session_environment_is_built_like_sshds_not_inherited_from_the_gateway() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    let out = gw.ssh_run(&[
        "box@gw",
        "echo \"${RUST_LOG-unset}|${AGENTGATE_HOME-unset}|${TERM-unset}|$SSH_CONNECTION|$HOME\"",
    ]);
    let text = stdout(&out);
    let fields: Vec<&str> = text.trim_end().split('|').collect();
    assert_eq!(&fields[..2], ["unset", "unset"], "{text}");
    // No terminal, no TERM (bash fills in `dumb`, as under sshd).
    assert!(["unset", "dumb"].contains(&fields[2]), "{text}");
    assert!(
        fields[3].starts_with("127.0.0.1 ")
            && fields[3].ends_with(&format!(" 127.0.0.1 {}", gw.port)),
        "{text}"
    );
    assert_eq!(fields[4], gw.home.display().to_string());
}

#[test]
fn stdout_and_stderr_stay_separate_and_exit_codes_come_back_exactly() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    let out = gw.ssh_run(&["box@gw", "echo to-out; echo to-err >&2; exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    assert_eq!(stdout(&out), "to-out\n");
    assert_eq!(stderr(&out), "to-err\n");
    // Many short commands in a row, each with its own status.
    for code in [0, 1, 2, 7, 127, 255, 0, 3] {
        let out = gw.ssh_run(&["box@gw", &format!("exit {code}")]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "exit {code}: {}",
            stderr(&out)
        );
    }
    let out = gw.ssh_run(&["box@gw", "no-such-command-here"]);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
}

#[test]
fn a_death_by_signal_comes_back_as_exit_signal() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    // OpenSSH's client exits 255 when the remote command was killed by a signal, and says so
    // with -v; the same as against sshd.
    let out = gw.ssh_run(&["-v", "box@gw", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(255));
    assert!(stderr(&out).contains("exit-signal"), "{}", stderr(&out));
}

#[test]
fn stdin_reaches_the_command_and_its_eof_too() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    let out = gw.ssh_with_stdin_to("box@gw", &["cat; echo after-eof"], b"line one\nline two\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "line one\nline two\nafter-eof\n");
    // A command that does not read stdin is not held up by it.
    let out = gw.ssh_with_stdin_to("box@gw", &["echo ignored-input"], b"unread\n");
    assert_eq!(stdout(&out), "ignored-input\n");
}

#[test]
fn a_hundred_megabytes_round_trip_through_exec_unchanged() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    // 100 MiB of pseudo-random bytes, generated here, sent through `cat` and back.
    let mut data = vec![0u8; 100 * 1024 * 1024];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let mut child = gw
        .ssh_command()
        .args(["box@gw", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        stdin.write_all(&data).expect("write");
        data
    });
    let mut echoed = Vec::with_capacity(100 * 1024 * 1024);
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_end(&mut echoed)
        .expect("read");
    let sent = writer.join().expect("writer");
    let status = child.wait().expect("wait");
    assert!(status.success());
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "the bytes came back changed");
}

#[test]
fn a_terminal_only_when_the_client_asks_for_one() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    let out = gw.ssh_run(&["box@gw", "test -t 0 && echo tty || echo no-tty"]);
    assert_eq!(stdout(&out), "no-tty\n");
    let out = gw.ssh_run(&[
        "-tt",
        "box@gw",
        "test -t 0 && echo tty || echo no-tty; stty size",
    ]);
    let text = stdout(&out);
    assert!(text.starts_with("tty\r\n"), "{text:?}");
}

#[test]
fn a_shell_without_a_terminal_runs_a_script_from_stdin() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "box");
    let script = b"pwd\necho \"agent=$AGENTGATE_AGENT\"\nexit 6\n";
    let out = gw.ssh_with_stdin_to("-T", &["box@gw"], script);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{workspace}\nagent=box\n"));
}

#[test]
fn accepted_env_requests_are_applied_and_others_ignored() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    let out = gw
        .ssh_command()
        .args([
            "-o",
            "SetEnv=LC_TEST_VALUE=from-client GIT_PROTOCOL=version=2 SNEAKY=bad",
        ])
        .args([
            "box@gw",
            "echo \"$LC_TEST_VALUE|$GIT_PROTOCOL|${SNEAKY-unset}\"",
        ])
        .output()
        .expect("ssh");
    assert_eq!(
        stdout(&out),
        "from-client|version=2|unset\n",
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stopped_agent_still_serves_commands_in_its_workspace() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "box");
    gw.ok(&["stop", "box"]);
    let out = gw.ssh_run(&["box@gw", "pwd"]);
    assert_eq!(stdout(&out), format!("{workspace}\n"));
    assert_eq!(gw.status("box"), "stopped", "exec does not start the agent");
}

#[test]
fn keepalives_are_answered() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    // The client asks every second and gives up after two unanswered questions.
    let out = gw.ssh_run(&[
        "-o",
        "ServerAliveInterval=1",
        "-o",
        "ServerAliveCountMax=2",
        "box@gw",
        "sleep 4; echo survived",
    ]);
    assert_eq!(stdout(&out), "survived\n", "{}", stderr(&out));
}

#[test]
fn every_session_inside_an_agent_is_in_the_audit_trail() {
    let gw = TestGateway::start();
    agent(&gw, "box");
    gw.ok(&[
        "create",
        "scratch",
        "--env",
        "API_KEY=sekrit-value",
        "--",
        "sleep",
        "600",
    ]);
    let out = gw.ssh_run(&["box@gw", "echo audited; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    let batch = gw.dir.path().join("batch");
    std::fs::write(&batch, "ls\n").expect("batch");
    let out = std::process::Command::new("sftp")
        .arg("-F")
        .arg(gw.ssh_config_path())
        .arg("-b")
        .arg(&batch)
        .arg("box@gw")
        .stdin(Stdio::null())
        .output()
        .expect("sftp");
    assert!(out.status.success(), "{}", stderr(&out));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.write_all(b"hello from the agent's host\n")
            .expect("write");
    });
    let out = gw.ssh_with_stdin_to(&format!("-W127.0.0.1:{port}"), &["box@gw"], b"");
    server.join().expect("server");
    assert_eq!(
        stdout(&out),
        "hello from the agent's host\n",
        "{}",
        stderr(&out)
    );

    let events: serde_json::Value =
        serde_json::from_str(&gw.ok(&["events", "--agent", "box", "--json"])).expect("json");
    let events = events.as_array().expect("array");
    let find = |kind: &str| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} event in {events:?}"))
    };
    let exec = find("exec");
    assert_eq!(exec["detail"], "echo audited; exit 3");
    assert_eq!(exec["result"], "exit 3");
    assert_eq!(exec["operator"], "tester");
    assert_eq!(find("sftp")["result"], "ok");
    assert_eq!(find("forward")["detail"], format!("127.0.0.1:{port}"));
    assert!(events.iter().any(|e| e["kind"] == "login"), "{events:?}");
    // Control commands are there too, with --env values hidden.
    let all = gw.ok(&["events", "--json", "-n", "1000"]);
    assert!(all.contains("API_KEY=***"), "{all}");
    assert!(
        !all.contains("sekrit-value"),
        "a secret reached the audit trail: {all}"
    );
    // The human table has stable columns.
    let table = gw.ok(&["events", "--operator", "tester", "-n", "5"]);
    assert!(table.starts_with("TIME"), "{table}");
}
