//! Remote hosts for end-to-end tests: each host is a Linux network namespace joined to the root
//! namespace by a veth pair, running a real OpenSSH `sshd` on its own address. The gateway under
//! test stays in the root namespace and reaches the hosts over SSH at their veth addresses.
//!
//! Needs root, `ip` (iproute2), OpenSSH's `sshd` and `sftp-server`; a host that cannot be made
//! fails the test with a message saying why (never skips).
//!
//! Every host gets a /30 of 10.213.0.0/16 (root side .1, host side .2). The slot is claimed by
//! creating the root-side veth `agnet<slot>`: the kernel refuses a second link of that name, so
//! two hosts can never share a subnet, whatever threads or test binaries run at once. The search
//! starts from a slot derived from the process id and a counter. Namespaces are named
//! `agnet-<pid>-<slot>`; ones left behind by a test process that no longer exists (killed before
//! its clean-up ran) are removed when the next one starts.
//!
//! All hosts run as root and share the filesystem: what keeps each host's agents and tmux server
//! apart is sshd's `SetEnv` of `HOME`, `AGENTGATE_HOME`, `AGENTGATE_TMUX_SOCKET` and
//! `TMUX_TMPDIR`, which every session on the host sees.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use crate::{PATIENCE, keygen, unique};

/// Slots: 10.213.0.0/16 in /30s.
const SLOTS: usize = 1 << 14;
/// The name of the host-side veth, inside the namespace.
const HOST_IF: &str = "eth0";
const SSHD_CANDIDATES: &[&str] = &["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];
const SFTP_CANDIDATES: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/local/libexec/sftp-server",
];

static SLOT_COUNTER: AtomicUsize = AtomicUsize::new(0);
static SWEEP: Once = Once::new();
/// Serialises claims in this process: the first `ip netns add` on a machine sets up the
/// /run/netns mount, which two at once can get wrong.
static CLAIM: Mutex<()> = Mutex::new(());

/// One "remote host": a network namespace with its own address and its own sshd.
pub struct NetnsHost {
    /// The name the test gave it (`h1`, ...).
    pub name: String,
    /// The host's IPv4 address (host side of the veth pair); sshd listens on every address of
    /// the namespace.
    pub address: String,
    /// The root namespace's address on the link to this host (reachable from inside the host).
    pub root_address: String,
    /// sshd's port: 22.
    pub port: u16,
    /// The host's directory: sshd's config, host key, log and `authorized_keys`.
    pub dir: PathBuf,
    /// `AGENTGATE_HOME` as sessions on this host see it (`<dir>/agents`; not created here).
    pub agents_home: PathBuf,
    /// `AGENTGATE_TMUX_SOCKET` as sessions on this host see it.
    pub tmux_socket: String,
    /// `TMUX_TMPDIR` as sessions on this host see it (`<dir>/tmux`).
    pub tmux_tmpdir: PathBuf,
    /// The public line of sshd's current ed25519 host key (`ssh-ed25519 AAAA... comment`).
    pub host_key_pub: String,
    /// The network namespace's name.
    pub namespace: String,
    root_veth: String,
    root_mac: String,
    host_mac: String,
    sshd_bin: PathBuf,
    sshd: Option<Child>,
    config_path: PathBuf,
    host_key_path: PathBuf,
    authorized_keys: PathBuf,
    log_path: PathBuf,
}

impl NetnsHost {
    /// `ssh root@HOST` straight to this host's sshd: strict about its key (pinned in
    /// `known_hosts`), with only `key` and nothing from `~/.ssh` or a config file; the caller
    /// adds options and the command.
    pub fn ssh(&self, key: &Path, known_hosts: &Path, connect_timeout: u32) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(key)
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
            ])
            .arg(format!("ConnectTimeout={connect_timeout}"))
            .arg(format!("root@{}", self.address));
        cmd
    }

    /// Creates the namespace, the veth pair and the addresses, and starts sshd; returns once
    /// sshd accepts connections. `dir` is this host's own directory (created if missing; two
    /// hosts must not share one). Panics with the reason when it cannot.
    pub fn start(name: &str, dir: &Path) -> NetnsHost {
        check_prerequisites();
        SWEEP.call_once(sweep_stale_namespaces);
        let sshd_bin = first_existing(SSHD_CANDIDATES).unwrap_or_else(|| {
            panic!(
                "no sshd (looked for {SSHD_CANDIDATES:?}): install it, e.g. apt-get install openssh-server"
            )
        });
        let sftp_server = first_existing(SFTP_CANDIDATES).unwrap_or_else(|| {
            panic!(
                "no sftp-server (looked for {SFTP_CANDIDATES:?}): install it, e.g. apt-get install openssh-sftp-server"
            )
        });
        std::fs::create_dir_all(dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let dir = std::fs::canonicalize(dir)
            .unwrap_or_else(|e| panic!("cannot resolve {}: {e}", dir.display()));
        let config_path = dir.join("sshd_config");
        assert!(
            !config_path.exists(),
            "{} already holds a host: give every NetnsHost a directory of its own",
            dir.display()
        );
        assert_config_safe(&dir);
        assert_config_safe(&sftp_server);
        let tmux_tmpdir = dir.join("tmux");
        std::fs::create_dir_all(&tmux_tmpdir).expect("mkdir tmux dir");
        let authorized_keys = dir.join("authorized_keys");
        std::fs::write(&authorized_keys, "").expect("create authorized_keys");

        let (slot, namespace, root_veth) = claim_slot();
        let (root_address, address) = slot_addresses(slot);
        let mut host = NetnsHost {
            name: name.to_owned(),
            address,
            root_address,
            port: 22,
            agents_home: dir.join("agents"),
            tmux_socket: unique("aghost"),
            tmux_tmpdir,
            host_key_pub: String::new(),
            namespace,
            root_veth,
            root_mac: slot_mac(slot, 1),
            host_mac: slot_mac(slot, 2),
            sshd_bin,
            sshd: None,
            config_path,
            host_key_path: dir.join("ssh_host_ed25519_key"),
            authorized_keys,
            log_path: dir.join("sshd.log"),
            dir,
        };
        // From here on a panic drops `host`, which undoes what was made.
        host.configure_link(slot);
        host.new_host_key();
        host.write_config(&sftp_server);
        host.spawn_sshd();
        host
    }

    /// Appends a public key line to the `authorized_keys` sshd uses for root on this host.
    pub fn authorize(&self, public_key_line: &str) {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.authorized_keys)
            .expect("open authorized_keys");
        writeln!(f, "{}", public_key_line.trim()).expect("append to authorized_keys");
    }

    /// The pid of this host's sshd, whose mount namespace (a fresh `/sys` from `ip netns
    /// exec`) every session on the host shares: `nsenter -t PID -m` changes what they see.
    pub fn sshd_pid(&self) -> u32 {
        self.sshd.as_ref().map(Child::id).expect("sshd runs")
    }

    /// `$HOME` of sessions on this host: its own, so that the machine's shell start-up files
    /// (root's `.bashrc`, with whatever it runs) stay out of the tests.
    pub fn home(&self) -> PathBuf {
        self.dir.join("home")
    }

    /// A `Command` running `program` inside the namespace (`ip netns exec NS PROGRAM`), with
    /// this host's `AGENTGATE_HOME`, `AGENTGATE_TMUX_SOCKET` and `TMUX_TMPDIR`.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace, program])
            .env("HOME", self.home())
            .env("AGENTGATE_HOME", &self.agents_home)
            .env("AGENTGATE_TMUX_SOCKET", &self.tmux_socket)
            .env("TMUX_TMPDIR", &self.tmux_tmpdir)
            .env_remove("TMUX");
        cmd
    }

    /// Runs `tmux -L <socket> ARGS...` for this host (inside its namespace, same `TMUX_TMPDIR`).
    pub fn tmux(&self, args: &[&str]) -> Output {
        self.command("tmux")
            .args(["-L", &self.tmux_socket])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run tmux")
    }

    /// Cuts the host off: its end of the veth pair goes down, so packets either way are dropped
    /// without a word. New connections time out, open ones stall (nothing resets them) and
    /// resume after [`link_up`](Self::link_up) once TCP retransmits.
    pub fn link_down(&self) {
        ip_ok(&["-n", &self.namespace, "link", "set", HOST_IF, "down"]);
        self.wait_root_side_up(false);
    }

    /// Undoes [`link_down`](Self::link_down).
    pub fn link_up(&self) {
        ip_ok(&["-n", &self.namespace, "link", "set", HOST_IF, "up"]);
        // Taking a link down flushes its neighbours, permanent ones included.
        self.host_side_neighbour();
        self.wait_root_side_up(true);
    }

    /// Moves the host to a new address (10.214.x.y instead of 10.213.x.y), as a tailnet peer's
    /// address changes: the new address is added and the old one removed, so connections to
    /// the old one go nowhere. Returns the new address.
    pub fn move_address(&mut self) -> String {
        let old = self.address.clone();
        let new = old.replacen("10.213.", "10.214.", 1);
        assert_ne!(old, new, "the host has moved already");
        let ns = self.namespace.clone();
        ip_ok(&[
            "route",
            "replace",
            &format!("{new}/32"),
            "dev",
            &self.root_veth,
        ]);
        ip_ok(&[
            "neigh",
            "replace",
            &new,
            "lladdr",
            &self.host_mac,
            "dev",
            &self.root_veth,
            "nud",
            "permanent",
        ]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{new}/32"),
            "dev",
            HOST_IF,
        ]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "del",
            &format!("{old}/30"),
            "dev",
            HOST_IF,
        ]);
        ip_ok(&[
            "-n",
            &ns,
            "route",
            "replace",
            &format!("{}/32", self.root_address),
            "dev",
            HOST_IF,
            "src",
            &new,
        ]);
        self.host_side_neighbour();
        self.address = new.clone();
        new
    }

    /// Replaces sshd's host key with a new one and restarts sshd (open connections stay).
    pub fn change_host_key(&mut self) {
        self.stop_sshd();
        self.new_host_key();
        self.spawn_sshd();
    }

    /// Ends every SSH connection to the host (its per-connection sshd processes), as a reboot
    /// would; agents' tmux servers keep running.
    pub fn drop_connections(&self) {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.namespace])
            .output()
            .expect("ip netns pids");
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(b"sshd: root@") {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }

    /// Everything sshd logged (all its runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A `known_hosts` line pinning the current host key: `ADDRESS KEYTYPE KEY COMMENT`.
    pub fn known_hosts_line(&self) -> String {
        format!("{} {}", self.address, self.host_key_pub)
    }

    fn configure_link(&self, slot: usize) {
        let ns = self.namespace.as_str();
        ip_ok(&[
            "addr",
            "add",
            &format!("{}/30", self.root_address),
            "dev",
            &self.root_veth,
        ]);
        ip_ok(&["link", "set", &self.root_veth, "up"]);
        ip_ok(&["-n", ns, "link", "set", "lo", "up"]);
        ip_ok(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/30", self.address),
            "dev",
            HOST_IF,
        ]);
        ip_ok(&["-n", ns, "link", "set", HOST_IF, "up"]);
        // Permanent neighbours: no ARP, so a link that is down never makes the kernel report
        // "no route to host"; packets just go nowhere.
        ip_ok(&[
            "neigh",
            "replace",
            &self.address,
            "lladdr",
            &slot_mac(slot, 2),
            "dev",
            &self.root_veth,
            "nud",
            "permanent",
        ]);
        self.host_side_neighbour();
        self.wait_root_side_up(true);
    }

    fn host_side_neighbour(&self) {
        ip_ok(&[
            "-n",
            &self.namespace,
            "neigh",
            "replace",
            &self.root_address,
            "lladdr",
            &self.root_mac,
            "dev",
            HOST_IF,
            "nud",
            "permanent",
        ]);
    }

    /// Waits until the root side of the veth pair is (or is no longer) operationally up.
    fn wait_root_side_up(&self, up: bool) {
        let path = format!("/sys/class/net/{}/operstate", self.root_veth);
        let start = Instant::now();
        loop {
            let state = std::fs::read_to_string(&path).unwrap_or_default();
            if (state.trim() == "up") == up {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {} to be {} (operstate {:?})",
                self.root_veth,
                if up { "up" } else { "down" },
                state.trim()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn new_host_key(&mut self) {
        let _ = std::fs::remove_file(&self.host_key_path);
        let _ = std::fs::remove_file(self.host_key_path.with_extension("pub"));
        let file_name = self
            .host_key_path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("host key file name");
        let key = keygen(&self.dir, file_name, &format!("root@{}", self.name));
        self.host_key_pub = std::fs::read_to_string(key.with_extension("pub"))
            .expect("read the host key's .pub")
            .trim()
            .to_owned();
    }

    fn write_config(&self, sftp_server: &Path) {
        let config = format!(
            "# sshd for the e2e host {name} (namespace {ns})\n\
             ListenAddress 0.0.0.0\n\
             Port {port}\n\
             HostKey {host_key}\n\
             PidFile none\n\
             UsePAM no\n\
             StrictModes no\n\
             AuthorizedKeysFile {authorized_keys}\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             AllowTcpForwarding yes\n\
             AllowStreamLocalForwarding yes\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             Subsystem sftp {sftp}\n\
             LogLevel VERBOSE\n\
             SetEnv HOME={home} AGENTGATE_HOME={agents} AGENTGATE_TMUX_SOCKET={socket} TMUX_TMPDIR={tmpdir}\n",
            name = self.name,
            ns = self.namespace,
            port = self.port,
            host_key = self.host_key_path.display(),
            authorized_keys = self.authorized_keys.display(),
            sftp = sftp_server.display(),
            agents = self.agents_home.display(),
            home = self.home().display(),
            socket = self.tmux_socket,
            tmpdir = self.tmux_tmpdir.display(),
        );
        std::fs::create_dir_all(self.home()).expect("mkdir the host's home");
        std::fs::write(&self.config_path, config).expect("write sshd_config");
    }

    /// Starts sshd in the namespace and waits until it accepts connections on address:22.
    fn spawn_sshd(&mut self) {
        assert!(self.sshd.is_none(), "sshd is already running");
        // The privilege separation directory sshd insists on.
        std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open the sshd log");
        let _ = writeln!(log, "--- starting sshd");
        // `ip netns exec` execs the program: the child is sshd itself.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(&self.sshd_bin)
            .args(["-D", "-e", "-f"])
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.sshd_bin.display()));
        self.sshd = Some(child);
        let target: SocketAddr = format!("{}:{}", self.address, self.port)
            .parse()
            .expect("a socket address");
        let start = Instant::now();
        loop {
            if let Some(child) = self.sshd.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.sshd = None;
                panic!(
                    "sshd for host {} exited with {status}; its log ({}):\n{}",
                    self.name,
                    self.log_path.display(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&target, Duration::from_secs(1)).is_ok() {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for sshd of host {} to accept connections on {target}; its log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the listening sshd (connections it already forked keep running).
    fn stop_sshd(&mut self) {
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NetnsHost {
    fn drop(&mut self) {
        let _ = self
            .command("tmux")
            .args(["-L", &self.tmux_socket, "kill-server"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        self.stop_sshd();
        // sshd's sessions and whatever they started (tmux servers, agents) live in the namespace.
        kill_namespace_processes(&self.namespace);
        // Deleting the root side removes the pair at once (a namespace goes away lazily).
        let _ = quiet_ip(&["link", "del", &self.root_veth]);
        let _ = quiet_ip(&["netns", "del", &self.namespace]);
    }
}

/// The root side's and the host side's addresses of a slot's /30 in 10.213.0.0/16.
fn slot_addresses(slot: usize) -> (String, String) {
    let net = slot * 4;
    let (hi, lo) = (net >> 8, net & 0xff);
    (
        format!("10.213.{hi}.{}", lo + 1),
        format!("10.213.{hi}.{}", lo + 2),
    )
}

/// A locally administered MAC for side 1 (root) or 2 (host) of a slot's veth pair.
fn slot_mac(slot: usize, side: u8) -> String {
    format!("02:a9:{:02x}:{:02x}:00:{side:02x}", slot >> 8, slot & 0xff)
}

/// Claims a free slot: makes namespace `agnet-<pid>-<slot>` and the veth pair `agnet<slot>`
/// (root side) / `eth0` (in the namespace). Returns (slot, namespace, root veth).
fn claim_slot() -> (usize, String, String) {
    let _claiming = CLAIM.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id() as usize;
    let first = (pid.wrapping_mul(97) + SLOT_COUNTER.fetch_add(1, Ordering::Relaxed)) % SLOTS;
    for i in 0..SLOTS {
        let slot = (first + i) % SLOTS;
        let namespace = format!("agnet-{pid}-{slot}");
        let veth = format!("agnet{slot}");
        if Path::new("/sys/class/net").join(&veth).exists() {
            continue;
        }
        let out = quiet_ip(&["netns", "add", &namespace]);
        if !out.status.success() {
            if crate::stderr(&out).contains("File exists") {
                continue;
            }
            panic!(
                "cannot create network namespace {namespace} (tests need root with CAP_SYS_ADMIN): {}",
                crate::stderr(&out).trim()
            );
        }
        let out = quiet_ip(&[
            "link",
            "add",
            &veth,
            "address",
            &slot_mac(slot, 1),
            "type",
            "veth",
            "peer",
            "name",
            HOST_IF,
            "address",
            &slot_mac(slot, 2),
            "netns",
            &namespace,
        ]);
        if out.status.success() {
            return (slot, namespace, veth);
        }
        let _ = quiet_ip(&["netns", "del", &namespace]);
        if !crate::stderr(&out).contains("File exists") {
            panic!(
                "cannot create the veth pair {veth}: {}",
                crate::stderr(&out).trim()
            );
        }
    }
    panic!("no free /30 left in 10.213.0.0/16 (are namespaces agnet-* leaking?)");
}

/// Removes namespaces `agnet-<pid>-<slot>` whose test process is gone, with their processes.
fn sweep_stale_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in crate::stdout(&out).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("agnet-") else {
            continue;
        };
        let mut parts = rest.split('-');
        let (Some(pid), Some(slot), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if pid.parse::<u32>().is_err() || slot.parse::<usize>().is_err() {
            continue;
        }
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        kill_namespace_processes(name);
        // The pair goes with its host side. A namespace outlives `netns del` while anything
        // holds it (a dying TCP connection does), and its veth pair with it.
        let _ = quiet_ip(&["-n", name, "link", "del", HOST_IF]);
        let _ = quiet_ip(&["netns", "del", name]);
    }
}

/// SIGKILLs every process in the namespace (best effort).
fn kill_namespace_processes(namespace: &str) {
    let Ok(out) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .stderr(Stdio::null())
        .output()
    else {
        return;
    };
    let pids: Vec<String> = crate::stdout(&out)
        .split_whitespace()
        .filter(|p| p.parse::<u32>().is_ok())
        .map(str::to_owned)
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill")
            .arg("-9")
            .args(&pids)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Runs `ip ARGS...`, panicking only when `ip` cannot be run at all.
fn quiet_ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` (install iproute2): {e}"))
}

/// Runs `ip ARGS...`, which must succeed.
fn ip_ok(args: &[&str]) {
    let out = quiet_ip(args);
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        crate::stderr(&out).trim()
    );
}

fn first_existing(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// Fails unless this runs as root with `ip` at hand, and root can log in with a key.
fn check_prerequisites() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("?");
    assert!(
        euid == "0",
        "network namespace hosts need root (effective uid is {euid})"
    );
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!("`ip -V` failed: {}", crate::stderr(&out)),
        Err(e) => panic!("cannot run `ip` (install iproute2): {e}"),
    }
    // Without PAM, sshd refuses every login, keys included, to an account whose password is
    // locked ("!..." in /etc/shadow).
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap_or_default();
    if let Some(password) = shadow
        .lines()
        .find_map(|l| l.strip_prefix("root:"))
        .and_then(|l| l.split(':').next())
    {
        assert!(
            !password.starts_with('!') && !password.contains("*LOCKED*"),
            "root's password is locked in /etc/shadow, so sshd (UsePAM no) refuses root logins \
             even with a key; unlock it without a password: usermod -p '*' root"
        );
    }
}

/// sshd_config has no quoting we want to rely on: paths must be plain.
fn assert_config_safe(path: &Path) {
    let s = path.to_string_lossy();
    assert!(
        !s.chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '%' | '#' | '\\')),
        "{s} cannot go into an sshd_config as it is (whitespace, quotes, % or #)"
    );
}

/// Starts a namespace host and adds it to the gateway as `name` (its key authorized, then
/// `host add NAME ADDRESS --user root`).
pub fn add_host(gw: &crate::TestGateway, name: &str) -> NetnsHost {
    let host = NetnsHost::start(name, &gw.dir.path().join(format!("host-{name}")));
    host.authorize(gw.ok(&["host", "key"]).trim());
    gw.ok(&["host", "add", name, &host.address, "--user", "root"]);
    host
}
