//! A mosh client's start of `mosh-server`, recognised in the command line of an exec request
//! (`MoshStart`), so that a plain `mosh NAME@gw` attaches to the agent.
//!
//! The mosh client logs in with ssh and sends one command line: `mosh-server 'new' '-c' '256'
//! '-s' '-l' 'LANG=C.UTF-8'`, every word in single quotes, then `'--'` and the user's command
//! when there is one. Without a command, `mosh-server` would start a login shell in the home
//! directory; the gateway runs it through hostctl's `mosh` verb instead, with the agent's
//! attach as its command. With a command, the line runs as any command does.
//!
//! The line is read as a shell would read it, without a shell: only words made of plain
//! characters, single-quoted text and backslash escapes are taken. A line with anything a shell
//! would expand, redirect or run apart (`$`, `;`, `*`, a double quote, ...) is not recognised and
//! runs as the command it is, so what the gateway recognises is exactly what the shell would
//! have run.

/// A `mosh-server new ...` start, as a mosh client sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoshStart {
    /// No command: mosh-server on the agent's host, attached to the agent. `server_args` are
    /// the options of `mosh-server new`, each its own word (`-c`, `256`, ...).
    Attach { server_args: Vec<String> },
    /// `mosh NAME@gw -- CMD`: run as any command (inside the agent's sandbox when it has one),
    /// with `CMD` started in the workspace: `line` as sent (what the audit trail shows), `run`
    /// the line that runs. mosh-server changes to the home directory before it starts its
    /// command, so `run` has `CMD` change back, through `sh`, with its words unchanged.
    Command { line: String, run: String },
}

/// What `run` puts between mosh-server's `--` and the command's words: a shell that changes
/// to the workspace and becomes the command.
const IN_WORKSPACE: [&str; 3] = ["sh", "-c", "cd \"$AGENTGATE_WORKSPACE\" && exec \"$@\""];

impl MoshStart {
    /// The start `line` asks for, if it is a mosh client's start of `mosh-server new`.
    pub fn recognise(line: &str) -> Option<MoshStart> {
        let words = shell_words(line)?;
        let (program, rest) = words.split_first()?;
        let (new, rest) = rest.split_first()?;
        if program != "mosh-server" || new != "new" {
            return None;
        }
        let (options, command) = match rest.iter().position(|w| w == "--") {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        let server_args = server_options(options)?;
        if command.is_empty() {
            return Some(MoshStart::Attach { server_args });
        }
        let words = ["mosh-server", "new"]
            .into_iter()
            .chain(server_args.iter().map(String::as_str))
            .chain(["--"])
            .chain(IN_WORKSPACE)
            // `$0` of the shell, then the command's words as `$@`.
            .chain(["mosh-command"])
            .chain(command.iter().map(String::as_str));
        Some(MoshStart::Command {
            line: line.to_owned(),
            run: shlex::try_join(words).ok()?,
        })
    }
}

/// The options of `mosh-server new` (its `getopt` string is `@:i:p:c:svl:`), each option and
/// its value as separate words; `None` for anything else, a word that is not an option
/// included.
fn server_options(words: &[String]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut words = words.iter();
    while let Some(word) = words.next() {
        let mut letters = word.strip_prefix('-')?.chars();
        if word.len() < 2 {
            return None;
        }
        while let Some(letter) = letters.next() {
            match letter {
                's' | 'v' => out.push(format!("-{letter}")),
                '@' | 'i' | 'p' | 'c' | 'l' => {
                    // The value is the rest of this word, or the next word.
                    let rest: String = letters.by_ref().collect();
                    let value = if rest.is_empty() {
                        words.next()?.clone()
                    } else {
                        rest
                    };
                    if !option_value_ok(letter, &value) {
                        return None;
                    }
                    out.push(format!("-{letter}"));
                    out.push(value);
                }
                _ => return None,
            }
        }
    }
    Some(out)
}

/// Whether `value` is one mosh-server takes for option `letter`: a number of colours, a port
/// or a range of them, an address, a `NAME=VALUE` locale variable.
fn option_value_ok(letter: char, value: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    match letter {
        'c' => digits(value),
        'p' => match value.split_once(':') {
            Some((low, high)) => digits(low) && digits(high),
            None => digits(value),
        },
        'i' => {
            !value.is_empty()
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:%".contains(&b))
        }
        // mosh-server puts these in its own environment, which is outside the agent's sandbox
        // for an attach: locale variables only, with plain values.
        'l' => value.split_once('=').is_some_and(|(name, value)| {
            is_locale_variable(name)
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
        }),
        // `-@`'s value is eaten and ignored.
        _ => true,
    }
}

/// Whether `name` is a locale variable (`LANG`, `LANGUAGE`, `LC_*`), as mosh's `-l` sends.
fn is_locale_variable(name: &str) -> bool {
    name == "LANG"
        || name == "LANGUAGE"
        || name.strip_prefix("LC_").is_some_and(|rest| {
            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
}

/// The session's environment variables an attach through mosh takes: those that say where the
/// client is (`SSH_CONNECTION`, by which `mosh-server -s` binds, and `SSH_CLIENT`) and the
/// locale. mosh-server runs outside the agent's sandbox, so nothing else a client may send
/// (whatever `ssh.accept_env` lets in) reaches it.
pub fn attach_env(env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(name, _)| {
            name == "SSH_CONNECTION" || name == "SSH_CLIENT" || is_locale_variable(name)
        })
        .cloned()
        .collect()
}

/// Characters a shell takes as they are in an unquoted word.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)
}

/// The words of `line` as a POSIX shell splits them, when the line holds only plain
/// characters, single-quoted text and backslash escapes (of one character); `None` otherwise.
fn shell_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => words.extend(word.take()),
            '\'' => {
                let text = word.get_or_insert_with(String::new);
                loop {
                    match chars.next()? {
                        '\'' => break,
                        c => text.push(c),
                    }
                }
            }
            '\\' => match chars.next()? {
                '\n' => return None,
                c => word.get_or_insert_with(String::new).push(c),
            },
            c if plain(c) => word.get_or_insert_with(String::new).push(c),
            _ => return None,
        }
    }
    words.extend(word);
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(args: &[&str]) -> Option<MoshStart> {
        Some(MoshStart::Attach {
            server_args: args.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    #[test]
    fn the_mosh_clients_start_without_a_command_is_an_attach() {
        // As mosh 1.4.0 sends it (its `shell_quote` quotes every word).
        assert_eq!(
            MoshStart::recognise("mosh-server 'new' '-c' '256' '-s' '-l' 'LANG=C.UTF-8'"),
            attach(&["-c", "256", "-s", "-l", "LANG=C.UTF-8"])
        );
        // `--` with nothing after it is no command either; options may be joined to their
        // values or grouped, as getopt takes them.
        assert_eq!(
            MoshStart::recognise(
                "mosh-server new -c8 -sv -p 60001:60010 -i 192.0.2.1 -l LC_ALL=C '--'"
            ),
            attach(&[
                "-c",
                "8",
                "-s",
                "-v",
                "-p",
                "60001:60010",
                "-i",
                "192.0.2.1",
                "-l",
                "LC_ALL=C"
            ])
        );
        assert_eq!(MoshStart::recognise("mosh-server new"), attach(&[]));
    }

    #[test]
    fn a_start_with_a_command_keeps_its_line() {
        let line = "mosh-server 'new' '-c' '256' '-s' '-l' 'LANG=C.UTF-8' '--' 'sh' '-c' 'echo '\\''hi'\\'' $HOME'";
        let Some(MoshStart::Command { line: sent, run }) = MoshStart::recognise(line) else {
            panic!("not a command");
        };
        assert_eq!(sent, line);
        // The command's words reach it unchanged, after a change to the workspace.
        assert_eq!(
            shlex::split(&run).expect("words"),
            [
                "mosh-server",
                "new",
                "-c",
                "256",
                "-s",
                "-l",
                "LANG=C.UTF-8",
                "--",
                "sh",
                "-c",
                "cd \"$AGENTGATE_WORKSPACE\" && exec \"$@\"",
                "mosh-command",
                "sh",
                "-c",
                "echo 'hi' $HOME"
            ]
        );
    }

    #[test]
    fn anything_else_is_an_ordinary_command() {
        for line in [
            "",
            "mosh-server",
            "mosh-server old",
            "/usr/bin/mosh-server new",
            "mosh-server new -x",
            "mosh-server new extra",
            "mosh-server new -c",
            "mosh-server new -c lots",
            "mosh-server new -p 1:x",
            "mosh-server new -l NOEQUALS",
            "mosh-server new -l '1A=b'",
            // A variable that is not a locale's would be set outside the agent's sandbox.
            "mosh-server new -l LD_PRELOAD=/tmp/x.so",
            "mosh-server new -l 'LANG=C.UTF-8 x'",
            "mosh-server new -l LC_=C",
            "mosh-server new -i 'a b'",
            "mosh-server new -",
            // What a shell would expand or run apart is not read at all.
            "mosh-server new; id",
            "mosh-server new -c $COLORS",
            "mosh-server new -l \"LANG=C\"",
            "mosh-server new -l LANG=*",
            "mosh-server new 'unterminated",
            "mosh-server new \\",
            // mosh's --experimental-remote-ip=remote asks the shell for SSH_CONNECTION first.
            "sh -c '[ -n \"$SSH_CONNECTION\" ] && printf \"\\nMOSH SSH_CONNECTION %s\\n\" \"$SSH_CONNECTION\"' ; mosh-server 'new' '-s'",
        ] {
            assert_eq!(MoshStart::recognise(line), None, "{line:?}");
        }
    }

    #[test]
    fn an_attach_takes_only_the_connection_and_the_locale_from_the_session() {
        let env: Vec<(String, String)> = [
            ("SSH_CONNECTION", "192.0.2.7 50000 127.0.0.1 22"),
            ("SSH_CLIENT", "192.0.2.7 50000 22"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "C"),
            ("LD_PRELOAD", "/tmp/x.so"),
            ("GIT_PROTOCOL", "version=2"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        assert_eq!(attach_env(&env), env[..4]);
    }

    #[test]
    fn words_are_split_as_a_shell_splits_them() {
        assert_eq!(
            shell_words("a  'b c'd\\ e ''").expect("words"),
            ["a", "b cd e", ""]
        );
        assert_eq!(shell_words("'it'\\''s'").expect("words"), ["it's"]);
        assert_eq!(shell_words("a > b"), None);
    }
}
