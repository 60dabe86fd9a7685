//! Agent-aware status: working, waiting, idle and exited arising from real agents, `wait
//! --until`, and what neither a viewer nor the gateway's own look counts as activity.

use std::time::Duration;

use e2e::{Options, TestGateway, Viewer, stderr, stdout, wait_for};

/// Short periods, so statuses change within a test: working for 2 s after the screen last
/// changed, idle after 6 s without output or input.
fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[status]\nworking_for = \"2s\"\nidle_after = \"6s\"\n".into(),
        ..Options::default()
    })
}

fn wait_until(gw: &TestGateway, name: &str, until: &str) -> String {
    let out = gw.ssh(&["wait", name, "--until", until, "--timeout", "30"]);
    assert!(
        out.status.success(),
        "wait {name} --until {until}: {}\n{}\n{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn statuses_arise_from_real_agents() {
    let gw = gateway();
    // Prints, then asks a question and waits for the answer.
    gw.ok(&[
        "create",
        "asker",
        "--",
        "sh",
        "-c",
        "'echo preparing; sleep 1; printf \"Deploy to production? [y/N] \"; read answer; \
         echo \"answer=$answer\"; sleep 600'",
    ]);
    // Keeps printing.
    gw.ok(&[
        "create",
        "printer",
        "--",
        "sh",
        "-c",
        "'i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.3; done'",
    ]);
    // Prints once and ends.
    gw.ok(&["create", "quitter", "--", "sh", "-c", "'echo bye; exit 3'"]);
    // Never prints.
    gw.ok(&["create", "sleeper", "--", "sleep", "600"]);
    // The host user's login shell, at its prompt.
    gw.ok(&["create", "shell"]);

    let said = wait_until(&gw, "asker", "waiting");
    assert_eq!(said, "agent 'asker' is waiting (asks a yes/no question)\n");
    let asker = gw.info("asker");
    assert_eq!(asker["status"], "waiting");
    assert_eq!(asker["state"], "running");
    assert_eq!(asker["status_reason"], "asks a yes/no question");
    assert_eq!(asker["last_line"], "Deploy to production? [y/N]");
    assert!(asker["last_output_at"].is_string(), "{asker}");
    assert!(asker["last_input_at"].is_null(), "{asker}");

    let said = wait_until(&gw, "shell", "waiting");
    assert_eq!(said, "agent 'shell' is waiting (at the shell prompt)\n");

    // The printer is working, and stays so for longer than the idle period.
    for _ in 0..8 {
        assert_eq!(gw.shown_status("printer"), "working");
        std::thread::sleep(Duration::from_secs(1));
    }

    assert_eq!(
        wait_until(&gw, "quitter", "exited"),
        "agent 'quitter' is exited (3)\n"
    );
    // An agent that ended will not start waiting by itself: `wait` says so at once.
    let out = gw.ssh(&["wait", "quitter", "--until", "waiting", "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("agent 'quitter' is exited (3), and will not become waiting"),
        "{}",
        stderr(&out)
    );

    wait_until(&gw, "sleeper", "idle");
    let sleeper = gw.info("sleeper");
    assert_eq!(sleeper["status"], "idle");
    assert!(sleeper["status_reason"].is_null());

    // Answering the question is input, and its echo output: the asker works, then (its
    // script sleeping, no question on screen) is plain running.
    gw.ok(&["send", "asker", "y"]);
    let asker = wait_for("the asker to leave `waiting`", || {
        let a = gw.info("asker");
        (a["status"] != "waiting").then_some(a)
    });
    assert!(asker["last_input_at"].is_string(), "{asker}");
    assert!(
        gw.pane("asker").contains("answer=y"),
        "{}",
        gw.pane("asker")
    );
    // (`--until running` would return at once: `running` is any running process.)
    let asker = wait_for("the asker to be plainly running", || {
        let a = gw.info("asker");
        (a["status"] == "running").then_some(a)
    });
    assert!(asker["status_reason"].is_null(), "{asker}");

    // `list` shows every status and since when.
    let table = gw.ok(&["list"]);
    let header = table.lines().next().expect("a header");
    assert!(
        header.contains("STATUS") && header.contains("SINCE"),
        "{table}"
    );
    // (The shell, quiet since its prompt, is idle by now: idle comes before waiting.)
    for (name, status) in [
        ("asker", "running"),
        ("printer", "working"),
        ("quitter", "exited (3)"),
        ("sleeper", "idle"),
        ("shell", "idle"),
    ] {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{table}"));
        assert!(line.contains(status), "{name} is not {status}:\n{table}");
    }
    // `--status` takes the new statuses, and `running` still means every running process.
    let quiet = |filter: &str| gw.ok(&["list", "-q", "--status", filter]);
    assert_eq!(quiet("idle"), "shell\nsleeper\n");
    assert_eq!(quiet("working,exited"), "printer\nquitter\n");
    assert_eq!(quiet("running"), "asker\nprinter\nshell\nsleeper\n");
}

#[test]
fn neither_a_viewer_nor_the_gateway_counts_as_activity() {
    let mut gw = gateway();
    gw.ok(&["create", "napper", "--", "sleep", "600"]);
    wait_until(&gw, "napper", "idle");
    let before = gw.info("napper");

    // A viewer attaches at another terminal size, and types nothing.
    let viewer = Viewer::open(&gw, "napper@gw", &[], 100, 30);
    wait_for("the viewer to be attached", || {
        (gw.pane_size("napper") == (100, 29)).then_some(())
    });
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(700));
        let now = gw.info("napper");
        assert_eq!(now["status"], "idle", "{now}");
        assert_eq!(now["last_output_at"], before["last_output_at"], "{now}");
        assert_eq!(now["status_since"], before["status_since"], "{now}");
    }

    // Typing through it is input (and the terminal's echo is output).
    viewer.type_text("hello");
    let typed = wait_for("the typing to be seen", || {
        let a = gw.info("napper");
        (a["status"] != "idle").then_some(a)
    });
    assert!(typed["last_input_at"].is_string(), "{typed}");
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);

    // What is known survives the gateway.
    wait_until(&gw, "napper", "idle");
    let before = gw.info("napper");
    gw.kill9();
    gw.spawn();
    let after = gw.info("napper");
    for field in ["status", "status_since", "last_output_at", "last_input_at"] {
        assert_eq!(
            after[field], before[field],
            "{field} changed across a restart"
        );
    }
}

#[test]
fn wait_until_refuses_bad_input_and_times_out() {
    let gw = gateway();
    gw.ok(&[
        "create",
        "busy",
        "--",
        "sh",
        "-c",
        "'while true; do date; sleep 0.2; done'",
    ]);
    let out = gw.ssh(&["wait", "busy", "--until", "sleeping"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'sleeping' is not a status (one of: running, working"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["wait", "busy", "--until", "idle", "--timeout", "2"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("agent 'busy' is still working after the timeout"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["wait", "nobody", "--until", "idle"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn an_idle_agent_is_stopped_and_starts_again_on_attach() {
    let gw = gateway();
    let out = gw.ssh(&["create", "bad", "--idle-stop", "soon", "--", "sleep", "1"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("soon"), "{}", stderr(&out));
    assert!(gw.list().is_empty(), "a refused create left an agent");

    // Prints a line with the time it started, then does nothing.
    gw.ok(&[
        "create",
        "dozer",
        "--idle-stop",
        "3s",
        "--",
        "sh",
        "-c",
        "'echo \"started $(date +%s%N)\"; sleep 600'",
    ]);
    let first_run = wait_for("the agent's first line", || {
        let pane = gw.pane("dozer");
        pane.lines()
            .find(|l| l.starts_with("started "))
            .map(str::to_owned)
    });
    assert_eq!(gw.info("dozer")["idle_stop"], "3s");
    // Idle (after 6 s here), and idle for longer than 3 s: stopped, its workspace kept.
    wait_until(&gw, "dozer", "stopped");
    let dozer = gw.info("dozer");
    assert_eq!(
        (&dozer["status"], &dozer["stop_reason"]),
        (&"stopped".into(), &"idle".into())
    );
    let table = gw.ok(&["list"]);
    assert!(table.contains("stopped (idle)"), "{table}");
    assert!(gw.agents_home.join("workspaces/dozer").is_dir());
    let events = gw.ok(&["events", "--agent", "dozer"]);
    assert!(events.contains("idle-stop"), "{events}");

    // The next attach starts it again.
    let viewer = Viewer::open(&gw, "dozer@gw", &[], 100, 30);
    viewer.wait_for_text("started ");
    let second_run = wait_for("the agent's new first line", || {
        gw.pane("dozer")
            .lines()
            .find(|l| l.starts_with("started "))
            .filter(|l| *l != first_run)
            .map(str::to_owned)
    });
    assert_ne!(second_run, first_run);
    // Its new run is not the old one's idleness: the reconciler (every 500 ms here) does not
    // stop it again at once, although the viewer's terminal has another size.
    std::thread::sleep(Duration::from_millis(1500));
    let dozer = gw.info("dozer");
    assert_eq!(dozer["state"], "running", "{dozer}");
    assert_ne!(dozer["status"], "idle", "{dozer}");
    assert!(
        dozer["stop_reason"].is_null(),
        "{dozer}\n{}",
        gw.ok(&["events", "--agent", "dozer"])
    );
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);

    // An agent stopped by hand is plainly stopped.
    gw.ok(&["create", "manual", "--", "sleep", "600"]);
    gw.ok(&["stop", "manual"]);
    let table = gw.ok(&["list"]);
    let line = table
        .lines()
        .find(|l| l.starts_with("manual "))
        .expect("listed");
    assert!(
        line.contains("stopped") && !line.contains("(idle)"),
        "{table}"
    );
}
