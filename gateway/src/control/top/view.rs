//! What the live view shows and how it answers keys: pure state and drawing, no I/O, so that
//! every key and every screen size can be tested without a terminal.

use std::time::{Duration, Instant};

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Row, StatefulWidget, Table, TableState, Widget};

use hostctl::api::AgentUsage;

use super::keys::Key;
use crate::control::output::{age, status_text};
use crate::model::AgentStatus;
use crate::store::AgentRecord;

/// Typed characters within this long of each other make one name to find.
const TYPE_AHEAD: Duration = Duration::from_millis(1500);

/// The longest line ^T sends: what `send` takes.
const MAX_LINE: usize = crate::control::send::MAX_TEXT;

/// The widest NAME and HOST columns; longer names are cut with `…`.
const MAX_NAME: usize = 24;
const MAX_HOST: usize = 16;

/// What each running agent uses, by name, as its host last said (`agents::usage`).
pub type Usage = std::collections::BTreeMap<String, AgentUsage>;

/// The narrowest view that shows the CPU% and MEM columns: below it, the agents' last lines
/// keep the room.
const USAGE_MIN_WIDTH: u16 = 96;

/// What the operator is doing in the view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Moving about the list.
    Browse,
    /// Asked whether to stop this agent.
    ConfirmStop(String),
    /// Typing a line to send to this agent.
    SendLine { agent: String, text: String },
    /// The keys, over the list; any key closes it.
    Help,
}

/// The order of the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// By name, as `list` shows them.
    Name,
    /// Those that need the operator first: waiting, then failed or unreachable, working, idle,
    /// running, and the stopped and finished ones last; by name within each.
    Attention,
}

/// Where a status comes in [`Order::Attention`].
fn attention_rank(agent: &AgentRecord) -> u8 {
    match agent.shown_status() {
        "waiting" => 0,
        "exited" if agent.exit_code != Some(0) => 1,
        "unknown" => 1,
        "working" => 2,
        "idle" => 3,
        "running" | "creating" => 4,
        "stopped" => 5,
        _ => 6,
    }
}

/// What a key asks the view's owner to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing beyond drawing again.
    None,
    /// Draw everything again (the screen may hold something else).
    Redraw,
    Quit,
    Attach(String),
    Stop(String),
    Start(String),
    Send {
        agent: String,
        text: String,
    },
}

pub struct View {
    pub agents: Vec<AgentRecord>,
    /// Hosts that did not answer the last look, as `list` words them.
    pub warnings: Vec<String>,
    /// The selected agent, by name, so that a refresh keeps it selected.
    selected: Option<String>,
    table: TableState,
    typed: String,
    typed_at: Option<Instant>,
    pub mode: Mode,
    pub order: Order,
    /// The outcome of the last action, shown in the bottom line until the next key.
    pub message: Option<(String, bool)>,
    /// What the running agents use; an agent not in it shows no figures.
    pub usage: Usage,
}

impl View {
    pub fn new() -> View {
        View {
            agents: Vec::new(),
            warnings: Vec::new(),
            selected: None,
            table: TableState::default(),
            typed: String::new(),
            typed_at: None,
            mode: Mode::Browse,
            order: Order::Name,
            message: None,
            usage: Usage::new(),
        }
    }

    /// Shows a new list of agents, keeping the selection on the same agent when it is still
    /// there (or on the one now at its place when it is not).
    pub fn set_agents(&mut self, agents: Vec<AgentRecord>, warnings: Vec<String>) {
        let old_index = self.index();
        self.agents = agents;
        self.warnings = warnings;
        self.sort();
        let index = match self.index() {
            Some(i) => Some(i),
            None if self.agents.is_empty() => None,
            None => Some(old_index.unwrap_or(0).min(self.agents.len() - 1)),
        };
        self.select_index(index);
    }

    /// Puts the agents in the view's order (they come by name).
    fn sort(&mut self) {
        match self.order {
            Order::Name => self.agents.sort_by(|a, b| a.name.cmp(&b.name)),
            Order::Attention => self
                .agents
                .sort_by(|a, b| (attention_rank(a), &a.name).cmp(&(attention_rank(b), &b.name))),
        }
    }

    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    fn index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.agents.iter().position(|a| a.name == name)
    }

    fn select_index(&mut self, index: Option<usize>) {
        self.selected = index
            .and_then(|i| self.agents.get(i))
            .map(|a| a.name.clone());
        self.table.select(self.index());
    }

    fn move_by(&mut self, delta: isize) {
        if self.agents.is_empty() {
            return;
        }
        let last = self.agents.len() - 1;
        let index = match self.index() {
            Some(i) => i.saturating_add_signed(delta).min(last),
            None => 0,
        };
        self.select_index(Some(index));
    }

    /// Answers one key; `page` is how many rows a page holds, `now` the time it was pressed.
    pub fn key(&mut self, key: Key, page: usize, now: Instant) -> Action {
        self.message = None;
        match std::mem::replace(&mut self.mode, Mode::Browse) {
            Mode::Browse => self.browse(key, page, now),
            Mode::Help => Action::None,
            Mode::ConfirmStop(name) => match key {
                Key::Char('y' | 'Y') => Action::Stop(name),
                _ => {
                    self.message = Some((format!("'{name}' was not stopped"), false));
                    Action::None
                }
            },
            Mode::SendLine { agent, mut text } => {
                match key {
                    Key::Enter => return Action::Send { agent, text },
                    Key::Esc | Key::Ctrl('c' | 'g') => {
                        self.message = Some(("nothing was sent".to_owned(), false));
                        return Action::None;
                    }
                    Key::Backspace => {
                        text.pop();
                    }
                    Key::Ctrl('u') => text.clear(),
                    Key::Char(c) if text.len() + c.len_utf8() <= MAX_LINE => text.push(c),
                    Key::Char(_) => {
                        self.message = Some((
                            format!("the line is at its longest ({} KiB)", MAX_LINE / 1024),
                            true,
                        ));
                    }
                    // Inserted as text, line breaks included: Enter sends it all, which
                    // reaches the agent as one paste.
                    Key::Paste { text: pasted, cut } => {
                        let mut fits = pasted.len().min(MAX_LINE - text.len());
                        while !pasted.is_char_boundary(fits) {
                            fits -= 1;
                        }
                        text.push_str(&pasted[..fits]);
                        if cut || fits < pasted.len() {
                            self.message = Some((
                                format!(
                                    "the paste was cut: the text is at most {} KiB",
                                    MAX_LINE / 1024
                                ),
                                true,
                            ));
                        }
                    }
                    _ => {}
                }
                self.mode = Mode::SendLine { agent, text };
                Action::None
            }
        }
    }

    fn browse(&mut self, key: Key, page: usize, now: Instant) -> Action {
        let page = isize::try_from(page.max(1)).unwrap_or(1);
        if !matches!(key, Key::Char(_) | Key::Backspace) {
            self.typed.clear();
        }
        match key {
            Key::Up => self.move_by(-1),
            Key::Down | Key::Tab => self.move_by(1),
            Key::PageUp => self.move_by(-page),
            Key::PageDown => self.move_by(page),
            Key::Home => self.move_by(isize::MIN),
            Key::End => self.move_by(isize::MAX),
            Key::Char('?') if self.typed.is_empty() => self.mode = Mode::Help,
            Key::Char(c) => {
                if self
                    .typed_at
                    .is_none_or(|at| now.duration_since(at) > TYPE_AHEAD)
                {
                    self.typed.clear();
                }
                self.typed.push(c);
                self.typed_at = Some(now);
                self.find();
            }
            Key::Backspace => {
                self.typed.pop();
                self.typed_at = Some(now);
                self.find();
            }
            Key::Enter => {
                if let Some(name) = self.selected.clone() {
                    return Action::Attach(name);
                }
            }
            Key::Ctrl('s') => {
                if let Some(name) = self.selected.clone() {
                    self.mode = Mode::ConfirmStop(name);
                }
            }
            Key::Ctrl('r') => {
                if let Some(name) = self.selected.clone() {
                    return Action::Start(name);
                }
            }
            Key::Ctrl('t') => {
                if let Some(agent) = self.selected.clone() {
                    self.mode = Mode::SendLine {
                        agent,
                        text: String::new(),
                    };
                }
            }
            Key::Ctrl('c' | 'd' | 'q') => return Action::Quit,
            Key::Ctrl('l') => return Action::Redraw,
            Key::Ctrl('o') => {
                self.order = match self.order {
                    Order::Name => Order::Attention,
                    Order::Attention => Order::Name,
                };
                self.sort();
                self.table.select(self.index());
                let said = match self.order {
                    Order::Name => "sorted by name",
                    Order::Attention => "sorted by need: waiting first",
                };
                self.message = Some((said.to_owned(), false));
            }
            Key::F1 => self.mode = Mode::Help,
            // A pasted text never acts (its lines could attach or stop): only ^T takes it.
            Key::Paste { .. } => {
                self.message = Some((
                    "a paste is taken only after ^T (send a line)".to_owned(),
                    false,
                ));
            }
            _ => {}
        }
        Action::None
    }

    /// Selects the first agent whose name starts with what was typed (or, failing that,
    /// contains it).
    fn find(&mut self) {
        if self.typed.is_empty() {
            return;
        }
        let typed = self.typed.to_lowercase();
        let found = self
            .agents
            .iter()
            .position(|a| a.name.to_lowercase().starts_with(&typed))
            .or_else(|| {
                self.agents
                    .iter()
                    .position(|a| a.name.to_lowercase().contains(&typed))
            });
        match found {
            Some(i) => self.select_index(Some(i)),
            None => self.message = Some((format!("no agent matches '{}'", self.typed), true)),
        }
    }

    /// How many agents one page of the list shows in a terminal of `rows`.
    pub fn page(rows: u16) -> usize {
        usize::from(rows.saturating_sub(4)).max(1)
    }
}

/// The colour of a status, the same wherever the view shows it.
pub fn status_style(agent: &AgentRecord) -> Style {
    let style = Style::default();
    match agent.shown_status() {
        "waiting" => style.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        "working" => style.fg(Color::Green),
        "idle" => style.fg(Color::Blue),
        "running" | "creating" => style.fg(Color::Cyan),
        "exited" if agent.exit_code == Some(0) => style.fg(Color::DarkGray),
        "exited" | "unknown" => style.fg(Color::Red),
        _ => style.fg(Color::DarkGray),
    }
}

/// Text from an agent's screen, made safe to draw: no control characters.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `text` cut to `width` characters, with `…` where it was cut.
fn cut(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn column_width(
    agents: &[AgentRecord],
    header: &str,
    max: usize,
    of: fn(&AgentRecord) -> &str,
) -> u16 {
    let widest = agents
        .iter()
        .map(|a| of(a).chars().count())
        .max()
        .unwrap_or(0)
        .max(header.len())
        .min(max);
    u16::try_from(widest).unwrap_or(u16::MAX)
}

/// Draws the whole view into `buf` (the terminal's size).
pub fn render(view: &mut View, area: Rect, buf: &mut Buffer) {
    if area.height == 0 || area.width == 0 {
        return;
    }
    let title = Rect { height: 1, ..area };
    title_line(view).render(title, buf);
    let bottom = Rect {
        y: area.bottom().saturating_sub(1),
        height: 1,
        ..area
    };
    let detail = Rect {
        y: area.bottom().saturating_sub(2),
        height: 1,
        ..area
    };
    let list = Rect {
        y: area.y + 1,
        height: area.height.saturating_sub(3),
        ..area
    };
    if area.height >= 3 {
        agents_table(view, list, buf);
        detail_line(view).render(detail, buf);
    }
    if area.height >= 2 {
        bottom_line(view, area.width).render(bottom, buf);
    }
    if view.mode == Mode::Help {
        help(area, buf);
    }
}

/// What the help shows: each key and what it does.
const HELP: &[(&str, &str)] = &[
    ("↑ ↓ PgUp PgDn Home End", "select an agent"),
    ("a-z 0-9 -", "find an agent by its name"),
    ("Enter", "attach (C-b d detaches, back to here)"),
    ("^S", "stop it (asks first)"),
    ("^R", "start it"),
    ("^T", "send it a line (or a paste), then Enter"),
    ("^O", "sort by name, or by need"),
    ("^L", "draw the screen again"),
    ("^C ^D ^Q", "leave"),
    ("", ""),
    ("waiting", "it asks you something (yellow)"),
    ("working", "its screen changes (green)"),
    ("idle", "no output, no input for a while (blue)"),
];

/// The help, in a box over the middle of the screen (cut to what fits).
fn help(area: Rect, buf: &mut Buffer) {
    use ratatui::widgets::{Block, Borders, Clear, Paragraph};
    let width = area.width.min(70);
    let height = area
        .height
        .min(u16::try_from(HELP.len() + 2).unwrap_or(u16::MAX));
    let boxed = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(
                    format!(" {key:<23}"),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw((*what).to_owned()),
            ])
        })
        .collect();
    Clear.render(boxed, buf);
    Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(" keys "))
        .render(boxed, buf);
}

fn title_line(view: &View) -> Line<'static> {
    let mut counts: Vec<(&'static str, usize, Style)> = Vec::new();
    for agent in &view.agents {
        let status = agent.shown_status();
        match counts.iter_mut().find(|(s, _, _)| *s == status) {
            Some(entry) => entry.1 += 1,
            None => counts.push((status, 1, status_style(agent))),
        }
    }
    // The statuses that ask for the operator come first.
    let order = [
        "waiting", "working", "idle", "running", "exited", "unknown", "creating", "stopped",
    ];
    counts.sort_by_key(|(s, _, _)| order.iter().position(|o| o == s));
    let total = view.agents.len();
    let mut spans = vec![Span::styled(
        format!(
            " agentgate · {total} agent{}",
            if total == 1 { "" } else { "s" }
        ),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    for (status, n, style) in counts {
        spans.push(Span::raw(" · "));
        spans.push(Span::styled(format!("{n} {status}"), style));
    }
    Line::from(spans)
}

fn agents_table(view: &mut View, area: Rect, buf: &mut Buffer) {
    if view.agents.is_empty() {
        Line::from(" No agents yet. Create one: ssh gw create NAME --template TEMPLATE").render(
            Rect {
                height: 1,
                y: area.y + 1,
                ..area
            },
            buf,
        );
        return;
    }
    let name_width = column_width(&view.agents, "NAME", MAX_NAME, |a| &a.name);
    let host_width = column_width(&view.agents, "HOST", MAX_HOST, |a| &a.host);
    let with_usage = !view.usage.is_empty() && area.width >= USAGE_MIN_WIDTH;
    let rows: Vec<Row> = view
        .agents
        .iter()
        .map(|a| {
            let last = printable(a.activity.last_line.as_deref().unwrap_or(""));
            let mut cells = vec![
                Cell::from(cut(&a.name, usize::from(name_width))),
                Cell::from(cut(&a.host, usize::from(host_width))),
                Cell::from(status_text(a)).style(status_style(a)),
                Cell::from(a.status_since.map_or_else(String::new, age)),
            ];
            if with_usage {
                let (cpu, mem) = usage_cells(view.usage.get(&a.name));
                cells.push(Cell::from(Line::from(cpu).right_aligned()));
                cells.push(Cell::from(Line::from(mem).right_aligned()));
            }
            cells.push(Cell::from(last).style(Style::default().fg(Color::Gray)));
            Row::new(cells)
        })
        .collect();
    let mut headings = vec![
        Cell::from("NAME"),
        Cell::from("HOST"),
        Cell::from("STATUS"),
        Cell::from("SINCE"),
    ];
    let mut widths = vec![
        Constraint::Length(name_width),
        Constraint::Length(host_width),
        Constraint::Length(14),
        Constraint::Length(5),
    ];
    if with_usage {
        headings.push(Cell::from(Line::from("CPU%").right_aligned()));
        headings.push(Cell::from(Line::from("MEM").right_aligned()));
        widths.extend([Constraint::Length(5), Constraint::Length(6)]);
    }
    headings.push(Cell::from("LAST LINE"));
    widths.push(Constraint::Fill(1));
    let header = Row::new(headings)
        .style(Style::default().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let table = Table::new(rows, widths)
        .header(header)
        .column_spacing(2)
        .highlight_symbol("> ")
        .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    StatefulWidget::render(table, area, buf, &mut view.table);
}

/// The CPU% and MEM cells of an agent: blank for one with no figures (not running, or its
/// host did not say), the CPU share of one core over the host's last window (`-` when it has
/// none yet) and the resident memory in short units, as `usage` prints them.
fn usage_cells(usage: Option<&AgentUsage>) -> (String, String) {
    match usage {
        None => (String::new(), String::new()),
        Some(u) => (
            u.cpu_percent
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}")),
            hostctl::disk::size_short(u.memory_bytes),
        ),
    }
}

fn detail_line(view: &View) -> Line<'static> {
    let Some(agent) = view
        .selected()
        .and_then(|n| view.agents.iter().find(|a| a.name == n))
    else {
        return Line::from(view.warnings.first().cloned().unwrap_or_default());
    };
    let mut spans = vec![
        Span::styled(
            format!(" {}", agent.name),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(" · {} on {} · ", agent.template, agent.host)),
        Span::styled(status_text(agent), status_style(agent)),
    ];
    if let Some(reason) = &agent.activity.reason {
        spans.push(Span::raw(format!(": {}", printable(reason))));
    }
    if agent.status == AgentStatus::Unknown
        && let Some(warning) = view.warnings.iter().find(|w| w.contains(&agent.host))
    {
        spans.push(Span::raw(format!(" · {warning}")));
    }
    Line::from(spans)
}

fn bottom_line(view: &View, width: u16) -> Line<'static> {
    let key = Style::default().add_modifier(Modifier::REVERSED);
    match &view.mode {
        Mode::Help => Line::from(Span::styled(
            " any key closes the help",
            Style::default().add_modifier(Modifier::BOLD),
        )),
        Mode::ConfirmStop(name) => Line::from(vec![
            Span::styled(
                format!(" stop agent '{name}'?"),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(" its workspace is kept  "),
            Span::styled("y", key),
            Span::raw(" yes  "),
            Span::styled("any other key", key),
            Span::raw(" no"),
        ]),
        Mode::SendLine { agent, text } => {
            let prompt = format!(" send to {agent}: ");
            let (after, after_style) = match &view.message {
                Some((message, true)) => (format!("  {message}"), Style::default().fg(Color::Red)),
                Some((message, false)) => (format!("  {message}"), Style::default()),
                None => ("  Enter sends · Esc cancels".to_owned(), Style::default()),
            };
            // The end of the text, where the cursor is, stays in sight.
            let room = usize::from(width)
                .saturating_sub(prompt.chars().count() + 1 + after.chars().count())
                .max(8);
            Line::from(vec![
                Span::styled(prompt, Style::default().add_modifier(Modifier::BOLD)),
                Span::raw(line_being_typed(text, room)),
                Span::styled(" ", key),
                Span::styled(after, after_style),
            ])
        }
        Mode::Browse => {
            if let Some((message, error)) = &view.message {
                let style = if *error {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                };
                return Line::from(Span::styled(format!(" {message}"), style));
            }
            if !view.typed.is_empty() {
                return Line::from(vec![
                    Span::raw(" find: "),
                    Span::styled(
                        view.typed.clone(),
                        Style::default().add_modifier(Modifier::BOLD),
                    ),
                    Span::raw("  (Esc clears)"),
                ]);
            }
            let mut spans = Vec::new();
            for (k, what) in [
                ("↑↓", "select"),
                ("Enter", "attach"),
                ("^S", "stop"),
                ("^R", "start"),
                ("^T", "send"),
                ("^C", "quit"),
                ("?", "help"),
            ] {
                spans.push(Span::raw(" "));
                spans.push(Span::styled(k, key));
                spans.push(Span::raw(format!(" {what} ")));
            }
            Line::from(spans)
        }
    }
}

/// The last `room` characters of the text being typed, drawn as typed (its spaces kept), its
/// line breaks as `⏎` and its other control characters as spaces; `…` where it was cut.
fn line_being_typed(text: &str, room: usize) -> String {
    let mut shown: Vec<char> = text
        .chars()
        .rev()
        .take(room + 1)
        .map(|c| match c {
            '\n' => '⏎',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    if shown.len() > room {
        shown.truncate(room.saturating_sub(1));
        shown.push('…');
    }
    shown.into_iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ActivityState;
    use crate::store::sample_agent;

    fn agent(name: &str, host: &str, status: AgentStatus) -> AgentRecord {
        sample_agent(name, host, status)
    }

    fn three() -> Vec<AgentRecord> {
        let mut waiting = agent("fix-ci", "gpu-box", AgentStatus::Running);
        waiting.activity.state = Some(ActivityState::Waiting);
        waiting.activity.reason = Some("asks to run a command".to_owned());
        waiting.activity.last_line = Some("Do you want to run `make test`?\x07".to_owned());
        let mut exited = agent("docs", "local", AgentStatus::Exited);
        exited.exit_code = Some(3);
        let mut working = agent("fix-lint", "laptop", AgentStatus::Running);
        working.activity.state = Some(ActivityState::Working);
        vec![exited, waiting, working]
    }

    fn screen(view: &mut View, cols: u16, rows: u16) -> (Buffer, Vec<String>) {
        let area = Rect::new(0, 0, cols, rows);
        let mut buf = Buffer::empty(area);
        render(view, area, &mut buf);
        let lines = (0..rows)
            .map(|y| {
                (0..cols)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
                    .trim_end()
                    .to_owned()
            })
            .collect();
        (buf, lines)
    }

    fn keys(view: &mut View, keys: &[Key]) -> Vec<Action> {
        let now = Instant::now();
        keys.iter().map(|k| view.key(k.clone(), 10, now)).collect()
    }

    #[test]
    fn draws_every_agent_with_its_status_in_80_by_24() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        let (buf, lines) = screen(&mut view, 80, 24);
        assert_eq!(
            lines[0],
            " agentgate · 3 agents · 1 waiting · 1 working · 1 exited"
        );
        assert!(
            lines[1].contains("NAME") && lines[1].contains("LAST LINE"),
            "{lines:#?}"
        );
        assert!(lines[2].starts_with("> docs"), "{lines:#?}");
        assert!(lines[2].contains("exited (3)"), "{lines:#?}");
        let fix_ci = &lines[3];
        assert!(
            fix_ci.contains("gpu-box") && fix_ci.contains("waiting"),
            "{fix_ci}"
        );
        // The screen's own control characters are not drawn.
        assert!(
            fix_ci.contains("Do you want to run `make test`?"),
            "{fix_ci}"
        );
        assert!(!fix_ci.contains('\x07'));
        // Waiting is yellow, working green, a failed exit red.
        let status_x = u16::try_from(fix_ci.find("waiting").unwrap_or(0)).unwrap_or(0);
        assert_eq!(buf[(status_x, 3)].fg, Color::Yellow);
        assert_eq!(buf[(status_x, 4)].fg, Color::Green);
        assert_eq!(buf[(status_x, 2)].fg, Color::Red);
        // The keys, and details of the selected agent, at the bottom.
        assert!(lines[22].starts_with(" docs · "), "{lines:#?}");
        assert!(lines[23].contains("Enter attach"), "{lines:#?}");
        assert!(lines[23].chars().count() <= 80);
    }

    #[test]
    fn running_agents_show_what_they_use_and_the_others_blank_figures() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        let used = |cpu: Option<f64>, mem: u64| AgentUsage {
            cpu_percent: cpu,
            memory_bytes: mem,
            ..AgentUsage::default()
        };
        view.usage = Usage::from([
            ("fix-ci".to_owned(), used(Some(37.4), 64 * 1024 * 1024)),
            ("fix-lint".to_owned(), used(None, 1536 * 1024)),
        ]);
        let (_, lines) = screen(&mut view, 100, 24);
        let header = &lines[1];
        let (cpu_end, mem_end) = (
            header.find("CPU%").map(|i| i + 4),
            header.find("MEM").map(|i| i + 3),
        );
        assert!(cpu_end.is_some() && mem_end.is_some(), "{header}");
        let figure = |line: &str, end: Option<usize>, width: usize| -> String {
            let end = end.unwrap_or(0);
            line.chars()
                .skip(end - width)
                .take(width)
                .collect::<String>()
                .trim()
                .to_owned()
        };
        // Right-aligned under their headings.
        assert_eq!(figure(&lines[3], cpu_end, 5), "37", "{lines:#?}");
        assert_eq!(figure(&lines[3], mem_end, 6), "64.0M", "{lines:#?}");
        // No window yet: a dash, as `usage` shows it.
        assert_eq!(figure(&lines[4], cpu_end, 5), "-", "{lines:#?}");
        assert_eq!(figure(&lines[4], mem_end, 6), "1.5M", "{lines:#?}");
        // The exited agent has no figures.
        assert_eq!(figure(&lines[2], cpu_end, 5), "", "{lines:#?}");
        assert_eq!(figure(&lines[2], mem_end, 6), "", "{lines:#?}");
        // In 80 columns the last lines keep the room.
        let (_, narrow) = screen(&mut view, 80, 24);
        assert!(!narrow[1].contains("CPU%"), "{narrow:#?}");
        assert!(
            narrow[3].contains("Do you want to run `make test`?"),
            "{narrow:#?}"
        );
    }

    #[test]
    fn long_names_are_cut_and_a_tiny_terminal_does_not_break_drawing() {
        let mut view = View::new();
        let mut agents = three();
        agents[0].name = "a-very-long-agent-name-that-goes-on-and-on".to_owned();
        view.set_agents(agents, Vec::new());
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(lines[2].contains("a-very-long-agent-name-…"), "{lines:#?}");
        for (cols, rows) in [(1, 1), (10, 2), (20, 3), (0, 0), (300, 100)] {
            screen(&mut view, cols, rows);
        }
    }

    #[test]
    fn arrows_move_and_the_selection_follows_the_agent_across_refreshes() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        assert_eq!(view.selected(), Some("docs"));
        keys(&mut view, &[Key::Down, Key::Down, Key::Down]);
        assert_eq!(view.selected(), Some("fix-lint"));
        keys(&mut view, &[Key::Home]);
        assert_eq!(view.selected(), Some("docs"));
        keys(&mut view, &[Key::End, Key::Up]);
        assert_eq!(view.selected(), Some("fix-ci"));
        // A new agent listed before it: still fix-ci.
        let mut agents = three();
        agents.insert(0, agent("aaa", "local", AgentStatus::Stopped));
        view.set_agents(agents, Vec::new());
        assert_eq!(view.selected(), Some("fix-ci"));
        // fix-ci gone: the one now at its place.
        let agents: Vec<_> = three().into_iter().filter(|a| a.name != "fix-ci").collect();
        view.set_agents(agents, Vec::new());
        assert_eq!(view.selected(), Some("fix-lint"));
        view.set_agents(Vec::new(), Vec::new());
        assert_eq!(view.selected(), None);
        assert_eq!(
            keys(&mut view, &[Key::Enter, Key::Down]),
            [Action::None, Action::None]
        );
    }

    #[test]
    fn typing_finds_by_prefix_then_by_part_and_says_when_nothing_matches() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(
            &mut view,
            &[
                Key::Char('f'),
                Key::Char('i'),
                Key::Char('x'),
                Key::Char('-'),
                Key::Char('l'),
            ],
        );
        assert_eq!(view.selected(), Some("fix-lint"));
        keys(&mut view, &[Key::Backspace, Key::Backspace]);
        assert_eq!(view.selected(), Some("fix-ci"));
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(lines[23].contains("find: fix"), "{lines:#?}");
        keys(&mut view, &[Key::Esc]);
        // A part of a name.
        keys(&mut view, &[Key::Char('l'), Key::Char('i'), Key::Char('n')]);
        assert_eq!(view.selected(), Some("fix-lint"));
        keys(&mut view, &[Key::Char('z')]);
        assert_eq!(view.selected(), Some("fix-lint"));
        assert_eq!(
            view.message,
            Some(("no agent matches 'linz'".to_owned(), true))
        );
        // A pause starts a new name.
        let later = Instant::now() + TYPE_AHEAD + Duration::from_millis(10);
        view.key(Key::Char('d'), 10, later);
        assert_eq!(view.selected(), Some("docs"));
    }

    #[test]
    fn enter_attaches_and_the_control_keys_act_on_the_selected_agent() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(&mut view, &[Key::Down]);
        assert_eq!(
            keys(&mut view, &[Key::Enter]),
            [Action::Attach("fix-ci".into())]
        );
        assert_eq!(
            keys(&mut view, &[Key::Ctrl('r')]),
            [Action::Start("fix-ci".into())]
        );
        // Stopping asks first; anything but y is no.
        assert_eq!(
            keys(&mut view, &[Key::Ctrl('s'), Key::Char('n')]),
            [Action::None, Action::None]
        );
        assert_eq!(
            view.message,
            Some(("'fix-ci' was not stopped".to_owned(), false))
        );
        assert_eq!(
            keys(&mut view, &[Key::Ctrl('s'), Key::Char('y')]),
            [Action::None, Action::Stop("fix-ci".into())]
        );
        // A line to send: typed, edited, sent with Enter.
        let sent = keys(
            &mut view,
            &[
                Key::Ctrl('t'),
                Key::Char('y'),
                Key::Char('e'),
                Key::Char('x'),
                Key::Backspace,
                Key::Char('s'),
                Key::Enter,
            ],
        );
        assert_eq!(
            sent.last(),
            Some(&Action::Send {
                agent: "fix-ci".into(),
                text: "yes".into()
            })
        );
        assert_eq!(view.mode, Mode::Browse);
        // Esc gives up the line; ^C there does not quit the view.
        assert_eq!(
            keys(&mut view, &[Key::Ctrl('t'), Key::Char('x'), Key::Ctrl('c')]).last(),
            Some(&Action::None)
        );
        assert_eq!(view.mode, Mode::Browse);
        assert_eq!(keys(&mut view, &[Key::Ctrl('c')]), [Action::Quit]);
        assert_eq!(keys(&mut view, &[Key::Ctrl('l')]), [Action::Redraw]);
    }

    #[test]
    fn the_help_opens_with_a_question_mark_and_any_key_closes_it() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(&mut view, &[Key::Char('?')]);
        assert_eq!(view.mode, Mode::Help);
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(lines.iter().any(|l| l.contains(" keys ")), "{lines:#?}");
        assert!(
            lines.iter().any(|l| l.contains("^O") && l.contains("sort")),
            "{lines:#?}"
        );
        // The key that closes it does nothing else, Enter included.
        assert_eq!(keys(&mut view, &[Key::Enter]), [Action::None]);
        assert_eq!(view.mode, Mode::Browse);
        // In a name being typed, ? is just a character; F1 opens the help too.
        keys(&mut view, &[Key::Char('f'), Key::Char('?')]);
        assert_eq!(view.mode, Mode::Browse);
        keys(&mut view, &[Key::F1]);
        assert_eq!(view.mode, Mode::Help);
        // Drawing it in a tiny terminal does not fail.
        for (cols, rows) in [(1, 1), (10, 3), (0, 0)] {
            screen(&mut view, cols, rows);
        }
    }

    #[test]
    fn control_o_puts_those_that_need_the_operator_first_and_keeps_the_selection() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        let names = |v: &View| v.agents.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&view), ["docs", "fix-ci", "fix-lint"]);
        keys(&mut view, &[Key::Down, Key::Down]);
        assert_eq!(view.selected(), Some("fix-lint"));
        keys(&mut view, &[Key::Ctrl('o')]);
        // Waiting, then a failed exit, then working.
        assert_eq!(names(&view), ["fix-ci", "docs", "fix-lint"]);
        assert_eq!(view.selected(), Some("fix-lint"));
        // A refresh keeps the order.
        view.set_agents(three(), Vec::new());
        assert_eq!(names(&view), ["fix-ci", "docs", "fix-lint"]);
        keys(&mut view, &[Key::Ctrl('o')]);
        assert_eq!(names(&view), ["docs", "fix-ci", "fix-lint"]);
    }

    #[test]
    fn the_line_being_typed_and_the_question_are_drawn_at_the_bottom() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(&mut view, &[Key::Ctrl('t'), Key::Char('o'), Key::Char('k')]);
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(lines[23].starts_with(" send to docs: ok"), "{lines:#?}");
        keys(&mut view, &[Key::Esc, Key::Ctrl('s')]);
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(lines[23].starts_with(" stop agent 'docs'?"), "{lines:#?}");
    }

    fn pasted(text: &str) -> Key {
        Key::Paste {
            text: text.to_owned(),
            cut: false,
        }
    }

    #[test]
    fn a_paste_in_the_line_is_text_with_its_line_breaks_shown_and_enter_sends_it_all() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(
            &mut view,
            &[Key::Ctrl('t'), Key::Char('>'), pasted("line1\n\nline3\n")],
        );
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(
            lines[23].starts_with(" send to docs: >line1⏎⏎line3⏎   Enter sends"),
            "{lines:#?}"
        );
        // Edited after: a backspace takes the last line break.
        assert_eq!(
            keys(&mut view, &[Key::Backspace, Key::Char('!'), Key::Enter]).last(),
            Some(&Action::Send {
                agent: "docs".into(),
                text: ">line1\n\nline3!".into()
            })
        );
        // A text longer than the line shows its end, where the cursor is.
        let long = format!("{}\nthe end", "x".repeat(200));
        keys(&mut view, &[Key::Ctrl('t'), pasted(&long)]);
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(
            lines[23].starts_with(" send to docs: …xxx") && lines[23].contains("x⏎the end "),
            "{lines:#?}"
        );
        assert!(
            lines[23].ends_with("Enter sends · Esc cancels"),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_paste_past_the_longest_line_is_cut_and_the_bottom_line_says_so() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        keys(&mut view, &[Key::Ctrl('t'), Key::Char('é')]);
        // 'é' is 2 bytes: the paste fits but for its last character, which is not split.
        let paste = format!("{}ü", "a".repeat(MAX_LINE - 3));
        keys(&mut view, &[pasted(&paste)]);
        let Mode::SendLine { text, .. } = &view.mode else {
            panic!("not in the line: {:?}", view.mode)
        };
        assert_eq!(text.len(), MAX_LINE - 1);
        assert!(text.ends_with('a'));
        let (_, lines) = screen(&mut view, 120, 24);
        assert!(
            lines[23].contains("the paste was cut: the text is at most 1024 KiB"),
            "{lines:#?}"
        );
        // A paste the terminal sent too long for the decoder says so too, even when empty.
        keys(
            &mut view,
            &[
                Key::Esc,
                Key::Ctrl('t'),
                Key::Paste {
                    text: "kept".into(),
                    cut: true,
                },
            ],
        );
        assert_eq!(view.message.as_ref().map(|m| m.1), Some(true));
        assert_eq!(
            keys(&mut view, &[Key::Enter]),
            [Action::Send {
                agent: "docs".into(),
                text: "kept".into()
            }]
        );
    }

    #[test]
    fn a_paste_outside_the_line_does_not_act() {
        let mut view = View::new();
        view.set_agents(three(), Vec::new());
        let paste = pasted("fix-l\n\u{13}y\n");
        // In the list: no attach, no selection, no type-ahead; it says where pastes go.
        assert_eq!(
            keys(&mut view, std::slice::from_ref(&paste)),
            [Action::None]
        );
        assert_eq!(view.selected(), Some("docs"));
        assert_eq!(view.mode, Mode::Browse);
        let (_, lines) = screen(&mut view, 80, 24);
        assert!(
            lines[23].contains("a paste is taken only after ^T"),
            "{lines:#?}"
        );
        // Asked whether to stop: a paste is not a yes.
        assert_eq!(
            keys(&mut view, &[Key::Ctrl('s'), pasted("y")]),
            [Action::None, Action::None]
        );
        assert_eq!(
            view.message,
            Some(("'docs' was not stopped".to_owned(), false))
        );
        // In the help: it closes it, and nothing more.
        assert_eq!(
            keys(&mut view, &[Key::F1, paste]),
            [Action::None, Action::None]
        );
        assert_eq!(view.mode, Mode::Browse);
        assert_eq!(view.selected(), Some("docs"));
    }
}
