//! Tailscale: hosts added by tailnet name, followed through the LocalAPI. tailscaled is the
//! LocalAPI emulator (`e2e::tailscale_emu`, the real wire rules); the tailnet peers are
//! namespace hosts with real sshd (`e2e::netns`), their namespace addresses playing tailnet
//! addresses. These tests need root.

use std::time::{Duration, Instant};

use e2e::netns::NetnsHost;
use e2e::tailscale_emu::{LocalApiEmulator, Peer};
use e2e::{TestGateway, stderr, stdout, wait_for};
use serde_json::Value;

fn host_json(gw: &TestGateway, name: &str) -> Value {
    serde_json::from_str(&gw.ok(&["host", "info", name, "--json"])).expect("host info --json")
}

fn peer(host_name: &str, ip: &str) -> Peer {
    Peer {
        host_name: host_name.into(),
        ip: ip.into(),
        online: true,
        tags: vec!["tag:agent-host".into()],
        login: None,
    }
}

/// A namespace host whose sshd lets the gateway in, not yet added.
fn start_host(gw: &TestGateway, name: &str) -> NetnsHost {
    let host = NetnsHost::start(name, &gw.dir.path().join(format!("host-{name}")));
    host.authorize(gw.ok(&["host", "key"]).trim());
    host
}

#[test]
fn a_host_added_by_tailnet_name_follows_its_peer_offline_online_and_to_a_new_address() {
    let gw = TestGateway::start();
    let emu = LocalApiEmulator::start(&gw.tailscale_socket());
    let mut h1 = start_host(&gw, "h1");
    let id = emu.add_peer(peer("build-box", &h1.address));
    emu.add_peer(peer("other-box", "10.213.250.2"));

    // A name no peer has is refused, saying what to give.
    let out = gw.ssh(&["host", "add", "h1", "--tailscale", "nope", "--user", "root"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no tailnet peer is named 'nope'"),
        "{}",
        stderr(&out)
    );
    // Added by its MagicDNS name, reached at its tailnet address.
    let added = gw.ok(&[
        "host",
        "add",
        "h1",
        "--tailscale",
        "build-box.tail1a2b3c.ts.net",
        "--user",
        "root",
    ]);
    assert!(added.contains("added host 'h1'"), "{added}");
    let info = host_json(&gw, "h1");
    assert_eq!(info["address"], h1.address.as_str());
    assert_eq!(info["status"], "reachable");
    assert_eq!(info["tailnet"]["id"], id.as_str());
    assert_eq!(info["tailnet"]["online"], true);
    assert_eq!(info["tailnet"]["os"], "linux");
    assert_eq!(info["tailnet"]["path"], "direct 198.51.100.23:41641");
    let listed = gw.ok(&["host", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("h1 ") && l.contains("online linux direct 198.51.100.23:41641")),
        "{listed}"
    );
    gw.ok(&["create", "a1", "--host", "h1", "--", "sleep", "600"]);

    // The peer goes offline: the IPN bus says so, and the host is unreachable at once, its
    // agent unknown, though its sshd still answers.
    emu.set_online("build-box", false);
    let cut = Instant::now();
    wait_for("h1 to be unreachable", || {
        (host_json(&gw, "h1")["status"] == "unreachable" && gw.status("a1") == "unknown")
            .then_some(())
    });
    let took = cut.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "h1 became unreachable after {took:?}"
    );
    let info = host_json(&gw, "h1");
    assert!(
        info["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("tailnet peer 'build-box.tail1a2b3c.ts.net' is offline")),
        "{info}"
    );
    assert_eq!(info["tailnet"]["online"], false);
    assert!(info["tailnet"]["last_seen"].is_string(), "{info}");
    let listed = gw.ok(&["host", "list"]);
    assert!(
        listed.lines().any(|l| l.starts_with("h1 ")
            && l.contains("unreachable")
            && l.contains("offline linux, seen")),
        "{listed}"
    );
    // Still unreachable on the reconciler's next rounds: the tailnet's word stands.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host_json(&gw, "h1")["status"], "unreachable");

    // Back online: everything recovers by itself.
    emu.set_online("build-box", true);
    wait_for("h1 and a1 to recover", || {
        (host_json(&gw, "h1")["status"] == "reachable" && gw.status("a1") == "running")
            .then_some(())
    });

    // The peer moves to another address (the old one is gone): the gateway follows.
    let new = h1.move_address();
    emu.set_address("build-box", &new);
    wait_for("h1's address to follow the peer", || {
        (host_json(&gw, "h1")["address"] == new.as_str()).then_some(())
    });
    let out = gw.ssh_with_stdin_to("a1@gw", &["echo moved-$((40+2))"], b"");
    assert_eq!(stdout(&out).trim(), "moved-42", "{}", stderr(&out));
    assert_eq!(host_json(&gw, "h1")["status"], "reachable");
}

#[test]
fn without_a_running_tailscaled_tailnet_features_say_why_and_the_rest_works() {
    let gw = TestGateway::start();
    gw.ok(&["create", "here", "--", "sleep", "600"]);

    // No tailscaled at all.
    let out = gw.ssh(&["host", "add", "h1", "--tailscale", "build-box"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("tailscaled is not running"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("ssh gw host add NAME ADDRESS"),
        "{}",
        stderr(&out)
    );
    // Neither an address nor --tailscale: a usage error.
    assert_eq!(gw.ssh(&["host", "add", "h1"]).status.code(), Some(2));

    // tailscaled runs but is logged out.
    let mut emu = LocalApiEmulator::start(&gw.tailscale_socket());
    let h1 = start_host(&gw, "h1");
    emu.add_peer(peer("build-box", &h1.address));
    emu.set_backend_state("NeedsLogin");
    wait_for("the gateway to see tailscaled", || {
        let out = gw.ssh(&["host", "add", "h1", "--tailscale", "build-box"]);
        stderr(&out)
            .contains("tailscaled is not logged in: run `tailscale up`")
            .then_some(())
    });

    // Logged in: the host is added; then tailscaled stops, and comes back.
    emu.set_backend_state("Running");
    gw.ok(&[
        "host",
        "add",
        "h1",
        "--tailscale",
        "build-box",
        "--user",
        "root",
    ]);
    gw.ok(&["create", "there", "--host", "h1", "--", "sleep", "600"]);
    emu.stop();
    wait_for("host list to say tailscaled is gone", || {
        let t = host_json(&gw, "h1")["tailnet"].clone();
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("tailscaled is not running"))
            .then_some(())
    });
    // Without tailscaled, SSH decides: the host and both agents work.
    assert_eq!(host_json(&gw, "h1")["status"], "reachable");
    assert_eq!(gw.status("here"), "running");
    assert_eq!(gw.status("there"), "running");
    let out = gw.ssh_with_stdin_to("there@gw", &["echo still"], b"");
    assert_eq!(stdout(&out).trim(), "still", "{}", stderr(&out));

    emu.resume();
    wait_for("the gateway to find tailscaled again", || {
        (host_json(&gw, "h1")["tailnet"]["online"] == true).then_some(())
    });
}
