//! What operators type into agents through the gateway: when each last typed (a keystroke
//! is input; a terminal's answer to a query is not) and how many are attached now.

use std::collections::HashMap;
use std::sync::Mutex;

use time::OffsetDateTime;

/// When operators last typed into each agent through this gateway, and how many are attached
/// to it now. Kept in memory (a keystroke must not cost a database write) and folded into the
/// store by [`super::next`]'s callers.
#[derive(Debug, Default)]
pub struct Inputs {
    typed: Mutex<HashMap<String, OffsetDateTime>>,
    viewers: Mutex<HashMap<String, usize>>,
}

impl Inputs {
    pub fn touch(&self, agent: &str) {
        if let Ok(mut map) = self.typed.lock() {
            map.insert(agent.to_owned(), OffsetDateTime::now_utc());
        }
    }

    pub fn last(&self, agent: &str) -> Option<OffsetDateTime> {
        self.typed.lock().ok()?.get(agent).copied()
    }

    /// An agent destroyed: a new one of its name starts afresh.
    pub fn forget(&self, agent: &str) {
        if let Ok(mut map) = self.typed.lock() {
            map.remove(agent);
        }
    }

    /// Counts a viewer attached to `agent` until the guard is dropped.
    pub fn attached<'a>(&'a self, agent: &str) -> Attached<'a> {
        if let Ok(mut map) = self.viewers.lock() {
            *map.entry(agent.to_owned()).or_default() += 1;
        }
        Attached {
            inputs: self,
            agent: agent.to_owned(),
        }
    }

    pub fn viewers(&self, agent: &str) -> usize {
        self.viewers
            .lock()
            .ok()
            .and_then(|m| m.get(agent).copied())
            .unwrap_or(0)
    }
}

/// A viewer attached to an agent (see [`Inputs::attached`]).
pub struct Attached<'a> {
    inputs: &'a Inputs,
    agent: String,
}

impl Drop for Attached<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.inputs.viewers.lock()
            && let Some(n) = map.get_mut(&self.agent)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.agent);
            }
        }
    }
}

/// Whether bytes a client sent to an agent's terminal were typed by someone, rather than being
/// only its terminal's answers to questions the program (tmux, on attach) asked: device
/// attributes (`ESC [ ? 1 ; 2 c`), cursor position and status reports, mode reports, focus
/// changes, and OSC or DCS replies (colours, the terminal's name).
pub fn typed(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(len) = terminal_report(rest) else {
            return true;
        };
        rest = &rest[len..];
    }
    false
}

/// The length of the terminal report at the start of `bytes`, if one is there.
fn terminal_report(bytes: &[u8]) -> Option<usize> {
    const ESC: u8 = 0x1b;
    match bytes {
        [ESC, b'[', tail @ ..] => {
            let params = tail
                .iter()
                .take_while(|b| matches!(b, b'0'..=b'9' | b';' | b'?' | b'>' | b'=' | b':' | b'$'))
                .count();
            match tail.get(params)? {
                b'c' | b'R' | b'n' | b'I' | b'O' | b't' | b'y' => Some(2 + params + 1),
                _ => None,
            }
        }
        [ESC, b']' | b'P', tail @ ..] => {
            // Up to BEL or ST (ESC \).
            let end = tail.iter().enumerate().find_map(|(i, b)| match b {
                0x07 => Some(i + 1),
                b'\\' if i > 0 && tail[i - 1] == ESC => Some(i + 1),
                _ => None,
            })?;
            Some(2 + end)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_answers_are_not_typing() {
        assert!(!typed(b"\x1b[?1;2c"));
        assert!(!typed(b"\x1b[>0;95;0c\x1b[12;1R"));
        assert!(!typed(
            b"\x1b]10;rgb:ffff/ffff/ffff\x1b\\\x1b]11;rgb:0/0/0\x07"
        ));
        assert!(!typed(b"\x1bP>|tmux 3.3a\x1b\\"));
        assert!(!typed(b"\x1b[I"));
        assert!(typed(b"a"));
        assert!(typed(b"\x1b[A"), "an arrow key is typing");
        assert!(typed(b"\x1b[?1;2cls\r"), "typing after an answer");
        assert!(typed(b"\x1b"), "a lone Escape is typing");
        assert!(typed(b"\x1b]10;rgb:unterminated"));
    }
}
