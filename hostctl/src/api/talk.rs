//! What an agent's CLI reports through its hooks (`HookEvent`), and what is typed into it
//! (`Key`, and `SendReport`: what the screen showed, for the gateway to confirm it arrived).

use super::*;

/// What a CLI's hook event means for its agent, whatever the CLI calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookKind {
    /// The CLI started (or resumed) a session: it is at its prompt.
    SessionStarted,
    /// The operator's prompt reached the CLI: a turn begins.
    PromptSubmitted,
    /// A tool is about to run (or to be asked about).
    ToolStarted,
    /// A tool ran (or failed, or was refused).
    ToolEnded,
    /// The CLI asks permission to use a tool.
    PermissionAsked,
    /// The CLI asks the operator a question (a dialog that is not a permission).
    QuestionAsked,
    /// The turn ended: the CLI is back at its prompt.
    TurnEnded,
    /// The turn ended in an error (a refused API call, a rate limit).
    TurnFailed,
    /// The CLI's session ends: its process is about to exit.
    SessionEnded,
    /// Any other event: recorded, and means nothing for the status.
    #[serde(other)]
    Other,
}

/// One event an agent's CLI reported through its hooks (`hostctl hook`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookEvent {
    /// When hostctl received it (the host's clock).
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    pub cli: AgentCli,
    /// The CLI's own name of the event (`PermissionRequest`, `AfterAgent`), for people.
    pub event: String,
    pub kind: HookKind,
    /// The tool it is about (`Bash`, `run_shell_command`), when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What it is about, on one line and cut short: the command a tool runs, the file it
    /// writes, the question asked, the prompt submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The CLI's session it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// What `hostctl send` and `hostctl keys` did: the time just before the last key (Enter, for
/// a text) and the screen then, so that the caller can tell whether the agent took it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReport {
    /// The host's time just before the last key was pressed.
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
    /// The screen just before it (none when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screen: Option<Screen>,
}

/// A key by name, for answering a dialog (`hostctl keys`, `ssh gw send --key`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Key {
    Enter,
    Escape,
    Tab,
    BackTab,
    Up,
    Down,
    Left,
    Right,
    Space,
    Backspace,
    /// Control and a letter (`C-c`).
    Ctrl(char),
    /// A digit or a lowercase or uppercase letter, as typed (`1`, `y`, `n`).
    Char(char),
}

impl Key {
    /// The names [`Key::parse`] takes, for messages.
    pub const NAMES: &str =
        "Enter, Esc, Tab, BTab, Up, Down, Left, Right, Space, BSpace, C-a ... C-z, 0-9, a-z, A-Z";

    pub fn parse(name: &str) -> Result<Key, String> {
        let key = match name {
            "Enter" | "enter" | "Return" | "CR" => Key::Enter,
            "Esc" | "esc" | "Escape" => Key::Escape,
            "Tab" | "tab" => Key::Tab,
            "BTab" | "BackTab" => Key::BackTab,
            "Up" | "up" => Key::Up,
            "Down" | "down" => Key::Down,
            "Left" | "left" => Key::Left,
            "Right" | "right" => Key::Right,
            "Space" | "space" => Key::Space,
            "BSpace" | "Backspace" => Key::Backspace,
            _ => {
                let mut chars = name.chars();
                match (chars.next(), chars.next(), chars.next(), chars.next()) {
                    (Some(c), None, None, None) if c.is_ascii_alphanumeric() => Key::Char(c),
                    (Some('C' | 'c'), Some('-'), Some(c), None) if c.is_ascii_alphabetic() => {
                        Key::Ctrl(c.to_ascii_lowercase())
                    }
                    _ => {
                        return Err(format!(
                            "'{}' is not a key name (keys: {})",
                            name.escape_debug(),
                            Key::NAMES
                        ));
                    }
                }
            }
        };
        Ok(key)
    }

    /// tmux's name of the key, for `send-keys`.
    pub fn tmux_name(self) -> String {
        match self {
            Key::Enter => "Enter".into(),
            Key::Escape => "Escape".into(),
            Key::Tab => "Tab".into(),
            Key::BackTab => "BTab".into(),
            Key::Up => "Up".into(),
            Key::Down => "Down".into(),
            Key::Left => "Left".into(),
            Key::Right => "Right".into(),
            Key::Space => "Space".into(),
            Key::Backspace => "BSpace".into(),
            Key::Ctrl(c) => format!("C-{c}"),
            Key::Char(c) => c.to_string(),
        }
    }
}

impl TryFrom<String> for Key {
    type Error = String;
    fn try_from(name: String) -> Result<Key, String> {
        Key::parse(&name)
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.tmux_name()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.tmux_name())
    }
}

/// The most hook events [`AgentInfo::hooks`] carries.
pub const HOOK_EVENTS_REPORTED: usize = 16;
