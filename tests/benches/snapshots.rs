//! Snapshots of an agent on a remote host and restores onto another host, measured against the
//! same work done over OpenSSH straight to the hosts, in one run.
//!
//!   cargo build --release --workspace && cargo bench -p e2e --bench snapshots
//!   ROUNDS=5 SIZE_MB=256 cargo bench -p e2e --bench snapshots   (the defaults)
//!
//! Needs root (the hosts are network namespaces running a real sshd, see `e2e::netns`). In one
//! run: a gateway with two namespace hosts, h1 and h2; an agent `snap` on h1 whose workspace the
//! bench fills with SIZE_MB MiB in a few thousand files of mixed sizes, half of the bytes text
//! that gzip compresses, half random bytes it cannot; then one untimed warm-up round and ROUNDS
//! rounds that each time run both measurements once through the gateway and once over OpenSSH
//! straight to the hosts (`root@h1`, `root@h2`, with the client options of the remote-hosts
//! bench), the gateway first in odd rounds and OpenSSH first in even ones:
//!   snapshot  ssh gw snapshot snap --json
//!             ssh root@h1 'tar -C WORKSPACE -czf ARCHIVE . && sha256sum ARCHIVE'
//!   restore   ssh gw create NEW --from-snapshot ID --host h2 --json
//!             ssh root@h1 cat ARCHIVE | ssh root@h2 'mkdir DIR; the stream through tee into
//!             sha256sum and into tar -C DIR -xzpf -; the sum compared with the one the
//!             snapshot printed, DIR removed when they differ'
//! Before each timed command, untimed, memory is settled as in the remote-hosts bench (`sync`,
//! then SIZE bytes written and deleted on a tmpfs). Each restored workspace is checked (files
//! and bytes) against the original, then removed with its snapshot. Medians and every round's
//! times are printed as markdown, written to bench/results/snapshots.json, and between
//! `<!-- snapshots:start -->` and `<!-- snapshots:end -->` in docs/PERFORMANCE.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use e2e::bench::{
    Provenance, direct_ssh_options, env_number, load_average, median, negotiated, settle_memory,
    write_results, write_section,
};
use e2e::netns::{NetnsHost, add_host};
use e2e::{TestGateway, shell_quote};
use serde_json::{Value, json};

const MIB: u64 = 1024 * 1024;

/// A small deterministic generator (splitmix64): the same workspace in every run, and bytes
/// that gzip cannot compress.
struct Splitmix(u64);

impl Splitmix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number between `low` and `high`, evenly spread over their logarithms, as the sizes of
    /// files in a source tree are.
    fn log_between(&mut self, low: u64, high: u64) -> u64 {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (low as f64 * (high as f64 / low as f64).powf(unit)) as u64
    }
}

/// Words of the text files: lines of them, indented, with a number now and then, compress about
/// as well as source code does.
const WORDS: &[&str] = &[
    "fn",
    "let",
    "mut",
    "self",
    "match",
    "return",
    "if",
    "else",
    "for",
    "in",
    "while",
    "struct",
    "impl",
    "pub",
    "use",
    "agent",
    "host",
    "workspace",
    "snapshot",
    "archive",
    "session",
    "stream",
    "error",
    "result",
    "value",
    "name",
    "config",
    "Some",
    "None",
    "Ok",
    "Err",
    "String",
    "Vec",
    "u64",
    "&str",
    "=",
    "==",
    "=>",
    "->",
    "{",
    "}",
    "(",
    ")",
    ";",
    ",",
    "::",
    "//",
    "the",
    "buffer",
    "read",
    "write",
    "wait",
    "status",
    "path",
    "file",
    "lines",
    "len",
    "into",
    "from",
    "as",
    "await",
    "async",
    "true",
    "false",
];

fn text(rng: &mut Splitmix, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    while out.len() < len {
        out.extend(std::iter::repeat_n(b' ', 4 * rng.below(4) as usize));
        for word in 0..4 + rng.below(9) {
            if word > 0 {
                out.push(b' ');
            }
            if rng.below(8) == 0 {
                write!(out, "{}", rng.below(100_000)).expect("write to a Vec");
            } else {
                out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
            }
        }
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn random_bytes(rng: &mut Splitmix, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What `fill_workspace` made.
#[derive(Default)]
struct WorkspaceShape {
    files: u64,
    directories: u64,
    text_bytes: u64,
    random_bytes: u64,
}

impl WorkspaceShape {
    fn bytes(&self) -> u64 {
        self.text_bytes + self.random_bytes
    }
}

/// Fills `dir` with exactly `size` bytes of files: 70 % of them small (512 B to 16 KiB), 25 %
/// medium (16 to 256 KiB), 5 % large (256 KiB to 4 MiB), 25 to a directory two levels down;
/// each file is text or random bytes, whichever has fewer bytes so far, so that each is half.
fn fill_workspace(dir: &Path, size: u64) -> WorkspaceShape {
    let mut rng = Splitmix(0x5eed_5eed);
    let mut shape = WorkspaceShape::default();
    while shape.bytes() < size {
        let (low, high) = match rng.below(100) {
            0..70 => (512, 16 * 1024),
            70..95 => (16 * 1024, 256 * 1024),
            _ => (256 * 1024, 4 * MIB),
        };
        let len = rng.log_between(low, high).min(size - shape.bytes());
        let n = shape.files;
        let top = dir.join(format!("d{:02}", n / 200));
        let sub = top.join(format!("s{:02}", n / 25 % 8));
        for new in [&top, &sub] {
            if !new.exists() {
                std::fs::create_dir(new).expect("mkdir in the workspace");
                shape.directories += 1;
            }
        }
        let is_text = shape.text_bytes <= shape.random_bytes;
        let (name, bytes) = if is_text {
            shape.text_bytes += len;
            (format!("f{n:05}.rs"), text(&mut rng, len as usize))
        } else {
            shape.random_bytes += len;
            (format!("f{n:05}.bin"), random_bytes(&mut rng, len as usize))
        };
        std::fs::write(sub.join(name), bytes).expect("write a workspace file");
        shape.files += 1;
    }
    shape
}

/// The regular files under `dir` and their bytes.
fn files_and_bytes(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("read a restored workspace") {
        let entry = entry.expect("a directory entry");
        let meta = entry.metadata().expect("an entry's metadata");
        if meta.is_dir() {
            let (f, b) = files_and_bytes(&entry.path());
            files += f;
            bytes += b;
        } else if meta.is_file() {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

/// Runs `cmd` to its end, which must succeed; returns its wall time in seconds and its stdout.
fn timed_output(mut cmd: Command) -> (f64, String) {
    cmd.stdin(Stdio::null()).stderr(Stdio::inherit());
    let started = Instant::now();
    let out = cmd.output().expect("run ssh");
    let took = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{cmd:?}: {}", out.status);
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `from | into`, both of which must succeed; returns the wall time in seconds from
/// starting the first until both have ended.
fn timed_pipe(mut from: Command, mut into: Command) -> f64 {
    let started = Instant::now();
    let mut source = from
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run ssh");
    let stream = source.stdout.take().expect("stdout");
    let mut sink = into
        .stdin(Stdio::from(stream))
        .stdout(Stdio::null())
        .spawn()
        .expect("run ssh");
    // The pipe's read end leaves this process with `into`: a sink that dies then ends the source.
    drop(into);
    let (sent, received) = (source.wait().expect("wait"), sink.wait().expect("wait"));
    let took = started.elapsed().as_secs_f64();
    assert!(sent.success(), "{from:?}: {sent}");
    assert!(received.success(), "the unpack on h2: {received}");
    took
}

/// The baseline's restore, run on h2 by the host's shell: what hostctl's `unpack-snapshot`
/// does (a new directory; the archive hashed as it is unpacked with the host's tar; nothing kept
/// when the hash is not `sha256`), in coreutils.
fn direct_unpack_command(dir: &Path, sha256: &str) -> String {
    format!(
        "set -e; d={}; mkdir \"$d\"; mkfifo \"$d.fifo\"; \
         sha256sum < \"$d.fifo\" > \"$d.sum\" & \
         tee \"$d.fifo\" | tar -C \"$d\" -xzpf -; wait $!; \
         read -r sum rest < \"$d.sum\"; rm \"$d.fifo\" \"$d.sum\"; \
         if [ \"$sum\" != {sha256} ]; then rm -rf \"$d\"; echo \"damaged: sha256 $sum\" >&2; exit 1; fi",
        shell_quote(&dir.to_string_lossy())
    )
}

/// The first word of each line of `sha256sum`'s output.
fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Everything a round needs.
struct Bench<'a> {
    gw: &'a TestGateway,
    h1: &'a NetnsHost,
    h2: &'a NetnsHost,
    direct_options: Vec<String>,
    workspace: PathBuf,
    shape: WorkspaceShape,
    /// Where the baseline writes its archive on h1 (beside the hosts' other files).
    direct_archive: PathBuf,
    /// Where the baseline unpacks on h2 (beside the workspaces hostctl makes there).
    direct_restore: PathBuf,
    /// A file on a tmpfs for `settle_memory`.
    scratch: PathBuf,
    size: u64,
}

/// One round's times in seconds, each `[through agentgate, OpenSSH direct]`.
struct RoundTimes {
    agentgate_first: bool,
    snapshot: [f64; 2],
    restore: [f64; 2],
    /// The archives' sizes and SHA-256s: `[agentgate's, the baseline's]`.
    archives: [(u64, String); 2],
}

impl Bench<'_> {
    /// `ssh OPTIONS root@HOST`, the baseline's client, without its command.
    fn direct(&self, host: &NetnsHost) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(&self.direct_options)
            .arg(format!("root@{}", host.address));
        cmd
    }

    fn direct_run(&self, host: &NetnsHost, command: &str) -> Command {
        let mut cmd = self.direct(host);
        cmd.arg(command);
        cmd
    }

    fn round(&self, index: u64, agentgate_first: bool) -> RoundTimes {
        let order: [usize; 2] = if agentgate_first { [0, 1] } else { [1, 0] };
        let mut snapshot = [0.0; 2];
        let mut archives: [(u64, String); 2] = Default::default();
        let mut snapshot_id = String::new();
        let direct_archive = self.direct_archive.to_string_lossy().into_owned();
        for side in order {
            settle_memory(&self.scratch, self.size);
            if side == 0 {
                let mut cmd = self.gw.ssh_command();
                cmd.args(["gw", "snapshot", "snap", "--json"]);
                let (took, out) = timed_output(cmd);
                let made: Value = serde_json::from_str(&out).expect("snapshot --json is JSON");
                snapshot_id = made["id"].as_str().expect("an id").to_owned();
                archives[0] = (
                    made["size"].as_u64().expect("a size"),
                    made["sha256"].as_str().expect("a sha256").to_owned(),
                );
                snapshot[0] = took;
            } else {
                let quoted = shell_quote(&direct_archive);
                let (took, out) = timed_output(self.direct_run(
                    self.h1,
                    &format!(
                        "tar -C {} -czf {quoted} . && sha256sum {quoted}",
                        shell_quote(&self.workspace.to_string_lossy())
                    ),
                ));
                let size = std::fs::metadata(&self.direct_archive)
                    .expect("the baseline's archive")
                    .len();
                archives[1] = (size, first_word(&out));
                snapshot[1] = took;
            }
        }

        let mut restore = [0.0; 2];
        let restored_name = format!("restored-{index}");
        let mut restored_workspace = PathBuf::new();
        for side in order {
            settle_memory(&self.scratch, self.size);
            if side == 0 {
                let mut cmd = self.gw.ssh_command();
                cmd.args([
                    "gw",
                    "create",
                    &restored_name,
                    "--from-snapshot",
                    &snapshot_id,
                    "--host",
                    "h2",
                    "--json",
                ]);
                let (took, out) = timed_output(cmd);
                let made: Value = serde_json::from_str(&out).expect("create --json is JSON");
                assert_eq!(made["host"], "h2", "restored on h2: {made}");
                restored_workspace = PathBuf::from(made["workspace"].as_str().expect("workspace"));
                restore[0] = took;
            } else {
                restore[1] = timed_pipe(
                    self.direct_run(self.h1, &format!("cat {}", shell_quote(&direct_archive))),
                    self.direct_run(
                        self.h2,
                        &direct_unpack_command(&self.direct_restore, &archives[1].1),
                    ),
                );
            }
        }

        let original = (self.shape.files, self.shape.bytes());
        assert_eq!(
            files_and_bytes(&restored_workspace),
            original,
            "agentgate restored every file"
        );
        assert_eq!(
            files_and_bytes(&self.direct_restore),
            original,
            "the baseline restored every file"
        );
        self.gw.ok(&["destroy", &restored_name, "--force"]);
        self.gw.ok(&["snapshot", "remove", &snapshot_id]);
        std::fs::remove_dir_all(&self.direct_restore).expect("remove the baseline's restore");
        std::fs::remove_file(&self.direct_archive).expect("remove the baseline's archive");
        RoundTimes {
            agentgate_first,
            snapshot,
            restore,
            archives,
        }
    }
}

fn main() {
    let started = Instant::now();
    let rounds = env_number("ROUNDS", 5);
    let size = env_number("SIZE_MB", 256) * MIB;
    let load_before = load_average();
    let gw = TestGateway::start();
    let h1 = add_host(&gw, "h1");
    let h2 = add_host(&gw, "h2");
    let direct_options = direct_ssh_options(&gw, &[&h1, &h2]);
    gw.ok(&["create", "snap", "--host", "h1", "--", "sleep", "100000"]);
    let workspace = h1.agents_home.join("workspaces/snap");
    eprintln!(
        "snapshots: filling {} with {} MiB",
        workspace.display(),
        size / MIB
    );
    let shape = fill_workspace(&workspace, size);
    let direct_archive = h1.dir.join("baseline-snapshot.tar.gz");
    let direct_restore = h2.agents_home.join("workspaces/restored-direct");
    std::fs::create_dir_all(h2.agents_home.join("workspaces")).expect("mkdir h2's workspaces");
    let bench = Bench {
        gw: &gw,
        h1: &h1,
        h2: &h2,
        direct_options,
        workspace,
        shape,
        direct_archive,
        direct_restore,
        scratch: PathBuf::from(format!(
            "/dev/shm/agentgate-snapshots-bench-{}.prefault",
            std::process::id()
        )),
        size,
    };
    let mut via_gw = gw.ssh_command();
    via_gw.arg("gw");
    let algorithms = [
        negotiated(via_gw, "whoami"),
        negotiated(bench.direct(&h1), "true"),
    ];

    // The warm-up reads the workspace once from each side (what the rounds then read is in
    // memory for both) and makes the gateway's first connection to h2; its times are dropped.
    let warm = bench.round(0, true);
    eprintln!(
        "snapshots: warm-up: snapshot {:.2} / {:.2} s, restore {:.2} / {:.2} s (agentgate / OpenSSH)",
        warm.snapshot[0], warm.snapshot[1], warm.restore[0], warm.restore[1]
    );
    let mut times = Vec::new();
    for round in 1..=rounds {
        let t = bench.round(round, round % 2 == 1);
        eprintln!(
            "snapshots: round {round}/{rounds}: snapshot {:.2} / {:.2} s, restore {:.2} / {:.2} s (agentgate / OpenSSH)",
            t.snapshot[0], t.snapshot[1], t.restore[0], t.restore[1]
        );
        times.push(t);
    }
    let load_after = load_average();
    let provenance = Provenance::now();

    let column = |pick: &dyn Fn(&RoundTimes) -> f64| times.iter().map(pick).collect::<Vec<f64>>();
    let measurements: [(&str, Vec<f64>, Vec<f64>); 2] = [
        (
            "snapshot on h1",
            column(&|t| t.snapshot[0]),
            column(&|t| t.snapshot[1]),
        ),
        (
            "restore, h1 → h2",
            column(&|t| t.restore[0]),
            column(&|t| t.restore[1]),
        ),
    ];
    let (agentgate_archive, direct_archive) = (&warm.archives[0], &warm.archives[1]);
    let same_archive = times
        .iter()
        .all(|t| t.archives[0].1 == t.archives[1].1 && t.archives[0].1 == agentgate_archive.1);
    let mib = |bytes: u64| bytes as f64 / MIB as f64;

    let mut doc = format!(
        "Generated by `cargo bench -p e2e --bench snapshots` on {} — do not edit by hand; rerun the \
         bench\n(`ROUNDS={rounds} SIZE_MB={}`, as root; it took {} s).\n\n",
        provenance.date,
        size / MIB,
        started.elapsed().as_secs()
    );
    doc.push_str(&format!(
        "- Machine: {}; load average (1/5/15 min) {load_before} before and {load_after} after\n\
         - agentgate: commit {}, release build; client and the hosts' sshd: {}\n\
         - Workspace: {:.0} MiB in {} files and {} directories ({:.1} MiB text, {:.1} MiB random \
         bytes); archive {:.1} MiB, {}\n\
         - Negotiated (kex, cipher): client to agentgate {}; client straight to the hosts {}\n\n",
        provenance.machine,
        provenance.commit,
        provenance.openssh,
        mib(bench.shape.bytes()),
        bench.shape.files,
        bench.shape.directories,
        mib(bench.shape.text_bytes),
        mib(bench.shape.random_bytes),
        mib(agentgate_archive.0),
        if same_archive {
            "the same bytes (SHA-256) from agentgate and from the baseline's tar".to_owned()
        } else {
            format!(
                "the baseline's {:.1} MiB (the bytes differ)",
                mib(direct_archive.0)
            )
        },
        algorithms[0],
        algorithms[1],
    ));
    doc.push_str(&format!(
        "| measurement (s, medians of {rounds} rounds) | through agentgate | OpenSSH direct to the hosts | agentgate ÷ OpenSSH | per-round ratio, median |\n|---|---:|---:|---:|---:|\n"
    ));
    let mut json_rows = Vec::new();
    for (name, agentgate, direct) in &measurements {
        let (a, b) = (median(agentgate.clone()), median(direct.clone()));
        let ratios: Vec<f64> = agentgate.iter().zip(direct).map(|(a, b)| a / b).collect();
        doc.push_str(&format!(
            "| {name} | {a:.2} | {b:.2} | **{:.2}** | {:.2} |\n",
            a / b,
            median(ratios.clone())
        ));
        json_rows.push(json!({
            "measurement": format!("{name} (s)"), "agentgate": agentgate,
            "openssh_direct": direct, "ratio_per_round": ratios,
            "median_agentgate": a, "median_openssh_direct": b, "ratio": a / b,
        }));
    }
    doc.push_str(
        "\nEvery round (s):\n\n| round | first | snapshot, agentgate | snapshot, OpenSSH | ratio | restore, agentgate | restore, OpenSSH | ratio |\n|---:|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for (i, t) in times.iter().enumerate() {
        doc.push_str(&format!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            i + 1,
            if t.agentgate_first {
                "agentgate"
            } else {
                "OpenSSH"
            },
            t.snapshot[0],
            t.snapshot[1],
            t.snapshot[0] / t.snapshot[1],
            t.restore[0],
            t.restore[1],
            t.restore[0] / t.restore[1],
        ));
    }
    doc.push_str("\nRaw times: `bench/results/snapshots.json`.\n");
    println!("{doc}");

    let results = json!({
        "provenance": provenance.json(),
        "load_average": {"before": load_before, "after": load_after},
        "size_bytes": size, "rounds": rounds,
        "first_in_round": times.iter().map(|t| if t.agentgate_first { "agentgate" } else { "openssh" }).collect::<Vec<_>>(),
        "workspace": {
            "files": bench.shape.files, "directories": bench.shape.directories,
            "text_bytes": bench.shape.text_bytes, "random_bytes": bench.shape.random_bytes,
        },
        "archive_bytes": {"agentgate": agentgate_archive.0, "openssh_direct": direct_archive.0},
        "same_archive_bytes": same_archive,
        "warm_up": {"snapshot": warm.snapshot, "restore": warm.restore},
        "rows": json_rows,
        "negotiated": {"agentgate": algorithms[0], "openssh_direct": algorithms[1]},
    });
    write_results("snapshots", &results);
    write_section("snapshots", &doc);
    drop(bench);
    drop((h2, h1));
}
