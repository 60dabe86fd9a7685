//! Public keys only: an unregistered key, `none` and password authentication are refused.

use e2e::{TestGateway, keygen, stderr, stdout};

#[test]
fn an_unregistered_key_is_refused() {
    let gw = TestGateway::start();
    let stranger = keygen(gw.dir.path(), "stranger", "stranger@e2e");
    let out = gw
        .ssh_with_key(&stranger)
        .args(["gw", "list"])
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Permission denied (publickey)"),
        "{}",
        stderr(&out)
    );
    // The stranger's key also cannot reach an agent.
    gw.ok(&["create", "guarded", "--", "sleep", "600"]);
    let out = gw
        .ssh_with_key(&stranger)
        .args(["guarded@gw", "true"])
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255));
}

#[test]
fn only_publickey_is_offered_and_none_and_password_are_refused() {
    let gw = TestGateway::start();
    // The methods the server lists after the client's `none` probe.
    let out = gw.ssh_run(&["-v", "-o", "PreferredAuthentications=none", "gw", "list"]);
    assert_eq!(out.status.code(), Some(255));
    let log = stderr(&out);
    assert!(
        log.contains("Authentications that can continue: publickey\n")
            || log.contains("Authentications that can continue: publickey\r\n"),
        "{log}"
    );
    assert!(
        !log.contains("password,") && !log.contains(",password"),
        "{log}"
    );

    // A client that insists on a password gets nowhere, even with one to give.
    let askpass = gw.dir.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho hunter2\n").expect("askpass");
    e2e_chmod(&askpass);
    let out = gw
        .ssh_command()
        .args([
            "-o",
            "BatchMode=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "NumberOfPasswordPrompts=1",
        ])
        .args(["gw", "list"])
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .output()
        .expect("ssh");
    assert_eq!(out.status.code(), Some(255), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_first_start_registers_the_running_users_keys_as_admin() {
    let gw = TestGateway::start();
    assert!(gw.log().contains("registered 1 key(s)"), "{}", gw.log());
    let who = gw.ok(&["whoami", "--json"]);
    let who: serde_json::Value = serde_json::from_str(&who).expect("json");
    assert_eq!(who["role"], "admin");
    assert_eq!(who["operator"], "tester");
}

fn e2e_chmod(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
