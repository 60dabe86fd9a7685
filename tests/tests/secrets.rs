//! Secrets: set over ssh (value on stdin), named by templates, handed only to the agent's
//! environment at each start, and never seen anywhere else: not in any command's output, the
//! audit trail, the gateway's log, the host's agent files, or any process's command line.

use std::path::{Path, PathBuf};

use e2e::{Options, TestGateway, keygen, stderr, stdout, wait_for};

const VALUE: &str = "sk-test-9f8e7d6c5b4a-Secret";
const ROTATED: &str = "sk-test-rotated-1a2b3c-Secret";

fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[templates.with-secret]\n\
                       command = \"printf %s \\\"$API_TOKEN\\\" > token.txt; exec sleep 600\"\n\
                       secrets = [\"API_TOKEN\"]\n"
            .into(),
        ..Options::default()
    })
}

/// Every file under `dir`, recursively, except `skip`.
fn files_under(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            out.extend(files_under(&path, skip));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

fn assert_nowhere(gw: &TestGateway, workspace: &Path, value: &str) {
    // Whatever the gateway prints.
    for args in [
        vec!["info", "svc"],
        vec!["info", "svc", "--json"],
        vec!["list"],
        vec!["list", "--json"],
        vec!["events", "--json", "-n", "1000"],
        vec!["secret", "list"],
        vec!["secret", "list", "--json"],
        vec!["ssh-config"],
    ] {
        let out = gw.ssh(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(
            !stdout(&out).contains(value) && !stderr(&out).contains(value),
            "ssh gw {args:?} shows the secret"
        );
    }
    assert!(
        !gw.log().contains(value),
        "the gateway's log holds the secret"
    );
    // The host's files of the agent (meta.json, output.log, launch files), all but the
    // workspace file the agent itself wrote.
    let token = workspace.join("token.txt");
    for file in files_under(&gw.agents_home, &token) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(value),
            "{} holds the secret",
            file.display()
        );
    }
    // No process has it on its command line.
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(value),
                "process {} has the secret on its command line",
                entry.path().display()
            );
        }
    }
}

#[test]
fn a_secret_reaches_only_the_agents_environment_and_follows_a_rotation() {
    let gw = gateway();
    let out = gw.ssh_with_stdin(
        &["secret", "set", "API_TOKEN"],
        format!("{VALUE}\n").as_bytes(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("stored secret 'API_TOKEN'"));
    let listed = gw.ok(&["secret", "list"]);
    assert!(
        listed.contains("API_TOKEN") && listed.contains("tester"),
        "{listed}"
    );

    gw.ok(&["create", "svc", "--template", "with-secret"]);
    let info = gw.info("svc");
    assert_eq!(info["secrets"], serde_json::json!(["API_TOKEN"]));
    let workspace = PathBuf::from(info["workspace"].as_str().expect("workspace"));
    let token = workspace.join("token.txt");
    let got = wait_for("the agent to write its token", || {
        std::fs::read_to_string(&token)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(
        got, VALUE,
        "the agent got the secret's value, newline dropped"
    );
    assert_nowhere(&gw, &workspace, VALUE);

    // A new value reaches the agent at its next start.
    let out = gw.ssh_with_stdin(&["secret", "set", "API_TOKEN"], ROTATED.as_bytes());
    assert!(
        stdout(&out).contains("replaced secret 'API_TOKEN'"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&token).expect("rm token");
    gw.ok(&["restart", "svc"]);
    let got = wait_for("the restarted agent to write its token", || {
        std::fs::read_to_string(&token)
            .ok()
            .filter(|t| !t.is_empty())
    });
    assert_eq!(got, ROTATED);
    assert_nowhere(&gw, &workspace, ROTATED);
    assert_nowhere(&gw, &workspace, VALUE);

    // The database that holds it can be read by the gateway's user alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(gw.data_dir.join("agentgate.db"))
        .expect("db")
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "agentgate.db is mode {mode:o}");

    // Removed: the agent cannot start again without it, and says which secret is missing.
    gw.ok(&["secret", "remove", "API_TOKEN"]);
    gw.ok(&["stop", "svc"]);
    let out = gw.ssh(&["start", "svc"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("secret 'API_TOKEN' is not set")
            && stderr(&out).contains("ssh gw secret set API_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.status("svc"), "stopped");
}

#[test]
fn a_missing_secret_fails_create_and_bad_secret_input_is_refused() {
    let gw = gateway();
    let out = gw.ssh(&["create", "svc", "--template", "with-secret"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("secret 'API_TOKEN' is not set"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gw.ok(&["list", "-q"]), "");
    assert!(!gw.agents_home.join("workspaces/svc").exists());

    for (args, input, says) in [
        (
            vec!["secret", "set", "bad-name"],
            &b"x"[..],
            "invalid secret name",
        ),
        (
            vec!["secret", "set", "EMPTY"],
            &b"\n"[..],
            "no value on stdin",
        ),
        (vec!["secret", "set", "BINARY"], &b"a\0b"[..], "not text"),
        (
            vec!["secret", "remove", "NOPE"],
            &b""[..],
            "no secret named 'NOPE'",
        ),
    ] {
        let out = gw.ssh_with_stdin(&args, input);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    let too_big = vec![b'a'; 64 * 1024 + 1];
    let out = gw.ssh_with_stdin(&["secret", "set", "HUGE"], &too_big);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(gw.ok(&["secret", "list", "--json"]).trim(), "[]");

    // Operators see the names, only admins change them.
    let bob = keygen(gw.dir.path(), "bob", "bob@laptop");
    let public = std::fs::read(bob.with_extension("pub")).expect("pub");
    assert!(gw.ssh_with_stdin(&["key", "add"], &public).status.success());
    let mut cmd = gw.ssh_with_key(&bob);
    cmd.args(["gw", "secret", "set", "API_TOKEN"]);
    let out = e2e::run_with_stdin(cmd, VALUE.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("only admins can set secrets"),
        "{}",
        stderr(&out)
    );
    let out = gw
        .ssh_with_key(&bob)
        .args(["gw", "secret", "list"])
        .output()
        .expect("ssh");
    assert!(out.status.success(), "{}", stderr(&out));
}
