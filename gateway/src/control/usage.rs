//! `usage [--sort cpu|mem|disk] [--json]`: what each agent the caller may see uses of its
//! host (CPU, memory, disk), busiest first, as its host measured it (`agents::usage`).

use std::cmp::Ordering;

use clap::{Args, ValueEnum};
use hostctl::api::AgentUsage;
use serde::Serialize;

use super::output::{UsageJson, json_text, status_text, table, to_json};
use super::{Caller, CommandIo, CommandResult, exit};
use crate::agents::Core;
use crate::store::AgentRecord;
use hostctl::disk::size_short;

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// What to sort by, largest first (agents whose host could not say come last).
    #[arg(long, value_enum, default_value_t = SortKey::Cpu, value_name = "KEY")]
    pub sort: SortKey,
    /// Print a JSON array.
    #[arg(long)]
    pub json: bool,
}

/// What `--sort` takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SortKey {
    /// CPU percent.
    Cpu,
    /// Resident memory.
    Mem,
    /// The workspace's disk use.
    Disk,
}

/// One agent in `usage --json`.
#[derive(Serialize)]
struct UsageRowJson<'a> {
    name: &'a str,
    host: &'a str,
    status: &'static str,
    /// Absent when its host could not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageJson>,
}

pub async fn run(
    core: &Core<'_>,
    caller: &Caller,
    args: UsageArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let agents = crate::agents::access::agents(core.store, &caller.operator).await?;
    let measured = crate::agents::usage::of_agents(core, &agents).await;
    for (host, why) in &measured.not_answered {
        io.write_err(&format!(
            "warning: host '{host}' could not say what its agents use ({why}); they are shown \
             without figures\n"
        ))
        .await;
    }
    let mut rows: Vec<(&AgentRecord, Option<&AgentUsage>)> = agents
        .iter()
        .map(|a| (a, measured.usage.get(&a.name)))
        .collect();
    rows.sort_by(|a, b| order(args.sort, a.1, b.1).then_with(|| a.0.name.cmp(&b.0.name)));
    let text = if args.json {
        json_text(&serde_json::Value::Array(
            rows.iter()
                .map(|(agent, usage)| {
                    to_json(&UsageRowJson {
                        name: &agent.name,
                        host: &agent.host,
                        status: agent.shown_status(),
                        usage: usage.map(UsageJson::of),
                    })
                })
                .collect(),
        ))
    } else {
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|(agent, usage)| {
                let figures = match usage {
                    Some(u) => vec![
                        u.cpu_percent
                            .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}")),
                        size_short(u.memory_bytes),
                        u.disk_bytes
                            .map_or_else(|| "unknown".to_owned(), size_short),
                        u.processes.to_string(),
                    ],
                    None => vec!["?".to_owned(); 4],
                };
                [agent.name.clone(), agent.host.clone(), status_text(agent)]
                    .into_iter()
                    .chain(figures)
                    .collect()
            })
            .collect();
        table(
            &["NAME", "HOST", "STATUS", "CPU%", "MEM", "DISK", "PROCS"],
            &cells,
        )
    };
    io.write_out(&text).await;
    Ok(exit::OK)
}

/// Largest first by `key`; an agent without the figure (its host did not say, or its disk
/// was not counted) after every one with it. Pure.
fn order(key: SortKey, a: Option<&AgentUsage>, b: Option<&AgentUsage>) -> Ordering {
    let figure = |u: Option<&AgentUsage>| -> Option<f64> {
        let u = u?;
        #[expect(clippy::cast_precision_loss, reason = "only compared")]
        match key {
            SortKey::Cpu => Some(u.cpu_percent.unwrap_or(0.0)),
            SortKey::Mem => Some(u.memory_bytes as f64),
            SortKey::Disk => u.disk_bytes.map(|b| b as f64),
        }
    };
    match (figure(a), figure(b)) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(cpu: f64, mem: u64, disk: Option<u64>) -> AgentUsage {
        AgentUsage {
            cpu_percent: Some(cpu),
            memory_bytes: mem,
            disk_bytes: disk,
            ..AgentUsage::default()
        }
    }

    #[test]
    fn each_key_sorts_largest_first_and_unknown_last() {
        let a = usage(90.0, 10, Some(1));
        let b = usage(5.0, 500, None);
        let c = usage(40.0, 50, Some(900));
        let all = [Some(&a), Some(&b), None, Some(&c)];
        let sorted = |key| {
            let mut v = all.to_vec();
            v.sort_by(|x, y| order(key, *x, *y));
            v
        };
        assert_eq!(sorted(SortKey::Cpu), [Some(&a), Some(&c), Some(&b), None]);
        assert_eq!(sorted(SortKey::Mem), [Some(&b), Some(&c), Some(&a), None]);
        // b's disk was not counted: with the agents whose host did not say.
        assert_eq!(sorted(SortKey::Disk)[..2], [Some(&c), Some(&a)]);
    }

    #[test]
    fn a_bad_sort_word_is_refused_with_the_words_it_takes() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: UsageArgs,
        }
        let Err(e) = Cli::try_parse_from(["usage", "--sort", "ram"]) else {
            panic!("--sort ram was accepted");
        };
        let text = e.to_string();
        assert!(
            text.contains("'ram'") && text.contains("cpu, mem, disk"),
            "{text}"
        );
        let ok = Cli::try_parse_from(["usage"]).expect("no flags");
        assert_eq!(ok.args.sort, SortKey::Cpu);
    }
}
