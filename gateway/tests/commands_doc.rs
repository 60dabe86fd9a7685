//! docs/commands.md documents every control command, in the parser's order, each with an
//! example and every long flag; and it documents nothing the parser does not have.

use clap::CommandFactory;
use gateway::control::ControlCli;

#[test]
fn commands_md_matches_the_parser() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/commands.md"))
        .expect("docs/commands.md exists");
    let documented: Vec<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("## `"))
        .filter_map(|l| l.strip_suffix('`'))
        .map(str::to_owned)
        .collect();
    let cli = ControlCli::command();
    let mut commands: Vec<String> = cli
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .collect();
    commands.push("help".to_owned());
    assert_eq!(
        documented, commands,
        "the '## `NAME`' headings of docs/commands.md must list every control command, in order"
    );

    for name in &commands {
        let heading = format!("## `{name}`");
        let start = doc.find(&heading).expect("heading");
        let rest = &doc[start + heading.len()..];
        let section = &rest[..rest
            .find("\n## ")
            .or_else(|| rest.find("\n# "))
            .unwrap_or(rest.len())];
        assert!(
            section.contains(&format!("ssh gw {name}")),
            "docs/commands.md: the section of `{name}` has no example `ssh gw {name} ...`"
        );
        if let Some(sub) = cli.find_subcommand(name) {
            for arg in sub.get_arguments().filter_map(|a| a.get_long()) {
                assert!(
                    section.contains(&format!("--{arg}")),
                    "docs/commands.md: the section of `{name}` does not mention --{arg}"
                );
            }
        }
    }
}
