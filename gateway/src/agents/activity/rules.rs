//! The rules that read a screen: whether it shows an agent waiting for the operator (a
//! permission dialog, a yes/no question, its CLI's input prompt, a shell at its prompt), and
//! why. Built-in sets per CLI (checked against screens captured from each CLI,
//! `tests/fixtures/screens/`), plus a template's own `waiting` rules, compiled once.

use std::collections::BTreeMap;

use hostctl::api::{AgentCli, AgentCommand, Screen};
use regex::Regex;

use crate::config::Template;

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
pub(super) const AT_PROMPT: &str = "waits for a prompt";

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

/// A template's status rules that cannot be compiled, naming the template.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRules {
    #[error("template '{template}': recognize = \"{recognize}\" is not one of: {}", BUILTIN_NAMES.join(", "))]
    UnknownRecognize { template: String, recognize: String },
    #[error(
        "template '{template}': waiting rule {pattern:?} is not a valid regular expression: {source}"
    )]
    BadPattern {
        template: String,
        pattern: String,
        source: regex::Error,
    },
}

impl Rules {
    /// Compiles the rules of every template; an invalid pattern or an unknown `recognize`
    /// is an error naming the template.
    pub fn new(templates: &BTreeMap<String, Template>) -> Result<Rules, InvalidRules> {
        let mut sets = BTreeMap::new();
        let mut clis = BTreeMap::new();
        for (name, template) in templates {
            let builtin_name = match &template.recognize {
                Some(r) => {
                    if !BUILTIN_NAMES.contains(&r.as_str()) {
                        return Err(InvalidRules::UnknownRecognize {
                            template: name.clone(),
                            recognize: r.clone(),
                        });
                    }
                    r.clone()
                }
                None => default_rules(&template.command).to_owned(),
            };
            let mut rules = Vec::new();
            for rule in &template.waiting {
                let compiled = Rule::new(&rule.pattern, rule.unless.as_deref(), &rule.reason)
                    .map_err(|source| InvalidRules::BadPattern {
                        template: name.clone(),
                        pattern: rule.pattern.clone(),
                        source,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::WaitingRule;

    fn screen(text: &str, foreground: &str) -> Screen {
        Screen::from_text(80, 24, text, Some(foreground.to_owned()))
    }

    pub(crate) fn rules_for(template: Template) -> Rules {
        Rules::new(&BTreeMap::from([("t".to_owned(), template)])).expect("rules compile")
    }

    impl Rules {
        pub(crate) fn for_template_named(&self, template: &str) -> &RuleSet {
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
                include_str!(concat!(
                    "../../../../tests/fixtures/screens/",
                    $file,
                    ".txt"
                ))
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
        .expect_err("refused")
        .to_string();
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
        .expect_err("refused")
        .to_string();
        assert!(unknown.contains("claude, codex"), "{unknown}");
    }
}
