//! Enrolling a host (`host add`): the SSH connection with its key pinned or trusted on first
//! use, a probe of what the host is, tmux required, and hostctl installed when missing or of
//! another version. Beside the transport it uses; the control command validates the request,
//! records the host and prints.

use std::path::PathBuf;
use std::time::Duration;

use hostctl::api::VersionInfo;
use russh::keys::PublicKey;
use tokio_util::task::TaskTracker;

use super::install::{self, InstallError, Probe};
use super::leg::{self, KeyCheck, LegSettings, Target};
use crate::hosts::HostError;

/// What enrolling a host uses.
pub struct Enrolment<'a> {
    pub leg: LegSettings,
    pub tasks: &'a TaskTracker,
    pub call_timeout: Duration,
    pub create_timeout: Duration,
    /// The hostctl built beside this gateway, copied to hosts of the same platform.
    pub companion: PathBuf,
}

/// A host ready to be recorded: what it said about itself, and its key.
pub struct Prepared {
    pub host_key: PublicKey,
    /// The key as the record stores it (OpenSSH text).
    pub host_key_line: String,
    pub probe: Probe,
    /// tmux's version line.
    pub tmux: String,
    pub hostctl: VersionInfo,
    /// Whether hostctl was copied now (else it was there already).
    pub installed: bool,
}

/// Why a host could not be enrolled; the control command says what to do about each.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error(transparent)]
    Connect(HostError),
    #[error("cannot ask {target} what it is: {source}")]
    Probe {
        target: String,
        source: InstallError,
    },
    #[error("tmux is not installed on {target}")]
    NoTmux { target: String },
    #[error("{0}")]
    Install(InstallError),
    #[error("cannot encode the host key: {0}")]
    HostKey(String),
}

/// Connects to `target`, checks it can run agents and installs hostctl there. Nothing is
/// recorded: the caller records the host once this succeeds.
pub async fn prepare(
    e: &Enrolment<'_>,
    target: &Target,
    check: KeyCheck,
) -> Result<Prepared, EnrolError> {
    let conn = leg::connect(target, check, &e.leg)
        .await
        .map_err(EnrolError::Connect)?;
    let prepared = on_connection(e, target, &conn).await;
    let _ = conn
        .handle
        .disconnect(russh::Disconnect::ByApplication, "", "en")
        .await;
    prepared
}

async fn on_connection(
    e: &Enrolment<'_>,
    target: &Target,
    conn: &leg::Connection,
) -> Result<Prepared, EnrolError> {
    let probe = install::probe(conn, e.tasks, e.call_timeout)
        .await
        .map_err(|source| EnrolError::Probe {
            target: target.display(),
            source,
        })?;
    let Some(tmux) = probe.tmux.clone() else {
        return Err(EnrolError::NoTmux {
            target: target.display(),
        });
    };
    let (hostctl, installed) =
        install::ensure_hostctl(conn, e.tasks, &probe, &e.companion, e.create_timeout)
            .await
            .map_err(EnrolError::Install)?;
    let host_key_line = conn
        .host_key
        .to_openssh()
        .map_err(|e| EnrolError::HostKey(e.to_string()))?;
    Ok(Prepared {
        host_key: conn.host_key.clone(),
        host_key_line,
        probe,
        tmux,
        hostctl,
        installed,
    })
}
