//! The gateway's own storage failing: a full data disk, a damaged database, a gateway killed
//! while commands run. Answers stay honest and the audit trail loses nothing.
//!
//! The full disk is a real one: a small tmpfs mounted on the data directory (needs root, as
//! the network-namespace tests do; these tests fail rather than pass without it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e::{Options, TestGateway, stderr, stdout, wait_for};
use serde_json::Value;

/// A tmpfs of `size` mounted on `dir` (created if needed) for the test's life.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).expect("mkdir the data directory");
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root: {}",
            stderr(&out)
        );
        SmallDisk {
            dir: dir.to_owned(),
        }
    }

    /// Fills what is left of it with one file; returns that file.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0x5a_u8; 64 * 1024];
        // Up to ENOSPC; then byte by byte, so that not even a page is left.
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&chunk[..1]).is_ok() {}
        let _ = file.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the gateway may still hold the database open until the gateway is dropped.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn events(gw: &TestGateway) -> Vec<Value> {
    let v: Value = serde_json::from_str(&gw.ok(&["events", "--json", "-n", "1000"]))
        .expect("events --json is JSON");
    v.as_array().expect("an array").clone()
}

/// The trail's command rows whose detail starts with `detail`.
fn rows<'a>(events: &'a [Value], detail: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            e["kind"] == "command" && e["detail"].as_str().is_some_and(|d| d.starts_with(detail))
        })
        .collect()
}

fn tmux_has(gw: &TestGateway, agent: &str) -> bool {
    gw.tmux(&["has-session", "-t", &format!("={agent}")])
        .status
        .success()
}

#[test]
fn a_full_data_disk_gives_honest_answers_and_loses_no_audit_event_once_space_returns() {
    let mut gw = TestGateway::prepare(Options::default());
    let disk = SmallDisk::mount(&gw.data_dir, "6m");
    gw.spawn();
    gw.ok(&["create", "worker", "--", "sleep", "600"]);
    assert!(tmux_has(&gw, "worker"));

    let filler = disk.fill();
    // stop stops, says so, and says that the gateway could not record it.
    let out = gw.ssh(&["stop", "worker"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stop: {}\n{}",
        stderr(&out),
        gw.log()
    );
    assert!(
        stdout(&out).contains("stopped agent 'worker' on host local"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains(
            "warning: agent 'worker' was stopped on host local, but the gateway could not \
             record it: disk full"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!tmux_has(&gw, "worker"), "the agent was not stopped");
    // list still answers (exit 0, JSON on stdout) and warns on stderr.
    let out = gw.ssh(&["list", "--json"]);
    assert_eq!(out.status.code(), Some(0), "list: {}", stderr(&out));
    let listed: Value = serde_json::from_str(&stdout(&out)).expect("list --json is JSON");
    assert!(listed.is_array());
    assert!(
        stderr(&out).contains("warning:") && stderr(&out).contains("disk full"),
        "list says nothing of the full disk: {}",
        stderr(&out)
    );
    // tag and start act on the host too, and say the same.
    let out = gw.ssh(&["tag", "worker", "team=a"]);
    assert_eq!(out.status.code(), Some(0), "tag: {}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: the tags of agent 'worker' were changed on host local, but the gateway \
             could not record it: disk full"
        ),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["start", "worker"]);
    assert_eq!(out.status.code(), Some(0), "start: {}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "warning: agent 'worker' was started on host local, but the gateway could not \
             record it: disk full"
        ),
        "{}",
        stderr(&out)
    );
    assert!(tmux_has(&gw, "worker"), "the agent was not started");
    // wait goes by what the host says when the gateway cannot save it.
    let waited = gw.ok(&["wait", "worker", "--until", "running", "--timeout", "10"]);
    assert!(waited.contains("agent 'worker' is"), "{waited}");
    gw.ok(&["whoami"]);
    // events says what it cannot show.
    let out = gw.ssh(&["events", "-n", "5"]);
    assert!(
        stderr(&out).contains("cannot be written (disk full"),
        "events: {}\n{}",
        stderr(&out),
        gw.log()
    );

    // Space returns: the gateway's timer writes what it kept, without any command asking.
    std::fs::remove_file(&filler).expect("remove the filler");
    wait_for("the kept audit events to be written", || {
        gw.log()
            .contains("audit events kept in memory are written to the database")
            .then_some(())
    });
    let trail = events(&gw);
    let at = |detail: &str| -> (i64, String) {
        let found = rows(&trail, detail);
        let row = found
            .first()
            .unwrap_or_else(|| panic!("no '{detail}' in the trail: {trail:#?}"));
        (
            row["id"].as_i64().expect("id"),
            row["result"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (stop, stop_result) = at("stop worker");
    let (list, list_result) = at("list --json");
    let (tag, tag_result) = at("tag worker");
    let (start, start_result) = at("start worker");
    let (whoami, whoami_result) = at("whoami");
    let (events_full, _) = at("events -n 5");
    for result in [
        &stop_result,
        &list_result,
        &tag_result,
        &start_result,
        &whoami_result,
    ] {
        assert_eq!(result, "ok", "{trail:#?}");
    }
    assert!(
        stop < list && list < tag && tag < start && start < whoami && whoami < events_full,
        "out of order: {trail:#?}"
    );
    // And the status is recorded now that it can be.
    wait_for("worker to be recorded running", || {
        (gw.status("worker") == "running").then_some(())
    });
}

/// A gateway started by hand, killed if the test ends first.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The number of the page where a table's b-tree starts, and the page size, read with the
/// sqlite3 shell from the (closed) database.
fn root_page(database: &Path, table: &str) -> (u64, u64) {
    let out = Command::new("sqlite3")
        .arg(database)
        .arg(format!(
            "SELECT rootpage FROM sqlite_schema WHERE name = '{table}'; PRAGMA page_size;"
        ))
        .output()
        .expect("run sqlite3");
    assert!(out.status.success(), "sqlite3: {}", stderr(&out));
    let text = stdout(&out);
    let mut numbers = text
        .lines()
        .map(|l| l.trim().parse::<u64>().expect("a number"));
    (
        numbers.next().expect("root page"),
        numbers.next().expect("page size"),
    )
}

#[test]
fn a_flipped_byte_in_the_events_table_stops_the_start_with_the_file_named() {
    let mut gw = TestGateway::start();
    gw.ok(&["create", "keeper", "--", "sleep", "600"]);
    gw.ok(&["list"]);
    assert!(gw.sigterm().success());
    let database = gw.data_dir.join("agentgate.db");
    // A backup, as docs/operations.md describes: a copy of the stopped gateway's database.
    let backup = gw.dir.path().join("backup.db");
    std::fs::copy(&database, &backup).expect("back up");

    let (page, page_size) = root_page(&database, "events");
    let mut bytes = std::fs::read(&database).expect("read the database");
    let offset = usize::try_from((page - 1) * page_size).expect("offset");
    // The page's first byte says what kind of b-tree page it is.
    bytes[offset] ^= 0xff;
    std::fs::write(&database, &bytes).expect("damage the database");

    let child = gw
        .agentgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&gw.data_dir)
        .arg("--config")
        .arg(&gw.config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start agentgate");
    let mut child = KillOnDrop(child);
    let status = wait_for("the gateway to refuse the damaged database", || {
        child.0.try_wait().expect("wait")
    });
    let mut text = String::new();
    std::io::Read::read_to_string(&mut child.0.stderr.take().expect("stderr"), &mut text)
        .expect("read stderr");
    assert!(
        !status.success(),
        "it started on a damaged database: {text}"
    );
    assert!(
        text.contains(&format!("the database {} is damaged", database.display())),
        "{text}"
    );
    assert!(
        text.contains("backup"),
        "no way to restore is given: {text}"
    );
    assert!(!text.contains("listening on"), "{text}");

    // Doing what it says: the backup in its place, and the gateway starts with its agent.
    std::fs::rename(&database, gw.dir.path().join("damaged.db")).expect("move it away");
    for side in ["agentgate.db-wal", "agentgate.db-shm"] {
        let _ = std::fs::remove_file(gw.data_dir.join(side));
    }
    std::fs::copy(&backup, &database).expect("restore");
    gw.spawn();
    assert_eq!(gw.status("keeper"), "running");
}

#[test]
fn a_command_under_way_when_the_gateway_is_killed_is_interrupted_in_the_trail() {
    let mut gw = TestGateway::start();
    gw.ok(&["create", "sleeper", "--", "sleep", "600"]);
    let mut waiting = gw
        .ssh_command()
        .args(["gw", "wait", "sleeper"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh");
    wait_for("the wait to be in the trail as started", || {
        let trail = events(&gw);
        rows(&trail, "wait sleeper")
            .first()
            .is_some_and(|e| e["result"] == "started")
            .then_some(())
    });
    gw.kill9();
    let _ = waiting.kill();
    let _ = waiting.wait();
    gw.spawn();
    let trail = events(&gw);
    let found = rows(&trail, "wait sleeper");
    assert_eq!(found.len(), 1, "{trail:#?}");
    assert_eq!(found[0]["result"], "interrupted");
    assert_eq!(found[0]["message"], "the gateway stopped before it ended");
    assert_eq!(found[0]["agent"], "sleeper");
    assert!(
        gw.log().contains("marked interrupted"),
        "the start says nothing: {}",
        gw.log()
    );
}

#[test]
fn events_follow_shows_a_command_again_when_it_ends() {
    use std::io::BufRead;
    let gw = TestGateway::start();
    gw.ok(&["create", "sleeper", "--", "sleep", "600"]);
    let follow = gw
        .ssh_command()
        .args(["gw", "events", "-f", "--json", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh");
    let mut follow = KillOnDrop(follow);
    let output = follow.0.stdout.take().expect("stdout");
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(output).lines() {
            if line.is_err() || lines.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    // The follower is under way (its own row is the newest it read) before the wait starts:
    // the wait's rows all come after it.
    let first = seen
        .recv_timeout(e2e::PATIENCE)
        .expect("events -f printed nothing");
    assert!(first.contains("events -f"), "{first}");
    // Long enough for the follower to see it under way.
    let out = gw.ssh(&["wait", "sleeper", "--timeout", "3"]);
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));
    let mut rows = Vec::new();
    let deadline = std::time::Instant::now() + e2e::PATIENCE;
    while !rows
        .iter()
        .any(|(_, result): &(i64, String)| result == "exit 124")
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = seen
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("events -f did not show the wait end: {rows:?}"));
        let event: Value = serde_json::from_str(&line).expect("one JSON object a line");
        if event["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("wait sleeper"))
        {
            rows.push((
                event["id"].as_i64().expect("id"),
                event["result"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1, "started", "{rows:?}");
    assert_eq!(rows[0].0, rows[1].0, "the same row, shown again: {rows:?}");
}
