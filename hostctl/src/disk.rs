//! Free space on the host's disks: hostctl never fills one. What it writes in bulk (a
//! snapshot's archive, an archive received for a restore, a workspace unpacked from another
//! host or from a snapshot) stops with an error, and leaves nothing, when the filesystem it
//! writes to would keep less than the reserve free, so that the agents running there, and the
//! host itself, can go on writing.
//!
//! The reserve is `$AGENTGATE_DISK_RESERVE` (bytes, or with a K, M or G suffix, binary; `0`
//! turns the check off), else 1 % of the filesystem, at most [`DEFAULT_RESERVE_MAX`].

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::verbs::drain_stderr;

/// The variable that sets the reserve.
pub const RESERVE_VAR: &str = "AGENTGATE_DISK_RESERVE";

/// The most the default reserve keeps free: 256 MiB.
pub const DEFAULT_RESERVE_MAX: u64 = 256 * 1024 * 1024;

/// How often a writer that is another process (`tar -x`) is checked on (at 1 GB/s, 10 MB
/// may be written between two looks: well within any reserve).
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// The space to keep free on the filesystem that holds `path`.
#[derive(Clone, Debug)]
pub struct Reserve {
    path: PathBuf,
    keep: u64,
}

impl Reserve {
    /// The reserve for the filesystem of `path` (which must exist), from the environment.
    pub fn for_path(path: &Path) -> Result<Reserve> {
        let keep = match std::env::var(RESERVE_VAR) {
            Ok(value) => parse_size(&value).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{RESERVE_VAR}='{}' is not a size: give bytes, or a number with K, M or G (0 turns the check off)",
                    value.escape_debug()
                ))
            })?,
            Err(_) => {
                let fs = statvfs(path)?;
                (fs.size / 100).min(DEFAULT_RESERVE_MAX)
            }
        };
        Ok(Reserve {
            path: path.to_owned(),
            keep,
        })
    }

    /// Fails when writing `more` bytes now would leave less than the reserve free.
    pub fn check(&self, more: u64, what: &str) -> Result<()> {
        if self.keep == 0 {
            return Ok(());
        }
        let free = statvfs(&self.path)?.free;
        if free.saturating_sub(more) < self.keep {
            return Err(self.full(free, more, what));
        }
        Ok(())
    }

    fn full(&self, free: u64, more: u64, what: &str) -> Error {
        let needs = if more > 0 {
            format!(" needs {} and", size_text(more))
        } else {
            String::new()
        };
        Error::Failed(format!(
            "not enough disk space: {what}{needs} would leave less than the {} kept free on the filesystem of {} ({} free now; ${RESERVE_VAR} sets the reserve); free some space on the host (old snapshots: ssh gw snapshot remove ID) and try again",
            size_text(self.keep),
            self.path.display(),
            size_text(free),
        ))
    }

    /// Runs `command` (which writes to this filesystem), stopping it when free space falls
    /// below the reserve; returns how it ended and what it wrote to stderr, or, if it had to
    /// be stopped, the error saying why (`what` names the work).
    pub fn run_watched(&self, command: &mut Command, what: &str) -> Result<(ExitStatus, String)> {
        let program = command.get_program().to_string_lossy().into_owned();
        let spawn_error = |source| Error::Spawn {
            program: program.clone(),
            source,
        };
        let mut child = command
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        let stderr = drain_stderr(&mut child);
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
        let mut stopped = None;
        loop {
            // Ended, but not reaped (WNOWAIT): its pid cannot be another process's while it is
            // killed here.
            match waitid(
                Id::Pid(pid),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT,
            ) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
            if stopped.is_none()
                && self.keep > 0
                && let Ok(fs) = statvfs(&self.path)
                && fs.free < self.keep
            {
                let _ = kill(pid, Signal::SIGKILL);
                stopped = Some(self.full(fs.free, 0, what));
            }
            std::thread::sleep(WATCH_EVERY);
        }
        let status = child.wait().map_err(spawn_error)?;
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        match stopped {
            Some(e) => Err(e),
            None => Ok((status, stderr)),
        }
    }
}

/// Whether a writer whose total is now `total`, after `n` more bytes, crossed a MiB boundary:
/// the moments a writer in this process checks its reserve.
pub fn crossed_mib(total: u64, n: usize) -> bool {
    (total >> 20) != (total.saturating_sub(n as u64) >> 20)
}

struct Space {
    /// The filesystem's size, in bytes.
    size: u64,
    /// What an unprivileged user may still write, in bytes.
    free: u64,
}

fn statvfs(path: &Path) -> Result<Space> {
    let fs = nix::sys::statvfs::statvfs(path)
        .map_err(|e| Error::io("reading the free space of", path)(e.into()))?;
    let unit = fs.fragment_size();
    Ok(Space {
        size: fs.blocks().saturating_mul(unit),
        free: fs.blocks_available().saturating_mul(unit),
    })
}

/// `1234`, `64K`, `512M`, `2G` (binary units; `k`, `MiB`, `GB` are read the same way).
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

/// A size for people: `512 B`, `3.2 MiB`, `1.0 GiB`.
pub fn size_text(bytes: u64) -> String {
    in_units(bytes, &["KiB", "MiB", "GiB", "TiB"], " ")
}

/// A size for a table's column: `512B`, `64.0M`, `1.5G`.
pub fn size_short(bytes: u64) -> String {
    in_units(bytes, &["K", "M", "G", "T", "P"], "")
}

/// `bytes` in the largest of `units` (powers of 1024) it reaches, to one decimal.
fn in_units(bytes: u64, units: &[&str], space: &str) -> String {
    if bytes < 1024 {
        return format!("{bytes}{space}B");
    }
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{space}{}", units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_read_in_binary_units_and_nonsense_is_refused() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("64K"), Some(64 * 1024));
        assert_eq!(parse_size(" 8 MiB "), Some(8 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("12T"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(size_text(0), "0 B");
        assert_eq!(size_text(1023), "1023 B");
        assert_eq!(size_text(1536), "1.5 KiB");
        assert_eq!(size_text(3 << 20), "3.0 MiB");
        assert_eq!(size_text(u64::MAX), "16777216.0 TiB");
        assert_eq!(size_short(512), "512B");
        assert_eq!(size_short(64 << 20), "64.0M");
        assert_eq!(size_short(3 << 29), "1.5G");
        assert_eq!(size_short(u64::MAX), "16384.0P");
    }

    #[test]
    fn writers_check_once_per_mib_written() {
        let mut total = 0u64;
        let mut checks = 0;
        for n in std::iter::repeat_n(300_000usize, 40) {
            total += n as u64;
            checks += usize::from(crossed_mib(total, n));
        }
        assert_eq!((total >> 20, checks), (11, 11));
        assert!(crossed_mib(1 << 20, 1));
        assert!(!crossed_mib((1 << 20) - 1, 1));
    }

    #[test]
    fn the_check_counts_what_is_about_to_be_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = statvfs(dir.path()).expect("statvfs").free;
        let reserve = Reserve {
            path: dir.path().to_owned(),
            keep: free / 2,
        };
        reserve.check(0, "a test").expect("room");
        let err = reserve.check(free, "writing it all").expect_err("no room");
        let text = err.to_string();
        assert!(
            text.contains("not enough disk space: writing it all needs"),
            "{text}"
        );
        assert!(text.contains(RESERVE_VAR), "{text}");
        let off = Reserve {
            path: dir.path().to_owned(),
            keep: 0,
        };
        off.check(u64::MAX, "anything").expect("no reserve");
    }

    #[test]
    fn a_watched_process_is_stopped_when_the_reserve_is_reached() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = statvfs(dir.path()).expect("statvfs").free;
        // A reserve above what is free: the process is stopped at once.
        let reserve = Reserve {
            path: dir.path().to_owned(),
            keep: free.saturating_add(1 << 30),
        };
        let err = reserve
            .run_watched(Command::new("sleep").arg("60"), "a test")
            .expect_err("stopped");
        assert!(
            err.to_string().contains("not enough disk space: a test"),
            "{err}"
        );
        // With room, it never acts, and what the process says is kept.
        let room = Reserve {
            path: dir.path().to_owned(),
            keep: 1,
        };
        let (status, stderr) = room
            .run_watched(
                Command::new("sh").args(["-c", "echo said >&2; exit 3"]),
                "a test",
            )
            .expect("ran");
        assert_eq!((status.code(), stderr.as_str()), (Some(3), "said\n"));
    }
}
