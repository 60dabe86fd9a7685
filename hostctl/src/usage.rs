//! `hostctl usage`: what each agent uses of its host. Its CPU and memory are those of its
//! process tree (the tmux pane's process and all its descendants, those inside its sandbox
//! too, since the host's /proc shows every PID namespace's processes under their host PIDs),
//! read in one walk of /proc for all the agents of the call; its disk is its workspace's, counted
//! as `du -sk` counts it, within a time budget shared by the call's agents so that a huge
//! workspace makes its figure unknown rather than the call slow.
//!
//! CPU percent needs two looks: each call keeps what it saw in `usage.json` under
//! `$AGENTGATE_HOME`, and the next one measures over the time between them; the first, or one
//! too soon after the last, measures since the agent's process started.
//!
//! It only reads: /proc, the workspaces and its own `usage.json`. It must not signal, limit or
//! otherwise touch an agent's processes (that is `procs`').

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::HostCtl;
use crate::api::{AgentUsage, UsageReport};
use crate::error::{Error, Result};

/// How long the workspaces of one call may take to count, all together. Past it, the
/// workspaces not yet counted are unknown: the gateway's call must answer well within its own
/// limit.
pub const DISK_BUDGET: Duration = Duration::from_secs(3);

/// The shortest time between two looks that a CPU percent is measured over: shorter, and a
/// single scheduler tick would read as a large share.
const MIN_WINDOW: Duration = Duration::from_millis(250);

/// The file that keeps the last look's CPU times, under `$AGENTGATE_HOME`.
const LAST_LOOK: &str = "usage.json";

/// One process as `/proc/PID/stat` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    /// User and system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// When it started, in clock ticks since the host booted.
    pub start_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Reads one `/proc/PID/stat` line. The command name (in parentheses) may hold spaces and
/// parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(line: &str) -> Option<ProcStat> {
    let (head, rest) = line.rsplit_once(')')?;
    let pid = head.split_once('(')?.0.trim().parse().ok()?;
    // Fields from the third (state) on: rest[0] is field 3, so field N is rest[N - 3].
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcStat {
        pid,
        ppid: u32::try_from(field(4)?).ok()?,
        cpu_ticks: field(14)?.saturating_add(field(15)?),
        start_ticks: field(22)?,
        rss_pages: field(24)?,
    })
}

/// Every process under `proc` (one read of each `stat`); a process that ends meanwhile is
/// left out.
pub fn read_procs(proc: &Path) -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|line| parse_stat(&line))
        .collect()
}

/// The sums over one process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeUse {
    pub processes: u32,
    pub cpu_ticks: u64,
    pub rss_pages: u64,
    /// When its root started (clock ticks since boot).
    pub root_start_ticks: u64,
}

/// The sums over the tree under each of `roots` (a root no longer there has none). Pure.
pub fn trees(procs: &[ProcStat], roots: &[u32]) -> HashMap<u32, TreeUse> {
    let mut children: HashMap<u32, Vec<&ProcStat>> = HashMap::new();
    let mut by_pid: HashMap<u32, &ProcStat> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
        by_pid.insert(p.pid, p);
    }
    let mut out = HashMap::new();
    for &root in roots {
        let Some(top) = by_pid.get(&root) else {
            continue;
        };
        let mut sum = TreeUse {
            root_start_ticks: top.start_ticks,
            ..TreeUse::default()
        };
        // A PID is seen once even if /proc was read while a process moved (reparented).
        let mut seen = HashSet::new();
        let mut stack = vec![*top];
        while let Some(p) = stack.pop() {
            if !seen.insert(p.pid) {
                continue;
            }
            sum.processes += 1;
            sum.cpu_ticks = sum.cpu_ticks.saturating_add(p.cpu_ticks);
            sum.rss_pages = sum.rss_pages.saturating_add(p.rss_pages);
            stack.extend(children.get(&p.pid).into_iter().flatten().copied());
        }
        out.insert(root, sum);
    }
    out
}

/// Why a directory's disk use is not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskUnknown {
    /// Counting it did not end before the deadline.
    TooSlow,
    /// The directory itself cannot be read.
    Unreadable(String),
}

/// What `du -sk DIR` counts, in bytes: the blocks allocated to every entry under `dir` (itself
/// included), a file with several hard links once, symbolic links not followed. Stops at
/// `deadline`. Entries that cannot be read are skipped, as du skips them (it says so; the
/// figure is then a floor).
pub fn disk_use(dir: &Path, deadline: Instant) -> std::result::Result<u64, DiskUnknown> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir)
        .map_err(|e| DiskUnknown::Unreadable(format!("{}: {e}", dir.display())))?;
    let mut blocks = top.blocks();
    let mut linked: HashSet<(u64, u64)> = HashSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut looked = 0u32;
    while let Some(current) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            looked = looked.wrapping_add(1);
            // The clock is read now and then: a call with many small files stays cheap.
            if looked.is_multiple_of(256) && Instant::now() >= deadline {
                return Err(DiskUnknown::TooSlow);
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.nlink() > 1 && !linked.insert((meta.dev(), meta.ino())) {
                continue;
            }
            blocks = blocks.saturating_add(meta.blocks());
        }
    }
    if Instant::now() >= deadline {
        return Err(DiskUnknown::TooSlow);
    }
    // st_blocks counts 512-byte units whatever the filesystem's block size.
    Ok(blocks.saturating_mul(512))
}

/// What the last look saw of one agent: its tree's root and CPU ticks, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Seen {
    pid: u32,
    cpu_ticks: u64,
    /// Clock ticks since boot.
    at_ticks: u64,
}

/// The host's clock and units: clock ticks a second, the page size, now in ticks since boot.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    pub ticks_per_second: u64,
    pub page_size: u64,
    pub now_ticks: u64,
}

impl Clock {
    /// Reads them from the system and `proc`'s `uptime`.
    pub fn read(proc: &Path) -> Result<Clock> {
        use nix::unistd::{SysconfVar, sysconf};
        let positive = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0);
        let ticks_per_second = positive(sysconf(SysconfVar::CLK_TCK).ok().flatten())
            .ok_or_else(|| Error::Failed("the system does not say its clock tick".into()))?;
        let page_size = positive(sysconf(SysconfVar::PAGE_SIZE).ok().flatten())
            .ok_or_else(|| Error::Failed("the system does not say its page size".into()))?;
        let path = proc.join("uptime");
        let uptime = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .ok_or_else(|| {
                Error::Failed(format!(
                    "cannot read {}: usage is measured on Linux hosts only",
                    path.display()
                ))
            })?;
        Ok(Clock {
            ticks_per_second,
            page_size,
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "an uptime in ticks is positive and far below u64's range"
            )]
            now_ticks: (uptime * ticks_per_second as f64) as u64,
        })
    }

    #[expect(clippy::cast_precision_loss, reason = "tick counts are far below 2^52")]
    fn seconds(&self, ticks: u64) -> f64 {
        ticks as f64 / self.ticks_per_second as f64
    }
}

/// One agent's figures from its tree (none: it runs no process) and the last look at it.
/// Pure.
fn measured(
    name: &str,
    root: Option<(u32, TreeUse)>,
    last: Option<&Seen>,
    clock: &Clock,
) -> AgentUsage {
    let Some((pid, tree)) = root else {
        return AgentUsage {
            name: name.to_owned(),
            ..AgentUsage::default()
        };
    };
    let min_window = u64::try_from(MIN_WINDOW.as_millis())
        .unwrap_or(u64::MAX)
        .saturating_mul(clock.ticks_per_second)
        / 1000;
    // Since the last look at the same process, if long enough ago; else since it started.
    let (used, window) = match last {
        Some(seen)
            if seen.pid == pid && clock.now_ticks.saturating_sub(seen.at_ticks) >= min_window =>
        {
            (
                // A process that ended since takes its time with it: never below zero.
                tree.cpu_ticks.saturating_sub(seen.cpu_ticks),
                clock.now_ticks - seen.at_ticks,
            )
        }
        _ => (
            tree.cpu_ticks,
            clock.now_ticks.saturating_sub(tree.root_start_ticks),
        ),
    };
    let (cpu_percent, cpu_window_seconds) = if window == 0 {
        (None, None)
    } else {
        let percent = clock.seconds(used) / clock.seconds(window) * 100.0;
        (
            Some((percent * 10.0).round() / 10.0),
            Some(clock.seconds(window)),
        )
    };
    AgentUsage {
        name: name.to_owned(),
        processes: tree.processes,
        cpu_seconds: clock.seconds(tree.cpu_ticks),
        cpu_percent,
        cpu_window_seconds,
        memory_bytes: tree.rss_pages.saturating_mul(clock.page_size),
        disk_bytes: None,
        disk_note: None,
    }
}

impl HostCtl {
    /// Every agent's use of the host, or only agent `name`'s.
    pub fn usage(&self, name: Option<&str>) -> Result<UsageReport> {
        let names = match name {
            Some(name) => {
                crate::verbs::check_name(name)?;
                vec![name.to_owned()]
            }
            None => self.files.agent_names()?,
        };
        let proc = Path::new("/proc");
        let clock = Clock::read(proc)?;
        let panes = self.tmux.server_panes()?.unwrap_or_default();
        let procs = read_procs(proc);
        let mut agents: Vec<(String, PathBuf, Option<u32>)> = Vec::new();
        for agent in names {
            let meta = match self.files.read_meta(&agent) {
                Ok(meta) => meta,
                // The one asked for must exist; in a list, one whose meta.json is unreadable
                // is skipped (as `list` skips it).
                Err(e) if name.is_some() => return Err(e),
                Err(_) => continue,
            };
            let pid = panes
                .iter()
                .find(|p| p.session == agent && !p.dead)
                .and_then(|p| p.pid);
            agents.push((agent, meta.workspace_path, pid));
        }
        let roots: Vec<u32> = agents.iter().filter_map(|a| a.2).collect();
        let sums = trees(&procs, &roots);
        let last_path = self.files.home().join(LAST_LOOK);
        let mut last: BTreeMap<String, Seen> = std::fs::read(&last_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        let deadline = Instant::now() + DISK_BUDGET;
        let mut report = UsageReport::default();
        for (agent, workspace, pid) in agents {
            let root = pid.and_then(|pid| sums.get(&pid).map(|tree| (pid, *tree)));
            let mut usage = measured(&agent, root, last.get(&agent), &clock);
            match disk_use(&workspace, deadline) {
                Ok(bytes) => usage.disk_bytes = Some(bytes),
                Err(DiskUnknown::TooSlow) => {
                    usage.disk_note = Some(format!(
                        "not counted: the workspaces took more than {} s to count",
                        DISK_BUDGET.as_secs()
                    ));
                }
                Err(DiskUnknown::Unreadable(why)) => usage.disk_note = Some(why),
            }
            match root {
                Some((pid, tree)) => {
                    last.insert(
                        agent,
                        Seen {
                            pid,
                            cpu_ticks: tree.cpu_ticks,
                            at_ticks: clock.now_ticks,
                        },
                    );
                }
                None => {
                    last.remove(&agent);
                }
            }
            report.agents.push(usage);
        }
        // Losing this file only makes the next CPU percent an average since the start.
        let _ = write_atomically(&last_path, &last);
        Ok(report)
    }
}

/// Writes `value` as JSON to `path` through a temporary file and a rename, so that two calls
/// at once never leave half a file.
fn write_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let temporary = path.with_extension(format!("json.{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// `hostctl usage` for people: a line per agent.
pub fn text(report: &UsageReport) -> String {
    report
        .agents
        .iter()
        .map(|a| {
            format!(
                "{}\t{} processes\tcpu {}\tmem {} KiB\tdisk {}",
                a.name,
                a.processes,
                a.cpu_percent
                    .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%")),
                a.memory_bytes / 1024,
                a.disk_bytes
                    .map_or_else(|| "unknown".to_owned(), |b| format!("{} KiB", b / 1024))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(pid: u32, ppid: u32, cpu_ticks: u64, rss_pages: u64) -> ProcStat {
        ProcStat {
            pid,
            ppid,
            cpu_ticks,
            start_ticks: 1000,
            rss_pages,
        }
    }

    #[test]
    fn a_stat_line_is_read_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis of its own.
        let line = "4242 (we ird) x) S 17 4242 4242 0 -1 4194560 100 0 0 0 \
                    250 50 0 0 20 0 1 0 123456 10000000 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                pid: 4242,
                ppid: 17,
                cpu_ticks: 300,
                start_ticks: 123_456,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("12 (short) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn a_tree_sums_its_root_and_every_descendant_and_nothing_else() {
        let procs = [
            stat(1, 0, 5, 100),
            stat(10, 1, 7, 10), // agent a's pane
            stat(11, 10, 3, 20),
            stat(12, 11, 2, 30),    // a grandchild
            stat(20, 1, 100, 1000), // agent b's pane
            stat(21, 20, 1, 1),
            stat(30, 1, 9, 9), // no agent's
        ];
        let sums = trees(&procs, &[10, 20, 99]);
        assert_eq!(
            sums.get(&10),
            Some(&TreeUse {
                processes: 3,
                cpu_ticks: 12,
                rss_pages: 60,
                root_start_ticks: 1000
            })
        );
        assert_eq!(
            sums.get(&20).map(|t| (t.processes, t.rss_pages)),
            Some((2, 1001))
        );
        // A root that is gone has no figures.
        assert_eq!(sums.get(&99), None);
    }

    #[test]
    fn cpu_percent_is_since_the_last_look_else_since_the_start() {
        let clock = Clock {
            ticks_per_second: 100,
            page_size: 4096,
            now_ticks: 11_000,
        };
        let tree = TreeUse {
            processes: 2,
            cpu_ticks: 5_000,
            rss_pages: 256,
            root_start_ticks: 1_000,
        };
        // First look: 50 s of CPU over the 100 s since it started.
        let first = measured("a", Some((10, tree)), None, &clock);
        assert_eq!(first.cpu_percent, Some(50.0));
        assert_eq!(first.cpu_window_seconds, Some(100.0));
        assert_eq!(first.memory_bytes, 256 * 4096);
        assert_eq!(first.cpu_seconds, 50.0);
        // 2 s ago it had used 4.7 s: 0.3 s over 2 s.
        let seen = Seen {
            pid: 10,
            cpu_ticks: 4_970,
            at_ticks: 10_800,
        };
        let again = measured("a", Some((10, tree)), Some(&seen), &clock);
        assert_eq!(again.cpu_percent, Some(15.0));
        assert_eq!(again.cpu_window_seconds, Some(2.0));
        // Another process since (a restart): since its start again.
        let other = Seen { pid: 11, ..seen };
        assert_eq!(
            measured("a", Some((10, tree)), Some(&other), &clock).cpu_percent,
            Some(50.0)
        );
        // Too soon after the last look: since its start.
        let soon = Seen {
            at_ticks: 10_990,
            ..seen
        };
        assert_eq!(
            measured("a", Some((10, tree)), Some(&soon), &clock).cpu_percent,
            Some(50.0)
        );
        // Not running: nothing.
        let none = measured("a", None, Some(&seen), &clock);
        assert_eq!(
            (none.processes, none.memory_bytes, none.cpu_percent),
            (0, 0, None)
        );
    }

    #[test]
    fn disk_use_counts_blocks_and_a_hard_linked_file_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let far = Instant::now() + Duration::from_secs(30);
        let empty = disk_use(dir.path(), far).expect("counted");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/blob"), vec![7u8; 1 << 20]).expect("write");
        let one = disk_use(dir.path(), far).expect("counted");
        assert!(one >= empty + (1 << 20), "{one} after {empty}");
        std::fs::hard_link(dir.path().join("sub/blob"), dir.path().join("again")).expect("link");
        std::os::unix::fs::symlink("/usr", dir.path().join("elsewhere")).expect("symlink");
        let linked = disk_use(dir.path(), far).expect("counted");
        // The second name and the symlink add next to nothing (a link's own inode, if any).
        assert!(linked < one + 64 * 1024, "{linked} after {one}");
        // What du says of the same directory, within a few blocks.
        if let Ok(out) = std::process::Command::new("du")
            .arg("-sk")
            .arg(dir.path())
            .output()
        {
            let du_kib: u64 = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .unwrap_or(0);
            assert_eq!(linked / 1024, du_kib, "du says {du_kib} KiB");
        }
        // Past the deadline: unknown, not a guess.
        assert_eq!(
            disk_use(dir.path(), Instant::now()),
            Err(DiskUnknown::TooSlow)
        );
        assert!(matches!(
            disk_use(&dir.path().join("nothing"), far),
            Err(DiskUnknown::Unreadable(_))
        ));
    }

    #[test]
    fn this_process_is_found_with_its_memory() {
        let Ok(clock) = Clock::read(Path::new("/proc")) else {
            return;
        };
        let me = std::process::id();
        let procs = read_procs(Path::new("/proc"));
        let sums = trees(&procs, &[me]);
        let tree = sums.get(&me).expect("this process is in /proc");
        assert!(tree.processes >= 1);
        assert!(tree.rss_pages * clock.page_size > 1 << 20);
    }
}
