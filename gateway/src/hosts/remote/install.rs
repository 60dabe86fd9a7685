//! Setting a host up (`host add`) and diagnosing it (`host check`): what the host is, whether
//! it has tmux, and hostctl installed or upgraded by copying the gateway's companion binary.

use std::path::Path;
use std::time::Duration;

use hostctl::api::{Call, HostProbe, VersionInfo};
use tokio_util::task::TaskTracker;

use super::leg::{self, Connection, Slot};
use super::quote_words;
use crate::hosts::{HostError, ProcessExit};

/// What a host says about itself: the probe and its reader are part of hostctl's contract.
pub use hostctl::api::HostProbe as Probe;

/// Why a host could not be asked what it is, or hostctl could not be put on it. Its words
/// are what `host add` and `host check` print.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("the probe failed ({exit:?}): {stderr}")]
    ProbeFailed { exit: ProcessExit, stderr: String },
    #[error("{0}")]
    BadProbe(String),
    #[error("cannot read {path}: {source}")]
    Companion {
        path: String,
        source: std::io::Error,
    },
    #[error("copying hostctl to {path} failed: {stderr}")]
    CopyFailed { path: String, stderr: String },
    #[error(
        "the host is {host}, and this gateway's hostctl is built for {own}: build hostctl {version} for {host} \
         (cargo build --release -p hostctl --target ...) and copy it to {path} on the host, \
         then try again",
        version = crate::VERSION
    )]
    OtherPlatform {
        host: String,
        own: String,
        path: String,
    },
    #[error(
        "hostctl at {path} speaks API {api}, the gateway {}",
        hostctl::api::API_VERSION
    )]
    OtherApi { path: String, api: u32 },
    #[error("hostctl at {path} does not run after being copied")]
    DoesNotRun { path: String },
}

/// The platform this gateway (and its companion hostctl) was built for.
pub fn own_platform() -> String {
    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Runs one command line (its words quoted) on a fresh channel of `conn`.
pub async fn run(
    conn: &Connection,
    tasks: &TaskTracker,
    words: &[&str],
    stdin: Option<&[u8]>,
    limit: Duration,
) -> Result<(ProcessExit, String, String), HostError> {
    let host = || conn.host_name().to_owned();
    let line = quote_words(words.iter().copied()).ok_or_else(|| HostError::Protocol {
        host: host(),
        what: "a command".into(),
        detail: "NUL byte".into(),
    })?;
    let call = async {
        let channel = conn.handle.channel_open_session().await?;
        leg::exec_collect(channel, Slot::none(), tasks, &line, stdin, 1024 * 1024).await
    };
    match tokio::time::timeout(limit, call).await {
        Ok(Ok((exit, out, err))) => Ok((
            exit,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        )),
        Ok(Err(e)) => Err(HostError::Unreachable {
            host: host(),
            reason: format!("cannot run a command: {e}"),
        }),
        Err(_) => Err(HostError::Timeout {
            host: host(),
            what: words.first().copied().unwrap_or("a command").to_owned(),
            seconds: limit.as_secs(),
        }),
    }
}

/// Asks the host what it is, where agents go and whether tmux is there.
pub async fn probe(
    conn: &Connection,
    tasks: &TaskTracker,
    limit: Duration,
) -> Result<Probe, InstallError> {
    let (exit, out, err) = run(conn, tasks, &HostProbe::argv(), None, limit).await?;
    if exit != ProcessExit::Code(0) {
        return Err(InstallError::ProbeFailed {
            exit,
            stderr: err.trim().to_owned(),
        });
    }
    HostProbe::parse(&out).map_err(|e| InstallError::BadProbe(e.to_string()))
}

/// Asks the hostctl at `path` for its version; `None` when there is none that answers.
pub async fn hostctl_version(
    conn: &Connection,
    tasks: &TaskTracker,
    path: &str,
    limit: Duration,
) -> Option<VersionInfo> {
    let words: Vec<String> = std::iter::once(path.to_owned())
        .chain(Call::Version.argv())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let (exit, out, _) = run(conn, tasks, &words, None, limit).await.ok()?;
    (exit == ProcessExit::Code(0))
        .then(|| serde_json::from_str(out.trim()).ok())
        .flatten()
}

/// Copies `binary` to `path` on the host (atomically: a new file renamed over the old one).
pub async fn upload_hostctl(
    conn: &Connection,
    tasks: &TaskTracker,
    binary: &Path,
    path: &str,
    limit: Duration,
) -> Result<(), InstallError> {
    let bytes = tokio::fs::read(binary)
        .await
        .map_err(|source| InstallError::Companion {
            path: binary.display().to_string(),
            source,
        })?;
    let dir = path.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
    let script = r#"set -e; mkdir -p "$1"; cat > "$1/hostctl.new.$$"; chmod 755 "$1/hostctl.new.$$"; mv -f "$1/hostctl.new.$$" "$2""#;
    let (exit, _, err) = run(
        conn,
        tasks,
        &["sh", "-c", script, "sh", &dir, path],
        Some(&bytes),
        limit,
    )
    .await?;
    if exit != ProcessExit::Code(0) {
        return Err(InstallError::CopyFailed {
            path: path.to_owned(),
            stderr: err.trim().to_owned(),
        });
    }
    Ok(())
}

/// Makes sure the host runs a hostctl that speaks this gateway's API: copies the companion
/// binary when the platform matches and the host's hostctl is missing or of another version.
/// Returns the version now on the host and whether it was installed.
pub async fn ensure_hostctl(
    conn: &Connection,
    tasks: &TaskTracker,
    probe: &Probe,
    companion: &Path,
    limit: Duration,
) -> Result<(VersionInfo, bool), InstallError> {
    let path = probe.hostctl_path();
    let present = hostctl_version(conn, tasks, &path, limit).await;
    if let Some(v) = &present
        && v.version == crate::VERSION
        && v.api_version == hostctl::api::API_VERSION
    {
        return Ok((v.clone(), false));
    }
    if probe.platform != own_platform() {
        if let Some(v) = present.filter(|v| v.api_version == hostctl::api::API_VERSION) {
            // Installed by hand for that platform: usable.
            return Ok((v, false));
        }
        return Err(InstallError::OtherPlatform {
            host: probe.platform.clone(),
            own: own_platform(),
            path,
        });
    }
    upload_hostctl(conn, tasks, companion, &path, limit).await?;
    match hostctl_version(conn, tasks, &path, limit).await {
        Some(v) if v.api_version == hostctl::api::API_VERSION => Ok((v, true)),
        Some(v) => Err(InstallError::OtherApi {
            path,
            api: v.api_version,
        }),
        None => Err(InstallError::DoesNotRun { path }),
    }
}
