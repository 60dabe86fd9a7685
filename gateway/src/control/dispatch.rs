//! The SSH layer's one way into the control commands: a client's command line (`exec`, or
//! `shell` as `top` or the help) run to its exit status.

use std::sync::Arc;

use tracing::Instrument;

use super::{Caller, CommandIo, Parsed, exit, guarded, parse, redacted, run};
use crate::Gateway;

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
                tracing::error!(panic, "a control command failed inside the gateway");
                io.write_err("error: the gateway failed inside this command (see its log)\n")
                    .await;
                exit::FAILED
            }
        }
    }
    .instrument(span)
    .await
}
