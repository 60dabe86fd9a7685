//! Installs the pinned agent CLIs into `target/agent-clis/` before the tests run
//! (`scripts/test.sh` calls it), so that no test pays for the install and a registry problem
//! shows up once, with npm's or pip's own message. Does nothing when the cache is current.

use anyhow::Result;

fn main() -> Result<()> {
    let cache = e2e::agent_clis::cache_dir();
    let npm = e2e::agent_clis::install_npm(&cache)?;
    println!(
        "claude, codex, gemini: {}",
        npm.join("node_modules/.bin").display()
    );
    let venv = e2e::agent_clis::install_aider(&cache)?;
    println!("aider: {}", venv.join("bin").display());
    Ok(())
}
