//! The gateway's domain values: plain data that the store keeps, the core decides on and the
//! routes print, each with one spelling of its words and of its text.
//!
//! Nothing here does I/O or knows SQL (the store maps these values to columns in
//! `store::columns`) or the shape of any output (the commands build theirs in `control`).
//! A closed set of words is an enum made by [`words!`]: its word for each value, read back by
//! `FromStr` (which refuses any other word, saying which ones it takes), written by `Display`
//! and by serde.

mod agent;
mod channel;
mod event;
mod host;
mod operation;
mod operator;
mod timestamp;

pub use agent::{ActivitySource, ActivityState, AgentStatus};
pub use channel::ChannelKind;
pub use event::{EventKind, EventResult};
pub use host::HostStatus;
pub use operation::{OperationKind, Outcome, Step};
pub use operator::Role;
pub use timestamp::{BadTimestamp, Timestamp};

/// A word that is none of a closed set's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{word}' (use {})", one_of(known))]
pub struct UnknownWord {
    /// What the set is (`role`, `event kind`).
    pub what: &'static str,
    pub word: String,
    pub known: &'static [&'static str],
}

/// `a, b or c`.
fn one_of(words: &[&str]) -> String {
    match words.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// An enum of a closed set of words: `as_str`, `FromStr`, `Display`, `Serialize` and `ALL`,
/// from one table of `Variant = "word"`.
macro_rules! words {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$variant_meta:meta])* $variant:ident = $word:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$variant_meta])* $variant,)*
        }

        impl $name {
            /// Every value, in the order they are declared.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// Every word, in the same order.
            pub const WORDS: &'static [&'static str] = &[$($word),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::model::UnknownWord;
            fn from_str(text: &str) -> Result<$name, $crate::model::UnknownWord> {
                match text {
                    $($word => Ok($name::$variant),)*
                    _ => Err($crate::model::UnknownWord {
                        what: $what,
                        word: text.to_owned(),
                        known: $name::WORDS,
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }
    };
}
pub(crate) use words;

/// Checks a [`words!`] enum: each word reads back as its value, and a word of none is refused
/// with the set's name.
#[cfg(test)]
pub(crate) fn assert_words<T>(all: &[T], what: &str)
where
    T: std::str::FromStr<Err = UnknownWord> + std::fmt::Display + std::fmt::Debug + PartialEq,
{
    for value in all {
        let word = value.to_string();
        assert_eq!(word.parse::<T>().as_ref(), Ok(value), "{word}");
    }
    let err = "no-such-word".parse::<T>().expect_err("an unknown word");
    assert_eq!((err.what, err.word.as_str()), (what, "no-such-word"));
    assert!("".parse::<T>().is_err());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_word_is_told_with_the_words_taken() {
        let err = "root".parse::<Role>().expect_err("no such role");
        assert_eq!(
            err.to_string(),
            "unknown role 'root' (use admin or operator)"
        );
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }
}
