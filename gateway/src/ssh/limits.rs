//! The bounds on what a client may ask of a session channel: the environment variables it
//! sets (`env` requests) and the terminal size it gives (`pty-req`, `window-change`). Pure:
//! the handler asks, these answer.
//!
//! Both inputs reach a host: environment variables travel as hostctl arguments, and a terminal
//! size becomes the size of an agent's tmux window, which tmux's server lays out (and redraws
//! for every viewer) at that size. A client must not be able to make either unbounded.

use hostctl::api::TermSize;

/// Environment variables a client may set on one session channel. OpenSSH's sshd keeps at
/// most 128 and refuses the rest; no real client sends more than a few.
pub const MAX_ENV_VARS: usize = 64;

/// The names and values of a channel's client-set variables together, in bytes at most.
pub const MAX_ENV_BYTES: usize = 32 * 1024;

/// Session channels one connection may hold open before the request that starts them
/// (`exec`, `shell`, `subsystem`); each is read by a task of its own. Clients start a channel
/// right after opening it, so only a client that hoards them meets this.
pub const MAX_PENDING_CHANNELS: usize = 64;

/// The largest terminal the gateway passes on: the contract's (hostctl bounds it again).
pub use hostctl::api::{MAX_TERM_COLS, MAX_TERM_ROWS};

/// The size a client's terminal is taken to have when it gives 0 (RFC 4254 lets a client give
/// only pixels), as OpenSSH's own default.
const DEFAULT_COLS: u16 = 80;
const DEFAULT_ROWS: u16 = 24;

/// A terminal size from SSH's `u32` columns and rows: 0 is the default, anything larger than
/// [`MAX_TERM_COLS`] x [`MAX_TERM_ROWS`] is that. Pixel sizes are not taken at all: the
/// gateway gives its terminals 0 pixels, which means "unknown".
pub fn term_size(cols: u32, rows: u32) -> TermSize {
    let clamp = |v: u32, default: u16, max: u16| match u16::try_from(v) {
        Ok(0) => default,
        Ok(v) => v.min(max),
        Err(_) => max,
    };
    TermSize {
        cols: clamp(cols, DEFAULT_COLS, MAX_TERM_COLS),
        rows: clamp(rows, DEFAULT_ROWS, MAX_TERM_ROWS),
    }
}

/// Why an environment request was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvRefusal {
    /// The channel already holds [`MAX_ENV_VARS`] variables from the client.
    TooMany,
    /// Keeping it would take the channel's variables past [`MAX_ENV_BYTES`].
    TooLarge,
}

/// A session channel's environment: what the gateway sets (`SSH_CONNECTION`, `SSH_CLIENT`)
/// and what the client asked for and was kept, within [`MAX_ENV_VARS`] and [`MAX_ENV_BYTES`].
#[derive(Clone, Debug, Default)]
pub struct SessionEnv {
    gateway: Vec<(String, String)>,
    client: Vec<(String, String)>,
    client_bytes: usize,
}

impl SessionEnv {
    pub fn new(gateway: Vec<(String, String)>) -> SessionEnv {
        SessionEnv {
            gateway,
            ..SessionEnv::default()
        }
    }

    /// Keeps `name=value` from the client, replacing an earlier value of `name`, unless that
    /// would pass a bound. (Whether the name is accepted at all is `auth::env_allowed`.)
    pub fn offer(&mut self, name: &str, value: &str) -> Result<(), EnvRefusal> {
        let size = name.len() + value.len();
        let earlier = self.client.iter().position(|(k, _)| k == name);
        let freed = earlier
            .and_then(|i| self.client.get(i))
            .map_or(0, |(k, v)| k.len() + v.len());
        if earlier.is_none() && self.client.len() >= MAX_ENV_VARS {
            return Err(EnvRefusal::TooMany);
        }
        if self.client_bytes - freed + size > MAX_ENV_BYTES {
            return Err(EnvRefusal::TooLarge);
        }
        if let Some(i) = earlier {
            self.client.remove(i);
        }
        self.client_bytes = self.client_bytes - freed + size;
        self.client.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Every variable, the gateway's first; one the client set wins over the gateway's.
    pub fn into_vars(self) -> Vec<(String, String)> {
        let SessionEnv {
            gateway, client, ..
        } = self;
        let mut vars: Vec<(String, String)> = gateway
            .into_iter()
            .filter(|(k, _)| !client.iter().any(|(c, _)| c == k))
            .collect();
        vars.extend(client);
        vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sizes_become_the_default() {
        assert_eq!(term_size(0, 0), TermSize { cols: 80, rows: 24 });
        assert_eq!(term_size(0, 50), TermSize { cols: 80, rows: 50 });
    }

    #[test]
    fn sizes_past_what_tmux_handles_are_clamped() {
        let max = TermSize {
            cols: MAX_TERM_COLS,
            rows: MAX_TERM_ROWS,
        };
        assert_eq!(term_size(u32::MAX, u32::MAX), max);
        assert_eq!(term_size(100_000, 65_535), max);
        assert_eq!(term_size(1001, 1001), max);
        assert_eq!(term_size(1000, 1000), max);
        assert_eq!(
            term_size(u32::MAX, 30),
            TermSize {
                cols: MAX_TERM_COLS,
                rows: 30
            }
        );
        assert_eq!(term_size(1, 1), TermSize { cols: 1, rows: 1 });
        assert_eq!(term_size(120, 40), TermSize::default());
    }

    #[test]
    fn env_keeps_at_most_the_bound_of_variables() {
        let mut env = SessionEnv::new(vec![("SSH_CLIENT".into(), "x".into())]);
        for i in 0..MAX_ENV_VARS {
            assert_eq!(env.offer(&format!("LC_{i}"), "v"), Ok(()), "variable {i}");
        }
        assert_eq!(env.offer("LC_ONE_MORE", "v"), Err(EnvRefusal::TooMany));
        // A new value for a variable already kept takes no new place.
        assert_eq!(env.offer("LC_0", "new"), Ok(()));
        let vars = env.into_vars();
        assert_eq!(vars.len(), MAX_ENV_VARS + 1);
        assert_eq!(vars[0], ("SSH_CLIENT".into(), "x".into()));
        assert_eq!(vars.last(), Some(&("LC_0".into(), "new".into())));
        assert!(!vars.iter().any(|(k, _)| k == "LC_ONE_MORE"));
    }

    #[test]
    fn env_keeps_at_most_the_bound_of_bytes() {
        let mut env = SessionEnv::default();
        let half = "v".repeat(MAX_ENV_BYTES / 2 - 4);
        assert_eq!(env.offer("LC_A", &half), Ok(()));
        assert_eq!(env.offer("LC_B", &half), Ok(()));
        // Exactly at the bound; one byte more is refused, and so is a larger replacement.
        assert_eq!(env.offer("LC_C", "x"), Err(EnvRefusal::TooLarge));
        assert_eq!(
            env.offer("LC_A", &format!("{half}x")),
            Err(EnvRefusal::TooLarge)
        );
        // A smaller replacement frees room.
        assert_eq!(env.offer("LC_A", "short"), Ok(()));
        assert_eq!(env.offer("LC_C", "x"), Ok(()));
        let vars = env.into_vars();
        assert_eq!(
            vars.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            ["LC_B", "LC_A", "LC_C"]
        );
        let huge = "v".repeat(MAX_ENV_BYTES + 1);
        assert_eq!(
            SessionEnv::default().offer("LC_HUGE", &huge),
            Err(EnvRefusal::TooLarge)
        );
    }

    #[test]
    fn a_client_variable_replaces_the_gateways() {
        let mut env = SessionEnv::new(vec![
            ("SSH_CONNECTION".into(), "a".into()),
            ("SSH_CLIENT".into(), "b".into()),
        ]);
        assert_eq!(env.offer("SSH_CLIENT", "mine"), Ok(()));
        assert_eq!(
            env.into_vars(),
            vec![
                ("SSH_CONNECTION".into(), "a".into()),
                ("SSH_CLIENT".into(), "mine".into())
            ]
        );
    }
}
