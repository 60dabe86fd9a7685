//! Hostile input, on every route: names and arguments with shell metacharacters, newlines,
//! `..`, leading `-`, very long strings, invalid UTF-8, huge and binary stdin, unknown flags,
//! and environment values with newlines. Each gets a clear error (`error:` on stderr, a
//! non-zero status, nothing changed) or is taken literally; the gateway stays up; and the
//! canary file every payload tries to create never appears.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e::{TestGateway, run_with_stdin, shell_quote, stderr, stdout};

/// Every way a shell could be made to run `touch CANARY`, as one word each.
fn payloads(canary: &Path) -> Vec<String> {
    let c = canary.display();
    vec![
        format!("a;touch {c}"),
        format!("a&&touch {c}"),
        format!("a|touch {c}"),
        format!("$(touch {c})"),
        format!("`touch {c}`"),
        format!("a'$(touch {c})'"),
        format!("a\"$(touch {c})\""),
        format!("x';touch {c};'"),
        format!("a\ntouch {c}"),
        format!("a${{IFS}}$(touch${{IFS}}{c})"),
        format!("-oProxyCommand=touch {c}"),
        format!("../../../{c}"),
    ]
}

struct Hostile {
    gw: TestGateway,
    canary: PathBuf,
}

/// Whether `path` is inside an agent's private `/tmp` (`agents/NAME/tmp/...`) under `home`.
fn is_private_tmp(home: &std::path::Path, path: &std::path::Path) -> bool {
    path.strip_prefix(home.join("agents")).is_ok_and(|rest| {
        let mut parts = rest.components();
        parts.next().is_some()
            && parts.next().is_some_and(|c| c.as_os_str() == "tmp")
            && parts.next().is_some()
    })
}

impl Hostile {
    fn new() -> Hostile {
        let gw = TestGateway::start();
        let canary = gw.dir.path().join("canary");
        Hostile { gw, canary }
    }

    /// The agents and their files, to compare before and after a refusal.
    fn snapshot(&self) -> (String, Vec<String>) {
        let mut files: Vec<String> = walk(&self.gw.agents_home)
            .into_iter()
            // Written as the agent prints, and (the hook watch's socket) once the gateway's
            // watch of the host starts, whatever the commands do.
            .filter(|p| {
                !p.ends_with("output.log")
                    && !p.ends_with("output.log.times")
                    && !p.ends_with("hooks.sock")
            })
            // A sandboxed agent's private /tmp: bwrap makes mount points in it as the agent's
            // sandbox starts, which may be after `create` has answered.
            .filter(|p| !is_private_tmp(&self.gw.agents_home, p))
            .map(|p| p.display().to_string())
            .collect();
        files.sort();
        (self.gw.ok(&["list", "-q"]), files)
    }

    /// `ssh gw LINE`: refused with `status` and `says` on stderr (callers compare snapshots).
    fn refused(&self, line: &str, status: i32, says: &str) {
        let out = self.gw.ssh(&[line]);
        self.check_refused(&out, line, status, says);
    }

    fn check_refused(&self, out: &Output, what: &str, status: i32, says: &str) {
        assert_eq!(
            out.status.code(),
            Some(status),
            "{what:?}: stdout {:?} stderr {:?}",
            stdout(out),
            stderr(out)
        );
        assert!(
            stderr(out).contains("error:") && stderr(out).contains(says),
            "{what:?}: expected an error saying {says:?}, got {:?}",
            stderr(out)
        );
        self.still_fine();
    }

    /// The gateway is up and serving, and no payload ran.
    fn still_fine(&self) {
        assert!(
            !self.canary.exists(),
            "the canary exists: user text reached a shell"
        );
        self.gw.ok(&["list"]);
    }
}

/// Every file and directory below `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn hostile_names_are_refused_by_every_command() {
    let h = Hostile::new();
    h.gw.ok(&["create", "real", "--", "sleep", "600"]);
    let before = h.snapshot();
    for payload in payloads(&h.canary) {
        let p = shell_quote(&payload);
        if payload.starts_with('-') {
            // A word that starts with `-` is an option, not a name.
            for command in ["create", "info", "logs", "destroy", "send"] {
                h.refused(&format!("{command} {p}"), 2, "unexpected argument");
            }
            continue;
        }
        h.refused(&format!("create {p}"), 2, "invalid agent name");
        h.refused(
            &format!("create ok-name --template {p}"),
            2,
            "no template named",
        );
        h.refused(&format!("clone real {p}"), 2, "invalid agent name");
        for command in [
            "info", "logs", "start", "stop", "restart", "destroy", "wait",
        ] {
            h.refused(&format!("{command} {p}"), 1, "no agent named");
        }
        h.refused(&format!("send {p} hello"), 1, "no agent named");
        h.refused(&format!("snapshot {p}"), 1, "no agent named");
        h.refused(&format!("diff {p}"), 1, "no agent named");
        h.refused(&format!("snapshot remove {p}"), 1, "no snapshot");
        h.refused(
            &format!("create ok-name --from-snapshot {p}"),
            1,
            "no snapshot",
        );
        h.refused(&format!("share {p} tester"), 1, "no agent named");
        h.refused(&format!("share real {p}"), 1, "no operator named");
        h.refused(&format!("host add {p} 127.0.0.1"), 2, "invalid host name");
        h.refused(&format!("secret set {p}"), 2, "invalid secret name");
        h.refused(&format!("host info {p}"), 1, "no host named");
        // The refusals are in the audit trail, under the name as it was sent: the filter
        // matches it literally.
        let out = h.gw.ssh(&[&format!("events --agent {p} --json -n 1000")]);
        assert!(out.status.success(), "{}", stderr(&out));
        let events: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
        let events = events.as_array().expect("array");
        assert!(!events.is_empty(), "events --agent {payload:?}");
        for event in events {
            assert_eq!(event["agent"], payload.as_str(), "{event}");
            assert_ne!(event["result"], "ok", "{event}");
        }
    }
    h.refused("create -- -rf", 2, "<NAME>");
    h.refused("info --help=x", 2, "unexpected value");
    h.refused(
        "create x --env 'BAD;KEY=1'",
        2,
        "not a valid environment variable name",
    );
    assert_eq!(h.snapshot(), before, "a refused command changed something");
    h.still_fine();
}

#[test]
fn hostile_user_names_and_routes_run_nothing() {
    let h = Hostile::new();
    h.gw.ok(&["create", "real", "--", "sleep", "600"]);
    for payload in payloads(&h.canary) {
        // OpenSSH clients may refuse such a user name themselves; either way nothing runs and
        // the gateway answers as for anyone it does not know as an agent.
        let target = format!("{payload}@gw");
        let out = h.gw.ssh_run(&["-o", "User=x", &target, "id"]);
        assert_ne!(out.status.code(), Some(0), "{target:?}: {}", stdout(&out));
        let out = h.gw.ssh_run(&["-l", &payload, "gw", "id"]);
        assert_ne!(
            out.status.code(),
            Some(0),
            "-l {payload:?}: {}",
            stdout(&out)
        );
        h.still_fine();
    }
}

/// Runs `sh -c 'printf %s "$VAR" > FILE'` as an agent's command and returns what it wrote.
fn value_seen_by_agent(h: &Hostile, name: &str, env: &str) -> String {
    let line = format!(
        "create {name} --env {} -- sh -c {}",
        shell_quote(env),
        shell_quote("printf %s \"$HOSTILE\" > seen.txt; sleep 600"),
    );
    let out = h.gw.ssh(&[&line]);
    assert!(out.status.success(), "{line}: {}", stderr(&out));
    let seen = h.gw.agents_home.join(format!("workspaces/{name}/seen.txt"));
    e2e::wait_for("the agent to write what it saw", || {
        std::fs::read_to_string(&seen)
            .ok()
            .filter(|s| !s.is_empty())
    })
}

#[test]
fn hostile_values_reach_agents_literally() {
    let h = Hostile::new();
    for (i, payload) in payloads(&h.canary).iter().enumerate() {
        let value = format!("{payload}\nsecond line; $(touch {})", h.canary.display());
        let seen = value_seen_by_agent(&h, &format!("v{i}"), &format!("HOSTILE={value}"));
        assert_eq!(seen, value, "--env HOSTILE={value:?}");
        h.still_fine();
    }

    // A command sent into an agent reaches its shell as sent: one layer of shell, the
    // host user's, as with sshd; the gateway adds none.
    h.gw.ok(&["create", "box", "--", "sleep", "600"]);
    let text = format!("a;b $(touch {}) `x` \"q\" \\", h.canary.display());
    let out =
        h.gw.ssh_run(&["box@gw", &format!("printf %s {}", shell_quote(&text))]);
    assert_eq!(stdout(&out), text, "{}", stderr(&out));
    // Text typed into an agent is typed as it is.
    let out =
        h.gw.ssh_with_stdin(&["send", "box", "--no-enter", "-"], text.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    h.still_fine();
}

#[test]
fn hostile_git_sources_are_refused_or_taken_literally() {
    let h = Hostile::new();
    h.gw.ok(&["create", "real", "--", "sleep", "600"]);
    let c = h.canary.display();
    for url in [
        format!("https://example.invalid/$(touch {c})"),
        format!("--upload-pack=touch {c}"),
        "-uhelp".to_owned(),
        format!("ext::sh -c touch% {c}"),
        format!("file:///nonexistent;touch {c}"),
    ] {
        let line = format!("create g --git {}", shell_quote(&url));
        let before = h.snapshot();
        let out = h.gw.ssh(&[&line]);
        assert_ne!(out.status.code(), Some(0), "{line}: {}", stdout(&out));
        assert!(stderr(&out).contains("error:"), "{line}: {}", stderr(&out));
        assert_eq!(h.snapshot(), before, "{line} left something behind");
        h.still_fine();
    }
}

#[test]
fn long_lines_invalid_utf8_binary_and_huge_stdin_get_clear_errors() {
    let h = Hostile::new();
    h.gw.ok(&["create", "box", "--", "sleep", "600"]);
    let before = h.snapshot();

    // A 100 KiB name, and a 1 MiB command line (ssh joins its arguments).
    let long = "a".repeat(100 * 1024);
    h.refused(&format!("create {long}"), 2, "limit is 63");
    h.refused(&format!("info {long}"), 1, "no agent named");
    let words: Vec<String> = (0..10).map(|_| "b".repeat(100 * 1024)).collect();
    let mut args = vec!["info".to_owned()];
    args.extend(words);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = h.gw.ssh(&args);
    assert_ne!(out.status.code(), Some(0));
    h.still_fine();

    // Bytes that are not UTF-8: refused, not changed into something else.
    for target in ["gw", "box@gw"] {
        let mut cmd = h.gw.ssh_command();
        cmd.arg(target)
            .arg(std::ffi::OsStr::from_bytes(b"printf '\xff\xfe'"));
        let out = cmd.output().expect("ssh");
        h.check_refused(&out, target, 1, "not valid UTF-8");
        assert!(stdout(&out).is_empty(), "{target}: {:?}", out.stdout);
    }

    // Huge stdin where a command reads it: refused at its limit, quickly, whole.
    let huge = vec![b'x'; 20 * 1024 * 1024];
    for (line, says) in [
        ("secret set BIG", "stdin is larger than 64 KiB"),
        ("key add --name big", "stdin is larger than 16 KiB"),
        ("send box -", "stdin is larger than 1024 KiB"),
    ] {
        let out = h.gw.ssh_with_stdin(&[line], &huge);
        h.check_refused(&out, line, 2, says);
    }
    // Binary stdin: NUL bytes are not text.
    let out = h.gw.ssh_with_stdin(&["secret set NUL"], b"a\0b");
    h.check_refused(&out, "secret set with NUL", 2, "not text");
    let out =
        h.gw.ssh_with_stdin(&["key add --name nul"], b"ssh-ed25519 \0AAAA x@y");
    h.check_refused(&out, "key add with NUL", 2, "error");
    assert_eq!(h.snapshot(), before, "a refused command changed something");
    // Huge stdin to a command inside an agent is the command's: it gets all of it.
    let out = h.gw.ssh_with_stdin_to("box@gw", &["wc -c"], &huge);
    assert_eq!(
        stdout(&out).trim(),
        huge.len().to_string(),
        "{}",
        stderr(&out)
    );
    h.still_fine();
}

#[test]
fn hostile_environment_requests_and_terminal_names_are_taken_literally() {
    let h = Hostile::new();
    h.gw.ok(&["create", "box", "--", "sleep", "600"]);
    let value = format!(
        "$(touch {c})\n`touch {c}`;touch {c}",
        c = h.canary.display()
    );
    // SendEnv of an accepted variable (LC_*), whose value has a newline and metacharacters.
    let mut cmd = h.gw.ssh_command();
    cmd.env("LC_HOSTILE", &value)
        .args(["-o", "SendEnv=LC_HOSTILE", "box@gw"])
        .arg("printf %s \"$LC_HOSTILE\"");
    let out = cmd.output().expect("ssh");
    assert_eq!(stdout(&out), value, "{}", stderr(&out));
    // A variable that is not accepted is ignored, as sshd's AcceptEnv does.
    let mut cmd = h.gw.ssh_command();
    cmd.env("HOSTILE", &value)
        .args(["-o", "SendEnv=HOSTILE", "box@gw"])
        .arg("printf %s \"${HOSTILE-unset}\"");
    let out = cmd.output().expect("ssh");
    assert_eq!(stdout(&out), "unset", "{}", stderr(&out));
    // The terminal's name goes with a pty request.
    let term = format!("xterm;touch {}", h.canary.display());
    let mut cmd = h.gw.ssh_command();
    cmd.env("TERM", &term)
        .args(["-tt", "box@gw"])
        .arg("printf %s \"$TERM\" > term.txt");
    let out = run_with_stdin(cmd, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = std::fs::read_to_string(h.gw.agents_home.join("workspaces/box/term.txt"))
        .expect("term.txt");
    assert_eq!(seen, term);
    // Unknown options of ssh's own are not the gateway's business; unknown flags of ours are
    // refused with the flag named.
    h.refused("list --frobnicate", 2, "--frobnicate");
    h.refused("create box2 --bogus=1", 2, "--bogus");
    h.still_fine();
    // The control route never sees environment requests: they change nothing there.
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg(h.gw.ssh_config_path())
        .env("LC_ALL", format!("$(touch {})", h.canary.display()))
        .args(["-o", "SendEnv=LC_ALL", "gw", "whoami"]);
    let out = cmd.output().expect("ssh");
    assert!(out.status.success(), "{}", stderr(&out));
    h.still_fine();
}

/// What a raw SSH client (not OpenSSH's, which cannot send them) gets for an exec request of
/// `command` as `user`: its stderr and exit status.
fn raw_exec(gw: &TestGateway, user: &str, command: &[u8]) -> (String, Option<u32>) {
    use std::sync::Arc;

    use russh::ChannelMsg;
    use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

    struct AnyHostKey;
    impl russh::client::Handler for AnyHostKey {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let config = Arc::new(russh::client::Config::default());
        let mut session = russh::client::connect(config, ("127.0.0.1", gw.port), AnyHostKey)
            .await
            .expect("connect");
        let key = russh::keys::load_secret_key(&gw.key, None).expect("key");
        let auth = session
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .expect("authenticate");
        assert!(auth.success(), "the operator key was refused");
        let mut channel = session.channel_open_session().await.expect("session");
        channel.exec(true, command.to_vec()).await.expect("exec");
        let (mut err, mut status) = (Vec::new(), None);
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                _ => {}
            }
        }
        (String::from_utf8_lossy(&err).into_owned(), status)
    })
}

#[test]
fn commands_with_a_nul_byte_or_invalid_utf8_are_refused_on_both_routes() {
    let h = Hostile::new();
    h.gw.ok(&["create", "box", "--", "sleep", "600"]);
    let before = h.snapshot();
    let touch = format!("touch {}", h.canary.display());
    for user in ["tester", "box"] {
        let nul = format!("create x -- sh -c '{touch}'\0");
        let (err, status) = raw_exec(&h.gw, user, nul.as_bytes());
        assert_eq!(status, Some(1), "{user}: {err}");
        assert!(
            err.contains("error: the command contains a NUL byte"),
            "{user}: {err}"
        );
        let mut invalid = touch.clone().into_bytes();
        invalid.push(0xff);
        let (err, status) = raw_exec(&h.gw, user, &invalid);
        assert_eq!(status, Some(1), "{user}: {err}");
        assert!(err.contains("not valid UTF-8"), "{user}: {err}");
    }
    assert_eq!(h.snapshot(), before);
    h.still_fine();
}
