//! The gateway's domain values: plain data that the store keeps, the core decides on and the
//! routes print, each with one spelling of its words and of its text.
//!
//! Nothing here does I/O or knows SQL (the store maps these values to columns in
//! `store::columns`) or the shape of any output (the commands build theirs in `control`).

mod timestamp;

pub use timestamp::{BadTimestamp, Timestamp};
