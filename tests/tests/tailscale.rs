//! Tailscale: hosts added by tailnet name, followed through the LocalAPI. tailscaled is the
//! LocalAPI emulator (`e2e::tailscale_emu`, the real wire rules); the tailnet peers are
//! namespace hosts with real sshd (`e2e::netns`), their namespace addresses playing tailnet
//! addresses. These tests need root.

use std::time::Instant;

use e2e::netns::NetnsHost;
use e2e::tailscale_emu::{LocalApiEmulator, Peer};
use e2e::{Options, TestGateway, stderr, stdout, wait_for};
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
    // host check pings through tailscaled before the SSH steps.
    let checked = gw.ok(&["host", "check", "h1"]);
    let first = checked.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("ok   tailnet")
            && first.contains("pong from build-box.tail1a2b3c.ts.net")
            && first.contains("via direct 198.51.100.23:41641"),
        "{checked}"
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
    // Reported, not asserted: tests never assert on time.
    eprintln!("h1 became unreachable after {:?}", cut.elapsed());
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
    // Still unreachable on the reconciler's next rounds: the tailnet's word stands. host check
    // says the ping got no answer (tailscaled never answers one for a silent peer).
    let out = gw.ssh(&["host", "check", "h1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let first = stdout(&out).lines().next().unwrap_or_default().to_owned();
    assert!(
        first.starts_with("FAIL tailnet")
            && first.contains("no pong from build-box.tail1a2b3c.ts.net")
            && first.contains("the tailnet lists it offline"),
        "{}",
        stdout(&out)
    );
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

    // No tailscaled at all: doctor says so, as a remark (no host needs it yet).
    let out = gw.ssh(&["doctor"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("warn tailscale") && l.contains("tailscaled is not running")),
        "{}",
        stdout(&out)
    );
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

    let out = gw.ssh(&["doctor", "--json"]);
    let doctor: Value = serde_json::from_slice(&out.stdout).expect("doctor --json");
    let ts = doctor["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["what"] == "tailscale"))
        .cloned()
        .expect("a tailscale finding");
    assert_eq!(ts["level"], "warn", "{doctor}");
    assert!(
        ts["fix"]
            .as_str()
            .is_some_and(|f| f.contains("tailscale up")),
        "{doctor}"
    );

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
    let out = gw.ok(&["doctor"]);
    assert!(
        out.lines().any(|l| l.starts_with("ok   tailscale")
            && l.contains("tailscaled 1.102.3-t7a4c9e1b2-g3f8d6c0a5 running, tailnet example.com")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok   host h1") && l.contains("reachable")),
        "{out}"
    );
    emu.stop();
    wait_for("host list to say tailscaled is gone", || {
        let t = host_json(&gw, "h1")["tailnet"].clone();
        t["error"]
            .as_str()
            .is_some_and(|e| e.contains("tailscaled is not running"))
            .then_some(())
    });
    // Now a host needs it: doctor fails, saying why.
    let out = gw.ssh(&["doctor"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.starts_with("FAIL tailscale") && l.contains("not running")),
        "{}",
        stdout(&out)
    );
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

#[test]
fn discover_lists_tagged_peers_that_are_not_hosts_and_adds_the_online_ones() {
    let gw = TestGateway::start();
    let emu = LocalApiEmulator::start(&gw.tailscale_socket());
    let h1 = start_host(&gw, "h1");
    emu.add_peer(peer("Build_Box", &h1.address));
    emu.add_peer(Peer {
        online: false,
        ..peer("old-box", "10.213.251.2")
    });
    emu.add_peer(Peer {
        tags: vec!["tag:gpu".into()],
        ..peer("gpu-box", "10.213.252.2")
    });
    emu.add_peer(Peer {
        tags: vec![],
        login: Some("alice@example.com".into()),
        ..peer("alices-laptop", "10.213.253.2")
    });

    let names = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["host", "discover", "--json"];
        all.extend_from_slice(args);
        let found: Value = serde_json::from_str(&gw.ok(&all)).expect("discover --json");
        found
            .as_array()
            .expect("an array")
            .iter()
            .map(|p| {
                format!(
                    "{}={}",
                    p["name"].as_str().unwrap_or("?"),
                    p["state"].as_str().unwrap_or("?")
                )
            })
            .collect()
    };
    assert_eq!(names(&[]), ["build-box=online", "old-box=offline"]);
    assert_eq!(names(&["--tag", "tag:gpu"]), ["gpu-box=online"]);
    assert!(names(&["--tag", "tag:none"]).is_empty());
    let table = gw.ok(&["host", "discover"]);
    assert!(
        table.lines().any(|l| l.starts_with("build-box ")
            && l.contains(&h1.address)
            && l.contains("online")),
        "{table}"
    );

    // --add adds the online one (named after its MagicDNS name) and skips the offline one.
    let out = gw.ssh(&["host", "discover", "--add", "--user", "root"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("added host 'build-box'"),
        "{}",
        stdout(&out)
    );
    assert!(stderr(&out).contains("skipped old-box"), "{}", stderr(&out));
    assert_eq!(host_json(&gw, "build-box")["status"], "reachable");
    assert_eq!(names(&[]), ["old-box=offline"]);
    gw.ok(&[
        "create",
        "found",
        "--host",
        "build-box",
        "--",
        "sleep",
        "600",
    ]);
    assert_eq!(gw.status("found"), "running");
}

/// `ssh USER@ADDRESS COMMAND` to the gateway with no key at all: from inside namespace host
/// `from` (to the gateway's address on its link), or from this machine's loopback.
fn keyless_ssh(
    gw: &TestGateway,
    from: Option<&NetnsHost>,
    user: &str,
    command: &str,
) -> std::process::Output {
    let (mut cmd, address) = match from {
        Some(host) => (host.command("ssh"), host.root_address.clone()),
        None => (std::process::Command::new("ssh"), "127.0.0.1".to_owned()),
    };
    cmd.args(["-F", "/dev/null", "-o", "StrictHostKeyChecking=no"])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"])
        .args(["-o", "PubkeyAuthentication=no", "-o", "LogLevel=ERROR"])
        .args(["-p", &gw.port.to_string()])
        .arg(format!("{user}@{address}"))
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ssh")
}

#[test]
fn identity_login_admits_a_registered_tailnet_user_without_a_key_and_no_one_else() {
    let mut gw = TestGateway::prepare(Options {
        listen_all: true,
        extra_config: "[auth.tailscale]\nenabled = true\n".into(),
        ..Options::default()
    });
    gw.spawn();
    let emu = LocalApiEmulator::start(&gw.tailscale_socket());
    let h1 = NetnsHost::start("h1", &gw.dir.path().join("host-h1"));
    let h2 = NetnsHost::start("h2", &gw.dir.path().join("host-h2"));
    let person = |name: &str, host: &NetnsHost, login: &str| Peer {
        tags: vec![],
        login: Some(login.into()),
        ..peer(name, &host.address)
    };
    emu.add_peer(person("alices-laptop", &h1, "alice@example.com"));
    emu.add_peer(person("bobs-laptop", &h2, "bob@example.com"));
    let out = gw
        .agentgate()
        .args(["key", "add", "--data-dir"])
        .arg(&gw.data_dir)
        .args(["--tailscale-login", "alice@example.com"])
        .output()
        .expect("key add");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out)
            .contains("tailnet login alice@example.com may log in as operator 'alice' (operator)"),
        "{}",
        stdout(&out)
    );
    let bad = gw
        .agentgate()
        .args(["key", "add", "--data-dir"])
        .arg(&gw.data_dir)
        .args(["--tailscale-login", "not a login"])
        .output()
        .expect("key add");
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("is not a tailnet login"),
        "{}",
        stderr(&bad)
    );

    // Alice's node: in without a key, as operator alice.
    let out = keyless_ssh(&gw, Some(&h1), "alice", "whoami");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("operator: alice"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("tailscale:alice@example.com"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        keyless_ssh(&gw, Some(&h1), "any", "list").status.code(),
        Some(0),
        "any user name takes the control route"
    );
    // Bob's login is not registered: refused.
    let out = keyless_ssh(&gw, Some(&h2), "bob", "whoami");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    // A tagged node never logs in this way, whoever tagged it.
    emu.add_peer(Peer {
        tags: vec!["tag:ci".into()],
        login: None,
        ..peer("bobs-laptop", &h2.address)
    });
    assert_eq!(
        keyless_ssh(&gw, Some(&h2), "alice", "whoami").status.code(),
        Some(255)
    );
    // An address that is no tailnet node's (this machine's loopback): a key is needed.
    let out = keyless_ssh(&gw, None, "alice", "whoami");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    // Keys work as before.
    assert!(gw.ok(&["whoami"]).contains("operator: tester"));

    // Switched off in the configuration: Alice needs a key too.
    gw.kill9();
    let config = std::fs::read_to_string(&gw.config_path).expect("config");
    std::fs::write(
        &gw.config_path,
        config.replace("enabled = true", "enabled = false"),
    )
    .expect("config");
    gw.spawn();
    assert_eq!(
        keyless_ssh(&gw, Some(&h1), "alice", "whoami").status.code(),
        Some(255)
    );
}

/// The emulator keeps tailscaled's wire rules (so that a gateway that breaks them fails here
/// as it would against tailscaled): checked with curl, which knows nothing of agentgate.
#[test]
fn the_emulator_keeps_the_localapi_wire_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("tailscaled.sock");
    let emu = LocalApiEmulator::start(&socket);
    emu.add_peer(peer("build-box", "100.101.7.42"));
    let curl = |args: &[&str], path: &str| -> (String, String) {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "3"])
            .arg("--unix-socket")
            .arg(&socket)
            .args(args)
            .arg(format!("http://local-tailscaled.sock/localapi/v0/{path}"))
            .output()
            .expect("curl");
        let text = stdout(&out);
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "000"));
        (code.to_owned(), body.to_owned())
    };
    let (code, body) = curl(&[], "status");
    assert_eq!(code, "200");
    assert!(body.contains("\"BackendState\": \"Running\""), "{body}");
    assert_eq!(
        curl(&["-H", "Host: example.com"], "status"),
        ("403".into(), "invalid localapi request\n".into())
    );
    assert_eq!(curl(&["-H", "Origin: http://evil"], "status").0, "403");
    assert_eq!(curl(&[], "nothing-here").0, "404");
    assert_eq!(
        curl(&[], "whois"),
        ("400".into(), "missing 'addr' parameter\n".into())
    );
    assert_eq!(
        curl(&[], "whois?addr=100.64.9.9:22"),
        ("404".into(), "no match for IP:port\n".into())
    );
    assert!(
        curl(&[], "whois?addr=100.101.7.42%3A22")
            .1
            .contains("build-box")
    );
    assert_eq!(
        curl(&[], "ping?ip=100.101.7.42&type=disco").0,
        "400",
        "GET is refused"
    );
    assert!(
        curl(&["-X", "POST"], "ping?ip=100.101.7.42&type=disco")
            .1
            .contains("\"Err\":\"\"")
    );
    assert_eq!(curl(&[], "watch-ipn-bus?mask=x").0, "400");
    // A ping to an offline peer is never answered (curl gives up: code 000).
    emu.set_online("build-box", false);
    assert_eq!(
        curl(&["-X", "POST"], "ping?ip=100.101.7.42&type=disco").0,
        "000"
    );
}
