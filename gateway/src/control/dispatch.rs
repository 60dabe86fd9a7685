//! The SSH layer's one way into the control commands: a client's command line (`exec`, or
//! `shell` as `top` or the help) run to its exit status.

use std::sync::Arc;

use tracing::Instrument;

use super::parse::{ControlCommand, Parsed, parse, redacted};
use super::*;
use crate::Gateway;
use crate::agents::audit::{end_record, start_record};

/// Runs one command line from a client (`exec`, or `shell` as `top` or the help) to its exit
/// status: parsed, run and recorded, or printed (help, a usage error). A bug inside the
/// command still gives the client an answer and a status. The SSH layer's one way into the
/// control commands.
pub async fn dispatch(gw: &Arc<Gateway>, caller: &Caller, line: &str, io: &mut CommandIo) -> u32 {
    let span = tracing::info_span!("command", line = %redacted(line));
    async {
        let ran = guarded(async {
            match parse(line) {
                Parsed::Run(command) => run(gw, caller, line, *command, io).await,
                Parsed::Print {
                    text,
                    status,
                    to_stderr,
                } => {
                    if to_stderr {
                        io.write_err(&text).await;
                    } else {
                        io.write_out(&text).await;
                    }
                    status
                }
            }
        })
        .await;
        match ran {
            Ok(status) => status,
            Err(panic) => {
                tracing::error!(panic = %panic, "a control command failed inside the gateway");
                io.write_err("error: the gateway failed inside this command (see its log)\n")
                    .await;
                exit::FAILED
            }
        }
    }
    .instrument(span)
    .await
}

/// Runs one parsed command to completion and records it in the audit trail.
pub(super) async fn run(
    gw: &Arc<Gateway>,
    caller: &Caller,
    line: &str,
    command: ControlCommand,
    io: &mut CommandIo,
) -> u32 {
    if !command.reads_stdin() {
        io.stdin.close();
    }
    let agent = command.agent().map(str::to_owned);
    let core = gw.core();
    // While a command about an agent runs (`logs -f`, `wait`, `attach`...), the connection
    // reaches that agent: taking it back ends the connection.
    let _entered = agent
        .as_deref()
        .map(|name| gw.live.enter(caller.connection, name));
    // Commands that may take access back: the connections they no longer allow end.
    let may_take_back = matches!(
        command,
        ControlCommand::Unshare(_) | ControlCommand::Key(_) | ControlCommand::Operator(_)
    );
    // In the trail from its start: a command the gateway dies during is there too.
    let started = start_record(
        &core,
        caller,
        crate::model::EventKind::Command,
        agent.clone(),
        &redacted(line),
    )
    .await;
    let result = match command {
        ControlCommand::Create(args) => create::run(&core, &gw.config, caller, args, io).await,
        ControlCommand::List(args) => list::run(gw, caller, args, io).await,
        ControlCommand::Info(args) => info::run(&core, caller, args, io).await,
        ControlCommand::Attach(args) => attach::run(&core, &gw.live, caller, &args.name, io).await,
        ControlCommand::Top => top::run(gw, caller, io).await,
        ControlCommand::Stop(t) => many::each(&core, caller, &t, Each::Stop, io).await,
        ControlCommand::Start(t) => many::each(&core, caller, &t, Each::Start, io).await,
        ControlCommand::Tag(args) => tag::tag(&core, caller, args, io).await,
        ControlCommand::Untag(args) => tag::untag(&core, caller, args, io).await,
        ControlCommand::Restart(args) => {
            let _turn = core.locks.hold(&args.name).await;
            restart::run(&core, caller, &args.name, io).await
        }
        // These hold the agent's turn themselves (`agents::transfer`).
        ControlCommand::Clone(args) => clone::run(&core, caller, args, io).await,
        ControlCommand::Migrate(args) => migrate::run(&core, caller, args, io).await,
        ControlCommand::Snapshot(args) => snapshot::run(&core, caller, args, io).await,
        ControlCommand::Destroy(args) => {
            let op = Each::Destroy { force: args.force };
            many::each(&core, caller, &args.targets, op, io).await
        }
        ControlCommand::Logs(args) => logs::run(&core, &gw.shutdown, caller, args, io).await,
        ControlCommand::Diff(args) => diff::run(&core, &gw.shutdown, caller, args, io).await,
        ControlCommand::Usage(args) => usage::run(&core, caller, args, io).await,
        ControlCommand::Send(args) => send::run(&core, caller, args, io).await,
        ControlCommand::Approve(args) => answer::run(&core, caller, args, true, io).await,
        ControlCommand::Deny(args) => answer::run(&core, caller, args, false, io).await,
        ControlCommand::Wait(args) => wait::run(&core, &gw.shutdown, caller, args, io).await,
        ControlCommand::Watch(args) => {
            watch::run(&gw.store, &gw.shutdown_accepting, caller, args, io).await
        }
        ControlCommand::Notify(args) => {
            notify::run(&gw.store, &gw.notifier, caller, args, io).await
        }
        ControlCommand::Events(args) => {
            events::run(&gw.store, &gw.shutdown_accepting, caller, args, io).await
        }
        ControlCommand::Share(args) => share::share(&core, caller, args, io).await,
        ControlCommand::Unshare(args) => share::unshare(&core, caller, args, io).await,
        ControlCommand::Key(args) => key::run(&gw.store, &gw.config, caller, args, io).await,
        ControlCommand::Secret(args) => secret::run(&gw.store, caller, args, io).await,
        ControlCommand::Operator(args) => {
            key::run_operator(&gw.store, &gw.live, caller, args, io).await
        }
        ControlCommand::Host(args) => host::run(gw, caller, args, io).await,
        ControlCommand::SshConfig(args) => {
            ssh_config::run(&gw.config, &gw.store, caller, args, io).await
        }
        ControlCommand::Whoami(args) => whoami::run(caller, args, io).await,
        ControlCommand::Version(args) => version::run(&gw.hosts, args, io).await,
        ControlCommand::Doctor(args) => {
            doctor::run(&gw.hosts, &gw.store, &gw.tailnet, args, io).await
        }
    };
    let (status, message) = match result {
        Ok(status) => (status, String::new()),
        Err(e) => {
            io.write_err(&e.render()).await;
            (e.status, e.message)
        }
    };
    end_record(&core, started, status, &message).await;
    if may_take_back && status == exit::OK {
        // The caller's own connection finishes its command; the next sweep or channel ends
        // it if it lost its access.
        crate::agents::live::revalidate(gw, Some(caller.connection)).await;
    }
    status
}

/// A command that panicked (a bug), with the panic's message.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Panicked(String);

/// Runs `command` to completion; a panic inside it (a bug) becomes its message, so the caller
/// can still answer the client.
async fn guarded(command: impl std::future::Future<Output = u32>) -> Result<u32, Panicked> {
    use futures::FutureExt;
    std::panic::AssertUnwindSafe(command)
        .catch_unwind()
        .await
        .map_err(|payload| {
            payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned())
        })
        .map_err(Panicked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::panic)]
    async fn a_command_that_panics_still_ends_with_a_message() {
        assert_eq!(guarded(async { 3 }).await, Ok(3));
        let failed = guarded(async {
            if std::hint::black_box(true) {
                panic!("boom in a command");
            }
            0
        })
        .await;
        assert_eq!(failed, Err(Panicked("boom in a command".to_owned())));
    }
}
