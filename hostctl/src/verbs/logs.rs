//! An agent's output: `output.log` read back whole, its last lines, or followed, as a person
//! would have read it on the screen (replayed through a terminal emulator) or raw.

use super::*;

impl HostCtl {
    /// Writes the last `lines` lines of the agent's output (all of it for `None`), then, with
    /// `follow`, keeps writing what the agent prints until the writer fails.
    ///
    /// Without `raw` the output is rendered through a terminal emulator at the pane's size
    /// (see [`crate::logview`]): lines as they read on the screen, each redraw printed once.
    /// With `raw` the bytes are written as the pane printed them, and `lines` counts line
    /// breaks in them.
    pub fn logs(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        raw: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        check_name(name)?;
        let meta = self.files.read_meta(name)?;
        if let Some(n) = lines
            && n > MAX_LOG_LINES
        {
            return Err(Error::InvalidInput(format!(
                "-n {n} is more lines than logs keeps ({MAX_LOG_LINES}); ask for fewer, or leave -n out for the whole log"
            )));
        }
        if raw {
            return self.logs_raw(name, lines, follow, out);
        }
        let path = self.files.log_path(name);
        let previous = crate::logwriter::previous(&path);
        let size = self.pane_size(name, &meta);
        let mut renderer = Renderer::new(size.cols, size.rows);
        let mut last = lines.map(|n| LastLines::new(n, MAX_LOG_TAIL_BYTES));
        let mut writer = WriteLines(out);
        // The whole output is replayed, the file the last one moved to first (see
        // `logwriter`): what a line reads depends on everything printed before it.
        {
            let sink: &mut dyn LineSink = match last.as_mut() {
                Some(last) => last,
                None => &mut writer,
            };
            if let Ok(mut before) = std::fs::File::open(&previous) {
                let mut times = Times::open(&previous);
                render_file(&mut before, times.as_mut(), &mut renderer, sink)
                    .map_err(|e| e.into_error(&previous))?;
            }
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening", path)(e)),
        };
        {
            let sink: &mut dyn LineSink = match last.as_mut() {
                Some(last) => last,
                None => &mut writer,
            };
            if let Some(f) = file.as_mut() {
                let mut times = Times::open(&path);
                render_file(f, times.as_mut(), &mut renderer, sink)
                    .map_err(|e| e.into_error(&path))?;
            }
            if follow {
                renderer.settle(true, sink)
            } else {
                renderer.finish(sink)
            }
            .map_err(Error::io("writing", "stdout"))?;
        }
        if let Some(last) = last {
            for line in last.into_lines() {
                writer.line(&line).map_err(Error::io("writing", "stdout"))?;
            }
        }
        writer.0.flush().map_err(Error::io("writing", "stdout"))?;
        if !follow {
            return Ok(());
        }
        // Rows are printed once they stayed the same for one poll, so a new line shows within
        // two polls and a spinner that turns at each poll shows when it stops.
        let mut polls = 0u32;
        loop {
            std::thread::sleep(LOG_POLL);
            polls = polls.wrapping_add(1);
            if polls.is_multiple_of(LOG_SIZE_POLLS)
                && let Ok(Some(pane)) = self.tmux.pane(name)
            {
                renderer.resize(pane.cols, pane.rows);
            }
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                match render_file(f, None, &mut renderer, &mut writer) {
                    Ok(_) => {}
                    // A write error means the reader went away: that ends `-f`.
                    Err(RenderError::Write(_)) => return Ok(()),
                    Err(e) => return Err(e.into_error(&path)),
                }
                // The writer started a new file: the one read is now output.log.1, which it
                // no longer writes to; read what it wrote there last, then go on from the new
                // file's start.
                if replaced(f, &path) {
                    match render_file(f, None, &mut renderer, &mut writer) {
                        Ok(_) => {}
                        Err(RenderError::Write(_)) => return Ok(()),
                        Err(e) => return Err(e.into_error(&path)),
                    }
                    file = std::fs::File::open(&path).ok();
                }
            }
            if renderer.settle(false, &mut writer).is_err() || writer.0.flush().is_err() {
                return Ok(());
            }
            if !self.files.meta_path(name).exists() {
                return Ok(());
            }
        }
    }

    /// The size the agent's output is rendered at: its pane's now, else the size it was
    /// created or last started with.
    fn pane_size(&self, name: &str, meta: &AgentMeta) -> TermSize {
        match self.tmux.pane(name) {
            Ok(Some(pane)) if pane.cols > 0 && pane.rows > 0 => TermSize {
                cols: pane.cols,
                rows: pane.rows,
            },
            _ => meta.request.size.unwrap_or_default(),
        }
        .bounded()
    }

    /// `logs --raw`: the bytes as the pane printed them.
    fn logs_raw(
        &self,
        name: &str,
        lines: Option<usize>,
        follow: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let path = self.files.log_path(name);
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("opening", path)(e)),
        };
        // The whole output: the file the last one moved to first (see `logwriter`).
        if lines.is_none() {
            let previous = crate::logwriter::previous(&path);
            if let Ok(mut before) = std::fs::File::open(&previous) {
                copy_to(&mut before, out).map_err(Error::io("reading", &previous))?;
            }
        }
        if let Some(file) = file.as_mut() {
            let start = match lines {
                Some(n) => tail_offset(file, n).map_err(Error::io("reading", &path))?,
                None => 0,
            };
            file.seek(SeekFrom::Start(start))
                .map_err(Error::io("reading", &path))?;
            copy_to(file, out).map_err(Error::io("reading", &path))?;
        }
        out.flush().map_err(Error::io("writing", "stdout"))?;
        if !follow {
            return Ok(());
        }
        loop {
            std::thread::sleep(LOG_POLL);
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            if let Some(f) = file.as_mut() {
                // A write error means the reader went away: that ends `-f`.
                if copy_to(f, out).is_err() || out.flush().is_err() {
                    return Ok(());
                }
                if replaced(f, &path) {
                    if copy_to(f, out).is_err() || out.flush().is_err() {
                        return Ok(());
                    }
                    file = std::fs::File::open(&path).ok();
                    continue;
                }
            }
            if !self.files.meta_path(name).exists() {
                return Ok(());
            }
        }
    }
}

/// Whether `path` is now another file than `open` (it was moved away and a new one made).
fn replaced(open: &std::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (open.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) != (b.dev(), b.ino()),
        _ => false,
    }
}

/// The byte offset where the last `lines` lines of `file` begin.
fn tail_offset(file: &mut std::fs::File, lines: usize) -> std::io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if lines == 0 {
        return Ok(len);
    }
    let mut pos = len;
    let mut newlines = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    // A final newline ends the last line rather than starting an empty one.
    let mut skip_last_newline = true;
    while pos > 0 {
        let chunk = buf.len().min(pos as usize);
        pos -= chunk as u64;
        file.seek(SeekFrom::Start(pos))?;
        file.read_exact(&mut buf[..chunk])?;
        for i in (0..chunk).rev() {
            if buf[i] != b'\n' {
                skip_last_newline = false;
                continue;
            }
            if skip_last_newline {
                skip_last_newline = false;
                continue;
            }
            newlines += 1;
            if newlines == lines {
                return Ok(pos + i as u64 + 1);
            }
        }
    }
    Ok(0)
}

fn copy_to(file: &mut std::fs::File, out: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
    }
}

/// How often `logs -f` looks for new output.
const LOG_POLL: Duration = Duration::from_millis(200);

/// `logs -f` looks at the pane's size every this many polls (each look runs tmux).
const LOG_SIZE_POLLS: u32 = 5;

/// The most lines `logs -n` keeps: they are held until the log is rendered to its end.
pub const MAX_LOG_LINES: usize = 100_000;

/// The most text `logs -n` holds, whatever the number of lines.
const MAX_LOG_TAIL_BYTES: usize = 32 * 1024 * 1024;

/// A failure while rendering a file: reading it or writing the lines out.
enum RenderError {
    Read(std::io::Error),
    Write(std::io::Error),
}

impl RenderError {
    fn into_error(self, path: &Path) -> Error {
        match self {
            RenderError::Read(e) => Error::io("reading", path)(e),
            RenderError::Write(e) => Error::io("writing", "stdout")(e),
        }
    }
}

/// The times of a log (see [`crate::logwriter`]), read a line at a time.
struct Times {
    reader: std::io::BufReader<std::fs::File>,
    line: Vec<u8>,
}

impl Times {
    /// The times of the log at `log`, if it has them (logs written before they were kept
    /// do not, and are replayed without: a line erased in place is then lost).
    fn open(log: &Path) -> Option<Times> {
        let file = std::fs::File::open(crate::logwriter::times(log)).ok()?;
        Some(Times {
            reader: std::io::BufReader::new(file),
            line: Vec::new(),
        })
    }

    /// The next pause at or after byte `from` of the log.
    fn next_from(&mut self, from: u64) -> Option<crate::logwriter::Pause> {
        use std::io::BufRead;
        loop {
            self.line.clear();
            // A line is a few digits: one longer than this is not a line of ours.
            let read = (&mut self.reader)
                .take(64)
                .read_until(b'\n', &mut self.line)
                .ok()?;
            if read == 0 {
                return None;
            }
            let pause = std::str::from_utf8(&self.line)
                .ok()
                .and_then(crate::logwriter::Pause::parse);
            if let Some(pause) = pause
                && pause.offset >= from
            {
                return Some(pause);
            }
        }
    }
}

/// Of the marks in a log's times that output went on without pausing, one in this many is
/// replayed (see [`render_file`]), times one per 50 rows of the screen.
const BUSY_MARKS_REPLAYED: u64 = 5;

/// Feeds what is left of `file` to the renderer, its lines to `sink`, with the pauses its
/// `times` note where they happened.
fn render_file(
    file: &mut std::fs::File,
    mut times: Option<&mut Times>,
    renderer: &mut Renderer,
    sink: &mut dyn LineSink,
) -> std::result::Result<(), RenderError> {
    let mut at = file.stream_position().map_err(RenderError::Read)?;
    let mut pause = times.as_mut().and_then(|t| t.next_from(at));
    let tick = crate::logwriter::TICK.as_millis().max(1) as u64;
    let mut busy_marks = 0u64;
    // A look reads the rows that changed, every row when the screen scrolled: on a tall
    // screen, fewer looks while output goes on (a pause is always replayed).
    let rows = renderer.size().1 as u64;
    let busy_every = BUSY_MARKS_REPLAYED * (rows / 50).max(1);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(RenderError::Read(e)),
        };
        let mut chunk = &buf[..n];
        while let Some(p) = pause
            && p.offset <= at + chunk.len() as u64
        {
            let cut = usize::try_from(p.offset.saturating_sub(at)).unwrap_or(chunk.len());
            let (before, after) = chunk.split_at(cut.min(chunk.len()));
            renderer.feed(before, sink).map_err(RenderError::Write)?;
            // A mark of output that did not pause (one per poll of it) is replayed one in
            // five: a line must stay a second, not a fifth, to print before the next pause or
            // scrolls off, and the replay costs a fifth (one look is a screen's worth of work).
            let polls = p.millis / tick;
            busy_marks = if polls == 0 { busy_marks + 1 } else { 0 };
            if polls > 0 || busy_marks.is_multiple_of(busy_every) {
                renderer.quiet(polls, sink).map_err(RenderError::Write)?;
            }
            chunk = after;
            at = at.max(p.offset);
            pause = times.as_mut().and_then(|t| t.next_from(at + 1));
        }
        renderer.feed(chunk, sink).map_err(RenderError::Write)?;
        at += chunk.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(content: &str, n: usize) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(&path, content).expect("write");
        let mut f = std::fs::File::open(&path).expect("open");
        let off = tail_offset(&mut f, n).expect("tail") as usize;
        content[off..].to_owned()
    }

    #[test]
    fn tail_finds_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a\nb\nc\n", 10), "a\nb\nc\n");
        assert_eq!(tail("a\nb\nc\n", 0), "");
        assert_eq!(tail("", 3), "");
    }

    #[test]
    fn tail_crosses_block_boundaries() {
        let content: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(tail(&content, 3), "line 19997\nline 19998\nline 19999\n");
    }
}
