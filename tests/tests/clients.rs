//! SSH clients other than OpenSSH's against `NAME@gw`: paramiko and asyncssh (PyPI), dropbear's
//! `dbclient`, PuTTY's `plink`, `pscp` and `psftp`. Each runs a command and gets its exit
//! status, and moves a file up and down; paramiko's attach, closed with `close()`, is recorded
//! as the client leaving; PuTTY's habitual channel requests leave no WARN in the gateway's log.
//!
//! `scripts/test.sh` installs paramiko and asyncssh into `target/tools/python`; `.ci/run` installs
//! `dropbear-bin` and `putty-tools`. A missing one fails the test with the line that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use e2e::{Options, TestGateway, need, stderr, stdout, wait_for};

/// Where `scripts/test.sh` installs the Python clients.
fn python_tools() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/python")
}

/// `python3` with the installed Python clients importable; fails naming the fix when `module`
/// is not installed.
fn python(module: &str) -> Command {
    let tools = python_tools();
    if !tools.join(module).is_dir() {
        panic!(
            "{module} is not installed in {}: run scripts/test.sh, or \
             python3 -m pip install --target target/tools/python {module}",
            tools.display()
        );
    }
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &tools).stdin(Stdio::null());
    cmd
}

fn workspace(gw: &TestGateway, name: &str) -> PathBuf {
    gw.ok(&["create", name, "--", "sleep", "600"]);
    PathBuf::from(gw.info(name)["workspace"].as_str().expect("workspace"))
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run the client")
}

fn events_of(gw: &TestGateway, agent: &str) -> Vec<serde_json::Value> {
    let events: serde_json::Value =
        serde_json::from_str(&gw.ok(&["events", "--agent", agent, "--json", "-n", "100"]))
            .expect("json");
    events.as_array().expect("array").clone()
}

/// No WARN (nor ERROR) line in the gateway's log.
fn assert_no_warnings(gw: &TestGateway) {
    let log = gw.log();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        loud.is_empty(),
        "the gateway's log warns:\n{}",
        loud.join("\n")
    );
}

const PARAMIKO: &str = r##"
import sys, time, paramiko
port, key, local_up, local_down = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port=port, username="box", key_filename=key,
               look_for_keys=False, allow_agent=False, timeout=30)
_, out, err = client.exec_command("echo from-paramiko; exit 7")
print("exec", out.read().decode().strip(), out.channel.recv_exit_status())
sftp = client.open_sftp()
sftp.put(local_up, "up-paramiko.txt")
sftp.get("up-paramiko.txt", local_down)
sftp.close()
shell = client.invoke_shell(term="xterm", width=80, height=24)
deadline = time.time() + 30
seen = b""
while b"$" not in seen and b"#" not in seen and time.time() < deadline:
    if shell.recv_ready():
        seen += shell.recv(65536)
    else:
        time.sleep(0.1)
shell.close()
time.sleep(1)
client.close()
print("attach closed")
"##;

#[test]
fn paramiko_runs_commands_moves_files_and_its_closed_attach_is_the_client_leaving() {
    let gw = TestGateway::start();
    paramiko_round_trip(&gw, "local");
}

#[test]
fn paramiko_works_with_an_agent_on_a_namespace_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    paramiko_round_trip(&gw, "h1");
}

/// paramiko against agent `box`, made on `host`: a command, a file up and down, and an attach
/// it closes.
fn paramiko_round_trip(gw: &TestGateway, host: &str) {
    gw.ok(&["create", "box", "--host", host]);
    let workspace = PathBuf::from(gw.info("box")["workspace"].as_str().expect("workspace"));
    let up = gw.dir.path().join("up.txt");
    let down = gw.dir.path().join("down.txt");
    std::fs::write(&up, "paramiko's file\n").expect("write");
    let mut cmd = python("paramiko");
    cmd.args(["-c", PARAMIKO, &gw.port.to_string()])
        .arg(&gw.key)
        .arg(&up)
        .arg(&down);
    let out = run(cmd);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(stdout(&out), "exec from-paramiko 7\nattach closed\n");
    assert_eq!(
        std::fs::read_to_string(workspace.join("up-paramiko.txt")).expect("uploaded"),
        "paramiko's file\n"
    );
    assert_eq!(
        std::fs::read_to_string(&down).expect("downloaded"),
        "paramiko's file\n"
    );
    let attach = wait_for("the attach to be recorded as ended", || {
        events_of(gw, "box")
            .into_iter()
            .find(|e| e["kind"] == "attach" && e["result"] != "started")
    });
    assert_eq!(attach["result"], "exit 255", "{attach}");
    assert_eq!(attach["message"], "the client went away", "{attach}");
    assert_eq!(
        gw.status("box"),
        "running",
        "closing a viewer leaves the agent"
    );
    assert_no_warnings(gw);
}

const ASYNCSSH: &str = r#"
import asyncio, sys, asyncssh
port, key, local_up, local_down = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
async def main():
    async with asyncssh.connect("127.0.0.1", port=port, username="box", client_keys=[key],
                                known_hosts=None, agent_path=None) as conn:
        result = await conn.run("echo from-asyncssh; echo to-err >&2; exit 4")
        print("exec", result.stdout.strip(), result.stderr.strip(), result.exit_status)
        async with conn.start_sftp_client() as sftp:
            await sftp.put(local_up, "up-asyncssh.txt")
            await sftp.get("up-asyncssh.txt", local_down)
        result = await conn.run("cat up-asyncssh.txt", check=True)
        print("cat", result.stdout.strip())
asyncio.run(main())
"#;

#[test]
fn asyncssh_runs_commands_and_moves_files() {
    let gw = TestGateway::start();
    let workspace = workspace(&gw, "box");
    let up = gw.dir.path().join("up.txt");
    let down = gw.dir.path().join("down.txt");
    std::fs::write(&up, "asyncssh's file\n").expect("write");
    let mut cmd = python("asyncssh");
    cmd.args(["-c", ASYNCSSH, &gw.port.to_string()])
        .arg(&gw.key)
        .arg(&up)
        .arg(&down);
    let out = run(cmd);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert_eq!(
        stdout(&out),
        "exec from-asyncssh to-err 4\ncat asyncssh's file\n"
    );
    assert_eq!(
        std::fs::read_to_string(workspace.join("up-asyncssh.txt")).expect("uploaded"),
        "asyncssh's file\n"
    );
    assert_eq!(
        std::fs::read_to_string(&down).expect("downloaded"),
        "asyncssh's file\n"
    );
    assert_no_warnings(&gw);
}

/// The operator's key converted for dropbear.
fn dropbear_key(gw: &TestGateway) -> PathBuf {
    need("dropbearconvert", "dropbear-bin");
    let key = gw.dir.path().join("operator_key.dropbear");
    let out = Command::new("dropbearconvert")
        .args(["openssh", "dropbear"])
        .arg(&gw.key)
        .arg(&key)
        .output()
        .expect("run dropbearconvert");
    assert!(out.status.success(), "{}", stderr(&out));
    key
}

/// `dbclient` logged in as `box` with the operator's key; host keys are taken as they come
/// (`-y -y`), and its known_hosts goes to a home of its own.
fn dbclient(gw: &TestGateway, key: &Path, command: &str) -> Command {
    need("dbclient", "dropbear-bin");
    let home = gw.dir.path().join("dbclient-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let mut cmd = Command::new("dbclient");
    cmd.env("HOME", &home)
        .args(["-y", "-y", "-i"])
        .arg(key)
        .args(["-p", &gw.port.to_string(), "box@127.0.0.1", command]);
    cmd
}

#[test]
fn dropbears_dbclient_runs_commands_and_moves_files_through_them() {
    let gw = TestGateway::start();
    let workspace = workspace(&gw, "box");
    let key = dropbear_key(&gw);
    let out = run(dbclient(&gw, &key, "echo from-dbclient; exit 6"));
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-dbclient\n");
    let out = e2e::run_with_stdin(
        dbclient(&gw, &key, "cat > up-dbclient.txt"),
        b"dbclient's file\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(workspace.join("up-dbclient.txt")).expect("uploaded"),
        "dbclient's file\n"
    );
    let out = run(dbclient(&gw, &key, "cat up-dbclient.txt"));
    assert_eq!(stdout(&out), "dbclient's file\n", "{}", stderr(&out));
    assert_no_warnings(&gw);
}

/// The operator's key in PuTTY's format, and the gateway's host key as PuTTY pins it.
fn putty_key_and_host_key(gw: &TestGateway) -> (PathBuf, String) {
    need("puttygen", "putty-tools");
    let ppk = gw.dir.path().join("operator_key.ppk");
    let out = Command::new("puttygen")
        .arg(&gw.key)
        .args(["-O", "private", "-o"])
        .arg(&ppk)
        .output()
        .expect("run puttygen");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(gw.data_dir.join("host_key.pub"))
        .output()
        .expect("run ssh-keygen");
    let fingerprint = stdout(&out)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_owned();
    (ppk, fingerprint)
}

/// A PuTTY tool (`plink`, `pscp`, `psftp`) in batch mode, with the key and the pinned host key.
fn putty(gw: &TestGateway, tool: &str, ppk: &Path, host_key: &str) -> Command {
    need(tool, "putty-tools");
    let mut cmd = Command::new(tool);
    cmd.args(["-batch", "-i"])
        .arg(ppk)
        .args(["-hostkey", host_key, "-P", &gw.port.to_string()]);
    cmd
}

#[test]
fn puttys_plink_pscp_and_psftp_work_and_leave_no_warning_in_the_log() {
    let gw = TestGateway::start_with(Options {
        env: vec![("RUST_LOG".into(), "info,gateway::ssh::quiet=debug".into())],
        ..Options::default()
    });
    let workspace = workspace(&gw, "box");
    let (ppk, host_key) = putty_key_and_host_key(&gw);
    let mut plink = putty(&gw, "plink", &ppk, &host_key);
    plink.args(["box@127.0.0.1", "echo from-plink; exit 5"]);
    let out = run(plink);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert_eq!(stdout(&out), "from-plink\n");

    let up = gw.dir.path().join("up.txt");
    std::fs::write(&up, "putty's file\n").expect("write");
    for protocol in ["-sftp", "-scp"] {
        let name = format!("up{protocol}.txt");
        let mut pscp = putty(&gw, "pscp", &ppk, &host_key);
        pscp.arg(protocol)
            .arg(&up)
            .arg(format!("box@127.0.0.1:{name}"));
        let out = run(pscp);
        assert!(out.status.success(), "pscp {protocol} up: {}", stderr(&out));
        assert_eq!(
            std::fs::read_to_string(workspace.join(&name)).expect("uploaded"),
            "putty's file\n"
        );
        let down = gw.dir.path().join(format!("down{protocol}.txt"));
        let mut pscp = putty(&gw, "pscp", &ppk, &host_key);
        pscp.arg(protocol)
            .arg(format!("box@127.0.0.1:{name}"))
            .arg(&down);
        let out = run(pscp);
        assert!(
            out.status.success(),
            "pscp {protocol} down: {}",
            stderr(&out)
        );
        assert_eq!(
            std::fs::read_to_string(&down).expect("downloaded"),
            "putty's file\n"
        );
    }

    let batch = gw.dir.path().join("psftp-batch");
    let down = gw.dir.path().join("down-psftp.txt");
    std::fs::write(
        &batch,
        format!(
            "put {} up-psftp.txt\nget up-psftp.txt {}\nls\n",
            up.display(),
            down.display()
        ),
    )
    .expect("batch");
    let mut psftp = putty(&gw, "psftp", &ppk, &host_key);
    psftp.arg("-b").arg(&batch).arg("box@127.0.0.1");
    let out = run(psftp);
    assert!(out.status.success(), "psftp: {}", stderr(&out));
    assert!(stdout(&out).contains("up-psftp.txt"), "{}", stdout(&out));
    assert_eq!(
        std::fs::read_to_string(&down).expect("downloaded"),
        "putty's file\n"
    );
    // PuTTY asks for `simple@putty.projects.tartarus.org` on its sessions: answered as sshd
    // answers it, and not a warning but a DEBUG line.
    assert_no_warnings(&gw);
    let log = gw.log();
    assert!(
        log.lines().any(|l| l.contains(" DEBUG ")
            && l.contains("channel request not served")
            && l.contains("simple@putty.projects.tartarus.org")),
        "{log}"
    );
}
