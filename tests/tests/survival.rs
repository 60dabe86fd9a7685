//! Agents outlive the gateway: SIGKILL or SIGTERM never stops an agent or loses its state.

use e2e::{TestGateway, Viewer, wait_for};

#[test]
fn after_sigkill_and_a_restart_every_agent_is_there_with_its_status_and_attach_works() {
    let mut gw = TestGateway::start();
    gw.ok(&["create", "runner"]);
    gw.ok(&["create", "stopper"]);
    gw.ok(&["stop", "stopper"]);
    gw.ok(&["create ender -- sh -c 'exit 4'"]);
    wait_for("ender to exit", || {
        (gw.status("ender") == "exited").then_some(())
    });
    gw.ok(&["send", "runner", "echo", "survivor-$((2*21))"]);
    wait_for("runner's output", || {
        gw.pane("runner").contains("survivor-42").then_some(())
    });
    let pid = gw.info("runner")["pid"].as_u64().expect("pid");

    gw.kill9();
    // The agent's process did not notice.
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the agent died with the gateway"
    );
    gw.spawn();

    let agents = gw.list();
    let status = |name: &str| {
        agents
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("{name} is gone after the restart: {agents:?}"))
            .clone()
    };
    assert_eq!(status("runner")["state"], "running");
    assert_eq!(status("runner")["pid"].as_u64(), Some(pid));
    assert_eq!(status("stopper")["status"], "stopped");
    assert_eq!(status("ender")["status"], "exited");
    assert_eq!(status("ender")["exit_code"].as_i64(), Some(4));

    let viewer = Viewer::open(&gw, "runner@gw", &[], 100, 30);
    viewer.wait_for_text("survivor-42");
    viewer.detach();
    assert_eq!(viewer.wait_exit(), 0);
}

#[test]
fn sigterm_stops_the_gateway_cleanly_and_agents_keep_running() {
    let mut gw = TestGateway::start();
    gw.ok(&["create", "keeper", "--", "sleep", "600"]);
    let pid = gw.info("keeper")["pid"].as_u64().expect("pid");
    let status = gw.sigterm();
    assert!(
        status.success(),
        "agentgate exited with {status}:\n{}",
        gw.log()
    );
    assert!(gw.log().contains("agents keep running"), "{}", gw.log());
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the agent died with the gateway"
    );
    gw.spawn();
    assert_eq!(gw.status("keeper"), "running");
}

#[test]
fn sigterm_lets_an_open_session_finish_within_the_grace_period() {
    let mut gw = TestGateway::start();
    gw.ok(&["create slow -- sh -c 'sleep 1; exit 9'"]);
    // A `wait` in flight when SIGTERM arrives still gets its answer.
    let waiter = gw
        .ssh_command()
        .args(["gw", "wait", "slow"])
        .spawn()
        .expect("ssh");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = gw.sigterm();
    assert!(status.success());
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(9),
        "the open session finished during the grace period"
    );
}
