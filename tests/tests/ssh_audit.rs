//! The algorithms the gateway offers: `ssh-audit` (from PyPI) finds no failure, and no warning
//! but the missing post-quantum protection of the classic key exchanges kept for older
//! clients; the OpenSSH client negotiates ML-KEM and AES-GCM by default, an older client's
//! Curve25519 still works, and what the gateway does not offer is refused.
//!
//! `scripts/test.sh` installs ssh-audit into `target/tools/python`; one on PATH works too.

use std::path::PathBuf;
use std::process::{Command, Output};

use e2e::{Options, TestGateway, stderr, stdout};
use serde_json::Value;

/// The one warning allowed, on the classic key exchanges only.
const NOT_POST_QUANTUM: &str = "does not provide protection against post-quantum attacks";

/// `ssh-audit ARGS`: the copy `scripts/test.sh` installed, else the one on PATH.
fn ssh_audit(args: &[&str]) -> Output {
    let tools = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/python");
    let mut cmd = if tools.join("ssh_audit").is_dir() {
        let mut cmd = Command::new("python3");
        cmd.env("PYTHONPATH", &tools).args(["-m", "ssh_audit"]);
        cmd
    } else {
        Command::new("ssh-audit")
    };
    cmd.args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run ssh-audit ({e}): install it with \
             python3 -m pip install --target target/tools/python ssh-audit"
        )
    })
}

/// A gateway that does not penalise the auditor's many short connections.
fn gateway() -> TestGateway {
    TestGateway::start_with(Options {
        extra_config: "[ssh.penalties]\nenabled = false\n".into(),
        ..Options::default()
    })
}

/// The algorithm names of one section of ssh-audit's JSON report.
fn names(report: &Value, section: &str) -> Vec<String> {
    report[section]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} in {report}"))
        .iter()
        .map(|a| a["algorithm"].as_str().expect("algorithm").to_owned())
        .collect()
}

#[test]
fn ssh_audit_finds_no_failure_and_only_the_post_quantum_warning_of_the_classic_exchanges() {
    let gw = gateway();
    let out = ssh_audit(&["-j", "-p", &gw.port.to_string(), "127.0.0.1"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ssh-audit's report is not JSON ({e}): {} {}",
            stdout(&out),
            stderr(&out)
        )
    });
    // ssh-audit exits 0 when all is good, 2 with warnings, 3 with a failure.
    assert_eq!(out.status.code(), Some(2), "{report:#}");

    let mut warnings = Vec::new();
    for section in ["kex", "key", "enc", "mac"] {
        for algorithm in report[section].as_array().expect("section") {
            let name = algorithm["algorithm"].as_str().expect("name");
            let notes = &algorithm["notes"];
            assert!(
                notes.get("fail").is_none(),
                "ssh-audit fails {section} {name}: {notes}"
            );
            for warning in notes["warn"].as_array().into_iter().flatten() {
                warnings.push((section, name.to_owned(), warning.clone()));
            }
        }
    }
    for (section, name, warning) in &warnings {
        assert!(
            *section == "kex" && warning == NOT_POST_QUANTUM,
            "ssh-audit warns about {section} {name}: {warning}"
        );
    }
    assert!(
        report["cves"].as_array().is_some_and(Vec::is_empty),
        "{}",
        report["cves"]
    );
    assert!(
        report["recommendations"]
            .as_object()
            .is_none_or(|r| !r.contains_key("critical")),
        "{}",
        report["recommendations"]
    );

    let kex = names(&report, "kex");
    assert_eq!(kex[0], "mlkem768x25519-sha256", "{kex:?}");
    assert!(
        kex.iter().any(|k| k == "kex-strict-s-v00@openssh.com"),
        "{kex:?}"
    );
    assert!(
        kex.iter().all(|k| !k.starts_with("diffie-hellman")),
        "{kex:?}"
    );
    assert_eq!(names(&report, "key"), ["ssh-ed25519"]);
    let enc = names(&report, "enc");
    assert!(
        enc[0].starts_with("aes") && enc[0].contains("gcm"),
        "{enc:?}"
    );
    let mac = names(&report, "mac");
    assert!(
        mac.iter().all(|m| m.ends_with("-etm@openssh.com")),
        "{mac:?}"
    );
    assert_eq!(report["compression"], serde_json::json!(["none"]));
}

/// `ssh -vvv` output for a login with extra options, and whether it logged in.
fn login(gw: &TestGateway, options: &[&str]) -> (bool, String) {
    let mut cmd = gw.ssh_command();
    cmd.arg("-vvv");
    for option in options {
        cmd.args(["-o", option]);
    }
    let out = cmd.args(["gw", "whoami"]).output().expect("ssh");
    (out.status.success(), stderr(&out))
}

#[test]
fn clients_negotiate_the_strongest_common_algorithms_and_nothing_weaker_is_accepted() {
    let gw = gateway();

    // This machine's OpenSSH client, with its defaults: ML-KEM if it has it (OpenSSH 9.9 and
    // later), else Curve25519; strict key exchange (Terrapin) either way.
    let client_kex = Command::new("ssh")
        .args(["-Q", "kex"])
        .output()
        .expect("ssh -Q");
    let expected = if stdout(&client_kex)
        .lines()
        .any(|k| k == "mlkem768x25519-sha256")
    {
        "mlkem768x25519-sha256"
    } else {
        "curve25519-sha256"
    };
    let (ok, log) = login(&gw, &[]);
    assert!(ok, "{log}");
    let negotiated = format!("kex: algorithm: {expected}");
    assert!(
        log.lines().any(|l| l.trim_end().ends_with(&negotiated)),
        "{log}"
    );
    assert!(log.contains("compression: none"), "{log}");
    assert!(log.contains("will use strict KEX ordering"), "{log}");

    // A client without ML-KEM (OpenSSH before 9.9, such as Debian 12's) and one asking for
    // AES-GCM or compression.
    for options in [
        &["KexAlgorithms=curve25519-sha256"][..],
        &["KexAlgorithms=curve25519-sha256@libssh.org"],
        &["Ciphers=aes128-gcm@openssh.com"],
        &["Ciphers=aes256-gcm@openssh.com"],
        &["Ciphers=chacha20-poly1305@openssh.com"],
        &["Compression=yes"],
    ] {
        let (ok, log) = login(&gw, options);
        assert!(ok, "{options:?}: {log}");
    }
    let (_, log) = login(&gw, &["Ciphers=aes128-gcm@openssh.com"]);
    assert!(log.contains("cipher: aes128-gcm@openssh.com"), "{log}");

    // What the gateway does not offer.
    for (options, says) in [
        (
            &["KexAlgorithms=diffie-hellman-group14-sha256"][..],
            "no matching key exchange method",
        ),
        (
            &["KexAlgorithms=ecdh-sha2-nistp256"],
            "no matching key exchange method",
        ),
        (&["Ciphers=aes128-ctr"], "no matching cipher"),
        (&["Ciphers=aes256-cbc"], "no matching cipher"),
        (
            &["Ciphers=aes128-ctr", "MACs=hmac-sha2-256"],
            "no matching cipher",
        ),
        (
            &["HostKeyAlgorithms=rsa-sha2-512"],
            "no matching host key type",
        ),
    ] {
        let (ok, log) = login(&gw, options);
        assert!(!ok, "{options:?} logged in: {log}");
        assert!(
            log.contains(says),
            "{options:?}: expected {says:?} in {log}"
        );
    }
}
