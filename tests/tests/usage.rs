//! `ssh gw usage`: what an agent uses of its host. An agent in its sandbox holds a known
//! amount of memory and writes a known-size file into its workspace; the figures `usage
//! --json` gives are those `ps -o rss` and `du -sk` give for the same process tree and
//! workspace, read here by the test itself. `info` and `list --json` carry them, another
//! operator does not see them, and a bad `--sort` word is refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{Options, TestGateway, keygen, shell_quote, stderr, stdout, wait_for};
use serde_json::Value;

const MIB: u64 = 1 << 20;

/// What the agent holds: a 64 MiB buffer, every page of it touched.
const HELD: u64 = 64 * MIB;

/// The file it writes in its workspace.
const WRITTEN: u64 = 8 * MIB;

/// `ssh gw usage --json`'s entry for `name`.
fn usage_of(gw: &TestGateway, name: &str) -> Value {
    let all: Value = serde_json::from_str(&gw.ok(&["usage", "--json"])).expect("usage --json");
    all.as_array()
        .expect("an array")
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {all}"))
        .clone()
}

/// The tree under `root` as `ps` shows it: (processes, resident KiB).
fn ps_tree(root: u32) -> (u64, u64) {
    let out = Command::new("ps")
        .args(["-e", "-o", "pid=,ppid=,rss="])
        .output()
        .expect("ps");
    let rows: Vec<(u32, u32, u64)> = stdout(&out)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((
                w.first()?.parse().ok()?,
                w.get(1)?.parse().ok()?,
                w.get(2)?.parse().ok()?,
            ))
        })
        .collect();
    let mut children: HashMap<u32, Vec<(u32, u64)>> = HashMap::new();
    let mut rss_of = HashMap::new();
    for &(pid, ppid, rss) in &rows {
        children.entry(ppid).or_default().push((pid, rss));
        rss_of.insert(pid, rss);
    }
    let mut stack = vec![root];
    let (mut count, mut kib) = (0, 0);
    while let Some(pid) = stack.pop() {
        let Some(rss) = rss_of.get(&pid) else {
            continue;
        };
        count += 1;
        kib += rss;
        stack.extend(children.get(&pid).into_iter().flatten().map(|c| c.0));
    }
    (count, kib)
}

/// `du -sk DIR` in KiB.
fn du_kib(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sk").arg(dir).output().expect("du");
    stdout(&out)
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("du said {}", stdout(&out)))
}

fn close(what: &str, ours: u64, theirs: u64, tolerance: u64) {
    assert!(
        ours.abs_diff(theirs) <= tolerance,
        "{what}: usage says {ours}, the test's own reading {theirs} (tolerance {tolerance})"
    );
}

/// A gateway whose default sandbox is its own (bwrap where the host has it).
fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        sandbox_default: "",
        ..Options::default()
    })
}

/// Creates agent `hog` (on `on_host`'s host), which holds [`HELD`] bytes in its sandbox and
/// has written [`WRITTEN`] bytes in its workspace, and checks `usage --json`'s figures
/// against `ps` and `du`.
fn hog_measured_like_ps_and_du(gw: &TestGateway, on_host: &[&str]) {
    let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("a python3 outside the home directory (the sandbox hides the home)");
    // Every page touched, so all of it is resident; `ready` once it is.
    let hold = format!(
        "import time\nb = bytearray({HELD})\nfor i in range(0, len(b), 4096): b[i] = 1\n\
         open('ready', 'w').close()\ntime.sleep(600)\n"
    );
    let script = format!(
        "head -c {WRITTEN} /dev/urandom > blob.bin && exec {python} -c {}",
        shell_quote(&hold)
    );
    // The gateway splits the line ssh sends as a shell would: the script is one quoted word.
    let script = shell_quote(&script);
    let mut create = vec!["create", "hog", "--sandbox", "bwrap"];
    create.extend(on_host);
    create.extend(["--", "sh", "-c", &script]);
    gw.ok(&create);
    let info = gw.info("hog");
    let workspace = PathBuf::from(info["workspace"].as_str().expect("workspace"));
    wait_for("the agent to hold its memory", || {
        workspace.join("ready").is_file().then_some(())
    });
    let root =
        u32::try_from(gw.info("hog")["pid"].as_u64().expect("the pane's pid")).expect("a pid");

    let figures = usage_of(gw, "hog");
    let (ps_count, ps_kib) = ps_tree(root);
    let du = du_kib(&workspace);
    let usage = &figures["usage"];
    eprintln!("usage: {usage}; ps: {ps_count} processes, {ps_kib} KiB; du: {du} KiB");

    // The test's own reading sees the allocation (inside the sandbox, under the pane).
    assert!(
        ps_kib * 1024 >= HELD,
        "ps sees only {ps_kib} KiB under {root}"
    );
    let memory = usage["memory_bytes"].as_u64().expect("memory_bytes");
    assert!(memory >= HELD, "{usage}");
    // The two readings are moments apart: a few MiB of slack for what the processes do meanwhile.
    close("memory (KiB)", memory / 1024, ps_kib, 4 * 1024);
    close(
        "processes",
        usage["processes"].as_u64().expect("processes"),
        ps_count,
        0,
    );
    let disk = usage["disk_bytes"].as_u64().expect("disk_bytes");
    assert!(disk >= WRITTEN, "{usage}");
    close("disk (KiB)", disk / 1024, du, 16);
    assert!(usage["cpu_seconds"].as_f64().is_some(), "{usage}");
    assert!(usage["cpu_percent"].as_f64().is_some(), "{usage}");
}

#[test]
fn usage_figures_match_what_ps_and_du_say_for_an_agent_holding_a_known_amount() {
    let gw = gateway();
    hog_measured_like_ps_and_du(&gw, &[]);

    // The same figures in info and list --json; info's text says them too.
    let in_info = &gw.info("hog")["usage"];
    assert!(
        in_info["memory_bytes"].as_u64().unwrap_or(0) >= HELD,
        "{in_info}"
    );
    let listed = gw.list();
    let in_list = &listed
        .iter()
        .find(|a| a["name"] == "hog")
        .expect("hog listed")["usage"];
    assert!(
        in_list["disk_bytes"].as_u64().unwrap_or(0) >= WRITTEN,
        "{in_list}"
    );
    let text = gw.ok(&["info", "hog"]);
    assert!(text.contains("memory:") && text.contains("disk:"), "{text}");

    // A stopped agent has no processes; its workspace is still counted.
    gw.ok(&["stop", "hog"]);
    let stopped = &usage_of(&gw, "hog")["usage"];
    assert_eq!(stopped["processes"], 0, "{stopped}");
    assert_eq!(stopped["memory_bytes"], 0, "{stopped}");
    assert!(
        stopped["disk_bytes"].as_u64().unwrap_or(0) >= WRITTEN,
        "{stopped}"
    );

    // Another operator sees nothing of it.
    let key = keygen(gw.dir.path(), "other_key", "other@laptop");
    let public = std::fs::read(key.with_extension("pub")).expect("pub");
    let added = gw.ssh_with_stdin(&["key", "add", "--role", "operator"], &public);
    assert!(added.status.success(), "key add: {}", stderr(&added));
    let theirs = gw
        .ssh_with_key(&key)
        .args(["gw", "usage", "--json"])
        .output()
        .expect("ssh");
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    assert!(!stdout(&theirs).contains("hog"), "{}", stdout(&theirs));
}

#[test]
fn usage_sorts_by_the_key_asked_and_refuses_another_word() {
    let gw = TestGateway::start();
    // `big` holds more disk, `small` less; both idle.
    gw.ok(&[
        "create",
        "big",
        "--",
        "sh",
        "-c",
        &shell_quote("head -c 4194304 /dev/zero > f && exec sleep 600"),
    ]);
    gw.ok(&["create", "small", "--", "sleep", "600"]);
    let big = PathBuf::from(gw.info("big")["workspace"].as_str().expect("workspace"));
    wait_for("big's file", || {
        (std::fs::metadata(big.join("f"))
            .map(|m| m.len())
            .unwrap_or(0)
            == 4 * MIB)
            .then_some(())
    });
    let by_disk: Value =
        serde_json::from_str(&gw.ok(&["usage", "--sort", "disk", "--json"])).expect("JSON");
    let names: Vec<&str> = by_disk
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["big", "small"], "{by_disk}");
    let table = gw.ok(&["usage", "--sort", "disk"]);
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("CPU%"),
        "{table}"
    );
    assert!(
        table.find("big").unwrap_or(usize::MAX) < table.find("small").unwrap_or(0),
        "{table}"
    );

    let bad = gw.ssh(&["usage", "--sort", "ram"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let said = stderr(&bad);
    assert!(
        said.contains("invalid value 'ram'") && said.contains("cpu, mem, disk"),
        "{said}"
    );
}

/// The same through a remote host's hostctl (a network namespace running a real sshd: needs
/// root); it shares this machine's processes and files, so `ps` and `du` here see them.
#[test]
fn on_a_remote_host_the_figures_match_too() {
    let gw = gateway();
    let h1 = e2e::netns::add_host(&gw, "h1");
    hog_measured_like_ps_and_du(&gw, &["--host", h1.name.as_str()]);
    let all: Value = serde_json::from_str(&gw.ok(&["usage", "--json"])).expect("JSON");
    assert_eq!(all[0]["host"], "h1", "{all}");
}
