//! Fuzzes both ends of hostctl's JSON contract (`hostctl::api`) with the same bytes:
//!
//! - hostctl's side: its stdin, read as UTF-8 text (`CreateInput` for `hostctl create --json`,
//!   `StartInput` for `hostctl start --secrets-on-stdin`, `SnapshotRequest` for
//!   `hostctl snapshot`), and an `agents/<name>/meta.json`
//!   (`Files::read_meta`, decoded from bytes), then the checks hostctl runs on a request (the
//!   name, the environment's keys). A bare `CreateRequest` too: the gateway stores one per
//!   agent and reads it back.
//! - the gateway's side: every answer it decodes with `gateway::hosts::decode_reply` (lossy
//!   UTF-8, trimmed), on success (exit 0: the verb's type) and on failure (exit 1: the
//!   `ErrorReply` envelope), then what it makes of an agent a host reports (the reconciler's
//!   `observed` and `adopted`).
//!
//! Beyond "no panic", every type that decodes must survive a round trip: encoded and decoded
//! again it is the same value, and encodes to the same text. The gateway relies on this when it
//! stores a `CreateRequest` in its database and reads it back, and when it hands a stored
//! request to another host (`clone`, `migrate`).

#![no_main]

use std::fmt::Debug;

use gateway::agents::reconcile::{adopted, observed};
use gateway::hosts::{HostError, ProcessExit, decode_reply};
use hostctl::api::{
    AgentCommand, AgentInfo, AgentMeta, CreateInput, CreateRequest, ErrorReply, SnapshotMeta,
    SnapshotRemoved, SnapshotRequest, StartInput, TermSize, Unpacked, VersionInfo,
    WorkspaceChanges, WorkspaceDigest, validate_agent_name, validate_env_key, validate_snapshot_id,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    hostctl_side(data);
    gateway_side(data);
});

fn hostctl_side(data: &[u8]) {
    // hostctl reads stdin with read_to_string: input that is not UTF-8 is refused before it is
    // decoded.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(input) = serde_json::from_str::<CreateInput>(text) {
            check_request(&input.request);
            round_trip(&input);
        }
        if let Ok(input) = serde_json::from_str::<StartInput>(text) {
            round_trip(&input);
        }
        if let Ok(request) = serde_json::from_str::<SnapshotRequest>(text) {
            let _ = validate_snapshot_id(&request.id);
            round_trip(&request);
        }
        if let Ok(request) = serde_json::from_str::<CreateRequest>(text) {
            check_request(&request);
            round_trip(&request);
        }
    }
    if let Ok(meta) = serde_json::from_slice::<AgentMeta>(data) {
        check_request(&meta.request);
        round_trip(&meta);
    }
}

/// What hostctl checks on a request before it acts on it (`validate_request` in verbs.rs,
/// whose public parts are these), and what it renders of it.
fn check_request(request: &CreateRequest) {
    let _ = validate_agent_name(&request.name);
    for key in request.env.keys() {
        let _ = validate_env_key(key);
    }
    let _ = request.command.display();
    if let Some(command) = &request.restart_command {
        let _ = command.display();
    }
}

fn gateway_side(data: &[u8]) {
    if let Some(info) = answer::<AgentInfo>("info", data) {
        check_agent(&info);
    }
    if let Some(list) = answer::<Vec<AgentInfo>>("list", data) {
        list.iter().for_each(check_agent);
    }
    answer::<VersionInfo>("version", data);
    answer::<WorkspaceDigest>("digest", data);
    answer::<Unpacked>("unpack", data);
    if let Some(snapshot) = answer::<SnapshotMeta>("snapshot", data) {
        check_request(&snapshot.spec);
    }
    answer::<SnapshotRemoved>("snapshot-remove", data);
    // `diff --json` is passed on to the client as it is; its shape is the contract's too.
    answer::<WorkspaceChanges>("diff", data);
    answer::<TermSize>("size", data);
    answer::<AgentCommand>("command", data);
    // `destroy`, `discard` and `send` answer an object the gateway does not look into.
    let _ = decode_reply::<serde_json::Value>("h", "destroy", ProcessExit::Code(0), data, b"");

    // A failing verb: the error envelope on stdout, the bytes again as stderr (which the
    // gateway quotes, truncated, when stdout is not an envelope).
    match decode_reply::<serde_json::Value>("h", "info", ProcessExit::Code(1), data, data) {
        Err(HostError::NotFound(message)) | Err(HostError::Rejected { message, .. }) => {
            let reply: ErrorReply = serde_json::from_str(String::from_utf8_lossy(data).trim())
                .expect("decode_reply found an ErrorReply in this stdout");
            assert_eq!(reply.error.message, message);
            round_trip(&reply);
        }
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(value) => panic!("a failed verb decoded as a success: {value:?}"),
    }
}

/// Decodes `data` as the successful answer of `what` the way the gateway does, and checks
/// that what decodes round-trips.
fn answer<T>(what: &str, data: &[u8]) -> Option<T>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match decode_reply::<T>("h", what, ProcessExit::Code(0), data, b"") {
        Ok(value) => {
            round_trip(&value);
            Some(value)
        }
        Err(e) => {
            let _ = e.to_string();
            None
        }
    }
}

/// What the gateway does with an agent a host reports: its status for the store, or a new
/// record when it adopts an agent it did not know.
fn check_agent(info: &AgentInfo) {
    check_request(&info.meta.request);
    let _ = observed(info);
    let record = adopted("h", info);
    // The store keeps the request as JSON and reads it back.
    round_trip(&record.spec);
}

/// Encoded and decoded again, `value` is the same, and encodes to the same text.
fn round_trip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let text = serde_json::to_string(value).expect("a decoded value encodes");
    let again: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{text} does not decode again: {e} (from {value:?})"));
    assert_eq!(&again, value, "round trip through {text}");
    let text_again = serde_json::to_string(&again).expect("a decoded value encodes");
    assert_eq!(text_again, text);
}
