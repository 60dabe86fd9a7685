//! Agents on remote hosts, measured against OpenSSH straight to the same host, in one run.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench remote_hosts
//!   ROUNDS=3 SIZE_MB=1024 cargo bench -p e2e --bench remote_hosts     (the defaults)
//!
//! Needs root (the hosts are network namespaces running a real sshd, see `e2e::netns`). In one
//! run: a gateway with three namespace hosts; an agent on h1; then ROUNDS rounds that each time
//! run every measurement once through the gateway (`bench@gw`, gateway → h1 over the pooled SSH
//! leg) and once straight to h1's sshd with the same client options (`root@h1`), alternating:
//!   connect    ssh TARGET true                              (connection set-up and one exec)
//!   exec-down  ssh TARGET 'head -c SIZE /dev/zero'          (bytes read from ssh's stdout)
//!   exec-up    SIZE bytes to ssh TARGET 'cat > /dev/null'   (bytes written to ssh's stdin)
//! then keystroke echo: an agent running `cat` on h1, attached through the gateway
//! (`ssh -tt echo@gw`) and straight to its tmux session on h1 (`ssh -tt root@h1 tmux attach`),
//! each in a terminal of its own (`script`); one key at a time, the time until its echo comes
//! back, KEYS keys (default 300) per round and side;
//! and `ssh gw list` with 1 host and with 3 hosts (agents on each). Medians are printed as a
//! markdown table, written to bench/results/remote-hosts.json, and between
//! `<!-- remote-hosts:start -->` and `<!-- remote-hosts:end -->` in docs/PERFORMANCE.md.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::bench::{env_number, median, percentile, write_results, write_section};
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

/// Runs `ssh_line` (an `ssh -tt ...` attaching to a tmux session whose pane runs `cat`) in a
/// terminal of its own, types `keys` keys one at a time, and returns, for each, the
/// milliseconds until its echo came back.
fn echo_latency(ssh_line: &str, keys: u64) -> Vec<f64> {
    let mut child = Command::new("script")
        .args([
            "-qfec",
            &format!("stty cols 100 rows 30; exec {ssh_line}"),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
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
    // Waits until the terminal has been quiet for `quiet`, after output `at_least` bytes.
    let settle = |quiet: Duration, at_least: usize| {
        let mut seen = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(quiet) {
                Ok(chunk) => seen += chunk.len(),
                Err(mpsc::RecvTimeoutError::Timeout) if seen >= at_least => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{ssh_line} ended"),
            }
            assert!(Instant::now() < deadline, "{ssh_line}: no screen");
        }
    };
    settle(Duration::from_millis(500), 1);
    let mut times = Vec::new();
    for i in 0..keys {
        if i % 40 == 39 {
            // A fresh line (C-u) before the line gets long.
            stdin.write_all(b"\x15").expect("type");
            settle(Duration::from_millis(100), 0);
        }
        let started = Instant::now();
        stdin.write_all(b"z").expect("type");
        stdin.flush().expect("type");
        loop {
            let chunk = rx
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("{ssh_line}: no echo ({e})"));
            if chunk.contains(&b'z') {
                break;
            }
        }
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        // Whatever else that key redraws, before the next one.
        settle(Duration::from_millis(20), 0);
    }
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    times
}

/// Keystroke echo through the gateway and straight to h1, alternating, `rounds` times.
fn echo_rows(
    gw: &TestGateway,
    h1: &NetnsHost,
    direct_ssh: &str,
    rounds: u64,
) -> (Vec<f64>, Vec<f64>) {
    let keys = env_number("KEYS", 300);
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

fn main() {
    let rounds = env_number("ROUNDS", 3);
    let size = env_number("SIZE_MB", 1024) * 1024 * 1024;
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    // The operator's key on h1 too, for the direct baseline.
    h1.authorize(
        std::fs::read_to_string(gw.key.with_extension("pub"))
            .expect("operator key")
            .trim(),
    );
    let known = gw.dir.path().join("bench_known_hosts");
    std::fs::write(&known, format!("{}\n", h1.known_hosts_line())).expect("known hosts");
    let direct = || {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&gw.key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .arg(format!("root@{}", h1.address));
        cmd
    };
    let direct_line = format!(
        "ssh -F /dev/null -i {} -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes root@{}",
        shell_quote(&gw.key.to_string_lossy()),
        shell_quote(&known.to_string_lossy()),
        h1.address
    );
    let via_gw = || {
        let mut cmd = gw.ssh_command();
        cmd.arg("bench@gw");
        cmd
    };
    gw.ok(&["create", "bench", "--host", "h1", "--", "sleep", "100000"]);

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

    let mut rows: Vec<(&str, Vec<f64>, Vec<f64>)> = vec![
        ("connect (ms)", vec![], vec![]),
        ("exec-down (MiB/s)", vec![], vec![]),
        ("exec-up (MiB/s)", vec![], vec![]),
    ];
    let mib = |bytes: u64, d: Duration| bytes as f64 / (1024.0 * 1024.0) / d.as_secs_f64();
    for round in 0..rounds {
        eprintln!("remote_hosts: round {}/{rounds}", round + 1);
        for (which, make) in [(1usize, &via_gw as &dyn Fn() -> Command), (2, &direct)] {
            let pick = |row: &mut (&str, Vec<f64>, Vec<f64>), v: f64| {
                if which == 1 {
                    row.1.push(v)
                } else {
                    row.2.push(v)
                }
            };
            let mut cmd = make();
            cmd.arg("true");
            let (d, _) = transfer(cmd, 0);
            pick(&mut rows[0], d.as_secs_f64() * 1000.0);
            let mut cmd = make();
            cmd.arg(format!("head -c {size} /dev/zero"));
            let (d, n) = transfer(cmd, 0);
            assert_eq!(n, size, "every byte came down");
            pick(&mut rows[1], mib(n, d));
            let mut cmd = make();
            cmd.arg("cat > /dev/null");
            let (d, n) = transfer(cmd, size);
            pick(&mut rows[2], mib(n, d));
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
    let (e50, d50) = (median(echo_gw.clone()), median(echo_direct.clone()));
    let (e99, d99) = (
        percentile(echo_gw.clone(), 0.99),
        percentile(echo_direct.clone(), 0.99),
    );
    table.push_str(&format!(
        "| keystroke echo, median (ms, {} keys) | {e50:.2} | {d50:.2} | {:.2} |\n| keystroke echo, p99 (ms) | {e99:.2} | {d99:.2} | {:.2} |\n",
        echo_gw.len(),
        e50 / d50,
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
    println!("{table}");

    let results = serde_json::json!({
        "size_bytes": size, "rounds": rounds, "rows": json_rows,
        "list_ms_one_host": list_one, "list_ms_three_hosts": list_three,
    });
    write_results("remote-hosts", &results);
    write_section("remote-hosts", &table);
    drop((h2, h3, h1));
}
