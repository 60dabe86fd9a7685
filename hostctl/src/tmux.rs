//! The tmux driver: the only code in agentgate that runs tmux.
//!
//! All agents of a host live on one dedicated tmux server (`tmux -L agentgate`, or the name in
//! `$AGENTGATE_TMUX_SOCKET`), so they never mix with the user's own tmux. Session name = agent
//! name. The server reads agentgate's own `tmux.conf` (in `$AGENTGATE_HOME`), never the user's.
//!
//! tmux is always run with an argument vector, never through a shell. One tmux rule still
//! applies to command-line arguments: an argument ending in `;` separates commands. Every
//! argument goes through [`escape_arg`] so that user text can never become a tmux command.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::api::TermSize;
use crate::error::{Error, Result};

/// The socket name of agentgate's tmux server unless `$AGENTGATE_TMUX_SOCKET` says otherwise.
pub const DEFAULT_SOCKET_NAME: &str = "agentgate";

const CONFIG: &str = "\
# agentgate's tmux server. Written by hostctl when missing; edit it freely.
# The agent's pane stays when its process exits, so its last screen and exit code remain.
set-window-option -g remain-on-exit on
set-option -g history-limit 50000
set-option -g status-left '[#S] '
set-option -g status-left-length 40
set-option -g set-titles on
set-option -g set-titles-string '#S'
set-option -g default-terminal 'screen-256color'
";

/// The state of one pane, from `list-panes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pane {
    pub session: String,
    pub pid: Option<u32>,
    pub dead: bool,
    /// The exit code once the process has ended (128 + N after signal N, as shells report it).
    pub dead_status: Option<i32>,
    /// The signal that ended the process, when one did.
    pub dead_signal: Option<i32>,
    pub activity: Option<i64>,
    /// The pane's terminal has closed but tmux has no exit status for its process yet.
    pub closing: bool,
    /// The pane's size in cells.
    pub cols: u16,
    pub rows: u16,
    /// The name of the pane's foreground process.
    pub foreground: Option<String>,
}

/// What to run in a new session.
pub struct NewSession<'a> {
    pub name: &'a str,
    pub cwd: &'a Path,
    pub size: TermSize,
    pub env: Vec<(String, String)>,
    pub argv: Vec<String>,
    /// The command that keeps the pane's output (tmux `pipe-pane`), as argv.
    pub log_writer: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Tmux {
    socket_name: String,
    config_path: PathBuf,
}

impl Tmux {
    /// The tmux server of the host whose agent files are in `home`.
    pub fn new(home: &Path) -> Tmux {
        let socket_name = std::env::var("AGENTGATE_TMUX_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET_NAME.to_owned());
        Tmux {
            socket_name,
            config_path: home.join("tmux.conf"),
        }
    }

    pub fn socket_name(&self) -> &str {
        &self.socket_name
    }

    /// A `tmux` command on agentgate's server, ready for arguments.
    ///
    /// Its environment is the user's basics (see [`crate::userenv`]): the command that starts
    /// the server gives it its global environment, which every agent's process inherits.
    /// `TMUX_TMPDIR` says where the server's socket is; `COLORTERM` tells an attaching
    /// client what the terminal it runs on can show.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        crate::userenv::clear_to_basics(&mut cmd, &["TMUX_TMPDIR", "COLORTERM"]);
        cmd.arg("-L")
            .arg(&self.socket_name)
            .arg("-f")
            .arg(&self.config_path)
            .stdin(Stdio::null());
        cmd
    }

    fn ensure_config(&self) -> Result<()> {
        if self.config_path.exists() {
            return Ok(());
        }
        if let Some(dir) = self.config_path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        }
        std::fs::write(&self.config_path, CONFIG).map_err(Error::io("writing", &self.config_path))
    }

    fn run(&self, what: &'static str, args: &[OsString]) -> Result<String> {
        self.run_with_input(what, args, None)
    }

    /// Runs tmux with `input` on its stdin (for `load-buffer -`, which reads a buffer's
    /// contents there, so that no size or quoting rule of a command line applies to them).
    fn run_with_input(
        &self,
        what: &'static str,
        args: &[OsString],
        input: Option<&[u8]>,
    ) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let spawn_error = |source| Error::Spawn {
            program: "tmux".into(),
            source,
        };
        let mut child = cmd.spawn().map_err(spawn_error)?;
        // Written from a thread of its own while tmux's output is read, so that neither side
        // can wait on the other with a full pipe. A tmux that stops reading early shows in its
        // exit status and stderr, which say more than the broken pipe would.
        let stdin = child.stdin.take();
        let output = std::thread::scope(|scope| {
            if let (Some(mut stdin), Some(input)) = (stdin, input) {
                scope.spawn(move || {
                    use std::io::Write;
                    let _ = stdin.write_all(input);
                });
            }
            child.wait_with_output()
        })
        .map_err(spawn_error)?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        Err(Error::Command {
            what,
            argv: render_argv(&cmd),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Every pane on the server; an empty list when the server is not running.
    pub fn panes(&self) -> Result<Vec<Pane>> {
        Ok(self.server_panes()?.unwrap_or_default())
    }

    /// Every pane on the server; `None` when the server is not running (then the agents did
    /// not end by a stop of their own: the server was killed, or the host restarted).
    pub fn server_panes(&self) -> Result<Option<Vec<Pane>>> {
        let Some(panes) = self.list_panes()? else {
            return Ok(None);
        };
        if !panes.iter().any(|p| p.closing) {
            return Ok(Some(panes));
        }
        // A pane whose terminal closed but whose process has no exit status yet: tmux 3.3 can
        // miss the SIGCHLD of a pane's process (seen under load: the process stays a zombie
        // and the pane never gets its status). Any other child of the server exiting makes
        // it reap every zombie, so run a trivial job, then look again.
        let _ = self.run(
            "nudging tmux to collect exit statuses",
            &args(["run-shell", "true"]),
        );
        self.list_panes()
    }

    fn list_panes(&self) -> Result<Option<Vec<Pane>>> {
        // A printable separator: under a C locale (no LANG, as in many sshd sessions and
        // systemd services) tmux prints control characters such as a tab as '_'.
        // The foreground command comes last: it is the only field that may hold a '|'.
        let format = "#{session_name}|#{pane_pid}|#{pane_dead}|#{pane_dead_status}|\
                      #{window_activity}|#{pane_dead_signal}|#{pane_width}|#{pane_height}|\
                      #{pane_current_command}";
        match self.run(
            "listing tmux panes",
            &args(["list-panes", "-a", "-F", format]),
        ) {
            Ok(out) => Ok(Some(out.lines().filter_map(parse_pane_line).collect())),
            Err(Error::Command { stderr, .. }) if no_server(&stderr) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn pane(&self, session: &str) -> Result<Option<Pane>> {
        Ok(self.panes()?.into_iter().find(|p| p.session == session))
    }

    /// Creates a detached session running `argv`, with its output appended to the log.
    ///
    /// The session and its `pipe-pane` are one tmux command list: the server runs the whole
    /// list before it reads any output from the new pane, so no early output is lost.
    pub fn new_session(&self, spec: &NewSession<'_>) -> Result<()> {
        self.ensure_config()?;
        let mut a: Vec<OsString> = Vec::new();
        // The option is also set here, not only in tmux.conf: the server may predate the file.
        a.extend(args([
            "set-window-option",
            "-g",
            "remain-on-exit",
            "on",
            ";",
        ]));
        a.extend(args(["new-session", "-d", "-s"]));
        a.push(escape_arg(spec.name));
        let size = spec.size.bounded();
        a.extend(args([
            "-x",
            &size.cols.to_string(),
            "-y",
            &size.rows.to_string(),
        ]));
        a.push("-c".into());
        a.push(escape_arg(&spec.cwd.to_string_lossy()));
        for (key, value) in &spec.env {
            a.push("-e".into());
            a.push(escape_arg(&format!("{key}={value}")));
        }
        a.push("--".into());
        a.extend(spec.argv.iter().map(|s| escape_arg(s)));
        a.push(";".into());
        a.extend(args(["pipe-pane", "-t"]));
        a.push(escape_arg(&pane_target(spec.name)));
        let writer = shlex::try_join(spec.log_writer.iter().map(String::as_str)).map_err(|_| {
            Error::InvalidInput(format!("unusable log command {:?}", spec.log_writer))
        })?;
        // pipe-pane's command is expanded as a tmux format before the shell sees it.
        a.push(escape_arg(&format!("exec {}", writer.replace('#', "##"))));
        self.run("starting the agent's tmux session", &a).map(drop)
    }

    /// Sets what a new window or pane of the agent's session runs (tmux's `default-command`,
    /// a shell command line): for a sandboxed agent, a session inside its sandbox rather than
    /// the host user's shell outside it.
    pub fn set_default_command(&self, name: &str, command: &str) -> Result<()> {
        self.run(
            "setting the agent's tmux session's default command",
            &[
                "set-option".into(),
                "-t".into(),
                // A pane's target: set-option resolves its session from it.
                escape_arg(&pane_target(name)),
                "default-command".into(),
                escape_arg(command),
            ],
        )
        .map(drop)
    }

    pub fn kill_session(&self, name: &str) -> Result<()> {
        match self.run(
            "ending the agent's tmux session",
            &[
                "kill-session".into(),
                "-t".into(),
                escape_arg(&session_target(name)),
            ],
        ) {
            Ok(_) => Ok(()),
            Err(Error::Command { stderr, .. })
                if no_server(&stderr) || stderr.contains("can't find session") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Puts `text` into the agent's pane, then presses Enter if asked, at once. Text of one
    /// line is typed as it is (tmux `send-keys -l`). Text with a line break is pasted, as a
    /// person pastes it: were it typed, each line break would be an Enter and the first line
    /// would be submitted alone (see `paste_text`).
    pub fn send_text(&self, name: &str, text: &str, enter: bool) -> Result<()> {
        self.put_text(name, text)?;
        if enter {
            self.press(name, &[crate::api::Key::Enter])?;
        }
        Ok(())
    }

    /// Presses `keys` in the agent's pane, one after the other.
    pub fn press(&self, name: &str, keys: &[crate::api::Key]) -> Result<()> {
        let mut args: Vec<OsString> = vec![
            "send-keys".into(),
            "-t".into(),
            escape_arg(&pane_target(name)),
        ];
        args.extend(keys.iter().map(|k| OsString::from(k.tmux_name())));
        self.run("pressing keys in the agent", &args).map(drop)
    }

    /// Puts `text` into the agent's pane, typed or pasted (see [`Tmux::send_text`]).
    pub fn put_text(&self, name: &str, text: &str) -> Result<()> {
        if text.contains('\0') {
            return Err(Error::InvalidInput(
                "the text to send contains a NUL byte, which a terminal cannot take".into(),
            ));
        }
        let target = escape_arg(&pane_target(name));
        if is_multi_line(text) {
            self.paste(&target, &paste_text(text))?;
        } else {
            // tmux takes a command in one message of at most 16 KiB: a long line is typed a
            // piece at a time.
            for piece in pieces(text, TYPED_PIECE) {
                self.run(
                    "typing into the agent",
                    &[
                        "send-keys".into(),
                        "-t".into(),
                        target.clone(),
                        "-l".into(),
                        "--".into(),
                        escape_arg(piece),
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Pastes `text` into the pane `target` through a tmux buffer of its own, loaded from
    /// stdin and deleted by the paste. `paste-buffer -p` brackets the text (`ESC [ 200 ~` ...
    /// `ESC [ 201 ~`) when the program in the pane asked for bracketed paste, and turns each LF
    /// into a CR, as tmux does for a paste.
    fn paste(&self, target: &OsString, text: &str) -> Result<()> {
        if text.is_empty() {
            // tmux makes no buffer of empty input, and the paste would fail.
            return Ok(());
        }
        let buffer = format!("agentgate-paste-{}-{:016x}", std::process::id(), rand_u64());
        let pasted = self.run_with_input(
            "pasting into the agent",
            &[
                "load-buffer".into(),
                "-b".into(),
                buffer.clone().into(),
                "-".into(),
                ";".into(),
                "paste-buffer".into(),
                "-p".into(),
                "-d".into(),
                "-b".into(),
                buffer.clone().into(),
                "-t".into(),
                target.clone(),
            ],
            Some(text.as_bytes()),
        );
        if pasted.is_err() {
            // The paste failed (the pane went away), so it did not delete the buffer.
            let _ = self.run(
                "deleting a paste buffer",
                &["delete-buffer".into(), "-b".into(), buffer.into()],
            );
        }
        pasted.map(drop)
    }

    /// The visible screen of the agent's pane, as plain text.
    pub fn capture(&self, name: &str) -> Result<String> {
        self.run(
            "reading the agent's screen",
            &[
                "capture-pane".into(),
                "-p".into(),
                "-t".into(),
                escape_arg(&pane_target(name)),
            ],
        )
    }

    /// The visible screens of several agents' panes, by agent name, read with one tmux
    /// command (a host's every agent is read on each reconciler pass, so this must stay cheap).
    /// A pane that disappeared in the meantime is missing from the answer.
    pub fn capture_many(&self, names: &[&str]) -> Result<Vec<(String, String)>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // Each screen is followed by a line no pane can have shown before this call.
        let marker = format!("agentgate-screen-end-{:016x}", rand_u64());
        let mut a: Vec<OsString> = Vec::new();
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                a.push(";".into());
            }
            a.extend(args(["capture-pane", "-p", "-t"]));
            a.push(escape_arg(&pane_target(name)));
            a.push(";".into());
            a.extend(args(["display-message", "-p"]));
            a.push(escape_arg(&marker));
        }
        match self.run("reading the agents' screens", &a) {
            Ok(out) => Ok(split_screens(&out, &marker, names)),
            // One of the panes is gone, which ends tmux's command list there: read each alone.
            Err(Error::Command { .. }) => Ok(names
                .iter()
                .filter_map(|name| Some(((*name).to_owned(), self.capture(name).ok()?)))
                .collect()),
            Err(e) => Err(e),
        }
    }

    /// The command that attaches the calling terminal to the agent's session.
    pub fn attach_command(&self, name: &str) -> Command {
        let mut cmd = self.command();
        cmd.arg("attach-session")
            .arg("-t")
            .arg(escape_arg(&session_target(name)))
            .stdin(Stdio::inherit());
        cmd
    }

    /// `tmux -V`, if tmux is installed.
    pub fn version() -> Option<String> {
        let out = Command::new("tmux").arg("-V").output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

/// Whether `text` has a line break, and so is pasted rather than typed.
fn is_multi_line(text: &str) -> bool {
    text.contains(['\n', '\r'])
}

/// The end-of-paste mark a terminal sends after a bracketed paste.
const PASTE_END: &str = "\x1b[201~";

/// `text` made ready to paste: CR LF line ends become LF (tmux turns every LF into a CR, so a
/// CR LF would make two line breaks), and every end-of-paste mark is removed, so that the text
/// cannot end the paste early and have its rest read as keys. Removing one mark can join the
/// text around it into another (`ESC [ 20` + mark + `1 ~`): none is left in the result.
fn paste_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        out.push(c);
        // The text before `c` holds no mark, so a mark can only end at `c`.
        if out.ends_with(PASTE_END) {
            out.truncate(out.len() - PASTE_END.len());
        }
    }
    // After the marks are gone: removing one can bring a CR and an LF together.
    out.replace("\r\n", "\n")
}

/// `=NAME`: an exact session match (a bare name would also match a prefix of another name).
fn session_target(name: &str) -> String {
    format!("={name}")
}

/// `=NAME:`: the current pane of the session named exactly NAME.
fn pane_target(name: &str) -> String {
    format!("={name}:")
}

/// Protects an argument from tmux's command-line rule that an argument ending in `;` ends a
/// command: tmux turns a trailing `\;` back into `;`.
pub fn escape_arg(arg: &str) -> OsString {
    match arg.strip_suffix(';') {
        Some(head) => format!("{head}\\;").into(),
        None => arg.into(),
    }
}

fn args<const N: usize>(a: [&str; N]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

/// Whether tmux failed because its server has no sessions: never started, or exiting because
/// its last session just ended (tmux's `exit-empty`), in which case tmux may say any of these.
fn no_server(stderr: &str) -> bool {
    stderr.contains("no server running")
        || stderr.contains("error connecting to")
        || stderr.contains("server exited unexpectedly")
        || stderr.contains("no current target")
}

/// Cuts the output of [`Tmux::capture_many`] into one screen per name.
fn split_screens(out: &str, marker: &str, names: &[&str]) -> Vec<(String, String)> {
    let mut screens = Vec::new();
    let mut current = String::new();
    let mut names = names.iter();
    for line in out.lines() {
        if line == marker {
            let Some(name) = names.next() else { break };
            screens.push(((*name).to_owned(), std::mem::take(&mut current)));
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    screens
}

/// A number for one-off markers: not secret, only unlikely to be on anyone's screen.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish()
}

/// The most bytes of a line typed with one `send-keys`.
const TYPED_PIECE: usize = 8 * 1024;

/// `text` cut into pieces of at most `max` bytes (at least one character each), on
/// character boundaries.
fn pieces(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = max.min(rest.len());
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        if end == 0 {
            end = rest.chars().next().map_or(rest.len(), char::len_utf8);
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

fn parse_pane_line(line: &str) -> Option<Pane> {
    let mut fields = line.splitn(9, '|');
    let session = fields.next()?.to_owned();
    let pid = fields.next()?.parse().ok();
    let pty_closed = fields.next()? == "1";
    let exit_status: Option<i32> = fields.next()?.parse().ok();
    let activity = fields.next().and_then(|s| s.parse().ok());
    let signal: Option<i32> = fields.next().and_then(|s| s.parse().ok());
    let cols = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let rows = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let foreground = fields.next().filter(|s| !s.is_empty()).map(str::to_owned);
    let dead_status = exit_status.or(signal.map(|s| 128 + s));
    // tmux marks a pane dead when its terminal closes, a moment before it collects the
    // process's exit status: until then the process counts as still running.
    let dead = pty_closed && dead_status.is_some();
    Some(Pane {
        session,
        pid: if dead { None } else { pid },
        dead,
        dead_status: if dead { dead_status } else { None },
        dead_signal: if dead && exit_status.is_none() {
            signal
        } else {
            None
        },
        activity,
        closing: pty_closed && !dead,
        cols,
        rows,
        foreground,
    })
}

fn render_argv(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let s = a.to_string_lossy();
            shlex::try_quote(&s)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| s.escape_debug().to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_semicolons_are_escaped_for_tmux() {
        assert_eq!(escape_arg("ls;"), OsString::from("ls\\;"));
        assert_eq!(escape_arg(";"), OsString::from("\\;"));
        assert_eq!(escape_arg("a\\;"), OsString::from("a\\\\;"));
        assert_eq!(escape_arg("a;b"), OsString::from("a;b"));
    }

    #[test]
    fn text_with_a_line_break_is_pasted_and_a_single_line_is_typed() {
        for multi in ["a\nb", "a\rb", "a\r\nb", "\n", "line\n", "\nline", "a\n\nb"] {
            assert!(is_multi_line(multi), "{multi:?}");
        }
        for single in ["", "make test", "tab\tand \x1b[A", "é ü"] {
            assert!(!is_multi_line(single), "{single:?}");
        }
    }

    #[test]
    fn a_pasted_text_loses_every_end_of_paste_mark_and_its_cr_lf_line_ends() {
        assert_eq!(
            paste_text("line1\nline2\n\nline4\n"),
            "line1\nline2\n\nline4\n"
        );
        assert_eq!(paste_text("a\x1b[201~b\n\x1b[201~c"), "ab\nc");
        assert_eq!(paste_text("\x1b[201~\x1b[201~"), "");
        // A mark made by removing another is removed too, however deep.
        assert_eq!(paste_text("x\x1b[20\x1b[201~1~y\n"), "xy\n");
        assert_eq!(
            paste_text("\x1b[2\x1b[20\x1b[201~1~01~z\n"),
            "z\n",
            "nested twice"
        );
        // What only looks like the mark stays.
        assert_eq!(
            paste_text("\x1b[200~ \x1b[201 ~ \x1b[2011~ [201~\n"),
            "\x1b[200~ \x1b[201 ~ \x1b[2011~ [201~\n"
        );
        assert_eq!(paste_text("a\r\nb\r\n"), "a\nb\n");
        assert_eq!(paste_text("a\rb\n\r"), "a\rb\n\r");
        assert_eq!(paste_text("a\r\x1b[201~\nb"), "a\nb");
        assert_eq!(paste_text("é\n日本"), "é\n日本");
    }

    #[test]
    fn long_lines_are_typed_in_pieces_on_character_boundaries() {
        assert_eq!(pieces("", 4).count(), 0);
        assert_eq!(
            pieces("abcdefghij", 4).collect::<Vec<_>>(),
            ["abcd", "efgh", "ij"]
        );
        let text = "é日本語x".repeat(1000);
        let cut: Vec<&str> = pieces(&text, 7).collect();
        assert!(cut.iter().all(|p| !p.is_empty() && p.len() <= 7));
        assert_eq!(cut.concat(), text);
        // A character longer than the piece still goes, whole.
        assert_eq!(pieces("日本", 2).collect::<Vec<_>>(), ["日", "本"]);
    }

    #[test]
    fn pane_lines_parse_live_and_dead_panes() {
        assert_eq!(
            parse_pane_line("fix-ci|42|0||1700000000"),
            Some(Pane {
                session: "fix-ci".into(),
                pid: Some(42),
                dead: false,
                dead_status: None,
                dead_signal: None,
                activity: Some(1_700_000_000),
                closing: false,
                cols: 0,
                rows: 0,
                foreground: None,
            })
        );
        let sized = parse_pane_line("a|42|0||1700000000||120|40|my|tool").expect("parses");
        assert_eq!((sized.cols, sized.rows), (120, 40));
        assert_eq!(sized.foreground.as_deref(), Some("my|tool"));
        let dead = parse_pane_line("x|42|1|3||").expect("parses");
        assert!(dead.dead);
        assert_eq!((dead.dead_status, dead.dead_signal), (Some(3), None));
        assert_eq!(dead.pid, None);
        let killed = parse_pane_line("x|42|1|||9").expect("parses");
        assert_eq!(
            (killed.dead, killed.dead_status, killed.dead_signal),
            (true, Some(137), Some(9))
        );
        let closing = parse_pane_line("x|42|1|||").expect("parses");
        assert!(
            !closing.dead,
            "a closed pane without an exit status is not dead yet"
        );
        assert!(closing.closing);
        assert_eq!(parse_pane_line("garbage"), None);
    }

    #[test]
    fn captured_screens_are_cut_at_their_markers() {
        let out = "a1\n\na3\nEND\nb1\nEND\n";
        assert_eq!(
            split_screens(out, "END", &["a", "b"]),
            vec![
                ("a".into(), "a1\n\na3\n".into()),
                ("b".into(), "b1\n".into())
            ]
        );
        // Output cut short: only the screens that ended are returned.
        assert_eq!(
            split_screens("a1\nEND\nb1\n", "END", &["a", "b"]),
            vec![("a".into(), "a1\n".into())]
        );
    }

    #[test]
    fn a_session_asked_for_at_an_absurd_size_gets_a_bounded_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tmux = Tmux {
            socket_name: format!("hostctl-size-{}", std::process::id()),
            config_path: dir.path().join("tmux.conf"),
        };
        tmux.new_session(&NewSession {
            name: "huge",
            cwd: dir.path(),
            size: TermSize {
                cols: u16::MAX,
                rows: u16::MAX,
            },
            env: Vec::new(),
            argv: vec!["sleep".into(), "30".into()],
            log_writer: vec!["cat".into()],
        })
        .expect("a session");
        let size = tmux
            .command()
            .args([
                "display-message",
                "-p",
                "-t",
                "=huge:",
                "#{window_width}x#{window_height}",
            ])
            .output()
            .expect("tmux");
        let _ = tmux.command().arg("kill-server").output();
        assert_eq!(
            String::from_utf8_lossy(&size.stdout).trim(),
            format!(
                "{}x{}",
                crate::api::MAX_TERM_COLS,
                crate::api::MAX_TERM_ROWS
            )
        );
    }
}
