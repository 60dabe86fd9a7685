//! hostctl's one error type. A failed child process keeps its argv, exit status and stderr,
//! so that a message on the gateway can say exactly what went wrong on the host.

use std::path::PathBuf;

use crate::api::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no agent named '{0}' on this host")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{what} failed: `{argv}` {status}{}", stderr_suffix(.stderr))]
    Command {
        what: &'static str,
        argv: String,
        status: String,
        stderr: String,
    },
    #[error("could not run `{program}`: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
    /// What was asked needs something this host does not have; the message starts with
    /// "this host" (see [`ErrorCode::HostLacks`]).
    #[error("{0}")]
    HostLacks(String),
}

fn stderr_suffix(stderr: &str) -> String {
    let trimmed = stderr.trim();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!(": {trimmed}")
    }
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::InvalidInput(_) => ErrorCode::InvalidInput,
            Error::Command { .. } | Error::Spawn { .. } | Error::Io { .. } | Error::Failed(_) => {
                ErrorCode::Failed
            }
            Error::HostLacks(_) => ErrorCode::HostLacks,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
