//! Agent-aware status: whether a running agent is `working`, `waiting` for the operator or
//! `idle`, told from its screen as its host reports it (`hostctl list` and `info`).
//!
//! In this order:
//! - `working`: its screen changed within `status.working_for`;
//! - `idle`: no output and no input through the gateway for `status.idle_after`;
//! - `waiting`: a rule of its template matches the last lines of its screen (a permission
//!   dialog, a yes/no question, its input prompt), or, for a shell, the shell itself is in the
//!   foreground (it sits at its prompt);
//! - otherwise plain `running`.
//!
//! Output is a change of the screen's text at an unchanged size: a screen redrawn because a
//! viewer attached with another terminal size is not output, and the gateway's own look at the
//! screen (`tmux capture-pane`) changes nothing. Input is what operators type into the agent
//! through the gateway (`attach`, `send`); a viewer that types nothing adds none.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use hostctl::api::{AgentCli, AgentCommand, Screen};
use regex::Regex;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::agents::hooks::HookState;
use crate::config::{StatusConfig, Template};
use crate::store::ActivitySource::{Hook, Screen as FromScreen};
use crate::store::ActivityState::{Idle, Waiting, Working};
use crate::store::AgentActivity;

/// Foreground process names that mean "a shell, at its prompt".
const SHELLS: &[&str] = &[
    "bash", "zsh", "sh", "dash", "ash", "fish", "ksh", "mksh", "tcsh", "csh", "nu", "xonsh",
    "elvish",
];

/// A built-in rule: a pattern, a pattern that cancels it (the same screen while the agent
/// works), and the reason.
type Builtin = (&'static str, Option<&'static str>, &'static str);

/// Rules every built-in set has: questions any program may ask on its last line.
const COMMON: &[Builtin] = &[
    (
        r"(?i)[\[(](y/n|yes/no|y/n/a|y/n/q)[\])][^\n]{0,3}\z",
        None,
        "asks a yes/no question",
    ),
    (
        r"(?i)press (enter|return|any key) to continue",
        None,
        "asks for a key press",
    ),
];

/// The built-in rule sets, by name: the rules, and whether a shell in the foreground means
/// the agent waits. Patterns are matched against the last lines with text of the screen,
/// joined with newlines; `\z` is the end of the last one. Each set is checked against screens
/// captured from the program itself (`tests/fixtures/screens/`, see its SOURCES.md).
fn builtin(name: &str) -> Option<(&'static [Builtin], bool)> {
    const CLAUDE: &[Builtin] = &[
        (
            r"Bash command\s*\n\s+(?P<command>[^\n]+?)\s*\n(?:[^\n]*\n){0,3}?\s*Do you want to proceed\?",
            None,
            "asks permission to run `$command`",
        ),
        (
            r"Do you want to make this edit to",
            None,
            "asks permission to edit a file",
        ),
        (
            r"Do you want to create ",
            None,
            "asks permission to create a file",
        ),
        (r"Do you want to proceed\?", None, "asks permission"),
        (
            r"Is this a project you created or one you trust\?|Do you trust the files in this folder\?",
            None,
            "asks whether to trust the folder",
        ),
        (
            r"Do you want to use this API key\?",
            None,
            "asks about the API key",
        ),
        (r"(?m)^\s*❯ \d+\. ", None, "asks to choose"),
        (
            r"\? for shortcuts",
            Some(r"esc to interrupt"),
            "waits for a prompt",
        ),
    ];
    const CODEX: &[Builtin] = &[
        (
            r"Would you like to run the following command\?(?:\n[^\n]*){0,6}?\n\s*\$ (?P<command>[^\n]+?)\s*(?:\n|\z)",
            None,
            "asks permission to run `$command`",
        ),
        (
            r"Would you like to run the following command\?|Allow command\?",
            None,
            "asks permission to run a command",
        ),
        (
            r"Would you like to make the following edits\?",
            None,
            "asks permission to edit files",
        ),
        (
            r"Trust this folder\?",
            None,
            "asks whether to trust the folder",
        ),
        (
            r"Sign in with ChatGPT|Sign in another way|Paste or type your API key",
            None,
            "asks how to sign in",
        ),
        (
            r"\? for shortcuts",
            Some(r"esc to interrupt"),
            "waits for a prompt",
        ),
    ];
    const GEMINI: &[Builtin] = &[
        (
            r"\? Shell\s+(?P<command>[^\n│]+?)\s*│?\n(?:[^\n]*\n){0,12}?[^\n]*Allow execution of",
            None,
            "asks permission to run `$command`",
        ),
        (
            r"Allow execution of",
            None,
            "asks permission to run a command",
        ),
        (
            r"Apply this change\?|Allow this change\?",
            None,
            "asks permission to apply a change",
        ),
        (
            r"Do you trust the files in this folder\?",
            None,
            "asks whether to trust the folder",
        ),
        (
            r"How would you like to authenticate|Enter Gemini API Key",
            None,
            "asks how to sign in",
        ),
        (
            r"Type your message or @path/to/file",
            Some(r"esc to cancel"),
            "waits for a prompt",
        ),
    ];
    const AIDER: &[Builtin] = &[
        (
            r"Run shell commands?\? \(Y\)es/\(N\)o[^\n]*\z",
            None,
            "asks permission to run a command",
        ),
        (
            r"(Create new file|Allow edits to file[^\n]*)\? \(Y\)es/\(N\)o[^\n]*\z",
            None,
            "asks permission to edit a file",
        ),
        (r"\(Y\)es/\(N\)o[^\n]*\z", None, "asks a yes/no question"),
        (r"(?m)^\w*>\z", None, "waits for a prompt"),
    ];
    match name {
        "claude" => Some((CLAUDE, false)),
        "codex" => Some((CODEX, false)),
        "gemini" => Some((GEMINI, false)),
        "aider" => Some((AIDER, false)),
        "shell" => Some((&[], true)),
        "generic" | "none" => Some((&[], false)),
        _ => None,
    }
}

/// The names `recognize` accepts.
pub const BUILTIN_NAMES: &[&str] = &["claude", "codex", "gemini", "aider", "shell", "none"];

/// The reason of the built-in rules that find a CLI at its prompt: every other rule finds a
/// question.
const AT_PROMPT: &str = "waits for a prompt";

/// What a screen that makes an agent wait shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenWait {
    pub reason: String,
    /// A question (a dialog, a yes/no question) that needs the operator, rather than the
    /// program's prompt: it is never hidden by recent output.
    pub asks: bool,
}

/// One rule, compiled.
#[derive(Debug)]
struct Rule {
    pattern: Regex,
    unless: Option<Regex>,
    reason: String,
    asks: bool,
}

impl Rule {
    fn new(pattern: &str, unless: Option<&str>, reason: &str) -> Result<Rule, regex::Error> {
        Ok(Rule {
            pattern: Regex::new(pattern)?,
            unless: unless.map(Regex::new).transpose()?,
            reason: reason.to_owned(),
            asks: reason != AT_PROMPT,
        })
    }

    /// The rule's reason if it matches `text`, its `$name` and `${name}` filled with what the
    /// pattern's groups of those names matched (one line, cut short: it is the screen's text).
    fn reason_for(&self, text: &str) -> Option<String> {
        let captures = self.pattern.captures(text)?;
        if self.unless.as_ref().is_some_and(|u| u.is_match(text)) {
            return None;
        }
        if !self.reason.contains('$') {
            return Some(self.reason.clone());
        }
        let mut reason = String::new();
        captures.expand(&self.reason, &mut reason);
        Some(
            reason
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(MAX_REASON)
                .collect(),
        )
    }
}

/// The longest reason a rule gives, in characters.
const MAX_REASON: usize = 200;

/// One template's rules, compiled.
#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    shell_prompt: bool,
}

impl RuleSet {
    /// Why the agent showing `screen` waits for the operator, if it does.
    pub fn waiting(&self, screen: &Screen) -> Option<String> {
        self.wait(screen).map(|w| w.reason)
    }

    /// What the agent showing `screen` waits for, if it does.
    pub fn wait(&self, screen: &Screen) -> Option<ScreenWait> {
        let text = screen.tail.join("\n");
        if let Some((rule, reason)) = self
            .rules
            .iter()
            .find_map(|r| r.reason_for(&text).map(|reason| (r, reason)))
        {
            return Some(ScreenWait {
                reason,
                asks: rule.asks,
            });
        }
        let at_prompt = self.shell_prompt
            && screen
                .foreground
                .as_deref()
                .is_some_and(|f| SHELLS.contains(&f.trim_start_matches('-')));
        at_prompt.then(|| ScreenWait {
            reason: "at the shell prompt".to_owned(),
            asks: false,
        })
    }
}

/// Every template's rules, and the built-in sets for agents created with their own command.
#[derive(Debug)]
pub struct Rules {
    templates: BTreeMap<String, RuleSet>,
    /// The CLI each template's rules recognise.
    clis: BTreeMap<String, AgentCli>,
    builtins: BTreeMap<&'static str, RuleSet>,
}

impl Rules {
    /// Compiles the rules of every template; an invalid pattern or an unknown `recognize`
    /// is an error naming the template.
    pub fn new(templates: &BTreeMap<String, Template>) -> Result<Rules, String> {
        let mut sets = BTreeMap::new();
        let mut clis = BTreeMap::new();
        for (name, template) in templates {
            let builtin_name = match &template.recognize {
                Some(r) => {
                    if !BUILTIN_NAMES.contains(&r.as_str()) {
                        return Err(format!(
                            "template '{name}': recognize = \"{r}\" is not one of: {}",
                            BUILTIN_NAMES.join(", ")
                        ));
                    }
                    r.clone()
                }
                None => default_rules(&template.command).to_owned(),
            };
            let mut rules = Vec::new();
            for rule in &template.waiting {
                let compiled = Rule::new(&rule.pattern, rule.unless.as_deref(), &rule.reason)
                    .map_err(|e| {
                        format!(
                            "template '{name}': waiting rule {:?} is not a valid regular expression: {e}",
                            rule.pattern
                        )
                    })?;
                rules.push(compiled);
            }
            if let Some(cli) = AgentCli::from_name(&builtin_name) {
                clis.insert(name.clone(), cli);
            }
            let mut set = compile_builtin(&builtin_name);
            rules.append(&mut set.rules);
            set.rules = rules;
            sets.insert(name.clone(), set);
        }
        let builtins = BUILTIN_NAMES
            .iter()
            .chain(&["generic"])
            .map(|name| (*name, compile_builtin(name)))
            .collect();
        Ok(Rules {
            templates: sets,
            clis,
            builtins,
        })
    }

    /// The agent CLI the rules recognise in an agent: its template's, or, for an agent created
    /// with its own command, that command's program (`aider` for `create NAME -- aider ...`).
    pub fn cli_for(&self, template: &str, command: &AgentCommand) -> Option<AgentCli> {
        match command {
            AgentCommand::Argv { argv } => AgentCli::from_name(argv_rules(argv)),
            _ => self.clis.get(template).copied(),
        }
    }

    /// The rules for an agent: its template's, or, for an agent created with its own command
    /// (`create NAME -- CMD...`), the built-in set of that command's program.
    pub fn for_agent(&self, template: &str, command: &AgentCommand) -> &RuleSet {
        let set = match command {
            AgentCommand::Argv { argv } => self.builtins.get(argv_rules(argv)),
            _ => self.templates.get(template),
        };
        set.or_else(|| self.builtins.get("generic"))
            .unwrap_or(&EMPTY)
    }
}

static EMPTY: RuleSet = RuleSet {
    rules: Vec::new(),
    shell_prompt: false,
};

/// The built-in set for an argument vector: its program's; a shell's only when it is
/// interactive (`bash`, not `sh -c SCRIPT`).
fn argv_rules(argv: &[String]) -> &'static str {
    let Some(first) = argv.first() else {
        return "shell";
    };
    let program = first.rsplit('/').next().unwrap_or(first);
    if SHELLS.contains(&program) {
        return if argv.iter().any(|a| a == "-c") {
            "generic"
        } else {
            "shell"
        };
    }
    default_rules(program)
}

/// The built-in set a template's command gets: its program's (`claude --continue` gets
/// `claude`'s), `shell` for the login shell, `generic` for any other program.
fn default_rules(command: &str) -> &'static str {
    let Some(first) = command.split_whitespace().next() else {
        return "shell";
    };
    let program = first.rsplit('/').next().unwrap_or(first);
    BUILTIN_NAMES
        .iter()
        .find(|n| **n == program && **n != "none")
        .copied()
        .unwrap_or("generic")
}

fn compile_builtin(name: &str) -> RuleSet {
    let (own, shell_prompt) = builtin(name).unwrap_or((&[], false));
    let common: &[Builtin] = if name == "none" { &[] } else { COMMON };
    let rules = own
        .iter()
        .chain(common)
        // The built-in patterns are tested (below): one that did not compile would be left out.
        .filter_map(|(p, unless, reason)| Rule::new(p, *unless, reason).ok())
        .collect();
    RuleSet {
        rules,
        shell_prompt,
    }
}

/// When operators last typed into each agent through this gateway, and how many are attached
/// to it now. Kept in memory (a keystroke must not cost a database write) and folded into the
/// store by [`next`]'s callers.
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

/// The last look at one host. Its lock makes the looks at one host one at a time.
#[derive(Debug, Default)]
pub struct HostLook {
    /// A second before the host's own time (Unix seconds) at the last look, so the next look
    /// reads only the screens with output since (`None`: read them all).
    pub mark: Option<i64>,
    /// When the last look ended: a look asked for before then, and kept waiting by it, takes
    /// its answer instead of asking the host again.
    pub done_at: Option<std::time::Instant>,
}

/// Every host's [`HostLook`].
#[derive(Debug, Default)]
pub struct ScreenMarks(Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<HostLook>>>>);

impl ScreenMarks {
    pub fn for_host(&self, host: &str) -> std::sync::Arc<tokio::sync::Mutex<HostLook>> {
        match self.0.lock() {
            Ok(mut map) => map.entry(host.to_owned()).or_default().clone(),
            Err(_) => std::sync::Arc::default(),
        }
    }
}

/// What a host reported of a running agent, for [`next`].
pub struct Look<'a> {
    pub screen: Option<&'a Screen>,
    /// tmux's time of the pane's last output (seconds), when known.
    pub tmux_activity: Option<OffsetDateTime>,
    /// When an operator last typed into it through this gateway.
    pub input: Option<OffsetDateTime>,
    /// The last events its CLI reported through its hooks, oldest first (none: its CLI's
    /// hooks are not wired, or have said nothing yet).
    pub hooks: &'a [hostctl::api::HookEvent],
}

/// The activity of a running agent after a new look at it, `prev` being what was known.
pub fn next(
    config: &StatusConfig,
    rules: &RuleSet,
    prev: &AgentActivity,
    look: &Look<'_>,
    now: OffsetDateTime,
) -> AgentActivity {
    let mut next = prev.clone();
    let prev_input = parse(prev.last_input_at.as_deref());
    if let Some(input) = look.input
        && prev_input.is_none_or(|p| input > p)
    {
        next.last_input_at = Some(format(input));
    }
    if let Some(screen) = look.screen {
        let size = format!("{}x{}", screen.cols, screen.rows);
        let key = format!("{size} {}", screen.hash);
        let prev_output = parse(prev.last_output_at.as_deref());
        // When the change happened: tmux's time of the last output, unless it is older than
        // what is already known (tmux counts whole seconds) or in the future.
        let changed_at = look
            .tmux_activity
            .filter(|t| *t <= now && prev_output.is_none_or(|p| *t > p))
            .unwrap_or(now);
        match prev.screen.as_deref() {
            // The first look (or the first since the screen was forgotten): it shows what it
            // got at tmux's last output, which is no output if it is not newer than the last
            // one known.
            None => {
                next.last_output_at = match (prev_output, look.tmux_activity) {
                    (Some(p), Some(t)) => Some(format(p.max(t.min(now)))),
                    (Some(p), None) => Some(format(p)),
                    (None, _) => Some(format(changed_at)),
                }
            }
            Some(old) if old == key => {}
            // Another size: the program redrew its screen for a viewer's terminal.
            Some(old) if old.split(' ').next() != Some(size.as_str()) => {}
            Some(_) => next.last_output_at = Some(format(changed_at)),
        }
        next.screen = Some(key);
        next.last_line = screen.tail.last().cloned();
        let wait = rules.wait(screen);
        next.screen_asks = wait.as_ref().is_some_and(|w| w.asks);
        next.screen_waits = wait.map(|w| w.reason);
    }
    let output = parse(next.last_output_at.as_deref());
    let input = parse(next.last_input_at.as_deref());
    let within = |t: OffsetDateTime, limit: std::time::Duration| {
        let age = now - t;
        age < time::Duration::try_from(limit).unwrap_or(time::Duration::MAX)
    };
    // The hooks' word, unless an operator typed into the agent after their last event: what
    // they typed may have answered a dialog or interrupted a turn, which no hook reports, and
    // the screen tells until the CLI's next event.
    let hook = crate::agents::hooks::state(look.hooks)
        .filter(|(_, at)| input.is_none_or(|typed| typed <= *at));
    let quiet_since = output.max(input).max(hook.as_ref().map(|(_, at)| *at));
    let idle = quiet_since.is_some_and(|t| !within(t, config.idle_after));
    // What the screen showed when last read (it has not changed since, or it would have been
    // read again).
    let screen_question = next.screen_waits.clone().filter(|_| next.screen_asks);
    let screen_prompt = next.screen_waits.clone().filter(|_| !next.screen_asks);
    let (state, reason, source) = match hook {
        Some((HookState::Asking(reason), _)) => (Some(Waiting), Some(reason), Hook),
        // A question on the screen is never hidden by output, nor by hooks that say the CLI
        // works (a dialog its hooks do not report).
        _ if screen_question.is_some() => (Some(Waiting), screen_question, FromScreen),
        // A turn whose end no hook reported (an interrupt, a crash of the hook) shows as the
        // CLI's prompt on a screen that has not changed for `working_for` since the last event.
        Some((HookState::Working, at))
            if within(at, config.working_for)
                || output.is_some_and(|t| within(t, config.working_for))
                || screen_prompt.is_none() =>
        {
            (Some(Working), None, Hook)
        }
        Some((HookState::AtPrompt { .. }, _)) if idle => (Some(Idle), None, Hook),
        Some((HookState::AtPrompt { failed }, _)) => (
            Some(Waiting),
            Some(match failed {
                Some(why) => format!("{AT_PROMPT} (its last turn failed: {why})"),
                None => AT_PROMPT.to_owned(),
            }),
            Hook,
        ),
        Some((HookState::Ended, _)) => (None, None, Hook),
        _ if output.is_some_and(|t| within(t, config.working_for)) => {
            (Some(Working), None, FromScreen)
        }
        _ if idle => (Some(Idle), None, FromScreen),
        _ if screen_prompt.is_some() => (Some(Waiting), screen_prompt, FromScreen),
        _ => (None, None, FromScreen),
    };
    next.state = state;
    next.reason = reason;
    next.source = Some(source);
    next
}

/// The question an agent asks the operator (a permission, a dialog, a yes/no question), if it
/// waits on one rather than at its prompt.
pub fn question(activity: &AgentActivity) -> Option<String> {
    if activity.state != Some(Waiting) {
        return None;
    }
    let reason = activity.reason.clone()?;
    let asks = match activity.source {
        Some(Hook) => !reason.starts_with(AT_PROMPT),
        _ => activity.screen_asks,
    };
    asks.then_some(reason)
}

pub fn parse(rfc3339: Option<&str>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(rfc3339?, &Rfc3339).ok()
}

pub fn format(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WaitingRule;
    use crate::store::ActivityState;
    use std::time::Duration;

    fn screen(text: &str, foreground: &str) -> Screen {
        Screen::from_text(80, 24, text, Some(foreground.to_owned()))
    }

    fn rules_for(template: Template) -> Rules {
        Rules::new(&BTreeMap::from([("t".to_owned(), template)])).expect("rules compile")
    }

    fn config() -> StatusConfig {
        StatusConfig {
            working_for: Duration::from_secs(10),
            idle_after: Duration::from_secs(60),
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).expect("a valid time")
    }

    impl Rules {
        fn for_template_named(&self, template: &str) -> &RuleSet {
            self.for_agent(template, &AgentCommand::LoginShell)
        }
    }

    #[test]
    fn an_agents_own_command_picks_its_programs_rules() {
        let rules = rules_for(Template::default());
        let argv = |a: &[&str]| AgentCommand::Argv {
            argv: a.iter().map(|s| (*s).to_owned()).collect(),
        };
        let prompt = screen("$", "bash");
        let at = |a: &[&str]| rules.for_agent("t", &argv(a)).waiting(&prompt);
        assert_eq!(at(&["bash"]).as_deref(), Some("at the shell prompt"));
        assert_eq!(at(&["/bin/sh", "-c", "read x"]), None);
        assert_eq!(at(&["sleep", "9"]), None);
        let dialog = screen("Do you want to proceed?", "claude");
        let claude = rules.for_agent("t", &argv(&["claude", "--resume"]));
        assert_eq!(claude.waiting(&dialog).as_deref(), Some("asks permission"));
    }

    /// Screens captured from each agent CLI (see tests/fixtures/screens/SOURCES.md), with what
    /// the CLI's built-in rules must say of them: the reason it waits, or nothing (it works).
    #[test]
    fn captured_screens_of_each_cli_are_recognised() {
        macro_rules! fixture {
            ($file:literal) => {
                include_str!(concat!("../../tests/fixtures/screens/", $file, ".txt"))
            };
        }
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "claude",
                "claude-theme",
                fixture!("claude-theme"),
                Some("asks to choose"),
            ),
            (
                "claude",
                "claude-apikey",
                fixture!("claude-apikey"),
                Some("asks about the API key"),
            ),
            (
                "claude",
                "claude-security-notes",
                fixture!("claude-security-notes"),
                Some("asks for a key press"),
            ),
            (
                "claude",
                "claude-trust",
                fixture!("claude-trust"),
                Some("asks whether to trust the folder"),
            ),
            (
                "claude",
                "claude-input",
                fixture!("claude-input"),
                Some("waits for a prompt"),
            ),
            (
                "claude",
                "claude-perm-bash",
                fixture!("claude-perm-bash"),
                Some("asks permission to run `touch agentgate-probe.txt`"),
            ),
            (
                "claude",
                "claude-perm-write",
                fixture!("claude-perm-write"),
                Some("asks permission to create a file"),
            ),
            (
                "claude",
                "claude-perm-edit",
                fixture!("claude-perm-edit"),
                Some("asks permission to edit a file"),
            ),
            ("claude", "claude-busy", fixture!("claude-busy"), None),
            (
                "codex",
                "codex-signin",
                fixture!("codex-signin"),
                Some("asks how to sign in"),
            ),
            (
                "codex",
                "codex-signin-other",
                fixture!("codex-signin-other"),
                Some("asks how to sign in"),
            ),
            (
                "codex",
                "codex-apikey",
                fixture!("codex-apikey"),
                Some("asks how to sign in"),
            ),
            (
                "codex",
                "codex-trust",
                fixture!("codex-trust"),
                Some("asks whether to trust the folder"),
            ),
            (
                "codex",
                "codex-input",
                fixture!("codex-input"),
                Some("waits for a prompt"),
            ),
            (
                "codex",
                "codex-perm-exec",
                fixture!("codex-perm-exec"),
                Some("asks permission to run `touch agentgate-probe.txt`"),
            ),
            (
                "codex",
                "codex-perm-edit",
                fixture!("codex-perm-edit"),
                Some("asks permission to edit files"),
            ),
            ("codex", "codex-busy", fixture!("codex-busy"), None),
            (
                "gemini",
                "gemini-trust",
                fixture!("gemini-trust"),
                Some("asks whether to trust the folder"),
            ),
            (
                "gemini",
                "gemini-auth",
                fixture!("gemini-auth"),
                Some("asks how to sign in"),
            ),
            (
                "gemini",
                "gemini-apikey",
                fixture!("gemini-apikey"),
                Some("asks how to sign in"),
            ),
            (
                "gemini",
                "gemini-input",
                fixture!("gemini-input"),
                Some("waits for a prompt"),
            ),
            (
                "gemini",
                "gemini-perm-shell",
                fixture!("gemini-perm-shell"),
                Some("asks permission to run `touch agentgate-probe.txt`"),
            ),
            (
                "gemini",
                "gemini-perm-write",
                fixture!("gemini-perm-write"),
                Some("asks permission to apply a change"),
            ),
            ("gemini", "gemini-busy", fixture!("gemini-busy"), None),
            (
                "aider",
                "aider-gitignore",
                fixture!("aider-gitignore"),
                Some("asks a yes/no question"),
            ),
            (
                "aider",
                "aider-nokey-docs",
                fixture!("aider-nokey-docs"),
                Some("asks a yes/no question"),
            ),
            (
                "aider",
                "aider-input",
                fixture!("aider-input"),
                Some("waits for a prompt"),
            ),
            (
                "aider",
                "aider-input-nokey",
                fixture!("aider-input-nokey"),
                Some("waits for a prompt"),
            ),
            (
                "aider",
                "aider-perm-shell",
                fixture!("aider-perm-shell"),
                Some("asks permission to run a command"),
            ),
            (
                "aider",
                "aider-perm-addfile",
                fixture!("aider-perm-addfile"),
                Some("asks a yes/no question"),
            ),
            (
                "aider",
                "aider-perm-newfile",
                fixture!("aider-perm-newfile"),
                Some("asks permission to edit a file"),
            ),
            (
                "aider",
                "aider-perm-allowedit",
                fixture!("aider-perm-allowedit"),
                Some("asks permission to edit a file"),
            ),
            ("aider", "aider-busy", fixture!("aider-busy"), None),
        ];
        let rules = Rules::new(&BTreeMap::new()).expect("rules");
        let mut wrong = Vec::new();
        for (cli, file, text, expected) in cases {
            let screen = Screen::from_text(120, 40, text, Some((*cli).to_owned()));
            let argv = AgentCommand::Argv {
                argv: vec![(*cli).to_owned()],
            };
            let got = rules.for_agent("", &argv).waiting(&screen);
            if got.as_deref() != *expected {
                wrong.push(format!("{file}: expected {expected:?}, got {got:?}"));
            }
            // The shell rules (the CLI is not a shell) and the generic ones never say a
            // permission dialog is a shell prompt.
            let shell = rules.for_agent(
                "",
                &AgentCommand::Argv {
                    argv: vec!["bash".into()],
                },
            );
            assert_ne!(
                shell.waiting(&screen).as_deref(),
                Some("at the shell prompt"),
                "{file}"
            );
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
        let prompt = Screen::from_text(120, 40, fixture!("shell-prompt"), Some("bash".into()));
        let shell = rules.for_agent(
            "",
            &AgentCommand::Argv {
                argv: vec!["bash".into()],
            },
        );
        assert_eq!(
            shell.waiting(&prompt).as_deref(),
            Some("at the shell prompt")
        );
    }

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

    #[test]
    fn every_builtin_pattern_compiles() {
        for name in BUILTIN_NAMES.iter().chain(&["generic"]) {
            let (own, _) = builtin(name).expect("known");
            for (p, unless, reason) in own.iter().chain(COMMON) {
                assert!(Rule::new(p, *unless, reason).is_ok(), "{name}: {p}");
            }
        }
    }

    #[test]
    fn the_command_picks_the_builtin_rules() {
        assert_eq!(default_rules(""), "shell");
        assert_eq!(default_rules("claude --continue"), "claude");
        assert_eq!(default_rules("/usr/local/bin/aider --yes"), "aider");
        assert_eq!(default_rules("make watch"), "generic");
        assert_eq!(default_rules("none"), "generic");
    }

    #[test]
    fn a_shell_waits_at_its_prompt_but_not_while_a_command_runs() {
        let rules = rules_for(Template::default());
        let set = rules.for_template_named("t");
        assert_eq!(
            set.waiting(&screen("$ ls\na b\n$", "bash")).as_deref(),
            Some("at the shell prompt")
        );
        assert_eq!(set.waiting(&screen("$ make\nbuilding", "make")), None);
    }

    #[test]
    fn a_question_on_the_last_line_is_waiting_but_not_one_scrolled_up() {
        let rules = rules_for(Template {
            command: "deploy".into(),
            ..Template::default()
        });
        let set = rules.for_template_named("t");
        let asking = screen("checking\nDeploy to production? [y/N] ", "deploy");
        assert_eq!(
            set.waiting(&asking).as_deref(),
            Some("asks a yes/no question")
        );
        let answered = screen("Deploy to production? [y/N] y\ndeploying", "deploy");
        assert_eq!(set.waiting(&answered), None);
    }

    #[test]
    fn configured_rules_come_first_and_bad_ones_are_refused() {
        let rules = rules_for(Template {
            command: "claude".into(),
            waiting: vec![WaitingRule {
                pattern: "(?i)proceed".into(),
                unless: None,
                reason: "mine".into(),
            }],
            ..Template::default()
        });
        let s = screen("Do you want to proceed?\n❯ 1. Yes", "claude");
        assert_eq!(
            rules.for_template_named("t").waiting(&s).as_deref(),
            Some("mine")
        );
        let bad = Rules::new(&BTreeMap::from([(
            "t".to_owned(),
            Template {
                waiting: vec![WaitingRule {
                    pattern: "(".into(),
                    unless: None,
                    reason: "x".into(),
                }],
                ..Template::default()
            },
        )]))
        .expect_err("refused");
        assert!(
            bad.contains("template 't'") && bad.contains("regular expression"),
            "{bad}"
        );
        let unknown = Rules::new(&BTreeMap::from([(
            "t".to_owned(),
            Template {
                recognize: Some("vim".into()),
                ..Template::default()
            },
        )]))
        .expect_err("refused");
        assert!(unknown.contains("claude, codex"), "{unknown}");
    }

    #[test]
    fn output_makes_working_then_waiting_then_idle() {
        let rules = rules_for(Template::default());
        let set = rules.for_template_named("t");
        let prompt = screen("$ echo hi\nhi\n$", "bash");
        let look = |s| Look {
            screen: Some(s),
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&prompt),
            at(1),
        );
        assert_eq!(first.state, Some(ActivityState::Working));
        assert_eq!(parse(first.last_output_at.as_deref()), Some(at(0)));
        assert_eq!(first.last_line.as_deref(), Some("$"));
        let settled = next(&config(), set, &first, &look(&prompt), at(20));
        assert_eq!(settled.state, Some(ActivityState::Waiting));
        assert_eq!(settled.reason.as_deref(), Some("at the shell prompt"));
        // A screen not read again (no output since) keeps telling what it told.
        let unread = Look {
            screen: None,
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        let still = next(&config(), set, &settled, &unread, at(30));
        assert_eq!(still.state, Some(ActivityState::Waiting));
        assert_eq!(still.reason.as_deref(), Some("at the shell prompt"));
        assert_eq!(still.screen, settled.screen);
        let idle = next(&config(), set, &settled, &look(&prompt), at(61));
        assert_eq!((idle.state, idle.reason), (Some(ActivityState::Idle), None));
    }

    #[test]
    fn a_question_on_the_screen_is_never_hidden_by_recent_output() {
        let rules = rules_for(Template::default());
        let set = rules.for_agent(
            "t",
            &AgentCommand::Argv {
                argv: vec!["claude".into()],
            },
        );
        let dialog = screen(
            "Bash command\n   touch p\n Do you want to proceed?\n ❯ 1. Yes",
            "claude",
        );
        let look = Look {
            screen: Some(&dialog),
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        // The dialog drew a second ago: output, yet the question is what counts.
        let seen = next(&config(), set, &AgentActivity::default(), &look, at(1));
        assert_eq!(seen.state, Some(ActivityState::Waiting));
        assert_eq!(
            seen.reason.as_deref(),
            Some("asks permission to run `touch p`")
        );
        assert_eq!(seen.source, Some(FromScreen));
        assert!(question(&seen).is_some());
    }

    fn hook(
        secs: i64,
        kind: hostctl::api::HookKind,
        tool: Option<&str>,
        detail: Option<&str>,
    ) -> hostctl::api::HookEvent {
        hostctl::api::HookEvent {
            at: at(secs),
            cli: AgentCli::Claude,
            event: String::new(),
            kind,
            tool: tool.map(str::to_owned),
            detail: detail.map(str::to_owned),
            session: None,
        }
    }

    #[test]
    fn hooks_tell_first_until_an_operator_types_after_them() {
        use hostctl::api::HookKind::*;
        let rules = rules_for(Template::default());
        let set = rules.for_agent(
            "t",
            &AgentCommand::Argv {
                argv: vec!["claude".into()],
            },
        );
        let prompt = screen("❯\n? for shortcuts", "claude");
        let events = [
            hook(0, SessionStarted, None, None),
            hook(1, PromptSubmitted, None, Some("RUNCMD")),
            hook(2, ToolStarted, Some("Bash"), Some("touch p")),
            hook(3, PermissionAsked, Some("Bash"), Some("touch p")),
        ];
        let look = |input, hooks| Look {
            screen: Some(&prompt),
            tmux_activity: Some(at(0)),
            input,
            hooks,
        };
        // Asked through the hook, though the screen (read late) shows the prompt.
        let asked = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(None, &events),
            at(4),
        );
        assert_eq!(asked.state, Some(ActivityState::Waiting));
        assert_eq!(
            asked.reason.as_deref(),
            Some("asks permission to run `touch p`")
        );
        assert_eq!(asked.source, Some(Hook));
        // An operator typed after it (an answer no hook reports): the screen tells.
        let answered = next(&config(), set, &asked, &look(Some(at(14)), &events), at(15));
        assert_eq!(answered.source, Some(FromScreen));
        assert_eq!(answered.reason.as_deref(), Some("waits for a prompt"));
        // In a turn: working, until a still screen at the prompt outlasts working_for.
        let working = &events[..3];
        let busy = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(None, working),
            at(4),
        );
        assert_eq!(
            (busy.state, busy.source),
            (Some(ActivityState::Working), Some(Hook))
        );
        let stale = next(&config(), set, &busy, &look(None, working), at(40));
        assert_eq!(
            (stale.state, stale.source),
            (Some(ActivityState::Waiting), Some(FromScreen))
        );
    }

    #[test]
    fn input_ends_idle_and_a_changed_screen_is_output() {
        let rules = rules_for(Template {
            command: "sleep".into(),
            ..Template::default()
        });
        let set = rules.for_template_named("t");
        let blank = screen("", "sleep");
        let look = |s, input| Look {
            screen: Some(s),
            tmux_activity: None,
            input,
            hooks: &[],
        };
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&blank, None),
            at(0),
        );
        let idle = next(&config(), set, &first, &look(&blank, None), at(100));
        assert_eq!(idle.state, Some(ActivityState::Idle));
        let typed = next(&config(), set, &idle, &look(&blank, Some(at(99))), at(100));
        assert_eq!(typed.state, None, "plain running once someone typed");
        let printed = screen("hello", "sleep");
        let out = next(&config(), set, &typed, &look(&printed, None), at(101));
        assert_eq!(out.state, Some(ActivityState::Working));
        assert_eq!(parse(out.last_output_at.as_deref()), Some(at(101)));
    }

    #[test]
    fn a_screen_forgotten_and_read_again_is_not_new_output() {
        let rules = rules_for(Template {
            command: "sleep".into(),
            ..Template::default()
        });
        let set = rules.for_template_named("t");
        let blank = Screen::from_text(80, 24, "", Some("sleep".into()));
        // Known quiet since 0; its screen was forgotten (a host blip); tmux says the last
        // output was at 0.
        let forgotten = AgentActivity {
            last_output_at: Some(format(at(0))),
            ..AgentActivity::default()
        };
        let look = Look {
            screen: Some(&blank),
            tmux_activity: Some(at(0)),
            input: None,
            hooks: &[],
        };
        let again = next(&config(), set, &forgotten, &look, at(100));
        assert_eq!(parse(again.last_output_at.as_deref()), Some(at(0)));
        assert_eq!(again.state, Some(ActivityState::Idle));
    }

    #[test]
    fn a_redraw_at_another_size_is_not_output() {
        let rules = rules_for(Template::default());
        let set = rules.for_template_named("t");
        let small = Screen::from_text(80, 24, "a long line", Some("sleep".into()));
        let big = Screen::from_text(120, 40, "a long\nline", Some("sleep".into()));
        let look = |s| Look {
            screen: Some(s),
            tmux_activity: Some(at(50)),
            input: None,
            hooks: &[],
        };
        let first = next(
            &config(),
            set,
            &AgentActivity::default(),
            &look(&small),
            at(0),
        );
        let resized = next(&config(), set, &first, &look(&big), at(100));
        assert_eq!(resized.last_output_at, first.last_output_at);
        assert_eq!(resized.state, Some(ActivityState::Idle));
    }
}
