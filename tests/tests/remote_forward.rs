//! Remote forwarding into an agent with the real OpenSSH client: `ssh -R` to a TCP port
//! (port 0 allocated and reported), `ssh -R PORT` as a SOCKS proxy that `curl` inside the agent
//! uses, `-R` to a unix socket, `-O forward` and `-O cancel` through a ControlMaster, the
//! listener gone once the client's connection ends, the bound on forwards per connection, and
//! remote forwarding switched off (refused, logged, and in the audit trail). Each runs on
//! `local` and on a namespace host.
//!
//! The listener is on the agent's host, so every connection to it is made from inside the
//! agent (`ssh web@gw python3 ...`), and the target is a server this test runs on 127.0.0.1:
//! the client's side.

use std::path::Path;
use std::process::Command;

use e2e::{Options, TestGateway, stderr, stdout, wait_for};
use serde_json::Value;

use crate::forwarding::{Client, GREETING, exec, expected_answer, free_port, tcp_target};

/// A Python program run inside the agent: connects to `address` (`127.0.0.1:PORT` or a
/// socket's path), reads the target's greeting, sends `SIZE` bytes, half-closes and prints
/// everything it got; prints `refused` if nothing listens there.
fn client_program(address: &str, size: usize) -> String {
    let connect = match address.strip_prefix("127.0.0.1:") {
        Some(port) => format!("s = socket.create_connection(('127.0.0.1', {port}), timeout=15)"),
        None => {
            format!("s = socket.socket(socket.AF_UNIX); s.settimeout(15); s.connect('{address}')")
        }
    };
    format!(
        "python3 -c \"\nimport socket, sys\ntry:\n    {connect}\nexcept (ConnectionRefusedError, FileNotFoundError):\n    print('refused'); sys.exit(0)\ns.sendall(b'x' * {size}); s.shutdown(socket.SHUT_WR)\ngot = b''\nwhile True:\n    b = s.recv(65536)\n    if not b: break\n    got += b\nsys.stdout.write(got.decode())\n\""
    )
}

/// Asserts [`client_program`]'s output is what a carried conversation prints, without
/// printing megabytes when it is not.
fn assert_carried(got: &str, size: usize, what: &str) {
    let want = carried(size);
    assert!(
        got == want,
        "{what}: got {} bytes ending {:?}, want {} bytes",
        got.len(),
        &got[got.len().saturating_sub(120)..],
        want.len()
    );
}

/// What [`client_program`] prints when the forward carried its conversation.
fn carried(size: usize) -> String {
    let mut want = GREETING.to_vec();
    want.extend(expected_answer(&vec![b'x'; size]));
    String::from_utf8(want).expect("text")
}

/// `ssh -N -R SPEC web@gw` with extra options; waits until the client reports the forward
/// (or exits) and returns it.
fn remote_forward(gw: &TestGateway, spec: &str, options: &[&str], wait: &str) -> Client {
    let mut cmd = gw.ssh_command();
    cmd.args(["-o", "LogLevel=INFO"])
        .args(options)
        .args(["-N", "-R", spec, "web@gw"]);
    let mut client = Client::spawn(cmd);
    wait_for(&format!("ssh -R {spec} to say {wait:?}"), || {
        let err = client.stderr();
        if err.contains(wait) {
            Some(())
        } else {
            client.exited().map(|status| {
                panic!(
                    "ssh -R {spec} exited with {status} before {wait:?}:\n{err}\ngateway log:\n{}",
                    gw.log()
                )
            })
        }
    });
    client
}

/// The port in OpenSSH's "Allocated port N for remote forward to ..." line.
fn allocated_port(stderr: &str) -> u16 {
    let rest = stderr
        .split("Allocated port ")
        .nth(1)
        .unwrap_or_else(|| panic!("no allocated port in: {stderr}"));
    rest.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no port number in: {stderr}"))
}

fn events(gw: &TestGateway) -> Vec<Value> {
    serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"])).expect("events --json")
}

/// The forward events whose detail starts with `-R`.
fn remote_forward_events(gw: &TestGateway) -> Vec<Value> {
    events(gw)
        .into_iter()
        .filter(|e| {
            e["kind"] == "forward" && e["detail"].as_str().is_some_and(|d| d.starts_with("-R "))
        })
        .collect()
}

/// Waits until nothing listens at `address` on the agent's host any more.
fn wait_until_closed(gw: &TestGateway, address: &str) {
    wait_for(&format!("the listener at {address} to close"), || {
        (exec(gw, "web@gw", &client_program(address, 1)).trim() == "refused").then_some(())
    });
}

#[test]
fn remote_forward_on_port_0_serves_the_agent_and_closes_with_the_connection() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    remote_tcp_flow(&gw);
}

#[test]
fn remote_forward_on_port_0_serves_an_agent_on_a_remote_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "web", "--host", "h1", "--", "sleep", "600"]);
    remote_tcp_flow(&gw);
}

/// `ssh -R 0:127.0.0.1:TARGET web@gw`: the allocated port is reported, a connection made inside
/// the agent reaches the client's target both ways with a half-close, the forward is in the
/// audit trail with its count, and once ssh is gone nothing listens there.
fn remote_tcp_flow(gw: &TestGateway) {
    let target = tcp_target();
    let mut ssh = remote_forward(gw, &format!("0:127.0.0.1:{target}"), &[], "Allocated port");
    let port = allocated_port(&ssh.stderr());
    let address = format!("127.0.0.1:{port}");
    let size = 3 * 1024 * 1024;
    let got = exec(gw, "web@gw", &client_program(&address, size));
    assert_carried(&got, size, "through -R from inside the agent");
    // A second connection through the same forward.
    let got = exec(gw, "web@gw", &client_program(&address, 10));
    assert_carried(&got, 10, "a second connection");
    assert!(ssh.exited().is_none(), "ssh -R ended: {}", ssh.stderr());

    drop(ssh);
    wait_until_closed(gw, &address);
    let recorded = wait_for("the forward's end in the audit trail", || {
        remote_forward_events(gw)
            .into_iter()
            .find(|e| e["result"] != "started")
    });
    assert_eq!(recorded["agent"], "web", "{recorded:#}");
    assert!(
        recorded["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("listening on 127.0.0.1:{port}"))),
        "{recorded:#}"
    );
    assert_eq!(
        recorded["message"], "closed after 2 connection(s)",
        "{recorded:#}"
    );
}

#[test]
fn remote_socks_forward_lets_curl_inside_the_agent_reach_the_clients_side() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    socks_flow(&gw);
}

#[test]
fn remote_socks_forward_works_for_an_agent_on_a_remote_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "web", "--host", "h1", "--", "sleep", "600"]);
    socks_flow(&gw);
}

/// `ssh -R 0 web@gw` (OpenSSH answers SOCKS itself): `curl --socks5` inside the agent fetches a
/// page from an HTTP server on the client's side.
fn socks_flow(gw: &TestGateway) {
    let served = gw.dir.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    std::fs::write(served.join("page.txt"), "served on the client's side\n").expect("write");
    let http = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let http_port = http.local_addr().expect("address").port();
    drop(http);
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &http_port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start python3 -m http.server");
    wait_for("the HTTP server", || {
        std::net::TcpStream::connect(("127.0.0.1", http_port)).ok()
    });

    let ssh = remote_forward(gw, "0", &[], "Allocated port");
    let socks = allocated_port(&ssh.stderr());
    let page = exec(
        gw,
        "web@gw",
        &format!(
            "curl -sS --max-time 20 --noproxy '' --socks5-hostname 127.0.0.1:{socks} \
             http://127.0.0.1:{http_port}/page.txt"
        ),
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(page, "served on the client's side\n");
}

#[test]
fn remote_forward_to_a_unix_socket_and_cancelled_through_a_control_master() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    control_master_flow(&gw, true);
}

#[test]
fn remote_forward_to_a_unix_socket_on_a_remote_host_and_cancelled() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "web", "--host", "h1", "--", "sleep", "600"]);
    // A remote host's sshd leaves the socket file behind, as it does for any `ssh -R` to it
    // (unless its `StreamLocalBindUnlink` is on): nothing listens on it any more.
    control_master_flow(&gw, false);
}

/// A ControlMaster connection to `web`; `-O forward -R` adds a unix-socket forward and a TCP
/// forward on a fixed port, both reached from inside the agent; `-O cancel` closes each (and,
/// when `unlinked`, the socket file is gone too).
fn control_master_flow(gw: &TestGateway, unlinked: bool) {
    let control = gw.dir.path().join("cm");
    let mut master_cmd = gw.ssh_command();
    master_cmd
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-S"])
        .arg(&control)
        .args(["-N", "web@gw"]);
    let mut master = Client::spawn(master_cmd);
    wait_for("the control socket", || {
        if control.exists() {
            Some(())
        } else {
            master
                .exited()
                .map(|s| panic!("the master exited with {s}: {}", master.stderr()))
        }
    });
    let mux = |op: &str, spec: &str| {
        let out = gw
            .ssh_command()
            .arg("-S")
            .arg(&control)
            .args(["-O", op, "-R", spec, "web@gw"])
            .output()
            .expect("ssh -O");
        assert!(
            out.status.success(),
            "ssh -O {op} -R {spec}: {}{}\ngateway log:\n{}",
            stdout(&out),
            stderr(&out),
            gw.log()
        );
    };
    let target = tcp_target();

    // A unix socket on the agent's host, in its workspace: a path its sandbox shows.
    let workspace = gw.info("web")["workspace"]
        .as_str()
        .expect("workspace")
        .to_owned();
    let socket = Path::new(&workspace).join("fwd.sock");
    let socket = socket.to_str().expect("utf-8 path");
    let spec = format!("{socket}:127.0.0.1:{target}");
    mux("forward", &spec);
    let got = exec(gw, "web@gw", &client_program(socket, 100));
    assert_carried(&got, 100, "through -R to a unix socket");
    mux("cancel", &spec);
    wait_until_closed(gw, socket);
    assert!(
        !unlinked || !Path::new(socket).exists(),
        "the socket file is left after the forward was cancelled"
    );

    // A fixed TCP port.
    let port = free_port();
    let spec = format!("{port}:127.0.0.1:{target}");
    mux("forward", &spec);
    let address = format!("127.0.0.1:{port}");
    let got = exec(gw, "web@gw", &client_program(&address, 100));
    assert_carried(&got, 100, "through -R to a fixed port");
    mux("cancel", &spec);
    wait_until_closed(gw, &address);
    assert!(
        master.exited().is_none(),
        "the master ended: {}",
        master.stderr()
    );
}

#[test]
fn remote_forwards_per_connection_are_bounded() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let mut cmd = gw.ssh_command();
    cmd.args(["-o", "LogLevel=INFO", "-N"]);
    // Nine different forwards (ssh asks once for forwards that are the same); their targets
    // are never dialled.
    for target in 1..=9 {
        cmd.args(["-R", &format!("0:127.0.0.1:{target}")]);
    }
    cmd.arg("web@gw");
    let mut ssh = Client::spawn(cmd);
    let err = wait_for("ssh to report all nine forwards", || {
        let err = ssh.stderr();
        let answered = err.matches("Allocated port").count()
            + err.matches("remote port forwarding failed").count();
        (answered == 9).then_some(err)
    });
    assert_eq!(err.matches("Allocated port").count(), 8, "{err}");
    assert!(ssh.exited().is_none(), "ssh ended: {}", ssh.stderr());
    assert!(
        gw.log().contains("at most 8 remote forwards"),
        "the refusal is not logged with its reason:\n{}",
        gw.log()
    );
}

#[test]
fn remote_forwarding_switched_off_is_refused_logged_and_recorded() {
    let gw = TestGateway::start_with(Options {
        extra_config: "[ssh]\nallow_remote_forwarding = false\n".into(),
        ..Options::default()
    });
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let target = tcp_target();
    let mut cmd = gw.ssh_command();
    cmd.args([
        "-o",
        "LogLevel=INFO",
        "-o",
        "ExitOnForwardFailure=yes",
        "-N",
    ])
    .args(["-R", &format!("0:127.0.0.1:{target}"), "web@gw"]);
    let mut ssh = Client::spawn(cmd);
    let status = ssh.finish();
    assert!(!status.success(), "ssh -R succeeded: {}", ssh.stderr());
    assert!(
        ssh.stderr().contains("remote port forwarding failed"),
        "{}",
        ssh.stderr()
    );
    let log = gw.log();
    assert!(
        log.contains("remote forward refused") && log.contains("allow_remote_forwarding"),
        "the refusal is not logged with its reason:\n{log}"
    );
    let recorded = wait_for("the refusal in the audit trail", || {
        remote_forward_events(&gw).into_iter().next()
    });
    assert_eq!(recorded["agent"], "web", "{recorded:#}");
    assert_ne!(recorded["result"], "ok", "{recorded:#}");
    assert!(
        recorded["message"]
            .as_str()
            .is_some_and(|m| m.contains("switched off")),
        "{recorded:#}"
    );
    // Sessions and -L are not affected.
    assert_eq!(exec(&gw, "web@gw", "echo still-works"), "still-works\n");
}
