//! Workspaces that move between two hosts: a copy for `clone` and `migrate`
//! ([`copy_workspace`]) and a snapshot restored onto another host ([`restore_snapshot`]),
//! streamed through the gateway (`hostctl pack | hostctl unpack`) with backpressure, each
//! checked by its digest on both sides, and a copy that failed discarded.

use hostctl::api::{Call, ErrorCode, Unpacked, WorkspaceDigest};

use super::{Host, HostError, PipedProcess, ProcessExit, decode_reply, local};

/// Copies agent `src`'s workspace on `from` into a new workspace unpacked for `dst` on `to`
/// (`hostctl pack | hostctl unpack`, streamed through the gateway with backpressure), then
/// checks that both sides have the same digest. On any failure a copy that was made is
/// discarded; the source, and anything already at the destination, are never touched.
pub async fn copy_workspace(
    from: &Host,
    src: &str,
    to: &Host,
    dst: &str,
    operation: &str,
) -> Result<WorkspaceDigest, HostError> {
    let (streamed, made, _) = stream_workspace(
        from,
        &Call::Pack {
            name: src.to_owned(),
        },
        &format!("packing the workspace of '{src}'"),
        to,
        &Call::Unpack {
            name: dst.to_owned(),
            operation: Some(operation.to_owned()),
        },
        dst,
    )
    .await;
    let verified = match streamed {
        Err(e) => Err(e),
        Ok(()) => match tokio::join!(from.digest(src), to.digest(dst)) {
            (Ok(a), Ok(b)) if a == b => Ok(b),
            (Ok(a), Ok(b)) => Err(HostError::Rejected {
                code: ErrorCode::Failed,
                message: format!(
                    "the copy does not match the workspace of '{src}' ({} entries, {} bytes there; {} entries, {} bytes copied): it changed during the copy, or the copy is damaged",
                    a.entries, a.bytes, b.entries, b.bytes
                ),
            }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
    };
    if verified.is_err() && made {
        let _ = to.discard(dst, Some(operation)).await;
    }
    verified
}

/// Makes a new workspace for `dst` on `to` from snapshot `id` on `from` (`hostctl
/// snapshot-read | hostctl unpack-snapshot`, streamed through the gateway). The receiving
/// hostctl keeps the bytes aside and unpacks them only when they are `size` bytes with SHA-256
/// `sha256`, as recorded when the snapshot was taken (more is refused as it arrives). On any failure a workspace
/// that was made is discarded.
pub async fn restore_snapshot(
    from: &Host,
    id: &str,
    sha256: &str,
    size: u64,
    to: &Host,
    dst: &str,
    operation: &str,
) -> Result<(), HostError> {
    let (streamed, made, source_failure) = stream_workspace(
        from,
        &Call::SnapshotRead { id: id.to_owned() },
        &format!("reading snapshot '{id}'"),
        to,
        &Call::UnpackSnapshot {
            name: dst.to_owned(),
            sha256: sha256.to_owned(),
            size,
            operation: Some(operation.to_owned()),
        },
        dst,
    )
    .await;
    if streamed.is_err() && made {
        let _ = to.discard(dst, Some(operation)).await;
    }
    match (streamed, source_failure) {
        // The bytes did not match because the sending side failed (a missing archive): that
        // failure is the one to tell.
        (Err(HostError::Rejected { message, .. }), Some(source)) if message.contains("damaged") => {
            Err(source)
        }
        (streamed, _) => streamed,
    }
}

/// Streams the output of call `source` on `from` into call `sink` on `to` (which makes
/// workspaces/DST there), with backpressure. Returns whether it all went well,
/// whether the sink made the workspace (so a caller that fails later can discard it), and the
/// source's own failure, if it failed.
async fn stream_workspace(
    from: &Host,
    source: &Call,
    source_what: &str,
    to: &Host,
    sink: &Call,
    dst: &str,
) -> (Result<(), HostError>, bool, Option<HostError>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The receiving side first: if it cannot be reached, nothing is packed for nothing.
    let sink_process = match to.piped(sink, false).await {
        Ok(process) => process,
        Err(e) => return (Err(e), false, None),
    };
    let PipedProcess {
        stdin: mut into,
        stdout: mut reply,
        stderr: unpack_err,
        exit: unpack_exit,
        ..
    } = sink_process;
    let answer = async move {
        let mut out = Vec::new();
        let _ = reply.read_to_end(&mut out).await;
        out
    };
    let source = match from.transfer_source(source).await {
        Ok(process) => process,
        Err(e) => {
            // unpack gets an empty stream, fails, and removes what it made.
            let _ = into.shutdown().await;
            drop(into);
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                futures::future::join3(answer, local::read_all(unpack_err), unpack_exit),
            )
            .await;
            return (Err(e), false, None);
        }
    };
    let PipedProcess {
        stdout: mut tar,
        stderr: pack_err,
        exit: pack_exit,
        signal: pack_signal,
        ..
    } = source;
    // The stream is pumped until it ends or until unpack exits, whichever comes first: an
    // unpack that refused (or failed) reads no more, and a pump into it would wait forever.
    let transfer = async {
        let pump = async move {
            let copied = tokio::io::copy(&mut tar, &mut into).await;
            // EOF, then the pipe or channel itself goes: a local child sees EOF only then.
            let _ = into.shutdown().await;
            drop(into);
            copied
        };
        tokio::pin!(pump);
        tokio::pin!(unpack_exit);
        tokio::select! {
            copied = &mut pump => {
                if copied.is_err() {
                    pack_signal("TERM");
                }
                (Some(copied), unpack_exit.await, false)
            }
            exit = &mut unpack_exit => {
                // Done early (the digests will tell whether it got everything), or refused:
                // then the rest of the stream is not wanted.
                let refused = exit != ProcessExit::Code(0);
                if refused {
                    pack_signal("TERM");
                }
                (None, exit, refused)
            }
        }
    };
    let ((copied, unpack_exit, source_stopped), answer, unpack_err, pack_err) = tokio::join!(
        transfer,
        answer,
        local::read_all(unpack_err),
        local::read_all(pack_err)
    );
    let pack_exit = pack_exit.await;
    let unpacked: Result<Unpacked, HostError> = match unpack_exit {
        // What unpack did is unknown: what it may have made is left for an operator, since
        // the directory may as well be one that was there before.
        ProcessExit::Lost => Err(HostError::Unreachable {
            host: to.name().to_owned(),
            reason: format!(
                "the connection was lost during the copy; a partial copy may be left in workspaces/{dst} under the host's $AGENTGATE_HOME, marked as this operation's (remove it there with: hostctl discard {dst})"
            ),
        }),
        exit => decode_reply(to.name(), sink.verb(), exit, &answer, unpack_err.as_bytes()),
    };
    let made = unpacked.is_ok();
    // A source the gateway stopped (unpack refused what it sent) did not fail on its own.
    let source_failure =
        (pack_exit != ProcessExit::Code(0) && !source_stopped).then(|| HostError::Rejected {
            code: ErrorCode::Failed,
            message: format!(
                "{source_what} on host '{}' failed: {}",
                from.name(),
                pack_err.trim().trim_start_matches("hostctl: error: ")
            ),
        });
    // unpack's own answer says most about what went wrong; then the source; then the stream.
    let failure = match (unpacked, copied) {
        (Err(e), _) => Some(e),
        _ if pack_exit != ProcessExit::Code(0) => Some(HostError::Rejected {
            code: ErrorCode::Failed,
            message: format!(
                "{source_what} on host '{}' failed: {}",
                from.name(),
                pack_err.trim().trim_start_matches("hostctl: error: ")
            ),
        }),
        (Ok(_), Some(Err(e))) => Some(HostError::Rejected {
            code: ErrorCode::Failed,
            message: format!("{source_what} broke off: {e}"),
        }),
        (Ok(_), _) => None,
    };
    match failure {
        Some(e) => (Err(e), made, source_failure),
        None => (Ok(()), made, source_failure),
    }
}
