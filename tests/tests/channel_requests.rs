//! What a client sends on a session channel cannot stall its connection or a host: any
//! number of `env` requests before a command (kept up to a bound, the rest refused as sshd
//! refuses them), absurd terminal sizes (clamped to 1000x1000 before they reach tmux) and
//! storms of window changes (coalesced: the last size wins). OpenSSH's client cannot send
//! most of these, so a raw russh client does; every wait is bounded and fails on a hang.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use e2e::{TestGateway, stderr, wait_for};
use russh::ChannelMsg;
use russh::client::{Handle, Msg};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

/// How long a step may take before the test calls it a hang. Generous for a loaded debug
/// build; a stalled connection never answers at all.
const HANG: Duration = Duration::from_secs(60);

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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `step`, or the test fails naming `what` once [`HANG`] has passed.
async fn bounded<T>(what: &str, step: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, step).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {HANG:?}: the connection is stuck"),
    }
}

/// A logged-in raw SSH connection as `user`.
async fn connect(gw: &TestGateway, user: &str) -> Handle<AnyHostKey> {
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
    session
}

/// Reads a channel to its end: stdout, stderr and the exit status.
async fn outcome(channel: &mut russh::Channel<Msg>) -> (String, String, Option<u32>) {
    let (mut out, mut err, mut status) = (Vec::new(), Vec::new(), None);
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => err.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
            _ => {}
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
        status,
    )
}

/// Runs `command` on a new channel of `session`: its stdout, stderr and exit status.
async fn exec(session: &Handle<AnyHostKey>, command: &str) -> (String, String, Option<u32>) {
    let mut channel = session
        .channel_open_session()
        .await
        .expect("open a channel");
    channel.exec(true, command).await.expect("exec");
    outcome(&mut channel).await
}

/// 5,000 window changes, every seventh absurd, the others all over the place, then `last`.
async fn storm(writer: &russh::ChannelWriteHalf<Msg>, last: (u32, u32)) {
    for i in 0..5000u32 {
        let (cols, rows) = if i % 7 == 0 {
            (u32::MAX, u32::MAX)
        } else {
            (40 + i % 900, 10 + i % 500)
        };
        writer
            .window_change(cols, rows, 0, 0)
            .await
            .expect("window-change");
    }
    writer
        .window_change(last.0, last.1, 0, 0)
        .await
        .expect("window-change");
}

/// `list` answers, with no host that "did not answer" (a host's tmux is not held up).
fn assert_list_answers_cleanly(gw: &TestGateway) {
    let out = gw.ssh(&["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("did not answer"),
        "list: {}",
        stderr(&out)
    );
}

/// The reply to the last request that asked for one: true for success.
async fn reply(channel: &mut russh::Channel<Msg>) -> bool {
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return true,
            Some(ChannelMsg::Failure) => return false,
            Some(_) => {}
            None => panic!("the channel ended before the reply"),
        }
    }
}

/// 10,000 env requests (as OpenSSH sends them, without asking for replies; accepted names, so
/// they meet the bound), then `command`: it answers, and the connection serves another.
async fn flood_then_run(gw: &TestGateway, user: &str, command: &str) -> (String, String) {
    let session = bounded("login", connect(gw, user)).await;
    let mut channel = session
        .channel_open_session()
        .await
        .expect("open a channel");
    bounded("10,000 env requests", async {
        for i in 0..10_000 {
            channel
                .set_env(false, format!("LC_FLOOD_{i}"), "x".repeat(16))
                .await
                .expect("env request");
        }
    })
    .await;
    channel.exec(true, command).await.expect("exec");
    let (out, err, status) = bounded("the command after the env requests", async {
        outcome(&mut channel).await
    })
    .await;
    assert_eq!(
        status,
        Some(0),
        "{user}: {command}: stdout {out:?} stderr {err:?}"
    );
    let (again, err, status) = bounded("a second command on the connection", async {
        exec(&session, command).await
    })
    .await;
    assert_eq!(status, Some(0), "{user}: second {command}: {err}");
    (out, again)
}

#[test]
fn ten_thousand_env_requests_then_a_command_answer_at_once_on_both_routes() {
    let gw = TestGateway::start();
    gw.ok(&["create", "box", "--", "sleep", "600"]);
    runtime().block_on(async {
        let (out, again) = flood_then_run(&gw, "box", "echo hi").await;
        assert_eq!(out, "hi\n");
        assert_eq!(again, "hi\n");
        let (out, _) = flood_then_run(&gw, "tester", "version").await;
        assert!(out.contains("agentgate"), "{out}");
    });
    gw.ok(&["list"]);
}

#[test]
fn ten_thousand_signals_cannot_stall_a_connection() {
    let gw = TestGateway::start();
    gw.ok(&["create", "box", "--", "sleep", "600"]);
    runtime().block_on(async {
        let session = bounded("login", connect(&gw, "box")).await;
        // Before the command: signals wait at most 8 deep and the rest are dropped.
        let mut early = session
            .channel_open_session()
            .await
            .expect("open a channel");
        bounded("10,000 signals before a command", async {
            for _ in 0..10_000 {
                early.signal(russh::Sig::USR1).await.expect("signal");
            }
        })
        .await;
        early.exec(true, "true").await.expect("exec");
        // The few kept signals may end the command before it runs: it ends either way.
        bounded("the command after the signals", outcome(&mut early)).await;
        // While a command runs (one that ignores them): delivered or dropped, never queued
        // without bound.
        let running = session
            .channel_open_session()
            .await
            .expect("open a channel");
        running
            .exec(true, "trap '' USR1; sleep 1; echo done")
            .await
            .expect("exec");
        bounded("10,000 signals to a running command", async {
            for _ in 0..10_000 {
                running.signal(russh::Sig::USR1).await.expect("signal");
            }
        })
        .await;
        bounded("the connection after the signals", async {
            let (out, err, status) = exec(&session, "echo hi").await;
            assert_eq!((out.as_str(), status), ("hi\n", Some(0)), "{err}");
        })
        .await;
        drop(running);
    });
    gw.ok(&["list"]);
}

#[test]
fn env_requests_past_the_bound_are_refused_and_the_kept_ones_apply() {
    let gw = TestGateway::start();
    gw.ok(&["create", "box", "--", "sleep", "600"]);
    runtime().block_on(async {
        let session = bounded("login", connect(&gw, "box")).await;
        let mut channel = session.channel_open_session().await.expect("open a channel");
        bounded("env requests with replies", async {
            // A name `accept_env` does not allow: refused, as sshd refuses it.
            channel.set_env(true, "HOSTILE", "x").await.expect("env");
            assert!(!reply(&mut channel).await, "HOSTILE was accepted");
            for i in 0..64 {
                channel
                    .set_env(true, format!("LC_V{i}"), format!("v{i}"))
                    .await
                    .expect("env");
                assert!(reply(&mut channel).await, "LC_V{i} was refused");
            }
            // The 65th variable is one too many; a new value of a kept one is not.
            channel.set_env(true, "LC_V64", "v64").await.expect("env");
            assert!(!reply(&mut channel).await, "a 65th variable was kept");
            channel.set_env(true, "LC_V0", "again").await.expect("env");
            assert!(reply(&mut channel).await, "a new value was refused");
            // Past the byte bound (32 KiB in all), refused too.
            channel
                .set_env(true, "LC_V1", "x".repeat(40 * 1024))
                .await
                .expect("env");
            assert!(!reply(&mut channel).await, "a 40 KiB value was kept");
        })
        .await;
        channel
            .exec(true, "printf '%s ' \"$LC_V0\" \"$LC_V1\" \"$LC_V63\" \"${LC_V64-unset}\" \"${HOSTILE-unset}\"")
            .await
            .expect("exec");
        let (out, err, status) =
            bounded("the command", async { outcome(&mut channel).await }).await;
        assert_eq!(status, Some(0), "{err}");
        assert_eq!(out, "again v1 v63 unset unset ");

        // Control commands take no environment: even an accepted name is refused there.
        let session = bounded("login", connect(&gw, "tester")).await;
        let mut channel = session.channel_open_session().await.expect("open a channel");
        bounded("an env request on the control route", async {
            channel.set_env(true, "LANG", "C").await.expect("env");
            assert!(!reply(&mut channel).await, "LANG was kept on the control route");
        })
        .await;
    });
}

/// Opens a terminal of `cols` x `rows` (pixels as absurd as the cells) on `user` and runs
/// `command` (exec) or attaches (`None`).
async fn terminal(
    gw: &TestGateway,
    user: &str,
    cols: u32,
    rows: u32,
    command: Option<&str>,
) -> (Handle<AnyHostKey>, russh::Channel<Msg>) {
    let session = bounded("login", connect(gw, user)).await;
    let mut channel = session
        .channel_open_session()
        .await
        .expect("open a channel");
    channel
        .request_pty(true, "xterm", cols, rows, cols, rows, &[])
        .await
        .expect("pty-req");
    assert!(
        bounded("the pty-req reply", reply(&mut channel)).await,
        "pty-req refused"
    );
    match command {
        Some(command) => channel.exec(true, command).await.expect("exec"),
        None => channel.request_shell(true).await.expect("shell"),
    }
    (session, channel)
}

#[test]
fn an_absurd_terminal_size_is_clamped_on_attach_and_on_exec() {
    let gw = TestGateway::start();
    gw.ok(&["create", "pair"]);
    let rt = runtime();

    // `ssh -t NAME@gw CMD` with 4294967295 x 4294967295: the command's terminal is 1000x1000.
    let (out, err, status) = rt.block_on(async {
        let (_session, mut channel) =
            terminal(&gw, "pair", u32::MAX, u32::MAX, Some("stty size")).await;
        bounded("stty size", outcome(&mut channel)).await
    });
    assert_eq!(status, Some(0), "{err}");
    assert_eq!(out.trim(), "1000 1000");

    // An attach at that size: the agent's window is 1000x1000 (a line of it tmux's status).
    let (session, channel) = rt.block_on(terminal(&gw, "pair", u32::MAX, u32::MAX, None));
    let drain = rt.spawn(async move {
        let mut channel = channel;
        while channel.wait().await.is_some() {}
    });
    wait_for("the pane to take the clamped size", || {
        (gw.pane_size("pair") == (1000, 999)).then_some(())
    });
    // The host's tmux is not kept busy: list answers, with no host left unanswered.
    assert_list_answers_cleanly(&gw);
    rt.block_on(async {
        let _ = session
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    });
    drain.abort();
}

#[test]
fn a_storm_of_window_changes_ends_at_the_last_size() {
    let gw = TestGateway::start();
    gw.ok(&["create", "pair"]);
    let rt = runtime();
    let (session, channel) = rt.block_on(terminal(&gw, "pair", 100, 30, None));
    wait_for("the pane to take the client's size", || {
        (gw.pane_size("pair") == (100, 29)).then_some(())
    });
    let (reader, writer) = channel.split();
    let drain = rt.spawn(async move {
        let mut reader = reader;
        while reader.wait().await.is_some() {}
    });
    // Two storms: one that ends with an absurd size (clamped like any other), one that
    // ends with an ordinary one.
    for (last, pane) in [((u32::MAX, u32::MAX), (1000, 999)), ((90, 25), (90, 24))] {
        rt.block_on(bounded("5,000 window changes", storm(&writer, last)));
        wait_for("the pane to end at the last size sent", || {
            (gw.pane_size("pair") == pane).then_some(())
        });
    }
    assert_list_answers_cleanly(&gw);
    // The connection that sent the storm still serves.
    let (out, err, status) = rt.block_on(bounded("a command after the storm", async {
        exec(&session, "echo still").await
    }));
    assert_eq!((out.as_str(), status), ("still\n", Some(0)), "{err}");
    drain.abort();
}

/// The agent's pane size on a namespace host, as (cols, rows).
fn host_pane_size(host: &e2e::netns::NetnsHost, agent: &str) -> Option<(u16, u16)> {
    let out = host.tmux(&[
        "display-message",
        "-p",
        "-t",
        &format!("={agent}:"),
        "#{pane_width} #{pane_height}",
    ]);
    let text = e2e::stdout(&out);
    let mut it = text.split_whitespace().map(|v| v.parse::<u16>().ok());
    Some((it.next()??, it.next()??))
}

#[test]
fn on_a_remote_host_an_absurd_size_is_clamped_and_a_storm_ends_at_the_last_size() {
    let gw = TestGateway::start();
    let h1 = e2e::netns::add_host(&gw, "h1");
    gw.ok(&["create", "far", "--host", "h1"]);
    let rt = runtime();
    let (session, channel) = rt.block_on(terminal(&gw, "far", u32::MAX, u32::MAX, None));
    let (reader, writer) = channel.split();
    let drain = rt.spawn(async move {
        let mut reader = reader;
        while reader.wait().await.is_some() {}
    });
    wait_for("the remote pane to take the clamped size", || {
        (host_pane_size(&h1, "far") == Some((1000, 999))).then_some(())
    });
    rt.block_on(bounded("5,000 window changes", storm(&writer, (90, 25))));
    wait_for("the remote pane to end at the last size sent", || {
        (host_pane_size(&h1, "far") == Some((90, 24))).then_some(())
    });
    assert_list_answers_cleanly(&gw);
    let (out, err, status) = rt.block_on(bounded("a command after the storm", async {
        exec(&session, "echo still").await
    }));
    assert_eq!((out.as_str(), status), ("still\n", Some(0)), "{err}");
    drain.abort();
}

#[test]
fn session_channels_opened_and_never_started_are_bounded() {
    let gw = TestGateway::start();
    gw.ok(&["create", "box", "--", "sleep", "600"]);
    runtime().block_on(async {
        let session = bounded("login", connect(&gw, "box")).await;
        let mut idle = Vec::new();
        for i in 0..64 {
            let channel = bounded("a channel open", session.channel_open_session())
                .await
                .unwrap_or_else(|e| panic!("channel {i} refused: {e}"));
            idle.push(channel);
        }
        // The 65th waits for none of them to start: it is refused, the connection goes on.
        let refused = bounded("the 65th channel open", session.channel_open_session()).await;
        assert!(refused.is_err(), "a 65th idle channel was opened");
        // Once one of them runs a command (and ends), there is room again.
        let mut first = idle.remove(0);
        first.exec(true, "echo hi").await.expect("exec");
        let (out, err, status) = bounded("the command", outcome(&mut first)).await;
        assert_eq!((out.as_str(), status), ("hi\n", Some(0)), "{err}");
        let (out, err, status) =
            bounded("a command on a new channel", exec(&session, "echo again")).await;
        assert_eq!((out.as_str(), status), ("again\n", Some(0)), "{err}");
    });
}

#[test]
fn openssh_with_hundreds_of_setenv_variables_runs_the_command() {
    let gw = TestGateway::start();
    gw.ok(&["create", "box", "--", "sleep", "600"]);
    // OpenSSH's own client, as an operator's config with many variables would send them. Its
    // keepalives bound the wait: a stuck connection answers none and ssh gives up (255).
    let vars: Vec<String> = (0..300).map(|i| format!("LC_MANY_{i}=v{i}")).collect();
    for target in ["box@gw", "gw"] {
        let command = if target == "gw" {
            "whoami"
        } else {
            "printf '%s %s' \"$LC_MANY_0\" \"${LC_MANY_299-unset}\""
        };
        let out = gw
            .ssh_command()
            .args(["-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3"])
            .arg("-o")
            .arg(format!("SetEnv={}", vars.join(" ")))
            .arg(target)
            .arg(command)
            .output()
            .expect("ssh");
        assert_eq!(out.status.code(), Some(0), "{target}: {}", stderr(&out));
        if target == "box@gw" {
            // The first 64 are kept; the rest are refused, as sshd refuses past its bound.
            assert_eq!(e2e::stdout(&out), "v0 unset");
        }
    }
}
