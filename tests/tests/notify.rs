//! Knowing without watching: `watch` streams status changes, notification channels (a webhook
//! and ntfy, played by local HTTP servers the tests own) receive them once each, a flapping
//! agent pages once, a channel whose server is down is retried and recorded as failed without
//! holding anything up, an operator hears only about agents they may see, and the live view
//! rings a real terminal.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e::webhook::{Answer, HttpSink, Received, closed_port};
use e2e::{Options, TestGateway, keygen, shell_quote, stderr, stdout, unique, wait_for};
use serde_json::Value;

/// Short periods, so statuses change within a test, and short retries.
fn gateway_with(notify: &str) -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: format!(
            "[status]\nworking_for = \"1s\"\nidle_after = \"10m\"\n\n[notify]\n{notify}\n"
        ),
        ..Options::default()
    })
}

const QUICK_RETRIES: &str =
    "debounce = \"30s\"\ntries = 2\ntry_timeout = \"2s\"\nretry_after = \"200ms\"\n";

/// `ssh gw watch --json ARGS...` under way, its lines gathered as they come.
struct Watch {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

/// How many `watch` commands the audit trail shows begun.
fn watches_begun(gw: &TestGateway) -> usize {
    let events: Value =
        serde_json::from_str(&gw.ok(&["events", "--json", "--limit", "1000"])).expect("JSON");
    events
        .as_array()
        .expect("an array")
        .iter()
        .filter(|e| {
            e["kind"] == "command" && e["detail"].as_str().is_some_and(|d| d.starts_with("watch"))
        })
        .count()
}

impl Watch {
    /// Starts `ssh ... gw watch --json ARGS` and returns once the gateway runs it: the command
    /// follows the feed from its first step, so a change made after this is seen.
    fn start(gw: &TestGateway, mut ssh: Command, args: &[&str]) -> Watch {
        let before = watches_begun(gw);
        let mut child = ssh
            .arg("gw")
            .args(["watch", "--json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ssh gw watch");
        let out = child.stdout.take().expect("stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let value: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("watch printed a line that is not JSON ({e}): {line}")
                });
                kept.lock().expect("lock").push(value);
            }
        });
        wait_for("the watch to begin", || {
            (watches_begun(gw) > before).then_some(())
        });
        Watch { child, lines }
    }

    /// The changes of `agent` seen so far.
    fn of(&self, agent: &str) -> Vec<Value> {
        self.lines
            .lock()
            .expect("lock")
            .iter()
            .filter(|l| l["agent"] == agent)
            .cloned()
            .collect()
    }

    fn all(&self) -> Vec<Value> {
        self.lines.lock().expect("lock").clone()
    }

    /// Waits until `agent` has come to status `to`; returns its changes so far.
    fn wait_to(&self, agent: &str, to: &str) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let changes = self.of(agent);
            if changes.iter().any(|c| c["to"] == to) {
                return changes;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {agent} to become {to}; watch printed:\n{changes:#?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events a channel's server received, in order (`event` of each webhook document).
fn webhook_events(got: &[Received]) -> Vec<String> {
    got.iter()
        .map(|r| r.json()["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The audit trail's `notify` events, as the operator of `ssh` sees them.
fn notify_events(mut ssh: Command) -> Vec<Value> {
    let out = ssh
        .args(["gw", "events", "--json", "--limit", "1000"])
        .output()
        .expect("ssh gw events");
    assert!(out.status.success(), "events: {}", stderr(&out));
    let all: Value = serde_json::from_str(&stdout(&out)).expect("events JSON");
    all.as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "notify")
        .cloned()
        .collect()
}

fn wait_for_events(
    what: &str,
    mut read: impl FnMut() -> Vec<Value>,
    check: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let events = read();
        if check(&events) {
            return events;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; notify events:\n{events:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn watch_shows_the_transitions_in_order_and_a_webhook_and_ntfy_receive_them_once() {
    let gw = gateway_with(QUICK_RETRIES);
    let hook = HttpSink::start(Answer::Ok);
    let ntfy = HttpSink::start(Answer::Ok);
    gw.ok(&[
        "notify",
        "add",
        "hook",
        "--webhook",
        &hook.url("/hooks/T0K3N-5ecret"),
        "--on",
        "waiting,exited",
    ]);
    gw.ok(&[
        "notify",
        "add",
        "phone",
        "--ntfy",
        &ntfy.url("/agents-t0pic"),
        "--title",
        "'{agent} needs you'",
        "--priority",
        "high",
        "--tags",
        "robot,warning",
        "--click",
        "https://gw.example/{agent}",
    ]);
    // The URLs hold secrets: shown by scheme and host only.
    let listed = gw.ok(&["notify", "list"]);
    assert!(
        listed.contains(&format!("http://127.0.0.1:{}/***", hook.port))
            && listed.contains(&format!("http://127.0.0.1:{}/***", ntfy.port)),
        "{listed}"
    );
    let listed_json = gw.ok(&["notify", "list", "--json"]);
    for text in [&listed, &listed_json] {
        assert!(
            !text.contains("T0K3N") && !text.contains("t0pic"),
            "a URL shown whole: {text}"
        );
    }

    let watch = Watch::start(&gw, gw.ssh_command(), &[]);
    // Asks a question, then works on the answer and exits 3.
    gw.ok(&[
        "create",
        "asker",
        "--",
        "sh",
        "-c",
        "'echo preparing; sleep 1; printf \"Continue? [y/n] \"; read x; echo \"got $x\"; \
         sleep 1; exit 3'",
    ]);
    watch.wait_to("asker", "waiting");
    gw.ok(&["send", "asker", "y"]);
    let changes = watch.wait_to("asker", "exited");

    // In order, none missed: each change starts where the one before ended.
    assert_eq!(
        (&changes[0]["from"], &changes[0]["to"]),
        (&Value::Null, &Value::from("creating")),
        "{changes:#?}"
    );
    for pair in changes.windows(2) {
        assert_eq!(pair[0]["to"], pair[1]["from"], "a gap in {changes:#?}");
        assert!(
            pair[0]["time"].as_str() <= pair[1]["time"].as_str(),
            "out of order: {changes:#?}"
        );
    }
    let waiting = changes
        .iter()
        .find(|c| c["to"] == "waiting")
        .expect("waiting");
    assert_eq!(waiting["reason"], "asks a yes/no question", "{waiting}");
    assert_eq!(waiting["host"], "local");
    let exited = changes.last().expect("exited");
    assert_eq!(exited["to"], "exited");
    assert_eq!(exited["reason"], "its process exited with 3");

    // The webhook: one POST per transition, the very changes `watch` showed.
    let got = hook.wait_for("the webhook's exited", |g| g.len() >= 2);
    assert_eq!(webhook_events(&got), ["waiting", "exited"]);
    for (request, change) in got.iter().zip([waiting, exited]) {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/hooks/T0K3N-5ecret")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        let doc = request.json();
        for field in ["agent", "host", "from", "to", "reason", "time"] {
            assert_eq!(doc[field], change[field], "{field}: {doc} vs {change}");
        }
        assert!(doc["gateway"].is_string(), "{doc}");
    }

    // ntfy's publish format: the message as the body, the rest as headers.
    let got = ntfy.wait_for("ntfy's exited", |g| g.len() >= 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    let first = &got[0];
    assert_eq!(
        (first.method.as_str(), first.path.as_str()),
        ("POST", "/agents-t0pic")
    );
    assert_eq!(
        first.text(),
        "agent 'asker' is waiting on host local: asks a yes/no question"
    );
    assert_eq!(first.header("title"), Some("asker needs you"));
    assert_eq!(first.header("priority"), Some("high"));
    assert_eq!(first.header("tags"), Some("robot,warning"));
    assert_eq!(first.header("click"), Some("https://gw.example/asker"));
    assert!(
        first
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{first:?}"
    );
    assert_eq!(
        got[1].text(),
        "agent 'asker' is exited on host local: its process exited with 3"
    );

    // `notify test` tries a channel now.
    let tested = gw.ok(&["notify", "test", "hook"]);
    assert!(
        tested.starts_with("delivered a test notification to 'hook'"),
        "{tested}"
    );
    let got = hook.wait_for("the test", |g| g.len() >= 3);
    assert_eq!(got[2].json()["event"], "test");

    // Every delivery is in the audit trail; no URL is there whole.
    let events = wait_for_events(
        "four deliveries recorded",
        || notify_events(gw.ssh_command()),
        |e| e.len() >= 4,
    );
    assert!(
        events
            .iter()
            .all(|e| e["result"] == "ok" && e["operator"] == "tester" && e["agent"] == "asker"),
        "{events:#?}"
    );
    let trail = gw.ok(&["events", "--json", "--limit", "1000"]);
    assert!(
        !trail.contains("T0K3N") && !trail.contains("t0pic"),
        "a URL in the trail: {trail}"
    );
    assert!(
        !gw.log().contains("T0K3N") && !gw.log().contains("t0pic"),
        "a URL in the log"
    );
}

#[test]
fn an_agent_that_flaps_between_working_and_waiting_pages_once() {
    let gw = gateway_with(QUICK_RETRIES);
    let hook = HttpSink::start(Answer::Ok);
    gw.ok(&["notify", "add", "hook", "--webhook", &hook.url("/")]);
    let watch = Watch::start(&gw, gw.ssh_command(), &[]);
    // Three times: a question for 4 s, then 3 s of output; then it exits.
    gw.ok(&[
        "create",
        "flapper",
        "--",
        "sh",
        "-c",
        "'for i in 1 2 3; do printf \"Continue? [y/n] \"; sleep 4; echo; \
         for j in 1 2 3 4 5 6 7 8; do echo busy $i $j; sleep 0.4; done; done; exit 0'",
    ]);
    let changes = watch.wait_to("flapper", "exited");
    let waits = changes.iter().filter(|c| c["to"] == "waiting").count();
    assert!(waits >= 2, "it did not flap: {changes:#?}");
    // Deliveries to one channel go in order: once the exit is there, every page before it is.
    let got = hook.wait_for("the exit", |g| {
        webhook_events(g).contains(&"exited".to_owned())
    });
    assert_eq!(
        webhook_events(&got),
        ["waiting", "exited"],
        "waiting {waits} times paged more than once"
    );
}

#[test]
fn a_channel_whose_server_is_down_is_retried_and_recorded_failed_without_holding_anything_up() {
    // Tries long enough that `list` runs while the silent server holds one.
    let gw = gateway_with(
        "debounce = \"30s\"\ntries = 2\ntry_timeout = \"8s\"\nretry_after = \"200ms\"\n",
    );
    let good = HttpSink::start(Answer::Ok);
    let silent = HttpSink::start(Answer::Never);
    let refused = closed_port();
    gw.ok(&[
        "notify",
        "add",
        "works",
        "--webhook",
        &good.url("/good"),
        "--on",
        "exited",
    ]);
    gw.ok(&[
        "notify",
        "add",
        "refused",
        "--webhook",
        &format!("http://127.0.0.1:{refused}/x"),
        "--on",
        "exited",
    ]);
    gw.ok(&[
        "notify",
        "add",
        "hangs",
        "--webhook",
        &silent.url("/s"),
        "--on",
        "exited",
    ]);
    // Channels are taken in the order of their names: the dead ones come first.
    gw.ok(&["create", "quitter", "--", "sh", "-c", "'sleep 1; exit 4'"]);

    // The other channels do not wait for the dead ones.
    let got = good.wait_for("the good channel's exit", |g| !g.is_empty());
    assert_eq!(webhook_events(&got), ["exited"]);
    silent.wait_for("the silent server to hold a delivery", |g| !g.is_empty());
    // `list` answers while the silent server holds the delivery: it is not recorded yet.
    let out = gw.ssh(&["list", "--json"]);
    assert!(out.status.success(), "list: {}", stderr(&out));
    assert!(stdout(&out).contains("quitter"));
    let during = notify_events(gw.ssh_command());
    assert!(
        !during
            .iter()
            .any(|e| e["detail"].as_str().unwrap_or_default().contains("'hangs'")),
        "the silent channel was done before list answered: {during:#?}"
    );

    let events = wait_for_events(
        "both dead channels recorded as failed",
        || notify_events(gw.ssh_command()),
        |e| e.iter().filter(|e| e["result"] == "failed").count() >= 2,
    );
    let of = |name: &str| {
        events
            .iter()
            .find(|e| {
                e["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(&format!("'{name}'"))
            })
            .unwrap_or_else(|| panic!("no event for {name}: {events:#?}"))
            .clone()
    };
    let refused = of("refused");
    assert_eq!(refused["result"], "failed");
    let why = refused["message"].as_str().unwrap_or_default();
    assert!(
        why.starts_with("2 tries failed") && why.contains("refused"),
        "{refused}"
    );
    let silent_event = of("hangs");
    assert_eq!(silent_event["result"], "failed");
    assert!(
        silent_event["message"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within 8 s"),
        "{silent_event}"
    );
    assert_eq!(of("works")["result"], "ok");
    // Retried: the silent server got the delivery twice.
    assert_eq!(silent.received().len(), 2, "{:#?}", silent.received());
}

/// Sets `hosts.operators_on_local` before the gateway starts, so operators may have agents
/// on the gateway's machine, where these tests run them.
fn gateway_for_operators(notify: &str) -> TestGateway {
    let mut gw = TestGateway::prepare(Options {
        extra_config: format!(
            "[status]\nworking_for = \"1s\"\nidle_after = \"10m\"\n\n[notify]\n{notify}\n"
        ),
        ..Options::default()
    });
    let config = std::fs::read_to_string(&gw.config_path).expect("config");
    std::fs::write(
        &gw.config_path,
        config.replace("[hosts]\n", "[hosts]\noperators_on_local = true\n"),
    )
    .expect("config");
    gw.spawn();
    gw
}

/// Registers operator `name` (role operator) and returns their key.
fn add_operator(gw: &TestGateway, name: &str) -> PathBuf {
    let key = keygen(
        gw.dir.path(),
        &format!("{name}_key"),
        &format!("{name}@laptop"),
    );
    let public = std::fs::read(key.with_extension("pub")).expect("pub");
    let out = gw.ssh_with_stdin(&["key", "add", "--role", "operator"], &public);
    assert!(out.status.success(), "key add: {}", stderr(&out));
    key
}

fn ok_as(gw: &TestGateway, key: &Path, args: &[&str]) -> String {
    let out = gw
        .ssh_with_key(key)
        .arg("gw")
        .args(args)
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "ssh gw {args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

#[test]
fn an_operator_is_never_told_about_another_operators_agent() {
    let gw = gateway_for_operators(QUICK_RETRIES);
    let bob = add_operator(&gw, "bob");
    let bobs_hook = HttpSink::start(Answer::Ok);
    ok_as(
        &gw,
        &bob,
        &["notify", "add", "mine", "--webhook", &bobs_hook.url("/bob")],
    );
    let bobs_watch = Watch::start(&gw, gw.ssh_with_key(&bob), &[]);
    let admins_watch = Watch::start(&gw, gw.ssh_command(), &[]);
    // The admin's agent: bob may not see it, so he is not told about it.
    gw.ok(&["create", "admins", "--", "sh", "-c", "'sleep 1; exit 5'"]);
    admins_watch.wait_to("admins", "exited");
    // Asking to watch it is as for an agent that does not exist.
    let out = gw
        .ssh_with_key(&bob)
        .args(["gw", "watch", "admins"])
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no agent named 'admins'"),
        "{}",
        stderr(&out)
    );
    // Bob's own agent, after: once its exit reached bob, the admin's was decided before it.
    ok_as(
        &gw,
        &bob,
        &["create", "bobs", "--", "sh", "-c", "'sleep 1; exit 6'"],
    );
    let got = bobs_hook.wait_for("bob's exit", |g| {
        webhook_events(g).contains(&"exited".to_owned())
    });
    bobs_watch.wait_to("bobs", "exited");
    assert!(
        got.iter().all(|r| r.json()["agent"] == "bobs"),
        "bob was told about another's agent: {:#?}",
        got.iter().map(Received::text).collect::<Vec<_>>()
    );
    assert!(
        bobs_watch.all().iter().all(|c| c["agent"] == "bobs"),
        "bob's watch showed another's agent: {:#?}",
        bobs_watch.all()
    );
    // The admin sees both.
    admins_watch.wait_to("bobs", "exited");
    // Shared with bob, the admin's next agent is his to hear about.
    gw.ok(&["create", "shared", "--", "sh", "-c", "'sleep 3; exit 7'"]);
    gw.ok(&["share", "shared", "bob"]);
    let got = bobs_hook.wait_for("the shared agent's exit", |g| {
        g.iter().any(|r| r.json()["agent"] == "shared")
    });
    assert!(got.iter().all(|r| r.json()["agent"] != "admins"));
}

#[test]
fn the_live_view_rings_the_terminal_when_an_agent_starts_waiting() {
    let gw = gateway_with(QUICK_RETRIES);
    let log = gw.dir.path().join("terminal.log");
    let socket = unique("agbell");
    let ssh = format!(
        "ssh -F {} -tt gw top",
        shell_quote(&gw.ssh_config_path().to_string_lossy())
    );
    // A real terminal (a tmux pane) running the client under script(1), which keeps every
    // byte the client writes to its terminal.
    let script = format!(
        "script -q -f {} -c {}; sleep 600",
        shell_quote(&log.to_string_lossy()),
        shell_quote(&ssh)
    );
    let terminal = Terminal {
        socket: socket.clone(),
        tmpdir: gw.dir.path().to_owned(),
    };
    let out = terminal.tmux(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "tmux: {}", stderr(&out));
    let read = || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    let start = Instant::now();
    while !read().contains("\x1b[?1049h") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the live view did not open: {:?}",
            read()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gw.ok(&[
        "create",
        "asker",
        "--",
        "sh",
        "-c",
        "'sleep 1; printf \"Continue? [y/n] \"; read x'",
    ]);
    let start = Instant::now();
    let ring = "\x07\x1b]9;agentgate: asker is waiting: asker on local: asks a yes/no question\x07";
    let desktop =
        "\x1b]777;notify;agentgate: asker is waiting;asker on local: asks a yes/no question\x07";
    loop {
        let bytes = read();
        if bytes.contains(ring) && bytes.contains(desktop) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no bell reached the terminal: {:?}",
            &bytes[bytes.len().saturating_sub(2000)..]
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Rung once for one change.
    assert_eq!(read().matches(ring).count(), 1);
}

/// The test's own tmux server, ended with the test.
struct Terminal {
    socket: String,
    tmpdir: PathBuf,
}

impl Terminal {
    fn tmux(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .env("TMUX_TMPDIR", &self.tmpdir)
            .env_remove("TMUX")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("tmux")
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

#[test]
fn an_idle_stop_pages_idle_stopped_once_with_its_reason() {
    let gw = TestGateway::start_with(Options {
        extra_config: format!(
            "[status]\nworking_for = \"1s\"\nidle_after = \"2s\"\n\n[notify]\n{QUICK_RETRIES}\n"
        ),
        ..Options::default()
    });
    let hook = HttpSink::start(Answer::Ok);
    gw.ok(&[
        "notify",
        "add",
        "hook",
        "--webhook",
        &hook.url("/"),
        "--on",
        "idle-stopped",
    ]);
    let watch = Watch::start(&gw, gw.ssh_command(), &["--tag", "kind=dozer"]);
    gw.ok(&[
        "create",
        "dozer",
        "--tag",
        "kind=dozer",
        "--idle-stop",
        "2s",
        "--",
        "sleep",
        "600",
    ]);
    let changes = watch.wait_to("dozer", "stopped");
    let stopped = changes.last().expect("stopped");
    assert_eq!(
        (&stopped["from"], &stopped["reason"]),
        (&Value::from("idle"), &Value::from("idle")),
        "{changes:#?}"
    );
    let got = hook.wait_for("the idle stop", |g| !g.is_empty());
    let doc = got[0].json();
    assert_eq!(
        (&doc["event"], &doc["agent"], &doc["to"], &doc["reason"]),
        (
            &Value::from("idle-stopped"),
            &Value::from("dozer"),
            &Value::from("stopped"),
            &Value::from("idle")
        ),
        "{doc}"
    );
}

#[test]
fn notify_refuses_bad_input_with_a_reason() {
    let gw = gateway_with(QUICK_RETRIES);
    let refused = |args: &[&str], status: i32, says: &str| {
        let out = gw.ssh(args);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("S3CR3T"),
            "a URL repeated: {}",
            stderr(&out)
        );
    };
    let url = "http://127.0.0.1:9/S3CR3T";
    refused(
        &[
            "notify",
            "add",
            "x",
            "--webhook",
            url,
            "--on",
            "waiting,lunch",
        ],
        2,
        "unknown event 'lunch'",
    );
    refused(
        &["notify", "add", "x", "--webhook", "ftp://h/S3CR3T"],
        2,
        "only http:// and https://",
    );
    refused(&["notify", "add", "x"], 2, "--webhook");
    refused(
        &["notify", "add", "x", "--ntfy", url, "--priority", "loud"],
        2,
        "unknown ntfy priority 'loud'",
    );
    refused(
        &["notify", "add", "x", "--webhook", url, "--title", "t"],
        2,
        "--ntfy",
    );
    refused(
        &["notify", "add", "no/slash", "--webhook", url],
        2,
        "invalid channel name",
    );
    gw.ok(&["notify", "add", "x", "--webhook", url]);
    refused(
        &["notify", "add", "x", "--webhook", url],
        1,
        "you already have a channel named 'x'",
    );
    refused(
        &["notify", "remove", "y"],
        1,
        "you have no channel named 'y'",
    );
    refused(&["notify", "test", "y"], 1, "you have no channel named 'y'");
    // Nothing listens on port 9: the test says why, without the URL.
    refused(&["notify", "test", "x"], 1, "the test notification to 'x'");
    gw.ok(&["notify", "remove", "x"]);
    assert_eq!(gw.ok(&["notify", "list", "--json"]).trim(), "[]");
}

#[test]
fn https_checks_the_servers_certificate() {
    let gw = gateway_with(QUICK_RETRIES);
    // A TLS server whose certificate no known authority signed.
    let dir = gw.dir.path();
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
        ])
        .arg("/CN=127.0.0.1")
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl req");
    assert!(made.status.success(), "openssl: {}", stderr(&made));
    let port = closed_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port.to_string(),
            "-cert",
        ])
        .arg(dir.join("tls.crt"))
        .arg("-key")
        .arg(dir.join("tls.key"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "s_server did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    gw.ok(&[
        "notify",
        "add",
        "tls",
        "--webhook",
        &format!("https://127.0.0.1:{port}/hook"),
    ]);
    let out = gw.ssh(&["notify", "test", "tls"]);
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("certificate"),
        "not refused for its certificate: {}",
        stderr(&out)
    );
}

/// Needs root, as the other namespace-host tests: h1 is a network namespace with a real sshd.
#[test]
fn a_host_that_becomes_unreachable_pages_host_unreachable_for_each_agent() {
    let gw = gateway_with(QUICK_RETRIES);
    let hook = HttpSink::start(Answer::Ok);
    gw.ok(&[
        "notify",
        "add",
        "hook",
        "--webhook",
        &hook.url("/"),
        "--on",
        "host-unreachable",
    ]);
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far1", "--host", "h1", "--", "sleep", "600"]);
    gw.ok(&["create", "far2", "--host", "h1", "--", "sleep", "600"]);
    // Seen running first: the change to come is from a status the gateway knew.
    let watch = Watch::start(&gw, gw.ssh_command(), &[]);
    h1.link_down();
    let got = hook.wait_for("both agents' pages", |g| g.len() >= 2);
    let mut agents: Vec<String> = got
        .iter()
        .map(|r| {
            let doc = r.json();
            assert_eq!(
                (&doc["event"], &doc["to"], &doc["host"]),
                (
                    &Value::from("host-unreachable"),
                    &Value::from("unknown"),
                    &Value::from("h1")
                ),
                "{doc}"
            );
            assert!(
                doc["reason"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("host 'h1' is unreachable")),
                "{doc}"
            );
            doc["agent"].as_str().unwrap_or_default().to_owned()
        })
        .collect();
    agents.sort();
    assert_eq!(agents, ["far1", "far2"]);
    let changes = watch.wait_to("far1", "unknown");
    assert!(
        changes.last().expect("a change")["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("host 'h1' is unreachable")),
        "{changes:#?}"
    );
    h1.link_up();
}
