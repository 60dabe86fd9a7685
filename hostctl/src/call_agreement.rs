//! hostctl's command line and the calls in `hostctl::api` agree: the words of every call (the
//! gateway's [`Call`]s and hostctl's own [`OwnCall`]s) parse into the verb they name, with the
//! same arguments and flags, and a call's body is what that verb reads on stdin. Both sides are
//! kept in step by these tests, not by hand.

use std::collections::{BTreeMap, BTreeSet};

use clap::{CommandFactory, Parser};
use hostctl::api::{
    AgentCli, AgentCommand, Call, CreateInput, CreateRequest, Exchange, Key, OwnCall, Secrets,
    SnapshotRequest, SocketLink, StartInput, TermSize, WorkspaceSource,
};

use super::{Cli, Verb, env_pairs};

fn secrets() -> Secrets {
    Secrets(BTreeMap::from([(
        "API_KEY".to_owned(),
        "s3cret".to_owned(),
    )]))
}

fn create_input() -> CreateInput {
    CreateInput {
        request: CreateRequest {
            name: "fix-ci".into(),
            template: "claude".into(),
            command: AgentCommand::Argv {
                argv: vec!["claude".into(), "--resume".into()],
            },
            restart_command: None,
            workspace: WorkspaceSource::Empty,
            env: BTreeMap::from([("A".to_owned(), "b".to_owned())]),
            tags: BTreeMap::new(),
            prompt: Some("fix it".into()),
            size: Some(TermSize { cols: 90, rows: 30 }),
            created_by: Some("ann".into()),
            secret_names: vec!["API_KEY".into()],
            cli: None,
            sandbox: Some(hostctl::api::Sandbox::Bwrap),
            sandbox_extras: hostctl::api::SandboxExtras {
                home_files: vec!["~/.gitconfig".into()],
                read_only: vec!["/srv/cache".into()],
                read_write: vec![],
            },
            network: Some(hostctl::api::Network::None),
            limits: hostctl::api::Limits {
                memory_bytes: Some(512 << 20),
                cpu_millis: Some(1500),
                pids: Some(256),
            },
        },
        secrets: secrets(),
    }
}

/// Every variant, with each optional flag both given and not.
fn one_of_each() -> Vec<Call> {
    let name = || "fix-ci".to_owned();
    vec![
        Call::Create(Box::new(create_input())),
        Call::List {
            screens_after: None,
        },
        Call::List {
            screens_after: Some(1_764_000_000),
        },
        Call::Info { name: name() },
        Call::Tags {
            name: name(),
            tags: BTreeMap::from([("team".to_owned(), "infra".to_owned())]),
        },
        Call::Stop { name: name() },
        Call::Start {
            name: name(),
            size: None,
            secrets: Secrets::default(),
        },
        Call::Start {
            name: name(),
            size: Some(TermSize {
                cols: 132,
                rows: 43,
            }),
            secrets: secrets(),
        },
        Call::Destroy { name: name() },
        Call::Digest { name: name() },
        Call::Discard {
            name: name(),
            operation: None,
        },
        Call::Discard {
            name: name(),
            operation: Some("op-1".into()),
        },
        Call::Send {
            name: name(),
            text: "two\nlines".into(),
            enter: true,
        },
        Call::Send {
            name: name(),
            text: "-".into(),
            enter: false,
        },
        Call::Keys {
            name: name(),
            keys: vec![Key::Escape, Key::Ctrl('c'), Key::Char('y'), Key::BackTab],
        },
        Call::Snapshot {
            name: name(),
            request: SnapshotRequest {
                id: "fix-ci-20261206-0700".into(),
                label: Some("before".into()),
                taken_by: Some("ann".into()),
            },
        },
        Call::SnapshotList,
        Call::SnapshotRemove {
            id: "fix-ci-20261206-0700".into(),
        },
        Call::Version,
        Call::Usage { name: None },
        Call::Usage { name: Some(name()) },
        Call::AgentSocket {
            name: name(),
            keep: vec![],
            link: SocketLink::Keep,
        },
        Call::AgentSocket {
            name: name(),
            keep: vec!["0a1b2c3d".into(), "ff".into()],
            link: SocketLink::To("0a1b2c3d".into()),
        },
        Call::AgentSocket {
            name: name(),
            keep: vec!["ff".into()],
            link: SocketLink::Remove,
        },
        Call::Diff {
            name: name(),
            stat: false,
            json: false,
        },
        Call::Diff {
            name: name(),
            stat: true,
            json: true,
        },
        Call::Logs {
            name: name(),
            lines: None,
            follow: false,
            raw: false,
        },
        Call::Logs {
            name: name(),
            lines: Some(50),
            follow: true,
            raw: true,
        },
        Call::HookWatch,
        Call::Exec {
            name: name(),
            command: None,
            env: Vec::new(),
        },
        Call::Exec {
            name: name(),
            command: Some("make test 'a b'".into()),
            env: vec![
                ("TERM_PROGRAM".into(), "vscode".into()),
                ("X".into(), "a=b c".into()),
            ],
        },
        Call::Sftp {
            name: name(),
            env: Vec::new(),
        },
        Call::Sftp {
            name: name(),
            env: vec![(
                "SSH_CONNECTION".into(),
                "192.0.2.7 50000 127.0.0.1 22".into(),
            )],
        },
        Call::Mosh {
            name: name(),
            env: vec![("SSH_CLIENT".into(), "192.0.2.7 50000 22".into())],
            server_args: vec![
                "-c".into(),
                "256".into(),
                "-s".into(),
                "-l".into(),
                "LANG=C.UTF-8".into(),
            ],
        },
        Call::Mosh {
            name: name(),
            env: Vec::new(),
            server_args: Vec::new(),
        },
        Call::Dial {
            name: name(),
            port: 8080,
        },
        Call::Attach { name: name() },
        Call::Pack { name: name() },
        Call::Unpack {
            name: name(),
            operation: Some("op-1".into()),
        },
        Call::Unpack {
            name: name(),
            operation: None,
        },
        Call::SnapshotRead {
            id: "fix-ci-20261206-0700".into(),
        },
        Call::UnpackSnapshot {
            name: name(),
            sha256: "ab".repeat(32),
            size: 4096,
            operation: Some("op-2".into()),
        },
        Call::Serve { program: None },
        Call::Serve {
            program: Some("/home/u/.agentgate/bin/hostctl".into()),
        },
    ]
}

/// Checks that `verb`, parsed from `call`'s words, is the verb `call` names with the same
/// arguments, and that `call`'s body is what that verb reads.
fn assert_agrees(call: &Call, verb: Verb) {
    let body = call.body().expect("a body");
    let json_body = |body: &Option<Vec<u8>>| -> serde_json::Value {
        serde_json::from_slice(body.as_deref().expect("a body")).expect("JSON")
    };
    match (call, verb) {
        (Call::Create(input), Verb::Create { json }) => {
            assert!(json);
            let read: CreateInput =
                serde_json::from_slice(body.as_deref().expect("a body")).expect("CreateInput");
            assert_eq!(&read, input.as_ref());
        }
        (
            Call::List { screens_after },
            Verb::List {
                json,
                screens_after: parsed,
            },
        ) => {
            assert!(json);
            assert_eq!(parsed, *screens_after);
        }
        (Call::Info { name }, Verb::Info { name: n, json })
        | (Call::Stop { name }, Verb::Stop { name: n, json })
        | (Call::Destroy { name }, Verb::Destroy { name: n, json })
        | (Call::Digest { name }, Verb::Digest { name: n, json }) => {
            assert!(json);
            assert_eq!(&n, name);
        }
        (Call::Tags { name, tags }, Verb::Tags { name: n, json }) => {
            assert!(json);
            assert_eq!(&n, name);
            let read: BTreeMap<String, String> =
                serde_json::from_value(json_body(&body)).expect("tags");
            assert_eq!(&read, tags);
        }
        (
            Call::Start {
                name,
                size,
                secrets,
            },
            Verb::Start {
                name: n,
                cols,
                rows,
                secrets_on_stdin,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!(&n, name);
            assert_eq!((cols, rows), (size.map(|s| s.cols), size.map(|s| s.rows)));
            assert_eq!(secrets_on_stdin, !secrets.0.is_empty());
            assert_eq!(body.is_some(), secrets_on_stdin);
            if secrets_on_stdin {
                let read: StartInput =
                    serde_json::from_value(json_body(&body)).expect("StartInput");
                assert_eq!(&read.secrets, secrets);
            }
        }
        (
            Call::Discard { name, operation },
            Verb::Discard {
                name: n,
                operation: o,
                json,
            },
        )
        | (
            Call::Unpack { name, operation },
            Verb::Unpack {
                name: n,
                operation: o,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!((&n, &o), (name, operation));
        }
        (
            Call::Send { name, text, enter },
            Verb::Send {
                name: n,
                text: words,
                no_enter,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!(&n, name);
            // No words: the text is read on stdin, and its last newline taken off.
            assert_eq!(words, ["-"]);
            assert_eq!(no_enter, !enter);
            let sent = String::from_utf8(body.expect("a body")).expect("text");
            assert_eq!(sent.strip_suffix('\n'), Some(text.as_str()));
        }
        (
            Call::Keys { name, keys },
            Verb::Keys {
                name: n,
                keys: words,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!(&n, name);
            let parsed: Vec<Key> = words
                .iter()
                .map(|w| Key::parse(w).expect("a key"))
                .collect();
            assert_eq!(&parsed, keys);
        }
        (Call::Snapshot { name, request }, Verb::Snapshot { name: n, json }) => {
            assert!(json);
            assert_eq!(&n, name);
            let read: SnapshotRequest =
                serde_json::from_value(json_body(&body)).expect("SnapshotRequest");
            assert_eq!(&read, request);
        }
        (Call::SnapshotList, Verb::SnapshotList { json })
        | (Call::Version, Verb::Version { json }) => assert!(json),
        (Call::SnapshotRemove { id }, Verb::SnapshotRemove { id: i, json }) => {
            assert!(json);
            assert_eq!(&i, id);
        }
        (Call::SnapshotRead { id }, Verb::SnapshotRead { id: i }) => assert_eq!(&i, id),
        (Call::Usage { name }, Verb::Usage { name: n, json }) => {
            assert!(json);
            assert_eq!(&n, name);
        }
        (
            Call::AgentSocket { name, keep, link },
            Verb::AgentSocket {
                name: n,
                keep: k,
                link: l,
                unlink,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!((&n, &k), (name, keep));
            let parsed = match (l, unlink) {
                (Some(id), false) => SocketLink::To(id),
                (None, true) => SocketLink::Remove,
                (None, false) => SocketLink::Keep,
                (Some(_), true) => panic!("both --link and --unlink"),
            };
            assert_eq!(&parsed, link);
        }
        (
            Call::Diff { name, stat, json },
            Verb::Diff {
                name: n,
                stat: s,
                json: j,
            },
        ) => assert_eq!((&n, s, j), (name, *stat, *json)),
        (
            Call::Logs {
                name,
                lines,
                follow,
                raw,
            },
            Verb::Logs {
                name: n,
                lines: l,
                follow: f,
                raw: r,
            },
        ) => assert_eq!((&n, l, f, r), (name, *lines, *follow, *raw)),
        (Call::HookWatch, Verb::HookWatch) => {}
        (
            Call::Exec { name, command, env },
            Verb::Exec {
                name: n,
                command: c,
                env: e,
            },
        ) => {
            assert_eq!((&n, &c), (name, command));
            let pairs: Vec<(String, String)> = e
                .iter()
                .map(|w| {
                    let (k, v) = w.split_once('=').expect("KEY=VALUE");
                    (k.to_owned(), v.to_owned())
                })
                .collect();
            assert_eq!(&pairs, env);
        }
        (Call::Dial { name, port }, Verb::Dial { name: n, port: p }) => {
            assert_eq!((&n, p), (name, *port));
        }
        (Call::Sftp { name, env }, Verb::Sftp { name: n, env: e }) => {
            assert_eq!(&n, name);
            assert_eq!(&env_pairs(&e).expect("KEY=VALUE"), env);
        }
        (
            Call::Mosh {
                name,
                env,
                server_args,
            },
            Verb::Mosh {
                name: n,
                env: e,
                server_args: a,
            },
        ) => {
            assert_eq!((&n, &a), (name, server_args));
            assert_eq!(&env_pairs(&e).expect("KEY=VALUE"), env);
        }
        (Call::Attach { name }, Verb::Attach { name: n })
        | (Call::Pack { name }, Verb::Pack { name: n }) => assert_eq!(&n, name),
        (
            Call::UnpackSnapshot {
                name,
                sha256,
                size,
                operation,
            },
            Verb::UnpackSnapshot {
                name: n,
                sha256: h,
                size: s,
                operation: o,
                json,
            },
        ) => {
            assert!(json);
            assert_eq!((&n, &h, s, &o), (name, sha256, *size, operation));
        }
        (Call::Serve { program }, Verb::Serve { program: p }) => {
            assert_eq!(p, program.as_ref().map(std::path::PathBuf::from));
        }
        (call, verb) => panic!("{call:?} parsed as {verb:?}"),
    }
}

/// Each of hostctl's own calls, with its optional words both given and not.
fn own_calls() -> Vec<OwnCall> {
    vec![
        OwnCall::Launch {
            home: "/home/u/.agentgate".into(),
            name: "fix-ci".into(),
            command: vec!["claude".into(), "--resume".into(), "-c".into()],
        },
        OwnCall::LogWriter {
            path: "/home/u/.agentgate/agents/fix-ci/output.log".into(),
            max: 64 << 20,
        },
        OwnCall::Hook {
            home: "/home/u/.agentgate".into(),
            agent: "fix-ci".into(),
            cli: AgentCli::Claude,
            event: None,
        },
        OwnCall::Hook {
            home: "/home/u/.agentgate".into(),
            agent: "fix-ci".into(),
            cli: AgentCli::Codex,
            event: Some(r#"{"type":"agent-turn-complete"}"#.into()),
        },
        OwnCall::SandboxChild {
            command: vec!["/bin/sh".into(), "-c".into(), "--help; echo $$".into()],
        },
    ]
}

fn assert_own_agrees(call: &OwnCall, verb: Verb) {
    match (call, verb) {
        (
            OwnCall::Launch {
                home,
                name,
                command,
            },
            Verb::Launch {
                home: h,
                name: n,
                command: c,
            },
        ) => assert_eq!((&h, &n, &c), (home, name, command)),
        (OwnCall::LogWriter { path, max }, Verb::LogWriter { path: p, max: m }) => {
            assert_eq!((&p, m), (path, *max));
        }
        (
            OwnCall::Hook {
                home,
                agent,
                cli,
                event,
            },
            Verb::Hook {
                home: h,
                agent: a,
                cli: c,
                arg,
            },
        ) => {
            assert_eq!((&h, &a, &arg), (home, agent, event));
            assert_eq!(AgentCli::from_name(&c), Some(*cli));
        }
        (OwnCall::SandboxChild { command }, Verb::SandboxChild { command: c }) => {
            let c: Vec<String> = c.iter().map(|w| w.to_string_lossy().into_owned()).collect();
            assert_eq!(&c, command);
        }
        (call, verb) => panic!("{call:?} parsed as {verb:?}"),
    }
}

#[test]
fn every_call_parses_into_the_verb_it_names_with_the_same_fields() {
    for call in one_of_each() {
        let argv = std::iter::once("hostctl".to_owned()).chain(call.argv());
        let cli = Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{:?} does not parse: {e}", call.argv()));
        assert_agrees(&call, cli.verb);
    }
    for call in own_calls() {
        let argv = std::iter::once("hostctl".to_owned()).chain(call.argv());
        let cli = Cli::try_parse_from(argv)
            .unwrap_or_else(|e| panic!("{:?} does not parse: {e}", call.argv()));
        assert_own_agrees(&call, cli.verb);
    }
}

#[test]
fn every_verb_of_the_command_line_is_a_call_or_hostctls_own() {
    let called: BTreeSet<&str> = one_of_each().iter().map(Call::verb).collect();
    let own: BTreeSet<&str> = own_calls().iter().map(OwnCall::verb).collect();
    assert!(called.is_disjoint(&own), "{called:?} {own:?}");
    let command = Cli::command();
    let verbs: BTreeSet<&str> = command
        .get_subcommands()
        .map(clap::Command::get_name)
        .collect();
    assert_eq!(called.union(&own).copied().collect::<BTreeSet<_>>(), verbs);
}

/// The words the gateway sent before calls were typed, for calls of every shape: an older
/// hostctl on a host reads exactly these.
#[test]
fn the_words_are_the_ones_older_hostctls_read() {
    let expected: [(Call, &[&str]); 8] = [
        (
            Call::List {
                screens_after: Some(17),
            },
            &["list", "--screens-after", "17", "--json"],
        ),
        (
            Call::Start {
                name: "a".into(),
                size: Some(TermSize { cols: 80, rows: 24 }),
                secrets: secrets(),
            },
            &[
                "start",
                "a",
                "--cols",
                "80",
                "--rows",
                "24",
                "--secrets-on-stdin",
                "--json",
            ],
        ),
        (
            Call::Send {
                name: "a".into(),
                text: "hi".into(),
                enter: false,
            },
            &["send", "a", "-", "--no-enter", "--json"],
        ),
        (
            Call::Keys {
                name: "a".into(),
                keys: vec![Key::Enter, Key::Ctrl('c')],
            },
            &["keys", "a", "Enter", "C-c", "--json"],
        ),
        (
            Call::Exec {
                name: "a".into(),
                command: Some("ls -l".into()),
                env: vec![("K".into(), "v".into())],
            },
            &["exec", "a", "-c", "ls -l", "--env", "K=v"],
        ),
        (
            Call::Logs {
                name: "a".into(),
                lines: Some(5),
                follow: true,
                raw: true,
            },
            &["logs", "a", "-n", "5", "-f", "--raw"],
        ),
        (
            Call::UnpackSnapshot {
                name: "a".into(),
                sha256: "ff".into(),
                size: 9,
                operation: Some("op".into()),
            },
            &[
                "unpack-snapshot",
                "a",
                "--sha256",
                "ff",
                "--size",
                "9",
                "--operation",
                "op",
                "--json",
            ],
        ),
        (
            Call::Serve {
                program: Some("/h/hostctl".into()),
            },
            &["serve", "--program", "/h/hostctl"],
        ),
    ];
    for (call, words) in expected {
        assert_eq!(call.argv(), words, "{call:?}");
    }
    // What tmux and the CLIs' hook settings of agents already running hold.
    let own: [(OwnCall, &[&str]); 3] = [
        (
            OwnCall::Launch {
                home: "/h".into(),
                name: "a".into(),
                command: vec!["env".into(), "--".into(), "claude".into()],
            },
            &["launch", "--home", "/h", "a", "--", "env", "--", "claude"],
        ),
        (
            OwnCall::LogWriter {
                path: "/h/agents/a/output.log".into(),
                max: 1024,
            },
            &["log-writer", "/h/agents/a/output.log", "--max", "1024"],
        ),
        (
            OwnCall::Hook {
                home: "/h".into(),
                agent: "a".into(),
                cli: AgentCli::Gemini,
                event: Some("AfterAgent".into()),
            },
            &[
                "hook",
                "--home",
                "/h",
                "--agent",
                "a",
                "gemini",
                "AfterAgent",
            ],
        ),
    ];
    for (call, words) in own {
        assert_eq!(call.argv(), words, "{call:?}");
    }
}

#[test]
fn a_call_with_one_answer_asks_for_json_and_only_such_a_call_has_a_body() {
    for call in one_of_each() {
        let answers = call.exchange() == Exchange::Answer;
        if answers {
            assert_eq!(call.argv().last().map(String::as_str), Some("--json"));
        }
        if call.body().expect("a body").is_some() {
            assert!(answers, "{call:?}");
        }
    }
}
