//! Files in and out of an agent's workspace with the tools people already have: `scp` (SFTP
//! and legacy `-O` modes), `sftp`, `rsync` and `git` over ssh, relative paths landing in the
//! workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::{TestGateway, stderr, stdout};

/// The agent's workspace.
fn agent(gw: &TestGateway, name: &str) -> PathBuf {
    gw.ok(&["create", name, "--", "sleep", "600"]);
    PathBuf::from(gw.info(name)["workspace"].as_str().expect("workspace"))
}

/// A client tool with the harness's ssh settings (`-F <config>`).
fn tool(gw: &TestGateway, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.arg("-F").arg(gw.ssh_config_path()).stdin(Stdio::null());
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn write(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

#[test]
fn scp_copies_both_ways_in_both_modes_with_relative_paths_in_the_workspace() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "files");
    let local = gw.dir.path().join("local");
    write(&local.join("one.txt"), "one\n");
    write(&local.join("tree/a.txt"), "a\n");
    write(&local.join("tree/sub/b.txt"), "b\n");
    for (mode, extra) in [("sftp", None), ("legacy", Some("-O"))] {
        let mut up = tool(&gw, "scp");
        up.args(extra)
            .arg(local.join("one.txt"))
            .arg(format!("files@gw:{mode}-one.txt"));
        ok(up.output().expect("scp"), &format!("scp {mode} upload"));
        assert_eq!(
            std::fs::read_to_string(workspace.join(format!("{mode}-one.txt"))).expect("uploaded"),
            "one\n"
        );

        let mut up_r = tool(&gw, "scp");
        up_r.args(extra)
            .arg("-r")
            .arg(local.join("tree"))
            .arg(format!("files@gw:{mode}-tree"));
        ok(
            up_r.output().expect("scp"),
            &format!("scp -r {mode} upload"),
        );
        assert_eq!(
            std::fs::read_to_string(workspace.join(format!("{mode}-tree/sub/b.txt")))
                .expect("uploaded"),
            "b\n"
        );

        let back = gw.dir.path().join(format!("back-{mode}"));
        std::fs::create_dir_all(&back).expect("mkdir");
        let mut down = tool(&gw, "scp");
        down.args(extra)
            .arg(format!("files@gw:{mode}-one.txt"))
            .arg(back.join("one.txt"));
        ok(down.output().expect("scp"), &format!("scp {mode} download"));
        assert_eq!(
            std::fs::read_to_string(back.join("one.txt")).expect("downloaded"),
            "one\n"
        );

        let mut down_r = tool(&gw, "scp");
        down_r
            .args(extra)
            .arg("-r")
            .arg(format!("files@gw:{mode}-tree"))
            .arg(back.join("tree"));
        ok(
            down_r.output().expect("scp"),
            &format!("scp -r {mode} download"),
        );
        assert_eq!(
            std::fs::read_to_string(back.join("tree/sub/b.txt")).expect("downloaded"),
            "b\n"
        );
    }
    // A missing remote file is an error, not an empty copy.
    let out = tool(&gw, "scp")
        .arg("files@gw:missing.txt")
        .arg(gw.dir.path())
        .output()
        .expect("scp");
    assert!(!out.status.success());
}

#[test]
fn an_sftp_batch_does_everything_in_the_workspace() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "files");
    let local = gw.dir.path().join("payload.txt");
    write(&local, "payload\n");
    let fetched = gw.dir.path().join("fetched.txt");
    let batch = gw.dir.path().join("batch");
    std::fs::write(
        &batch,
        format!(
            "pwd\nput {local} up.txt\nrename up.txt moved.txt\nls -l\ndf -h .\nchmod 600 moved.txt\nget moved.txt {fetched}\n\
             mkdir newdir\nrmdir newdir\nmkdir keep\nput {local} keep/inner.txt\nrm keep/inner.txt\nrmdir keep\nrm moved.txt\n",
            local = local.display(),
            fetched = fetched.display()
        ),
    )
    .expect("batch");
    let out = ok(
        tool(&gw, "sftp")
            .arg("-b")
            .arg(&batch)
            .arg("files@gw")
            .output()
            .expect("sftp"),
        "sftp batch",
    );
    assert!(
        out.contains(&format!(
            "Remote working directory: {}",
            workspace.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("moved.txt"),
        "ls -l shows the renamed file: {out}"
    );
    assert!(
        out.contains("Size") || out.contains("Avail"),
        "df printed its table: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(&fetched).expect("fetched"),
        "payload\n"
    );
    assert!(!workspace.join("moved.txt").exists());
    assert!(!workspace.join("keep").exists());
    assert!(!workspace.join("newdir").exists());
}

#[test]
fn rsync_pushes_pulls_and_deletes() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "files");
    let ssh = format!("ssh -F {}", gw.ssh_config_path().display());
    let src = gw.dir.path().join("src");
    write(&src.join("keep.txt"), "keep\n");
    write(&src.join("dir/nested.txt"), "nested\n");
    write(&workspace.join("dst/stale.txt"), "stale\n");
    let rsync = |args: &[&str]| {
        Command::new("rsync")
            .arg("-e")
            .arg(&ssh)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("rsync")
    };
    // Push with --delete: the remote copy matches the local tree exactly.
    ok(
        rsync(&[
            "-a",
            "--delete",
            &format!("{}/", src.display()),
            "files@gw:dst/",
        ]),
        "rsync push",
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("dst/dir/nested.txt")).expect("pushed"),
        "nested\n"
    );
    assert!(
        !workspace.join("dst/stale.txt").exists(),
        "--delete removed the stale file"
    );
    // Pull into a new directory.
    write(&workspace.join("dst/made-remotely.txt"), "remote\n");
    let pulled = gw.dir.path().join("pulled");
    ok(
        rsync(&["-a", "files@gw:dst/", &format!("{}/", pulled.display())]),
        "rsync pull",
    );
    assert_eq!(
        std::fs::read_to_string(pulled.join("made-remotely.txt")).expect("pulled"),
        "remote\n"
    );
    assert_eq!(
        std::fs::read_to_string(pulled.join("keep.txt")).expect("pulled"),
        "keep\n"
    );
}

#[test]
fn git_pushes_to_and_clones_from_a_repository_in_the_workspace() {
    let gw = TestGateway::start();
    let workspace = agent(&gw, "files");
    let ssh = format!("ssh -F {}", gw.ssh_config_path().display());
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_SSH_COMMAND", &ssh)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@e")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@e")
            .stdin(Stdio::null())
            .output()
            .expect("git");
        ok(out, &format!("git {args:?}"))
    };
    git(
        &workspace,
        &["init", "-q", "--bare", "-b", "main", "repo.git"],
    );
    let local = gw.dir.path().join("work");
    std::fs::create_dir_all(&local).expect("mkdir");
    git(&local, &["init", "-q", "-b", "main"]);
    write(&local.join("README"), "hello from git\n");
    git(&local, &["add", "README"]);
    git(&local, &["commit", "-qm", "first"]);
    // A relative path: the repository in the agent's workspace.
    git(&local, &["push", "-q", "files@gw:repo.git", "main"]);
    let clone = gw.dir.path().join("clone");
    git(
        gw.dir.path(),
        &[
            "clone",
            "-q",
            "files@gw:repo.git",
            clone.to_str().expect("utf8"),
        ],
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("README")).expect("cloned"),
        "hello from git\n"
    );
}
