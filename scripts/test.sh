#!/usr/bin/env bash
# Runs every check and test of agentgate: formatting, lints, the build, unit tests and the
# end-to-end tests (the real OpenSSH client and real tmux against the built binaries).
# Needs: a Rust toolchain, tmux, the OpenSSH client (ssh, ssh-keygen), git, python3 with pip
# and venv (ssh-audit, aider), and node 20+ with npm (the agent CLIs the tests run).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in cargo tmux ssh ssh-keygen git python3 node npm; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "error: missing tools: ${missing[*]}" >&2
  echo "hint: on Debian or Ubuntu: apt-get install tmux openssh-client git python3-pip python3-venv nodejs npm (and rustup for cargo)" >&2
  exit 1
fi

# ssh-audit (PyPI), for the test of the algorithms the gateway offers: installed into
# target/tools/python, nothing outside this checkout changes.
ssh_audit_version=3.9.0
if [ ! -d target/tools/python/ssh_audit ]; then
  echo "== installing ssh-audit $ssh_audit_version into target/tools/python"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target target/tools/python "ssh-audit==$ssh_audit_version"
fi

# SSH clients and tools from PyPI that the end-to-end tests run against the gateway (paramiko,
# asyncssh: tests/tests/clients.rs; ansible-core: tests/tests/habits.rs), pinned, beside
# ssh-audit in target/tools/python.
python_clients=(paramiko==5.1.0 asyncssh==2.24.1 ansible-core==2.19.14)
if [ ! -f target/tools/python/.clients-pinned ] \
  || [ "$(cat target/tools/python/.clients-pinned)" != "${python_clients[*]}" ]; then
  echo "== installing ${python_clients[*]} into target/tools/python"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --upgrade --target target/tools/python "${python_clients[@]}"
  echo "${python_clients[*]}" > target/tools/python/.clients-pinned
fi

# The real agent CLIs (Claude Code, Codex, Gemini CLI from npm; aider from PyPI) at the versions
# pinned in tests/fixtures/agent-clis/, into target/agent-clis; nothing when already current.
echo "== installing the pinned agent CLIs into target/agent-clis"
cargo run --quiet --locked -p e2e --bin install-agent-clis

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo check of the fuzz targets (fuzz/README.md runs them, on nightly)"
CARGO_TARGET_DIR=target cargo check --manifest-path fuzz/Cargo.toml --locked --bins
echo "== cargo build"
cargo build --workspace --locked
echo "== cargo test"
cargo test --workspace --locked
