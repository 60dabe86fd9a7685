//! The network-namespace host fixture on its own, with the real OpenSSH client: two hosts at
//! once, each with its own address, sshd, host key and environment; a link taken down makes new
//! connections time out while an open one stalls and then resumes; a changed host key is
//! refused by a client that pinned the old one.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;

use e2e::netns::NetnsHost;
use e2e::{PATIENCE, keygen, stderr, stdout};

/// Writes a `known_hosts` pinning the host's current key; returns its path.
fn pin(dir: &Path, file: &str, host: &NetnsHost) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, format!("{}\n", host.known_hosts_line())).expect("write known_hosts");
    path
}

/// `ssh root@HOST`, strict about the host key, with only `key` and nothing from ~/.ssh.
fn ssh(host: &NetnsHost, key: &Path, known_hosts: &Path, connect_timeout: u32) -> Command {
    host.ssh(key, known_hosts, connect_timeout)
}

fn run(mut cmd: Command, remote: &str) -> Output {
    cmd.arg(remote)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

fn assert_ok(out: &Output, host: &NetnsHost, what: &str) {
    assert!(
        out.status.success(),
        "{what} on {} ({}) failed with {}:\nstdout: {}\nstderr: {}\nsshd log:\n{}",
        host.name,
        host.address,
        out.status,
        stdout(out),
        stderr(out),
        host.log()
    );
}

/// A client that has been started and must not outlive the test.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn namespace_hosts_serve_ssh_apart_and_can_be_cut_off_and_rekeyed() {
    let tmp = tempfile::Builder::new()
        .prefix("agentgate-netns-")
        .tempdir()
        .expect("tempdir");
    let dir = tmp.path();
    let (h1, mut h2) = std::thread::scope(|s| {
        let one = s.spawn(|| NetnsHost::start("h1", &dir.join("h1")));
        let two = s.spawn(|| NetnsHost::start("h2", &dir.join("h2")));
        (one.join().expect("start h1"), two.join().expect("start h2"))
    });
    assert_ne!(h1.address, h2.address);
    assert_ne!(h1.namespace, h2.namespace);
    assert_ne!(h1.tmux_socket, h2.tmux_socket);
    assert_ne!(h1.host_key_pub, h2.host_key_pub);
    assert_eq!((h1.port, h2.port), (22, 22));

    // Each host: a key of its own, its own environment, tmux, and a tmux server of its own.
    let mut keys = Vec::new();
    for h in [&h1, &h2] {
        let key = keygen(
            dir,
            &format!("key-{}", h.name),
            &format!("tester@{}", h.name),
        );
        let public = std::fs::read_to_string(key.with_extension("pub")).expect("read .pub");
        h.authorize(&public);
        let known_hosts = pin(dir, &format!("known_hosts-{}", h.name), h);
        let out = run(
            ssh(h, &key, &known_hosts, 10),
            r#"echo "$AGENTGATE_HOME"; echo "$AGENTGATE_TMUX_SOCKET"; echo "$TMUX_TMPDIR"; tmux -V"#,
        );
        assert_ok(&out, h, "ssh");
        let text = stdout(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            4,
            "unexpected output from {}: {text:?}",
            h.name
        );
        assert_eq!(lines[0], h.agents_home.to_string_lossy(), "AGENTGATE_HOME");
        assert_eq!(lines[1], h.tmux_socket, "AGENTGATE_TMUX_SOCKET");
        assert_eq!(lines[2], h.tmux_tmpdir.to_string_lossy(), "TMUX_TMPDIR");
        assert!(
            lines[3].starts_with("tmux "),
            "not a tmux version: {text:?}"
        );

        // command() runs inside the namespace, where the host's address and lo are.
        let out = h
            .command("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .expect("run ip in the namespace");
        assert_ok(&out, h, "ip addr in the namespace");
        let addrs = stdout(&out);
        assert!(addrs.contains(&format!("inet {}/30", h.address)), "{addrs}");
        let out = h
            .command("ip")
            .args(["-o", "link", "show", "lo"])
            .output()
            .expect("run ip in the namespace");
        assert!(
            stdout(&out).contains("LOOPBACK,UP"),
            "lo is not up: {}",
            stdout(&out)
        );

        // tmux() and an ssh session on the host talk to the same tmux server.
        let out = h.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "probe",
            "sleep 600",
        ]);
        assert_ok(&out, h, "tmux new-session");
        let out = run(
            ssh(h, &key, &known_hosts, 10),
            r#"tmux -L "$AGENTGATE_TMUX_SOCKET" list-sessions -F '#{session_name}'"#,
        );
        assert_ok(&out, h, "tmux list-sessions over ssh");
        assert_eq!(stdout(&out).trim(), "probe");
        keys.push((key, known_hosts));
    }
    // ... and not the other host's.
    assert_ok(
        &h1.tmux(&["kill-session", "-t", "probe"]),
        &h1,
        "tmux kill-session",
    );
    assert!(
        h2.tmux(&["has-session", "-t", "probe"]).status.success(),
        "killing h1's session touched h2's tmux server"
    );
    let (key1, kh1) = &keys[0];
    let (key2, kh2) = &keys[1];

    // An open connection to h1 that will have to live through the link being down.
    let mut open = Running(
        ssh(&h1, key1, kh1, 10)
            .arg(r#"echo ready; read line; echo "got-$line""#)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh"),
    );
    let mut input = open.0.stdin.take().expect("stdin");
    let (tx, lines) = mpsc::channel();
    let reader = BufReader::new(open.0.stdout.take().expect("stdout"));
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(
        lines
            .recv_timeout(PATIENCE)
            .expect("the open session's ready"),
        "ready"
    );

    h1.link_down();
    input
        .write_all(b"hello\n")
        .expect("write to the open session");
    input.flush().expect("flush");
    let out = run(ssh(&h1, key1, kh1, 2), "true");
    assert!(!out.status.success(), "ssh to h1 worked with its link down");
    assert!(
        stderr(&out).contains("timed out"),
        "ssh to h1 with its link down did not time out (packets must be dropped silently): {}",
        stderr(&out)
    );
    assert_ok(
        &run(ssh(&h2, key2, kh2, 10), "true"),
        &h2,
        "ssh while h1 is down",
    );
    assert!(
        open.0.try_wait().expect("try_wait").is_none(),
        "the open session to h1 ended while its link was down (reset instead of stalled)"
    );
    assert!(
        lines.try_recv().is_err(),
        "the open session answered through a link that is down"
    );

    h1.link_up();
    assert_eq!(
        lines
            .recv_timeout(PATIENCE)
            .expect("the open session's answer after the link came back"),
        "got-hello"
    );
    drop(input);
    let status = open.0.wait().expect("wait for the open session");
    assert!(status.success(), "the open session ended with {status}");
    assert_ok(
        &run(ssh(&h1, key1, kh1, 10), "true"),
        &h1,
        "ssh after link_up",
    );

    // A new host key: the old pin is refused, a new one is accepted.
    let old_key = h2.host_key_pub.clone();
    h2.change_host_key();
    assert_ne!(h2.host_key_pub, old_key, "the host key did not change");
    let out = run(ssh(&h2, key2, kh2, 10), "true");
    assert!(!out.status.success(), "ssh accepted a changed host key");
    assert!(
        stderr(&out).contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || stderr(&out).contains("Host key verification failed"),
        "ssh did not fail on the host key: {}",
        stderr(&out)
    );
    let new_pin = pin(dir, "known_hosts-h2-new", &h2);
    let out = run(ssh(&h2, key2, &new_pin, 10), "echo rekeyed");
    assert_ok(&out, &h2, "ssh with the new host key");
    assert_eq!(stdout(&out).trim(), "rekeyed");

    // Dropping a host removes its namespace and its end of the link.
    let gone = [
        (h1.namespace.clone(), h1.root_address.clone()),
        (h2.namespace.clone(), h2.root_address.clone()),
    ];
    drop(h1);
    drop(h2);
    let namespaces = stdout(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .expect("ip"),
    );
    let root_addrs = stdout(
        &Command::new("ip")
            .args(["-4", "-o", "addr", "show"])
            .output()
            .expect("ip"),
    );
    for (ns, addr) in gone {
        assert!(
            !namespaces
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&ns)),
            "namespace {ns} is still there:\n{namespaces}"
        );
        assert!(
            !root_addrs.contains(&format!("inet {addr}/")),
            "{addr} is still on a root-side link:\n{root_addrs}"
        );
    }
}
