//! Snapshots and `diff`: an agent's workspace saved on its host and restored on another with
//! the same bytes (checked here with coreutils on the files themselves, not by agentgate);
//! `snapshot list` and `remove`; snapshots found again by a gateway that lost its database;
//! two snapshots at once; a damaged archive refused; who may see and remove a snapshot;
//! and what `diff` shows for a git workspace and a plain one. The remote hosts are network
//! namespaces with a real sshd (see `e2e::netns`): the test that uses them needs root.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::netns::add_host;
use e2e::{Options, TestGateway, keygen, stderr, stdout};
use serde_json::Value;

/// A workspace with some variety: nested files, an empty directory, a symlink, an executable,
/// a name with a space, and 3 MiB of bytes that are not text.
fn fill_workspace(gw: &TestGateway, agent: &str) {
    let script = "mkdir -p src/deep empty && echo hello > src/deep/hello.txt && \
                  printf '#!/bin/sh\\necho run\\n' > run.sh && chmod 750 run.sh && \
                  ln -s src/deep/hello.txt link && echo spaced > 'a name.txt' && \
                  head -c 3145728 /dev/urandom > blob.bin";
    let out = gw.ssh_with_stdin_to(&format!("{agent}@gw"), &[script], b"");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Every entry of a directory with its kind, mode and link target, and every file's SHA-256,
/// as coreutils see them on the disk (the netns hosts share the test's file system).
fn tree(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "cd \"$1\" && find . -printf '%y %m %p %l\\n' | LC_ALL=C sort && \
             find . -type f -exec sha256sum {} + | LC_ALL=C sort -k2",
        )
        .arg("sh")
        .arg(dir)
        .output()
        .expect("find");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
        .split_whitespace()
        .next()
        .expect("a hash")
        .to_owned()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn workspace(gw: &TestGateway, agent: &str) -> PathBuf {
    gw.workspace(agent)
}

#[test]
fn a_snapshot_restored_on_another_host_has_the_same_bytes() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    gw.ok(&[
        "create",
        "orig",
        "--host",
        "h1",
        "--env",
        "MARK=kept",
        "--tag",
        "team=infra",
    ]);
    fill_workspace(&gw, "orig");
    let orig_ws = h1.agents_home.join("workspaces/orig");
    assert_eq!(workspace(&gw, "orig"), orig_ws);
    let at_snapshot = tree(&orig_ws);
    assert!(
        at_snapshot.contains("l 777 ./link src/deep/hello.txt"),
        "{at_snapshot}"
    );

    // A quiet snapshot: the agent stopped first.
    gw.ok(&["stop", "orig"]);
    // ssh joins the words with spaces: a label with spaces is quoted for the gateway.
    let snap = json(&gw.ok(&["snapshot orig --label 'before the change' --json"]));
    let id = snap["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("orig-20"), "{id}");
    assert_eq!(snap["host"], "h1");
    assert_eq!(snap["label"], "before the change");
    // The archive is on h1, and its checksum and size are the ones recorded.
    let archive = h1.agents_home.join(format!("snapshots/{id}.tar.gz"));
    assert_eq!(snap["sha256"].as_str(), Some(sha256_of(&archive).as_str()));
    assert_eq!(
        snap["size"].as_u64(),
        Some(std::fs::metadata(&archive).expect("archive").len())
    );
    // The workspace was not touched by it.
    assert_eq!(tree(&orig_ws), at_snapshot);

    // The agent goes on and changes its workspace.
    gw.ok(&["start", "orig"]);
    let out = gw.ssh_with_stdin_to(
        "orig@gw",
        &["echo changed > src/deep/hello.txt && rm blob.bin && echo new > new.txt"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(tree(&orig_ws), at_snapshot);

    // Restored on the other host: the settings, and the workspace as it was at the snapshot.
    let made = json(&gw.ok(&[
        "create",
        "restored",
        "--from-snapshot",
        &id,
        "--host",
        "h2",
        "--json",
    ]));
    assert_eq!(made["host"], "h2");
    assert_eq!(made["tags"]["team"], "infra");
    assert_eq!(gw.status("restored"), "running");
    let restored_ws = h2.agents_home.join("workspaces/restored");
    assert_eq!(workspace(&gw, "restored"), restored_ws);
    assert_eq!(tree(&restored_ws), at_snapshot);
    let env = gw.ssh_with_stdin_to("restored@gw", &["echo $MARK-$AGENTGATE_AGENT"], b"");
    assert_eq!(stdout(&env).trim(), "kept-restored");
    assert!(
        h2.tmux(&["has-session", "-t", "=restored"])
            .status
            .success()
    );
    // The human form says where it came from; on the snapshot's own host by default.
    let out = gw.ok(&["create", "again", "--from-snapshot", &id]);
    assert!(out.contains(&format!("snapshot {id}")), "{out}");
    assert_eq!(gw.info("again")["host"], "h1");
    assert_eq!(tree(&h1.agents_home.join("workspaces/again")), at_snapshot);

    // A plain workspace restored from a snapshot: diff tells what changed since.
    let out = gw.ok(&["diff", "restored"]);
    assert!(out.contains("no changes"), "{out}");
    let out = gw.ssh_with_stdin_to(
        "restored@gw",
        &["echo edited >> src/deep/hello.txt && rm run.sh && echo x > added.txt"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.ok(&["diff", "restored"]);
    for line in [
        "A  added.txt",
        "M  src/deep/hello.txt  (6 -> 13 bytes)",
        "D  run.sh",
    ] {
        assert!(out.contains(line), "{line:?} in {out}");
    }
    assert!(
        out.contains("3 changes: 1 added, 1 changed, 1 removed"),
        "{out}"
    );

    // list: the snapshot with its label and host, in both forms.
    let listed = json(&gw.ok(&["snapshot", "list", "--json"]));
    let entry = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|s| s["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(entry["agent"], "orig");
    assert_eq!(entry["host_present"], true);
    assert_eq!(entry["sha256"], snap["sha256"]);
    let table = gw.ok(&["snapshot", "list", "orig"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains(&id) && table.contains("before the change") && table.contains("h1"),
        "{table}"
    );
    assert!(
        gw.ok(&["snapshot", "list", "restored"])
            .contains("no snapshots")
    );

    // A damaged archive is refused where the bytes arrive, and nothing is kept.
    let second = json(&gw.ok(&["snapshot", "orig", "--json"]));
    let second_id = second["id"].as_str().expect("id").to_owned();
    assert_ne!(second_id, id);
    let second_archive = h1.agents_home.join(format!("snapshots/{second_id}.tar.gz"));
    let mut bytes = std::fs::read(&second_archive).expect("archive");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&second_archive, &bytes).expect("damage it");
    let out = gw.ssh(&[
        "create",
        "broken",
        "--from-snapshot",
        &second_id,
        "--host",
        "h2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("damaged") && stderr(&out).contains("snapshot remove"),
        "{}",
        stderr(&out)
    );
    assert!(gw.list().iter().all(|a| a["name"] != "broken"));
    assert!(!h2.agents_home.join("workspaces/broken").exists());
    assert!(!h2.agents_home.join("agents/broken").exists());
    // An archive longer than recorded (one replaced on its host, say) is refused as it arrives,
    // as damaged, and nothing is kept.
    bytes[middle] ^= 0xff;
    bytes.extend(std::iter::repeat_n(0u8, 8 << 20));
    std::fs::write(&second_archive, &bytes).expect("replace it");
    let out = gw.ssh(&[
        "create",
        "broken",
        "--from-snapshot",
        &second_id,
        "--host",
        "h2",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("damaged") && stderr(&out).contains("more than"),
        "{}",
        stderr(&out)
    );
    assert!(gw.list().iter().all(|a| a["name"] != "broken"));
    assert!(!h2.agents_home.join("workspaces/broken").exists());
    // A missing archive is a clear failure too.
    std::fs::remove_file(&second_archive).expect("rm");
    let out = gw.ssh(&["create", "broken", "--from-snapshot", &second_id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));

    // remove: gone from the host and from the list; a second remove finds nothing.
    let out = gw.ssh(&["snapshot", "remove", &second_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !h1.agents_home
            .join(format!("snapshots/{second_id}.json"))
            .exists()
    );
    gw.ok(&["snapshot", "remove", &id]);
    assert!(!archive.exists());
    assert!(!h1.agents_home.join(format!("snapshots/{id}.json")).exists());
    assert_eq!(json(&gw.ok(&["snapshot", "list", "--json"])), json("[]"));
    let out = gw.ssh(&["snapshot", "remove", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("snapshot list"), "{}", stderr(&out));
    let out = gw.ssh(&["create", "late", "--from-snapshot", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

#[test]
fn two_snapshots_of_one_agent_at_once_each_keep_their_own_archive() {
    let gw = TestGateway::start();
    gw.ok(&["create", "w"]);
    fill_workspace(&gw, "w");
    gw.ok(&["stop", "w"]);
    let barrier = std::sync::Barrier::new(2);
    let taken: Vec<Value> = std::thread::scope(|s| {
        let takers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    json(&gw.ok(&["snapshot", "w", "--json"]))
                })
            })
            .collect();
        takers
            .into_iter()
            .map(|t| t.join().expect("no panic"))
            .collect()
    });
    assert_ne!(taken[0]["id"], taken[1]["id"]);
    let snapshots = gw.agents_home.join("snapshots");
    for snap in &taken {
        let id = snap["id"].as_str().expect("id");
        let archive = snapshots.join(format!("{id}.tar.gz"));
        assert_eq!(
            snap["sha256"].as_str(),
            Some(sha256_of(&archive).as_str()),
            "{id}"
        );
    }
    let listed = json(&gw.ok(&["snapshot", "list", "w", "--json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let mut left: Vec<String> = std::fs::read_dir(&snapshots)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    left.sort();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_snapshot_whose_host_is_gone_is_listed_as_such_and_not_restored() {
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "w", "--host", "h1", "--", "sleep", "600"]);
    let id = json(&gw.ok(&["snapshot", "w", "--json"]))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    gw.ok(&["host", "remove", "h1", "--force"]);
    let listed = json(&gw.ok(&["snapshot", "list", "--json"]));
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["host_present"], false);
    assert!(gw.ok(&["snapshot", "list"]).contains("h1 (gone)"));
    let out = gw.ssh(&["create", "back", "--from-snapshot", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no longer has") && stderr(&out).contains("hint:"),
        "{}",
        stderr(&out)
    );
    // Removing it forgets it and leaves the machine alone.
    let out = gw.ssh(&["snapshot", "remove", &id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("left alone"), "{}", stderr(&out));
    assert!(
        h1.agents_home
            .join(format!("snapshots/{id}.tar.gz"))
            .exists()
    );
    assert_eq!(json(&gw.ok(&["snapshot", "list", "--json"])), json("[]"));
}

#[test]
fn a_gateway_that_lost_its_database_takes_up_the_snapshots_on_its_hosts() {
    let mut gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    gw.ok(&["create", "orig", "--host", "h1", "--tag", "team=infra"]);
    fill_workspace(&gw, "orig");
    gw.ok(&["stop", "orig"]);
    let at_snapshot = tree(&h1.agents_home.join("workspaces/orig"));
    let admins = json(&gw.ok(&["snapshot orig --label 'on h1' --json"]));
    // An operator's agent, and its snapshot.
    let key = keygen(gw.dir.path(), "bob_key", "bob@laptop");
    let public = std::fs::read(key.with_extension("pub")).expect("pub");
    let add_bob = |gw: &TestGateway| {
        let out = gw.ssh_with_stdin(&["key", "add", "--role", "operator"], &public);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    add_bob(&gw);
    let bob = |gw: &TestGateway, args: &[&str]| {
        let out = gw
            .ssh_with_key(&key)
            .arg("gw")
            .args(args)
            .output()
            .expect("ssh");
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        stdout(&out)
    };
    bob(
        &gw,
        &["create", "bobs", "--host", "h1", "--", "sleep", "600"],
    );
    let bobs = json(&bob(&gw, &["snapshot", "bobs", "--json"]));
    let before = json(&gw.ok(&["snapshot", "list", "--json"]));
    assert_eq!(before.as_array().map(Vec::len), Some(2), "{before}");

    // The gateway goes, and its database with it (its keys stay: the hosts still know it).
    gw.kill9();
    for entry in std::fs::read_dir(&gw.data_dir).expect("data dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("agentgate.db"))
        {
            std::fs::remove_file(&path).expect("remove the database");
        }
    }
    gw.spawn();
    assert_eq!(json(&gw.ok(&["snapshot", "list", "--json"])), json("[]"));
    gw.ok(&["host", "add", "h1", &h1.address, "--user", "root"]);
    let after = e2e::wait_for("the snapshots on h1 to be taken up", || {
        let listed = json(&gw.ok(&["snapshot", "list", "--json"]));
        (listed.as_array().map(Vec::len) == Some(2)).then_some(listed)
    });
    for (was, is) in before
        .as_array()
        .expect("array")
        .iter()
        .zip(after.as_array().expect("array"))
    {
        for field in ["id", "agent", "host", "label", "size", "sha256"] {
            assert_eq!(was[field], is[field], "{field}: {was} / {is}");
        }
    }
    assert_eq!(after[0]["id"], admins["id"]);
    assert_eq!(after[1]["id"], bobs["id"]);

    // Each is its owner's again: bob sees his (and only his), and may remove it.
    add_bob(&gw);
    let bobs_view = json(&bob(&gw, &["snapshot", "list", "--json"]));
    assert_eq!(bobs_view.as_array().map(Vec::len), Some(1), "{bobs_view}");
    assert_eq!(bobs_view[0]["id"], bobs["id"]);

    // And the admin's restores, elsewhere, with the same bytes and settings.
    let id = admins["id"].as_str().expect("id");
    let made = json(&gw.ok(&[
        "create",
        "back",
        "--from-snapshot",
        id,
        "--host",
        "local",
        "--json",
    ]));
    assert_eq!(made["host"], "local");
    assert_eq!(made["tags"]["team"], "infra");
    assert_eq!(tree(&workspace(&gw, "back")), at_snapshot);
    bob(
        &gw,
        &["snapshot", "remove", bobs["id"].as_str().expect("id")],
    );
    assert!(
        !h1.agents_home
            .join(format!(
                "snapshots/{}.tar.gz",
                bobs["id"].as_str().expect("id")
            ))
            .exists()
    );
}

/// A tmpfs of `size` mounted on `dir` while it lives (the tests run as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
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
            .expect("mount");
        assert!(out.status.success(), "mount: {}", stderr(&out));
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn snapshots_and_restores_stop_short_of_the_disk_reserve_and_leave_nothing() {
    let gw = TestGateway::start_with(Options {
        env: vec![("AGENTGATE_DISK_RESERVE".into(), "8M".into())],
        ..Options::default()
    });
    gw.ok(&["create", "big", "--", "sleep", "600"]);
    let ws = workspace(&gw, "big");
    // 16 MiB that does not compress, and 32 MiB that does.
    let mut random = vec![0u8; 16 << 20];
    std::io::Read::read_exact(
        &mut std::fs::File::open("/dev/urandom").expect("urandom"),
        &mut random,
    )
    .expect("random");
    std::fs::write(ws.join("random.bin"), &random).expect("write");
    std::fs::write(ws.join("zeros.bin"), vec![0u8; 32 << 20]).expect("write");
    gw.ok(&["stop", "big"]);
    let before = tree(&ws);

    // A 20 MiB filesystem for the snapshots: the 16 MiB archive would fit, but not with 8
    // MiB left free.
    let snapshots = gw.agents_home.join("snapshots");
    std::fs::create_dir_all(&snapshots).expect("mkdir");
    {
        let _small = Tmpfs::mount(&snapshots, "20m");
        let out = gw.ssh(&["snapshot", "big"]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let said = stderr(&out);
        assert!(
            said.contains("not enough disk space: the snapshot's archive")
                && said.contains("8.0 MiB kept free")
                && said.contains("AGENTGATE_DISK_RESERVE"),
            "{said}"
        );
        assert_eq!(
            names_in(&snapshots),
            Vec::<String>::new(),
            "nothing is left"
        );
        assert_eq!(json(&gw.ok(&["snapshot", "list", "--json"])), json("[]"));
    }
    let id = json(&gw.ok(&["snapshot", "big", "--json"]))["id"]
        .as_str()
        .expect("id")
        .to_owned();

    // A 40 MiB filesystem for the workspaces: the archive fits, the 48 MiB of files do not.
    let workspaces = gw.agents_home.join("workspaces");
    {
        let _small = Tmpfs::mount(&workspaces, "40m");
        let out = gw.ssh(&["create", "back", "--from-snapshot", &id]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        let said = stderr(&out);
        assert!(
            said.contains("not enough disk space: unpacking the snapshot"),
            "{said}"
        );
        assert_eq!(
            names_in(&workspaces),
            Vec::<String>::new(),
            "nothing is left"
        );
        assert!(
            !names_in(&gw.agents_home)
                .iter()
                .any(|n| n.starts_with(".unpack-")),
            "{:?}",
            names_in(&gw.agents_home)
        );
        assert!(gw.list().iter().all(|a| a["name"] != "back"));
    }
    // The agent's own workspace, hidden under the small filesystem, is as it was.
    assert_eq!(tree(&ws), before);
    gw.ok(&["create", "back", "--from-snapshot", &id]);
    assert_eq!(tree(&workspace(&gw, "back")), before);
}

#[test]
fn snapshot_refuses_bad_input_and_other_operators() {
    // Operators may have agents on the gateway's own machine here, where this test runs them.
    let mut gw = TestGateway::prepare(Options::default());
    let config = std::fs::read_to_string(&gw.config_path).expect("config");
    let config = config.replace("[hosts]\n", "[hosts]\noperators_on_local = true\n");
    std::fs::write(&gw.config_path, config).expect("config");
    gw.spawn();
    gw.ok(&["create", "mine", "--", "sleep", "600"]);
    let usage = |args: &[&str], says: &str| {
        let out = gw.ssh(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    };
    usage(&["snapshot"], "NAME");
    usage(&["snapshot mine --label 'two\tcolumns'"], "one line");
    usage(&["snapshot", "remove"], "ID");
    usage(
        &["create", "x", "--from-snapshot", "s", "--git", "file:///r"],
        "--from-snapshot",
    );
    usage(
        &["create", "x", "--from-snapshot", "s", "--template", "shell"],
        "--from-snapshot",
    );
    usage(&["create", "remove"], "reserved");
    let out = gw.ssh(&["snapshot", "nobody"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no agent named 'nobody'"),
        "{}",
        stderr(&out)
    );
    let out = gw.ssh(&["create", "x", "--from-snapshot", "nope-20260101-0000"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no snapshot 'nope-20260101-0000'"),
        "{}",
        stderr(&out)
    );

    let id = json(&gw.ok(&["snapshot", "mine", "--json"]))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // A label is text, whatever it holds: it reaches the host on stdin, never a shell.
    let marker = gw.dir.path().join("label-ran");
    let label = format!(
        "$(touch {m}); `touch {m}` \"q\" 'x' ;",
        m = marker.display()
    );
    let line = format!("snapshot mine --label {} --json", e2e::shell_quote(&label));
    let hostile = json(&gw.ok(&[&line]));
    assert_eq!(hostile["label"], label.as_str());
    let listed = json(&gw.ok(&["snapshot", "list", "mine", "--json"]));
    assert_eq!(listed[1]["label"], label.as_str());
    assert!(!marker.exists(), "a label was run by a shell");
    gw.ok(&["snapshot", "remove", hostile["id"].as_str().expect("id")]);
    // Another operator neither sees it nor may remove it, nor snapshot the agent.
    let key = keygen(gw.dir.path(), "bob_key", "bob@laptop");
    let public = std::fs::read(key.with_extension("pub")).expect("pub");
    let out = gw.ssh_with_stdin(&["key", "add", "--role", "operator"], &public);
    assert!(out.status.success(), "{}", stderr(&out));
    let bob = |args: &[&str]| {
        gw.ssh_with_key(&key)
            .arg("gw")
            .args(args)
            .output()
            .expect("ssh")
    };
    let out = bob(&["snapshot", "list", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&stdout(&out)), json("[]"));
    let out = bob(&["snapshot", "remove", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no snapshot"), "{}", stderr(&out));
    let out = bob(&["snapshot", "mine"]);
    assert_eq!(out.status.code(), Some(1));
    // Shared with bob, the agent's snapshot is his to see (and to start from), not to remove.
    gw.ok(&["share", "mine", "bob"]);
    let out = bob(&["snapshot", "list", "--json"]);
    assert_eq!(json(&stdout(&out))[0]["id"], id.as_str());
    let out = bob(&["snapshot", "remove", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only the owner"), "{}", stderr(&out));
    let out = bob(&["snapshot", "mine"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("only the owner"), "{}", stderr(&out));
    // The audit trail has the snapshot and the refusals.
    let events = gw.ok(&["events", "--json"]);
    assert!(
        events.contains(&format!("snapshot remove {id}")),
        "{events}"
    );
    assert!(events.contains("snapshot mine --json"), "{events}");
}

#[test]
fn diff_shows_git_status_and_patch_for_a_repository() {
    let gw = TestGateway::start();
    let repo = gw.dir.path().join("repo");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    std::fs::create_dir_all(&repo).expect("mkdir");
    git(&["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "old line\nsame\n").expect("write");
    std::fs::write(repo.join("gone.txt"), "bye\n").expect("write");
    git(&["add", "."]);
    git(&["commit", "-qm", "one"]);
    let url = format!("file://{}", repo.display());
    gw.ok(&["create", "g", "--git", &url, "--", "sleep", "600"]);
    let out = gw.ok(&["diff", "g"]);
    assert!(out.contains("nothing changed"), "{out}");

    let out = gw.ssh_with_stdin_to(
        "g@gw",
        &["printf 'new line\\nsame\\n' > README && rm gone.txt && echo n > notes.txt"],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gw.ok(&["diff", "g"]);
    for expected in [
        " M README",
        " D gone.txt",
        "?? notes.txt",
        "untracked (not in the diff below): notes.txt",
        "diff --git a/README b/README",
        "-old line",
        "+new line",
    ] {
        assert!(out.contains(expected), "{expected:?} in {out}");
    }
    assert!(
        !out.contains("+n\n"),
        "untracked content is not in the patch: {out}"
    );
    let out = gw.ok(&["diff", "g", "--stat"]);
    assert!(out.contains("2 files changed"), "{out}");
    assert!(!out.contains("+new line"), "{out}");
    let report = json(&gw.ok(&["diff", "g", "--json"]));
    assert_eq!(report["kind"], "git");
    assert_eq!(report["untracked"], json(r#"["notes.txt"]"#));
    assert_eq!(report["has_head"], true);
    assert!(
        report["patch"]
            .as_str()
            .expect("patch")
            .contains("+new line")
    );
    let paths: Vec<&str> = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["path"].as_str())
        .collect();
    assert_eq!(paths, ["README", "gone.txt", "notes.txt"]);
    let out = gw.ssh(&["diff", "nobody"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn diff_of_a_plain_workspace_lists_files_since_creation() {
    let gw = TestGateway::start();
    let dir = gw.dir.path().join("project");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("keep.txt"), "kept\n").expect("write");
    std::fs::write(dir.join("edit.txt"), "12345\n").expect("write");
    std::fs::write(dir.join("sub/old.txt"), "old\n").expect("write");
    gw.ok(&[
        "create",
        "plain",
        "--dir",
        dir.to_str().expect("utf8"),
        "--",
        "sleep",
        "600",
    ]);
    assert!(gw.ok(&["diff", "plain"]).contains("no changes"));
    // Same size: still seen (small files are compared by content).
    std::fs::write(dir.join("edit.txt"), "54321\n").expect("write");
    std::fs::remove_file(dir.join("sub/old.txt")).expect("rm");
    std::fs::write(dir.join("sub/new.txt"), "new\n").expect("write");
    let out = gw.ok(&["diff", "plain"]);
    assert!(out.contains("not a git repository"), "{out}");
    let lines: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "M  edit.txt",
            "A  sub/new.txt  (4 bytes)",
            "D  sub/old.txt",
            "3 changes: 1 added, 1 changed, 1 removed"
        ],
        "{out}"
    );
    let out = gw.ok(&["diff", "plain", "--stat"]);
    assert!(!out.contains("edit.txt"), "{out}");
    assert!(out.contains("3 changes"), "{out}");
    let report = json(&gw.ok(&["diff", "plain", "--json"]));
    assert_eq!(report["kind"], "files");
    assert_eq!(report["changes"][1]["change"], "added");
    assert_eq!(report["changes"][1]["path"], "sub/new.txt");
    assert_eq!(report["changes"][1]["size_after"], 4);

    // An agent with no record of its creation (made by an older agentgate): said, not guessed.
    std::fs::remove_file(gw.agents_home.join("agents/plain/baseline.json")).expect("rm");
    let out = gw.ssh(&["diff", "plain"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("nothing to compare") && stderr(&out).contains("hint:"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}
