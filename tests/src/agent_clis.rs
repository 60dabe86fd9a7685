//! The real agent CLIs the end-to-end tests run, installed once from their registries at
//! pinned versions into a cache under `target/agent-clis/`.
//!
//! npm: `tests/fixtures/agent-clis/package.json` pins Claude Code, Codex and Gemini CLI and its
//! `package-lock.json` pins everything they pull in; `npm ci` installs exactly that into
//! `target/agent-clis/npm/`. PyPI: aider-chat at [`AIDER_VERSION`] goes into a venv at
//! `target/agent-clis/venv/` (aider pins its own dependencies exactly).
//!
//! Several test binaries run at once, so an install happens under a file lock, and a cache is
//! used only when its stamp (written last, after a complete install) matches the pins: a
//! half-finished install has no stamp, and a changed pin changes the stamp, which reinstalls.
//! A test that needs a CLI and cannot have it fails with what is missing and how to get it;
//! nothing is skipped silently. This module never touches the network beyond npm and pip.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The pinned npm packages (their lock file pins the rest).
const NPM_PACKAGE_JSON: &str = include_str!("../fixtures/agent-clis/package.json");
const NPM_PACKAGE_LOCK: &str = include_str!("../fixtures/agent-clis/package-lock.json");

/// aider-chat from PyPI.
pub const AIDER_VERSION: &str = "0.86.2";

/// The versions each CLI reports (`--version`), for tests and for the README.
pub const CLAUDE_VERSION: &str = "2.1.197";
pub const CODEX_VERSION: &str = "0.171.0";
pub const GEMINI_VERSION: &str = "0.61.0";

/// How long one install may take before it counts as hung (npm takes ~10 s, pip ~1 min here).
const INSTALL_LIMIT: Duration = Duration::from_secs(600);
/// How long a test waits for another process's install (the lock) before failing.
const LOCK_LIMIT: Duration = Duration::from_secs(900);

/// One of the agent CLIs the tests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentCli {
    Claude,
    Codex,
    Gemini,
    Aider,
}

impl AgentCli {
    pub const ALL: [AgentCli; 4] = [
        AgentCli::Claude,
        AgentCli::Codex,
        AgentCli::Gemini,
        AgentCli::Aider,
    ];

    /// The command name (what a user types).
    pub fn command_name(self) -> &'static str {
        match self {
            AgentCli::Claude => "claude",
            AgentCli::Codex => "codex",
            AgentCli::Gemini => "gemini",
            AgentCli::Aider => "aider",
        }
    }

    /// The pinned version, as `--version` prints it somewhere in its line.
    pub fn version(self) -> &'static str {
        match self {
            AgentCli::Claude => CLAUDE_VERSION,
            AgentCli::Codex => CODEX_VERSION,
            AgentCli::Gemini => GEMINI_VERSION,
            AgentCli::Aider => AIDER_VERSION,
        }
    }
}

/// `target/agent-clis`, found from this test binary's path (`target/<profile>/deps/...`), so
/// it is the same directory `scripts/test.sh` fills.
pub fn cache_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let target = exe
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_owned)
        // A CARGO_TARGET_DIR not named `target`: the profile directory's parent.
        .or_else(|| exe.parent()?.parent()?.parent().map(Path::to_owned))
        .expect("the test binary lives in a cargo target directory");
    target.join("agent-clis")
}

/// The executable of `cli`, installing the pinned CLIs first if the cache lacks them. Fails the
/// test with a clear message when they cannot be installed.
pub fn executable(cli: AgentCli) -> PathBuf {
    let result = match cli {
        AgentCli::Aider => install_aider(&cache_dir()),
        _ => install_npm(&cache_dir()),
    };
    let dir = result.unwrap_or_else(|e| {
        panic!(
            "the {} CLI is needed by this test and could not be installed: {e:#}\n\
             hint: `cargo run -p e2e --bin install-agent-clis` installs them (it needs node 20+ \
             with npm, python3 with venv and pip, and access to their registries)",
            cli.command_name()
        )
    });
    let path = match cli {
        AgentCli::Aider => dir.join("bin").join("aider"),
        _ => dir
            .join("node_modules")
            .join(".bin")
            .join(cli.command_name()),
    };
    assert!(
        path.exists(),
        "{} is missing although the install of the pinned CLIs finished: delete {} and retry",
        path.display(),
        dir.display()
    );
    path
}

/// The directory holding `node` and the CLIs' `.bin`, for the PATH of a CLI's environment
/// (codex and gemini are node scripts with `#!/usr/bin/env node`).
pub fn node_bin_dir() -> Result<PathBuf> {
    let node = find_in_path("node").context("node is not on PATH")?;
    Ok(node
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/usr/bin")))
}

fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Installs Claude Code, Codex and Gemini CLI (`npm ci` of the pinned lock) unless the cache
/// already has exactly these pins; returns the npm prefix (`target/agent-clis/npm`).
pub fn install_npm(cache: &Path) -> Result<PathBuf> {
    let stamp = format!("{NPM_PACKAGE_JSON}\n{NPM_PACKAGE_LOCK}");
    let dir = cache.join("npm");
    install_once(cache, "npm", &dir, &stamp, |dir| {
        if find_in_path("npm").is_none() {
            bail!("npm is not on PATH (install node.js 20 or newer, which brings npm)");
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("package.json"), NPM_PACKAGE_JSON)?;
        std::fs::write(dir.join("package-lock.json"), NPM_PACKAGE_LOCK)?;
        let mut npm = Command::new("npm");
        npm.args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(dir)
            // npm's update check would reach for the registry on every run.
            .env("NPM_CONFIG_UPDATE_NOTIFIER", "false");
        run_bounded(npm, "npm ci")
    })
}

/// Installs aider-chat into a venv unless the cache already has this pin; returns the venv.
pub fn install_aider(cache: &Path) -> Result<PathBuf> {
    let stamp = format!("aider-chat=={AIDER_VERSION}\n");
    let dir = cache.join("venv");
    install_once(cache, "venv", &dir, &stamp, |dir| {
        let mut venv = Command::new("python3");
        venv.args(["-m", "venv"]).arg(dir);
        run_bounded(venv, "python3 -m venv")?;
        let mut pip = Command::new(dir.join("bin").join("pip"));
        pip.args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-input",
            &format!("aider-chat=={AIDER_VERSION}"),
        ]);
        run_bounded(pip, "pip install aider-chat")
    })
}

const STAMP_FILE: &str = ".agentgate-stamp";

/// Runs `install` into `dir` unless `dir` carries `stamp`: under a lock, so that only one
/// process installs; the stamp is written after a complete install, so a reader never takes a
/// half-finished one (venvs hold absolute paths, so the install happens in place).
fn install_once(
    cache: &Path,
    name: &str,
    dir: &Path,
    stamp: &str,
    install: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let stamped = |dir: &Path| {
        std::fs::read_to_string(dir.join(STAMP_FILE)).is_ok_and(|found| found == stamp)
    };
    if stamped(dir) {
        return Ok(dir.to_owned());
    }
    std::fs::create_dir_all(cache).with_context(|| format!("create {}", cache.display()))?;
    let lock_path = cache.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).with_context(|| format!("open {}", lock_path.display()))?;
    let start = Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_LIMIT => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another process has held {} for {:?} (a hung install? kill it, or delete {})",
                lock_path.display(),
                LOCK_LIMIT,
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("lock {}", lock_path.display()));
            }
        }
    }
    // Another process may have finished the install while this one waited.
    if stamped(dir) {
        return Ok(dir.to_owned());
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))?;
    }
    eprintln!(
        "installing the pinned agent CLIs ({name}) into {}",
        dir.display()
    );
    install(dir).with_context(|| format!("install into {}", dir.display()))?;
    std::fs::write(dir.join(STAMP_FILE), stamp)
        .with_context(|| format!("write the stamp in {}", dir.display()))?;
    // The lock is released when `lock` is dropped, after the stamp is written.
    Ok(dir.to_owned())
}

/// Runs an installer with a time limit; a failure keeps its argv, status and output.
fn run_bounded(mut command: Command, what: &str) -> Result<()> {
    let argv = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {what}: {argv}"))?;
    // Drain both pipes on threads so a chatty installer cannot block on a full pipe.
    let out = child.stdout.take().map(drain);
    let err = child.stderr.take().map(drain);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > INSTALL_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {INSTALL_LIMIT:?}: {argv}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let (out, err) = (collect(out), collect(err));
    if !status.success() {
        bail!("{what} failed ({status}): {argv}\nstdout:\n{out}\nstderr:\n{err}");
    }
    Ok(())
}

fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}
