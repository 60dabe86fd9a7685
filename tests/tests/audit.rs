//! The audit trail keeps events for `audit.retention`: older ones are deleted (at start-up and
//! every hour), younger ones and everything else stay.

use std::time::Duration;

use e2e::{Options, TestGateway};
use serde_json::Value;

const RETENTION_SECS: u64 = 6;

fn events(gw: &TestGateway) -> Vec<Value> {
    serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("events --json")
}

/// Whether a control command `line` is in the trail.
fn has_command(events: &[Value], line: &str) -> bool {
    events
        .iter()
        .any(|e| e["kind"] == "command" && e["detail"] == line)
}

#[test]
fn events_older_than_the_retention_are_deleted_and_younger_ones_kept() {
    let mut gw = TestGateway::start_with(Options {
        extra_config: format!("[audit]\nretention = \"{RETENTION_SECS}s\"\n"),
        ..Options::default()
    });
    gw.ok(&["create", "old", "--", "sleep", "600"]);
    // Let the first command's events pass the retention, then record younger ones.
    std::thread::sleep(Duration::from_secs(RETENTION_SECS + 1));
    gw.ok(&["create", "young", "--", "sleep", "600"]);
    assert!(has_command(&events(&gw), "create old -- sleep 600"));

    // A restart prunes at once.
    assert!(gw.sigterm().success());
    gw.spawn();
    let after = events(&gw);
    assert!(
        !has_command(&after, "create old -- sleep 600"),
        "an event past its retention is still there: {after:#?}"
    );
    assert!(
        has_command(&after, "create young -- sleep 600"),
        "a young event was deleted: {after:#?}"
    );
    // Only events go: both agents are there.
    assert_eq!(gw.status("old"), "running");
    assert_eq!(gw.status("young"), "running");
}

#[test]
fn a_retention_of_zero_keeps_every_event() {
    let mut gw = TestGateway::start_with(Options {
        extra_config: "[audit]\nretention = 0\n".into(),
        ..Options::default()
    });
    gw.ok(&["create", "kept", "--", "sleep", "600"]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(gw.sigterm().success());
    gw.spawn();
    assert!(has_command(&events(&gw), "create kept -- sleep 600"));
}
