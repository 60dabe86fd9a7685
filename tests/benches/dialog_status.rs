//! How soon the gateway knows that an agent asks for permission: Claude Code's dialog on the
//! screen, to `waiting` in `list` and to `waiting` recorded (what `watch` and notifications
//! see), with the CLI's hooks and with its screen alone; and what one hook event costs on the
//! host.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench dialog_status
//!   ROUNDS=10 cargo bench -p e2e --bench dialog_status   (the default)
//!
//! A gateway on loopback with the default `hosts.reconcile_interval` (5 s) and one Claude Code
//! 2.1.197 agent against the fake model API (`e2e::fake_model`): once with its hooks (as
//! created), once with them off (`disableAllHooks` in its user settings: the screen alone).
//! ROUNDS times each: `send NAME RUNCMD` makes the fake answer, 2 s later, with a shell command; Claude Code
//! shows its permission dialog; then `deny` closes it and the agent is back at its prompt. Three
//! times per round, on the machine's one clock, from the moment the dialog is first on the
//! pane (tmux's own capture, polled every 10 ms):
//!   list       until a `ssh gw list --json`, run back to back, shows the agent `waiting`
//!              with a question (its end)
//!   recorded   until `ssh gw watch NAME --json` prints the change to `waiting` with a question
//!              (its arrival): what an operator who is not asking waits, notifications included
//! and, separately, `hostctl hook` run 200 times with a recorded PreToolUse event on stdin: the
//! cost of one hook event on the host (process start, parse, append, notify).
//! Medians and 90th percentiles are printed as markdown, written to
//! bench/results/dialog-status.json, and between `<!-- dialog-status:start -->` and
//! `<!-- dialog-status:end -->` in docs/PERFORMANCE.md.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::agent_clis::{AgentCli, create_agent};
use e2e::bench::{
    Provenance, env_number, load_average, median, percentile, write_results, write_section,
};
use e2e::fake_model::FakeModel;
use e2e::{Options, TestGateway};
use serde_json::json;

/// Past this, a round that has not seen what it waits for fails.
const HUNG: Duration = Duration::from_secs(60);

/// What the dialog shows.
const DIALOG: &str = "Do you want to proceed?";

fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        private_dir: true,
        reconcile_interval: "5s",
        ..Options::default()
    })
}

/// Whether an agent's JSON shows it waiting on a question.
fn asks(agent: &serde_json::Value) -> bool {
    agent["status"] == "waiting"
        && agent["status_reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("asks"))
}

/// The lines `watch NAME --json` prints, with when each arrived.
type Seen = Arc<Mutex<Vec<(Instant, serde_json::Value)>>>;

fn watch(gw: &TestGateway, name: &str) -> (std::process::Child, Seen) {
    let mut child = gw
        .ssh_command()
        .args(["gw", "watch", name, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start watch");
    let seen: Seen = Arc::default();
    let out = child.stdout.take().expect("watch's stdout");
    let lines = seen.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if let Ok(value) = serde_json::from_str(&line) {
                lines.lock().expect("lock").push((Instant::now(), value));
            }
        }
    });
    (child, seen)
}

fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < HUNG, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One side: ROUNDS dialogs; the seconds from each dialog to `list` and to the recorded change.
fn side(hooks: bool, rounds: u64) -> (Vec<f64>, Vec<f64>) {
    let gw = gateway();
    let fake = FakeModel::start();
    // The dialog comes 2 s after the prompt: `send`, which looks at the agent until it took
    // the prompt, has returned by then, and nothing looks at it but what is measured.
    fake.set_tool_delay(Duration::from_secs(2));
    let settings = (!hooks).then(|| json!({"disableAllHooks": true}));
    create_agent(&gw, &fake, AgentCli::Claude, "cc", settings);
    until("the prompt", || {
        (gw.info("cc")["status_reason"] == "waits for a prompt").then_some(())
    });
    let (mut watcher, seen) = watch(&gw, "cc");
    let (mut to_list, mut to_recorded) = (Vec::new(), Vec::new());
    // Rounds of two kinds, so that neither measure helps the other: a `list` looks at the
    // agent and records what it sees, so the recorded rounds ask nothing of the gateway until
    // `watch` has printed the change.
    for round in 0..rounds * 2 {
        let by_list = round % 2 == 1;
        // Each round starts at another point of the reconciler's 5 s cycle (a round takes a
        // whole number of them otherwise, and would meet it in the same phase each time).
        std::thread::sleep(Duration::from_millis(round * 1300 % 5000));
        let already = seen.lock().expect("lock").len();
        gw.ok(&["send", "cc", "RUNCMD", &format!("round-{round}")]);
        let dialog = until("the dialog", || {
            gw.pane("cc").contains(DIALOG).then(Instant::now)
        });
        if by_list {
            let listed = until("waiting in list", || {
                gw.list()
                    .iter()
                    .find(|a| a["name"] == "cc")
                    .is_some_and(asks)
                    .then(Instant::now)
            });
            to_list.push(listed.saturating_duration_since(dialog).as_secs_f64());
        } else {
            let recorded = until("the change recorded", || {
                seen.lock()
                    .expect("lock")
                    .iter()
                    .skip(already)
                    .find(|(_, change)| {
                        change["to"] == "waiting"
                            && change["reason"]
                                .as_str()
                                .is_some_and(|r| r.starts_with("asks"))
                    })
                    .map(|(at, _)| *at)
            });
            // A change that arrived before the dialog was seen on the pane (the pane is
            // polled every 10 ms) counts as no wait.
            to_recorded.push(recorded.saturating_duration_since(dialog).as_secs_f64());
        }
        if std::env::var_os("DEBUG_CHANGES").is_some() {
            for (_, change) in seen.lock().expect("lock").iter().skip(already) {
                eprintln!("  change {change}");
            }
        }
        gw.ok(&["deny", "cc"]);
        until("the prompt again", || {
            (gw.info("cc")["status_reason"] == "waits for a prompt").then_some(())
        });
        eprintln!(
            "{} round {round}: {} {:.3} s",
            if hooks { "hooks" } else { "screen" },
            if by_list { "list" } else { "recorded" },
            if by_list {
                to_list[to_list.len() - 1]
            } else {
                to_recorded[to_recorded.len() - 1]
            }
        );
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    (to_list, to_recorded)
}

/// Seconds per `hostctl hook` run with a PreToolUse event, over `runs` runs.
fn hook_cost(runs: u64) -> Vec<f64> {
    let bins = e2e::bin_dir();
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(home.path().join("agents").join("a1")).expect("agent dir");
    let payload = json!({
        "session_id": "s1", "hook_event_name": "PreToolUse", "tool_name": "Bash",
        "tool_input": {"command": "touch agentgate-probe.txt", "description": "probe"}
    })
    .to_string();
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let mut child = Command::new(bins.join("hostctl"))
                .args(["hook", "--home"])
                .arg(home.path())
                .args(["--agent", "a1", "claude"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("run hostctl hook");
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(payload.as_bytes())
                .expect("write the event");
            assert!(child.wait().expect("wait").success());
            start.elapsed().as_secs_f64()
        })
        .collect()
}

fn row(what: &str, v: &[f64]) -> String {
    format!(
        "| {what} | {:.3} s | {:.3} s |\n",
        median(v.to_vec()),
        percentile(v.to_vec(), 0.9)
    )
}

fn main() {
    let rounds = env_number("ROUNDS", 10);
    let (hooks_list, hooks_recorded) = side(true, rounds);
    let (screen_list, screen_recorded) = side(false, rounds);
    let hook = hook_cost(200);
    let provenance = Provenance::now();
    let mut body = format!(
        "Claude Code 2.1.197's permission dialog on the pane, to the gateway knowing that the \
         agent asks: {rounds} rounds per side, `hosts.reconcile_interval` 5 s (the default), \
         load average {} at the end.\n\n\
         | from the dialog on the screen to | median | p90 |\n|---|---|---|\n",
        load_average()
    );
    body.push_str(&row("`waiting` in `list`, hooks", &hooks_list));
    body.push_str(&row("`waiting` in `list`, screen alone", &screen_list));
    body.push_str(&row("`waiting` recorded (`watch`), hooks", &hooks_recorded));
    body.push_str(&row(
        "`waiting` recorded (`watch`), screen alone",
        &screen_recorded,
    ));
    body.push_str(&format!(
        "\nOne hook event on the host (`hostctl hook`, a PreToolUse event on stdin, 200 runs): \
         median {:.1} ms, p90 {:.1} ms.\n\n\
         Generated by `cargo bench -p e2e --bench dialog_status` on {} (commit {}) — do not edit \
         by hand; rerun the bench. Machine: {}. Raw times: `bench/results/dialog-status.json`.\n",
        median(hook.clone()) * 1000.0,
        percentile(hook.clone(), 0.9) * 1000.0,
        provenance.date,
        provenance.commit,
        provenance.machine,
    ));
    println!("{body}");
    write_results(
        "dialog-status",
        &json!({
            "rounds": rounds,
            "list_hooks": hooks_list, "list_screen": screen_list,
            "recorded_hooks": hooks_recorded, "recorded_screen": screen_recorded,
            "hook_event_seconds": hook,
            "provenance": provenance.json(),
        }),
    );
    write_section("dialog-status", &body);
}
