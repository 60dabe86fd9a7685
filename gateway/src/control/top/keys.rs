//! The keys a terminal sends, decoded from the bytes an SSH client forwards (the client's tty
//! is raw, so every key arrives as its own escape sequence or character).

/// A key press, as the live view understands it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    Up,
    Down,
    Left,
    Right,
    PageUp,
    PageDown,
    Home,
    End,
    Enter,
    Esc,
    F1,
    Backspace,
    Tab,
    /// Ctrl with a letter (`Ctrl('c')`).
    Ctrl(char),
    /// A printable character.
    Char(char),
}

const ESC: u8 = 0x1b;

/// Decodes every key in `bytes`. Sequences the view has no use for (function keys, mouse and
/// focus reports, a terminal's answers) are skipped whole, never read as typed characters;
/// text that is not UTF-8 is dropped.
pub fn decode(bytes: &[u8]) -> Vec<Key> {
    let mut keys = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            ESC => {
                let (key, len) = escape(&bytes[i..]);
                keys.extend(key);
                i += len;
                continue;
            }
            b'\r' | b'\n' => keys.push(Key::Enter),
            b'\t' => keys.push(Key::Tab),
            0x7f | 0x08 => keys.push(Key::Backspace),
            0x01..=0x1a => keys.push(Key::Ctrl(char::from(b - 1 + b'a'))),
            0x00 | 0x1c..=0x1f => {}
            _ => {
                let len = utf8_len(b);
                if let Some(c) = bytes
                    .get(i..i + len)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.chars().next())
                {
                    keys.push(Key::Char(c));
                }
                i += len.max(1);
                continue;
            }
        }
        i += 1;
    }
    keys
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// One escape sequence at the start of `bytes` (which starts with ESC): the key, if it is one
/// the view knows, and how many bytes it takes.
fn escape(bytes: &[u8]) -> (Option<Key>, usize) {
    match bytes.get(1) {
        // ESC alone (or ESC ESC): the Escape key.
        None | Some(&ESC) => (Some(Key::Esc), 1),
        Some(b'[') => csi(bytes),
        // SS3: the arrows and Home/End in application cursor mode, F1-F4.
        Some(b'O') => match bytes.get(2) {
            Some(b'P') => (Some(Key::F1), 3),
            Some(&final_byte) => (cursor_key(final_byte), 3),
            None => (None, 2),
        },
        // Alt with a key: the view has no Alt bindings; skip both.
        Some(_) => (None, 2),
    }
}

/// A control sequence (`ESC [ params final`).
fn csi(bytes: &[u8]) -> (Option<Key>, usize) {
    // Parameters and intermediates run up to the final byte (0x40..=0x7e).
    let Some(end) = bytes[2..].iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return (None, bytes.len());
    };
    let len = 2 + end + 1;
    let params = &bytes[2..2 + end];
    let final_byte = bytes[2 + end];
    // Mouse reports carry their payload after the final `M` in the legacy encoding.
    if final_byte == b'M' && params.is_empty() {
        return (None, (len + 3).min(bytes.len()));
    }
    let key = match final_byte {
        b'~' => match params.split(|&b| b == b';').next() {
            Some(b"1" | b"7") => Some(Key::Home),
            Some(b"4" | b"8") => Some(Key::End),
            Some(b"5") => Some(Key::PageUp),
            Some(b"6") => Some(Key::PageDown),
            Some(b"11") => Some(Key::F1),
            _ => None,
        },
        // Only the plain key: with modifiers (`ESC [ 1 ; 5 A`) it is still that arrow.
        _ if params.is_empty() || params.starts_with(b"1;") => cursor_key(final_byte),
        _ => None,
    };
    (key, len)
}

fn cursor_key(final_byte: u8) -> Option<Key> {
    match final_byte {
        b'A' => Some(Key::Up),
        b'B' => Some(Key::Down),
        b'C' => Some(Key::Right),
        b'D' => Some(Key::Left),
        b'H' => Some(Key::Home),
        b'F' => Some(Key::End),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_in_both_cursor_modes() {
        assert_eq!(
            decode(b"\x1b[A\x1b[B\x1bOA\x1bOB\x1b[C\x1b[D"),
            [
                Key::Up,
                Key::Down,
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left
            ]
        );
    }

    #[test]
    fn paging_and_home_end_in_their_several_spellings() {
        assert_eq!(
            decode(b"\x1b[5~\x1b[6~\x1b[H\x1b[F\x1b[1~\x1b[4~\x1bOH\x1b[7~"),
            [
                Key::PageUp,
                Key::PageDown,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Home,
                Key::Home
            ]
        );
    }

    #[test]
    fn text_control_keys_and_enter() {
        assert_eq!(
            decode("fix-é\r\x7f\x03\x13\t".as_bytes()),
            [
                Key::Char('f'),
                Key::Char('i'),
                Key::Char('x'),
                Key::Char('-'),
                Key::Char('é'),
                Key::Enter,
                Key::Backspace,
                Key::Ctrl('c'),
                Key::Ctrl('s'),
                Key::Tab
            ]
        );
    }

    #[test]
    fn unknown_sequences_are_skipped_whole_not_typed() {
        assert_eq!(decode(b"\x1bOP\x1b[11~"), [Key::F1, Key::F1]);
        // F5, a focus report, a cursor position report, an SGR mouse click, Alt+x.
        assert_eq!(
            decode(b"\x1b[15~\x1b[I\x1b[12;40R\x1b[<0;3;4Ma\x1bx"),
            [Key::Char('a')]
        );
        // A legacy mouse report's three payload bytes are not text either.
        assert_eq!(decode(b"\x1b[M !!b"), [Key::Char('b')]);
    }

    #[test]
    fn a_lone_escape_is_the_escape_key() {
        assert_eq!(decode(b"\x1b"), [Key::Esc]);
        assert_eq!(decode(b"\x1b\x1b"), [Key::Esc, Key::Esc]);
        // A sequence cut short is dropped, not turned into letters.
        assert_eq!(decode(b"\x1b[1;5"), []);
    }

    #[test]
    fn invalid_utf8_is_dropped() {
        assert_eq!(decode(b"\xffa\xc3"), [Key::Char('a')]);
    }
}
