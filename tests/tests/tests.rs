//! The end-to-end tests: one test binary, a module per topic (the files beside this one).
//!
//! One binary links the harness (`e2e`, `tests/src/`) once; a binary per topic linked it once
//! per topic, so a change to the harness relinked every one of them. Cargo does not discover the
//! files here on its own (`autotests = false` in `tests/Cargo.toml`): a topic is a module only
//! once it is declared below, and `every_file_here_is_a_declared_topic` fails for one that is
//! not, instead of its tests silently never running.
//!
//! A test's full name is `TOPIC::FUNCTION`; one topic runs with
//! `cargo test -p e2e --test e2e lifecycle::`, one test with its full name and `--exact`.
//!
//! All topics share one process. Whatever a test makes is its own (a temporary directory, a
//! tmux socket, a port 0 listener, a network namespace claimed through the kernel): nothing in
//! a test may rely on being alone in its process.

mod access;
mod agent_clis;
mod agent_forward;
mod attach;
mod audit;
mod auth;
mod bad_input;
mod channel_requests;
mod clients;
mod endings;
mod files;
mod forwarding;
mod habits;
mod hooks;
mod hostile;
mod hosts;
mod inside;
mod lifecycle;
mod limits;
mod logs;
mod many;
mod netns_smoke;
mod notify;
mod operations;
mod placement;
mod preauth;
mod remote_forward;
mod sandbox;
mod secrets;
mod snapshots;
mod ssh_audit;
mod status;
mod store_faults;
mod survival;
mod tailscale;
mod top;
mod usage;

/// The modules this file declares, read from its own text (`mod NAME;` lines).
fn declared_topics(root_source: &str) -> Vec<String> {
    root_source
        .lines()
        .filter_map(|line| line.strip_prefix("mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// The topic files in `dir`: every `.rs` file but this one, by module name.
fn topic_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            (path.extension()? == "rs").then_some(())?;
            let stem = path.file_stem()?.to_str()?.to_owned();
            (stem != "tests").then_some(stem)
        })
        .collect();
    names.sort();
    names
}

/// A file added here without a `mod` line would compile into nothing and its tests would never
/// run; a `mod` line without its file fails the build on its own.
#[test]
fn every_file_here_is_a_declared_topic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let declared = declared_topics(include_str!("tests.rs"));
    let undeclared: Vec<String> = topic_files(&dir)
        .into_iter()
        .filter(|file| !declared.contains(file))
        .collect();
    assert!(
        undeclared.is_empty(),
        "{} holds topics that tests/tests/tests.rs does not declare (add `mod NAME;`): {undeclared:?}",
        dir.display()
    );
}
