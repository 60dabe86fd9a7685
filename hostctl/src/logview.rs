//! `output.log` as lines a person reads: what `hostctl logs` prints without `--raw`.
//!
//! The log holds the bytes the pane printed, escapes and all. Agent CLIs draw their screens
//! with those escapes: Claude Code places each word with a cursor move, spinners rewrite a
//! row with a carriage return, status blocks are redrawn in place by moving the cursor up.
//! Stripping the escapes loses the spaces and keeps every redraw, so the bytes are replayed
//! here through a terminal emulator, [`avt`] (asciinema's virtual terminal, a VT parser with a
//! screen model), and lines are taken from its screen:
//!
//! - a row that scrolls off the top of the screen is final and printed once (rows joined where
//!   the terminal wrapped them);
//! - an erase of the whole screen (`ESC [ 2 J`) makes its rows final too, except the ones
//!   already printed: a program that clears and redraws the same screen prints it once;
//! - at the end of the log the rows still on the screen are printed;
//! - while following (`-f`), a row is printed once it has stayed the same for one poll of the
//!   log, or, for a row that keeps changing (a spinner, a countdown), for 1.6 s: it prints
//!   when it stops, not at each frame; a row held back that way prints before a line below it;
//! - reading a log from its start, the polls `-f` would have made are replayed from the log's
//!   times ([`Renderer::quiet`], see `logwriter`), so a line that stayed on the screen a while
//!   and was erased in place (a question answered) prints too, as `-f` printed it;
//! - the alternate screen (full-screen programs: editors, pagers) is printed as its last
//!   frame when the program leaves it, or at the end of the log if it is still up.
//!
//! Which rows were printed is tracked per row of the screen, and compared by a longest common
//! subsequence (then in any order), so a block that moves down the screen as text appears above
//! it (every agent CLI's input box) is not printed again. The price: right after the screen is
//! erased, the same lines printed again count as a redraw, even when a program printed them
//! anew.
//!
//! Memory is one screen (at most 1000 x 1000 cells), the rows printed from it, and one line
//! being wrapped (at most [`MAX_LINE_CHARS`]); the emulator keeps no scrollback.
//!
//! This module does no I/O of its own: bytes in, lines out through a [`LineSink`].

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};

use avt::parser::{DecMode, EdScope, Function};
use avt::{Line, Observation, Observer, Operation, ScreenKind, Terminal};

/// The longest line printed whole: a longer one (a program that writes megabytes without a
/// line break) is printed in pieces of this many characters.
pub const MAX_LINE_CHARS: usize = 64 * 1024;

/// At most this many blank lines in a row are printed (the rest say nothing more).
const MAX_HELD_BLANKS: usize = 1000;

/// Input is fed to the emulator in pieces of at most this many bytes, so the lines one piece
/// makes, held until they are written, stay few.
const FEED_PIECE: usize = 4096;

/// Where rendered lines go. Each line comes without its line break.
pub trait LineSink {
    fn line(&mut self, text: &str) -> io::Result<()>;
}

/// Writes each line and a line break.
pub struct WriteLines<'a>(pub &'a mut dyn Write);

impl LineSink for WriteLines<'_> {
    fn line(&mut self, text: &str) -> io::Result<()> {
        self.0.write_all(text.as_bytes())?;
        self.0.write_all(b"\n")
    }
}

impl LineSink for Vec<String> {
    fn line(&mut self, text: &str) -> io::Result<()> {
        self.push(text.to_owned());
        Ok(())
    }
}

/// Keeps the last `lines` lines, and at most `max_bytes` of text of them (a line printed
/// from cursor moves can be far longer than the bytes that made it, so the count alone does
/// not bound the memory).
pub struct LastLines {
    lines: VecDeque<String>,
    keep: usize,
    bytes: usize,
    max_bytes: usize,
}

impl LastLines {
    pub fn new(keep: usize, max_bytes: usize) -> Self {
        LastLines {
            lines: VecDeque::new(),
            keep,
            bytes: 0,
            max_bytes,
        }
    }

    pub fn into_lines(self) -> VecDeque<String> {
        self.lines
    }
}

impl LineSink for LastLines {
    fn line(&mut self, text: &str) -> io::Result<()> {
        if self.keep == 0 {
            return Ok(());
        }
        self.lines.push_back(text.to_owned());
        self.bytes += text.len();
        while self.lines.len() > self.keep || (self.bytes > self.max_bytes && self.lines.len() > 1)
        {
            if let Some(old) = self.lines.pop_front() {
                self.bytes -= old.len();
            }
        }
        Ok(())
    }
}

/// The log replayed through a terminal of one size.
pub struct Renderer {
    terminal: Terminal,
    lines: Lines,
    /// The start of a UTF-8 sequence that the last piece of input cut in two.
    utf8_tail: Vec<u8>,
    /// Calls of [`Renderer::settle`] so far: the clock rows' changes are timed with.
    tick: u64,
    /// Whether anything changed since the last [`Renderer::settle`] (or is still changing).
    changed: bool,
    /// Whether bytes were fed (or the size changed) since the last [`Renderer::settle`].
    fed: bool,
    /// The active screen's lines at the last [`Renderer::settle`], and which were stable.
    lines_seen: Option<Vec<ScreenLine>>,
    stable_seen: Vec<bool>,
}

impl Renderer {
    /// A terminal of `cols` x `rows` cells (each at least 1).
    pub fn new(cols: u16, rows: u16) -> Self {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        Renderer {
            terminal: terminal(cols, rows),
            lines: Lines::new(rows),
            utf8_tail: Vec::new(),
            tick: 0,
            changed: false,
            fed: false,
            lines_seen: None,
            stable_seen: Vec::new(),
        }
    }

    /// The terminal's size, as (cols, rows).
    pub fn size(&self) -> (usize, usize) {
        self.terminal.size()
    }

    /// Changes the terminal's size (the pane was resized); avt reflows the primary screen.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        if self.terminal.size() == (cols, rows) {
            return;
        }
        self.terminal.resize_with(cols, rows, &mut self.lines);
        self.lines.end_clear();
        // Rows moved: what was printed where is no longer known, so the next settle compares
        // the screen with what was printed, wherever it now is.
        self.lines.primary.reflowed(rows);
        self.lines.alternate.reflowed(rows);
        self.lines.seen = std::iter::repeat_n(RowSeen::default(), rows).collect();
        self.lines.seen_alternate = std::iter::repeat_n(RowSeen::default(), rows).collect();
        self.changed = true;
        self.fed = true;
    }

    /// Replays `bytes` (the next bytes of the log) and writes the lines that became final.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut dyn LineSink) -> io::Result<()> {
        for piece in bytes.chunks(FEED_PIECE) {
            let text = decode_utf8(&mut self.utf8_tail, piece);
            if text.is_empty() {
                continue;
            }
            self.changed = true;
            self.fed = true;
            self.terminal.feed_with(text.as_str(), &mut self.lines);
            self.lines.end_clear();
            self.lines.drain(sink)?;
        }
        Ok(())
    }

    /// The end of the log: writes every line still on the screen that was not written yet
    /// (and the alternate screen's frame, if a program is still showing one).
    pub fn finish(&mut self, sink: &mut dyn LineSink) -> io::Result<()> {
        self.lines.end_clear();
        self.lines.flush_pending();
        let primary = screen_lines(&self.terminal, ScreenKind::Primary);
        self.lines.reconcile(ScreenKind::Primary, &primary, None);
        if self.terminal.active_screen_kind() == ScreenKind::Alternate {
            let frame = screen_lines(&self.terminal, ScreenKind::Alternate);
            self.lines.reconcile(ScreenKind::Alternate, &frame, None);
        }
        self.lines.drain(sink)
    }

    /// Replaying a log's times (see `logwriter`): the pane printed nothing more for `polls`
    /// polls of `logs -f`. Does what `-f` would have done polling then: one look at the
    /// screen as it was, then `polls` looks with nothing new.
    pub fn quiet(&mut self, polls: u64, sink: &mut dyn LineSink) -> io::Result<()> {
        // Past this many looks nothing more can become stable; the rest only ages the rows.
        let looks = polls.saturating_add(1).min(VOLATILE_QUIET + 2);
        for _ in 0..looks {
            self.settle(false, sink)?;
        }
        self.tick = self
            .tick
            .saturating_add(polls.saturating_add(1).saturating_sub(looks));
        Ok(())
    }

    /// While following, called at each poll of the log: writes the lines of the active
    /// screen that were not written yet and have not changed since the last call. A row that
    /// keeps changing (a spinner, a countdown, a line being streamed: [`VOLATILE_CHANGES`]
    /// changes in a row, each within [`VOLATILE_WINDOW`] calls of the one before) must stay
    /// the same for [`VOLATILE_QUIET`] calls instead, so it prints when it stops, not at each
    /// pause. With `everything`, writes them all (the first call, after the log so far).
    pub fn settle(&mut self, everything: bool, sink: &mut dyn LineSink) -> io::Result<()> {
        self.tick += 1;
        if !everything && !self.changed {
            return Ok(());
        }
        self.changed = false;
        self.lines.end_clear();
        let kind = self.terminal.active_screen_kind();
        // Nothing fed since the last look (a pause replayed): the same lines as then.
        let same_screen = !self.fed && self.lines_seen.is_some();
        let now = match self.lines_seen.take() {
            Some(lines) if !self.fed => lines,
            _ => active_lines(&self.terminal, &mut self.lines.cache),
        };
        self.fed = false;
        let seen = match kind {
            ScreenKind::Primary => &mut self.lines.seen,
            ScreenKind::Alternate => &mut self.lines.seen_alternate,
        };
        let mut stable = Vec::with_capacity(now.len());
        let mut settled = Vec::with_capacity(now.len());
        for line in &now {
            let Some(row) = seen.get_mut(line.first_row) else {
                stable.push(everything);
                settled.push(everything);
                continue;
            };
            if row.text != line.text {
                if self.tick - row.since > VOLATILE_WINDOW {
                    row.changes = 0;
                }
                row.changes = row.changes.saturating_add(1);
                row.since = self.tick;
                row.text.clone_from(&line.text);
            }
            let quiet = if row.changes >= VOLATILE_CHANGES {
                VOLATILE_QUIET
            } else {
                1
            };
            stable.push(everything || self.tick - row.since >= quiet);
            settled.push(self.tick > row.since);
        }
        // Lines print in the screen's order: a row still held as one that keeps changing (a
        // spinner that turned into "Done.") prints before a line below it that prints now, if
        // it did not change since the last look. (Worked out only when such a row is held.)
        let held = stable.iter().zip(&settled).any(|(s, t)| !s && *t);
        let printed = if held {
            match kind {
                ScreenKind::Primary => self.lines.primary.texts(),
                ScreenKind::Alternate => self.lines.alternate.texts(),
            }
        } else {
            Vec::new()
        };
        let candidates: Vec<&str> = if held {
            now.iter()
                .zip(&stable)
                .filter(|(_, s)| **s)
                .map(|(l, _)| l.text.as_str())
                .collect()
        } else {
            Vec::new()
        };
        let (_, matched) = match_printed(&printed, &candidates);
        let last_to_print = now
            .iter()
            .enumerate()
            .filter(|(i, _)| held && stable[*i])
            .zip(matched)
            .filter(|((_, line), matched)| !matched && !line.text.is_empty())
            .map(|((i, _), _)| i)
            .last();
        if let Some(last) = last_to_print {
            for i in 0..last {
                stable[i] = stable[i] || settled[i];
            }
        }
        // A line still changing is looked at again at the next call, new bytes or not.
        if stable.contains(&false) {
            self.changed = true;
        }
        // The same screen, and no line became stable since the last look: nothing to print
        // or record.
        if !(same_screen && stable == self.stable_seen) {
            self.lines.reconcile(kind, &now, Some(&stable));
        }
        self.lines_seen = Some(now);
        self.stable_seen = stable;
        self.lines.drain(sink)
    }
}

/// A row that changed this many times, each within [`VOLATILE_WINDOW`] calls of
/// [`Renderer::settle`] of the one before, is one that keeps changing.
pub const VOLATILE_CHANGES: u32 = 3;

/// See [`VOLATILE_CHANGES`]: 25 polls of `logs -f`, 5 s.
pub const VOLATILE_WINDOW: u64 = 25;

/// How many calls of [`Renderer::settle`] a row that keeps changing must stay the same for
/// before it prints: 8 polls of `logs -f`, 1.6 s, longer than a countdown's second.
pub const VOLATILE_QUIET: u64 = 8;

/// How one row of a screen changed lately (for `-f`).
#[derive(Clone, Debug, Default)]
struct RowSeen {
    text: String,
    /// The [`Renderer::settle`] call that saw it change last.
    since: u64,
    changes: u32,
}

fn terminal(cols: usize, rows: usize) -> Terminal {
    // avt refuses only a zero size, which the callers never ask for; 80 x 24 stands in.
    Terminal::with_scrollback(cols, rows, Some(0)).unwrap_or_else(|_| {
        let mut size = (80, 24);
        loop {
            if let Ok(t) = Terminal::with_scrollback(size.0, size.1, Some(0)) {
                return t;
            }
            size = (size.0 + 1, size.1 + 1);
        }
    })
}

/// One line on a screen: its rows joined where the terminal wrapped them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScreenLine {
    text: String,
    first_row: usize,
    rows: usize,
}

/// The lines of a screen, from its top to its last line that is not blank.
fn screen_lines(terminal: &Terminal, kind: ScreenKind) -> Vec<ScreenLine> {
    let screen = match kind {
        ScreenKind::Primary => terminal.primary_screen(),
        ScreenKind::Alternate => terminal.screen(),
    };
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for line in screen.visible_lines() {
        if let Some(done) = joiner.push(line) {
            lines.push(done);
        }
    }
    lines.extend(joiner.finish());
    while lines.last().is_some_and(|l| l.text.is_empty()) {
        lines.pop();
    }
    lines
}

/// The active screen's lines, like [`screen_lines`], from `cache` where a row did not change
/// since it was read (avt reports each row it changes: [`Observer::dirty`]).
fn active_lines(terminal: &Terminal, cache: &mut RowCache) -> Vec<ScreenLine> {
    let kind = terminal.active_screen_kind();
    let rows = terminal.size().1;
    if cache.kind != kind || cache.rows.len() != rows {
        cache.kind = kind;
        cache.rows = vec![None; rows];
    }
    let mut joiner = Joiner::default();
    let mut lines = Vec::new();
    for (row, line) in terminal.screen().visible_lines().enumerate() {
        let Some(slot) = cache.rows.get_mut(row) else {
            break;
        };
        // The wrap flag is read each time: avt can set it on a row as the next one is
        // written, reporting only the next one as changed.
        let (text, trailing) = slot.get_or_insert_with(|| row_text(line));
        if let Some(done) = joiner.push_row(text, *trailing, line.is_wrapped()) {
            lines.push(done);
        }
    }
    lines.extend(joiner.finish());
    while lines.last().is_some_and(|l| l.text.is_empty()) {
        lines.pop();
    }
    lines
}

/// A row's text without its trailing spaces, and how many there were. Only the cells up to
/// the last that is not a space are read: on a wide screen most of a row is empty.
fn row_text(line: &Line) -> (String, usize) {
    let cells = line.cells();
    let end = cells
        .iter()
        .rposition(|c| c.char() != ' ')
        .map_or(0, |last| last + 1);
    // A wide character's second cell has no width and holds no character of its own.
    let text: String = cells[..end]
        .iter()
        .filter(|c| c.width() > 0)
        .map(avt::Cell::char)
        .collect();
    (text, cells.len() - end)
}

/// The text of each row of the active screen as last read, `None` where avt changed it since.
struct RowCache {
    kind: ScreenKind,
    /// Each row's text without its trailing blanks, and how many there were (a wrapped
    /// row's count: the line goes on after them).
    rows: Vec<Option<(String, usize)>>,
}

impl RowCache {
    fn forget(&mut self) {
        self.rows.iter_mut().for_each(|row| *row = None);
    }
}

/// Joins rows into lines where the terminal wrapped them, counting rows from 0.
struct Joiner {
    text: String,
    chars: usize,
    /// Whether `text` is spaces only (or empty).
    spaces_only: bool,
    first_row: usize,
    next_row: usize,
}

impl Default for Joiner {
    fn default() -> Self {
        Joiner {
            text: String::new(),
            chars: 0,
            spaces_only: true,
            first_row: 0,
            next_row: 0,
        }
    }
}

impl Joiner {
    fn push(&mut self, line: &Line) -> Option<ScreenLine> {
        let text: String = line.chars().collect();
        self.push_row(&text, 0, line.is_wrapped())
    }

    /// A row's text, then `trailing` spaces if it wraps into the next row.
    fn push_row(&mut self, text: &str, trailing: usize, wrapped: bool) -> Option<ScreenLine> {
        // A line wrapped into a row of spaces ends there (the row is its blank end): programs
        // erase rows by writing spaces to their last column, and what follows such rows is
        // another line, not more of this one.
        if !self.spaces_only && text.bytes().all(|b| b == b' ') {
            self.next_row += 1;
            return self.finish();
        }
        let spaces;
        let text = if wrapped && trailing > 0 {
            spaces = format!("{text}{}", " ".repeat(trailing));
            spaces.as_str()
        } else {
            text
        };
        let room = MAX_LINE_CHARS - self.chars;
        let count = text.chars().count();
        let taken = if count <= room {
            text
        } else {
            let end = text.char_indices().nth(room).map_or(text.len(), |(i, _)| i);
            &text[..end]
        };
        self.text.push_str(taken);
        self.chars += count.min(room);
        self.spaces_only &= taken.bytes().all(|b| b == b' ');
        self.next_row += 1;
        // A row of spaces that ran into the next row (a program blanking rows by writing
        // spaces to their last column) is a blank line, not the start of the next one.
        if wrapped && self.chars < MAX_LINE_CHARS && !self.spaces_only {
            return None;
        }
        self.finish()
    }

    fn finish(&mut self) -> Option<ScreenLine> {
        if self.next_row == self.first_row {
            return None;
        }
        let done = ScreenLine {
            text: self.text.trim_end().to_owned(),
            first_row: self.first_row,
            rows: self.next_row - self.first_row,
        };
        self.text.clear();
        self.chars = 0;
        self.spaces_only = true;
        self.first_row = self.next_row;
        Some(done)
    }

    fn is_empty(&self) -> bool {
        self.next_row == self.first_row
    }
}

/// What was printed for each row of one screen: the printed line's number and text, on
/// every row the line covers.
struct Printed {
    rows: VecDeque<Option<(u64, String)>>,
    /// Lines printed whose rows are no longer known (after a resize), still to be matched.
    loose: Vec<String>,
}

impl Printed {
    fn new(rows: usize) -> Self {
        Printed {
            rows: std::iter::repeat_n(None, rows).collect(),
            loose: Vec::new(),
        }
    }

    fn reflowed(&mut self, rows: usize) {
        self.loose = self.texts();
        self.rows = std::iter::repeat_n(None, rows).collect();
    }

    /// The printed lines, top to bottom, once each, then the loose ones (after, so that the
    /// screen's top, unchanged, matches them without the table: see [`common_subsequence`]).
    fn texts(&self) -> Vec<String> {
        let mut texts = Vec::with_capacity(self.rows.len() + self.loose.len());
        let mut last = None;
        for (id, text) in self.rows.iter().flatten() {
            if last != Some(*id) {
                texts.push(text.clone());
                last = Some(*id);
            }
        }
        texts.extend(self.loose.iter().cloned());
        texts
    }

    /// Takes the record of the top row, as the screen scrolls up one row.
    fn scroll(&mut self) -> Option<String> {
        let top = self.rows.pop_front().flatten();
        self.rows.push_back(None);
        top.map(|(_, text)| text)
    }
}

/// The observer avt calls as it replays: collects the lines that became final.
struct Lines {
    /// Lines to write, in order; drained after each piece of input.
    out: Vec<String>,
    /// Rows that scrolled off whose line goes on in the next row (the terminal wrapped it).
    pending: Joiner,
    /// What had been printed for the pending line's first row, if anything.
    pending_printed: Option<String>,
    primary: Printed,
    alternate: Printed,
    /// How each row of each screen changed lately; the primary's scroll with it.
    seen: VecDeque<RowSeen>,
    seen_alternate: VecDeque<RowSeen>,
    cache: RowCache,
    next_id: u64,
    /// Blank lines that scrolled off, printed before the next line that is not blank.
    held_blanks: usize,
    /// The operation being run erases the whole primary screen: its rows are collected in
    /// `cleared` instead of being printed at once.
    clearing: bool,
    cleared: Joiner,
    cleared_lines: Vec<ScreenLine>,
}

impl Lines {
    fn new(rows: usize) -> Self {
        Lines {
            out: Vec::new(),
            pending: Joiner::default(),
            pending_printed: None,
            primary: Printed::new(rows),
            alternate: Printed::new(rows),
            seen: std::iter::repeat_n(RowSeen::default(), rows).collect(),
            seen_alternate: std::iter::repeat_n(RowSeen::default(), rows).collect(),
            cache: RowCache {
                kind: ScreenKind::Primary,
                rows: vec![None; rows],
            },
            next_id: 0,
            held_blanks: 0,
            clearing: false,
            cleared: Joiner::default(),
            cleared_lines: Vec::new(),
        }
    }

    fn drain(&mut self, sink: &mut dyn LineSink) -> io::Result<()> {
        for line in self.out.drain(..) {
            sink.line(&line)?;
        }
        Ok(())
    }

    /// A row scrolled off the top of the primary screen: its line is final.
    fn scrolled_off(&mut self, row: &Line) {
        if self.seen.pop_front().is_some() {
            self.seen.push_back(RowSeen::default());
        }
        let printed = self.primary.scroll();
        if self.pending.is_empty() {
            self.pending_printed = printed;
        }
        if let Some(line) = self.pending.push(row) {
            let already = self.pending_printed.take().is_some_and(|p| p == line.text);
            if already {
                return;
            }
            if line.text.is_empty() {
                // Printed only if a line follows (a screen's empty rows end no log).
                self.held_blanks = (self.held_blanks + 1).min(MAX_HELD_BLANKS);
            } else {
                self.print(line.text);
            }
        }
    }

    /// Prints a line that is not blank, after the blank lines held before it.
    fn print(&mut self, text: String) {
        for _ in 0..std::mem::take(&mut self.held_blanks) {
            self.out.push(String::new());
        }
        self.out.push(text);
    }

    /// Rows of a line that started to scroll off but never finished (the log ended).
    fn flush_pending(&mut self) {
        if let Some(line) = self.pending.finish()
            && !line.text.is_empty()
        {
            self.print(line.text);
        }
        self.pending_printed = None;
    }

    /// The whole primary screen was erased: its lines are final, but a program that redraws
    /// the same screen after each erase must not print it each time, so the lines already
    /// printed are left out, and the erased lines count as printed where they were.
    fn end_clear(&mut self) {
        if !self.clearing {
            return;
        }
        self.clearing = false;
        let mut lines = std::mem::take(&mut self.cleared_lines);
        lines.extend(self.cleared.finish());
        self.cleared = Joiner::default();
        while lines.last().is_some_and(|l| l.text.is_empty()) {
            lines.pop();
        }
        self.reconcile(ScreenKind::Primary, &lines, None);
    }

    /// Writes the lines of `now` (a screen, top to bottom) that are stable (all for `None`)
    /// and not among the lines printed from that screen, then records them as printed.
    ///
    /// Blank lines print only before a line that prints: a blank row next to a line still
    /// changing is often that line's room, and printing it alone says nothing.
    fn reconcile(&mut self, kind: ScreenKind, now: &[ScreenLine], stable: Option<&[bool]>) {
        let is_stable = |i: usize| stable.is_none_or(|s| s.get(i).copied().unwrap_or(false));
        let before = match kind {
            ScreenKind::Primary => self.primary.texts(),
            ScreenKind::Alternate => self.alternate.texts(),
        };
        let candidates: Vec<&ScreenLine> = now
            .iter()
            .enumerate()
            .filter(|(i, _)| is_stable(*i))
            .map(|(_, l)| l)
            .collect();
        let texts: Vec<&str> = candidates.iter().map(|l| l.text.as_str()).collect();
        let (matched_before, matched) = match_printed(&before, &texts);
        let mut recorded = matched.clone();
        let mut blanks = Vec::new();
        for (i, line) in candidates.iter().enumerate() {
            if matched[i] {
                continue;
            }
            if line.text.is_empty() {
                blanks.push(i);
                continue;
            }
            for blank in blanks.drain(..) {
                self.held_blanks += 1;
                recorded[blank] = true;
            }
            self.print(line.text.clone());
            recorded[i] = true;
        }
        let printed = match kind {
            ScreenKind::Primary => &mut self.primary,
            ScreenKind::Alternate => &mut self.alternate,
        };
        // Lines printed before that are not seen now may be in the part still changing
        // (a block moving down the screen): they are kept, loose, until the screen is still.
        printed.loose = if candidates.len() < now.len() {
            let mut loose: Vec<String> = before
                .into_iter()
                .zip(matched_before)
                .filter(|(_, m)| !m)
                .map(|(t, _)| t)
                .collect();
            let excess = loose.len().saturating_sub(printed.rows.len());
            loose.drain(..excess);
            loose
        } else {
            Vec::new()
        };
        for row in &mut printed.rows {
            *row = None;
        }
        for (line, recorded) in candidates.iter().zip(recorded) {
            if !recorded {
                continue;
            }
            self.next_id += 1;
            for row in line.first_row..line.first_row + line.rows {
                if let Some(slot) = printed.rows.get_mut(row) {
                    *slot = Some((self.next_id, line.text.clone()));
                }
            }
        }
    }
}

fn enters_alternate(modes: &avt::parser::DecModes) -> bool {
    modes.as_slice().iter().any(|m| {
        matches!(
            m,
            DecMode::AltScreenBuffer | DecMode::SaveCursorAltScreenBuffer
        )
    })
}

fn leaves_alternate_screen(function: &Function) -> bool {
    match function {
        Function::Decrst(modes) => enters_alternate(modes),
        Function::Ris => true,
        _ => false,
    }
}

impl Observer for Lines {
    type Output = ();

    fn before(&mut self, context: &mut Observation<'_>, operation: &Operation) {
        self.end_clear();
        let Operation::Function(function) = operation else {
            return;
        };
        let terminal = context.terminal();
        let kind = terminal.active_screen_kind();
        if kind == ScreenKind::Alternate && leaves_alternate_screen(function) {
            // The program's last frame is what it showed; the next one starts afresh.
            let frame = screen_lines(terminal, ScreenKind::Alternate);
            self.reconcile(ScreenKind::Alternate, &frame, None);
            for row in &mut self.alternate.rows {
                *row = None;
            }
            for row in &mut self.seen_alternate {
                *row = RowSeen::default();
            }
        }
        match function {
            Function::Decset(modes) if kind == ScreenKind::Primary && enters_alternate(modes) => {
                // What the primary screen shows came before the full-screen program.
                let screen = screen_lines(terminal, ScreenKind::Primary);
                self.reconcile(ScreenKind::Primary, &screen, None);
            }
            Function::Ed(EdScope::All) if kind == ScreenKind::Primary => self.clearing = true,
            Function::Ris => {
                // A reset erases the primary screen without scrolling it off.
                let screen = screen_lines(terminal, ScreenKind::Primary);
                self.reconcile(ScreenKind::Primary, &screen, None);
            }
            _ => {}
        }
    }

    fn dirty(&mut self, rows: std::ops::Range<usize>) {
        for row in rows {
            if let Some(slot) = self.cache.rows.get_mut(row) {
                *slot = None;
            }
        }
    }

    fn resized(&mut self, _cols: usize, _rows: usize) {
        self.cache.forget();
    }

    fn after(&mut self, context: &mut Observation<'_>, _operation: &Operation) {
        // Another screen shows: the rows read are of the other one.
        let kind = context.terminal().active_screen_kind();
        if kind != self.cache.kind {
            self.cache.kind = kind;
            self.cache.forget();
        }
    }

    fn evicted(&mut self, _context: &mut Observation<'_>, line: &Line) {
        if self.clearing {
            if let Some(done) = self.cleared.push(line) {
                self.cleared_lines.push(done);
            }
        } else {
            self.scrolled_off(line);
        }
    }

    fn end(&mut self, _context: &mut Observation<'_>) {}
}

/// Which of `before` (lines printed) and which of `now` (lines on the screen) are the same
/// lines: a longest common subsequence, then, of the rest, equal lines in any order (a line
/// printed before and still on the screen, but moved past others, as a block that moved down
/// while lines above it changed, is the same line).
fn match_printed(before: &[String], now: &[&str]) -> (Vec<bool>, Vec<bool>) {
    let (mut matched_before, mut matched) = common_subsequence(before, now);
    if matched_before.iter().all(|m| *m) || matched.iter().all(|m| *m) {
        return (matched_before, matched);
    }
    let mut unmatched: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, text) in before.iter().enumerate().rev() {
        if !matched_before[i] {
            unmatched.entry(text.as_str()).or_default().push(i);
        }
    }
    for (j, text) in now.iter().enumerate() {
        if !matched[j]
            && let Some(i) = unmatched.get_mut(text).and_then(Vec::pop)
        {
            matched[j] = true;
            matched_before[i] = true;
        }
    }
    (matched_before, matched)
}

/// The largest table [`common_subsequence`] fills (4 bytes an entry): a screen of 500 lines
/// changed from its top, against as many printed. Beyond it the order is not looked at.
const MAX_TABLE: usize = 250_000;

/// Which of `before` and which of `now` belong to a longest common subsequence of `before` and `now`, matching each
/// line as early as it can (so that when text is added below lines printed before, the added
/// lines are the ones left over, in their order).
fn common_subsequence(before: &[String], now: &[&str]) -> (Vec<bool>, Vec<bool>) {
    let mut matched_before = vec![false; before.len()];
    let mut matched = vec![false; now.len()];
    // Equal heads match without the table: a screen that gained lines at its bottom, the
    // usual case, costs no more than comparing it. (Not equal tails: matching from the end
    // would pair a blank line with a later one than the early-match rule does.)
    let head = before
        .iter()
        .zip(now)
        .take_while(|(b, n)| b.as_str() == **n)
        .count();
    matched_before[..head].fill(true);
    matched[..head].fill(true);
    let (before_mid, now_mid) = (&before[head..], &now[head..]);
    let (n, m) = (before_mid.len(), now_mid.len());
    if n == 0 || m == 0 || n.saturating_mul(m) > MAX_TABLE {
        // Past MAX_TABLE the lines are left to the match in any order (`match_printed`).
        return (matched_before, matched);
    }
    // length[i][j]: the longest common subsequence of before_mid[i..] and now_mid[j..].
    let width = m + 1;
    let mut length = vec![0u32; (n + 1) * width];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            length[i * width + j] = if before_mid[i] == now_mid[j] {
                length[(i + 1) * width + j + 1] + 1
            } else {
                length[(i + 1) * width + j].max(length[i * width + j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if before_mid[i] == now_mid[j] {
            matched_before[head + i] = true;
            matched[head + j] = true;
            i += 1;
            j += 1;
        } else if length[(i + 1) * width + j] >= length[i * width + j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (matched_before, matched)
}

/// Decodes `bytes` after `tail` (the start of a sequence the previous piece cut), keeping in
/// `tail` the start of a sequence this piece cuts. Bytes that are not UTF-8 become U+FFFD.
fn decode_utf8(tail: &mut Vec<u8>, bytes: &[u8]) -> String {
    let mut input = std::mem::take(tail);
    input.extend_from_slice(bytes);
    let mut text = String::with_capacity(input.len());
    let mut rest = input.as_slice();
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                // The bytes were checked up to here.
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                match e.error_len() {
                    Some(bad) => {
                        text.push('\u{FFFD}');
                        rest = &after[bad..];
                    }
                    None => {
                        tail.extend_from_slice(after);
                        return text;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines `logs` prints for `bytes` on a terminal of `cols` x `rows`.
    fn render(cols: u16, rows: u16, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut renderer = Renderer::new(cols, rows);
        renderer.feed(bytes, &mut out).expect("feed");
        renderer.finish(&mut out).expect("finish");
        out
    }

    #[test]
    fn words_placed_by_cursor_moves_keep_their_spaces() {
        // Claude Code 2.1 writes a space as "cursor forward one" and words at absolute columns.
        let lines = render(
            80,
            24,
            b"\x1b[1m\xe2\x97\x8f\x1b[22m\x1b[1CSlow\x1b[1Creply\x1b[1Cfinished.\r\n\
              \x1b[3GPlease\x1b[10Gcheck\r\n",
        );
        assert_eq!(lines, ["● Slow reply finished.", "  Please check"]);
    }

    #[test]
    fn a_carriage_return_spinner_shows_its_last_frame_once() {
        let mut bytes = b"start\r\n".to_vec();
        for frame in ["⠋", "⠙", "⠹", "⠸", "⠼"] {
            bytes.extend_from_slice(format!("\r{frame} Working on it").as_bytes());
        }
        bytes.extend_from_slice(b"\r\x1b[KDone.\r\nafter\r\n");
        assert_eq!(render(40, 10, &bytes), ["start", "Done.", "after"]);
    }

    #[test]
    fn a_status_block_redrawn_with_cursor_up_shows_once_in_its_final_form() {
        let mut bytes = b"first line\r\n".to_vec();
        for n in 0..50 {
            if n > 0 {
                // Up two rows, to the start of the block, and rewrite both rows.
                bytes.extend_from_slice(b"\x1b[2A\r");
            }
            bytes.extend_from_slice(
                format!("tokens: {n}\x1b[K\r\nelapsed: {n}s\x1b[K\r\n").as_bytes(),
            );
        }
        // Then the screen scrolls far enough for the block to leave it.
        for n in 0..12 {
            bytes.extend_from_slice(format!("line {n}\r\n").as_bytes());
        }
        let lines = render(40, 8, &bytes);
        let mut expected = vec![
            "first line".to_owned(),
            "tokens: 49".into(),
            "elapsed: 49s".into(),
        ];
        expected.extend((0..12).map(|n| format!("line {n}")));
        assert_eq!(lines, expected);
    }

    #[test]
    fn a_screen_erased_and_redrawn_the_same_prints_once() {
        let mut bytes = Vec::new();
        for _ in 0..20 {
            bytes.extend_from_slice(b"\x1b[2J\x1b[Hheader\r\nbody\r\n");
        }
        bytes.extend_from_slice(b"\x1b[2J\x1b[Hheader\r\nbody\r\nmore\r\n");
        assert_eq!(render(20, 5, &bytes), ["header", "body", "more"]);
    }

    #[test]
    fn the_alternate_screen_prints_its_last_frame_when_left() {
        let bytes =
            b"$ vim notes\r\n\x1b[?1049h\x1b[H\x1b[2Jframe one\x1b[H\x1b[2Jfinal frame\r\n~\r\n\
                      \x1b[?1049l$ echo back\r\nback\r\n";
        assert_eq!(
            render(30, 6, bytes),
            ["$ vim notes", "final frame", "~", "$ echo back", "back"]
        );
        // Still up at the end of the log: the primary screen, then the frame showing.
        let bytes = b"$ top\r\n\x1b[?1049h\x1b[Htasks: 3\r\n";
        assert_eq!(render(30, 6, bytes), ["$ top", "tasks: 3"]);
    }

    #[test]
    fn wide_characters_take_two_columns_and_print_once() {
        // "日本" is four columns wide: the cursor moves land after it and after "語".
        let lines = render(20, 5, "日本\x1b[1C語\x1b[8Gx\r\n絵文字🙂 ok\r\n".as_bytes());
        assert_eq!(lines, ["日本 語x", "絵文字🙂 ok"]);
    }

    #[test]
    fn a_line_wider_than_the_screen_is_one_line() {
        let long = "a".repeat(25);
        let bytes = format!("{long}\r\nnext\r\n1\r\n2\r\n3\r\n4\r\n");
        assert_eq!(
            render(10, 3, bytes.as_bytes()),
            [long.as_str(), "next", "1", "2", "3", "4"]
        );
    }

    #[test]
    fn rows_blanked_with_spaces_do_not_join_the_line_after_them() {
        let spaces = " ".repeat(30);
        let bytes = format!("{spaces}{spaces}next line\r\n");
        assert_eq!(
            render(10, 8, bytes.as_bytes()),
            ["", "", "", "", "", "", "next line"]
        );
        // Nor do they join the line before them to the line after them (which starts where
        // the spaces left the cursor: column 6 of the fourth row).
        let bytes = format!("typed{spaces}next line\r\n");
        assert_eq!(
            render(10, 8, bytes.as_bytes()),
            ["typed", "", "     next line"]
        );
    }

    #[test]
    fn rows_read_again_only_where_avt_changed_them_read_the_same() {
        let mut inputs: Vec<Vec<u8>> = vec![
            include_bytes!("../fixtures/claude-code-2.1.197/session.log").to_vec(),
            b"$ vim\r\n\x1b[?1049h\x1b[Hone\r\ntwo\x1b[2;1Hthree\x1b[?1049lback\r\n".to_vec(),
        ];
        let mut redraws = Vec::new();
        for n in 0..30 {
            redraws.extend_from_slice(
                format!("\x1b[2J\x1b[Hframe {n}\r\n\x1b[3Lx\x1b[1M{n}\r\n").as_bytes(),
            );
        }
        inputs.push(redraws);
        for input in inputs {
            let mut r = Renderer::new(40, 8);
            let mut out = Vec::new();
            for piece in input.chunks(7) {
                r.feed(piece, &mut out).expect("feed");
                let kind = r.terminal.active_screen_kind();
                assert_eq!(
                    active_lines(&r.terminal, &mut r.lines.cache),
                    screen_lines(&r.terminal, kind)
                );
            }
        }
    }

    #[test]
    fn last_lines_keeps_the_last_n_within_its_byte_budget() {
        let mut last = LastLines::new(2, 1024);
        for n in 0..10 {
            last.line(&format!("line {n}")).expect("line");
        }
        assert_eq!(last.into_lines(), ["line 8", "line 9"]);
        let mut last = LastLines::new(100, 10);
        for text in ["aaaa", "bbbb", "cccc"] {
            last.line(text).expect("line");
        }
        assert_eq!(last.into_lines(), ["bbbb", "cccc"]);
        let mut none = LastLines::new(0, 10);
        none.line("x").expect("line");
        assert!(none.into_lines().is_empty());
    }

    #[test]
    fn utf8_cut_between_reads_is_one_character() {
        let bytes = "héllo wörld\r\n".as_bytes();
        let mut out = Vec::new();
        let mut renderer = Renderer::new(20, 4);
        for byte in bytes {
            renderer
                .feed(std::slice::from_ref(byte), &mut out)
                .expect("feed");
        }
        renderer.feed(b"bad \xff byte\r\n", &mut out).expect("feed");
        renderer.finish(&mut out).expect("finish");
        assert_eq!(out, ["héllo wörld", "bad \u{FFFD} byte"]);
    }

    /// `logs -f`'s polls with no new output in between.
    fn quiet_polls(r: &mut Renderer, polls: u64, out: &mut Vec<String>) {
        for _ in 0..polls {
            r.settle(false, out).expect("settle");
        }
    }

    #[test]
    fn following_prints_a_spinner_once_it_stops_and_a_moved_block_once() {
        let mut out = Vec::new();
        let mut r = Renderer::new(40, 10);
        r.feed(b"one\r\n\r\n> \r\nstatus\x1b[2A\x1b[3G", &mut out)
            .expect("feed");
        r.settle(true, &mut out).expect("settle");
        assert_eq!(out, ["one", "", ">", "status"]);
        out.clear();
        // A spinner between the first line and the input box: each frame moves the box down.
        for frame in ["⠋", "⠙", "⠹"] {
            r.feed(
                format!(
                    "\x1b[H\x1b[2B{frame} thinking\x1b[K\r\n\x1b[K\r\n> \x1b[K\r\nstatus\x1b[K"
                )
                .as_bytes(),
                &mut out,
            )
            .expect("feed");
            r.settle(false, &mut out).expect("settle");
        }
        assert!(out.is_empty(), "a changing line waits: {out:?}");
        // It changed at each poll: one quiet poll is not enough to call it stopped.
        quiet_polls(&mut r, VOLATILE_QUIET - 1, &mut out);
        assert!(
            out.is_empty(),
            "a line that keeps changing waits longer: {out:?}"
        );
        // Quiet long enough: the last frame prints, and the box does not print again.
        quiet_polls(&mut r, 1, &mut out);
        assert_eq!(out, ["⠹ thinking"]);
        out.clear();
        quiet_polls(&mut r, VOLATILE_WINDOW + 1, &mut out);
        assert!(out.is_empty());
        // The spinner's row becomes the answer, long after it last changed: it prints at the
        // next quiet poll.
        r.feed(b"\x1b[H\x1b[2BThe answer.\x1b[K", &mut out)
            .expect("feed");
        quiet_polls(&mut r, 2, &mut out);
        assert_eq!(out, ["The answer."]);
        out.clear();
        // Scrolling lines already printed off the top does not print them again.
        r.feed(b"\x1b[10;1H\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n", &mut out)
            .expect("feed");
        assert!(out.is_empty(), "{out:?}");
        r.finish(&mut out).expect("finish");
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn following_prints_a_countdown_when_it_stops_and_steady_output_at_once() {
        let mut out = Vec::new();
        let mut r = Renderer::new(40, 5);
        r.settle(true, &mut out).expect("settle");
        // A status that ticks every 5 polls (a second of `logs -f`): its first forms print
        // before it is known to tick, then nothing until it stops.
        for left in (1..=9).rev() {
            r.feed(format!("\rRetrying in {left}s\x1b[K").as_bytes(), &mut out)
                .expect("feed");
            quiet_polls(&mut r, 5, &mut out);
        }
        let ticking = out.len();
        assert!(ticking <= 2, "{out:?}");
        r.feed(b"\rConnected.\x1b[K", &mut out).expect("feed");
        quiet_polls(&mut r, VOLATILE_QUIET + 1, &mut out);
        assert_eq!(out[ticking..], ["Connected."]);
        out.clear();
        // A line a second on a full screen: every row changes as it scrolls, yet each new line
        // prints at the first quiet poll, not when it reaches the top.
        r.feed(b"\r\n", &mut out).expect("feed");
        for n in 0..20 {
            r.feed(format!("line {n}\r\n").as_bytes(), &mut out)
                .expect("feed");
            quiet_polls(&mut r, 2, &mut out);
            assert_eq!(
                out.last().map(String::as_str),
                Some(format!("line {n}").as_str())
            );
        }
        assert_eq!(
            out,
            (0..20).map(|n| format!("line {n}")).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_question_erased_after_a_pause_prints_and_spinner_frames_do_not() {
        let mut out = Vec::new();
        let mut r = Renderer::new(40, 10);
        // Frames a tenth of a second apart, as the log's times note them: a look at each
        // other frame, nothing quiet in between.
        for frame in ["⠋", "⠙", "⠹", "⠸"] {
            r.feed(format!("\r{frame} Working").as_bytes(), &mut out)
                .expect("feed");
            r.quiet(0, &mut out).expect("quiet");
        }
        // The spinner's last form, then a question that stayed on the screen for a second
        // (the spinner's row is not held back past it), then was erased in place.
        r.feed(b"\r\x1b[KDone.\r\nAllow this? (y/n)", &mut out)
            .expect("feed");
        r.quiet(5, &mut out).expect("quiet");
        r.feed(b"\r\x1b[KAllowed.\r\n", &mut out).expect("feed");
        r.finish(&mut out).expect("finish");
        assert_eq!(out, ["Done.", "Allow this? (y/n)", "Allowed."]);
        // Without the times, only what was left on the screen.
        assert_eq!(
            render(40, 10, b"\r\x1b[KAllow this? (y/n)\r\x1b[KAllowed.\r\n"),
            ["Allowed."]
        );
    }

    /// Real bytes, captured from Claude Code 2.1.197 (see fixtures/claude-code-2.1.197/SOURCES.md).
    #[test]
    fn claude_code_dialog_renders_as_readable_text() {
        let bytes = include_bytes!("../fixtures/claude-code-2.1.197/api-key-dialog.log");
        let lines = render(100, 30, bytes);
        for want in [
            "  Detected a custom API key in your environment",
            "  Do you want to use this API key?",
            "    1. Yes",
            "  ❯ 2. No (recommended)",
            "  Enter to confirm · Esc to cancel",
        ] {
            assert!(
                lines.iter().any(|l| l == want),
                "{want:?} not in {lines:#?}"
            );
        }
    }

    #[test]
    fn claude_code_retry_spinner_shows_once() {
        let bytes = include_bytes!("../fixtures/claude-code-2.1.197/retrying.log");
        let lines = render(100, 30, bytes);
        let prompt = lines
            .iter()
            .filter(|l| l.contains("Say hello in three words please"))
            .count();
        assert_eq!(prompt, 1, "{lines:#?}");
        let spinner = lines
            .iter()
            .filter(|l| l.contains("Unable to connect to API"))
            .count();
        assert_eq!(spinner, 1, "{lines:#?}");
    }

    /// Replays `log` with its `times` as `logs -f` would have seen it polling.
    fn follow(cols: u16, rows: u16, log: &[u8], times: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut r = Renderer::new(cols, rows);
        let mut at = 0;
        for pause in times.lines().filter_map(crate::logwriter::Pause::parse) {
            let offset = usize::try_from(pause.offset).expect("offset");
            r.feed(&log[at..offset], &mut out).expect("feed");
            r.quiet(pause.millis / 200, &mut out).expect("quiet");
            at = offset;
        }
        r.feed(&log[at..], &mut out).expect("feed");
        r.finish(&mut out).expect("finish");
        out
    }

    /// Real bytes and times: Claude Code 2.1.197 started, a prompt sent, the model API
    /// refused, Esc, more typed (see the fixtures' SOURCES.md).
    #[test]
    fn claude_code_interrupted_prints_its_input_box_once() {
        let log = include_bytes!("../fixtures/claude-code-2.1.197/interrupted.log");
        let times = include_str!("../fixtures/claude-code-2.1.197/interrupted.log.times");
        let lines = follow(100, 30, log, times);
        let count = |want: &str| lines.iter().filter(|l| l.as_str() == want).count();
        // The retry status stayed a second: it shows, though Esc erased it.
        assert_eq!(
            count("✻ Unable to connect to API (ConnectionRefused) · Retrying in 1s · attempt 1/10"),
            1,
            "{lines:#?}"
        );
        // What was typed after Esc (the box puts a no-break space after ❯), once, and not
        // joined to the rows blanked after it.
        assert_eq!(
            count("❯\u{a0}Say hello in three words pleaseAnother prompt"),
            1,
            "{lines:#?}"
        );
        assert!(
            lines.iter().all(|l| !l.contains(&" ".repeat(120))),
            "{lines:#?}"
        );
    }

    #[test]
    fn common_subsequence_matches_early_so_added_lines_are_left_over() {
        let before: Vec<String> = ["a", "ok"].iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(
            common_subsequence(&before, &["a", "ok", "b", "ok"]).1,
            [true, true, false, false]
        );
        assert_eq!(common_subsequence(&[], &["a"]).1, [false]);
        // A line between two that were printed, and one gone from the middle.
        let before: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            common_subsequence(&before, &["a", "x", "b", "d"]),
            (vec![true, true, false, true], vec![true, false, true, true])
        );
    }
}
