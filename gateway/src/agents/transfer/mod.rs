//! An agent's workspace carried elsewhere: [`clone`] (a new agent with another's settings and
//! a copy of its workspace), [`migrate`] (the agent itself moved to another host),
//! [`snapshot`] (its workspace and settings kept on its host: take, list, remove) and
//! [`restore`] (a new agent made from a snapshot).
//!
//! Each takes a typed request and answers with what it did or an [`Error`](super::Error);
//! the routes print. The workspaces themselves travel through `hosts::transfer`; each
//! operation that makes or moves an agent is journaled (`agents::journal`), and each one that
//! reads an agent's workspace holds that agent's turn (`agents::locks`).

pub mod clone;
pub mod migrate;
pub mod restore;
pub mod snapshot;
