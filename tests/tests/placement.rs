//! Placement: agents created without `--host` go to the reachable host with the fewest
//! agents running or being created, so concurrent creates spread as they would one at a
//! time. Two of the three hosts are network namespaces running a real sshd: this needs root.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};

use e2e::netns::add_host;
use e2e::{Options, TestGateway, stderr, stdout};

#[test]
fn concurrent_creates_without_a_host_spread_as_they_would_one_at_a_time() {
    // Twenty logins at once from one address: more than the default per-source limit on
    // logins under way.
    let gw = TestGateway::start_with(Options {
        extra_config: "[ssh]\nper_source_max_startups = 40\n".into(),
        ..Options::default()
    });
    let _h1 = add_host(&gw, "h1");
    let _h2 = add_host(&gw, "h2");

    // Twenty creates at once, each on its own ssh connection.
    let creates: Vec<(String, Child)> = (0..20)
        .map(|i| {
            let name = format!("spread-{i}");
            let child = gw
                .ssh_command()
                .args(["gw", "create", &name, "--", "sleep", "600"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run ssh");
            (name, child)
        })
        .collect();
    for (name, child) in creates {
        let out = child.wait_with_output().expect("wait for ssh");
        assert!(
            out.status.success(),
            "create {name}: {}\n{}{}",
            out.status,
            stdout(&out),
            stderr(&out)
        );
    }

    let mut per_host: BTreeMap<String, usize> = ["local", "h1", "h2"]
        .iter()
        .map(|h| ((*h).to_owned(), 0))
        .collect();
    for agent in gw.list() {
        *per_host
            .entry(agent["host"].as_str().expect("a host").to_owned())
            .or_default() += 1;
    }
    assert_eq!(per_host.values().sum::<usize>(), 20, "{per_host:?}");
    let most = per_host.values().max().copied().unwrap_or_default();
    let fewest = per_host.values().min().copied().unwrap_or_default();
    assert!(
        most - fewest <= 1,
        "20 creates over three hosts spread within one of even: {per_host:?}\n{}",
        gw.log()
    );
}
