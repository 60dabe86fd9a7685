//! What the benchmarks in `tests/benches/` share: settings from the environment, order
//! statistics, a process's CPU and memory from `/proc`, and writing a generated section of
//! `docs/PERFORMANCE.md`.

use std::path::PathBuf;

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
