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
//! and `ssh gw list` with 1 host and with 3 hosts (agents on each). Medians are printed as a
//! markdown table, written to bench/results/remote-hosts.json, and between
//! `<!-- remote-hosts:start -->` and `<!-- remote-hosts:end -->` in docs/PERFORMANCE.md.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e::TestGateway;
use e2e::netns::add_host;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

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
    table.push_str(&format!(
        "| `ssh gw list`, 1 host (ms) | {list_one:.1} | | |\n| `ssh gw list`, 3 hosts (ms) | {list_three:.1} | | {:.2} × 1 host |\n",
        list_three / list_one
    ));
    println!("{table}");

    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_owned();
    let results = serde_json::json!({
        "size_bytes": size, "rounds": rounds, "rows": json_rows,
        "list_ms_one_host": list_one, "list_ms_three_hosts": list_three,
    });
    std::fs::write(
        repo.join("bench/results/remote-hosts.json"),
        serde_json::to_string_pretty(&results).expect("json"),
    )
    .expect("write results");
    let doc_path = repo.join("docs/PERFORMANCE.md");
    let doc = std::fs::read_to_string(&doc_path).expect("PERFORMANCE.md");
    let (start, end) = ("<!-- remote-hosts:start -->", "<!-- remote-hosts:end -->");
    if let (Some(i), Some(j)) = (doc.find(start), doc.find(end)) {
        let new = format!("{}{start}\n{table}{}", &doc[..i], &doc[j..]);
        std::fs::write(&doc_path, new).expect("write PERFORMANCE.md");
    } else {
        eprintln!("remote_hosts: no {start} markers in docs/PERFORMANCE.md; table not written");
    }
    drop((h2, h3, h1));
}
