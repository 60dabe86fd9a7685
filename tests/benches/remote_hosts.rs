//! Agents on remote hosts, measured against OpenSSH straight to the same host, in one run.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench remote_hosts
//!   ROUNDS=3 SIZE_MB=1024 KEYS=350 ATTACHES=10 cargo bench -p e2e --bench remote_hosts
//!   (the defaults)
//!
//! Needs root (the hosts are network namespaces running a real sshd, see `e2e::netns`). In one
//! run: a gateway with three namespace hosts; an agent on h1; then ROUNDS rounds that each time
//! run every measurement once through the gateway (`bench@gw`, gateway → h1 over the pooled SSH
//! leg) and once straight to h1's sshd with the same client options (`root@h1`, the key
//! exchange pinned to the curve25519-sha256 the client negotiates with agentgate), alternating:
//!   connect    ssh TARGET true                              (connection set-up and one exec)
//!   exec-down  ssh TARGET 'head -c SIZE /dev/zero'          (bytes read from ssh's stdout)
//!   exec-up    SIZE bytes to ssh TARGET 'cat > /dev/null'   (bytes written to ssh's stdin)
//!   scp-up     scp FILE TARGET:PATH    scp-down  scp TARGET:PATH FILE      (a SIZE file)
//!   sftp-up    sftp -b: put FILE PATH  sftp-down sftp -b: get PATH FILE
//!              (both sides write into the agent's workspace on h1, and read from it)
//! then attach: from starting `ssh -tt screen@gw` (agent on h1) and `ssh -tt screenl@gw`
//! (agent on the gateway's own machine) until the agent's screen (a marker line) is drawn,
//! against `ssh -tt root@h1 tmux attach` to the h1 agent's session, each in a terminal of its
//! own (`script`), ATTACHES times per round and side;
//! then keystroke echo: an agent running `cat` on h1, attached through the gateway
//! (`ssh -tt echo@gw`) and straight to its tmux session on h1 (`ssh -tt root@h1 tmux attach`),
//! one key at a time, the time until its echo comes back, KEYS keys per round and side;
//! and `ssh gw list` with 1 host and with 3 hosts (agents on each). Medians are printed as a
//! markdown table, written to bench/results/remote-hosts.json, and between
//! `<!-- remote-hosts:start -->` and `<!-- remote-hosts:end -->` in docs/PERFORMANCE.md.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::bench::{
    direct_ssh_options, env_number, median, negotiated, percentile, settle_memory, write_results,
    write_section,
};
use e2e::netns::NetnsHost;
use e2e::netns::add_host;
use e2e::{TestGateway, shell_quote};

/// Runs `cmd` (an ssh), feeding `up` zero bytes on stdin or reading its stdout to the end;
/// returns the wall time and the bytes moved.
fn transfer(mut cmd: Command, up: u64) -> (Duration, u64) {
    let started = Instant::now();
    cmd.stdin(if up > 0 {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("ssh");
    let writer = child.stdin.take().map(|mut stdin| {
        std::thread::spawn(move || {
            let chunk = vec![0u8; 1 << 20];
            let mut left = up;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if stdin.write_all(&chunk[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
        })
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        match stdout.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n as u64,
        }
    }
    if let Some(w) = writer {
        let _ = w.join();
    }
    let status = child.wait().expect("wait ssh");
    assert!(status.success(), "transfer failed: {status}");
    (started.elapsed(), if up > 0 { up } else { read })
}

/// An `ssh -tt ...` running in a terminal of its own (`script`), its output read by a thread.
struct Terminal {
    line: String,
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    rx: mpsc::Receiver<Vec<u8>>,
    reader: std::thread::JoinHandle<()>,
}

impl Terminal {
    fn open(ssh_line: &str) -> Terminal {
        let mut child = Command::new("script")
            .args([
                "-qfec",
                &format!("stty cols 100 rows 30; exec {ssh_line}"),
                "/dev/null",
            ])
            // tmux needs a terminal type; bench/run may start with an empty environment.
            .env("TERM", "xterm-256color")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            line: ssh_line.to_owned(),
            child,
            stdin,
            rx,
            reader,
        }
    }

    /// Waits until the terminal has been quiet for `quiet`, after output of `at_least` bytes.
    fn settle(&self, quiet: Duration, at_least: usize) {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.rx.recv_timeout(quiet) {
                Ok(chunk) => seen += chunk.len(),
                Err(mpsc::RecvTimeoutError::Timeout) if seen >= at_least => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{} ended", self.line),
            }
            assert!(Instant::now() < deadline, "{}: no screen", self.line);
        }
    }

    /// Reads until `needle` has appeared in the output.
    fn wait_for(&self, needle: &[u8]) {
        let mut all = Vec::new();
        while !all.windows(needle.len()).any(|w| w == needle) {
            let chunk = self
                .rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|e| {
                    panic!(
                        "{}: {} never appeared ({e}); the screen: {}",
                        self.line,
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(&all)
                    )
                });
            all.extend_from_slice(&chunk);
        }
    }

    fn close(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self.rx);
        let _ = self.reader.join();
    }
}

/// Runs `ssh_line` (an `ssh -tt ...` attaching to a tmux session whose pane runs `cat`) in a
/// terminal of its own, types `keys` keys one at a time, and returns, for each, the
/// milliseconds until its echo came back.
fn echo_latency(ssh_line: &str, keys: u64) -> Vec<f64> {
    let mut term = Terminal::open(ssh_line);
    term.settle(Duration::from_millis(500), 1);
    let mut times = Vec::new();
    for i in 0..keys {
        if i % 40 == 39 {
            // A fresh line (C-u) before the line gets long.
            term.stdin.write_all(b"\x15").expect("type");
            term.settle(Duration::from_millis(100), 0);
        }
        let started = Instant::now();
        term.stdin.write_all(b"z").expect("type");
        term.stdin.flush().expect("type");
        loop {
            let chunk = term
                .rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{ssh_line}: no echo ({e})"));
            if chunk.contains(&b'z') {
                break;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        // Whatever else that key redraws, before the next one.
        term.settle(Duration::from_millis(20), 0);
    }
    term.close();
    times
}

/// Milliseconds from starting `ssh_line` until `marker` is on its screen.
fn attach_latency(ssh_line: &str, marker: &str) -> f64 {
    let started = Instant::now();
    let term = Terminal::open(ssh_line);
    term.wait_for(marker.as_bytes());
    let took = started.elapsed().as_secs_f64() * 1000.0;
    term.close();
    took
}

/// Keystroke echo through the gateway and straight to h1, alternating, `rounds` times.
fn echo_rows(
    gw: &TestGateway,
    h1: &NetnsHost,
    direct_ssh: &str,
    rounds: u64,
) -> (Vec<f64>, Vec<f64>) {
    let keys = env_number("KEYS", 350);
    gw.ok(&["create", "echo", "--host", "h1", "--", "cat"]);
    let via_gw = format!(
        "ssh -F {} -tt echo@gw",
        shell_quote(&gw.ssh_config_path().to_string_lossy())
    );
    let direct = format!(
        "{direct_ssh} -tt tmux -L {} attach -t =echo",
        shell_quote(&h1.tmux_socket)
    );
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("remote_hosts: echo round {}/{rounds}", round + 1);
        through.extend(echo_latency(&via_gw, keys));
        straight.extend(echo_latency(&direct, keys));
    }
    (through, straight)
}

/// One side of the comparison, for scp and sftp: client options, destination, and the
/// directory its remote paths are in ("" for the agent's workspace, through the gateway).
struct Side {
    options: Vec<String>,
    destination: String,
    dir: String,
}

impl Side {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(&self.options)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    fn remote(&self, file: &str) -> String {
        format!("{}:{}{file}", self.destination, self.dir)
    }

    /// Runs sftp with `batch` (one command) and returns its wall time.
    fn sftp(&self, batch: &str) -> Duration {
        let mut cmd = self.command("sftp");
        cmd.args(["-q", "-b", "-", &self.destination])
            .stdin(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().expect("sftp");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(batch.as_bytes()).expect("batch");
        drop(stdin);
        let status = child.wait().expect("sftp");
        assert!(status.success(), "sftp {batch}: {status}");
        started.elapsed()
    }
}

fn timed_ok(mut cmd: Command) -> Duration {
    let started = Instant::now();
    let status = cmd.status().expect("run");
    assert!(status.success(), "{cmd:?}: {status}");
    started.elapsed()
}

fn main() {
    let rounds = env_number("ROUNDS", 3);
    let size = env_number("SIZE_MB", 1024) * 1024 * 1024;
    let attaches = env_number("ATTACHES", 10);
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    // The baseline: the operator's key authorized on h1 too, straight to its sshd.
    let direct_options = direct_ssh_options(&gw, &[&h1]);
    let direct = || {
        let mut cmd = Command::new("ssh");
        cmd.args(&direct_options)
            .arg(format!("root@{}", h1.address));
        cmd
    };
    let direct_line = format!(
        "ssh {} root@{}",
        direct_options
            .iter()
            .map(|o| shell_quote(o))
            .collect::<Vec<_>>()
            .join(" "),
        h1.address
    );
    let via_gw = || {
        let mut cmd = gw.ssh_command();
        cmd.arg("bench@gw");
        cmd
    };
    gw.ok(&["create", "bench", "--host", "h1", "--", "sleep", "100000"]);
    let workspace = h1.agents_home.join("workspaces/bench");
    let sides = [
        Side {
            options: vec![
                "-F".into(),
                gw.ssh_config_path().to_string_lossy().into_owned(),
            ],
            destination: "bench@gw".into(),
            dir: String::new(),
        },
        Side {
            options: direct_options.clone(),
            destination: format!("root@{}", h1.address),
            dir: format!("{}/", workspace.display()),
        },
    ];
    let algorithms = [negotiated(via_gw(), "true"), negotiated(direct(), "true")];

    // `list` with one host, then with three.
    let list_times = |n: usize| -> f64 {
        let mut v = Vec::new();
        for _ in 0..n {
            let started = Instant::now();
            gw.ok(&["list"]);
            v.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        median(v)
    };
    let list_one = list_times(21);
    let h2 = add_host(&gw, "h2");
    let h3 = add_host(&gw, "h3");
    gw.ok(&["create", "b2", "--host", "h2", "--", "sleep", "100000"]);
    gw.ok(&["create", "b3", "--host", "h3", "--", "sleep", "100000"]);
    let list_three = list_times(21);

    // The file scp and sftp send, on a tmpfs.
    let payload =
        std::path::PathBuf::from(format!("/dev/shm/agentgate-bench-{}", std::process::id()));
    let fetched = payload.with_extension("down");
    let scratch = payload.with_extension("prefault");
    {
        let mut f = std::fs::File::create(&payload).expect("payload");
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..size / (1 << 20) {
            f.write_all(&chunk).expect("payload");
        }
    }
    let (payload_s, fetched_s) = (
        payload.to_string_lossy().into_owned(),
        fetched.to_string_lossy().into_owned(),
    );

    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = [
        "connect (ms)",
        "exec-down (MiB/s)",
        "exec-up (MiB/s)",
        "scp-up (MiB/s)",
        "scp-down (MiB/s)",
        "sftp-up (MiB/s)",
        "sftp-down (MiB/s)",
    ]
    .into_iter()
    .map(|name| (name, vec![], vec![]))
    .collect();
    let mib = |bytes: u64, d: Duration| bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    for round in 0..rounds {
        eprintln!("remote_hosts: round {}/{rounds}", round + 1);
        // Which side goes first alternates by round, so neither always inherits the other's
        // leftovers (dirty pages being written back, memory just freed).
        let mut order = [(0usize, &via_gw as &dyn Fn() -> Command), (1, &direct)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (which, make) in order {
            let mut values = Vec::new();
            let mut cmd = make();
            cmd.arg("true");
            let (d, _) = transfer(cmd, 0);
            values.push(d.as_secs_f64() * 1000.0);
            let mut cmd = make();
            cmd.arg(format!("head -c {size} /dev/zero"));
            let (d, n) = transfer(cmd, 0);
            assert_eq!(n, size, "every byte came down");
            values.push(mib(n, d));
            let mut cmd = make();
            cmd.arg("cat > /dev/null");
            let (d, n) = transfer(cmd, size);
            values.push(mib(n, d));

            let side = &sides[which];
            settle_memory(&scratch, size);
            let mut cmd = side.command("scp");
            cmd.args(["-q", &payload_s, &side.remote("bench-scp.bin")]);
            values.push(mib(size, timed_ok(cmd)));
            settle_memory(&scratch, size);
            let mut cmd = side.command("scp");
            cmd.args(["-q", &side.remote("bench-scp.bin"), &fetched_s]);
            values.push(mib(size, timed_ok(cmd)));
            assert_eq!(
                std::fs::metadata(&fetched).expect("fetched").len(),
                size,
                "scp brought every byte back"
            );
            let _ = std::fs::remove_file(&fetched);
            settle_memory(&scratch, size);
            let up = side.sftp(&format!("put {payload_s} {}bench-sftp.bin\n", side.dir));
            values.push(mib(size, up));
            settle_memory(&scratch, size);
            let down = side.sftp(&format!("get {}bench-sftp.bin {fetched_s}\n", side.dir));
            values.push(mib(size, down));
            assert_eq!(
                std::fs::metadata(&fetched).expect("fetched").len(),
                size,
                "sftp brought every byte back"
            );
            let _ = std::fs::remove_file(&fetched);
            for name in ["bench-scp.bin", "bench-sftp.bin"] {
                std::fs::remove_file(workspace.join(name)).expect("the copy is in the workspace");
            }
            for (row, v) in rows.iter_mut().zip(values) {
                if which == 0 {
                    row.1.push(v)
                } else {
                    row.2.push(v)
                }
            }
        }
    }
    let _ = std::fs::remove_file(&payload);

    // Attach: an agent that draws a marker, on h1 and on the gateway's own machine (ssh joins
    // its words with spaces, so the script is quoted for the gateway's command parser).
    gw.ok(&[
        "create",
        "screen",
        "--host",
        "h1",
        "--",
        "sh",
        "-c",
        "'echo screen-is-drawn; exec cat'",
    ]);
    gw.ok(&[
        "create",
        "screenl",
        "--host",
        "local",
        "--",
        "sh",
        "-c",
        "'echo screen-is-drawn; exec cat'",
    ]);
    let gw_config = shell_quote(&gw.ssh_config_path().to_string_lossy());
    let attach_lines = [
        format!("ssh -F {gw_config} -tt screen@gw"),
        format!("ssh -F {gw_config} -tt screenl@gw"),
        format!(
            "{direct_line} -tt tmux -L {} attach -t =screen",
            shell_quote(&h1.tmux_socket)
        ),
    ];
    let mut attach: [Vec<f64>; 3] = Default::default();
    for round in 0..rounds {
        eprintln!("remote_hosts: attach round {}/{rounds}", round + 1);
        for _ in 0..attaches {
            for (times, line) in attach.iter_mut().zip(&attach_lines) {
                times.push(attach_latency(line, "screen-is-drawn"));
            }
        }
    }

    let (echo_gw, echo_direct) = echo_rows(&gw, &h1, &direct_line, rounds);

    let mut table = format!(
        "| measurement ({} MiB, {rounds} rounds, medians) | through agentgate | OpenSSH direct to the host | ratio |\n|---|---|---|---|\n",
        size / (1024 * 1024)
    );
    let mut json_rows = Vec::new();
    for (name, gw_v, direct_v) in &rows {
        let (a, b) = (median(gw_v.clone()), median(direct_v.clone()));
        table.push_str(&format!("| {name} | {a:.1} | {b:.1} | {:.2} |\n", a / b));
        json_rows.push(serde_json::json!({
            "measurement": name, "agentgate": gw_v, "openssh_direct": direct_v,
            "median_agentgate": a, "median_openssh_direct": b,
        }));
    }
    let attach_direct = median(attach[2].clone());
    for (name, times) in [
        ("attach, agent on h1 (ms)", &attach[0]),
        ("attach, agent on the gateway's machine (ms)", &attach[1]),
    ] {
        let a = median(times.clone());
        table.push_str(&format!(
            "| {name}, {} attaches | {a:.1} (p90 {:.1}) | {attach_direct:.1} (p90 {:.1}) | {:.2} |\n",
            times.len(),
            percentile(times.clone(), 0.9),
            percentile(attach[2].clone(), 0.9),
            a / attach_direct
        ));
        json_rows.push(serde_json::json!({
            "measurement": name, "agentgate": times, "openssh_direct": attach[2],
            "median_agentgate": a, "median_openssh_direct": attach_direct,
        }));
    }
    let (e50, d50) = (median(echo_gw.clone()), median(echo_direct.clone()));
    let (e99, d99) = (
        percentile(echo_gw.clone(), 0.99),
        percentile(echo_direct.clone(), 0.99),
    );
    table.push_str(&format!(
        "| keystroke echo, median (ms, {} keys) | {e50:.2} | {d50:.2} | {:.2} (+{:.2} ms) |\n| keystroke echo, p99 (ms) | {e99:.2} | {d99:.2} | {:.2} |\n",
        echo_gw.len(),
        e50 / d50,
        e50 - d50,
        e99 / d99
    ));
    json_rows.push(serde_json::json!({
        "measurement": "keystroke echo (ms)", "agentgate": echo_gw, "openssh_direct": echo_direct,
        "median_agentgate": e50, "median_openssh_direct": d50,
    }));
    table.push_str(&format!(
        "| `ssh gw list`, 1 host (ms) | {list_one:.1} | | |\n| `ssh gw list`, 3 hosts (ms) | {list_three:.1} | | {:.2} × 1 host |\n",
        list_three / list_one
    ));
    table.push_str(&format!(
        "\nNegotiated (kex, cipher): client to agentgate {}; client straight to h1 {}.\n",
        algorithms[0], algorithms[1]
    ));
    println!("{table}");

    let results = serde_json::json!({
        "size_bytes": size, "rounds": rounds, "rows": json_rows,
        "list_ms_one_host": list_one, "list_ms_three_hosts": list_three,
        "negotiated": {"agentgate": algorithms[0], "openssh_direct": algorithms[1]},
    });
    write_results("remote-hosts", &results);
    write_section("remote-hosts", &table);
    drop((h2, h3, h1));
}
