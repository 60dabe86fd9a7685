//! Setting a host up (`host add`) and diagnosing it (`host check`): what the host is, whether
//! it has tmux, and hostctl installed or upgraded by copying the gateway's companion binary.

use std::path::Path;
use std::time::Duration;

use hostctl::api::VersionInfo;
use tokio_util::task::TaskTracker;

use super::leg::{self, Connection, Slot};
use super::quote_words;
use crate::hosts::{HostError, ProcessExit};

/// What a host says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// `os/arch` in Rust's words (`linux/x86_64`).
    pub platform: String,
    /// `$AGENTGATE_HOME` on the host (`~/.agentgate` when unset), absolute.
    pub home: String,
    /// `tmux -V`, when tmux is there.
    pub tmux: Option<String>,
    /// Free space where the agents' files go, in KiB.
    pub free_kib: Option<u64>,
}

impl Probe {
    /// Where hostctl goes on the host.
    pub fn hostctl_path(&self) -> String {
        format!("{}/bin/hostctl", self.home.trim_end_matches('/'))
    }
}

/// The platform this gateway (and its companion hostctl) was built for.
pub fn own_platform() -> String {
    format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// `uname -s` / `uname -m` in Rust's words.
fn platform_of(os: &str, machine: &str) -> String {
    let os = match os {
        "Linux" => "linux",
        "Darwin" => "macos",
        "FreeBSD" => "freebsd",
        other => other,
    };
    let arch = match machine {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "armv7l" => "arm",
        other => other,
    };
    format!("{os}/{arch}")
}

/// The probe, a POSIX sh script (run through `sh -c`, whatever the user's login shell is).
const PROBE_SCRIPT: &str = r#"h="${AGENTGATE_HOME:-$HOME/.agentgate}"
case "$h" in /*) ;; *) h="$PWD/$h" ;; esac
mkdir -p "$h" 2>/dev/null
echo "os=$(uname -s)"
echo "machine=$(uname -m)"
echo "home=$h"
echo "tmux=$(tmux -V 2>/dev/null)"
echo "free=$(df -Pk "$h" 2>/dev/null | awk 'NR==2 {print $4}')""#;

fn parse_probe(text: &str) -> Result<Probe, String> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let (os, machine, home) = (field("os"), field("machine"), field("home"));
    let (tmux, free) = (field("tmux"), field("free"));
    if os.is_empty() || home.is_empty() {
        return Err(format!("the host's answer is not understood: {text:?}"));
    }
    Ok(Probe {
        platform: platform_of(&os, &machine),
        home,
        tmux: (!tmux.is_empty()).then_some(tmux),
        free_kib: free.parse().ok(),
    })
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
) -> Result<Probe, String> {
    let (exit, out, err) = run(conn, tasks, &["sh", "-c", PROBE_SCRIPT], None, limit)
        .await
        .map_err(|e| e.to_string())?;
    if exit != ProcessExit::Code(0) {
        return Err(format!("the probe failed ({exit:?}): {}", err.trim()));
    }
    parse_probe(&out)
}

/// Asks the hostctl at `path` for its version; `None` when there is none that answers.
pub async fn hostctl_version(
    conn: &Connection,
    tasks: &TaskTracker,
    path: &str,
    limit: Duration,
) -> Option<VersionInfo> {
    let (exit, out, _) = run(conn, tasks, &[path, "version", "--json"], None, limit)
        .await
        .ok()?;
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
) -> Result<(), String> {
    let bytes = tokio::fs::read(binary)
        .await
        .map_err(|e| format!("cannot read {}: {e}", binary.display()))?;
    let dir = path.rsplit_once('/').map_or(".", |(d, _)| d).to_owned();
    let script = r#"set -e; mkdir -p "$1"; cat > "$1/hostctl.new.$$"; chmod 755 "$1/hostctl.new.$$"; mv -f "$1/hostctl.new.$$" "$2""#;
    let (exit, _, err) = run(
        conn,
        tasks,
        &["sh", "-c", script, "sh", &dir, path],
        Some(&bytes),
        limit,
    )
    .await
    .map_err(|e| e.to_string())?;
    if exit != ProcessExit::Code(0) {
        return Err(format!("copying hostctl to {path} failed: {}", err.trim()));
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
) -> Result<(VersionInfo, bool), String> {
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
        return Err(format!(
            "the host is {}, and this gateway's hostctl is built for {}: build hostctl {} for {} \
             (cargo build --release -p hostctl --target ...) and copy it to {path} on the host, \
             then try again",
            probe.platform,
            own_platform(),
            crate::VERSION,
            probe.platform
        ));
    }
    upload_hostctl(conn, tasks, companion, &path, limit).await?;
    match hostctl_version(conn, tasks, &path, limit).await {
        Some(v) if v.api_version == hostctl::api::API_VERSION => Ok((v, true)),
        Some(v) => Err(format!(
            "hostctl at {path} speaks API {}, the gateway {}",
            v.api_version,
            hostctl::api::API_VERSION
        )),
        None => Err(format!("hostctl at {path} does not run after being copied")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_are_parsed() {
        let p = parse_probe(
            "os=Linux\nmachine=x86_64\nhome=/home/u/.agentgate\ntmux=tmux 3.3a\nfree=123456\n",
        )
        .unwrap();
        assert_eq!(p.platform, "linux/x86_64");
        assert_eq!(p.tmux.as_deref(), Some("tmux 3.3a"));
        assert_eq!(p.free_kib, Some(123_456));
        assert_eq!(p.hostctl_path(), "/home/u/.agentgate/bin/hostctl");
        let p = parse_probe("os=Darwin\nmachine=arm64\nhome=/Users/u/.agentgate\ntmux=\nfree=\n")
            .unwrap();
        assert_eq!(p.platform, "macos/aarch64");
        assert_eq!(p.tmux, None);
        assert!(parse_probe("Welcome to the host!\n").is_err());
    }
}
