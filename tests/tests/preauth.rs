//! Before login: a flood of unauthenticated connections is held to `max_startups` and
//! `per_source_max_startups` and closed after `login_grace_time` while a real operator still
//! logs in; sources that keep failing are penalised and refused; a client that keeps offering
//! keys runs out of attempts.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Instant;

use e2e::{Options, TestGateway, keygen, stderr, stdout, wait_for};
use serde_json::Value;

const MAX_STARTUPS: usize = 50;
const PER_SOURCE: usize = 10;
const SOURCES: u8 = 25;
const PER_SOURCE_FLOOD: usize = 20;

/// A TCP connection to the gateway from `source` (a loopback address other than 127.0.0.1).
fn connect_from(source: Ipv4Addr, port: u16) -> TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source address");
    socket
        .connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let stream: TcpStream = socket.into();
    stream.set_nonblocking(true).expect("nonblocking");
    stream
}

/// Whether the gateway still holds this connection open (reads what it sent so far).
fn still_open(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

fn source(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 10 + i)
}

#[test]
fn a_flood_of_unauthenticated_connections_is_held_while_an_operator_logs_in() {
    let gw = TestGateway::start_with(Options {
        extra_config: format!(
            "[ssh]\nlogin_grace_time = \"4s\"\nmax_startups = {MAX_STARTUPS}\n\
             per_source_max_startups = {PER_SOURCE}\n"
        ),
        ..Options::default()
    });

    // 500 connections from 25 sources: half say hello as an SSH client would, half say
    // nothing; none ever authenticates.
    let mut flood: Vec<(u8, TcpStream)> = Vec::new();
    for round in 0..PER_SOURCE_FLOOD {
        for i in 0..SOURCES {
            let mut s = connect_from(source(i), gw.port);
            if round % 2 == 0 {
                let _ = s.write_all(b"SSH-2.0-flood\r\n");
            }
            flood.push((i, s));
        }
    }

    // The gateway holds at most max_startups of them, at most per_source from each source.
    let open = wait_for("the flood to be cut down to max_startups", || {
        let open: Vec<u8> = flood
            .iter_mut()
            .filter_map(|(i, s)| still_open(s).then_some(*i))
            .collect();
        (open.len() <= MAX_STARTUPS).then_some(open)
    });
    for i in 0..SOURCES {
        let from = open.iter().filter(|s| **s == i).count();
        assert!(from <= PER_SOURCE, "source {} holds {from}", source(i));
    }
    eprintln!(
        "{} of {} flood connections held open",
        open.len(),
        flood.len()
    );

    // A real operator logs in meanwhile, and works.
    let started = Instant::now();
    let who = gw.ok(&["whoami"]);
    eprintln!(
        "operator login during the flood: {} ms",
        started.elapsed().as_millis()
    );
    assert!(who.contains("operator: tester"), "{who}");
    let out = gw.ssh(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // login_grace_time: every flood connection is closed.
    wait_for("every flood connection to be closed", || {
        flood.iter_mut().all(|(_, s)| !still_open(s)).then_some(())
    });

    // The flooding sources ran up penalties: the audit trail names them, and their next
    // connection is refused at once, even with a registered key.
    let events: Value =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("json");
    let penalised: Vec<String> = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "penalty")
        .filter_map(|e| e["source"].as_str().map(str::to_owned))
        .collect();
    assert!(!penalised.is_empty(), "no source was penalised: {events}");
    let blocked = &penalised[0];
    assert!(blocked.starts_with("127.0.0."), "{blocked}");
    let out = gw.ssh_run(&["-b", blocked, "gw", "whoami"]);
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(!stdout(&out).contains("tester"));
    // Other sources are not affected.
    let out = gw.ssh_run(&["-b", "127.0.0.200", "gw", "whoami"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(gw.log().contains("source penalised"), "{}", gw.log());
}

#[test]
fn failed_logins_are_penalised_and_exempt_sources_are_not() {
    let gw = TestGateway::start_with(Options {
        // Penalties wear off in real time: they are large here so that a slow machine cannot
        // let them wear off between two attempts.
        extra_config: "[ssh]\nauth_rejection_delay = \"0s\"\n\n[ssh.penalties]\n\
                       authfail = \"100s\"\nmin = \"350s\"\nexempt = [\"127.0.0.100/31\"]\n"
            .into(),
        ..Options::default()
    });
    let stranger = keygen(gw.dir.path(), "stranger", "stranger@e2e");
    let try_from = |source: &str, key: &std::path::Path| {
        gw.ssh_with_key(key)
            .args(["-b", source, "gw", "whoami"])
            .output()
            .expect("ssh")
    };
    // Each failure adds 100 s: at 350 s (the fourth failure in a row) the source is refused,
    // good key or not.
    for _ in 0..4 {
        let out = try_from("127.0.0.50", &stranger);
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    // A connection's ending is counted when the gateway has seen it end, which can be just
    // after the client has its answer (as with sshd's penalties).
    e2e::wait_for("the fourth failure to block the source", || {
        gw.log().contains("source penalised").then_some(())
    });
    let out = try_from("127.0.0.50", &gw.key);
    assert_eq!(out.status.code(), Some(255));
    assert!(
        !stderr(&out).contains("Permission denied"),
        "refused before authentication: {}",
        stderr(&out)
    );
    // An exempt source fails as often as it likes and still gets in.
    for _ in 0..5 {
        let out = try_from("127.0.0.101", &stranger);
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    let out = try_from("127.0.0.101", &gw.key);
    assert!(out.status.success(), "{}", stderr(&out));
    // Refused logins are in the audit trail with the key and the source.
    let events: Value =
        serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("json");
    let refused = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| {
            e["kind"] == "login"
                && e["result"] == "refused"
                && e["source"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("127.0.0.50:"))
        })
        .count();
    assert_eq!(refused, 4, "{events}");
}

#[test]
fn a_client_offering_key_after_key_runs_out_of_attempts() {
    let gw = TestGateway::start_with(Options {
        extra_config: "[ssh]\nauth_rejection_delay = \"0s\"\nmax_auth_attempts = 3\n\n\
                       [ssh.penalties]\nenabled = false\n"
            .into(),
        ..Options::default()
    });
    let strangers: Vec<_> = (0..3)
        .map(|i| keygen(gw.dir.path(), &format!("stranger{i}"), "x@e2e"))
        .collect();
    // Three unregistered keys first, the operator's own last: the attempts are spent before
    // it is offered, as with OpenSSH's MaxAuthTries.
    let with_keys = || {
        let mut cmd = std::process::Command::new("ssh");
        cmd.arg("-F")
            .arg(gw.dir.path().join("ssh_config_other_key"));
        cmd
    };
    let mut cmd = with_keys();
    for key in &strangers {
        cmd.arg("-i").arg(key);
    }
    let out = cmd
        .arg("-i")
        .arg(&gw.key)
        .args(["-v", "gw", "whoami"])
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Too many authentication attempts")
            && !stderr(&out).contains("Authenticated to"),
        "{}",
        stderr(&out)
    );
    assert!(!stdout(&out).contains("tester"));
    // Two strangers and then the right key: in.
    let mut cmd = with_keys();
    for key in &strangers[..2] {
        cmd.arg("-i").arg(key);
    }
    let out = cmd
        .arg("-i")
        .arg(&gw.key)
        .args(["gw", "whoami"])
        .output()
        .expect("ssh");
    assert!(out.status.success(), "{}", stderr(&out));
}
