//! `ssh -tt NAME@gw`: the agent's screen, resizes, detaching, several viewers.

use e2e::{TestGateway, Viewer, wait_for};

#[test]
fn attach_shows_the_screen_follows_resizes_and_detaching_leaves_the_agent_running() {
    let gw = TestGateway::start();
    gw.ok(&["create", "pair"]);
    gw.ok(&["send", "pair", "echo", "before-$((1+1))"]);
    wait_for("the agent's output", || {
        gw.pane("pair").contains("before-2").then_some(())
    });

    let viewer = Viewer::open(&gw, "pair@gw", &[], 100, 30);
    // The agent's existing screen is drawn at once.
    viewer.wait_for_text("before-2");
    // The agent takes the client's terminal size (tmux keeps one line for its status bar).
    wait_for("the pane to take the client's size", || {
        (gw.pane_size("pair") == (100, 29)).then_some(())
    });

    // Typing reaches the agent.
    viewer.type_text("echo typed-$((3*3))");
    viewer.keys(&["Enter"]);
    viewer.wait_for_text("typed-9");

    // A resize of the client's terminal reaches the pane.
    viewer.resize(80, 20);
    wait_for("the pane to follow the resize", || {
        (gw.pane_size("pair") == (80, 19)).then_some(())
    });
    // tmux resizes the pane's terminal a moment after it updates its own idea of the size.
    wait_for("the program in the pane to see the new size", || {
        viewer.type_text("stty size");
        viewer.keys(&["Enter"]);
        std::thread::sleep(std::time::Duration::from_millis(300));
        viewer.screen().contains("\n19 80\n").then_some(())
    });

    // Detaching ends the ssh session with status 0; the agent keeps running.
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0, "screen:\n{}", viewer.screen());
    assert_eq!(gw.status("pair"), "running");
}

#[test]
fn two_viewers_see_the_same_screen() {
    let gw = TestGateway::start();
    gw.ok(&["create", "shared"]);
    let first = Viewer::open(&gw, "shared@gw", &[], 90, 25);
    let second = Viewer::open(&gw, "shared@gw", &[], 90, 25);
    first.wait_for_shell_in(&gw, "shared");
    second.wait_for_shell_in(&gw, "shared");
    first.type_text("echo from-first-$((5+5))");
    first.keys(&["Enter"]);
    second.wait_for_text("from-first-10");
    second.type_text("echo from-second-$((6+6))");
    second.keys(&["Enter"]);
    first.wait_for_text("from-second-12");
    first.detach();
    assert_eq!(first.wait_exit(), 0);
    // The other viewer is still attached and working.
    second.type_text("echo still-here");
    second.keys(&["Enter"]);
    second.wait_for_text("still-here\n");
    second.detach();
    assert_eq!(second.wait_exit(), 0);
}

#[test]
fn attaching_to_a_stopped_agent_starts_it_and_says_so() {
    let gw = TestGateway::start();
    gw.ok(&["create", "napper"]);
    gw.ok(&["stop", "napper"]);
    assert_eq!(gw.status("napper"), "stopped");
    let viewer = Viewer::open(&gw, "napper@gw", &[], 100, 30);
    viewer.wait_for_shell_in(&gw, "napper");
    assert_eq!(gw.status("napper"), "running");
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);
    // tmux draws on the alternate screen: once detached, the terminal shows again what was
    // printed before the attach, the notice included.
    viewer.wait_for_text("agent 'napper' is stopped; starting it");
}

#[test]
fn attach_through_the_control_route_needs_a_terminal() {
    let gw = TestGateway::start();
    gw.ok(&["create", "viaattach"]);
    // Without -t: a clear usage error.
    let out = gw.ssh(&["attach", "viaattach"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        e2e::stderr(&out).contains("attach needs a terminal"),
        "{}",
        e2e::stderr(&out)
    );
    // With -t: the agent's screen.
    let viewer = Viewer::open(&gw, "gw", &["attach", "viaattach"], 100, 30);
    viewer.type_text("echo via-control-$((7+7))");
    viewer.keys(&["Enter"]);
    viewer.wait_for_text("via-control-14");
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);
}

#[test]
fn when_the_agent_exits_while_attached_the_session_ends() {
    let gw = TestGateway::start();
    gw.ok(&["create", "leaver"]);
    let viewer = Viewer::open(&gw, "leaver@gw", &[], 100, 30);
    viewer.wait_for_shell_in(&gw, "leaver");
    viewer.type_text("exit 5");
    viewer.keys(&["Enter"]);
    // The pane stays (remain-on-exit) with the last screen; the agent is `exited (5)`.
    // Regression: tmux 3.3 can miss the exit of a pane's process under load (it stays a
    // zombie); hostctl nudges tmux to collect it, so the exit code is never lost.
    wait_for("the agent to be exited", || {
        (gw.status("leaver") == "exited").then_some(())
    });
    assert_eq!(gw.info("leaver")["exit_code"].as_i64(), Some(5));
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);
}
