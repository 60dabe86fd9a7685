//! The processes an agent's run started, found by a mark in their environment: the agent's
//! process is launched with `AGENTGATE_RUN=<its directory>` (`$AGENTGATE_HOME/agents/NAME`,
//! which tells apart agents of one name under two homes of one machine, as after a migration
//! between two hosts that share it), and every process it starts inherits it,
//! those that leave its tmux session too (daemons that call setsid or fork twice, which tmux's
//! SIGHUP on kill-session never reaches). Stopping or destroying an agent ends them.
//!
//! Sessions inside an agent (`ssh NAME@gw CMD`, SFTP, a new tmux window) get no mark: they are
//! the operator's, not the agent's run. Linux's /proc tells whose environment holds the mark;
//! on a host without /proc none are found, and stopping ends the tmux session only.

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, getuid};

/// The variable that marks an agent's run.
pub const RUN_MARK: &str = "AGENTGATE_RUN";

/// How long processes are given to end on SIGTERM before they get SIGKILL.
pub const GRACE: Duration = Duration::from_secs(3);

/// This user's processes (hostctl itself excepted) whose environment holds the mark `mark`
/// (an agent's directory), as /proc under `proc` shows them.
pub fn marked(proc: &Path, mark: &Path) -> Vec<i32> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut wanted = format!("{RUN_MARK}=").into_bytes();
    wanted.extend_from_slice(mark.as_os_str().as_bytes());
    let me = std::process::id();
    let uid = getuid().as_raw();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == me) {
            continue;
        }
        // Another user's process is not ours to end (root's hostctl owns root's agents only).
        if !entry.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        // Unreadable (gone, or a zombie's empty environment): not one of them.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|&b| b == 0)
            .any(|var| var == wanted.as_slice())
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    pids
}

/// Ends every process of the run marked `mark` (an agent's directory): SIGTERM, then SIGKILL
/// for those still there after `grace`. Returns how many there were.
pub fn end_run(mark: &Path, grace: Duration) -> usize {
    end_marked(Path::new("/proc"), mark, grace)
}

fn end_marked(proc: &Path, mark: &Path, grace: Duration) -> usize {
    let pids = marked(proc, mark);
    for &pid in &pids {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let started = Instant::now();
    loop {
        let left = marked(proc, mark);
        if left.is_empty() {
            break;
        }
        if started.elapsed() >= grace {
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn alive(pid: i32) -> bool {
        // A zombie (ended, not yet reaped) counts as gone.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            !s.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
    }

    #[test]
    fn a_daemon_that_left_the_session_is_found_by_its_mark_and_ended() {
        if !Path::new("/proc/self/environ").exists() {
            return;
        }
        let name = std::env::temp_dir().join(format!("procs-test-{}", std::process::id()));
        // A process that leaves its session and ignores SIGTERM: it needs the SIGKILL.
        let mut marked_child = Command::new("setsid")
            .args(["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"])
            .env(RUN_MARK, &name)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn setsid");
        // The same, with another agent's mark, and one with none: both left alone.
        let mut other = Command::new("sleep")
            .arg("30")
            .env(RUN_MARK, name.join("other"))
            .spawn()
            .expect("spawn sleep");
        let mut unmarked = Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let deadline = Instant::now() + Duration::from_secs(5);
        while marked(Path::new("/proc"), &name).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let found = marked(Path::new("/proc"), &name);
        // setsid's shell and its sleep children: at least the shell.
        assert!(!found.is_empty(), "nothing marked {}", name.display());
        assert!(!found.contains(&i32::try_from(other.id()).unwrap_or(0)));
        assert!(!found.contains(&i32::try_from(unmarked.id()).unwrap_or(0)));
        let ended = end_marked(Path::new("/proc"), &name, Duration::from_millis(300));
        assert!(ended >= 1);
        let _ = marked_child.wait();
        // By the mark, not by the pids found: under load, the pid of a `sleep 0.1` that ended
        // may be another process's by now.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !marked(Path::new("/proc"), &name).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = marked(Path::new("/proc"), &name);
        assert!(left.is_empty(), "still running: {left:?} (found {found:?})");
        assert!(alive(i32::try_from(other.id()).unwrap_or(0)));
        assert!(alive(i32::try_from(unmarked.id()).unwrap_or(0)));
        let _ = other.kill();
        let _ = unmarked.kill();
        let _ = other.wait();
        let _ = unmarked.wait();
    }

    #[test]
    fn no_proc_means_nothing_found() {
        assert!(marked(Path::new("/nonexistent-proc"), Path::new("/x")).is_empty());
        assert_eq!(
            end_marked(
                Path::new("/nonexistent-proc"),
                Path::new("/x"),
                Duration::ZERO
            ),
            0
        );
    }
}
