//! `diff NAME [--stat] [--json]`: what changed in an agent's workspace since it was created.
//! hostctl works it out on the agent's host (git when the workspace is a repository, else the
//! list of files recorded at creation); its output is streamed to the client as it comes.

use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::{Caller, CommandError, CommandIo, CommandResult, agent_and_host, exit};
use crate::agents::Core;
use crate::hosts::ProcessExit;
use crate::hosts::local::read_all;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  ssh core diff fix-ci\n  ssh core diff fix-ci --stat\n  ssh core diff fix-ci --json | jq '.changes[].path'\n\nIn a git repository: `git status --short`, the untracked files, then `git diff HEAD`.\nElsewhere: the files added (A), changed (M) and removed (D) since the agent was created."
)]
pub struct DiffArgs {
    /// The agent's name.
    pub name: String,
    /// Names and counts only: `git diff --stat`, or no per-file lines.
    #[arg(long)]
    pub stat: bool,
    /// Print one JSON object (kind "git" or "files").
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    core: &Core<'_>,
    shutdown: &CancellationToken,
    caller: &Caller,
    args: DiffArgs,
    io: &mut CommandIo,
) -> CommandResult {
    let (agent, host) = agent_and_host(core, caller, &args.name).await?;
    crate::agents::lifecycle::ready(&agent)?;
    let mut process = host.diff(&args.name, args.stat, args.json).await?;
    let complete = forward_output(
        &mut process.stdout,
        &mut io.stdout,
        &io.closed,
        shutdown,
        &*process.signal,
    )
    .await;
    let _ = io.stdout.flush().await;
    if io.closed.is_cancelled() {
        return Ok(exit::OK);
    }
    if !complete && shutdown.is_cancelled() {
        return Err(CommandError::failed("the gateway is shutting down"));
    }
    let stderr = read_all(process.stderr).await;
    let message = stderr
        .trim()
        .trim_start_matches("hostctl: error: ")
        .to_owned();
    match process.exit.await {
        ProcessExit::Code(0) => Ok(exit::OK),
        ProcessExit::Lost => Err(CommandError::host_lost(&agent.host, &agent.name)),
        ProcessExit::Code(2) => Err(CommandError::usage(message)),
        _ if message.contains("nothing to compare") => Err(CommandError::failed(message).hint(
            "to follow its changes from now on, make it a git repository with a first commit",
        )),
        _ => Err(CommandError::failed(message)),
    }
}

/// Copies the diff's output to `out` until it ends; returns whether it did. When the copy stops
/// first (the client went away, the gateway shuts down, a read or a write failed), the process
/// is sent TERM: left alone, `git diff` would block writing to a pipe nobody reads, and the
/// exit the caller waits for would never come.
async fn forward_output(
    output: &mut (impl AsyncRead + Unpin),
    out: &mut (impl AsyncWrite + Unpin),
    closed: &CancellationToken,
    shutdown: &CancellationToken,
    signal: &(dyn Fn(&str) + Send + Sync),
) -> bool {
    let mut buf = vec![0u8; 32 * 1024];
    let complete = loop {
        let read = tokio::select! {
            read = output.read(&mut buf) => read,
            () = closed.cancelled() => break false,
            () = shutdown.cancelled() => break false,
        };
        match read {
            Ok(0) => break true,
            Ok(n) => {
                if out.write_all(&buf[..n]).await.is_err() {
                    break false;
                }
            }
            Err(_) => break false,
        }
    };
    if !complete {
        signal("TERM");
    }
    complete
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// What `forward_output` does with an output that never ends (a `git diff` still writing)
    /// when the copy is stopped by `stop`; returns the signals sent.
    async fn signals_when_stopped(
        stop: impl FnOnce(&CancellationToken, &CancellationToken),
    ) -> Vec<String> {
        let (mut diff_side, mut output) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            while diff_side.write_all(b"+ a line of the diff\n").await.is_ok() {}
        });
        let (closed, shutdown) = (CancellationToken::new(), CancellationToken::new());
        let sent = Mutex::new(Vec::new());
        let signal = |name: &str| sent.lock().expect("lock").push(name.to_owned());
        let mut out = Vec::new();
        stop(&closed, &shutdown);
        let complete = forward_output(&mut output, &mut out, &closed, &shutdown, &signal).await;
        assert!(!complete);
        drop(output);
        let _ = writer.await;
        sent.into_inner().expect("lock")
    }

    #[tokio::test]
    async fn a_diff_cut_short_by_the_gateways_shutdown_is_terminated() {
        assert_eq!(
            signals_when_stopped(|_, shutdown| shutdown.cancel()).await,
            ["TERM"]
        );
        assert_eq!(
            signals_when_stopped(|closed, _| closed.cancel()).await,
            ["TERM"]
        );
    }

    #[tokio::test]
    async fn a_diff_read_to_its_end_is_left_to_exit() {
        let closed = CancellationToken::new();
        let sent = Mutex::new(Vec::<String>::new());
        let signal = |name: &str| sent.lock().expect("lock").push(name.to_owned());
        let mut out = Vec::new();
        let complete = forward_output(
            &mut &b"diff --git a/x b/x\n"[..],
            &mut out,
            &closed,
            &CancellationToken::new(),
            &signal,
        )
        .await;
        assert!(complete);
        assert_eq!(out, b"diff --git a/x b/x\n");
        assert!(sent.into_inner().expect("lock").is_empty());
    }
}
