//! Fleet scale: one gateway in front of many hosts with many agents each.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench fleet
//!   HOSTS=50 AGENTS_PER_HOST=20 LIST_RUNS=15 IDLE_SECONDS=20 cargo bench -p e2e --bench fleet
//!   (the defaults)
//!   SERVE=0: calls to hosts over exec channels (`hosts.serve = false`), for a comparison
//!   HOST_BASHRC=FILE: every host user's `~/.bashrc` (a shell start-up that costs something)
//!
//! Needs root: every host is a network namespace with a real OpenSSH sshd (`e2e::netns`). The
//! gateway runs with the production reconcile interval (5 s). The fleet grows by doubling, to
//! HOSTS/8, HOSTS/4, HOSTS/2 and HOSTS hosts, with AGENTS_PER_HOST agents (`sleep`) on each;
//! at each size:
//!   list     `ssh gw list` LIST_RUNS times (every agent of every host, asked live), beside
//!            `ssh gw whoami` (a command that asks no host: the connection's own cost)
//!   at rest  the gateway's CPU (its own process) and the machine's (every CPU, the hosts'
//!            sshd and hostctl included) over IDLE_SECONDS with nobody connected: the cost of
//!            the reconciler, which asks every host every 5 s; and the gateway's RSS
//!   dead     the newest host's link goes down; the time until the gateway says it is
//!            unreachable (its log), then the link comes back and its agents run again
//! The table goes to stdout and between `<!-- fleet:start -->` and `<!-- fleet:end -->` in
//! docs/PERFORMANCE.md; every raw number to bench/results/fleet.json.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::bench::{
    env_number, machine_cpu_ticks, median, negotiated, percentile, process_cpu_seconds,
    process_rss_kib, write_results, write_section,
};
use e2e::netns::{NetnsHost, add_host};
use e2e::{Options, TestGateway, stderr};
use serde_json::{Value, json};

/// HOSTS/8, HOSTS/4, HOSTS/2, HOSTS (those above zero, without repeats).
fn doubling_steps(hosts: usize) -> Vec<usize> {
    let mut steps: Vec<usize> = [8, 4, 2, 1]
        .iter()
        .map(|d| (hosts as f64 / f64::from(*d)).round() as usize)
        .filter(|n| *n > 0)
        .collect();
    steps.dedup();
    steps
}

/// Milliseconds each of `runs` calls of `ssh gw ARGS` took.
fn timed(gw: &TestGateway, args: &[&str], runs: usize) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let started = Instant::now();
            gw.ok(args);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// Whether a log line is about host `name` (`host=f01` or `host="f01"`).
fn about_host(line: &str, name: &str) -> bool {
    line.contains(&format!("host={name} ")) || line.contains(&format!("host=\"{name}\""))
}

fn log_count(gw: &TestGateway, what: &str, host: &str) -> usize {
    gw.log()
        .lines()
        .filter(|l| l.contains(what) && about_host(l, host))
        .count()
}

/// Creates AGENTS_PER_HOST agents on each of `hosts`, four creates at a time.
fn populate(gw: &TestGateway, hosts: &[&NetnsHost], per_host: usize) {
    let work: Vec<(String, String)> = hosts
        .iter()
        .flat_map(|h| (1..=per_host).map(|i| (format!("{}-{i:02}", h.name), h.name.clone())))
        .collect();
    let work = Mutex::new(work);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let Some((agent, host)) = work.lock().expect("queue").pop() else {
                        return;
                    };
                    let out = gw.ssh(&["create", &agent, "--host", &host, "--", "sleep", "100000"]);
                    assert!(out.status.success(), "create {agent}: {}", stderr(&out));
                }
            });
        }
    });
}

fn main() {
    let hosts_wanted = env_number("HOSTS", 50) as usize;
    let per_host = env_number("AGENTS_PER_HOST", 20) as usize;
    let list_runs = env_number("LIST_RUNS", 15) as usize;
    let idle = Duration::from_secs(env_number("IDLE_SECONDS", 20));
    let serve = env_number("SERVE", 1) != 0;
    let bashrc = std::env::var_os("HOST_BASHRC")
        .map(|path| std::fs::read_to_string(path).expect("read HOST_BASHRC"));
    let began = Instant::now();

    let mut gw = TestGateway::prepare(Options::default());
    let config = std::fs::read_to_string(&gw.config_path).expect("config");
    let production = config.replace(
        "reconcile_interval = \"500ms\"",
        &format!("reconcile_interval = \"5s\"\nserve = {serve}"),
    );
    assert_ne!(
        config, production,
        "the test config's reconcile interval moved"
    );
    std::fs::write(&gw.config_path, production).expect("config");
    gw.spawn();
    let pid = gw.pid();
    let mut control = gw.ssh_command();
    control.arg("gw");
    let algorithms = negotiated(control, "whoami");

    let mut hosts: Vec<NetnsHost> = Vec::new();
    let mut steps = Vec::new();
    for n in doubling_steps(hosts_wanted) {
        let first_new = hosts.len();
        while hosts.len() < n {
            let name = format!("f{:02}", hosts.len() + 1);
            let host = add_host(&gw, &name);
            if let Some(text) = &bashrc {
                std::fs::write(host.home().join(".bashrc"), text).expect("write .bashrc");
            }
            hosts.push(host);
        }
        let new: Vec<&NetnsHost> = hosts[first_new..].iter().collect();
        eprintln!("fleet: {n} hosts: creating {} agents", new.len() * per_host);
        populate(&gw, &new, per_host);
        let agents = n * per_host;
        let listed = gw.list();
        assert_eq!(listed.len(), agents, "every agent is listed");
        assert!(
            listed.iter().all(|a| a["state"] == "running"),
            "every agent runs"
        );

        eprintln!("fleet: {n} hosts, {agents} agents: list");
        let list_ms = timed(&gw, &["list"], list_runs);
        let whoami_ms = timed(&gw, &["whoami"], list_runs);

        eprintln!("fleet: at rest for {} s", idle.as_secs());
        std::thread::sleep(Duration::from_secs(2));
        let (cpu0, (busy0, total0)) = (process_cpu_seconds(pid), machine_cpu_ticks());
        std::thread::sleep(idle);
        let gateway_cpu = (process_cpu_seconds(pid) - cpu0) / idle.as_secs_f64() * 100.0;
        let (busy1, total1) = machine_cpu_ticks();
        let machine_cpu = (busy1 - busy0) as f64 / (total1 - total0) as f64 * 100.0;
        let rss_kib = process_rss_kib(pid);

        let dead = hosts.last().expect("a host");
        eprintln!("fleet: {} goes down", dead.name);
        let before = log_count(&gw, "host unreachable", &dead.name);
        let cut = Instant::now();
        dead.link_down();
        while log_count(&gw, "host unreachable", &dead.name) == before {
            assert!(
                cut.elapsed() < Duration::from_secs(300),
                "{} was never marked unreachable",
                dead.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let marked_s = cut.elapsed().as_secs_f64();
        let list_with_dead_ms = median(timed(&gw, &["list"], 3));
        dead.link_up();
        let back = Instant::now();
        while !gw
            .list()
            .iter()
            .filter(|a| a["host"] == dead.name.as_str())
            .all(|a| a["state"] == "running")
        {
            assert!(
                back.elapsed() < Duration::from_secs(300),
                "{}'s agents never came back",
                dead.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }

        let step = json!({
            "hosts": n, "agents": agents,
            "list_ms": list_ms, "whoami_ms": whoami_ms,
            "list_median_ms": median(list_ms.clone()),
            "list_p90_ms": percentile(list_ms.clone(), 0.9),
            "whoami_median_ms": median(whoami_ms.clone()),
            "gateway_cpu_at_rest_percent_of_one_cpu": gateway_cpu,
            "machine_cpu_at_rest_percent": machine_cpu,
            "gateway_rss_kib": rss_kib,
            "dead_host_marked_after_s": marked_s,
            "list_with_a_dead_host_ms": list_with_dead_ms,
        });
        eprintln!("fleet: {step}");
        steps.push(step);
    }

    let mut table = table(&steps, per_host, list_runs, idle);
    table.push_str(&format!(
        "Negotiated (kex, cipher) by `ssh gw`: {algorithms}.\n"
    ));
    println!("{table}");
    // The variants have their own results and section: `fleet-exec`, `fleet-bashrc`,
    // `fleet-bashrc-exec`.
    let name = format!(
        "fleet{}{}",
        if bashrc.is_some() { "-bashrc" } else { "" },
        if serve { "" } else { "-exec" }
    );
    write_results(
        &name,
        &json!({"serve": serve, "host_bashrc": bashrc,
            "hosts": hosts_wanted, "agents_per_host": per_host, "list_runs": list_runs,
            "idle_seconds": idle.as_secs(), "reconcile_interval_s": 5,
            "took_s": began.elapsed().as_secs(), "steps": steps, "negotiated": algorithms,
        }),
    );
    write_section(&name, &table);
    eprintln!("fleet: done in {} s", began.elapsed().as_secs());
    drop(hosts);
}

fn table(steps: &[Value], per_host: usize, list_runs: usize, idle: Duration) -> String {
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mut t = format!(
        "| hosts ({per_host} agents each) | agents | `list` median ms (p90) | `whoami` median ms | \
         `list` × the previous size | gateway CPU at rest, % of one CPU | machine CPU at rest, % \
         of all | gateway RSS MiB | dead host marked after s | `list` with that host down, ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    let mut previous: Option<f64> = None;
    for s in steps {
        let list = f(s, "list_median_ms");
        t.push_str(&format!(
            "| {} | {} | {list:.1} ({:.1}) | {:.1} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.0} |\n",
            s["hosts"],
            s["agents"],
            f(s, "list_p90_ms"),
            f(s, "whoami_median_ms"),
            previous.map_or("—".to_owned(), |p| format!("{:.2}", list / p)),
            f(s, "gateway_cpu_at_rest_percent_of_one_cpu"),
            f(s, "machine_cpu_at_rest_percent"),
            f(s, "gateway_rss_kib") / 1024.0,
            f(s, "dead_host_marked_after_s"),
            f(s, "list_with_a_dead_host_ms"),
        ));
        previous = Some(list);
    }
    t.push_str(&format!(
        "\n{list_runs} calls of each command per size; at rest: {} s with no client connected.\n",
        idle.as_secs()
    ));
    t
}
