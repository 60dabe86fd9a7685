//! What the benchmarks in `tests/benches/` share: settings from the environment, order
//! statistics, a process's CPU and memory from `/proc`, the OpenSSH client options of the
//! baselines, settling memory before a timed transfer, the machine and commit a result comes
//! from, and writing a generated section of `docs/PERFORMANCE.md`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestGateway;
use crate::netns::NetnsHost;

/// A number from the environment, else `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The value at fraction `p` (0 to 1) of the sorted values: 0.5 is the median.
pub fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    assert!(!v.is_empty(), "no values to take a percentile of");
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn median(v: Vec<f64>) -> f64 {
    percentile(v, 0.5)
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_owned()
}

fn proc_stat_fields(pid: u32) -> Vec<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').expect("stat has a command name").1;
    rest.split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect()
}

/// User plus system CPU seconds of one process (all its threads, not its children).
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let f = proc_stat_fields(pid);
    let ticks = f[11] + f[12];
    // /proc counts in USER_HZ, which Linux fixes at 100 for user space.
    ticks as f64 / 100.0
}

/// A process's resident memory in KiB.
pub fn process_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Busy and total CPU time of the whole machine so far, in ticks (from `/proc/stat`).
pub fn machine_cpu_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("read /proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v[3] + v[4];
    let total: u64 = v.iter().take(8).sum();
    (total - idle, total)
}

/// Replaces what lies between `<!-- NAME:start -->` and `<!-- NAME:end -->` in
/// docs/PERFORMANCE.md with `body` (the markers must be there).
pub fn write_section(name: &str, body: &str) {
    let path = repo().join("docs/PERFORMANCE.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/PERFORMANCE.md");
    let (start, end) = (
        format!("<!-- {name}:start -->"),
        format!("<!-- {name}:end -->"),
    );
    match (doc.find(&start), doc.find(&end)) {
        (Some(i), Some(j)) if i < j => {
            let new = format!("{}{start}\n{body}{}", &doc[..i], &doc[j..]);
            std::fs::write(&path, new).expect("write docs/PERFORMANCE.md");
        }
        _ => eprintln!("no {start} ... {end} markers in docs/PERFORMANCE.md; not written"),
    }
}

/// Writes `value` as bench/results/NAME.json.
pub fn write_results(name: &str, value: &serde_json::Value) {
    let path = repo().join(format!("bench/results/{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("json");
    std::fs::write(&path, text + "\n").expect("write results");
}

/// The key exchange and cipher an ssh client negotiates, as "KEX, CIPHER": `ssh` is an ssh
/// command with its options and destination (no LogLevel option), `command` what it runs.
pub fn negotiated(mut ssh: std::process::Command, command: &str) -> String {
    let out = ssh
        .args(["-v", command])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ssh -v");
    let log = String::from_utf8_lossy(&out.stderr);
    let find = |prefix: &str| {
        log.lines()
            .find_map(|l| l.split_once(prefix))
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .unwrap_or("?")
            .to_owned()
    };
    format!(
        "{}, {}",
        find("kex: algorithm: "),
        find("kex: server->client cipher: ")
    )
}

/// The options of an OpenSSH client that goes straight to `hosts` as root, the baseline of the
/// remote-host benchmarks: the operator's key (authorized on each host here), a known-hosts file
/// pinning each host's key, and the key exchange pinned to the curve25519-sha256 the client
/// negotiates with agentgate (OpenSSH 9.2 would pick sntrup761x25519-sha512 with its own sshd,
/// much costlier for the client).
pub fn direct_ssh_options(gw: &TestGateway, hosts: &[&NetnsHost]) -> Vec<String> {
    let operator_key =
        std::fs::read_to_string(gw.key.with_extension("pub")).expect("the operator's public key");
    let known = gw.dir.path().join("bench_known_hosts");
    let mut known_lines = String::new();
    for host in hosts {
        host.authorize(operator_key.trim());
        known_lines.push_str(&format!("{}\n", host.known_hosts_line()));
    }
    std::fs::write(&known, known_lines).expect("write the baseline's known hosts");
    [
        "-F",
        "/dev/null",
        "-i",
        &gw.key.to_string_lossy(),
        "-o",
        &format!("UserKnownHostsFile={}", known.display()),
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "KexAlgorithms=curve25519-sha256",
    ]
    .map(str::to_owned)
    .into()
}

/// Untimed, before a timed transfer that writes files: writes the last transfer's dirty pages
/// back (`sync`), and writes and deletes `size` bytes as `scratch` (a path on a tmpfs). On a VM
/// the first writer of a large file after a pause pays extra kernel time to fault memory back
/// in; without this, whichever side went first paid it (see docs/PERFORMANCE.md, "What the
/// changes bought").
pub fn settle_memory(scratch: &Path, size: u64) {
    let status = Command::new("sync").status().expect("run sync");
    assert!(status.success(), "sync: {status}");
    {
        let mut f = std::fs::File::create(scratch).expect("prefault file");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..size / (1 << 20) {
            f.write_all(&chunk).expect("prefault");
        }
    }
    std::fs::remove_file(scratch).expect("prefault file");
}

/// What a generated section says about where its numbers come from: the machine, the build and
/// the OpenSSH they were measured with, and when.
pub struct Provenance {
    /// UTC, like `2026-11-23T12:00:00Z`.
    pub date: String,
    /// `git rev-parse --short HEAD`, with a note when the gateway's or hostctl's sources differ
    /// from it.
    pub commit: String,
    /// CPUs, CPU model, memory, OS and kernel.
    pub machine: String,
    /// `ssh -V`.
    pub openssh: String,
}

impl Provenance {
    pub fn now() -> Provenance {
        let output = |program: &str, args: &[&str]| {
            Command::new(program)
                .args(args)
                .current_dir(repo())
                .output()
                .map(|out| {
                    let text = if out.stdout.is_empty() {
                        out.stderr
                    } else {
                        out.stdout
                    };
                    String::from_utf8_lossy(&text).trim().to_owned()
                })
                .unwrap_or_default()
        };
        let mut commit = output("git", &["rev-parse", "--short", "HEAD"]);
        let changed = output(
            "git",
            &[
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                "gateway",
                "hostctl",
                "Cargo.toml",
                "Cargo.lock",
            ],
        );
        if commit.is_empty() {
            commit = "unknown".into();
        } else if !changed.is_empty() {
            commit.push_str(" (with uncommitted changes)");
        }
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown CPU", |(_, model)| model.trim())
            .to_owned();
        let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0));
        let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        let os = os_release
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map_or("unknown OS", |v| v.trim_matches('"'))
            .to_owned();
        Provenance {
            date: output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
            commit,
            machine: format!(
                "{cpus} CPUs, {cpu_model}, {mem_gib:.0} GiB RAM; {os}, {}",
                output("uname", &["-sr"])
            ),
            openssh: output("ssh", &["-V"]),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "date": self.date, "commit": self.commit, "machine": self.machine,
            "openssh": self.openssh,
        })
    }
}

/// The load average over 1, 5 and 15 minutes, as `/proc/loadavg` gives it (`0.52 0.58 0.59`).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
