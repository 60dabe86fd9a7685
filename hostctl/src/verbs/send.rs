//! Text and keys into an agent's pane: typed or pasted, Enter once the CLI has taken the text,
//! and what the screen showed before, for the gateway to confirm it arrived.

use super::*;

/// How long after a text is put into an agent Enter is pressed: long enough for a CLI that
/// reads a burst of keys as a paste to have closed it (Codex waits 120 ms after the last key
/// of a burst, Gemini CLI 30 ms), and longer after a paste of many lines, which a CLI may
/// take in with a delay of its own (Claude Code shows `[Pasted text]` first).
pub fn submit_delay(text: &str) -> Duration {
    let base = Duration::from_millis(if text.contains('\n') { 500 } else { 250 });
    let per_kib = Duration::from_millis(20) * u32::try_from(text.len() / 1024).unwrap_or(u32::MAX);
    (base + per_kib).min(Duration::from_secs(2))
}

/// How long `send` waits for the agent's screen to show the text before the pause and Enter.
const ECHO_WITHIN: Duration = Duration::from_secs(2);

impl HostCtl {
    /// Types text into the agent (pastes it, when it has a line break), then Enter unless
    /// `enter` is false.
    /// Puts `text` into the agent (typed, or pasted when it has a line break), then, after the
    /// CLI has had the time to take it in, presses Enter. A CLI that reads fast keystrokes
    /// as a paste (Codex, Gemini CLI) turns an Enter that follows them closely into a line
    /// break: the pause makes it a submit.
    pub fn send(&self, name: &str, text: &str, enter: bool) -> Result<SendReport> {
        let pane = self.running_pane(name)?;
        // The screen before the text, for telling when it shows the text (only needed when
        // Enter follows).
        let before = enter.then(|| self.tmux.capture(name).unwrap_or_default());
        self.tmux.put_text(name, text)?;
        let Some(before) = before else {
            return Ok(self.report_before_keys(name, &pane));
        };
        // A CLI that is busy reads the text late, and then the Enter with it, as one burst:
        // the pause counts from when its screen shows the text.
        self.wait_for_echo(name, text, &before);
        std::thread::sleep(submit_delay(text));
        let report = self.report_before_keys(name, &pane);
        self.tmux.press(name, &[Key::Enter])?;
        Ok(report)
    }

    /// Waits (at most [`ECHO_WITHIN`]) until the agent's screen shows the end of `text` (or,
    /// for a pasted text, which a CLI may show as `[Pasted text]`, until it changed from
    /// `before`).
    fn wait_for_echo(&self, name: &str, text: &str, before: &str) {
        let last_line = text.lines().last().unwrap_or_default().trim_end();
        let tail: String = {
            let chars: Vec<char> = last_line.chars().collect();
            chars[chars.len().saturating_sub(16)..].iter().collect()
        };
        let started = Instant::now();
        while started.elapsed() < ECHO_WITHIN {
            let Ok(screen) = self.tmux.capture(name) else {
                return;
            };
            let shown = if text.contains('\n') || tail.trim().is_empty() {
                screen != before
            } else {
                screen.contains(tail.as_str())
            };
            if shown {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Presses `keys` in the agent, one after the other (answering a dialog).
    pub fn keys(&self, name: &str, keys: &[Key]) -> Result<SendReport> {
        let pane = self.running_pane(name)?;
        let report = self.report_before_keys(name, &pane);
        self.tmux.press(name, keys)?;
        Ok(report)
    }

    fn running_pane(&self, name: &str) -> Result<Pane> {
        check_name(name)?;
        self.files.read_meta(name)?;
        match self.tmux.pane(name)? {
            Some(pane) if !pane.dead => Ok(pane),
            Some(_) => Err(Error::Failed(format!(
                "agent '{name}' has exited; start it first (start {name})"
            ))),
            None => Err(Error::Failed(format!(
                "agent '{name}' is stopped; start it first (start {name})"
            ))),
        }
    }

    fn report_before_keys(&self, name: &str, pane: &Pane) -> SendReport {
        SendReport {
            at: time::OffsetDateTime::now_utc(),
            screen: self.tmux.capture(name).ok().map(|text| {
                Screen::from_text(pane.cols, pane.rows, &text, pane.foreground.clone())
            }),
        }
    }
}
