//! The core of what happens to agents, below both routes. It holds, for now, the operations
//! journal ([`journal`]: multi-step changes of an agent's life that a gateway's death cannot
//! leave half done) and the lookup of the secrets an agent gets ([`secrets`]).

mod error;

pub mod access;
pub mod activity;
pub mod deliver;
pub mod hooks;
pub mod journal;
pub mod lifecycle;
pub mod secrets;

pub use error::{Error, Result};
