//! Truthful statuses and input errors: an agent whose process ended without a stop says why
//! (in `list`, `info` and one audit event), a stop by hand says nothing of the kind, and input
//! a host cannot take (a command too long to run, a NUL byte) is refused naming the input.
//! The remote host's test runs it in a network namespace with a real sshd: it needs root.

use e2e::{TestGateway, stderr, stdout, wait_for};
use serde_json::Value;

/// The `agent` events of the audit trail, as (agent, result, detail).
fn agent_events(gw: &TestGateway) -> Vec<(String, String, String)> {
    let events: Value =
        serde_json::from_str(&gw.ok(&["events", "--json"])).expect("events --json is JSON");
    events
        .as_array()
        .expect("an array")
        .iter()
        .filter(|e| e["kind"] == "agent")
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (text("agent"), text("result"), text("detail"))
        })
        .collect()
}

/// Waits until `name` has a stop reason; returns its `info --json`.
fn ended(gw: &TestGateway, name: &str) -> Value {
    wait_for(&format!("agent {name} to have a stop reason"), || {
        let info = gw.info(name);
        info["stop_reason"].is_string().then_some(info)
    })
}

#[test]
fn an_agent_whose_process_died_says_why_once_and_a_stop_by_hand_does_not() {
    let gw = TestGateway::start();
    gw.ok(&["create", "killed", "--", "sleep", "600"]);
    gw.ok(&["create", "quitter", "--", "sh", "-c", "'read x; exit 3'"]);
    gw.ok(&["create", "stopped", "--", "sleep", "600"]);

    // kill -9 of the agent's process.
    let pid = gw.info("killed")["pid"].as_u64().expect("a pid");
    e2e::signal(u32::try_from(pid).expect("pid"), libc::SIGKILL);
    let info = ended(&gw, "killed");
    assert_eq!(info["state"], "exited");
    assert_eq!(
        info["stop_reason"],
        "its process was killed by signal 9 (SIGKILL)"
    );
    let human = gw.ok(&["info", "killed"]);
    assert!(
        human.contains("ended:       its process was killed by signal 9 (SIGKILL)"),
        "{human}"
    );

    // `exit 3`.
    gw.ok(&["send", "quitter", "go"]);
    let info = ended(&gw, "quitter");
    assert_eq!(
        (&info["state"], &info["exit_code"], &info["stop_reason"]),
        (
            &Value::from("exited"),
            &Value::from(3),
            &Value::from("its process exited with 3")
        )
    );

    // A stop by hand has no reason and no event.
    gw.ok(&["stop", "stopped"]);
    // The reconciler looks a few times (every 500 ms here) before the events are read.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let info = gw.info("stopped");
    assert_eq!(
        (&info["state"], &info["stop_reason"]),
        (&Value::from("stopped"), &Value::Null)
    );
    let events = agent_events(&gw);
    assert_eq!(
        events,
        vec![
            (
                "killed".to_owned(),
                "exited".to_owned(),
                "its process was killed by signal 9 (SIGKILL)".to_owned()
            ),
            (
                "quitter".to_owned(),
                "exited".to_owned(),
                "its process exited with 3".to_owned()
            ),
        ],
        "one event per end, none for the stop"
    );

    // The agents' tmux server killed: the running agent says so; the one stopped by hand
    // stays stopped without a reason.
    gw.ok(&["create", "survivor", "--", "sleep", "600"]);
    let out = gw.tmux(&["kill-server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = ended(&gw, "survivor");
    assert_eq!(
        (&info["state"], &info["stop_reason"]),
        (&Value::from("stopped"), &Value::from("tmux server gone"))
    );
    let list = gw.ok(&["list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("survivor "))
        .expect("a row");
    assert!(row.contains("stopped (tmux server gone)"), "{list}");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(gw.info("stopped")["stop_reason"], Value::Null);
    // (The exited agents' panes went with the server too: they are `stopped` now, for the
    // same reason.)
    let events = agent_events(&gw);
    assert_eq!(
        events
            .iter()
            .filter(|(agent, _, _)| agent == "survivor")
            .collect::<Vec<_>>(),
        vec![&(
            "survivor".to_owned(),
            "stopped".to_owned(),
            "tmux server gone".to_owned()
        )],
        "{events:?}"
    );
    assert!(
        events.iter().all(|(agent, _, _)| agent != "stopped"),
        "{events:?}"
    );
}

/// `ssh TARGET WORDS...` with `words` as the remote command (ssh joins them with spaces): a
/// command longer than one argument may be.
fn long_command(gw: &TestGateway, target: &str, words: &[String]) -> std::process::Output {
    gw.ssh_command()
        .arg(target)
        .args(words)
        .output()
        .expect("run ssh")
}

/// `echo` and 150 words of 999 `x`: a command line of 150,004 bytes.
fn words_150k() -> Vec<String> {
    std::iter::once("echo".to_owned())
        .chain((0..150).map(|_| "x".repeat(999)))
        .collect()
}

fn refused(out: &std::process::Output, says: &str) {
    assert_eq!(
        out.status.code(),
        Some(2),
        "a usage error: {}\n{}",
        out.status,
        stderr(out)
    );
    assert!(
        stderr(out).contains(says),
        "the error names the input ({says}): {}",
        stderr(out)
    );
    assert!(
        !stderr(out).contains("cannot be reached"),
        "not the host's fault: {}",
        stderr(out)
    );
}

/// A 100 KiB `echo` command (under every limit) runs on `target`, its output whole.
fn runs_100k(gw: &TestGateway, target: &str) {
    let fits: Vec<String> = std::iter::once("echo".to_owned())
        .chain((0..100).map(|_| "y".repeat(999)))
        .collect();
    let out = long_command(gw, target, &fits);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).len(), 100 * 1000);
}

#[test]
fn a_command_too_long_or_a_nul_byte_is_refused_naming_the_input_not_the_host() {
    let gw = TestGateway::start();
    let receiver = gw.create_paste_receiver("typist");
    gw.ok(&["create", "worker", "--", "sleep", "600"]);

    // A 150 KiB command inside an agent.
    let out = long_command(&gw, "worker@gw", &words_150k());
    refused(
        &out,
        "error: the command is 150004 bytes; at most 126976 are accepted",
    );
    // One that fits runs.
    runs_100k(&gw, "worker@gw");

    // An agent created with a 150 KiB command.
    let mut create = vec!["create".to_owned(), "huge".into(), "--".into()];
    create.extend(words_150k());
    let out = long_command(&gw, "gw", &create);
    refused(
        &out,
        "error: the agent's command is 150005 bytes; at most 8192 are accepted",
    );
    assert!(
        stderr(&out).len() < 1000,
        "the command is not repeated back"
    );
    assert!(gw.list().iter().all(|a| a["name"] != "huge"));

    // A NUL byte in text to send, and in a prompt.
    let out = gw.ssh_with_stdin(&["send", "typist", "-"], b"a\0b\n");
    refused(
        &out,
        "error: the text to send contains a NUL byte (at byte 1)",
    );
    let out = gw.ssh_with_stdin(&["create", "prompted", "--prompt", "-"], b"hi\0\n");
    refused(
        &out,
        "error: the prompt on stdin contains a NUL byte (at byte 2)",
    );
    // A line longer than tmux takes in one command is typed whole.
    let line = "z".repeat(40_000);
    let out = gw.ssh_with_stdin(&["send", "typist", "--no-enter", "-"], line.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    e2e::assert_file_gets(&receiver, line.as_bytes());
}

/// The same limits on a remote host (a network namespace running a real sshd: needs root),
/// where the command travels inside the one line sshd hands to the host user's shell.
#[test]
fn a_command_too_long_for_a_remote_host_is_refused_naming_the_input() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far", "--host", "h1", "--", "sleep", "600"]);

    let out = long_command(&gw, "far@gw", &words_150k());
    refused(
        &out,
        "error: the command is 150004 bytes; at most 126976 are accepted",
    );
    // 100 KiB fits, quoted for the host's shell and all.
    runs_100k(&gw, "far@gw");
    // Quoting for the host's shell can make a command that fits too long for the host
    // (`'` and `!` take more than a byte each once quoted).
    let quotes = vec!["echo".to_owned(), "'!".repeat(60_000)];
    let out = long_command(&gw, "far@gw", &quotes);
    refused(
        &out,
        "once quoted for the shell of host 'h1'; at most 131071 are accepted",
    );

    let out = gw.ssh_with_stdin(&["send", "far", "-"], b"a\0b\n");
    refused(
        &out,
        "error: the text to send contains a NUL byte (at byte 1)",
    );
}

/// On a remote host (a network namespace with a real sshd: needs root), the same reasons and
/// events: the host's hostctl tells them.
#[test]
fn an_agent_on_a_remote_host_whose_process_died_says_why() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far-killed", "--host", "h1", "--", "sleep", "600"]);
    gw.ok(&["create", "far-kept", "--host", "h1", "--", "sleep", "600"]);
    gw.ok(&[
        "create",
        "far-stopped",
        "--host",
        "h1",
        "--",
        "sleep",
        "600",
    ]);
    gw.ok(&["stop", "far-stopped"]);

    // The namespace shares the machine's processes: its pid is a pid here too.
    let pid = gw.info("far-killed")["pid"].as_u64().expect("a pid");
    e2e::signal(u32::try_from(pid).expect("pid"), libc::SIGKILL);
    let info = ended(&gw, "far-killed");
    assert_eq!(
        (&info["state"], &info["stop_reason"]),
        (
            &Value::from("exited"),
            &Value::from("its process was killed by signal 9 (SIGKILL)")
        )
    );

    let out = h1.tmux(&["kill-server"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = ended(&gw, "far-kept");
    assert_eq!(
        (&info["state"], &info["stop_reason"]),
        (&Value::from("stopped"), &Value::from("tmux server gone"))
    );
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(gw.info("far-stopped")["stop_reason"], Value::Null);
    let events = agent_events(&gw);
    let of = |agent: &str| events.iter().filter(|(a, _, _)| a == agent).count();
    assert_eq!(
        (of("far-killed"), of("far-kept"), of("far-stopped")),
        (2, 1, 0),
        "killed, then its pane gone with the server; the server gone; nothing for the stop: {events:?}"
    );
}
