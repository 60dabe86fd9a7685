//! Agents that talk back, through the gateway with the real agent CLIs against the fake model
//! API: status from the CLIs' own hooks (and from the screen when hooks are missing), `send`
//! that the CLI takes, `approve` and `deny` of its permission dialog, and its exit.

use e2e::agent_clis::{AgentCli, create_agent, create_agent_with};
use e2e::fake_model::{FakeModel, HELLO_REPLY, PROBE_COMMAND, PROBE_FILE, SLOW_REPLY};
use e2e::{Options, TestGateway, stderr, stdout, wait_for};

/// The CLIs need a while to start on two busy cores: `wait` is given this many seconds.
const CLI_PATIENCE: &str = "90";

fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[status]\nworking_for = \"3s\"\nidle_after = \"10m\"\n".into(),
        private_dir: true,
        ..Options::default()
    })
}

fn wait_until(gw: &TestGateway, name: &str, until: &str) -> String {
    let out = gw.ssh(&["wait", name, "--until", until, "--timeout", CLI_PATIENCE]);
    assert!(
        out.status.success(),
        "wait {name} --until {until}: {}\n{}\n{}\nscreen:\n{}",
        out.status,
        stdout(&out),
        stderr(&out),
        gw.pane(name)
    );
    stdout(&out)
}

/// What each CLI's hooks tell (`hook`) and what only its screen does (`screen`).
struct Expect {
    /// Where its status at the prompt comes from.
    at_prompt: &'static str,
    /// Where its permission question comes from.
    asking: &'static str,
    /// What ends it.
    exit: &'static str,
}

fn expect(cli: AgentCli) -> Expect {
    match cli {
        AgentCli::Claude => Expect {
            at_prompt: "hook",
            asking: "hook",
            exit: "/exit",
        },
        // Codex's hooks run only once trusted in its own dialog: only `notify` (a turn's end)
        // is wired, and the screen tells the rest.
        AgentCli::Codex => Expect {
            at_prompt: "screen",
            asking: "screen",
            exit: "/quit",
        },
        AgentCli::Gemini => Expect {
            at_prompt: "hook",
            asking: "hook",
            exit: "/quit",
        },
        AgentCli::Aider => unreachable!("aider has no permission dialog of its own"),
    }
}

/// The whole life of one CLI's agent through the gateway: at its prompt, a prompt taken and
/// answered, a tool call that waits with the command as its reason, approved (it runs) and
/// denied (it does not), and its exit.
fn talks_back(cli: AgentCli) {
    let expect = expect(cli);
    let gw = gateway();
    let fake = FakeModel::start();
    let name = cli.command_name();
    let workspace = create_agent(&gw, &fake, cli, name, None);
    let probe = workspace.join(PROBE_FILE);
    let asking = format!("asks permission to run `{PROBE_COMMAND}`");

    // At its prompt.
    wait_for("the prompt", || {
        let info = gw.info(name);
        (info["status_reason"] == "waits for a prompt").then_some(())
    });
    let info = gw.info(name);
    assert_eq!(info["cli"], name, "{info}");
    assert_eq!(info["status"], "waiting", "{info}");
    assert_eq!(info["status_source"], expect.at_prompt, "{info}");

    // A prompt reaches the model, and the CLI says it took it.
    let sent = gw.ok(&["send", name, "hello", "there"]);
    assert!(
        sent.starts_with(&format!("agent '{name}' took 11 bytes (")),
        "{sent}"
    );
    if expect.at_prompt == "hook" {
        assert_eq!(
            sent,
            format!("agent '{name}' took 11 bytes (its CLI reported the prompt)\n")
        );
    }
    fake.wait_for_user_text("hello there");
    wait_for("the reply on the screen", || {
        gw.pane(name).contains(HELLO_REPLY).then_some(())
    });
    // Its log reads as the screen did: the model's sentence with its spaces.
    let logs = gw.ok(&["logs", name]);
    assert!(logs.contains(HELLO_REPLY), "{cli:?} logs:\n{logs}");

    // A tool call: waiting, and the reason names the command.
    gw.ok(&["send", name, "RUNCMD", "please"]);
    let info = wait_for("the permission asked", || {
        let info = gw.info(name);
        (info["status_reason"] == asking.as_str()).then_some(info)
    });
    assert_eq!(info["status"], "waiting", "{info}");
    assert_eq!(info["status_source"], expect.asking, "{info}");
    assert!(
        !probe.exists(),
        "{cli:?} ran the command before it was approved"
    );

    // Approved: the command runs, the turn ends at the prompt.
    let approved = gw.ok(&["approve", name]);
    assert!(
        approved.starts_with(&format!("approved: agent '{name}' {asking} (")),
        "{approved}"
    );
    wait_for("the approved command's file", || {
        probe.exists().then_some(())
    });
    fake.wait_for_tool_result();
    wait_for("the prompt again", || {
        (gw.info(name)["status_reason"] == "waits for a prompt").then_some(())
    });

    // Nothing asked: approve says so and fails.
    let out = gw.ssh(&["approve", name]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!(
            "error: agent '{name}' asks nothing to approve: it is waiting (waits for a prompt)"
        )),
        "{}",
        stderr(&out)
    );

    // Denied: the command does not run.
    std::fs::remove_file(&probe).expect("remove the probe");
    gw.ok(&["send", name, "RUNCMD", "again"]);
    wait_for("the permission asked again", || {
        (gw.info(name)["status_reason"] == asking.as_str()).then_some(())
    });
    let denied = gw.ok(&["deny", name]);
    assert!(
        denied.starts_with(&format!("denied: agent '{name}' {asking} (")),
        "{denied}"
    );
    wait_for("the prompt after the denial", || {
        let info = gw.info(name);
        (info["status"] == "waiting" && info["status_reason"] == "waits for a prompt").then_some(())
    });
    assert!(!probe.exists(), "{cli:?} ran a denied command");

    // Its exit is the pane's: exited, with the code.
    gw.ok(&["send", name, expect.exit]);
    wait_until(&gw, name, "exited");
    assert_eq!(gw.info(name)["exit_code"], 0);
}

#[test]
fn claude_code_talks_back() {
    talks_back(AgentCli::Claude);
}

#[test]
fn codex_talks_back() {
    talks_back(AgentCli::Codex);
}

#[test]
fn gemini_cli_talks_back() {
    talks_back(AgentCli::Gemini);
}

#[test]
fn a_cli_whose_hooks_are_off_gets_its_status_from_the_screen_and_info_says_so() {
    let gw = gateway();
    let fake = FakeModel::start();
    create_agent(
        &gw,
        &fake,
        AgentCli::Claude,
        "nohooks",
        Some(serde_json::json!({"disableAllHooks": true})),
    );
    wait_until(&gw, "nohooks", "waiting");
    let info = gw.info("nohooks");
    assert_eq!(info["status_source"], "screen", "{info}");
    assert_eq!(info["status_reason"], "waits for a prompt", "{info}");
    // The text is still taken, seen on the screen.
    let sent = gw.ok(&["send", "nohooks", "RUNCMD", "please"]);
    assert_eq!(sent, "agent 'nohooks' took 13 bytes (its screen changed)\n");
    fake.wait_for_user_text("RUNCMD please");
    wait_for("the dialog, from the screen", || {
        let info = gw.info("nohooks");
        (info["status"] == "waiting"
            && info["status_reason"] == format!("asks permission to run `{PROBE_COMMAND}`"))
        .then_some(info)
    });
    let info = gw.info("nohooks");
    assert_eq!(info["status_source"], "screen", "{info}");
    gw.ok(&["approve", "nohooks"]);
}

/// `create --prompt` gives the prompt once the CLI is at its prompt, and a `wait --until
/// waiting` right after a `send` waits for the turn the text began, not the state before it.
fn prompt_at_create_and_wait_after_send(cli: AgentCli) {
    let gw = gateway();
    let fake = FakeModel::start();
    let name = cli.command_name();
    create_agent_with(
        &gw,
        &fake,
        cli,
        name,
        None,
        &["--prompt", "'hello from create'"],
    );
    fake.wait_for_user_text("hello from create");
    wait_for("the reply on the screen", || {
        gw.pane(name).contains(HELLO_REPLY).then_some(())
    });
    wait_until(&gw, name, "waiting");
    fake.set_slow_delay(std::time::Duration::from_secs(6));
    gw.ok(&["send", name, "SLOWREPLY", "please"]);
    let said = wait_until(&gw, name, "waiting");
    assert_eq!(
        said,
        format!("agent '{name}' is waiting (waits for a prompt)\n")
    );
    assert!(
        gw.pane(name).contains(SLOW_REPLY),
        "wait came back before the turn ended:\n{}",
        gw.pane(name)
    );
}

#[test]
fn claude_code_takes_its_prompt_at_create_and_wait_follows_the_send() {
    prompt_at_create_and_wait_after_send(AgentCli::Claude);
}

#[test]
fn codex_takes_its_prompt_at_create_and_wait_follows_the_send() {
    prompt_at_create_and_wait_after_send(AgentCli::Codex);
}

/// aider: recognised from `create NAME -- aider ...` (list shows it), its end of reply told by
/// its notifications command, its question to run a command told by its screen and approved.
#[test]
fn aider_is_recognised_and_its_question_to_run_a_command_is_approved() {
    let gw = gateway();
    let fake = FakeModel::start();
    let workspace = create_agent(&gw, &fake, AgentCli::Aider, "aider", None);
    let listed = gw.ok(&["list"]);
    let row = listed
        .lines()
        .find(|l| l.starts_with("aider "))
        .unwrap_or_else(|| panic!("no aider row in:\n{listed}"));
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert!(columns.contains(&"aider"), "{listed}");
    assert_eq!(gw.info("aider")["cli"], "aider");
    wait_until(&gw, "aider", "waiting");
    wait_for("the prompt", || {
        (gw.info("aider")["status_reason"] == "waits for a prompt").then_some(())
    });
    let sent = gw.ok(&["send", "aider", "hello", "there"]);
    // Its screen, or its reply's end if the reply came first.
    assert!(sent.starts_with("agent 'aider' took 11 bytes ("), "{sent}");
    fake.wait_for_user_text("hello there");
    // The end of its reply comes through its notifications command.
    let info = wait_for("the end of the reply, from its hook", || {
        let info = gw.info("aider");
        (info["status_source"] == "hook" && info["status_reason"] == "waits for a prompt")
            .then_some(info)
    });
    assert_eq!(info["status"], "waiting", "{info}");
    gw.ok(&["send", "aider", "RUNCMD", "please"]);
    wait_for("the question to run the command", || {
        let info = gw.info("aider");
        (info["status_reason"] == "asks permission to run a command").then_some(())
    });
    let approved = gw.ok(&["approve", "aider"]);
    assert!(
        approved.starts_with("approved: agent 'aider' asks permission to run a command ("),
        "{approved}"
    );
    wait_for("the approved command's file", || {
        workspace.join(PROBE_FILE).exists().then_some(())
    });
}

/// A hook event is seen at once, not at the reconciler's next round: with a round an hour
/// apart and nobody asking (no `list`, no `info`), `watch` still shows the agent turn to waiting
/// on the permission it asks, which only the host's hook watch can have told.
#[test]
fn a_hook_event_is_recorded_without_waiting_for_the_reconcilers_round() {
    let gw = TestGateway::start_with(Options {
        private_dir: true,
        reconcile_interval: "1h",
        ..Options::default()
    });
    let fake = FakeModel::start();
    create_agent(&gw, &fake, AgentCli::Claude, "cc", None);
    wait_until(&gw, "cc", "waiting");
    let mut watch = gw
        .ssh_command()
        .args(["gw", "watch", "cc", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start watch");
    let out = watch.stdout.take().expect("watch's stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    gw.ok(&["send", "cc", "RUNCMD", "please"]);
    let asking = format!("asks permission to run `{PROBE_COMMAND}`");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no change to waiting came; watch printed:\n{seen:#?}"));
        let change: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
        seen.push(change.clone());
        if change["to"] == "waiting" && change["reason"] == asking.as_str() {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
}

/// An agent can write its own hook events (it runs as the same user as hostctl): a forged
/// permission request makes it `waiting`, but `approve` answers only a question its CLI shows
/// on the screen, and presses nothing here.
#[test]
fn approve_answers_only_a_question_on_the_screen_not_a_forged_hook_event() {
    let gw = gateway();
    let fake = FakeModel::start();
    create_agent(&gw, &fake, AgentCli::Claude, "cc", None);
    wait_until(&gw, "cc", "waiting");
    let forged = serde_json::json!({
        "hook_event_name": "PermissionRequest", "tool_name": "Bash",
        "tool_input": {"command": "ls"}
    });
    let mut hook = std::process::Command::new(e2e::bin_dir().join("hostctl"))
        .args(["hook", "--home"])
        .arg(&gw.agents_home)
        .args(["--agent", "cc", "claude"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run hostctl hook");
    {
        use std::io::Write;
        let mut stdin = hook.stdin.take().expect("stdin");
        stdin
            .write_all(forged.to_string().as_bytes())
            .expect("write the event");
    }
    assert!(hook.wait().expect("wait").success());
    wait_for("the forged question", || {
        (gw.info("cc")["status_reason"] == "asks permission to run `ls`").then_some(())
    });
    let before = gw.pane("cc");
    let out = gw.ssh(&["approve", "cc"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains(
            "error: agent 'cc' asks permission to run `ls` by its CLI's hooks, but its screen shows no question to approve"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.pane("cc"), before, "approve pressed a key");
}
