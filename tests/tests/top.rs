//! The live view (`ssh -t gw`, `ssh -t gw top`), driven through a real terminal: the OpenSSH
//! client inside a tmux pane, read back with capture-pane like a person reads a screen.

use std::time::{Duration, Instant};

use e2e::{Options, TestGateway, Viewer, stderr, stdout, wait_for};

/// Short periods, so statuses change within the test.
fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[status]\nworking_for = \"3s\"\nidle_after = \"10m\"\n".into(),
        ..Options::default()
    })
}

/// The screen's line that lists `name` (after the selection mark, if any).
fn row(screen: &str, name: &str) -> Option<String> {
    screen
        .lines()
        .find(|l| {
            let l = l.strip_prefix("> ").unwrap_or(l).trim_start();
            l.split_whitespace().next() == Some(name)
        })
        .map(str::to_owned)
}

/// Waits until the viewer's screen lists `name` with `text` on its line; returns the screen.
fn wait_for_row(viewer: &Viewer, name: &str, text: &str) -> String {
    wait_for_screen(viewer, &format!("{name} with {text:?}"), |s| {
        row(s, name).is_some_and(|r| r.contains(text))
    })
}

/// Waits until `check` holds for the viewer's screen; returns the screen. On a time-out, the
/// failure shows the last screen seen.
fn wait_for_screen(viewer: &Viewer, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let screen = viewer.screen();
        if check(&screen) {
            return screen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; the screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_live_view_shows_selects_attaches_and_acts_on_agents() {
    let gw = gateway();
    gw.ok(&[
        "create",
        "asker",
        "--",
        "sh",
        "-c",
        "'printf \"Deploy to production? [y/N] \"; read answer; echo \"answer=$answer\"; \
         sleep 600'",
    ]);
    gw.ok(&[
        "create",
        "printer",
        "--",
        "sh",
        "-c",
        "'i=0; while true; do i=$((i+1)); echo \"line $i\"; sleep 0.3; done'",
    ]);
    gw.ok(&["create", "quitter", "--", "sh", "-c", "'echo bye; exit 3'"]);

    // `ssh gw` with a terminal and no command opens the view, in 80x24.
    let viewer = Viewer::open(&gw, "gw", &[], 80, 24);
    let screen = wait_for_row(&viewer, "asker", "waiting");
    wait_for_row(&viewer, "printer", "working");
    let screen = wait_for_row(&viewer, "quitter", "exited (3)").max(screen);
    let lines: Vec<&str> = screen.lines().collect();
    assert!(
        lines[0].starts_with(" agentgate · 3 agents"),
        "title: {screen}"
    );
    assert!(
        lines[1].contains("NAME") && lines[1].contains("STATUS"),
        "{screen}"
    );
    assert!(
        row(&screen, "asker").is_some_and(|r| r.contains("Deploy to production? [y/N]")),
        "the last line of the agent's screen: {screen}"
    );
    assert!(
        lines.len() == 24 && lines[23].contains("Enter attach") && lines[23].contains("^C quit"),
        "the keys on the last of 24 lines: {screen}"
    );
    // Statuses in colour (as tmux reports the cells' colours): waiting yellow, working green,
    // a failed exit red; the selected row in reverse video.
    let styled = viewer.styled_screen();
    for (name, coloured) in [
        ("asker", "\x1b[38;5;3mwaiting"),
        ("printer", "\x1b[38;5;2mworking"),
        ("quitter", "\x1b[38;5;1mexited (3)"),
    ] {
        assert!(
            styled
                .lines()
                .any(|l| l.contains(name) && l.contains(coloured)),
            "{name} is not {coloured:?}: {styled:?}"
        );
    }
    assert!(
        styled
            .lines()
            .any(|l| (l.contains("\x1b[7m") || l.contains("\x1b[0;7m")) && l.contains("> asker")),
        "{styled:?}"
    );
    // The first agent is selected.
    assert!(
        row(&screen, "asker").is_some_and(|r| r.starts_with("> ")),
        "{screen}"
    );

    // Typing a name selects it; Enter attaches to it, inside the same ssh session.
    viewer.type_text("pri");
    wait_for_screen(&viewer, "printer to be selected", |s| {
        row(s, "printer").is_some_and(|r| r.starts_with("> "))
    });
    viewer.keys(&["Enter"]);
    wait_for_screen(&viewer, "the printer's own screen", |s| {
        s.contains("line ") && !s.contains("agentgate ·")
    });
    // Detaching returns to the view, which says from where.
    viewer.detach();
    let screen = wait_for_screen(&viewer, "the view again", |s| {
        s.contains("agentgate · 3 agents") && s.contains("back from 'printer'")
    });
    assert!(
        row(&screen, "printer").is_some_and(|r| r.starts_with("> ")),
        "{screen}"
    );

    // The view follows the terminal's size.
    viewer.resize(100, 30);
    let screen = wait_for_screen(&viewer, "the view redrawn at 100x30", |s| {
        s.lines().count() == 30 && s.lines().nth(29).is_some_and(|l| l.contains("back from"))
    });
    assert!(
        screen
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(" agentgate")),
        "{screen}"
    );

    // Wide enough for what running agents use: CPU% and MEM, as the host measured them.
    let screen = wait_for_screen(&viewer, "the CPU% and MEM columns", |s| {
        s.lines().any(|l| l.contains("CPU%") && l.contains("MEM"))
            && row(s, "asker").is_some_and(|r| {
                r.split_whitespace()
                    .any(|w| w.ends_with('K') || w.ends_with('M'))
            })
    });
    let asker = row(&screen, "asker").unwrap_or_default();
    let memory = asker
        .split_whitespace()
        .find(|w| w.ends_with('K') || w.ends_with('M'))
        .and_then(|w| w[..w.len() - 1].parse::<f64>().ok());
    assert!(memory.is_some_and(|m| m > 0.0), "{screen}");

    // A line sent to the asker answers its question.
    viewer.type_text("ask");
    wait_for_screen(&viewer, "asker to be selected", |s| {
        row(s, "asker").is_some_and(|r| r.starts_with("> "))
    });
    viewer.keys(&["C-t"]);
    viewer.wait_for_text("send to asker:");
    viewer.type_text("yes");
    viewer.keys(&["Enter"]);
    viewer.wait_for_text("agent 'asker' took 3 bytes");
    wait_for("the asker to read the answer", || {
        gw.pane("asker").contains("answer=yes").then_some(())
    });

    // Stopping asks first, then stops; starting starts it again.
    viewer.keys(&["Down"]);
    wait_for_screen(&viewer, "printer to be selected", |s| {
        row(s, "printer").is_some_and(|r| r.starts_with("> "))
    });
    viewer.keys(&["C-s"]);
    viewer.wait_for_text("stop agent 'printer'?");
    viewer.type_text("n");
    viewer.wait_for_text("'printer' was not stopped");
    assert_eq!(gw.status("printer"), "running");
    viewer.keys(&["C-s"]);
    viewer.type_text("y");
    viewer.wait_for_text("stopped agent 'printer'");
    wait_for_row(&viewer, "printer", "stopped");
    assert_eq!(gw.status("printer"), "stopped");
    viewer.keys(&["C-r"]);
    viewer.wait_for_text("started agent 'printer'");
    wait_for_row(&viewer, "printer", "working");
    assert_eq!(gw.status("printer"), "running");

    // Every action went into the audit trail as the command it stands for.
    let events = gw.ok(&["events", "--json"]);
    for line in [
        "attach printer",
        "send asker -",
        "stop printer",
        "start printer",
    ] {
        assert!(events.contains(line), "no {line:?} event: {events}");
    }

    // ^O puts those that need the operator first: the asker answered and runs on, so the
    // failed exit comes first now, then the working printer, then the asker.
    viewer.keys(&["C-o"]);
    let position = |s: &str, name: &str| s.lines().position(|l| row(l, name).is_some());
    wait_for_screen(&viewer, "the order by need", |s| {
        let (q, p, a) = (
            position(s, "quitter"),
            position(s, "printer"),
            position(s, "asker"),
        );
        q.is_some() && q < p && p < a
    });
    // ? shows the keys; a key closes them.
    viewer.type_text("?");
    viewer.wait_for_text("sort by name, or by need");
    viewer.keys(&["Escape"]);
    wait_for_screen(&viewer, "the help closed", |s| {
        !s.contains("sort by name, or by need")
    });

    // ^C leaves the view; the session ends with status 0 and the agents go on.
    viewer.keys(&["C-c"]);
    assert_eq!(viewer.wait_exit(), 0, "{}", viewer.screen());
    assert_eq!(gw.status("asker"), "running");
}

#[test]
fn top_names_the_view_and_without_a_terminal_there_is_help_instead() {
    let gw = gateway();
    gw.ok(&["create", "solo", "--", "sleep", "600"]);
    // `top` by name, in a small terminal.
    let viewer = Viewer::open(&gw, "gw", &["top"], 40, 10);
    let screen = wait_for_row(&viewer, "solo", "solo");
    assert!(screen.lines().all(|l| l.chars().count() <= 40), "{screen}");
    viewer.keys(&["C-d"]);
    assert_eq!(viewer.wait_exit(), 0, "{}", viewer.screen());

    // No terminal, no command: the help, status 0.
    let out = gw.ssh(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Usage:") && stdout(&out).contains("top"),
        "{}",
        stdout(&out)
    );
    // `top` without a terminal: a usage error that says how to get one.
    let out = gw.ssh(&["top"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("the live view needs a terminal") && stderr(&out).contains("ssh -t"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_stopping_gateway_closes_the_view_at_once_and_puts_the_terminal_back() {
    // A view that held the shutdown would be cut at the end of the grace period, without the
    // message and in its alternate screen.
    let mut gw = TestGateway::start();
    gw.ok(&["create", "keeper", "--", "sleep", "600"]);
    let viewer = Viewer::open(&gw, "gw", &[], 80, 24);
    wait_for_row(&viewer, "keeper", "keeper");
    let agent_pid = gw.info("keeper")["pid"].as_u64().expect("pid");
    assert!(gw.sigterm().success());
    assert_eq!(viewer.wait_exit(), 0, "{}", viewer.screen());
    // Back on the main screen, which shows the message (the view's own screen is gone).
    let screen = viewer.screen();
    assert!(
        screen.contains("the gateway is stopping; the agents keep running")
            && !screen.contains("agentgate ·"),
        "{screen}"
    );
    assert!(std::path::Path::new(&format!("/proc/{agent_pid}")).exists());
    // Bracketed paste is off again: a paste comes without the marks.
    viewer.paste("after-the-stop");
    let screen = viewer.wait_for_text("after-the-stop");
    assert!(!screen.contains("[200~"), "{screen}");
}

#[test]
fn a_paste_goes_whole_into_the_line_to_send_and_does_nothing_in_the_list() {
    let gw = gateway();
    gw.ok(&["create", "other", "--", "sleep", "600"]);
    let got = gw.create_paste_receiver("paster");
    let viewer = Viewer::open(&gw, "gw", &[], 80, 24);
    wait_for_row(&viewer, "paster", "paster");
    wait_for_screen(&viewer, "other to be selected", |s| {
        row(s, "other").is_some_and(|r| r.starts_with("> "))
    });

    // In the list, a paste does not act: read as keys, this one would find the paster and
    // attach to it.
    viewer.paste("paster\nmore\n");
    let screen = viewer.wait_for_text("a paste is taken only after ^T");
    assert!(
        row(&screen, "other").is_some_and(|r| r.starts_with("> ")),
        "{screen}"
    );

    // After ^T, a paste of two lines is the text, shown on one line; Enter sends it all, and
    // the agent receives it as one paste.
    viewer.keys(&["Down"]);
    wait_for_screen(&viewer, "paster to be selected", |s| {
        row(s, "paster").is_some_and(|r| r.starts_with("> "))
    });
    viewer.keys(&["C-t"]);
    viewer.wait_for_text("send to paster:");
    viewer.paste("first line\nsecond line");
    viewer.wait_for_text("send to paster: first line⏎second line");
    viewer.keys(&["Enter"]);
    viewer.wait_for_text("sent 22 bytes to agent 'paster'");
    e2e::assert_file_gets(&got, b"\x1b[200~first line\rsecond line\x1b[201~\r");
    let events = gw.ok(&["events", "--json"]);
    assert!(!events.contains("attach"), "{events}");

    // Leaving the view turns bracketed paste off again: the terminal's next paste comes
    // without the marks (which the shell's tty would echo as ^[[200~).
    viewer.keys(&["C-c"]);
    assert_eq!(viewer.wait_exit(), 0, "{}", viewer.screen());
    viewer.paste("after-the-view");
    let screen = viewer.wait_for_text("after-the-view");
    assert!(!screen.contains("[200~"), "{screen}");
}
