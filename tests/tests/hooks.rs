//! Agents that talk back, through the gateway with the real agent CLIs against the fake model
//! API: status from the CLIs' own hooks (and from the screen when hooks are missing), `send`
//! that the CLI takes, `approve` and `deny` of its permission dialog, and its exit.

use std::path::PathBuf;

use e2e::agent_clis::{self, AgentCli};
use e2e::fake_model::{FakeModel, HELLO_REPLY, PROBE_COMMAND, PROBE_FILE};
use e2e::{Options, TestGateway, stderr, stdout, wait_for};

/// The CLIs need a while to start on two busy cores: `wait` is given this many seconds.
const CLI_PATIENCE: &str = "90";

fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[status]\nworking_for = \"3s\"\nidle_after = \"10m\"\n".into(),
        ..Options::default()
    })
}

/// Creates agent `name` running `cli` against `fake`, in a workspace of its own; returns the
/// workspace. `settings` is merged into the CLI's user settings (Claude Code only).
fn create_agent(
    gw: &TestGateway,
    fake: &FakeModel,
    cli: AgentCli,
    name: &str,
    settings: Option<serde_json::Value>,
) -> PathBuf {
    let workspace = gw.dir.path().join(format!("ws-{name}"));
    std::fs::create_dir_all(&workspace).expect("workspace");
    let config = gw.dir.path().join(format!("cfg-{name}"));
    let launch = agent_clis::prepare(cli, &config, &workspace, &fake.base_url());
    if let Some(extra) = settings {
        let path = config.join("claude").join("settings.json");
        let mut current: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("settings")).expect("json");
        for (k, v) in extra.as_object().expect("an object") {
            current[k] = v.clone();
        }
        std::fs::write(&path, current.to_string()).expect("write settings");
    }
    let mut args: Vec<String> = vec![
        "create".into(),
        name.into(),
        "--dir".into(),
        workspace
            .canonicalize()
            .expect("canonical")
            .display()
            .to_string(),
    ];
    let home = gw.dir.path().join(format!("home-{name}"));
    std::fs::create_dir_all(&home).expect("home");
    for (k, v) in launch.base_env(&home).iter().chain(&launch.env) {
        args.push("--env".into());
        args.push(format!("{k}={v}"));
    }
    args.push("--".into());
    args.push(launch.program.display().to_string());
    args.extend(launch.args.iter().cloned());
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    gw.ok(&words);
    workspace
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

#[test]
fn claude_codes_status_comes_from_its_hooks_and_its_permission_dialog_is_approved_and_denied() {
    let gw = gateway();
    let fake = FakeModel::start();
    let workspace = create_agent(&gw, &fake, AgentCli::Claude, "cc", None);
    let probe = workspace.join(PROBE_FILE);

    // At its prompt, told by its SessionStart hook.
    wait_until(&gw, "cc", "waiting");
    let info = gw.info("cc");
    assert_eq!(info["cli"], "claude", "{info}");
    assert_eq!(info["status_reason"], "waits for a prompt", "{info}");
    assert_eq!(info["status_source"], "hook", "{info}");

    // A prompt reaches the model, and the CLI says it took it.
    let sent = gw.ok(&["send", "cc", "hello", "there"]);
    assert_eq!(
        sent,
        "agent 'cc' took 11 bytes (its CLI reported the prompt)\n"
    );
    fake.wait_for_user_text("hello there");
    wait_for("the reply on the screen", || {
        gw.pane("cc").contains(HELLO_REPLY).then_some(())
    });

    // A tool call: waiting, and the reason names the command.
    gw.ok(&["send", "cc", "RUNCMD", "please"]);
    wait_for("the permission asked", || {
        let info = gw.info("cc");
        (info["status"] == "waiting" && info["status_reason"] != "waits for a prompt")
            .then_some(info)
    });
    let info = gw.info("cc");
    assert_eq!(
        info["status_reason"],
        format!("asks permission to run `{PROBE_COMMAND}`"),
        "{info}\n{}",
        gw.pane("cc")
    );
    assert_eq!(info["status_source"], "hook", "{info}");
    assert!(!probe.exists());

    // Approved: the command runs, the turn ends at the prompt.
    let approved = gw.ok(&["approve", "cc"]);
    assert!(
        approved.starts_with(&format!(
            "approved: agent 'cc' asks permission to run `{PROBE_COMMAND}` ("
        )),
        "{approved}"
    );
    wait_for("the approved command's file", || {
        probe.exists().then_some(())
    });
    fake.wait_for_tool_result();
    wait_for("the prompt again", || {
        let info = gw.info("cc");
        (info["status_reason"] == "waits for a prompt").then_some(())
    });

    // Nothing asked: approve says so and fails.
    let out = gw.ssh(&["approve", "cc"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("error: agent 'cc' asks nothing to approve: it is waiting"),
        "{}",
        stderr(&out)
    );

    // Denied: the command does not run.
    std::fs::remove_file(&probe).expect("remove the probe");
    gw.ok(&["send", "cc", "RUNCMD", "again"]);
    wait_for("the permission asked again", || {
        let info = gw.info("cc");
        (info["status_reason"] == format!("asks permission to run `{PROBE_COMMAND}`")).then_some(())
    });
    let denied = gw.ok(&["deny", "cc"]);
    assert!(
        denied.starts_with("denied: agent 'cc' asks permission"),
        "{denied}"
    );
    wait_for("the prompt after the denial", || {
        let info = gw.info("cc");
        (info["status"] == "waiting" && info["status_reason"] == "waits for a prompt").then_some(())
    });
    assert!(!probe.exists(), "a denied command ran");

    // Its exit is the pane's: exited, with the code.
    gw.ok(&["send", "cc", "/exit"]);
    wait_until(&gw, "cc", "exited");
    assert_eq!(gw.info("cc")["exit_code"], 0);
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
        (info["status"] == "waiting" && info["status_reason"] == "asks permission").then_some(info)
    });
    let info = gw.info("nohooks");
    assert_eq!(info["status_source"], "screen", "{info}");
    gw.ok(&["approve", "nohooks"]);
}
