//! The whole agent lifecycle over the real OpenSSH client, from an empty data directory.

use e2e::{Options, TestGateway, stderr, stdout, wait_for};

#[test]
fn from_an_empty_data_dir_key_add_then_every_lifecycle_command_works() {
    // No key in the gateway user's ~/.ssh: the operator is registered offline, on a data
    // directory that does not exist yet.
    let mut gw = TestGateway::prepare(Options {
        bootstrap_key: false,
        ..Options::default()
    });
    assert!(!gw.data_dir.exists());
    let public = std::fs::read_to_string(gw.key.with_extension("pub")).expect("pub key");
    let added = gw.key_add(&public, &["--name", "alice"]);
    assert!(added.status.success(), "key add: {}", stderr(&added));
    assert!(
        stdout(&added).contains("operator 'alice' (admin)"),
        "{}",
        stdout(&added)
    );
    let listed = gw
        .agentgate()
        .args(["key", "list", "--data-dir"])
        .arg(&gw.data_dir)
        .output()
        .expect("key list");
    assert!(stdout(&listed).contains("alice"), "{}", stdout(&listed));
    gw.spawn();

    assert_eq!(gw.ok(&["whoami"]).lines().next(), Some("operator: alice"));
    assert!(gw.list().is_empty());

    // create: a shell agent with tags and an environment variable.
    let created = gw.ok(&[
        "create",
        "fix-ci",
        "--tag",
        "team=infra",
        "--env",
        "GREETING=hello",
    ]);
    assert!(created.contains("created agent 'fix-ci'"), "{created}");

    // list --json has the documented shape.
    let agents = gw.list();
    assert_eq!(agents.len(), 1);
    let a = &agents[0];
    for field in [
        "name",
        "host",
        "status",
        "template",
        "command",
        "workspace",
        "tags",
        "created_at",
    ] {
        assert!(a.get(field).is_some(), "list --json lacks {field}: {a}");
    }
    assert_eq!(a["name"], "fix-ci");
    assert_eq!(a["host"], "local");
    assert_eq!(a["state"], "running");
    assert_eq!(a["template"], "shell");
    assert_eq!(a["tags"]["team"], "infra");
    let workspace = a["workspace"].as_str().expect("workspace").to_owned();
    assert!(
        std::path::Path::new(&workspace).is_dir(),
        "workspace {workspace} exists"
    );

    // The human table has stable columns.
    let table = gw.ok(&["list"]);
    assert!(table.starts_with("NAME"), "{table}");
    for column in ["HOST", "STATUS", "TEMPLATE", "AGE", "TAGS"] {
        assert!(
            table.lines().next().unwrap_or("").contains(column),
            "{table}"
        );
    }
    assert!(table.contains("team=infra"), "{table}");
    assert_eq!(gw.ok(&["list", "-q"]), "fix-ci\n");
    assert_eq!(gw.ok(&["list", "--tag", "team=other", "-q"]), "");
    assert_eq!(gw.ok(&["list", "--status", "running", "-q"]), "fix-ci\n");

    // info
    let info = gw.ok(&["info", "fix-ci"]);
    // The status is the agent-aware one (the login shell is working or waiting at its prompt);
    // the process's state is running.
    assert!(info.contains("status:"), "{info}");
    assert_eq!(gw.info("fix-ci")["state"], "running");
    assert_eq!(gw.info("fix-ci")["workspace"], workspace.as_str());

    // send types into the agent; the agent's environment and workspace are the asked ones.
    let sent = gw.ok(&[
        "send",
        "fix-ci",
        "echo",
        "$GREETING-from-$AGENTGATE_AGENT",
        ">",
        "out.txt",
    ]);
    assert!(sent.starts_with("agent 'fix-ci' took 46 bytes ("), "{sent}");
    let out_file = std::path::Path::new(&workspace).join("out.txt");
    let written = wait_for("the agent to run the sent command", || {
        std::fs::read_to_string(&out_file)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(written.trim(), "hello-from-fix-ci");

    // send from stdin
    let out = gw.ssh_with_stdin(&["send", "fix-ci", "-"], b"echo via-stdin\n");
    assert!(out.status.success(), "{}", stderr(&out));

    // logs: the output, without terminal escapes; -n limits it.
    let logs = wait_for("via-stdin in the logs", || {
        let logs = gw.ok(&["logs", "fix-ci"]);
        logs.contains("\nvia-stdin").then_some(logs)
    });
    assert!(
        !logs.contains('\u{1b}'),
        "logs contain escape sequences: {logs:?}"
    );
    let last = gw.ok(&["logs", "fix-ci", "-n", "1"]);
    assert!(last.lines().count() <= 1, "{last:?}");

    // stop keeps the workspace; start brings the agent back.
    assert!(
        gw.ok(&["stop", "fix-ci"])
            .contains("stopped agent 'fix-ci'")
    );
    assert_eq!(gw.status("fix-ci"), "stopped");
    assert!(out_file.exists(), "stop kept the workspace");
    assert!(
        gw.ok(&["start", "fix-ci"])
            .contains("started agent 'fix-ci'")
    );
    assert_eq!(gw.status("fix-ci"), "running");
    let pid_before = gw.info("fix-ci")["pid"].as_u64().expect("pid");
    assert!(
        gw.ok(&["restart", "fix-ci"])
            .contains("restarted agent 'fix-ci'")
    );
    assert_eq!(gw.status("fix-ci"), "running");
    let pid_after = gw.info("fix-ci")["pid"].as_u64().expect("pid");
    assert_ne!(pid_before, pid_after, "restart started a new process");

    // wait returns the agent's exit code.
    gw.ok(&["send", "fix-ci", "exit 7"]);
    let waited = gw.ssh(&["wait", "fix-ci", "--timeout", "20"]);
    assert_eq!(
        waited.status.code(),
        Some(7),
        "wait: {} {}",
        stdout(&waited),
        stderr(&waited)
    );
    let shown = gw.info("fix-ci");
    assert_eq!(
        (shown["status"].as_str(), shown["exit_code"].as_i64()),
        (Some("exited"), Some(7))
    );
    assert!(gw.ok(&["list"]).contains("exited (7)"));

    // destroy removes the agent, its session and its workspace.
    assert!(
        gw.ok(&["destroy", "fix-ci"])
            .contains("destroyed agent 'fix-ci'")
    );
    assert!(gw.list().is_empty());
    assert!(
        !std::path::Path::new(&workspace).exists(),
        "destroy removed the workspace"
    );
    assert!(!gw.agents_home.join("agents/fix-ci").exists());

    // Every command was recorded in the audit trail.
    let db = gw.data_dir.join("agentgate.db");
    assert!(db.is_file());
    gw.sigterm();
}

#[test]
fn wait_times_out_with_124_and_a_command_agent_reports_its_exit_code() {
    let gw = TestGateway::start();
    gw.ok(&["create", "sleeper", "--", "sleep", "600"]);
    let out = gw.ssh(&["wait", "sleeper", "--timeout", "0.5"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(stderr(&out).contains("still running"), "{}", stderr(&out));

    // ssh joins the words of a remote command with spaces, so quoted arguments go as one string.
    gw.ok(&["create quick -- sh -c 'echo done-quickly; exit 3'"]);
    let out = gw.ssh(&["wait", "quick"]);
    assert_eq!(out.status.code(), Some(3));
    let logs = gw.ok(&["logs", "quick"]);
    assert!(logs.contains("done-quickly"), "{logs:?}");
}

#[test]
fn an_agent_gets_the_users_basics_and_its_own_variables_not_the_gateways_environment() {
    // `CI=true` in the gateway's environment made Gemini CLI refuse to run interactively.
    let gw = TestGateway::start_with(Options {
        env: vec![
            ("CI".into(), "true".into()),
            ("AGENTGATE_E2E_GATEWAY_ONLY".into(), "leaked".into()),
        ],
        ..Options::default()
    });
    gw.ok(&["create envy --env GIVEN=yes -- sh -c 'env > agent.env; sleep 600'"]);
    let workspace = std::path::PathBuf::from(gw.info("envy")["workspace"].as_str().unwrap());
    let env = wait_for("the agent's environment", || {
        std::fs::read_to_string(workspace.join("agent.env"))
            .ok()
            .filter(|e| e.contains("PATH="))
    });
    let names: Vec<&str> = env.lines().filter_map(|l| l.split('=').next()).collect();
    for absent in ["CI", "AGENTGATE_E2E_GATEWAY_ONLY", "RUST_LOG"] {
        assert!(
            !names.contains(&absent),
            "{absent} in the agent's environment:\n{env}"
        );
    }
    for present in ["HOME", "USER", "PATH", "GIVEN", "AGENTGATE_AGENT"] {
        assert!(
            names.contains(&present),
            "no {present} in the agent's environment:\n{env}"
        );
    }
}

#[test]
fn a_prompt_is_typed_into_the_agent_once_it_has_started() {
    let gw = TestGateway::start();
    gw.ok(&["create prompted --prompt 'echo prompt-$((40+2))'"]);
    wait_for("the prompt's output", || {
        gw.pane("prompted").contains("prompt-42").then_some(())
    });
    // From stdin too.
    let out = gw.ssh_with_stdin(
        &["create", "prompted2", "--prompt", "-"],
        b"echo stdin-prompt-$((50+1))\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for("the stdin prompt's output", || {
        gw.pane("prompted2")
            .contains("stdin-prompt-51")
            .then_some(())
    });
}

#[test]
fn a_git_workspace_is_a_clone_at_the_asked_ref() {
    let gw = TestGateway::start();
    let repo = gw.dir.path().join("repo");
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("file.txt"), "v1\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-qm", "v1"]);
    git(&["tag", "v1"]);
    std::fs::write(repo.join("file.txt"), "v2\n").expect("write");
    git(&["commit", "-qam", "v2"]);
    let url = format!("file://{}", repo.display());
    gw.ok(&["create", "cloned", "--git", &url, "--ref", "v1"]);
    let workspace = gw.info("cloned")["workspace"]
        .as_str()
        .expect("workspace")
        .to_owned();
    let content = std::fs::read_to_string(std::path::Path::new(&workspace).join("file.txt"))
        .expect("cloned file");
    assert_eq!(content, "v1\n");
    // A bad URL fails cleanly and leaves nothing behind.
    let out = gw.ssh(&[
        "create",
        "badclone",
        "--git",
        "file:///nonexistent/repo.git",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("error:"), "{}", stderr(&out));
    assert_eq!(gw.list().len(), 1);
    assert!(!gw.agents_home.join("workspaces/badclone").exists());
}

#[test]
fn a_dir_workspace_is_used_in_place_and_never_deleted() {
    let gw = TestGateway::start();
    let dir = gw.dir.path().join("project");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "mine").expect("write");
    gw.ok(&[
        "create",
        "indir",
        "--dir",
        dir.to_str().expect("utf8"),
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(
        gw.info("indir")["workspace"].as_str(),
        Some(dir.canonicalize().expect("canon").to_str().expect("utf8"))
    );
    gw.ok(&["destroy", "indir", "--force"]);
    assert!(
        dir.join("keep.txt").exists(),
        "a --dir workspace survives destroy"
    );
}

#[test]
fn an_agent_found_on_the_host_but_not_in_the_store_is_adopted() {
    let gw = TestGateway::start();
    let request = r#"{"name":"stray","command":{"kind":"argv","argv":["sleep","600"]},
        "workspace":{"kind":"empty"},"tags":{"found":"yes"},"created_by":"someone"}"#;
    let mut child = std::process::Command::new(e2e::bin_dir().join("hostctl"))
        .args(["create", "--json"])
        .env("AGENTGATE_HOME", &gw.agents_home)
        .env("AGENTGATE_TMUX_SOCKET", &gw.tmux_socket)
        .env("TMUX_TMPDIR", gw.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("hostctl");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), request.as_bytes())
        .expect("write");
    assert!(child.wait_with_output().expect("wait").status.success());
    let agents = gw.list();
    let stray = agents
        .iter()
        .find(|a| a["name"] == "stray")
        .expect("adopted");
    assert_eq!(stray["state"], "running");
    assert_eq!(stray["tags"]["found"], "yes");
    assert_eq!(stray["created_by"], "someone");
}

/// Whether a process runs (a zombie, ended and not yet reaped, does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
    })
}

fn pid_in(path: &std::path::Path) -> u32 {
    wait_for(&format!("{} to hold a pid", path.display()), || {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    })
}

#[test]
fn stop_and_destroy_end_what_the_agent_started_even_outside_its_session() {
    let gw = TestGateway::start();
    // The agent starts a daemon that leaves its tmux session (setsid) and ignores SIGHUP and
    // SIGTERM, as some agent CLIs' background servers do. Without a sandbox, where the agent's
    // run is told by its mark and an operator's process outlives a stop; in a sandbox
    // everything in it ends with the agent (sandbox::sessions_join_the_agents_sandbox_*).
    let daemon = "trap \"\" HUP TERM; echo $$ > daemon.pid; while :; do sleep 1; done";
    gw.ok(&[
        "create",
        "spawner",
        "--sandbox",
        "none",
        "--",
        "sh",
        "-c",
        &e2e::shell_quote(&format!(
            "setsid sh -c {} </dev/null >/dev/null 2>&1 & sleep 600",
            e2e::shell_quote(daemon)
        )),
    ]);
    let workspace = gw.agents_home.join("workspaces").join("spawner");
    let daemon_pid = pid_in(&workspace.join("daemon.pid"));
    assert!(running(daemon_pid));
    // A command the operator runs inside the agent is theirs, not the agent's run.
    let out = gw.ssh_run(&[
        "spawner@gw",
        "setsid sh -c 'echo $$ > mine.pid; exec sleep 600' </dev/null >/dev/null 2>&1 &",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mine = pid_in(&workspace.join("mine.pid"));

    gw.ok(&["stop", "spawner"]);
    wait_for("the daemon to end with its agent", || {
        (!running(daemon_pid)).then_some(())
    });
    assert!(running(mine), "stop ended a process the operator started");

    // Started again, it starts a new daemon; destroying the agent ends that one too.
    std::fs::remove_file(workspace.join("daemon.pid")).expect("remove daemon.pid");
    gw.ok(&["start", "spawner"]);
    let second = pid_in(&workspace.join("daemon.pid"));
    assert_ne!(second, daemon_pid);
    gw.ok(&["destroy", "spawner", "--force"]);
    wait_for("the second daemon to end with its agent", || {
        (!running(second)).then_some(())
    });
    assert!(running(mine));
    e2e::signal(mine, 9);
}

/// The numbers N of the `line-N ...` lines in `text`, in order.
fn numbered(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("line-"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn output_log_starts_anew_past_its_limit_and_logs_follows_across() {
    // A small limit (8 KiB), so that a few seconds of output fill several files.
    let gw = TestGateway::start_with(Options {
        env: vec![("AGENTGATE_LOG_MAX".into(), "8192".into())],
        ..Options::default()
    });
    let pad = "x".repeat(90);
    gw.ok(&[
        "create",
        "chatty",
        "--",
        "sh",
        "-c",
        &e2e::shell_quote(&format!(
            "sleep 2; i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo \"line-$i {pad}\"; \
             sleep 0.01; done; echo done-printing; sleep 600"
        )),
    ]);
    // Following from before the first line.
    let follower = gw
        .ssh_command()
        .args(["gw", "logs", "chatty", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let log = gw.agents_home.join("agents/chatty/output.log");
    wait_for("the agent to finish printing", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("done-printing"))
    });
    // Each file within the limit (and one chunk), the one before kept beside it.
    let size = std::fs::metadata(&log).expect("output.log").len();
    let previous = std::fs::metadata(log.with_extension("log.1")).expect("output.log.1");
    assert!(size <= 8192 + 4096, "output.log is {size} bytes");
    assert!(previous.len() <= 8192 + 4096, "{}", previous.len());
    // `logs` shows the last two files: the end, not the beginning.
    let shown = numbered(&gw.ok(&["logs", "chatty"]));
    assert_eq!(shown.last(), Some(&300), "{shown:?}");
    assert!(shown.first().is_some_and(|&n| n > 1), "{shown:?}");
    assert!(shown.windows(2).all(|w| w[1] == w[0] + 1), "{shown:?}");
    // The follower saw every line once, in order, across the new files.
    std::thread::sleep(std::time::Duration::from_millis(500));
    e2e::signal(follower.id(), 15);
    let out = follower.wait_with_output().expect("follower");
    let followed = numbered(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(followed, (1..=300).collect::<Vec<_>>());
}

#[test]
fn a_text_of_several_lines_is_sent_as_one_paste_not_typed_line_by_line() {
    let gw = TestGateway::start();
    let got = gw.create_paste_receiver("paster");
    // Typed, each line break would be an Enter: the first line would be submitted alone.
    let out = gw.ssh_with_stdin(&["send", "paster", "-"], b"line1\nline2\nline3\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut expected = b"\x1b[200~line1\rline2\rline3\x1b[201~\r".to_vec();
    e2e::assert_file_gets(&got, &expected);

    // The end-of-paste mark in a text cannot end the paste early; CR LF is one line break.
    let out = gw.ssh_with_stdin(
        &["send", "paster", "-"],
        b"rm -rf /\x1b[201~\r\nnot keys\r\n\r\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    expected.extend(b"\x1b[200~rm -rf /\rnot keys\r\x1b[201~\r");
    e2e::assert_file_gets(&got, &expected);

    // A single line is typed as before; --no-enter leaves out the Enter after a paste too.
    gw.ok(&["send", "paster", "one", "line"]);
    expected.extend(b"one line\r");
    e2e::assert_file_gets(&got, &expected);
    let out = gw.ssh_with_stdin(&["send", "paster", "--no-enter", "-"], b"a\n\nb\n");
    assert!(out.status.success(), "{}", stderr(&out));
    expected.extend(b"\x1b[200~a\r\rb\x1b[201~");
    e2e::assert_file_gets(&got, &expected);

    // A prompt of several lines given at create is pasted too.
    let out = gw.ssh_with_stdin(
        &[
            "create",
            "prompted",
            "--prompt",
            "-",
            "--",
            "sh",
            "-c",
            &e2e::shell_quote(e2e::PASTE_RECEIVER),
        ],
        b"do this\nthen that\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let workspace = gw.info("prompted")["workspace"]
        .as_str()
        .expect("workspace")
        .to_owned();
    e2e::assert_file_gets(
        &std::path::Path::new(&workspace).join("got"),
        b"\x1b[200~do this\rthen that\x1b[201~\r",
    );
}
