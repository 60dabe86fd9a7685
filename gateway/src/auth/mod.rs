//! Who is this, and which way in do they take: pure decisions, no I/O.
//!
//! The SSH handler asks these questions and acts on the answers; the answers come from data it
//! passes in (a stored operator, whether an agent exists), so everything here is testable
//! without a socket or a database. A refusal is a value, not an error.

use russh::keys::{HashAlg, PublicKey};

use crate::store::Operator;

/// The names no agent may take: every control command, and the names people commonly type as
/// the SSH user when they mean the gateway itself. A username picks the route, so an agent
/// named like this would capture the control commands of everyone who connects with it.
pub const RESERVED_NAMES: &[&str] = &[
    // control commands
    "create",
    "list",
    "ls",
    "info",
    "attach",
    "stop",
    "start",
    "restart",
    "destroy",
    "rm",
    "logs",
    "send",
    "wait",
    "rename",
    "clone",
    "migrate",
    "snapshot",
    "snapshots",
    "diff",
    // `snapshot remove ID` would read as a snapshot of an agent named `remove`
    "remove",
    "host",
    "hosts",
    "key",
    "keys",
    "whoami",
    "events",
    "ssh-config",
    "doctor",
    "version",
    "help",
    "top",
    "share",
    "unshare",
    "secret",
    "operator",
    "snapshot",
    "tag",
    "untag",
    "diff",
    "usage",
    // names that mean the gateway or a system account
    "agentgate",
    "gateway",
    "gw",
    "control",
    "local",
    "localhost",
    "root",
    "admin",
    "git",
    "sftp",
    "scp",
    "ssh",
    "nobody",
    "daemon",
    "ubuntu",
    "debian",
    "ec2-user",
];

/// Why a name cannot be given to a new agent, or `None` if it can.
pub fn name_unavailable_reason(name: &str) -> Option<String> {
    if let Err(e) = hostctl::api::validate_agent_name(name) {
        return Some(e);
    }
    if RESERVED_NAMES.contains(&name) {
        return Some(format!(
            "'{name}' is reserved (it is a control command or a name people use for the gateway itself)"
        ));
    }
    None
}

/// The two ways in, picked by the SSH username.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// The username names an agent: everything on the connection happens inside it.
    Agent(String),
    /// Any other username: exec runs control commands.
    Control,
}

/// The route for a username, given whether an agent of that name exists.
pub fn route_for(username: &str, agent_exists: bool) -> Route {
    if agent_exists {
        Route::Agent(username.to_owned())
    } else {
        Route::Control
    }
}

/// Whether a client may set environment variable `name` (OpenSSH's `AcceptEnv`): `patterns`
/// are names, or prefixes ending in `*`.
pub fn env_allowed(name: &str, patterns: &[String]) -> bool {
    hostctl::api::validate_env_key(name).is_ok()
        && patterns.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == p,
        })
}

/// Whether a key may log in: it must belong to a registered operator.
pub fn decide_key(owner: Option<Operator>) -> KeyDecision {
    match owner {
        Some(operator) => KeyDecision::Accept(operator),
        None => KeyDecision::Reject,
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyDecision {
    Accept(Operator),
    Reject,
}

/// The SHA-256 fingerprint the store keys are indexed by (`SHA256:...`, as `ssh-keygen -l`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A public key read from one OpenSSH line (`ssh-ed25519 AAAA... comment`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedKey {
    pub fingerprint: String,
    pub algorithm: String,
    /// The key in OpenSSH form, without its comment.
    pub openssh: String,
    pub comment: String,
}

/// A key line, an operator name or a tailnet login that cannot be used, with what to give
/// instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("no public key given (expected one line like 'ssh-ed25519 AAAA... comment')")]
    NoKey,
    #[error(
        "not an OpenSSH public key ({0}); expected one line like 'ssh-ed25519 AAAA... comment'"
    )]
    NotAKey(String),
    #[error("cannot encode the key: {0}")]
    Unencodable(String),
    #[error("invalid operator name '{}': use 1 to 64 letters, digits, '.', '_' or '-'", .0.escape_debug())]
    OperatorName(String),
    #[error("'{0}' is not a tailnet login: give it as tailscale shows it, like alice@example.com")]
    TailnetLogin(String),
}

/// Parses one public-key line. `authorized_keys` options in front of the key (such as
/// `no-pty,from="..."`) are accepted and dropped.
pub fn parse_public_key_line(line: &str) -> Result<ParsedKey, InvalidInput> {
    let line = line.trim();
    if line.is_empty() {
        return Err(InvalidInput::NoKey);
    }
    let key = match PublicKey::from_openssh(line) {
        Ok(k) => k,
        Err(first) => {
            let entry = line
                .parse::<russh::keys::ssh_key::authorized_keys::Entry>()
                .map_err(|_| InvalidInput::NotAKey(first.to_string()))?;
            entry.public_key().clone()
        }
    };
    let comment = key.comment().to_string();
    let mut bare = key.clone();
    bare.set_comment("");
    let openssh = bare
        .to_openssh()
        .map_err(|e| InvalidInput::Unencodable(e.to_string()))?;
    Ok(ParsedKey {
        fingerprint: fingerprint(&key),
        algorithm: key.algorithm().to_string(),
        openssh,
        comment,
    })
}

/// Checks an operator name: 1 to 64 of letters, digits, `.`, `_` and `-`, starting with a
/// letter or digit.
pub fn validate_operator_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidInput::OperatorName(name.to_owned()))
    }
}

/// The operator name to use for a key when none is given: the user part of its comment
/// (`alice` for `alice@laptop`) when that is a valid name, else `fallback`.
/// Who a connection comes from, by tailnet identity (tailscaled's whois of its address).
#[derive(Debug, PartialEq, Eq)]
pub enum TailnetIdentity {
    /// The address is no tailnet node's.
    None,
    /// A tagged node: a machine, not a person; it never logs in this way.
    Tagged(String),
    /// A node of this user (the login name).
    User(String),
}

pub fn tailnet_identity(who: Option<&crate::tailscale::types::WhoIs>) -> TailnetIdentity {
    let Some(who) = who else {
        return TailnetIdentity::None;
    };
    let login = who.user_profile.login_name.as_str();
    if !who.node.tags.is_empty() || login == "tagged-devices" {
        return TailnetIdentity::Tagged(who.node.name.trim_end_matches('.').to_owned());
    }
    if login.is_empty() {
        return TailnetIdentity::None;
    }
    TailnetIdentity::User(login.to_owned())
}

/// A tailnet login name as tailscale reports it: `alice@example.com`, or `alice@github` for
/// logins through GitHub and the like. `tagged-devices` is the owner of tagged nodes, not a
/// person, and never logs in.
pub fn validate_tailscale_login(login: &str) -> Result<(), InvalidInput> {
    let Some((user, domain)) = login.split_once('@') else {
        return Err(InvalidInput::TailnetLogin(login.to_owned()));
    };
    if user.is_empty()
        || domain.is_empty()
        || login.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(InvalidInput::TailnetLogin(login.to_owned()));
    }
    Ok(())
}

pub fn default_operator_name(comment: &str, fallback: &str) -> String {
    let user = comment.split('@').next().unwrap_or_default();
    if validate_operator_name(user).is_ok() {
        user.to_owned()
    } else {
        fallback.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Role;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDnSJ1YowTMevNbtXToopCqyQvUHyy4jli7YohlBxa6D alice@laptop";

    #[test]
    fn tailnet_identities_are_people_tags_or_nobody() -> Result<(), serde_json::Error> {
        use crate::tailscale::types::WhoIs;
        let who = |json: &str| serde_json::from_str::<WhoIs>(json);
        let alice = who(
            r#"{"Node":{"Name":"laptop.ts.net.","Tags":null},"UserProfile":{"LoginName":"alice@example.com"}}"#,
        )?;
        assert_eq!(
            tailnet_identity(Some(&alice)),
            TailnetIdentity::User("alice@example.com".into())
        );
        let tagged = who(
            r#"{"Node":{"Name":"ci.ts.net.","Tags":["tag:ci"]},"UserProfile":{"LoginName":"tagged-devices"}}"#,
        )?;
        assert_eq!(
            tailnet_identity(Some(&tagged)),
            TailnetIdentity::Tagged("ci.ts.net".into())
        );
        let tagged_owner =
            who(r#"{"Node":{"Tags":["tag:ci"]},"UserProfile":{"LoginName":"alice@example.com"}}"#)?;
        assert!(matches!(
            tailnet_identity(Some(&tagged_owner)),
            TailnetIdentity::Tagged(_)
        ));
        assert_eq!(tailnet_identity(None), TailnetIdentity::None);
        assert_eq!(tailnet_identity(Some(&who("{}")?)), TailnetIdentity::None);
        assert!(validate_tailscale_login("alice@example.com").is_ok());
        assert!(validate_tailscale_login("alice").is_err());
        assert!(validate_tailscale_login("a b@c").is_err());
        assert!(validate_tailscale_login("@example.com").is_err());
        Ok(())
    }

    #[test]
    fn a_key_line_parses_with_its_fingerprint() {
        let parsed = parse_public_key_line(KEY).expect("parses");
        assert_eq!(parsed.algorithm, "ssh-ed25519");
        assert_eq!(parsed.comment, "alice@laptop");
        assert!(
            parsed.fingerprint.starts_with("SHA256:"),
            "{}",
            parsed.fingerprint
        );
        assert!(!parsed.openssh.contains("alice"));
    }

    #[test]
    fn options_in_front_of_a_key_are_dropped() {
        let with_options = format!("no-pty,from=\"10.0.0.1\" {KEY}");
        let a = parse_public_key_line(&with_options).expect("parses");
        let b = parse_public_key_line(KEY).expect("parses");
        assert_eq!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn garbage_is_not_a_key() {
        for bad in ["", "hello", "ssh-ed25519 notbase64!!", "ssh-rsa"] {
            assert!(parse_public_key_line(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn reserved_and_malformed_names_are_unavailable() {
        assert!(name_unavailable_reason("fix-ci").is_none());
        for bad in ["list", "root", "help", "Fix", "a;b", "-x", ""] {
            assert!(name_unavailable_reason(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn only_accepted_environment_variables_pass() {
        let patterns = vec![
            "LANG".to_owned(),
            "LC_*".to_owned(),
            "GIT_PROTOCOL".to_owned(),
        ];
        for ok in ["LANG", "LC_ALL", "LC_CTYPE", "GIT_PROTOCOL"] {
            assert!(env_allowed(ok, &patterns), "{ok}");
        }
        for refused in [
            "PATH",
            "LD_PRELOAD",
            "LANGUAGE",
            "GIT_PROTOCOLX",
            "LC_ALL=x",
            "",
        ] {
            assert!(!env_allowed(refused, &patterns), "{refused}");
        }
    }

    #[test]
    fn the_username_picks_the_route() {
        assert_eq!(route_for("fix-ci", true), Route::Agent("fix-ci".into()));
        assert_eq!(route_for("alice", false), Route::Control);
    }

    #[test]
    fn only_registered_keys_get_in() {
        let op = Operator {
            id: 1,
            name: "alice".into(),
            role: Role::Admin,
        };
        assert_eq!(decide_key(Some(op.clone())), KeyDecision::Accept(op));
        assert_eq!(decide_key(None), KeyDecision::Reject);
    }

    #[test]
    fn operator_names_come_from_key_comments() {
        assert_eq!(default_operator_name("alice@laptop", "root"), "alice");
        assert_eq!(default_operator_name("", "root"), "root");
        assert_eq!(default_operator_name("my key", "root"), "root");
    }
}
