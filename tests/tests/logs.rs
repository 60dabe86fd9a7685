//! `ssh gw logs`: an agent's output as it read on its screen, through the gateway.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{TestGateway, stdout, wait_for};

/// What the agent prints: words placed with "cursor forward" instead of spaces (as Claude
/// Code does), a spinner turned with carriage returns, a question that stays a second and is
/// erased in place (a dialog answered), then, once the file `go` appears in its workspace,
/// one more line.
const TALKER: &str = r#"printf '\033[1m\342\227\217\033[22m\033[1CSlow\033[1Creply\033[1Cfinished.\r\n'
for frame in 1 2 3 4 5 6; do printf '\r\342\240\213 Working (%s)' "$frame"; sleep 0.1; done
printf '\r\033[KDone working.\r\n'
printf 'Allow\033[1Cthis?\033[1C(y/n)'; sleep 1; printf '\r\033[KAllowed.\r\n'
while [ ! -e go ]; do sleep 0.1; done
printf 'after\033[1Cthe\033[1Cfollow\r\n'
sleep 600"#;

/// Reads `child`'s stdout a line at a time on a thread, so the test can wait with a limit.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Collects lines from `rx` until one equals `want`; fails the test after 20 s.
fn read_until(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l| l == want) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no line {want:?} from logs -f ({e}); got {seen:#?}"),
        }
    }
}

#[test]
fn logs_reads_cursor_placed_words_with_their_spaces_and_a_spinner_once() {
    let gw = TestGateway::start();
    gw.ok(&[
        "create",
        "talker",
        "--",
        "sh",
        "-c",
        &e2e::shell_quote(TALKER),
    ]);

    let logs = wait_for("the spinner to finish", || {
        let logs = gw.ok(&["logs", "talker"]);
        logs.contains("Allowed.").then_some(logs)
    });
    let lines: Vec<&str> = logs.lines().collect();
    assert!(
        lines.contains(&"● Slow reply finished."),
        "the words lost their spaces: {logs:?}"
    );
    // The spinner's row was rewritten six times; it shows once, as it was left.
    assert_eq!(
        lines.iter().filter(|l| l.contains("Working")).count(),
        0,
        "{logs:?}"
    );
    for once in ["Done working.", "Allow this? (y/n)", "Allowed."] {
        assert_eq!(
            lines.iter().filter(|l| **l == once).count(),
            1,
            "{once:?} once in {logs:?}"
        );
    }
    assert!(!logs.contains('\u{1b}'), "escapes in {logs:?}");

    // --raw keeps the bytes as the pane printed them.
    let raw = gw.ok(&["logs", "talker", "--raw"]);
    assert!(
        raw.contains("\u{1b}[1CSlow\u{1b}[1Creply"),
        "--raw changed the bytes: {raw:?}"
    );
    assert_eq!(raw.matches("Working (").count(), 6, "{raw:?}");

    // -f prints what is there, then a line the agent prints after it started, once each.
    let mut follower = gw
        .ssh_command()
        .args(["gw", "logs", "talker", "-f"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("logs -f");
    let rx = lines_of(&mut follower);
    let mut seen = Vec::new();
    read_until(&rx, &mut seen, "Allowed.");
    std::fs::write(gw.agents_home.join("workspaces/talker/go"), b"").expect("go");
    read_until(&rx, &mut seen, "after the follow");
    // Time for anything printed twice to arrive (the follower polls every 200 ms).
    std::thread::sleep(Duration::from_millis(1000));
    e2e::signal(follower.id(), 15);
    let _ = follower.wait();
    seen.extend(rx.try_iter());
    for once in [
        "● Slow reply finished.",
        "Done working.",
        "Allow this? (y/n)",
        "Allowed.",
        "after the follow",
    ] {
        assert_eq!(
            seen.iter().filter(|l| *l == once).count(),
            1,
            "{once:?} in {seen:#?}"
        );
    }

    // -n N: the last N lines as rendered.
    let last = gw.ssh(&["logs", "talker", "-n", "2"]);
    assert_eq!(
        stdout(&last),
        "Allowed.\nafter the follow\n",
        "{}",
        e2e::stderr(&last)
    );
}

#[test]
fn logs_n_above_its_limit_is_refused_with_the_limit() {
    let gw = TestGateway::start();
    gw.ok(&["create", "quiet", "--", "sleep", "600"]);
    let out = gw.ssh(&["logs", "quiet", "-n", "100001"]);
    let err = e2e::stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("100000"), "{err}");
    // hostctl refuses it too, whoever asks.
    let hostctl = std::process::Command::new(e2e::bin_dir().join("hostctl"))
        .args(["logs", "quiet", "-n", "100001"])
        .env("AGENTGATE_HOME", &gw.agents_home)
        .env("AGENTGATE_TMUX_SOCKET", &gw.tmux_socket)
        .output()
        .expect("hostctl");
    assert_eq!(hostctl.status.code(), Some(2));
    assert!(
        e2e::stderr(&hostctl).contains("100000"),
        "{}",
        e2e::stderr(&hostctl)
    );
}
