//! Port forwarding into an agent with the real OpenSSH client: `ssh -L` (to TCP and to unix
//! sockets), `ssh -D` (SOCKS, `localhost` included), `ssh -W`, refused dials, forwarding
//! switched off, and the whole VS Code Remote-SSH flow (one long `ssh -T -D ... bash` session
//! starting a server that SOCKS, `-L` and `-W` connections then reach). Also `ssh gw ssh-config`
//! used as-is by the ssh client.
//!
//! Forwarded connections are dialled from the agent's host, which for the `local` host is this
//! machine, so the targets here are servers the test runs on 127.0.0.1. Every wait is bounded;
//! a client that does not finish is killed and fails the test.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{Options, PATIENCE, TestGateway, stderr, stdout, wait_for};

// ---------------------------------------------------------------------------------------------
// Targets: small servers on this machine.

/// What a target sends as soon as a connection arrives.
pub(crate) const GREETING: &[u8] = b"hello from the target\n";

/// A target's side of one connection: greets, reads until the client half-closes, then answers
/// with how much it got and what it got in upper case, and closes.
fn answer(mut stream: impl Read + Write) {
    let _ = (|| -> std::io::Result<()> {
        stream.write_all(GREETING)?;
        let mut got = Vec::new();
        stream.read_to_end(&mut got)?;
        stream.write_all(format!("got {} bytes\n", got.len()).as_bytes())?;
        stream.write_all(&got.to_ascii_uppercase())?;
        stream.flush()
    })();
}

/// What the target answers after the client sent `sent` and half-closed.
pub(crate) fn expected_answer(sent: &[u8]) -> Vec<u8> {
    let mut reply = format!("got {} bytes\n", sent.len()).into_bytes();
    reply.extend(sent.to_ascii_uppercase());
    reply
}

/// A TCP target on 127.0.0.1; returns its port.
pub(crate) fn tcp_target() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the target");
    let port = listener.local_addr().expect("target address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
    port
}

/// A unix-socket target at `path`.
fn unix_target(path: &std::path::Path) {
    let listener = UnixListener::bind(path).expect("bind the unix target");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream));
        }
    });
}

/// A port that was free a moment ago, for a listener to take.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A port on 127.0.0.1 that refuses connections for as long as this lives: the local port of
/// an open connection, which has no listener and which nobody else can listen on meanwhile
/// (a port merely found free could be taken by a parallel test's listener).
struct RefusingPort {
    port: u16,
    _held: (TcpListener, TcpStream, TcpStream),
}

fn refusing_port() -> RefusingPort {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("address")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    RefusingPort {
        port: client.local_addr().expect("address").port(),
        _held: (listener, client, server),
    }
}

/// For failure messages: the sockets on `port`, as `ss` shows them (with their processes).
fn who_has(port: u16) -> String {
    let Ok(out) = Command::new("ss").arg("-tanpe").output() else {
        return "(ss is not available)".into();
    };
    let sockets: Vec<String> = stdout(&out)
        .lines()
        .filter(|l| l.contains(&format!(":{port} ")))
        .map(str::to_owned)
        .collect();
    format!("sockets on port {port}:\n{}", sockets.join("\n"))
}

/// `len` bytes of lower-case text unique to `tag`.
fn payload(tag: &str, len: usize) -> Vec<u8> {
    format!("{tag}-abcdefghijklmnopqrstuvwxyz;")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(len)
        .collect()
}

/// Reads the target's greeting.
fn read_greeting(stream: &mut impl Read) -> std::io::Result<()> {
    let mut greeting = vec![0; GREETING.len()];
    stream.read_exact(&mut greeting)?;
    if greeting != GREETING {
        return Err(std::io::Error::other(format!(
            "unexpected greeting {:?}",
            String::from_utf8_lossy(&greeting)
        )));
    }
    Ok(())
}

/// The client's side after the greeting: sends `sent`, shuts down its write side, and reads
/// everything the target answers until it closes.
fn send_then_half_close(stream: &mut TcpStream, sent: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(sent)?;
    stream.shutdown(Shutdown::Write)?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    Ok(reply)
}

/// Asserts an answer is the expected one without printing megabytes when it is not.
fn assert_answer(got: &[u8], sent: &[u8], what: &str) {
    let want = expected_answer(sent);
    assert!(
        got == want.as_slice(),
        "{what}: got {} bytes starting {:?}, want {} bytes starting {:?}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(80)]),
        want.len(),
        String::from_utf8_lossy(&want[..want.len().min(80)])
    );
}

// ---------------------------------------------------------------------------------------------
// ssh clients running in the background.

/// An ssh client running in the background. Its output is collected as it comes; it is killed
/// when dropped, so a failing test leaves nothing behind.
pub(crate) struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let reader = std::thread::spawn(move || {
        let mut chunk = [0; 16 * 1024];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&chunk[..n]);
        }
    });
    (buf, reader)
}

impl Client {
    pub(crate) fn spawn(mut cmd: Command) -> Client {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ssh");
        let (out, out_reader) = collect(child.stdout.take().expect("stdout"));
        let (err, err_reader) = collect(child.stderr.take().expect("stderr"));
        Client {
            stdin: child.stdin.take(),
            child,
            out,
            err,
            readers: vec![out_reader, err_reader],
        }
    }

    pub(crate) fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().expect("lock")).into_owned()
    }

    pub(crate) fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().expect("lock")).into_owned()
    }

    pub(crate) fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait ssh")
    }

    fn write_stdin(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).expect("write to ssh's stdin");
        stdin.flush().expect("flush ssh's stdin");
    }

    /// Connects to this client's forward on 127.0.0.1:`port`, with reads and writes that give
    /// up after PATIENCE.
    fn connect(&mut self, port: u16) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| {
            panic!(
                "cannot connect to the forward on port {port}: {e} (ssh exit: {:?})\nstderr: {}",
                self.exited(),
                self.stderr()
            )
        });
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        stream.set_write_timeout(Some(PATIENCE)).expect("timeout");
        stream
    }

    /// Waits until stdout holds `text`; returns stdout.
    fn wait_stdout(&mut self, text: &str) -> String {
        let start = Instant::now();
        loop {
            // Once ssh has exited, its output is whole when the readers are done.
            let exited = self.exited();
            if exited.is_some() {
                self.join_readers();
            }
            let out = self.stdout();
            if out.contains(text) {
                return out;
            }
            assert!(
                exited.is_none() && start.elapsed() < PATIENCE,
                "{text:?} never came on ssh's stdout (exit: {exited:?})\nstdout: {out}\nstderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn join_readers(&mut self) {
        for reader in self.readers.drain(..) {
            reader.join().expect("output reader");
        }
    }

    /// Closes stdin and waits for the client to exit and its output to end; a client that
    /// does not exit within PATIENCE is killed and fails the test.
    pub(crate) fn finish(&mut self) -> ExitStatus {
        self.stdin = None;
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.exited() {
                break status;
            }
            if start.elapsed() > PATIENCE {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ssh did not exit; killed it\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.join_readers();
        status
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `ssh <forward spec for a free local port> [rest]` and waits until its listener is up;
/// returns the client and the port. `spec` turns the port into the forward's arguments (`-L
/// ...` or `-D ...`, bound to 127.0.0.1). A port taken in the meantime by someone else is
/// retried with another.
fn with_forward(
    gw: &TestGateway,
    spec: impl Fn(u16) -> Vec<String>,
    rest: &[&str],
) -> (Client, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut cmd = gw.ssh_command();
        // With ExitOnForwardFailure a port ssh cannot bind ends it before its main loop, so
        // the main loop starting (which DEBUG1 logs) means the listener is bound. (The
        // "Local forwarding listening on" line comes before the bind: it proves nothing.)
        cmd.args(["-o", "LogLevel=DEBUG1", "-o", "ExitOnForwardFailure=yes"])
            .args(spec(port))
            .args(rest);
        let mut client = Client::spawn(cmd);
        let up = wait_for("ssh to set up its forward", || {
            if client.stderr().contains("Entering interactive session.") {
                Some(true)
            } else {
                client.exited().map(|_| false)
            }
        });
        if up {
            return (client, port);
        }
        assert!(
            client.stderr().contains("Address already in use"),
            "ssh {rest:?} exited before its forward was up:\n{}",
            client.stderr()
        );
    }
    panic!("could not find a free local port for the forward");
}

/// `ssh -N -L 127.0.0.1:PORT:<to> NAME@gw`; returns the client and PORT.
fn local_forward(gw: &TestGateway, to: &str, target: &str) -> (Client, u16) {
    with_forward(
        gw,
        |port| vec!["-L".into(), format!("127.0.0.1:{port}:{to}")],
        &["-N", target],
    )
}

/// `ssh -N -D 127.0.0.1:PORT NAME@gw`; returns the client and PORT.
fn dynamic_forward(gw: &TestGateway, target: &str) -> (Client, u16) {
    with_forward(
        gw,
        |port| vec!["-D".into(), format!("127.0.0.1:{port}")],
        &["-N", target],
    )
}

/// `curl` through the SOCKS proxy at 127.0.0.1:`socks`, the destination's name resolved by the
/// proxy, never bypassing it for local addresses.
fn curl_via_socks(socks: u16, url: &str) -> Command {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "--noproxy", ""])
        .args(["--socks5-hostname", &format!("127.0.0.1:{socks}"), url]);
    for var in [
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs the commands at once; returns their outputs in order.
fn run_all(commands: Vec<Command>) -> Vec<std::process::Output> {
    let children: Vec<Child> = commands
        .into_iter()
        .map(|mut cmd| {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().expect("wait"))
        .collect()
}

/// Runs `ssh NAME@gw COMMAND` (one string: ssh joins words with spaces anyway).
pub(crate) fn exec(gw: &TestGateway, target: &str, command: &str) -> String {
    let out = gw
        .ssh_command()
        .args([target, command])
        .output()
        .expect("run ssh");
    assert!(
        out.status.success(),
        "ssh {target} {command:?} failed with {}:\nstdout: {}\nstderr: {}\n\
         gateway (alive: {}) log:\n{}",
        out.status,
        stdout(&out),
        stderr(&out),
        std::path::Path::new(&format!("/proc/{}", gw.pid())).exists(),
        gw.log()
    );
    stdout(&out)
}

/// Processes started by a test outside any agent's tmux: killed when the test ends, if they
/// are still the ones started (their command line holds `marker`).
pub(crate) struct Strays(Vec<(u32, &'static str)>);

impl Drop for Strays {
    fn drop(&mut self) {
        for (pid, marker) in &self.0 {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(marker) {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}

/// The number in `text` between `before` and the next `==` (None until that `==` is there).
fn field(text: &str, before: &str) -> Option<u32> {
    let rest = &text[text.find(before)? + before.len()..];
    rest[..rest.find("==")?].parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn local_forward_reaches_a_tcp_server_both_ways_with_half_close_and_concurrent_connections() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let target = tcp_target();
    let (mut ssh, port) = local_forward(&gw, &format!("127.0.0.1:{target}"), "web@gw");

    // One connection: the target speaks first, then the client sends more than ssh's channel
    // window, half-closes, and still reads the whole answer the target sends after the EOF.
    let mut stream = ssh.connect(port);
    read_greeting(&mut stream).expect("the target's greeting through the forward");
    let sent = payload("single", 3 * 1024 * 1024);
    let got = send_then_half_close(&mut stream, &sent).expect("the answer after half-close");
    assert_answer(&got, &sent, "one connection");

    // Twenty connections open at the same time through the same forward.
    const CONNECTIONS: usize = 20;
    let all_open = Arc::new(Barrier::new(CONNECTIONS));
    let workers: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let all_open = all_open.clone();
            std::thread::spawn(move || {
                let opened = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                    s.set_read_timeout(Some(PATIENCE))?;
                    s.set_write_timeout(Some(PATIENCE))?;
                    read_greeting(&mut s)?;
                    Ok(s)
                });
                // Every connection has been greeted before any of them goes on.
                all_open.wait();
                let sent = payload(&format!("conn{i}"), 64 * 1024 + i);
                let got = opened.and_then(|mut s| send_then_half_close(&mut s, &sent));
                (sent, got)
            })
        })
        .collect();
    for (i, worker) in workers.into_iter().enumerate() {
        let (sent, got) = worker.join().expect("worker");
        let got = got.unwrap_or_else(|e| panic!("connection {i} failed: {e}"));
        assert_answer(&got, &sent, &format!("connection {i}"));
    }

    assert!(ssh.exited().is_none(), "ssh -L ended: {}", ssh.stderr());
}

#[test]
fn dynamic_forward_serves_concurrent_socks_connections_to_a_server_in_the_agent() {
    let gw = TestGateway::start();
    gw.ok(&[
        "create",
        "web",
        "--",
        "python3",
        "-u",
        "-m",
        "http.server",
        "0",
        "--bind",
        "127.0.0.1",
    ]);
    let server_port = wait_for("the agent's http.server to listen", || {
        let logs = gw.ok(&["logs", "web"]);
        let said = "Serving HTTP on 127.0.0.1 port ";
        let at = logs.find(said)? + said.len();
        logs[at..].split(' ').next()?.parse::<u16>().ok()
    });
    exec(&gw, "web@gw", "echo served-from-the-workspace > page.txt");
    let (_ssh, socks) = dynamic_forward(&gw, "web@gw");

    // The destination as the SOCKS client names it, the name resolved on the agent's side.
    let hosts = [
        "127.0.0.1",
        "localhost",
        "127.0.0.1",
        "localhost",
        "127.0.0.1",
    ];
    let outputs = run_all(
        hosts
            .iter()
            .map(|host| curl_via_socks(socks, &format!("http://{host}:{server_port}/page.txt")))
            .collect(),
    );
    for (host, out) in hosts.iter().zip(&outputs) {
        assert!(
            out.status.success() && stdout(out) == "served-from-the-workspace\n",
            "curl via SOCKS to {host} got {}: {:?} {}\n{}\ngateway log:\n{}",
            out.status,
            stdout(out),
            stderr(out),
            who_has(socks),
            gw.log()
        );
    }
    // They went through the gateway: each is a forward in the audit trail, named as given.
    let events: serde_json::Value =
        serde_json::from_str(&gw.ok(&["events", "--agent", "web", "--json", "-n", "1000"]))
            .expect("events --json is JSON");
    for host in ["127.0.0.1", "localhost"] {
        let detail = format!("{host}:{server_port}");
        let forwards = events
            .as_array()
            .expect("an array")
            .iter()
            .filter(|e| e["kind"] == "forward" && e["detail"] == detail.as_str())
            .filter(|e| e["result"] == "ok")
            .count();
        let asked = hosts.iter().filter(|h| **h == host).count();
        assert_eq!(forwards, asked, "forwards to {detail} in {events}");
    }
}

#[test]
fn stdio_forward_carries_a_conversation_and_closing_stdin_half_closes() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let target = tcp_target();
    let mut cmd = gw.ssh_command();
    cmd.args(["-W", &format!("127.0.0.1:{target}"), "web@gw"]);
    let mut ssh = Client::spawn(cmd);

    // The target speaks first, while ssh's stdin is still open.
    ssh.wait_stdout(std::str::from_utf8(GREETING).expect("utf8"));
    let sent = payload("stdio", 256 * 1024);
    ssh.write_stdin(&sent);
    // Closing stdin is the target's EOF; its answer still comes back whole.
    let status = ssh.finish();
    let mut want = GREETING.to_vec();
    want.extend(expected_answer(&sent));
    let got = ssh.out.lock().expect("lock").clone();
    assert!(
        got == want,
        "ssh -W printed {} bytes starting {:?}, want {} bytes\nstderr: {}",
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(80)]),
        want.len(),
        ssh.stderr()
    );
    assert!(
        status.success(),
        "ssh -W exited with {status}: {}",
        ssh.stderr()
    );
}

#[test]
fn local_forward_to_a_unix_socket_reaches_it() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let socket = gw.dir.path().join("target.sock");
    unix_target(&socket);
    let (mut ssh, port) = local_forward(&gw, socket.to_str().expect("utf8"), "web@gw");

    for round in 0..3 {
        let mut stream = ssh.connect(port);
        read_greeting(&mut stream).expect("the unix target's greeting");
        let sent = payload(&format!("unix{round}"), 100_000);
        let got = send_then_half_close(&mut stream, &sent).expect("the unix target's answer");
        assert_answer(&got, &sent, "through the unix-socket forward");
    }

    assert!(ssh.exited().is_none(), "ssh -L ended: {}", ssh.stderr());
}

#[test]
fn a_refused_dial_fails_at_once_with_the_reason_and_the_forward_stays_up() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let refusing = refusing_port();
    let closed = refusing.port;

    // -W: ssh exits non-zero and says why.
    let mut cmd = gw.ssh_command();
    cmd.args([
        "-o",
        "LogLevel=INFO",
        "-W",
        &format!("127.0.0.1:{closed}"),
        "web@gw",
    ]);
    let mut ssh = Client::spawn(cmd);
    let status = ssh.finish();
    let err = ssh.stderr();
    assert!(
        !status.success(),
        "ssh -W to a closed port succeeded: {err}\n{}",
        who_has(closed)
    );
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{closed}"))
            && err.contains("Connection refused"),
        "stderr does not name the failure: {err}"
    );

    // On a connection to the gateway itself there is no agent to dial from: refused, saying
    // where forwarding works.
    let mut cmd = gw.ssh_command();
    cmd.args([
        "-o",
        "LogLevel=INFO",
        "-W",
        &format!("127.0.0.1:{closed}"),
        "gw",
    ]);
    let mut ssh = Client::spawn(cmd);
    let status = ssh.finish();
    let err = ssh.stderr();
    assert!(
        !status.success(),
        "ssh -W through the control route succeeded: {err}"
    );
    assert!(
        err.contains("port forwarding works on connections to an agent"),
        "stderr does not say where forwarding works: {err}"
    );

    // -L, to a closed port and to a missing unix socket: each local connection is closed
    // without data, ssh logs the reason, and the forward stays up for the next connection.
    let missing = gw.dir.path().join("nobody-listens.sock");
    for (to, reason) in [
        (format!("127.0.0.1:{closed}"), "Connection refused"),
        (
            missing.to_str().expect("utf8").to_owned(),
            "No such file or directory",
        ),
    ] {
        let (mut forward, port) = local_forward(&gw, &to, "web@gw");
        for _ in 0..3 {
            let mut stream = forward.connect(port);
            let mut got = Vec::new();
            match stream.read_to_end(&mut got) {
                Ok(_) => assert!(
                    got.is_empty(),
                    "data from a refused dial to {to}: {got:?}\n{}",
                    who_has(closed)
                ),
                Err(e) => assert!(
                    !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the local connection of a refused dial to {to} stayed open\n{}",
                    who_has(closed)
                ),
            }
        }
        assert!(
            forward.exited().is_none(),
            "ssh -L to {to} ended: {}",
            forward.stderr()
        );
        let err = forward.stderr();
        assert!(
            err.contains("cannot connect to") && err.contains(reason),
            "ssh -L to {to} does not say why: {err}\n{}",
            who_has(closed)
        );
    }
}

#[test]
fn forwarding_switched_off_in_the_config_is_refused_saying_so() {
    let gw = TestGateway::start_with(Options {
        extra_config: "[ssh]\nallow_forwarding = false\n".into(),
        ..Options::default()
    });
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    let target = TcpListener::bind("127.0.0.1:0").expect("bind");
    target.set_nonblocking(true).expect("nonblocking");
    let port = target.local_addr().expect("address").port();

    let mut cmd = gw.ssh_command();
    cmd.args([
        "-o",
        "LogLevel=INFO",
        "-W",
        &format!("127.0.0.1:{port}"),
        "web@gw",
    ]);
    let mut ssh = Client::spawn(cmd);
    let status = ssh.finish();
    let err = ssh.stderr();
    assert!(
        !status.success(),
        "ssh -W succeeded with forwarding off: {err}"
    );
    assert!(
        err.contains("port forwarding is switched off"),
        "stderr does not say forwarding is off: {err}"
    );
    assert!(
        target.accept().is_err(),
        "the gateway dialled the target although forwarding is off"
    );
    // Sessions inside the agent are not affected.
    assert_eq!(exec(&gw, "web@gw", "echo still-works"), "still-works\n");
}

#[test]
fn vs_code_remote_ssh_flow_works_end_to_end() {
    let gw = TestGateway::start();
    gw.ok(&["create", "web", "--", "sleep", "600"]);
    vs_code_flow(&gw);
}

#[test]
fn vs_code_remote_ssh_flow_works_for_an_agent_on_a_remote_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "web", "--host", "h1", "--", "sleep", "600"]);
    vs_code_flow(&gw);
}

/// What VS Code Remote-SSH does against agent `web`: a long `ssh -T -D` session running its
/// bootstrap on stdin, a server started in the agent and reached through SOCKS, `-L` and `-W`,
/// and background processes that outlive the connection that started them.
fn vs_code_flow(gw: &TestGateway) {
    let mut strays = Strays(Vec::new());

    // The long session: `ssh -T -D PORT NAME@gw bash`, the script fed on stdin, stdin kept open.
    let (mut session, socks) = with_forward(
        gw,
        |port| vec!["-T".into(), "-D".into(), format!("127.0.0.1:{port}")],
        &["web@gw", "bash"],
    );
    session.write_stdin(
        br#"echo vscode-e2e-content > served.txt
nohup python3 -u -m http.server 0 --bind 127.0.0.1 > server.log 2>&1 < /dev/null &
echo "serverPid==$!=="
for i in $(seq 200); do grep -q 'Serving HTTP' server.log 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.* port \([0-9][0-9]*\) .*/\1/p' server.log | head -n 1)
echo "listeningOn==$port=="
"#,
    );
    session.wait_stdout("listeningOn==");
    let out = wait_for("the server's port on the session's stdout", || {
        let out = session.stdout();
        field(&out, "listeningOn==").map(|_| out)
    });
    let server_pid = field(&out, "serverPid==").expect("the server's pid");
    strays.0.push((server_pid, "http.server"));
    let server_port = field(&out, "listeningOn==").expect("the server's port");

    // Several SOCKS connections at once through the session's -D, to 127.0.0.1 as VS Code does.
    let url = format!("http://127.0.0.1:{server_port}/served.txt");
    for out in run_all((0..3).map(|_| curl_via_socks(socks, &url)).collect()) {
        assert_eq!(
            stdout(&out),
            "vscode-e2e-content\n",
            "curl via the session's SOCKS: {}",
            stderr(&out)
        );
    }

    // -L on a separate connection.
    let (_forward, port) = local_forward(gw, &format!("127.0.0.1:{server_port}"), "web@gw");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", "*"])
        .arg(format!("http://127.0.0.1:{port}/served.txt"))
        .output()
        .expect("curl");
    assert_eq!(stdout(&out), "vscode-e2e-content\n", "{}", stderr(&out));

    // -W on another one.
    let get_via_stdio = || {
        let mut cmd = gw.ssh_command();
        cmd.args(["-W", &format!("127.0.0.1:{server_port}"), "web@gw"]);
        let mut stdio = Client::spawn(cmd);
        stdio.write_stdin(b"GET /served.txt HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
        stdio.wait_stdout("vscode-e2e-content");
        let status = stdio.finish();
        assert!(status.success(), "ssh -W: {status}: {}", stdio.stderr());
        stdio.stdout()
    };
    assert!(get_via_stdio().starts_with("HTTP/1.0 200"));

    // A background process started by one connection is alive on the next.
    let sleeper: u32 = exec(gw, "web@gw", "nohup sleep 300 > /dev/null 2>&1 & echo $!")
        .trim()
        .parse()
        .expect("the background process's pid");
    strays.0.push((sleeper, "sleep"));
    assert_eq!(
        exec(gw, "web@gw", &format!("kill -0 {sleeper} && echo alive")),
        "alive\n"
    );

    // The session is still going; closing its stdin ends it with status 0.
    assert!(session.exited().is_none(), "{}", session.stderr());
    let status = session.finish();
    assert!(
        status.success(),
        "the session ended with {status}: {}",
        session.stderr()
    );

    // The server started in the session outlives it, as VS Code's does.
    assert!(get_via_stdio().contains("vscode-e2e-content"));
}

#[test]
fn ssh_config_output_works_as_is_for_the_ssh_client() {
    // The gateway listens on a port it is told, as a real one does, so it can name it.
    let mut gw = TestGateway::prepare(Options::default());
    gw.port = free_port();
    gw.spawn();
    gw.ok(&["create", "web", "--", "sleep", "600"]);

    let config = gw.dir.path().join("generated_ssh_config");
    std::fs::write(&config, gw.ok(&["ssh-config"])).expect("write the generated config");
    let out = Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .arg("-i")
        .arg(&gw.key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            gw.dir.path().join("known_hosts").display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "agent-web",
            "echo via-alias $AGENTGATE_AGENT",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "ssh agent-web failed with {}: {}\nconfig:\n{}",
        out.status,
        stderr(&out),
        std::fs::read_to_string(&config).unwrap_or_default()
    );
    assert_eq!(stdout(&out), "via-alias web\n");

    let json: serde_json::Value =
        serde_json::from_str(&gw.ok(&["ssh-config", "--json"])).expect("ssh-config --json is JSON");
    let hosts = json.as_array().expect("an array");
    assert_eq!(hosts.len(), 1, "{json}");
    assert_eq!(hosts[0]["host"], "agent-web");
    assert_eq!(hosts[0]["user"], "web");
    assert_eq!(hosts[0]["host_name"], "127.0.0.1");
    assert_eq!(hosts[0]["port"], u64::from(gw.port));
}
