//! What people who use ssh every day expect of `NAME@gw`, on `local` and on a namespace host:
//! a session's environment (`USER`, `LOGNAME`, `SSH_CONNECTION`, `SSH_TTY`, `TERM`, ...) as the
//! host's own sshd gives it; Emacs TRAMP, whose terminal is `dumb`, reading and writing a
//! workspace file; ansible's ping, copy and a playbook with both transfer methods, with the
//! one setting docs/commands.md gives for its temporary directory, leaving no `~NAME` behind;
//! `mosh NAME@gw` attached to the agent, sandboxed or not, and `mosh NAME@gw -- CMD` inside its
//! sandbox; git's
//! two ways of naming a repository (`NAME@gw:path`, `ssh://NAME@gw/~/path`) and what each is
//! relative to.
//!
//! `.ci/run` installs Emacs (`emacs-nox`) and mosh; `scripts/test.sh` installs ansible-core into
//! `target/tools/python`. A missing one fails the test with the line that installs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use e2e::netns::NetnsHost;
use e2e::{TestGateway, need, stderr, stdout};

/// The variables `env` printed, by name (a terminal's `\r` taken off).
fn env_of(out: &Output) -> BTreeMap<String, String> {
    assert!(out.status.success(), "env failed: {}", stderr(out));
    stdout(out)
        .lines()
        .filter_map(|line| {
            let (key, value) = line.trim_end_matches('\r').split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect()
}

/// The name of the user the tests run as (the host user of `local` and of namespace hosts).
fn user_name() -> String {
    let out = Command::new("id").arg("-un").output().expect("run id");
    stdout(&out).trim().to_owned()
}

/// The login shell of the user the tests run as, from the password database.
fn account_shell() -> String {
    let out = Command::new("getent")
        .args(["passwd", &user_name()])
        .output()
        .expect("run getent");
    stdout(&out)
        .trim()
        .rsplit(':')
        .next()
        .expect("a passwd line")
        .to_owned()
}

fn agent(gw: &TestGateway, name: &str, host: &str) {
    gw.ok(&["create", name, "--host", host, "--", "sleep", "600"]);
}

/// `ssh ARGS...` with the gateway's client settings and `TERM` for the client's terminal.
fn ssh_with_term(gw: &TestGateway, term: &str, args: &[&str]) -> Output {
    gw.ssh_command()
        .env("TERM", term)
        .args(args)
        .output()
        .expect("run ssh")
}

/// SSH_CONNECTION and SSH_CLIENT in `env` (a session's environment) name the client's
/// connection to the gateway, from 127.0.0.1, as sshd would.
fn assert_connection_is_the_clients(env: &BTreeMap<String, String>, gw: &TestGateway) {
    let connection = env.get("SSH_CONNECTION").expect("SSH_CONNECTION");
    let fields: Vec<&str> = connection.split(' ').collect();
    assert_eq!(fields.len(), 4, "{connection}");
    assert_eq!(
        (fields[0], fields[2], fields[3]),
        ("127.0.0.1", "127.0.0.1", gw.port.to_string().as_str())
    );
    assert_eq!(
        env.get("SSH_CLIENT"),
        Some(&format!("{} {} {}", fields[0], fields[1], fields[3]))
    );
}

#[test]
fn a_commands_environment_names_the_host_user_and_the_connection_as_sshd_does() {
    let gw = TestGateway::start();
    agent(&gw, "box", "local");
    let env = env_of(&gw.ssh_run(&["-o", "SetEnv=LANG=C.UTF-8", "box@gw", "env"]));
    let user = user_name();
    // The gateway runs with USER=tester (the harness's operator name): the host user is
    // who the processes run as, not what the gateway's environment claims.
    assert_eq!(env.get("USER"), Some(&user), "{env:?}");
    assert_eq!(env.get("LOGNAME"), Some(&user), "{env:?}");
    assert_eq!(
        env.get("MAIL").map(String::as_str),
        Some(format!("/var/mail/{user}").as_str())
    );
    assert_eq!(env.get("SHELL"), Some(&account_shell()), "{env:?}");
    assert_eq!(
        env.get("HOME").map(String::as_str),
        Some(gw.home.to_str().expect("utf-8 home"))
    );
    assert!(env.get("PATH").is_some_and(|p| !p.is_empty()), "{env:?}");
    assert_eq!(env.get("LANG").map(String::as_str), Some("C.UTF-8"));
    assert_connection_is_the_clients(&env, &gw);
    // No terminal: no SSH_TTY, and no TERM from anywhere.
    assert!(!env.contains_key("SSH_TTY"), "{env:?}");
    assert!(!env.contains_key("TERM"), "{env:?}");

    // With a terminal: SSH_TTY names it, TERM is the client's.
    let env = env_of(&ssh_with_term(&gw, "vt220", &["-tt", "box@gw", "env"]));
    assert!(
        env.get("SSH_TTY")
            .is_some_and(|t| t.starts_with("/dev/pts/")),
        "{env:?}"
    );
    assert_eq!(env.get("TERM").map(String::as_str), Some("vt220"));
    assert_eq!(env.get("USER"), Some(&user));
}

/// `ssh root@HOST ARGS...` straight to a namespace host's sshd, with the operator's key.
fn ssh_to_host(gw: &TestGateway, host: &NetnsHost, term: &str, args: &[&str]) -> Output {
    let known_hosts = gw.dir.path().join(format!("known_hosts_{}", host.name));
    std::fs::write(&known_hosts, format!("{}\n", host.known_hosts_line())).expect("known_hosts");
    host.ssh(&gw.key, &known_hosts, 10)
        .env("TERM", term)
        .args(["-o", "LogLevel=ERROR"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh")
}

fn public_key_line(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub")).expect("read the operator's public key")
}

#[test]
fn on_a_namespace_host_a_session_gets_what_the_hosts_own_sshd_gives() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    h1.authorize(&public_key_line(&gw.key));
    agent(&gw, "far", "h1");
    for terminal in [false, true] {
        let flags: &[&str] = if terminal { &["-tt"] } else { &["-T"] };
        let mut through_gateway = vec!["-o", "SetEnv=LANG=C.UTF-8"];
        through_gateway.extend_from_slice(flags);
        through_gateway.extend_from_slice(&["far@gw", "env"]);
        let gateway = env_of(&ssh_with_term(&gw, "vt220", &through_gateway));
        let mut direct = flags.to_vec();
        direct.push("env");
        let sshd = env_of(&ssh_to_host(&gw, &h1, "vt220", &direct));
        for same in ["USER", "LOGNAME", "HOME", "SHELL", "PATH", "MAIL", "TERM"] {
            assert_eq!(
                gateway.get(same),
                sshd.get(same),
                "{same} (terminal: {terminal})\nthrough the gateway: {gateway:?}\nsshd: {sshd:?}"
            );
        }
        assert_eq!(
            gateway.contains_key("SSH_TTY"),
            sshd.contains_key("SSH_TTY"),
            "{gateway:?}\n{sshd:?}"
        );
        assert_eq!(gateway.contains_key("SSH_TTY"), terminal);
        // The connection is the operator's to the gateway, not the gateway's to the host.
        let connection: Vec<&str> = gateway["SSH_CONNECTION"].split(' ').collect();
        assert_eq!(connection.len(), 4);
        assert_eq!(
            (connection[0], connection[3]),
            ("127.0.0.1", gw.port.to_string().as_str())
        );
        assert_eq!(
            sshd["SSH_CONNECTION"].split(' ').count(),
            4,
            "the same shape as sshd's"
        );
        assert_eq!(gateway.get("LANG").map(String::as_str), Some("C.UTF-8"));
    }
}

/// An Emacs Lisp string literal holding `s`.
fn elisp_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `emacs --batch` with TRAMP's default method (`ssh`, which asks for a terminal of type
/// `dumb` and no command), its ssh reading the test gateway's config through `-F` (no
/// ControlMaster), then `body`.
fn emacs_with_tramp(gw: &TestGateway, body: &str) -> Output {
    need("emacs", "emacs-nox");
    let home = gw.dir.path().join("emacs-home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let config = elisp_string(gw.ssh_config_path().to_str().expect("utf-8 path"));
    let program = format!(
        "(progn
           (require 'tramp)
           (require 'tramp-sh)
           (setq tramp-default-method \"ssh\"
                 tramp-use-ssh-controlmaster-options nil
                 tramp-verbose 1
                 tramp-persistency-file-name nil)
           (let ((args (assoc 'tramp-login-args (assoc \"ssh\" tramp-methods))))
             (setcar (cdr args) (cons (list \"-F\" {config}) (cadr args))))
           {body})"
    );
    Command::new("emacs")
        .env("HOME", &home)
        .env_remove("TMUX")
        .args(["--batch", "-Q", "--eval", &program])
        .stdin(Stdio::null())
        .output()
        .expect("run emacs")
}

/// TRAMP reads a file of agent `name`'s workspace and writes one beside it; the trail says
/// the dumb terminal got a shell.
fn tramp_round_trip(gw: &TestGateway, name: &str) {
    let workspace = gw.workspace(name).display().to_string();
    std::fs::write(
        Path::new(&workspace).join("notes.txt"),
        "written on the host\n",
    )
    .expect("write");
    // `/ssh:` names the method; `/-:` takes `tramp-default-method`.
    let notes = elisp_string(&format!("/ssh:{name}@gw:{workspace}/notes.txt"));
    let written = elisp_string(&format!("/-:{name}@gw:{workspace}/from-emacs.txt"));
    let out = emacs_with_tramp(
        gw,
        &format!(
            "(with-temp-buffer
               (insert-file-contents {notes})
               (princ (concat \"read: \" (buffer-string))))
             (with-temp-file {written}
               (insert \"written by emacs\\n\"))"
        ),
    );
    assert!(
        out.status.success(),
        "emacs failed\nstdout: {}\nstderr: {}\ngateway log:\n{}",
        stdout(&out),
        stderr(&out),
        gw.log()
    );
    assert_eq!(
        stdout(&out),
        "read: written on the host\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(&workspace).join("from-emacs.txt")).expect("written"),
        "written by emacs\n"
    );
    // The trail says the terminal got a shell, and why.
    let events: serde_json::Value =
        serde_json::from_str(&gw.ok(&["events", "--agent", name, "--json"])).expect("json");
    let shell = events
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["kind"] == "shell")
        .unwrap_or_else(|| panic!("no shell event: {events}"));
    assert_eq!(
        shell["detail"],
        "login shell on a terminal tmux cannot drive (TERM=dumb), instead of an attach"
    );
    assert_no_attach(&events);
}

#[test]
fn emacs_tramp_reads_and_writes_a_workspace_file_over_a_dumb_terminal() {
    let gw = TestGateway::start();
    agent(&gw, "box", "local");
    tramp_round_trip(&gw, "box");
}

#[test]
fn emacs_tramp_works_with_an_agent_on_a_namespace_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    agent(&gw, "far", "h1");
    tramp_round_trip(&gw, "far");
}

fn assert_no_attach(events: &serde_json::Value) {
    let attaches: Vec<_> = events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == "attach")
        .collect();
    assert!(attaches.is_empty(), "{attaches:?}");
}

/// `python3 -m ansible ENTRY ARGS...` from the copy `scripts/test.sh` installs into
/// `target/tools/python`, with its state in the test's directory.
fn ansible(gw: &TestGateway, entry: &str, args: &[&str]) -> Output {
    let tools = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/python");
    assert!(
        tools.join("ansible").is_dir(),
        "ansible-core is not installed in {}: run scripts/test.sh, or \
         python3 -m pip install --target target/tools/python ansible-core",
        tools.display()
    );
    let state = gw.dir.path().join("ansible-home");
    std::fs::create_dir_all(&state).expect("mkdir");
    Command::new("python3")
        .env("PYTHONPATH", &tools)
        .env("ANSIBLE_HOME", &state)
        .env("ANSIBLE_LOCAL_TEMP", state.join("tmp"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_FORCE_COLOR", "0")
        .env("ANSIBLE_HOST_KEY_CHECKING", "False")
        .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
        .args(["-m", "ansible", entry])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ansible")
}

/// An inventory with agent `name` behind the test gateway, files moved with `transfer`
/// (`sftp` or `scp`), and `extra` host variables.
fn inventory(gw: &TestGateway, name: &str, transfer: &str, extra: &str) -> std::path::PathBuf {
    let path = gw.dir.path().join(format!("inventory-{transfer}.ini"));
    let line = format!(
        "{name} ansible_host=gw ansible_user={name} ansible_python_interpreter=/usr/bin/python3 \
         ansible_ssh_transfer_method={transfer} ansible_pipelining=false \
         ansible_ssh_args='-F {config} -o ControlMaster=no' {extra}\n",
        config = gw.ssh_config_path().display()
    );
    std::fs::write(&path, line).expect("write inventory");
    path
}

/// Runs ansible's ping, copy and a small playbook against agent `name` with each transfer
/// method; the workspace holds what was copied and no `~NAME` directory.
fn ansible_round_trip(gw: &TestGateway, name: &str, extra: &str) {
    let workspace = gw.workspace(name);
    let source = gw.dir.path().join("from-ansible.txt");
    std::fs::write(&source, "copied by ansible\n").expect("write");
    let playbook = gw.dir.path().join("playbook.yml");
    std::fs::write(
        &playbook,
        format!(
            "- hosts: {name}\n  gather_facts: false\n  tasks:\n    \
             - name: a file from a template\n      \
               copy:\n        content: \"from the playbook\\n\"\n        dest: played.txt\n    \
             - name: a command in the workspace\n      \
               command: cat played.txt\n      register: played\n    \
             - assert:\n        that: played.stdout == 'from the playbook'\n"
        ),
    )
    .expect("write playbook");
    for transfer in ["sftp", "scp"] {
        let inventory = inventory(gw, name, transfer, extra);
        let inventory = inventory.to_str().expect("utf-8");
        let ok = |out: Output, what: &str| {
            assert!(
                out.status.success(),
                "ansible {what} with {transfer} failed\nstdout: {}\nstderr: {}",
                stdout(&out),
                stderr(&out)
            );
        };
        ok(
            ansible(gw, "adhoc", &["-i", inventory, name, "-m", "ping"]),
            "ping",
        );
        let dest = format!("copied-{transfer}.txt");
        let copy = format!("src={} dest={dest}", source.display());
        ok(
            ansible(
                gw,
                "adhoc",
                &["-i", inventory, name, "-m", "copy", "-a", &copy],
            ),
            "copy",
        );
        assert_eq!(
            std::fs::read_to_string(workspace.join(&dest)).expect("copied into the workspace"),
            "copied by ansible\n"
        );
        ok(
            ansible(
                gw,
                "playbook",
                &["-i", inventory, playbook.to_str().expect("utf-8")],
            ),
            "playbook",
        );
        assert_eq!(
            std::fs::read_to_string(workspace.join("played.txt")).expect("played"),
            "from the playbook\n"
        );
    }
    let tilde = workspace.join(format!("~{name}"));
    assert!(
        !tilde.exists(),
        "ansible left {} in the workspace",
        tilde.display()
    );
}

/// The environment of the running `sftp-server` serving `workspace` (on any host of this
/// machine: a namespace host's processes are this machine's too), read from /proc.
fn sftp_server_environment(workspace: &Path) -> Option<BTreeMap<String, String>> {
    let workspace = workspace.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let serving = args.first()?.ends_with(b"sftp-server")
                && args.windows(2).any(|w| w[0] == b"-d" && w[1] == workspace);
            if !serving {
                return None;
            }
            let environ = std::fs::read(entry.path().join("environ")).ok()?;
            Some(
                environ
                    .split(|b| *b == 0)
                    .filter_map(|var| {
                        let var = String::from_utf8_lossy(var);
                        let (key, value) = var.split_once('=')?;
                        Some((key.to_owned(), value.to_owned()))
                    })
                    .collect(),
            )
        })
}

/// While an sftp session to `agent` is open, its `sftp-server` has what a command gets: the
/// host user's identity and the connection's `SSH_CONNECTION` and `SSH_CLIENT`.
fn sftp_server_has_a_commands_environment(gw: &TestGateway, agent: &str, workspace: &Path) {
    let mut sftp = Command::new("sftp")
        .arg("-F")
        .arg(gw.ssh_config_path())
        .args(["-b", "-", &format!("{agent}@gw")])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run sftp");
    // The session stays open while its batch (stdin) does.
    let env = e2e::wait_for("the session's sftp-server", || {
        sftp_server_environment(workspace)
    });
    drop(sftp.stdin.take());
    let _ = sftp.wait();
    let user = user_name();
    assert_eq!(env.get("USER"), Some(&user), "{env:?}");
    assert_eq!(env.get("LOGNAME"), Some(&user), "{env:?}");
    assert_connection_is_the_clients(&env, gw);
    assert_eq!(
        env.get("AGENTGATE_AGENT").map(String::as_str),
        Some(agent),
        "{env:?}"
    );
}

#[test]
fn an_sftp_server_gets_the_environment_a_command_gets() {
    let gw = TestGateway::start();
    agent(&gw, "box", "local");
    let workspace = gw.workspace("box");
    sftp_server_has_a_commands_environment(&gw, "box", Path::new(&workspace));
}

#[test]
fn an_sftp_server_on_a_namespace_host_gets_the_environment_a_command_gets() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    agent(&gw, "far", "h1");
    let workspace = h1.agents_home.join("workspaces").join("far");
    sftp_server_has_a_commands_environment(&gw, "far", &workspace);
}

/// The one line docs/commands.md gives for ansible: its temporary directory named from `$HOME`,
/// which the host's shell expands, rather than from `~NAME`, which it cannot (an agent is not
/// a user of the host).
const ANSIBLE_SETTING: &str = "ansible_remote_tmp='$HOME/.ansible/tmp'";

#[test]
fn ansible_ping_copy_and_a_playbook_work_with_sftp_and_scp() {
    let gw = TestGateway::start();
    agent(&gw, "a1", "local");
    ansible_round_trip(&gw, "a1", ANSIBLE_SETTING);
}

#[test]
fn ansible_works_with_an_agent_on_a_namespace_host() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    agent(&gw, "a2", "h1");
    ansible_round_trip(&gw, "a2", ANSIBLE_SETTING);
}

/// A terminal (a tmux session of its own) running `mosh` to `target` with `command` (none:
/// `mosh TARGET` alone), through the test gateway's ssh config; mosh's UDP goes to 127.0.0.1,
/// the gateway's machine. What mosh prints before its own screen, and its exit status, stay on
/// the terminal.
struct MoshTerminal {
    socket: String,
    tmpdir: std::path::PathBuf,
}

impl MoshTerminal {
    fn open(gw: &TestGateway, target: &str, command: &str) -> MoshTerminal {
        need("mosh", "mosh");
        let socket = e2e::unique("agmosh");
        let command = if command.is_empty() {
            String::new()
        } else {
            format!(" -- {command}")
        };
        let script = format!(
            "LANG=C.UTF-8 mosh --ssh={ssh} {target}{command}; echo mosh-exit $?; sleep 600",
            ssh = e2e::shell_quote(&format!("ssh -F {}", gw.ssh_config_path().display())),
        );
        let terminal = MoshTerminal {
            socket,
            tmpdir: gw.dir.path().to_owned(),
        };
        let out = terminal.tmux(&[
            "-f",
            "/dev/null",
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
        assert!(out.status.success(), "{}", stderr(&out));
        terminal
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .env("TMUX_TMPDIR", &self.tmpdir)
            .env_remove("TMUX")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn wait_for_text(&self, text: &str) -> String {
        e2e::wait_for(&format!("{text:?} on mosh's terminal"), || {
            let screen = stdout(&self.tmux(&["capture-pane", "-p", "-J"]));
            screen.contains(text).then_some(screen)
        })
    }

    /// Types `text` and Enter on mosh's terminal.
    fn type_line(&self, text: &str) {
        let out = self.tmux(&["send-keys", "-l", "--", text]);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
        let out = self.tmux(&["send-keys", "Enter"]);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }
}

impl Drop for MoshTerminal {
    fn drop(&mut self) {
        // mosh-client goes with its terminal; mosh-server ends when its command does.
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The audit events of `agent` of `kind`, newest last.
fn events_of(gw: &TestGateway, agent: &str, kind: &str) -> Vec<serde_json::Value> {
    let events: serde_json::Value =
        serde_json::from_str(&gw.ok(&["events", "--agent", agent, "--json"])).expect("json");
    events
        .as_array()
        .expect("array")
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

/// `mosh NAME@gw` with no command reaches the agent's tmux session: what is typed on mosh's
/// terminal runs in the agent's pane, whose screen comes back on mosh's terminal; the audit
/// trail has it as an attach, with what mosh-server was asked for.
fn mosh_attaches(gw: &TestGateway, agent: &str) {
    let mosh = MoshTerminal::open(gw, &format!("{agent}@gw"), "");
    e2e::wait_for("mosh's tmux client on the agent's session", || {
        let clients = stdout(&gw.tmux(&["list-clients", "-t", agent]));
        (!clients.trim().is_empty()).then_some(())
    });
    // The shell's arithmetic shows the line ran in the agent, not only that it was echoed.
    mosh.type_line(&format!("echo typed-into-{agent}-$((6*7)) in $PWD"));
    let answer = format!("typed-into-{agent}-42 in ");
    e2e::wait_for("the typed line's answer in the agent's pane", || {
        let pane = stdout(&gw.tmux(&["capture-pane", "-p", "-J", "-t", agent]));
        pane.contains(&answer).then_some(())
    });
    let screen = mosh.wait_for_text(&answer);
    let workspace = gw.workspace(agent).display().to_string();
    assert!(
        screen.contains(&format!("{answer}{workspace}")),
        "the agent's shell runs in its workspace:\n{screen}"
    );
    let attach = events_of(gw, agent, "attach")
        .pop()
        .expect("an attach event");
    // What the pinned mosh client asked of mosh-server, as the gateway received it.
    eprintln!("mosh's attach, as recorded: {}", attach["detail"]);
    let detail = attach["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("attach through mosh-server new ") && detail.contains("-s"),
        "{attach}"
    );
    // Detaching ends mosh, and leaves the agent running.
    for key in ["C-b", "d"] {
        let out = mosh.tmux(&["send-keys", key]);
        assert!(out.status.success(), "send-keys: {}", stderr(&out));
    }
    mosh.wait_for_text("mosh-exit 0");
    assert!(gw.tmux(&["has-session", "-t", agent]).status.success());
}

#[test]
fn mosh_name_at_gw_lands_in_the_agents_tmux_session_with_and_without_a_sandbox() {
    let gw = TestGateway::start();
    // A sandbox hides the host's tmux server from what runs inside it: mosh-server runs on
    // the host's side, as an attach's tmux client does.
    gw.ok(&["create", "boxed"]);
    assert_eq!(gw.info("boxed")["sandbox"], "bwrap", "the default sandbox");
    gw.ok(&["create", "open", "--sandbox", "none"]);
    mosh_attaches(&gw, "boxed");
    mosh_attaches(&gw, "open");
}

#[test]
fn mosh_with_a_command_runs_it_inside_the_agents_sandbox_in_its_workspace() {
    let gw = TestGateway::start();
    gw.ok(&["create", "boxed"]);
    assert_eq!(gw.info("boxed")["sandbox"], "bwrap", "the default sandbox");
    // The gateway's data directory (its host key, its database) is hidden from a sandbox.
    let probe = format!(
        "sh -c 'test -e {dir} && echo gateway-dir-seen || echo gateway-dir-hidden; \
         echo \"agent=$AGENTGATE_AGENT cwd=$(pwd)\"; exec sleep 30'",
        dir = gw.data_dir.join("host_key.pub").display()
    );
    let workspace = gw.workspace("boxed").display().to_string();
    let mosh = MoshTerminal::open(&gw, "boxed@gw", &probe);
    // mosh-server starts its command in the home directory; the command still starts in the
    // workspace, as any command does.
    mosh.wait_for_text(&format!("agent=boxed cwd={workspace}"));
    let screen = mosh.wait_for_text("gateway-dir-");
    assert!(screen.contains("gateway-dir-hidden"), "{screen}");
    drop(mosh);
    let exec = events_of(&gw, "boxed", "exec")
        .pop()
        .expect("an exec event");
    eprintln!("mosh's command, as recorded: {}", exec["detail"]);
    assert!(
        exec["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("mosh-server 'new' ") && d.contains("'--' 'sh' '-c'")),
        "{exec}"
    );
    assert!(events_of(&gw, "boxed", "attach").is_empty());
}

#[test]
fn mosh_to_a_stopped_agent_or_one_on_a_namespace_host_says_why_it_cannot() {
    let gw = TestGateway::start();
    let _h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far", "--host", "h1"]);
    let far = MoshTerminal::open(&gw, "far@gw", "");
    let screen = far.wait_for_text("mosh-exit");
    assert!(
        screen.contains("mosh cannot reach agent 'far': it runs on host 'h1'"),
        "{screen}"
    );
    // A command through mosh is refused the same way: its mosh-server would be there too.
    let far_command = MoshTerminal::open(&gw, "far@gw", "true");
    let screen = far_command.wait_for_text("mosh-exit");
    assert!(
        screen.contains("mosh cannot reach agent 'far': it runs on host 'h1'"),
        "{screen}"
    );
    gw.ok(&["create", "idle", "--", "sleep", "600"]);
    gw.ok(&["stop", "idle"]);
    let stopped = MoshTerminal::open(&gw, "idle@gw", "");
    let screen = stopped.wait_for_text("mosh-exit");
    assert!(
        screen.contains("agent 'idle' is stopped; start it first"),
        "{screen}"
    );
}

#[test]
fn mosh_to_a_host_without_mosh_server_says_what_mosh_needs() {
    // The gateway's PATH (and so the local host's) holds every program of this machine's but
    // mosh-server.
    let bin = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir("/usr/bin").expect("/usr/bin").flatten() {
        if entry.file_name() != "mosh-server" {
            std::os::unix::fs::symlink(entry.path(), bin.path().join(entry.file_name()))
                .expect("symlink");
        }
    }
    let gw = TestGateway::start_with(e2e::Options {
        env: vec![("PATH".into(), format!("{}:/usr/sbin", bin.path().display()))],
        ..e2e::Options::default()
    });
    gw.ok(&["create", "box", "--sandbox", "none", "--", "sleep", "600"]);
    let mosh = MoshTerminal::open(&gw, "box@gw", "");
    let screen = mosh.wait_for_text("mosh-exit");
    assert!(
        screen.contains(
            "mosh-server is not installed on this host, and mosh needs it on the agent's host"
        ),
        "{screen}"
    );
}

/// Regression: an attach on a namespace host whose client vanished (its ssh hung up) stayed
/// `started` in the audit trail for ever, its session never ended, though the host's tmux
/// client had gone.
#[test]
fn an_attach_on_a_namespace_host_whose_client_vanished_is_recorded_as_the_client_leaving() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far", "--host", "h1"]);
    let viewer = e2e::Viewer::open(&gw, "far@gw", &[], 100, 30);
    viewer.wait_for_shell_in_dir(&h1.agents_home.join("workspaces").join("far"));
    // The viewer's terminal goes, and ssh with it, without a detach.
    drop(viewer);
    let attach = e2e::wait_for("the attach to be recorded as ended", || {
        let events: serde_json::Value =
            serde_json::from_str(&gw.ok(&["events", "--agent", "far", "--json"])).expect("json");
        events
            .as_array()
            .expect("array")
            .iter()
            .find(|e| e["kind"] == "attach" && e["result"] != "started")
            .cloned()
    });
    assert_eq!(
        (&attach["result"], &attach["message"]),
        (
            &serde_json::Value::from("exit 255"),
            &serde_json::Value::from("the client went away")
        )
    );
    assert_eq!(stdout(&h1.tmux(&["list-clients"])).trim(), "");
}

/// `git init --bare DIR` on this machine.
fn bare_repository(dir: &Path) {
    let out = Command::new("git")
        .args(["init", "-q", "--bare"])
        .arg(dir)
        .output()
        .expect("run git");
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `git ls-remote URL` through the test gateway's ssh config: git's exit status and stderr.
fn ls_remote(gw: &TestGateway, url: &str) -> Output {
    Command::new("git")
        .env(
            "GIT_SSH_COMMAND",
            format!("ssh -F {}", gw.ssh_config_path().display()),
        )
        .args(["ls-remote", url])
        .stdin(Stdio::null())
        .output()
        .expect("run git")
}

#[test]
fn git_names_the_workspace_in_the_scp_like_form_and_the_home_in_an_ssh_url_with_tilde() {
    let gw = TestGateway::start();
    agent(&gw, "box", "local");
    let workspace = gw.workspace("box").display().to_string();
    bare_repository(&Path::new(&workspace).join("in-workspace.git"));
    // `~` is the agent's home: its private home in its sandbox, the host user's without one.
    let made = gw.ssh_run(&["box@gw", "git init -q --bare ~/in-home.git"]);
    assert!(made.status.success(), "{}", stderr(&made));
    for (url, found) in [
        ("box@gw:in-workspace.git".to_owned(), true),
        ("box@gw:in-home.git".to_owned(), false),
        ("ssh://box@gw/~/in-home.git".to_owned(), true),
        ("ssh://box@gw/~/in-workspace.git".to_owned(), false),
        (format!("ssh://box@gw{workspace}/in-workspace.git"), true),
    ] {
        let out = ls_remote(&gw, &url);
        assert_eq!(out.status.success(), found, "{url}: {}", stderr(&out));
    }
}
