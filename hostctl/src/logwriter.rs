//! `hostctl log-writer PATH`: what tmux's `pipe-pane` runs to keep an agent's output in
//! `output.log`. It appends what the pane prints and, when the file would pass its limit,
//! moves it to `output.log.1` (replacing the one before) and starts a new one, so an agent
//! that prints for weeks keeps at most twice the limit on disk.
//!
//! Beside each log it keeps its times, `output.log.times`: a line `OFFSET MILLISECONDS` when
//! output arrives [`TICK`] or more after the output before it, or [`TICK`] or more after the
//! last line: the bytes before OFFSET were all the pane had printed, and the last of them came
//! MILLISECONDS before the next. So the file marks each pause, and each [`TICK`] of output
//! that does not stop, as `logs -f` would have seen it polling; `logs` replays it (see
//! `logview`) to tell a line that stayed on the screen, such as a question that was answered
//! and erased, from a spinner's frame. At most one line per [`TICK`]: about 100 KiB for an
//! hour of output that never stops, far less than the output.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The default limit of one output.log: 32 MiB (so at most 64 MiB per agent).
pub const DEFAULT_MAX: u64 = 32 * 1024 * 1024;

/// The variable that sets another limit, in bytes, for the agents started after it is set.
pub const MAX_VAR: &str = "AGENTGATE_LOG_MAX";

/// The limit for agents started now: `$AGENTGATE_LOG_MAX` if it is a number of bytes of at
/// least 4 KiB, else [`DEFAULT_MAX`].
pub fn max_from_env() -> u64 {
    std::env::var(MAX_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&n| n >= 4096)
        .unwrap_or(DEFAULT_MAX)
}

/// Where the previous output.log goes when a new one starts.
pub fn previous(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The times of the log at `path`: `output.log.times` beside `output.log`.
pub fn times(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".times");
    PathBuf::from(name)
}

/// The least time between two lines of the times file: `logs -f`'s poll.
pub const TICK: Duration = Duration::from_millis(200);

/// One line of a times file: after the bytes before `offset`, nothing came for `millis`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pause {
    pub offset: u64,
    pub millis: u64,
}

impl Pause {
    /// A line of a times file; `None` for one that is not `OFFSET MILLISECONDS`.
    pub fn parse(line: &str) -> Option<Pause> {
        let (offset, millis) = line.trim().split_once(' ')?;
        Some(Pause {
            offset: offset.parse().ok()?,
            millis: millis.parse().ok()?,
        })
    }
}

fn open(path: &Path) -> io::Result<(File, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// Appends `input` to `path` until `input` ends, starting a new file (the old one moved to
/// [`previous`]) whenever the next chunk would take it past `max` bytes, and notes the pauses
/// in [`times`].
pub fn write_log(mut input: impl Read, path: &Path, max: u64) -> io::Result<()> {
    let (mut file, mut len) = open(path)?;
    let mut clock = open(&times(path))?.0;
    let mut noted = Instant::now();
    let mut last_chunk = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = u64::try_from(n).unwrap_or(u64::MAX);
        if len > 0 && len.saturating_add(chunk) > max {
            std::fs::rename(path, previous(path))?;
            // The times go with their log; a missing one (a log from before times were kept)
            // is no reason to stop.
            let _ = std::fs::rename(times(path), times(&previous(path)));
            (file, len) = open(path)?;
            clock = open(&times(path))?.0;
        }
        let now = Instant::now();
        let quiet = now.duration_since(last_chunk);
        last_chunk = now;
        if quiet >= TICK || now.duration_since(noted) >= TICK {
            noted = now;
            // The times only help `logs` read the log: losing a line loses no output.
            let _ = writeln!(clock, "{len} {}", quiet.as_millis());
        }
        file.write_all(&buf[..n])?;
        len = len.saturating_add(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `input` in chunks of `size` bytes, as a pipe delivers a pane's output.
    struct Chunks<'a> {
        data: &'a [u8],
        size: usize,
    }

    impl Read for Chunks<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.size.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn output_past_the_limit_starts_a_new_file_and_keeps_the_one_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        let data: Vec<u8> = (0..10_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        write_log(
            Chunks {
                data: &data,
                size: 1000,
            },
            &path,
            3000,
        )
        .expect("write");
        let current = std::fs::read(&path).expect("current");
        let before = std::fs::read(previous(&path)).expect("previous");
        // 10 chunks of 1000 with room for 3 per file: files of 3, 3, 3, 1 chunks; the last
        // two remain, and together they are the end of the output, in order.
        assert_eq!(current.len(), 1000);
        assert_eq!(before.len(), 3000);
        assert_eq!([before, current].concat(), data[6000..]);
        // Appending again continues the current file.
        write_log(
            Chunks {
                data: b"more",
                size: 4,
            },
            &path,
            3000,
        )
        .expect("write");
        assert!(std::fs::read(&path).expect("current").ends_with(b"more"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    /// Gives `chunks` one at a time, sleeping `pause` before each after the first.
    struct Slow<'a> {
        chunks: std::collections::VecDeque<&'a [u8]>,
        pause: Duration,
        first: bool,
    }

    impl Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some(chunk) = self.chunks.pop_front() else {
                return Ok(0);
            };
            if !self.first {
                std::thread::sleep(self.pause);
            }
            self.first = false;
            buf[..chunk.len()].copy_from_slice(chunk);
            Ok(chunk.len())
        }
    }

    fn pauses(path: &Path) -> Vec<Pause> {
        std::fs::read_to_string(times(path))
            .unwrap_or_default()
            .lines()
            .map(|l| Pause::parse(l).expect("a times line"))
            .collect()
    }

    #[test]
    fn a_pause_in_the_output_is_noted_with_where_it_happened_and_goes_with_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        let chunks: [&[u8]; 3] = [b"question?", b" answer", b" more"];
        write_log(
            Slow {
                chunks: chunks.into_iter().collect(),
                pause: TICK + Duration::from_millis(50),
                first: true,
            },
            &path,
            4096,
        )
        .expect("write");
        let noted = pauses(&path);
        // The first chunk came at once; each of the others after a pause, noted where it began.
        assert_eq!(
            noted.iter().map(|p| p.offset).collect::<Vec<_>>(),
            [9, 16],
            "{noted:?}"
        );
        assert!(noted.iter().all(|p| p.millis >= 250), "{noted:?}");
        // A new log starts: its times start anew too, the old ones beside the old log.
        write_log(
            Slow {
                chunks: [&[b'x'; 4096][..]].into_iter().collect(),
                pause: Duration::ZERO,
                first: true,
            },
            &path,
            4096,
        )
        .expect("write");
        assert_eq!(pauses(&previous(&path)).len(), 2);
        assert!(pauses(&path).is_empty());
        assert_eq!(Pause::parse("12 x"), None);
    }

    #[test]
    fn a_chunk_larger_than_the_limit_is_kept_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("output.log");
        write_log(
            Chunks {
                data: &[b'x'; 5000],
                size: 5000,
            },
            &path,
            4096,
        )
        .expect("write");
        assert_eq!(std::fs::read(&path).expect("current").len(), 5000);
        assert!(!previous(&path).exists());
    }
}
