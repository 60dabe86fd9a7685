//! Many agents at once: `create --count`, `tag`/`untag`, `send --tag`/`--all`, and
//! `stop`/`start`/`destroy --tag` with their confirmation.

use e2e::{TestGateway, Viewer, stderr, stdout, wait_for};

fn names(gw: &TestGateway, args: &[&str]) -> String {
    let mut full = vec!["list", "-q"];
    full.extend_from_slice(args);
    gw.ok(&full)
}

#[test]
fn a_fleet_is_made_tagged_told_and_stopped_together() {
    let gw = TestGateway::start();
    // A name in the way: nothing is made.
    gw.ok(&["create", "crew-2", "--", "sleep", "600"]);
    let out = gw.ssh(&["create", "crew", "--count", "3", "--", "sleep", "600"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("'crew-2' already exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&gw, &[]), "crew-2\n");
    gw.ok(&["destroy", "--force", "crew-2"]);

    let made = gw.ok(&["create", "crew", "--count", "3", "--tag", "team=a"]);
    assert_eq!(made.matches("created agent 'crew-").count(), 3, "{made}");
    assert_eq!(names(&gw, &["--tag", "team=a"]), "crew-1\ncrew-2\ncrew-3\n");

    // Tags change on the host's files too.
    assert_eq!(
        gw.ok(&["tag", "crew-1", "role=lead", "team=b"]),
        "agent 'crew-1': role=lead team=b\n"
    );
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(gw.agents_home.join("agents/crew-1/meta.json")).expect("meta"),
    )
    .expect("meta.json is JSON");
    assert_eq!(
        meta["tags"],
        serde_json::json!({"role": "lead", "team": "b"}),
        "{meta}"
    );
    assert_eq!(
        gw.ok(&["untag", "crew-1", "role"]),
        "agent 'crew-1': team=b\n"
    );
    let out = gw.ssh(&["untag", "crew-1", "role"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("agent 'crew-1' has no tag 'role'"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["tag", "crew-1", "bad key=x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(names(&gw, &["--tag", "team=a"]), "crew-2\ncrew-3\n");

    // Broadcast by tag: the two team=a shells run the line, crew-1 does not.
    let sent = gw.ok(&["send", "--tag", "team=a", "echo", "told-$((6*7))"]);
    assert_eq!(sent.lines().count(), 2, "{sent}");
    for agent in ["crew-2", "crew-3"] {
        wait_for(&format!("{agent} to run the line"), || {
            gw.pane(agent).contains("told-42").then_some(())
        });
    }
    assert!(
        !gw.pane("crew-1").contains("told-"),
        "{}",
        gw.pane("crew-1")
    );
    let sent = gw.ok(&["send", "--all", "echo", "everyone-$((2*2))"]);
    assert_eq!(sent.lines().count(), 3, "{sent}");
    wait_for("crew-1 to run the line", || {
        gw.pane("crew-1").contains("everyone-4").then_some(())
    });
    let out = gw.ssh(&["send", "--tag", "team=nobody", "x"]);
    assert_eq!(out.status.code(), Some(1));

    // Without a terminal and without --yes: refused, with the list, and nothing stopped.
    let out = gw.ssh(&["stop", "--tag", "team=a"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("this would stop 2 agents: crew-2, crew-3")
            && stderr(&out).contains("--yes"),
        "{}",
        stderr(&out)
    );
    assert_eq!(names(&gw, &["--status", "stopped"]), "");
    let stopped = gw.ok(&["stop", "--tag", "team=a", "--yes"]);
    assert_eq!(stopped.matches("stopped agent").count(), 2, "{stopped}");
    assert_eq!(names(&gw, &["--status", "stopped"]), "crew-2\ncrew-3\n");
    assert_eq!(gw.status("crew-1"), "running");
    // Each agent acted on has its own audit event, found by its name.
    let events = gw.ok(&["events", "--agent", "crew-2"]);
    assert!(events.contains("stop crew-2 (by tag team=a)"), "{events}");
    assert!(events.contains("send crew-2 (by --all)"), "{events}");
    assert!(
        !gw.ok(&["events", "--agent", "crew-1"])
            .contains("stop crew-1")
    );

    // On a terminal, it asks: "n" does nothing, "y" goes ahead.
    let viewer = Viewer::open(&gw, "gw", &["start", "--tag", "team=a"], 100, 30);
    viewer.wait_for_text("start 2 agents: crew-2, crew-3? [y/N]");
    viewer.type_text("n");
    viewer.keys(&["Enter"]);
    assert_eq!(viewer.wait_exit(), 1, "{}", viewer.screen());
    assert!(
        viewer.screen().contains("nothing done"),
        "{}",
        viewer.screen()
    );
    assert_eq!(names(&gw, &["--status", "stopped"]), "crew-2\ncrew-3\n");
    let viewer = Viewer::open(&gw, "gw", &["start", "--tag", "team=a"], 100, 30);
    viewer.wait_for_text("[y/N]");
    viewer.type_text("y");
    viewer.keys(&["Enter"]);
    assert_eq!(viewer.wait_exit(), 0, "{}", viewer.screen());
    assert_eq!(names(&gw, &["--status", "stopped"]), "");

    let out = gw.ssh(&["destroy", "--tag", "team=a", "--yes"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "running agents need --force: {}",
        stdout(&out)
    );
    gw.ok(&["destroy", "--tag", "team=a", "--yes", "--force"]);
    assert_eq!(names(&gw, &[]), "crew-1\n");
    // A name and --tag together are a usage error.
    let out = gw.ssh(&["stop", "crew-1", "--tag", "team=b"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
