//! Operations that outlive the gateway: the gateway is killed (SIGKILL, by its own fault
//! injection point `AGENTGATE_CRASH_AFTER=KIND:STEP`) right after each step of migrate, clone,
//! create from a snapshot, create and destroy; after a restart every agent is there exactly
//! once, running if it was, no copy is left on any host, the audit trail tells how the
//! operation ended, and the same operation can be run again.

use e2e::netns::{NetnsHost, add_host};
use e2e::{TestGateway, stderr, stdout};
use serde_json::Value;

const CRASH_AFTER: &str = "AGENTGATE_CRASH_AFTER";

/// Runs `args` with the gateway set to kill itself right after `at` (`KIND:STEP`), checks
/// that it did, and starts it again as it normally runs.
fn crash_during(gw: &mut TestGateway, at: &str, args: &[&str]) {
    crash(gw, at, args);
    gw.spawn();
}

/// The same, leaving the gateway down.
fn crash(gw: &mut TestGateway, at: &str, args: &[&str]) {
    gw.kill9();
    gw.set_env(CRASH_AFTER, Some(at));
    gw.spawn();
    let out = gw.ssh(args);
    assert_eq!(
        out.status.code(),
        Some(255),
        "{args:?} should have lost its gateway at {at}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    let ended = gw.wait_exited();
    assert!(!ended.success(), "{at}: {ended}");
    assert!(gw.log().contains("killing the gateway here"), "{at}");
    gw.set_env(CRASH_AFTER, None);
}

/// The audit events of kind `operation` about `name`.
fn operation_events(gw: &TestGateway, name: &str) -> Vec<Value> {
    let out = gw.ok(&["events", "--agent", name, "--json"]);
    let all: Vec<Value> = serde_json::from_str(&out).expect("events JSON");
    all.into_iter()
        .filter(|e| e["kind"] == "operation")
        .collect()
}

/// The agents named `name` in `list`.
fn listed(gw: &TestGateway, name: &str) -> Vec<Value> {
    gw.list()
        .into_iter()
        .filter(|a| a["name"] == name)
        .collect()
}

/// Nothing of agent `name` on `host`: no session, no agent files, no workspace, no copy mark.
fn assert_nothing_on(host: &NetnsHost, name: &str, what: &str) {
    assert!(
        !host
            .tmux(&["has-session", "-t", &format!("={name}")])
            .status
            .success(),
        "{what}: a session '{name}' on {}",
        host.name
    );
    for left in [
        format!("agents/{name}"),
        format!("workspaces/{name}"),
        format!("copies/{name}.json"),
    ] {
        assert!(
            !host.agents_home.join(&left).exists(),
            "{what}: {left} left on {}",
            host.name
        );
    }
}

/// The one audit event that tells how the cut-short operation on `name` ended.
fn settled_event(gw: &TestGateway, name: &str) -> Value {
    let events = operation_events(gw, name);
    assert_eq!(events.len(), 1, "{name}: {events:?}");
    events[0].clone()
}

/// The event of an operation that waited for a host, once it is settled: the host's
/// connection comes back with the reconciler's back-off, so this gives it a minute.
fn settled_once_back(gw: &TestGateway, name: &str) -> Value {
    let since = std::time::Instant::now();
    loop {
        if let Some(event) = operation_events(gw, name).pop() {
            return event;
        }
        assert!(
            since.elapsed() < std::time::Duration::from_secs(60),
            "the operation on {name} was not settled within a minute of its host's return"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

fn write_file(gw: &TestGateway, agent: &str, content: &str) {
    let out = gw.ssh_with_stdin_to(
        &format!("{agent}@gw"),
        &["mkdir -p d && cat > d/f.txt"],
        content.as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

fn read_file(gw: &TestGateway, agent: &str) -> String {
    let out = gw.ssh_with_stdin_to(&format!("{agent}@gw"), &["cat d/f.txt"], b"");
    assert!(out.status.success(), "{agent}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_migration_cut_short_at_any_step_is_undone_or_finished_after_a_restart() {
    let mut gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    // (step, where the agent is after the restart)
    let steps = [
        ("begun", "h1"),
        ("source-stopped", "h1"),
        ("copied", "h1"),
        ("created", "h1"),
        ("switched", "h2"),
    ];
    for (i, (step, ends_on)) in steps.into_iter().enumerate() {
        let name = format!("mig-{i}");
        gw.ok(&["create", &name, "--host", "h1"]);
        write_file(&gw, &name, &format!("moved at {step}\n"));
        crash_during(
            &mut gw,
            &format!("migrate:{step}"),
            &["migrate", &name, "h2"],
        );

        let what = format!("migrate cut short after {step}");
        let rows = listed(&gw, &name);
        assert_eq!(rows.len(), 1, "{what}: {rows:?}");
        assert_eq!(rows[0]["host"], ends_on, "{what}");
        assert_eq!(gw.status(&name), "running", "{what}: it ran before");
        assert_eq!(
            read_file(&gw, &name),
            format!("moved at {step}\n"),
            "{what}"
        );
        let (here, there) = if ends_on == "h1" {
            (&h1, &h2)
        } else {
            (&h2, &h1)
        };
        assert!(
            here.tmux(&["has-session", "-t", &format!("={name}")])
                .status
                .success(),
            "{what}"
        );
        assert_nothing_on(there, &name, &what);
        let event = settled_event(&gw, &name);
        let outcome = if ends_on == "h1" {
            "undone"
        } else {
            "finished"
        };
        assert_eq!(event["result"], outcome, "{what}: {event}");
        assert!(
            event["detail"]
                .as_str()
                .is_some_and(|d| d.contains("migrate") && d.contains(step)),
            "{what}: {event}"
        );
        // The move can be made again (it was refused, the copy in the way, before).
        if ends_on == "h1" {
            let out = gw.ok(&["migrate", &name, "h2"]);
            assert!(out.contains("verified"), "{what}: {out}");
            assert_eq!(gw.info(&name)["host"], "h2");
            assert_nothing_on(&h1, &name, &what);
        }
    }

    // Cut short while the new host is down: the agent runs again on its old host at the
    // restart, and the copy on the new host goes as soon as that host is back.
    let name = "mig-down";
    gw.ok(&["create", name, "--host", "h1"]);
    write_file(&gw, name, "kept\n");
    crash(&mut gw, "migrate:copied", &["migrate", name, "h2"]);
    assert!(h2.agents_home.join("workspaces/mig-down").exists());
    h2.link_down();
    gw.spawn();
    assert_eq!(gw.info(name)["host"], "h1");
    assert_eq!(gw.status(name), "running", "started again with h2 down");
    assert_eq!(read_file(&gw, name), "kept\n");
    assert!(
        operation_events(&gw, name).is_empty(),
        "not settled while h2 is down"
    );
    assert!(h2.agents_home.join("workspaces/mig-down").exists());
    h2.link_up();
    let event = settled_once_back(&gw, name);
    assert_eq!(event["result"], "undone", "{event}");
    assert_nothing_on(&h2, name, "after h2 came back");
    assert_eq!(listed(&gw, name).len(), 1);

    // A later operation on the agent supersedes one that waited for its host: the agent is
    // left as the operator left it (moved away and back, then stopped), and only what the
    // cut-short move made on h2 goes.
    let name = "mig-later";
    gw.ok(&["create", name, "--host", "h1"]);
    crash(&mut gw, "migrate:created", &["migrate", name, "h2"]);
    h2.link_down();
    gw.spawn();
    assert_eq!(gw.status(name), "running");
    gw.ok(&["migrate", name, "local"]);
    gw.ok(&["migrate", name, "h1"]);
    gw.ok(&["stop", name]);
    h2.link_up();
    let event = settled_once_back(&gw, name);
    assert_eq!(event["result"], "undone", "{event}");
    assert!(
        event["message"]
            .as_str()
            .is_some_and(|m| m.contains("later operation")),
        "{event}"
    );
    assert_nothing_on(&h2, name, "a superseded move");
    assert_eq!(gw.info(name)["host"], "h1");
    assert_eq!(gw.status(name), "stopped", "left as the operator left it");
}

#[test]
fn clones_restores_creates_and_destroys_cut_short_leave_each_agent_once_and_no_copy() {
    let mut gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    gw.ok(&["create", "src", "--host", "h1"]);
    write_file(&gw, "src", "the source\n");
    let snapshot: Value =
        serde_json::from_str(&gw.ok(&["snapshot", "src", "--json"])).expect("snapshot JSON");
    let snapshot_id = snapshot["id"].as_str().expect("id").to_owned();

    // (operation, step, whether the new agent exists after the restart)
    let cases = [
        ("clone", "begun", false),
        ("clone", "copied", false),
        ("clone", "created", true),
        ("restore", "begun", false),
        ("restore", "copied", false),
        ("restore", "created", true),
        ("create", "begun", false),
        ("create", "created", true),
    ];
    for (i, (kind, step, exists)) in cases.into_iter().enumerate() {
        let name = format!("{kind}-{i}");
        let args: Vec<&str> = match kind {
            "clone" => vec!["clone", "src", &name, "--host", "h2"],
            "restore" => vec![
                "create",
                &name,
                "--from-snapshot",
                &snapshot_id,
                "--host",
                "h2",
            ],
            _ => vec!["create", &name, "--host", "h2"],
        };
        crash_during(&mut gw, &format!("{kind}:{step}"), &args);

        let what = format!("{kind} cut short after {step}");
        let rows = listed(&gw, &name);
        if exists {
            assert_eq!(rows.len(), 1, "{what}: {rows:?}");
            assert_eq!(gw.status(&name), "running", "{what}");
            let event = settled_event(&gw, &name);
            assert_eq!(event["result"], "finished", "{what}: {event}");
            if kind != "create" {
                assert_eq!(read_file(&gw, &name), "the source\n", "{what}");
            }
            assert!(!h2.agents_home.join(format!("copies/{name}.json")).exists());
            gw.ok(&["destroy", &name, "--force"]);
        } else {
            assert!(rows.is_empty(), "{what}: {rows:?}");
            assert_nothing_on(&h2, &name, &what);
            let event = settled_event(&gw, &name);
            assert_eq!(event["result"], "undone", "{what}: {event}");
            // The name is free and the same operation works now.
            gw.ok(&args);
            assert_eq!(gw.status(&name), "running", "{what}: made again");
            gw.ok(&["destroy", &name, "--force"]);
        }
        assert_nothing_on(&h2, &name, &format!("{what}, then destroyed"));
    }
    // The source was never touched.
    assert_eq!(read_file(&gw, "src"), "the source\n");
    assert_eq!(gw.status("src"), "running");

    // destroy: finished after a restart whichever step it reached.
    for (i, step) in ["begun", "host-done"].into_iter().enumerate() {
        let name = format!("gone-{i}");
        gw.ok(&["create", &name, "--host", "h1"]);
        crash_during(
            &mut gw,
            &format!("destroy:{step}"),
            &["destroy", &name, "--force"],
        );
        let what = format!("destroy cut short after {step}");
        assert!(listed(&gw, &name).is_empty(), "{what}");
        assert_nothing_on(&h1, &name, &what);
        assert_eq!(settled_event(&gw, &name)["result"], "finished", "{what}");
    }
}
