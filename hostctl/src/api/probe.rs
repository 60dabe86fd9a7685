//! The install probe: what the gateway asks a host before hostctl is there (`host add`) and
//! when it diagnoses one (`host check`): its platform, where agentgate's files go, its tmux
//! and its free space.
//!
//! The probe is a POSIX sh script, not a hostctl verb, because it runs before the gateway
//! knows whether the host has a hostctl, of which version, and for which platform (it is how
//! the gateway decides what to install, and where). So it prints `key=value` lines, which any
//! `sh` can write without quoting rules, and [`HostProbe::parse`] beside the script is the one
//! reader of them.

/// What a host says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostProbe {
    /// `os/arch` in Rust's words (`linux/x86_64`).
    pub platform: String,
    /// `$AGENTGATE_HOME` on the host (`~/.agentgate` when unset), absolute.
    pub home: String,
    /// `tmux -V`, when tmux is there.
    pub tmux: Option<String>,
    /// Free space where the agents' files go, in KiB.
    pub free_kib: Option<u64>,
}

/// The probe's answer was not its `key=value` lines (a shell start-up file that prints a
/// banner on stdout, say, and no answer after it).
#[derive(Debug, thiserror::Error)]
#[error("the host's answer is not understood: {answer:?}")]
pub struct ProbeNotUnderstood {
    pub answer: String,
}

/// The probe, a POSIX sh script; run it as `sh -c SCRIPT` ([`HostProbe::argv`]), whatever the
/// user's login shell is.
pub const PROBE_SCRIPT: &str = r#"h="${AGENTGATE_HOME:-$HOME/.agentgate}"
case "$h" in /*) ;; *) h="$PWD/$h" ;; esac
mkdir -p "$h" 2>/dev/null
echo "os=$(uname -s)"
echo "machine=$(uname -m)"
echo "home=$h"
echo "tmux=$(tmux -V 2>/dev/null)"
echo "free=$(df -Pk "$h" 2>/dev/null | awk 'NR==2 {print $4}')""#;

impl HostProbe {
    /// The command that runs the probe on a host.
    pub fn argv() -> [&'static str; 3] {
        ["sh", "-c", PROBE_SCRIPT]
    }

    /// Reads the probe's output. A line that is not one of its keys is passed over, so that a
    /// banner before the answer does no harm.
    pub fn parse(text: &str) -> Result<HostProbe, ProbeNotUnderstood> {
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
            return Err(ProbeNotUnderstood {
                answer: text.to_owned(),
            });
        }
        Ok(HostProbe {
            platform: platform_of(&os, &machine),
            home,
            tmux: (!tmux.is_empty()).then_some(tmux),
            free_kib: free.parse().ok(),
        })
    }

    /// Where hostctl goes on the host.
    pub fn hostctl_path(&self) -> String {
        format!("{}/bin/hostctl", self.home.trim_end_matches('/'))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_are_parsed() {
        let p = HostProbe::parse(
            "os=Linux\nmachine=x86_64\nhome=/home/u/.agentgate\ntmux=tmux 3.3a\nfree=123456\n",
        )
        .unwrap();
        assert_eq!(p.platform, "linux/x86_64");
        assert_eq!(p.tmux.as_deref(), Some("tmux 3.3a"));
        assert_eq!(p.free_kib, Some(123_456));
        assert_eq!(p.hostctl_path(), "/home/u/.agentgate/bin/hostctl");
        let p =
            HostProbe::parse("os=Darwin\nmachine=arm64\nhome=/Users/u/.agentgate\ntmux=\nfree=\n")
                .unwrap();
        assert_eq!(p.platform, "macos/aarch64");
        assert_eq!(p.tmux, None);
        assert!(HostProbe::parse("Welcome to the host!\n").is_err());
    }

    /// The script and the parser are kept together so that they cannot drift apart: what the
    /// script prints on this machine is read back whole.
    #[test]
    fn the_probe_script_prints_what_the_parser_reads() {
        let home = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("sh")
            .args(&HostProbe::argv()[1..])
            .env("AGENTGATE_HOME", home.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let p = HostProbe::parse(&String::from_utf8_lossy(&out.stdout)).unwrap();
        assert_eq!(
            p.platform,
            format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)
        );
        assert_eq!(p.home, home.path().to_string_lossy());
        assert!(p.free_kib.is_some(), "{p:?}");
    }
}
