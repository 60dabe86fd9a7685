//! Bad input gets a clear error and exit status 1 or 2, and nothing else changes.

use e2e::{TestGateway, stderr, stdout};

/// The agents and files as they are, to compare before and after a refused command.
fn snapshot(gw: &TestGateway) -> (String, Vec<String>) {
    let mut files: Vec<String> = ["agents", "workspaces"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(gw.agents_home.join(d))
                .into_iter()
                .flatten()
        })
        .filter_map(|e| e.ok().map(|e| e.path().display().to_string()))
        .collect();
    files.sort();
    (gw.ok(&["list", "-q"]), files)
}

fn refused(gw: &TestGateway, args: &[&str], status: i32, says: &str) {
    let before = snapshot(gw);
    let out = gw.ssh(args);
    assert_eq!(
        out.status.code(),
        Some(status),
        "ssh gw {args:?}: stdout {:?} stderr {:?}",
        stdout(&out),
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains("error:"),
        "ssh gw {args:?} printed no error: {err:?}"
    );
    assert!(
        err.contains(says),
        "ssh gw {args:?}: expected {says:?} in {err:?}"
    );
    assert_eq!(snapshot(gw), before, "ssh gw {args:?} changed something");
}

#[test]
fn bad_names_are_refused_with_a_hint() {
    let gw = TestGateway::start();
    gw.ok(&["create", "existing", "--", "sleep", "600"]);
    refused(&gw, &["create", "Bad_Name"], 2, "invalid agent name");
    refused(&gw, &["create", "-- -x"], 2, "error");
    refused(&gw, &["create", "list"], 2, "reserved");
    refused(&gw, &["create", "root"], 2, "reserved");
    refused(&gw, &["create", &"x".repeat(64)], 2, "limit is 63");
    refused(&gw, &["create", "existing"], 1, "already exists");
    refused(&gw, &["create", "tester"], 2, "name of an operator");
}

#[test]
fn names_and_text_with_shell_metacharacters_never_reach_a_shell() {
    let gw = TestGateway::start();
    let marker = gw.dir.path().join("pwned");
    let m = marker.display().to_string();
    for name in [
        format!("'a;touch {m}'"),
        format!("'$(touch {m})'"),
        format!("'`touch {m}`'"),
        format!("'a|touch {m}'"),
        "'../../etc'".to_owned(),
        "'a b'".to_owned(),
    ] {
        let line = format!("create {name}");
        let out = gw.ssh(&[&line]);
        assert_eq!(out.status.code(), Some(2), "{line}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("invalid agent name"),
            "{line}: {}",
            stderr(&out)
        );
        let line = format!("info {name}");
        let out = gw.ssh(&[&line]);
        assert_eq!(out.status.code(), Some(1), "{line}: {}", stderr(&out));
    }
    // Text sent to an agent is typed as it is: without Enter, nothing runs it.
    gw.ok(&["create", "meta", "--", "cat"]);
    let text = format!("$(touch {m}); `touch {m}` | touch {m};");
    let out = gw.ssh_with_stdin(&["send", "meta", "--no-enter", "-"], text.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    e2e::wait_for("the literal text on the agent's screen", || {
        gw.pane("meta")
            .contains(&format!("| touch {m};"))
            .then_some(())
    });
    assert!(!marker.exists(), "user text was run by a shell");
}

#[test]
fn unknown_agents_commands_and_flags_are_refused() {
    let gw = TestGateway::start();
    for cmd in [
        "info", "stop", "start", "restart", "destroy", "logs", "wait", "send", "snapshot", "diff",
    ] {
        let mut args = vec![cmd, "ghost"];
        if cmd == "send" {
            args.push("hello");
        }
        refused(&gw, &args, 1, "no agent named 'ghost'");
    }
    refused(&gw, &["frobnicate"], 2, "unrecognized subcommand");
    refused(&gw, &["list", "--bogus"], 2, "--bogus");
    refused(&gw, &["create"], 2, "required");
    refused(
        &gw,
        &["create", "x", "--template", "nope"],
        2,
        "no template named 'nope'",
    );
    refused(&gw, &["create", "x", "--env", "NOEQUALS"], 2, "KEY=VALUE");
    refused(
        &gw,
        &["create", "x", "--env", "BAD-KEY=1"],
        2,
        "not a valid environment variable name",
    );
    refused(
        &gw,
        &["create", "x", "--dir", "relative/path"],
        2,
        "not an absolute path",
    );
    refused(
        &gw,
        &["create", "x", "--dir", "/nonexistent/dir"],
        2,
        "does not exist",
    );
    refused(&gw, &["create 'x"], 2, "unterminated quote");
    refused(
        &gw,
        &["wait", "ghost", "--timeout", "soon"],
        2,
        "invalid value",
    );
}

#[test]
fn a_template_with_a_missing_required_variable_fails_naming_it() {
    let gw = TestGateway::start();
    refused(
        &gw,
        &["create", "tok", "--template", "needs-token"],
        2,
        "AGENTGATE_E2E_TOKEN",
    );
    gw.ok(&[
        "create",
        "tok",
        "--template",
        "needs-token",
        "--env",
        "AGENTGATE_E2E_TOKEN=x",
    ]);
    assert_eq!(gw.status("tok"), "running");
}

#[test]
fn destroying_a_running_agent_needs_force() {
    let gw = TestGateway::start();
    gw.ok(&["create", "busy", "--", "sleep", "600"]);
    refused(&gw, &["destroy", "busy"], 1, "is running");
    assert_eq!(gw.status("busy"), "running");
    gw.ok(&["destroy", "busy", "--force"]);
    assert!(gw.list().is_empty());
}

#[test]
fn help_is_printed_for_no_command_and_for_every_command() {
    let gw = TestGateway::start();
    let help = gw.ok(&[]);
    assert!(help.contains("create") && help.contains("Usage"), "{help}");
    let help = gw.ok(&["help"]);
    assert!(help.contains("destroy"), "{help}");
    let help = gw.ok(&["create", "--help"]);
    assert!(help.contains("--template"), "{help}");
    assert!(gw.ok(&["version"]).contains("agentgate"));
}

#[test]
fn what_a_route_does_not_serve_is_refused_with_a_clear_message() {
    let gw = TestGateway::start();
    gw.ok(&["create", "inside", "--", "sleep", "600"]);
    // Forwarding is for connections to an agent, not to the gateway itself.
    let out = gw.ssh_run(&["-o", "LogLevel=INFO", "-W", "127.0.0.1:9", "gw"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("connections to an agent"),
        "{}",
        stderr(&out)
    );
    // The gateway itself serves no SFTP.
    let out = gw.ssh_run(&["-s", "gw", "sftp"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no 'sftp' subsystem"),
        "{}",
        stderr(&out)
    );
    // An agent serves no subsystem but SFTP.
    let out = gw.ssh_run(&["-s", "inside@gw", "netconf"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("subsystem request failed"),
        "{}",
        stderr(&out)
    );
    // `-R` is refused on the control route (inside an agent it listens: see remote_forward).
    let out = gw.ssh_run(&[
        "-o",
        "ExitOnForwardFailure=yes",
        "-R",
        "127.0.0.1:0:127.0.0.1:9",
        "gw",
        "list",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr(&out).contains("remote port forwarding failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_template_rule_that_is_no_regular_expression_is_the_config_files_error() {
    let gw = TestGateway::prepare(e2e::Options::default());
    let mut config = std::fs::read_to_string(&gw.config_path).expect("config");
    config.push_str(
        "\n[templates.broken]\nwaiting = [{ pattern = \"(unclosed\", reason = \"x\" }]\n",
    );
    std::fs::write(&gw.config_path, config).expect("config");
    // `serve` and every other command that reads the file refuse it, naming the file and the
    // template.
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["key", "list"],
    ] {
        let out = gw
            .agentgate()
            .args(&args)
            .arg("--data-dir")
            .arg(&gw.data_dir)
            .arg("--config")
            .arg(&gw.config_path)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run agentgate");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&gw.config_path.display().to_string())
                && err.contains("template 'broken'")
                && err.contains("regular expression"),
            "{args:?}: {err}"
        );
    }
}
