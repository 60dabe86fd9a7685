//! Resource limits per agent (`create --memory --cpus --pids`), applied by the kernel through
//! a cgroup per agent. On `local` (root, cgroup v1 writable) a 64M agent that takes 256M is
//! killed by the kernel's OOM killer, a 32-process agent's fork loop stops at 32, a CPU quota
//! is written as asked, sessions inside an agent join its cgroups, `info` and `list` show the
//! limits, and stop and destroy remove the cgroups. A namespace host with no cgroup hierarchy
//! in its view refuses `create --memory` with what it lacks and makes nothing, until its
//! administrator gives it one; a host user who owns no cgroup is refused until one is chowned
//! to it. The figures are read straight from the kernel's cgroup files.

use std::path::{Path, PathBuf};
use std::process::Command;

use e2e::{TestGateway, shell_quote, stderr, stdout, wait_for};
use serde_json::{Value, json};

/// The cgroup directories hostctl made for agent `name` of the host whose
/// `AGENTGATE_HOME` is `agents_home` (its record, `agents/NAME/cgroups.json`).
fn cgroups_of(agents_home: &Path, name: &str) -> Vec<PathBuf> {
    let path = agents_home.join("agents").join(name).join("cgroups.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let record: Value = serde_json::from_str(&text).expect("cgroups.json is JSON");
    record["cgroups"]
        .as_array()
        .expect("a list of cgroups")
        .iter()
        .map(|c| PathBuf::from(c["dir"].as_str().expect("a dir")))
        .collect()
}

/// The one of `dirs` that has cgroup file `file` (`memory.limit_in_bytes`, `pids.max`).
fn with_file(dirs: &[PathBuf], file: &str) -> PathBuf {
    dirs.iter()
        .find(|d| d.join(file).exists())
        .unwrap_or_else(|| panic!("none of {dirs:?} has {file}"))
        .clone()
}

fn read(dir: &Path, file: &str) -> String {
    let path = dir.join(file);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The number after `key` in a cgroup file of `key value` lines (`memory.oom_control`,
/// `pids.events`).
fn keyed(dir: &Path, file: &str, key: &str) -> u64 {
    read(dir, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {file}: {}", read(dir, file)))
}

fn wait_state(gw: &TestGateway, name: &str, state: &str) -> Value {
    wait_for(&format!("agent {name} {state}"), || {
        let info = gw.info(name);
        (info["state"] == state).then_some(info)
    })
}

/// The programs these tests run as agents, in the host's system (and so in the sandbox).
fn need_python() {
    assert!(
        Path::new("/usr/bin/python3").is_file(),
        "/usr/bin/python3 is not installed: apt-get install python3 (.ci/run installs it)"
    );
}

#[test]
fn an_agent_past_its_memory_limit_is_killed_by_the_kernel_and_stop_removes_its_cgroup() {
    need_python();
    let gw = TestGateway::start();
    // Every page of the 256M is written (a bytes object of 'x's), and the agent says so if it
    // ever holds them.
    let code =
        "import time; x = b'x' * (256 << 20); print('held it all', flush=True); time.sleep(600)";
    gw.ok(&[&format!(
        "create hog --memory 64M -- /usr/bin/python3 -c {}",
        shell_quote(code)
    )]);
    let dirs = cgroups_of(&gw.agents_home, "hog");
    let memory = with_file(&dirs, "memory.limit_in_bytes");
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let info = wait_state(&gw, "hog", "exited");
    assert!(
        keyed(&memory, "memory.oom_control", "oom_kill ") >= 1,
        "the kernel killed nothing in {}: {}",
        memory.display(),
        read(&memory, "memory.oom_control")
    );
    assert!(
        read(&memory, "memory.failcnt")
            .parse::<u64>()
            .expect("a count")
            > 0
    );
    // The agent's end is the kernel's SIGKILL: as the process's own signal, or (through its
    // sandbox's first process) as the shell's 128 + 9.
    let stop_reason = info["stop_reason"].as_str().unwrap_or_default();
    assert!(
        info["exit_code"] == 137 || stop_reason.contains("signal 9"),
        "the agent did not end by SIGKILL: {info}"
    );
    assert!(!gw.pane("hog").contains("held it all"));
    gw.ok(&["stop", "hog"]);
    assert!(!memory.exists(), "{} is left after stop", memory.display());
    gw.ok(&["destroy", "hog"]);
}

#[test]
fn a_fork_loop_stops_at_the_process_limit() {
    need_python();
    let gw = TestGateway::start();
    let code = "import os, time\n\
n = 0\n\
try:\n    while n < 100:\n        if os.fork() == 0:\n            time.sleep(600); os._exit(0)\n        n += 1\n\
except OSError as e:\n    print('fork failed after', n, flush=True)\n\
time.sleep(600)\n";
    // Without a sandbox: the limit holds for an agent's processes either way (the other
    // tests here run in one).
    gw.ok(&[&format!(
        "create forks --sandbox none --pids 32 -- /usr/bin/python3 -c {}",
        shell_quote(code)
    )]);
    let pids = with_file(&cgroups_of(&gw.agents_home, "forks"), "pids.max");
    assert_eq!(read(&pids, "pids.max"), "32");
    wait_for("the fork loop to fail", || {
        gw.pane("forks").contains("fork failed after").then_some(())
    });
    assert_eq!(read(&pids, "pids.current"), "32");
    assert!(keyed(&pids, "pids.events", "max ") >= 1);
    assert!(
        gw.pane("forks").contains("fork failed after 31"),
        "{}",
        gw.pane("forks")
    );
    gw.ok(&["destroy", "forks", "--force"]);
    assert!(!pids.exists(), "{} is left after destroy", pids.display());
}

#[test]
fn limits_are_written_shown_joined_by_sessions_and_applied_again_at_start() {
    let gw = TestGateway::start();
    let created = gw.ok(&[
        "create", "calm", "--cpus", "0.5", "--memory", "128M", "--pids", "64", "--", "sleep", "600",
    ]);
    assert!(
        created.contains(", limits memory 128M, cpus 0.5, pids 64\n"),
        "{created}"
    );
    let dirs = cgroups_of(&gw.agents_home, "calm");
    let check_files = |dirs: &[PathBuf]| {
        let cpu = with_file(dirs, "cpu.cfs_quota_us");
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(
            read(
                &with_file(dirs, "memory.limit_in_bytes"),
                "memory.limit_in_bytes"
            ),
            (128u64 << 20).to_string()
        );
        assert_eq!(read(&with_file(dirs, "pids.max"), "pids.max"), "64");
    };
    check_files(&dirs);
    let shown = json!({"memory_bytes": 134217728, "cpus": 0.5, "pids": 64});
    let info = gw.info("calm");
    assert_eq!(info["limits"], shown, "{info}");
    let listed = gw
        .list()
        .into_iter()
        .find(|a| a["name"] == "calm")
        .expect("listed");
    assert_eq!(listed["limits"], shown);
    let text = gw.ok(&["info", "calm"]);
    assert!(text.contains("memory 128M, cpus 0.5, pids 64"), "{text}");

    // The agent's processes are in its cgroups, in every hierarchy with a limit.
    let cgroup_name = dirs[0]
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned();
    assert!(cgroup_name.ends_with("-calm"), "{cgroup_name}");
    let pid = info["pid"].as_u64().expect("a pid while it runs");
    let in_cgroups = |text: &str| {
        ["memory", "pids", "cpu"].iter().all(|c| {
            text.lines().any(|l| {
                l.split(':')
                    .nth(1)
                    .is_some_and(|cs| cs.split(',').any(|x| x == *c))
                    && l.ends_with(&format!("/{cgroup_name}"))
            })
        })
    };
    // Its pane's first process joins them before it runs the command (`create` may answer
    // before then).
    wait_for(&format!("the agent's pane in {cgroup_name}"), || {
        let pane = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        in_cgroups(&pane).then_some(())
    });
    // So is a session inside it.
    let out = gw.ssh_run(&["calm@gw", "cat", "/proc/self/cgroup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        in_cgroups(&stdout(&out)),
        "a session is not in {cgroup_name}: {}",
        stdout(&out)
    );

    // And it cannot leave them: the sandbox shows the cgroup files read-only.
    let memory = with_file(&dirs, "memory.limit_in_bytes");
    let parent = memory.parent().expect("a parent").join("cgroup.procs");
    let escape = format!(
        "echo $$ > {} || echo refused; cat /proc/self/cgroup",
        shell_quote(&parent.to_string_lossy())
    );
    let out = gw.ssh_run(&["calm@gw", &escape]);
    assert!(
        stdout(&out).contains("refused") && in_cgroups(&stdout(&out)),
        "a session left its cgroup: {}{}",
        stdout(&out),
        stderr(&out)
    );

    gw.ok(&["stop", "calm"]);
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left after stop", dir.display());
    }
    gw.ok(&["start", "calm"]);
    check_files(&cgroups_of(&gw.agents_home, "calm"));
    gw.ok(&["destroy", "calm", "--force"]);
    for dir in &dirs {
        assert!(!dir.exists(), "{} is left after destroy", dir.display());
    }

    // An agent with no limits never touches cgroups.
    gw.ok(&["create", "free", "--", "sleep", "600"]);
    assert!(gw.info("free").get("limits").is_none());
    assert!(
        !gw.agents_home.join("agents/free/cgroups.json").exists(),
        "an agent without limits got cgroups"
    );
}

/// This test process's own cgroup in the memory hierarchy (`/` or deeper).
fn own_memory_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    text.lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            controllers
                .split(',')
                .any(|c| c == "memory")
                .then(|| path.to_owned())
        })
        .expect("a memory hierarchy (cgroup v1): this machine's kind has one")
}

/// A cgroup made for a test, removed (once empty) when the test ends, however it ends.
struct MadeCgroup(PathBuf);

impl Drop for MadeCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A cgroup of the memory hierarchy for a host's agents, below this test's own (so what the
/// agents use counts where the test's does): its path as `/proc/self/cgroup` writes it, and
/// the directory made for it.
fn memory_parent(label: &str) -> (String, MadeCgroup) {
    let own = own_memory_cgroup();
    let cgroup = format!(
        "{}/{}",
        own.trim_end_matches('/'),
        e2e::unique(&format!("agentgate-test-{label}"))
    );
    let dir = Path::new("/sys/fs/cgroup/memory").join(cgroup.trim_start_matches('/'));
    std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    (cgroup, MadeCgroup(dir))
}

#[test]
fn a_host_without_a_cgroup_for_its_user_refuses_limits_and_makes_nothing_until_given_one() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    // `ip netns exec` gave the host a fresh /sys, with no cgroup hierarchy mounted in it: its
    // user has no cgroup to put a limit in.
    let out = gw.ssh(&[
        "create", "far", "--host", "h1", "--memory", "64M", "--", "sleep", "600",
    ]);
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "created without cgroups: {}",
        stdout(&out)
    );
    assert!(
        err.contains("host 'h1' has no cgroup hierarchy")
            && err.contains("memory controller")
            && err.contains("--memory"),
        "{err}"
    );
    assert!(err.contains("Delegate=yes"), "{err}");
    assert!(gw.list().iter().all(|a| a["name"] != "far"));
    assert!(!h1.agents_home.join("agents/far").exists());
    assert!(!h1.agents_home.join("workspaces/far").exists());

    e2e::need("nsenter", "util-linux");
    // Its administrator gives it one: the memory hierarchy mounted where the host's sessions
    // look (the mount namespace its sshd and every session share), and a cgroup for its
    // agents named in `$AGENTGATE_HOME/cgroup-parent`.
    let (parent, made) = memory_parent("h1");
    let mounted = Command::new("nsenter")
        .args(["-t", &h1.sshd_pid().to_string(), "-m", "sh", "-c"])
        .arg(
            "mount -t tmpfs cgroups /sys/fs/cgroup && mkdir /sys/fs/cgroup/memory \
             && mount -t cgroup -o memory cgroup /sys/fs/cgroup/memory",
        )
        .output()
        .expect("nsenter");
    assert!(mounted.status.success(), "{}", stderr(&mounted));
    std::fs::create_dir_all(&h1.agents_home).expect("mkdir AGENTGATE_HOME");
    std::fs::write(h1.agents_home.join("cgroup-parent"), format!("{parent}\n"))
        .expect("cgroup-parent");
    gw.ok(&[
        "create", "far", "--host", "h1", "--memory", "64M", "--", "sleep", "600",
    ]);
    let memory = with_file(&cgroups_of(&h1.agents_home, "far"), "memory.limit_in_bytes");
    // The host's view and this one show the same hierarchy at the same place.
    assert_eq!(memory.parent(), Some(made.0.as_path()));
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let pid = gw.info("far")["pid"].as_u64().expect("running");
    wait_for("the agent's process in its cgroup", || {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroups
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with("-far"))
            .then_some(())
    });
    gw.ok(&["destroy", "far", "--force"]);
    assert!(
        !memory.exists(),
        "{} is left after destroy",
        memory.display()
    );
}

/// The unprivileged user the delegation test runs hostctl as.
const NOBODY: u32 = 65534;

/// Runs `program ARGS...` as user nobody, with `home` as its home and `AGENTGATE_HOME`,
/// tmux socket `socket` under it, and `input` on stdin.
fn as_nobody(
    home: &Path,
    socket: &str,
    program: &Path,
    args: &[&str],
    input: &[u8],
) -> std::process::Output {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid",
        &NOBODY.to_string(),
        "--regid",
        &NOBODY.to_string(),
        "--clear-groups",
        "--",
    ])
    .arg(program)
    .args(args)
    .env_clear()
    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    .env("HOME", home)
    .env("SHELL", "/bin/sh")
    .env("AGENTGATE_HOME", home.join("agents"))
    .env("AGENTGATE_TMUX_SOCKET", socket)
    .env("TMUX_TMPDIR", home);
    e2e::run_with_stdin(cmd, input)
}

/// A tmux server of user nobody, killed when the test ends.
struct TmuxServer {
    home: PathBuf,
    socket: String,
}

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let tmux = PathBuf::from("tmux");
        let _ = as_nobody(
            &self.home,
            &self.socket,
            &tmux,
            &["-L", &self.socket, "kill-server"],
            b"",
        );
    }
}

#[test]
fn a_host_user_with_no_cgroup_of_its_own_is_refused_until_one_is_chowned_to_it() {
    e2e::need("setpriv", "util-linux");
    // nobody's home: under a directory it may enter.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = dir.path().join("nobody");
    std::fs::create_dir(&home).expect("mkdir");
    let chown = |path: &Path| {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()))
    };
    chown(&home);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = e2e::unique("aglimits");
    let hostctl = e2e::bin_dir().join("hostctl");
    let hostctl_as_nobody =
        |args: &[&str], input: &[u8]| as_nobody(&home, &socket, &hostctl, args, input);
    // nobody's tmux server ends with the test, however it ends.
    let _server = TmuxServer {
        home: home.clone(),
        socket: socket.clone(),
    };
    let request = json!({
        "name": "low",
        "command": {"kind": "argv", "argv": ["sleep", "600"]},
        "workspace": {"kind": "empty"},
        "sandbox": "none",
        "limits": {"memory_bytes": 64u64 << 20},
    })
    .to_string();

    // Its processes sit in a cgroup root owns (this test's own): nothing to put a limit in.
    let refused = hostctl_as_nobody(&["create", "--json"], request.as_bytes());
    assert!(!refused.status.success(), "created: {}", stdout(&refused));
    let reply: Value = serde_json::from_str(stdout(&refused).trim()).expect("an error reply");
    assert_eq!(reply["error"]["code"], "host_lacks", "{reply}");
    let message = reply["error"]["message"].as_str().expect("a message");
    assert!(
        message.starts_with(
            "this host gives user 'nobody' no delegated cgroup with the memory controller"
        ),
        "{message}"
    );
    assert!(!home.join("agents/agents/low").exists());
    assert!(!home.join("agents/workspaces/low").exists());

    // An administrator delegates a cgroup v1 subtree to it: a directory of the memory
    // hierarchy with it, its `cgroup.procs` and `tasks` chowned to the user, named in the
    // user's `cgroup-parent`.
    let (parent, made) = memory_parent("nobody");
    for path in [
        made.0.clone(),
        made.0.join("cgroup.procs"),
        made.0.join("tasks"),
    ] {
        chown(&path);
    }
    std::fs::create_dir_all(home.join("agents")).expect("mkdir");
    chown(&home.join("agents"));
    std::fs::write(home.join("agents/cgroup-parent"), &parent).expect("cgroup-parent");
    let created = hostctl_as_nobody(&["create", "--json"], request.as_bytes());
    assert!(
        created.status.success(),
        "{}\n{}",
        stdout(&created),
        stderr(&created)
    );
    let info: Value = serde_json::from_str(stdout(&created).trim()).expect("the agent");
    let memory = with_file(
        &cgroups_of(&home.join("agents"), "low"),
        "memory.limit_in_bytes",
    );
    assert_eq!(memory.parent(), Some(made.0.as_path()));
    assert_eq!(
        read(&memory, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    // The pane's first process joins the cgroup before it runs the command (`create` may
    // answer before then).
    let pid = info["pid"].as_u64().expect("running");
    wait_for("the agent's process in its cgroup", || {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroups
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with("-low"))
            .then_some(())
    });
    let destroyed = hostctl_as_nobody(&["destroy", "low", "--json"], b"");
    assert!(destroyed.status.success(), "{}", stderr(&destroyed));
    assert!(
        !memory.exists(),
        "{} is left after destroy",
        memory.display()
    );
}

#[test]
fn clone_restore_and_migrate_carry_the_limits_and_a_host_without_cgroups_refuses_the_move() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&[
        "create", "orig", "--host", "local", "--memory", "96M", "--pids", "48", "--", "sleep",
        "600",
    ]);
    let shown = json!({"memory_bytes": 100663296, "pids": 48});
    let applied = |name: &str| {
        let dirs = cgroups_of(&gw.agents_home, name);
        assert_eq!(
            read(
                &with_file(&dirs, "memory.limit_in_bytes"),
                "memory.limit_in_bytes"
            ),
            (96u64 << 20).to_string(),
            "{name}"
        );
        assert_eq!(read(&with_file(&dirs, "pids.max"), "pids.max"), "48");
        assert_eq!(gw.info(name)["limits"], shown, "{name}");
    };
    gw.ok(&["clone", "orig", "copy"]);
    applied("copy");
    let snap: Value =
        serde_json::from_str(&gw.ok(&["snapshot", "orig", "--json"])).expect("snapshot JSON");
    let id = snap["id"].as_str().expect("an id");
    gw.ok(&["create", "back", "--from-snapshot", id]);
    applied("back");

    // h1 has no cgroup hierarchy in its view: the move is refused, the agent stays running.
    let out = gw.ssh(&["migrate", "copy", "h1"]);
    assert!(!out.status.success(), "migrated: {}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("host 'h1'") && err.contains("memory controller"),
        "{err}"
    );
    let info = gw.info("copy");
    assert_eq!(info["host"], "local", "{info}");
    assert_eq!(info["state"], "running", "{info}");
    assert!(!h1.agents_home.join("agents/copy").exists());
    assert!(!h1.agents_home.join("workspaces/copy").exists());
    for name in ["orig", "copy", "back"] {
        gw.ok(&["destroy", name, "--force"]);
    }
}
