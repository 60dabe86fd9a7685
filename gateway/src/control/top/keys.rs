//! The keys a terminal sends, decoded from the bytes an SSH client forwards (the client's tty
//! is raw, so every key arrives as its own escape sequence or character), and the text it
//! pastes, which the view asks for with bracketed paste (`ESC [ ? 2004 h`): the terminal then
//! sends a paste between `ESC [ 200 ~` and `ESC [ 201 ~`, and no byte of it is read as a key.

/// A key press, or a pasted text, as the live view understands it.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A text the terminal pasted: its line breaks are `\n`, its other control characters and
    /// any bytes that are not UTF-8 are dropped. `cut`: it was longer than [`MAX_PASTE`]
    /// bytes, and only its first ones are kept.
    Paste {
        text: String,
        cut: bool,
    },
}

/// The longest paste kept: what `send` takes.
pub const MAX_PASTE: usize = crate::control::send::MAX_TEXT;

const ESC: u8 = 0x1b;
const PASTE_START: &[u8] = b"\x1b[200~";
const PASTE_END: &[u8] = b"\x1b[201~";

/// The longest escape sequence waited for across chunks; a longer one is dropped.
const MAX_SEQUENCE: usize = 64;

/// Decodes the bytes a client sends, chunk by chunk. A key's sequence or a paste may be split
/// over several chunks (the SSH client forwards what it read, where it happened to stop), so
/// the decoder keeps what is not complete yet: a paste under way, or the start of a sequence.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The end of the last chunk, when it may be the start of a sequence (or, in a paste, of
    /// its end mark) or of a character.
    held: Vec<u8>,
    /// The paste under way: its bytes so far, at most [`MAX_PASTE`].
    paste: Option<Vec<u8>>,
    /// Bytes of the paste under way were dropped past [`MAX_PASTE`].
    paste_cut: bool,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// The keys (and pastes) that `chunk` completes. Sequences the view has no use for
    /// (function keys, mouse and focus reports, a terminal's answers) are skipped whole, never
    /// read as typed characters; text that is not UTF-8 is dropped.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Key> {
        let mut bytes = std::mem::take(&mut self.held);
        bytes.extend_from_slice(chunk);
        let mut keys = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if self.paste.is_some() {
                i += self.paste_part(&bytes[i..], &mut keys);
                continue;
            }
            match next_key(&bytes[i..]) {
                Next::Key(key, len) => {
                    keys.extend(key);
                    i += len;
                }
                Next::PasteStart => {
                    self.paste = Some(Vec::new());
                    i += PASTE_START.len();
                }
                Next::Incomplete => {
                    self.held = bytes[i..].to_vec();
                    break;
                }
            }
        }
        keys
    }

    /// Reads the paste under way from the start of `bytes`; returns how many bytes it took.
    /// The end mark ends it (and `keys` gets it); bytes that may start the end mark are held.
    fn paste_part(&mut self, bytes: &[u8], keys: &mut Vec<Key>) -> usize {
        let (text, taken, ended) = match find(bytes, PASTE_END) {
            Some(at) => (&bytes[..at], at + PASTE_END.len(), true),
            None => {
                let held = (1..PASTE_END.len())
                    .rev()
                    .find(|&n| bytes.ends_with(&PASTE_END[..n]))
                    .unwrap_or(0);
                self.held = bytes[bytes.len() - held..].to_vec();
                (&bytes[..bytes.len() - held], bytes.len(), false)
            }
        };
        if let Some(paste) = self.paste.as_mut() {
            let room = MAX_PASTE.saturating_sub(paste.len());
            paste.extend_from_slice(&text[..text.len().min(room)]);
            self.paste_cut |= text.len() > room;
        }
        if ended && let Some(paste) = self.paste.take() {
            keys.push(Key::Paste {
                text: pasted_text(&paste),
                cut: std::mem::take(&mut self.paste_cut),
            });
        }
        taken
    }

    /// Whether bytes are held that [`Decoder::flush`] settles if no more come soon: a lone ESC
    /// is the Escape key only once it is clear that no sequence follows it. A paste under way
    /// is not settled by time: it waits for its end mark.
    pub fn waiting(&self) -> bool {
        self.paste.is_none() && !self.held.is_empty()
    }

    /// No more bytes came after the last chunk for a while: what is held is a key (ESC alone
    /// is the Escape key) or a sequence cut short (dropped).
    pub fn flush(&mut self) -> Vec<Key> {
        if self.paste.is_some() {
            return Vec::new();
        }
        if std::mem::take(&mut self.held) == [ESC] {
            vec![Key::Esc]
        } else {
            Vec::new()
        }
    }
}

/// What starts `bytes`.
enum Next {
    /// A key (or nothing, for a sequence or byte that is skipped), and its length.
    Key(Option<Key>, usize),
    PasteStart,
    /// The start of a sequence or a character that the next bytes may complete.
    Incomplete,
}

fn next_key(bytes: &[u8]) -> Next {
    let b = bytes[0];
    let key = match b {
        ESC => return escape(bytes),
        b'\r' | b'\n' => Key::Enter,
        b'\t' => Key::Tab,
        0x7f | 0x08 => Key::Backspace,
        0x01..=0x1a => Key::Ctrl(char::from(b - 1 + b'a')),
        0x00 | 0x1c..=0x1f => return Next::Key(None, 1),
        _ => {
            let len = utf8_len(b);
            let Some(encoded) = bytes.get(..len) else {
                // Continuation bytes may be in the next chunk; bytes that cannot be one are
                // not waited for.
                return if bytes[1..].iter().all(|&c| c & 0xc0 == 0x80) {
                    Next::Incomplete
                } else {
                    Next::Key(None, 1)
                };
            };
            return match std::str::from_utf8(encoded) {
                Ok(s) => Next::Key(s.chars().next().map(Key::Char), len),
                Err(_) => Next::Key(None, 1),
            };
        }
    };
    Next::Key(Some(key), 1)
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The text of a paste's bytes: line breaks (CR LF, CR or LF, as terminals send them) become
/// `\n`, tabs stay, other control characters and bytes that are not UTF-8 are dropped.
fn pasted_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        text.push_str(chunk.valid());
    }
    let text = text.replace("\r\n", "\n");
    text.chars()
        .filter_map(|c| match c {
            '\r' | '\n' => Some('\n'),
            '\t' => Some('\t'),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => 1,
    }
}

/// The escape sequence at the start of `bytes` (which starts with ESC): a key the view knows,
/// a sequence to skip, the start of a paste, or the start of a sequence not complete yet.
fn escape(bytes: &[u8]) -> Next {
    match bytes.get(1) {
        // ESC alone at the end: the Escape key, or the start of a sequence split from it.
        None => Next::Incomplete,
        // ESC ESC: the Escape key, then whatever the second ESC starts.
        Some(&ESC) => Next::Key(Some(Key::Esc), 1),
        Some(b'[') => csi(bytes),
        // SS3: the arrows and Home/End in application cursor mode, F1-F4.
        Some(b'O') => match bytes.get(2) {
            Some(b'P') => Next::Key(Some(Key::F1), 3),
            Some(&final_byte) => Next::Key(cursor_key(final_byte), 3),
            None => Next::Incomplete,
        },
        // Alt with a key: the view has no Alt bindings; skip both.
        Some(_) => Next::Key(None, 2),
    }
}

/// A control sequence (`ESC [ params final`).
fn csi(bytes: &[u8]) -> Next {
    // Parameters and intermediates run up to the final byte (0x40..=0x7e).
    let Some(end) = bytes[2..].iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return if bytes.len() < MAX_SEQUENCE {
            Next::Incomplete
        } else {
            Next::Key(None, bytes.len())
        };
    };
    let len = 2 + end + 1;
    let params = &bytes[2..2 + end];
    let final_byte = bytes[2 + end];
    if bytes.starts_with(PASTE_START) {
        return Next::PasteStart;
    }
    // Mouse reports carry their payload after the final `M` in the legacy encoding.
    if final_byte == b'M' && params.is_empty() {
        return if bytes.len() < len + 3 {
            Next::Incomplete
        } else {
            Next::Key(None, len + 3)
        };
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
    Next::Key(key, len)
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

    /// The keys of `bytes` sent as one chunk with nothing after it.
    fn decode(bytes: &[u8]) -> Vec<Key> {
        let mut decoder = Decoder::new();
        let mut keys = decoder.feed(bytes);
        keys.extend(decoder.flush());
        keys
    }

    fn paste(text: &str) -> Key {
        Key::Paste {
            text: text.to_owned(),
            cut: false,
        }
    }

    #[test]
    fn a_paste_is_one_key_with_its_line_breaks_and_nothing_in_it_is_a_key() {
        assert_eq!(
            decode(b"a\x1b[200~line1\rline2\r\nline3\n\x1b[201~b"),
            [
                Key::Char('a'),
                paste("line1\nline2\nline3\n"),
                Key::Char('b')
            ]
        );
        // Control keys, escape sequences and Enter in a paste act as nothing; tabs stay.
        assert_eq!(
            decode(b"\x1b[200~\x03\x13y\r\x1b[A\x1b\x1b[200~\tx\x7f\x1b[201~"),
            [paste("y\n[A[200~\tx")]
        );
        // Two pastes in a chunk, and an empty one.
        assert_eq!(
            decode(b"\x1b[200~1\x1b[201~\x1b[200~\x1b[201~\r\x1b[200~2\x1b[201~"),
            [paste("1"), paste(""), Key::Enter, paste("2")]
        );
    }

    #[test]
    fn a_paste_split_anywhere_over_two_or_three_chunks_is_the_same_paste() {
        // Around the paste: keys, an escape sequence and a multi-byte character, which may be
        // split too; in it, what starts like the end mark but is not.
        let bytes = "x\x1b[A\x1b[200~one\x1b[20\ré\x1b[201\x1b[201~\ré".as_bytes();
        let expected = [
            Key::Char('x'),
            Key::Up,
            paste("one[20\né[201"),
            Key::Enter,
            Key::Char('é'),
        ];
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut decoder = Decoder::new();
                let mut keys = decoder.feed(&bytes[..i]);
                keys.extend(decoder.feed(&bytes[i..j]));
                keys.extend(decoder.feed(&bytes[j..]));
                keys.extend(decoder.flush());
                assert_eq!(keys, expected, "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn a_paste_waits_for_its_end_however_long_the_wait() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.feed(b"\x1b[200~first\r\x1b"), []);
        assert!(!decoder.waiting(), "nothing to flush in a paste");
        assert_eq!(decoder.flush(), []);
        assert_eq!(decoder.feed(b"[201"), []);
        assert_eq!(decoder.flush(), []);
        assert_eq!(decoder.feed(b"~\x03"), [paste("first\n"), Key::Ctrl('c')]);
    }

    #[test]
    fn a_lone_escape_is_held_until_it_is_clear_that_nothing_follows() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.feed(b"a\x1b"), [Key::Char('a')]);
        assert!(decoder.waiting());
        assert_eq!(decoder.flush(), [Key::Esc]);
        assert!(!decoder.waiting());
        // What follows soon enough makes it a sequence.
        assert_eq!(decoder.feed(b"\x1b"), []);
        assert_eq!(decoder.feed(b"[B"), [Key::Down]);
        // A sequence cut short and never finished is dropped, not typed.
        assert_eq!(decoder.feed(b"\x1b[20"), []);
        assert!(decoder.waiting());
        assert_eq!(decoder.flush(), []);
        assert_eq!(decoder.feed(b"0~"), [Key::Char('0'), Key::Char('~')]);
    }

    #[test]
    fn a_paste_longer_than_send_takes_is_cut_and_says_so() {
        let mut decoder = Decoder::new();
        assert_eq!(decoder.feed(b"\x1b[200~"), []);
        let block = [b'a'; 4096];
        let mut keys = Vec::new();
        for _ in 0..(MAX_PASTE / block.len() + 2) {
            keys.extend(decoder.feed(&block));
        }
        // The bytes past the limit are dropped, not read as keys.
        assert_eq!(keys, []);
        keys.extend(decoder.feed(b"\x1b[201~\r"));
        assert_eq!(
            keys,
            [
                Key::Paste {
                    text: "a".repeat(MAX_PASTE),
                    cut: true
                },
                Key::Enter
            ]
        );
        // Exactly the limit is not cut, and the next paste starts afresh.
        let mut whole = b"\x1b[200~".to_vec();
        whole.extend(std::iter::repeat_n(b'b', MAX_PASTE));
        whole.extend(b"\x1b[201~");
        assert_eq!(
            decoder.feed(&whole),
            [Key::Paste {
                text: "b".repeat(MAX_PASTE),
                cut: false
            }]
        );
    }

    #[test]
    fn a_paste_keeps_only_its_utf8() {
        assert_eq!(
            decode(b"\x1b[200~\xffd\xc3\xa9j\xc3(\xe6\x97\xa5\xe6\x1b[201~"),
            [paste("déj(日")]
        );
    }

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
