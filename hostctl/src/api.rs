//! The JSON contract between the gateway and hostctl.
//!
//! Every type that crosses the process boundary (gateway → `hostctl VERB ... --json` on a host)
//! lives here and only here: the calls themselves, their words and bodies ([`Call`]), what
//! they answer, and the install probe a host answers before it has a hostctl ([`HostProbe`]). Changing a type in this module is an API change: bump
//! [`API_VERSION`] when an old peer could misread the new shape. Decoding is lenient on purpose
//! (unknown fields are ignored, new fields are optional) so a newer gateway can talk to an older
//! hostctl and the other way round.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

mod agent;
mod call;
mod probe;
mod talk;
mod usage;
mod workspace;

pub use agent::*;
pub use call::{Call, Exchange, OwnCall};
pub use probe::{HostProbe, PROBE_SCRIPT, ProbeNotUnderstood};
pub use talk::*;
pub use usage::*;
pub use workspace::*;

/// Version of this contract. hostctl reports it in `hostctl version --json`.
pub const API_VERSION: u32 = 11;

/// The longest agent name: a DNS label, so a name can also serve as a host alias.
pub const MAX_AGENT_NAME_LEN: usize = 63;

/// Checks an agent name: lowercase ASCII letters, digits and `-`, starting with a letter or a
/// digit, at most [`MAX_AGENT_NAME_LEN`] characters.
///
/// Names end up in tmux targets, file paths and SSH usernames, so this check is the first line
/// of defence against path traversal and option injection; both sides run it.
pub fn validate_agent_name(name: &str) -> Result<(), String> {
    validate_name("agent", name)
}

/// Checks a name of the same shape as an agent's (a host's, say); `kind` names it in errors.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("a {kind} name cannot be empty"));
    }
    if name.len() > MAX_AGENT_NAME_LEN {
        return Err(format!(
            "{kind} name is {} characters long; the limit is {MAX_AGENT_NAME_LEN}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(format!(
            "invalid {kind} name '{}': it must start with a lowercase letter or a digit",
            name.escape_debug()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "invalid {kind} name '{}': '{}' is not allowed (use lowercase letters, digits and '-')",
            name.escape_debug(),
            bad.escape_debug()
        ));
    }
    Ok(())
}

/// Checks an environment variable name: a letter or `_`, then letters, digits and `_`.
pub fn validate_env_key(key: &str) -> Result<(), String> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{}' is not a valid environment variable name",
            key.escape_debug()
        ))
    }
}

/// One call through `hostctl serve`: the words after `hostctl` (`["list", "--json"]`), and
/// what to give it on stdin. A line of JSON on serve's stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeRequest {
    /// Chosen by the caller; the reply carries it back (replies come as calls end, in any
    /// order).
    pub id: u64,
    pub args: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
}

/// How a call through `hostctl serve` ended: a line of JSON on serve's stdout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeReply {
    pub id: u64,
    /// The exit status; none if it was ended by a signal (then `signal`) or could not run.
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Secret values for the agent's process, by variable name. They travel on hostctl's stdin
/// (never on a command line), reach the process through a file only its launcher reads (mode
/// 0600, removed at once), and are never written to meta.json.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secrets(pub BTreeMap<String, String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.keys().map(|k| format!("{k}=***")))
            .finish()
    }
}

/// `hostctl version --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: String,
    pub api_version: u32,
    pub tmux: Option<String>,
}

/// What every failing `--json` verb prints on stdout (and exits non-zero).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: ErrorBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

/// Machine-readable failure classes, so the gateway can pick its exit status and hint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    AlreadyExists,
    InvalidInput,
    Failed,
    #[serde(other)]
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet() {
        for good in ["a", "fix-ci", "0day", "a-b-c-9", &"x".repeat(63)] {
            assert!(validate_agent_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn names_refuse_everything_else() {
        for bad in [
            "",
            "-x",
            "Fix",
            "a_b",
            "a.b",
            "a/b",
            "../etc",
            "a b",
            "a;rm -rf",
            "$(id)",
            "ä",
            &"x".repeat(64),
        ] {
            assert!(validate_agent_name(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn snapshot_ids_are_names_and_fit_the_limit() {
        assert_eq!(
            snapshot_id("fix-ci", "20261123-1215", 1),
            "fix-ci-20261123-1215"
        );
        assert_eq!(
            snapshot_id("fix-ci", "20261123-1215", 3),
            "fix-ci-20261123-1215-3"
        );
        let long = "a".repeat(50) + "-" + &"b".repeat(12);
        for n in [1, 2, 100] {
            let id = snapshot_id(&long, "20261123-1215", n);
            assert!(validate_snapshot_id(&id).is_ok(), "{id}");
            assert!(id.ends_with("-20261123-1215") || id.ends_with(&format!("-{n}")));
        }
        // A cut that ends on '-' does not leave "--".
        let id = snapshot_id(&("x".repeat(48) + "-yyyy"), "20261123-1215", 1);
        assert!(!id.contains("--"), "{id}");
        assert!(validate_snapshot_id("../x").is_err());
    }

    #[test]
    fn env_keys_are_checked() {
        assert!(validate_env_key("ANTHROPIC_API_KEY").is_ok());
        assert!(validate_env_key("_x1").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B", "$(id)"] {
            assert!(validate_env_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn meta_round_trips_and_ignores_unknown_fields() {
        let json = r#"{"name":"a","command":{"kind":"argv","argv":["sleep","1"]},
            "workspace":{"kind":"git","url":"https://x/y.git","ref":"main"},
            "workspace_path":"/w/a","created_at":"2026-01-01T00:00:00Z","future_field":1}"#;
        let meta: AgentMeta = serde_json::from_str(json).expect("decodes");
        assert_eq!(meta.request.template, "shell");
        assert_eq!(
            meta.request.workspace,
            WorkspaceSource::Git {
                url: "https://x/y.git".into(),
                git_ref: Some("main".into())
            }
        );
        let again: AgentMeta =
            serde_json::from_str(&serde_json::to_string(&meta).expect("encodes")).expect("decodes");
        assert_eq!(again, meta);
    }

    #[test]
    fn screens_hash_their_text_and_keep_the_last_lines() {
        let a = Screen::from_text(80, 24, "one  \n\ntwo\n\n\n", Some("bash".into()));
        assert_eq!(a.tail, vec!["one", "two"]);
        assert_eq!(a.hash.len(), 32);
        // Trailing spaces do not count; any other change does.
        assert_eq!(
            a.hash,
            Screen::from_text(80, 24, "one\n\ntwo\n\n\n", None).hash
        );
        assert_ne!(
            a.hash,
            Screen::from_text(80, 24, "one\n\ntwo!\n\n\n", None).hash
        );
        let long: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let b = Screen::from_text(80, 40, &long, None);
        assert_eq!(b.tail.len(), SCREEN_TAIL_LINES);
        assert_eq!(b.tail.last().map(String::as_str), Some("line 39"));
    }

    #[test]
    fn argv_display_quotes_what_a_shell_would_split() {
        let cmd = AgentCommand::Argv {
            argv: vec!["echo".into(), "a b".into(), "it's".into()],
        };
        assert_eq!(cmd.display(), r#"echo 'a b' "it's""#);
    }

    #[test]
    fn terminal_sizes_are_bounded_both_ways() {
        let huge = TermSize {
            cols: u16::MAX,
            rows: 5000,
        };
        assert_eq!(
            huge.bounded(),
            TermSize {
                cols: MAX_TERM_COLS,
                rows: MAX_TERM_ROWS
            }
        );
        let zero = TermSize { cols: 0, rows: 0 };
        assert_eq!(zero.bounded(), TermSize { cols: 1, rows: 1 });
        assert_eq!(TermSize::default().bounded(), TermSize::default());
    }
}
