//! A host's link lost in the middle of an upload: how long until the sessions on it end.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench lost_link
//!   ROUNDS=5 cargo bench -p e2e --bench lost_link   (the default)
//!
//! Needs root (the host is a network namespace running a real sshd, see `e2e::netns`). In one
//! run: a gateway with one namespace host h1 and an agent on it; then ROUNDS rounds, each with
//! both sides in turn (the gateway first in odd rounds, OpenSSH first in even ones):
//!   agentgate  an attach (`ssh -tt up@gw`, in a terminal of its own) and a 1 GiB upload
//!              (`head -c 1G /dev/zero | ssh up@gw 'cat > big'`), both on the gateway's
//!              connection to h1; once 32 MiB have arrived, h1's link goes down; the time until
//!              each ssh has exited (and said the connection to the host was lost)
//!   OpenSSH    the same upload straight to h1's sshd (`ssh root@h1 'cat > big'`), with the
//!              keepalive settings of the gateway's host connections (`ServerAliveInterval=5`,
//!              `ServerAliveCountMax=2`): the time until ssh has exited
//! then the link comes back, and the next round waits until the host is reachable again.
//! Medians are printed as a markdown table, written to bench/results/lost-link.json, and
//! between `<!-- lost-link:start -->` and `<!-- lost-link:end -->` in docs/PERFORMANCE.md.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::bench::{
    Provenance, direct_ssh_options, env_number, load_average, median, write_results, write_section,
};
use e2e::netns::{NetnsHost, add_host};
use e2e::{TestGateway, Viewer, shell_quote};

const MIB: u64 = 1024 * 1024;
/// Past this, a session that has not ended counts as hung: the round fails.
const HUNG: Duration = Duration::from_secs(180);

/// Starts `head -c 1G /dev/zero | SSH 'cat > TO'`, its stderr kept in `stderr`.
fn upload(ssh: &str, to: &str, stderr: &std::path::Path) -> Child {
    let remote = format!("cat > {}", shell_quote(to));
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "head -c 1G /dev/zero | {ssh} {}",
            shell_quote(&remote)
        ))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(stderr).expect("stderr file"))
        .spawn()
        .expect("start the upload")
}

/// Waits until `file` holds 32 MiB (the upload is under way).
fn under_way(file: &std::path::Path) {
    let start = Instant::now();
    while std::fs::metadata(file).map_or(0, |m| m.len()) < 32 * MIB {
        assert!(start.elapsed() < HUNG, "the upload never got going");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `ended` every 20 ms until it says so; the time since `from`.
fn until(what: &str, from: Instant, mut ended: impl FnMut() -> bool) -> Duration {
    loop {
        if ended() {
            return from.elapsed();
        }
        assert!(from.elapsed() < HUNG, "{what} hung for {HUNG:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_reachable(gw: &TestGateway) {
    let start = Instant::now();
    loop {
        let info: serde_json::Value =
            serde_json::from_str(&gw.ok(&["host", "info", "h1", "--json"])).expect("host info");
        if info["status"] == "reachable" && gw.status("up") == "running" {
            return;
        }
        assert!(start.elapsed() < HUNG, "h1 did not come back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Round {
    /// Link lost to: the upload's end, the attach's end (agentgate); the upload's end (OpenSSH).
    upload: f64,
    attach: f64,
    direct: f64,
}

fn through_gateway(gw: &TestGateway, h1: &NetnsHost, round: u64) -> (f64, f64) {
    let workspace = h1.agents_home.join("workspaces/up");
    let _ = std::fs::remove_file(workspace.join("big"));
    let viewer = Viewer::open(gw, "up@gw", &[], 100, 30);
    viewer.wait_for_shell_in_dir(&workspace);
    let said = gw.dir.path().join(format!("upload-{round}.stderr"));
    let ssh = format!(
        "ssh -F {} up@gw",
        shell_quote(&gw.ssh_config_path().to_string_lossy())
    );
    let mut child = upload(&ssh, "big", &said);
    under_way(&workspace.join("big"));
    h1.link_down();
    let cut = Instant::now();
    let mut upload_end = None;
    let mut attach_end = None;
    until("the sessions through the gateway", cut, || {
        if upload_end.is_none() && child.try_wait().expect("wait").is_some() {
            upload_end = Some(cut.elapsed());
        }
        if attach_end.is_none() && viewer.exited().is_some() {
            attach_end = Some(cut.elapsed());
        }
        upload_end.is_some() && attach_end.is_some()
    });
    let said = std::fs::read_to_string(&said).unwrap_or_default();
    assert!(
        said.contains("the connection to host 'h1' was lost"),
        "the upload ended without the host-lost message: {said}"
    );
    h1.link_up();
    wait_reachable(gw);
    let secs = |d: Option<Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64());
    (secs(upload_end), secs(attach_end))
}

fn direct(h1: &NetnsHost, options: &[String], round: u64, dir: &std::path::Path) -> f64 {
    let big = h1.dir.join("direct-big");
    let _ = std::fs::remove_file(&big);
    let mut words = vec!["ssh".to_owned()];
    words.extend(options.iter().cloned());
    words.extend([
        "-o".into(),
        "ServerAliveInterval=5".into(),
        "-o".into(),
        "ServerAliveCountMax=2".into(),
        format!("root@{}", h1.address),
    ]);
    let ssh = words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = upload(
        &ssh,
        &big.to_string_lossy(),
        &dir.join(format!("direct-{round}.stderr")),
    );
    under_way(&big);
    h1.link_down();
    let cut = Instant::now();
    let took = until("the direct upload", cut, || {
        child.try_wait().expect("wait").is_some()
    });
    h1.link_up();
    took.as_secs_f64()
}

fn main() {
    let started = Instant::now();
    let rounds = env_number("ROUNDS", 5);
    let load_before = load_average();
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let options = direct_ssh_options(&gw, &[&h1]);
    gw.ok(&["create", "up", "--host", "h1"]);
    let mut results = Vec::new();
    for round in 1..=rounds {
        let (upload, attach, direct) = if round % 2 == 1 {
            let (upload, attach) = through_gateway(&gw, &h1, round);
            (upload, attach, direct(&h1, &options, round, gw.dir.path()))
        } else {
            let direct = direct(&h1, &options, round, gw.dir.path());
            wait_reachable(&gw);
            let (upload, attach) = through_gateway(&gw, &h1, round);
            (upload, attach, direct)
        };
        eprintln!(
            "lost-link: round {round}/{rounds}: agentgate upload {upload:.1} s, attach {attach:.1} s; OpenSSH upload {direct:.1} s"
        );
        results.push(Round {
            upload,
            attach,
            direct,
        });
    }
    let load_after = load_average();
    let provenance = Provenance::now();
    let med = |f: fn(&Round) -> f64| median(results.iter().map(f).collect());
    let (upload, attach, direct) = (med(|r| r.upload), med(|r| r.attach), med(|r| r.direct));
    let sessions = med(|r| r.upload.max(r.attach));
    let table = format!(
        "| from the link lost to | agentgate (median s) | OpenSSH straight to the host (median s) |\n\
         |---|---|---|\n\
         | the upload's end | {upload:.1} | {direct:.1} |\n\
         | the attach's end | {attach:.1} | |\n\
         | both sessions' end | **{sessions:.1}** | |\n"
    );
    println!("{table}");
    let body = format!(
        "Generated by `cargo bench -p e2e --bench lost_link` on {} ({} rounds; commit {}) — do not \
         edit by hand; rerun the bench.\nMachine: {}; {}. Load average before {load_before}, after \
         {load_after}.\n\n{table}\nRaw times: `bench/results/lost-link.json`.\n",
        provenance.date, rounds, provenance.commit, provenance.machine, provenance.openssh
    );
    write_section("lost-link", &body);
    write_results(
        "lost-link",
        &serde_json::json!({
            "provenance": provenance.json(),
            "rounds": results.iter().map(|r| serde_json::json!({
                "agentgate_upload_s": r.upload,
                "agentgate_attach_s": r.attach,
                "openssh_upload_s": r.direct,
            })).collect::<Vec<_>>(),
            "median": {
                "agentgate_upload_s": upload,
                "agentgate_attach_s": attach,
                "agentgate_sessions_s": sessions,
                "openssh_upload_s": direct,
            },
            "load_average": { "before": load_before, "after": load_after },
            "bench_seconds": started.elapsed().as_secs(),
        }),
    );
}
