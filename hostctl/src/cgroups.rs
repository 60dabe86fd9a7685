//! An agent's resource limits on its host, as cgroups: one cgroup per agent (per hierarchy on
//! cgroup v1), made under a parent the host user may write, its limits written, and the
//! agent's pane and the sessions inside it moved in before their commands run, so every
//! process they start inherits it. An agent with no limits never touches cgroups.
//!
//! The parent is found the way a careful tool finds it, never by assuming `/sys/fs/cgroup/X`
//! is writable: the calling process's own cgroup in each hierarchy (`/proc/self/cgroup`),
//! mapped under that hierarchy's mount point (`/proc/self/mountinfo`), or the cgroup an
//! administrator named in `$AGENTGATE_HOME/cgroup-parent` (a path as `/proc/self/cgroup`
//! writes them), mapped the same way. cgroup v2 serves a controller when the parent's
//! `cgroup.subtree_control` enables it (systemd's `Delegate=yes`) and this user may move its
//! own processes there (write `cgroup.procs` of the cgroup above both); cgroup v1 when a hierarchy
//! with that controller is mounted and the parent in it is writable (delegated by chown).
//! Where neither does, asking for the limit is refused before anything is made, saying what
//! the host lacks.
//!
//! The directories an agent's cgroups got are written down (`agents/NAME/cgroups.json`), so
//! sessions join the same ones whatever cgroup their own process is in, and `stop` and
//! `destroy` remove them (a cgroup that still has processes is left, and said so on stderr).
//!
//! This module parses and writes cgroup files; what a limit is and how it is written by people
//! is [`crate::api::Limits`]'s.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::api::{AgentMeta, Limits};
use crate::error::{Error, Result};
use crate::files::Files;

/// The file, in `$AGENTGATE_HOME`, naming the cgroup under which agents' cgroups are made.
pub const PARENT_FILE: &str = "cgroup-parent";

/// The file, in an agent's directory, listing the cgroup directories made for it.
pub const RECORD_FILE: &str = "cgroups.json";

/// The period of a CPU quota (cgroup v1's `cpu.cfs_period_us`, v2's `cpu.max`), in
/// microseconds: the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// A resource controller a limit needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
}

impl Controller {
    /// Its name in `/proc/self/cgroup`, mount options and `cgroup.subtree_control`.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }

    /// The `create` option (and template key) that asks for it.
    fn option(self) -> &'static str {
        match self {
            Controller::Memory => "--memory",
            Controller::Cpu => "--cpus",
            Controller::Pids => "--pids",
        }
    }
}

/// The controllers `limits` needs, in a fixed order.
pub fn needed(limits: &Limits) -> Vec<Controller> {
    let mut out = Vec::new();
    if limits.memory_bytes.is_some() {
        out.push(Controller::Memory);
    }
    if limits.cpu_millis.is_some() {
        out.push(Controller::Cpu);
    }
    if limits.pids.is_some() {
        out.push(Controller::Pids);
    }
    out
}

/// Which cgroup interface a hierarchy speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// cgroup v1: one hierarchy per mounted set of controllers.
    V1,
    /// cgroup v2: the one unified hierarchy.
    V2,
}

/// A mounted cgroup hierarchy and the directory in it that would be an agent's parent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// The controllers it was mounted with (v1); empty for v2, whose controllers are read
    /// from its files.
    pub controllers: Vec<String>,
    /// The parent cgroup's directory: the caller's cgroup (or the configured one) in this
    /// hierarchy, under its mount point.
    pub parent: PathBuf,
    /// cgroup v2 only: the cgroup whose `cgroup.procs` the caller must be able to write to
    /// move a process of its own cgroup into one below the parent: the two's nearest common
    /// ancestor (the kernel's rule for delegated trees). v1 has no such rule.
    pub mover: Option<PathBuf>,
}

/// One line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH` (v2's is `0::PATH`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Membership {
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect(),
                path: path.to_owned(),
            })
        })
        .collect()
}

/// A cgroup mount of `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    version: Version,
    /// The cgroup of the hierarchy this mount shows at its mount point (`/` unless the mount
    /// is of a subtree, as in a container).
    root: String,
    mount_point: PathBuf,
    controllers: Vec<String>,
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let root = unescape(fields.get(3)?);
            let mount_point = PathBuf::from(unescape(fields.get(4)?));
            let mut after = after.split(' ');
            let fstype = after.next()?;
            let _source = after.next()?;
            let options = after.next().unwrap_or("");
            let version = match fstype {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => return None,
            };
            let controllers = match version {
                Version::V1 => options
                    .split(',')
                    .filter(|o| !o.contains('=') && !is_mount_flag(o))
                    .map(str::to_owned)
                    .collect(),
                Version::V2 => Vec::new(),
            };
            Some(Mount {
                version,
                root,
                mount_point,
                controllers,
            })
        })
        .collect()
}

/// Options of a v1 cgroup mount that are not controllers.
fn is_mount_flag(option: &str) -> bool {
    matches!(
        option,
        "rw" | "ro"
            | "nosuid"
            | "nodev"
            | "noexec"
            | "relatime"
            | "noatime"
            | "xattr"
            | "none"
            | "noprefix"
            | "clone_children"
            | "cpuset_v2_mode"
            | "nsdelegate"
            | "memory_recursiveprot"
            | "memory_localevents"
            | "favordynmods"
    )
}

/// mountinfo writes a space, tab, newline and backslash in a path as `\040`, `\011`, `\012`
/// and `\134`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value = bytes[i + 1..i + 4]
                .iter()
                .fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `cgroup` (a path in a hierarchy, as `/proc/self/cgroup` writes it) under `mount`, if the
/// mount shows it.
fn under_mount(mount: &Mount, cgroup: &str) -> Option<PathBuf> {
    let root = mount.root.trim_end_matches('/');
    let rest = if root.is_empty() {
        cgroup
    } else if cgroup == root {
        ""
    } else {
        // `/docker/abcdef` is not below `/docker/abc`.
        let tail = cgroup.strip_prefix(root)?;
        if !tail.starts_with('/') {
            return None;
        }
        tail
    };
    let rest = rest.trim_start_matches('/');
    if rest.split('/').any(|c| c == "..") {
        return None;
    }
    Some(if rest.is_empty() {
        mount.mount_point.clone()
    } else {
        mount.mount_point.join(rest)
    })
}

/// The hierarchies mounted here and, in each, the directory of the parent for agents'
/// cgroups: the cgroup `configured` names, else the caller's own (`proc_cgroup` is the text
/// of `/proc/self/cgroup`, `mountinfo` of `/proc/self/mountinfo`). A hierarchy whose parent
/// its mount does not show is left out.
pub fn hierarchies(proc_cgroup: &str, mountinfo: &str, configured: Option<&str>) -> Vec<Hierarchy> {
    let memberships = parse_proc_cgroup(proc_cgroup);
    let mut out: Vec<Hierarchy> = Vec::new();
    for mount in parse_mountinfo(mountinfo) {
        let own = memberships.iter().find(|m| match mount.version {
            Version::V2 => m.controllers.is_empty(),
            Version::V1 => {
                !m.controllers.is_empty()
                    && m.controllers.iter().all(|c| mount.controllers.contains(c))
                    && mount.controllers.iter().all(|c| m.controllers.contains(c))
            }
        });
        let Some(own) = own else { continue };
        let cgroup = configured.unwrap_or(&own.path);
        let Some(parent) = under_mount(&mount, cgroup) else {
            continue;
        };
        // A hierarchy mounted twice is one hierarchy: the first mount serves.
        if out
            .iter()
            .any(|h| h.version == mount.version && h.controllers == mount.controllers)
        {
            continue;
        }
        let mover = match mount.version {
            Version::V1 => None,
            // A caller whose own cgroup its mount does not show can move nothing out of it.
            Version::V2 => Some(match under_mount(&mount, &own.path) {
                Some(own_dir) => common_ancestor(&own_dir, &parent),
                None => mount.mount_point.clone(),
            }),
        };
        out.push(Hierarchy {
            version: mount.version,
            controllers: mount.controllers,
            parent,
            mover,
        });
    }
    out
}

/// The deepest directory both `a` and `b` are in (or are).
fn common_ancestor(a: &Path, b: &Path) -> PathBuf {
    a.components()
        .zip(b.components())
        .take_while(|(x, y)| x == y)
        .map(|(x, _)| x)
        .collect()
}

/// Where an agent's cgroup for some controllers goes: the parent directory, and which
/// interface it speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placed {
    pub version: Version,
    /// The agent's cgroup directory.
    pub dir: PathBuf,
    /// The controllers limited through it (`memory`, `cpu`, `pids`).
    pub controllers: Vec<String>,
}

/// What `agents/NAME/cgroups.json` holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub cgroups: Vec<Placed>,
}

/// The name of agent `name`'s cgroup under a parent: the agent's name, with a mark of its
/// `$AGENTGATE_HOME` so that two homes of one user (two hosts of a test machine) never share
/// one.
pub fn cgroup_name(home: &Path, name: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(home.as_os_str().as_encoded_bytes());
    let mark: String = digest.iter().take(3).map(|b| format!("{b:02x}")).collect();
    format!("agentgate-{mark}-{name}")
}

/// Where each controller `limits` needs would be served, or what the host lacks.
pub fn plan(files: &Files, name: &str, limits: &Limits) -> Result<Vec<Placed>> {
    let read = |path: &str| {
        std::fs::read_to_string(path).map_err(|e| Error::Failed(format!("cannot read {path}: {e}")))
    };
    let proc_cgroup = read("/proc/self/cgroup")?;
    let mountinfo = read("/proc/self/mountinfo")?;
    let parent_file = files.home().join(PARENT_FILE);
    let configured = match std::fs::read_to_string(&parent_file) {
        Ok(text) => Some(text.trim().to_owned()).filter(|t| !t.is_empty()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("reading", parent_file)(e)),
    };
    if let Some(path) = &configured
        && !path.starts_with('/')
    {
        return Err(Error::Failed(format!(
            "{} holds '{path}', which is not a cgroup path: write one as /proc/self/cgroup does (/agentgate, say)",
            parent_file.display()
        )));
    }
    let found = hierarchies(&proc_cgroup, &mountinfo, configured.as_deref());
    let cgroup = cgroup_name(files.home(), name);
    let mut placed: Vec<Placed> = Vec::new();
    for controller in needed(limits) {
        let Some(hierarchy) = found.iter().find(|h| serves(h, controller.name())) else {
            return Err(lacking(controller, &found, configured.as_deref()));
        };
        let dir = hierarchy.parent.join(&cgroup);
        match placed.iter_mut().find(|p| p.dir == dir) {
            Some(p) => p.controllers.push(controller.name().to_owned()),
            None => placed.push(Placed {
                version: hierarchy.version.clone(),
                dir,
                controllers: vec![controller.name().to_owned()],
            }),
        }
    }
    Ok(placed)
}

/// Whether `hierarchy`'s parent can hold a child cgroup limited by `controller`, made and
/// filled by this user.
fn serves(hierarchy: &Hierarchy, controller: &str) -> bool {
    let parent = &hierarchy.parent;
    let has_controller = match hierarchy.version {
        Version::V1 => hierarchy.controllers.iter().any(|c| c == controller),
        Version::V2 => std::fs::read_to_string(parent.join("cgroup.subtree_control"))
            .is_ok_and(|text| text.split_whitespace().any(|c| c == controller)),
    };
    // On v2 the agent's pane (started by a tmux server in the caller's kind of cgroup) and
    // its sessions must be able to move into it.
    let can_move_in = hierarchy.mover.as_ref().is_none_or(|mover| {
        rustix::fs::access(mover.join("cgroup.procs"), rustix::fs::Access::WRITE_OK).is_ok()
    });
    has_controller && writable(parent) && can_move_in
}

fn writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
        && dir.is_dir()
}

/// What the host lacks to apply `controller`'s limit, and what to do.
fn lacking(controller: Controller, found: &[Hierarchy], configured: Option<&str>) -> Error {
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| nix::unistd::getuid().to_string(), |u| u.name);
    let c = controller.name();
    let mounted = found.iter().any(|h| match h.version {
        Version::V1 => h.controllers.iter().any(|x| x == c),
        Version::V2 => true,
    });
    let what = if mounted {
        format!("this host gives user '{user}' no delegated cgroup with the {c} controller")
    } else {
        format!(
            "this host has no cgroup hierarchy with the {c} controller mounted where user '{user}' runs"
        )
    };
    let tried = match configured {
        Some(path) => format!(" (looked under {path}, from $AGENTGATE_HOME/{PARENT_FILE})"),
        None => String::new(),
    };
    Error::HostLacks(format!(
        "{what}{tried}: cgroup v2 needs Delegate=yes for the user's service and {c} in the parent's cgroup.subtree_control; cgroup v1 needs /sys/fs/cgroup/{c}/<dir> owned by the user, named in $AGENTGATE_HOME/{PARENT_FILE}. Ask without {}, or use another host",
        controller.option()
    ))
}

/// Refuses `limits` this host cannot apply, before anything of the agent is made.
pub fn check(files: &Files, name: &str, limits: &Limits) -> Result<()> {
    if limits.is_empty() {
        return Ok(());
    }
    limits.check().map_err(Error::InvalidInput)?;
    plan(files, name, limits).map(|_| ())
}

/// Makes agent `meta`'s cgroups (anew, where they are found now), writes its limits and
/// records them; nothing for an agent without limits.
pub fn apply(files: &Files, meta: &AgentMeta) -> Result<()> {
    let limits = &meta.request.limits;
    if limits.is_empty() {
        return Ok(());
    }
    let name = &meta.request.name;
    let placed = plan(files, name, limits)?;
    if let Err(e) = make(&placed, limits) {
        // None is left half made (one hierarchy's cgroup made, another's refused).
        remove_dirs(name, &placed);
        return Err(e);
    }
    let record = Record { cgroups: placed };
    let path = files.agent_dir(name).join(RECORD_FILE);
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| Error::Failed(e.to_string()))?;
    std::fs::write(&path, bytes).map_err(Error::io("writing", path))
}

/// Makes each cgroup directory (kept when it is there) and writes the limits.
fn make(placed: &[Placed], limits: &Limits) -> Result<()> {
    for p in placed {
        match std::fs::create_dir(&p.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("making the cgroup", &p.dir)(e)),
        }
        for (file, value) in limit_files(&p.version, &p.controllers, limits) {
            let path = p.dir.join(file);
            std::fs::write(&path, value.as_bytes()).map_err(Error::io("writing", path))?;
        }
    }
    Ok(())
}

/// The files that set `limits` for `controllers` in a cgroup of `version`, and what each is
/// given.
pub fn limit_files(
    version: &Version,
    controllers: &[String],
    limits: &Limits,
) -> Vec<(&'static str, String)> {
    let has = |c: &str| controllers.iter().any(|x| x == c);
    let mut out = Vec::new();
    if let (true, Some(bytes)) = (has("memory"), limits.memory_bytes) {
        out.push(match version {
            Version::V1 => ("memory.limit_in_bytes", bytes.to_string()),
            Version::V2 => ("memory.max", bytes.to_string()),
        });
    }
    if let (true, Some(millis)) = (has("cpu"), limits.cpu_millis) {
        let quota = u64::from(millis) * CPU_PERIOD_US / 1000;
        match version {
            Version::V1 => {
                out.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
                out.push(("cpu.cfs_quota_us", quota.to_string()));
            }
            Version::V2 => out.push(("cpu.max", format!("{quota} {CPU_PERIOD_US}"))),
        }
    }
    if let (true, Some(pids)) = (has("pids"), limits.pids) {
        out.push(("pids.max", pids.to_string()));
    }
    out
}

fn read_record(files: &Files, name: &str) -> Option<Record> {
    let bytes = std::fs::read(files.agent_dir(name).join(RECORD_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Moves this process into agent `meta`'s cgroups, where it was recorded at its start, so
/// that what it runs next is limited; the agent's pane does this before its command runs.
pub fn join(files: &Files, meta: &AgentMeta) -> Result<()> {
    if meta.request.limits.is_empty() {
        return Ok(());
    }
    let name = &meta.request.name;
    let record = read_record(files, name).ok_or_else(|| {
        Error::Failed(format!(
            "agent '{name}' has limits ({}) but no cgroups were made for it: start it again",
            meta.request.limits.display()
        ))
    })?;
    join_record(&record)
}

/// For a session inside agent `meta` (`ssh NAME@gw CMD`, SFTP): joins its cgroups, made
/// again where they were if the agent's stop removed them, or anew if it never had any.
pub fn join_for_session(files: &Files, meta: &AgentMeta) -> Result<()> {
    if meta.request.limits.is_empty() {
        return Ok(());
    }
    let name = &meta.request.name;
    match read_record(files, name) {
        Some(record) => make(&record.cgroups, &meta.request.limits)?,
        None => apply(files, meta)?,
    }
    join(files, meta)
}

fn join_record(record: &Record) -> Result<()> {
    let pid = std::process::id().to_string();
    for p in &record.cgroups {
        let procs = p.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.as_bytes()).map_err(Error::io("joining the cgroup", procs))?;
    }
    Ok(())
}

/// How many times `remove` tries a cgroup whose last processes are still being reaped.
const REMOVE_TRIES: u32 = 20;

/// Removes agent `name`'s cgroups once they are empty (after `stop` or `destroy` ended its
/// processes); one that still has processes is left, and said so on stderr.
pub fn remove(files: &Files, name: &str) {
    if let Some(record) = read_record(files, name) {
        remove_dirs(name, &record.cgroups);
    }
}

fn remove_dirs(name: &str, placed: &[Placed]) {
    for p in placed {
        let mut tries = 0;
        loop {
            match std::fs::remove_dir(&p.dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) => {
                    tries += 1;
                    if tries >= REMOVE_TRIES {
                        eprintln!(
                            "hostctl: agent '{name}''s cgroup {} is left in place: {e} (processes still in it: {})",
                            p.dir.display(),
                            std::fs::read_to_string(p.dir.join("cgroup.procs"))
                                .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                                .unwrap_or_default()
                        );
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cgroup v1 hybrid machine without systemd as PID 1 (this project's CI): the memory
    /// controller's hierarchy puts the process in a cgroup of its own, the others at the root.
    const HYBRID_CGROUP: &str =
        "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/793b\n2:cpuacct:/\n1:cpu:/\n0::/\n";
    const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
";

    #[test]
    fn on_cgroup_v1_each_controller_has_its_parent_under_its_own_mount() {
        let found = hierarchies(HYBRID_CGROUP, HYBRID_MOUNTINFO, None);
        let parent_of = |c: &str| {
            found
                .iter()
                .find(|h| h.version == Version::V1 && h.controllers.iter().any(|x| x == c))
                .map(|h| h.parent.clone())
        };
        assert_eq!(
            parent_of("memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/process_api/793b"))
        );
        assert_eq!(
            parent_of("pids"),
            Some(PathBuf::from("/sys/fs/cgroup/pids"))
        );
        assert_eq!(parent_of("cpu"), Some(PathBuf::from("/sys/fs/cgroup/cpu")));
        // name=systemd is a named hierarchy with no controller.
        assert!(
            found
                .iter()
                .all(|h| !h.controllers.iter().any(|c| c.contains('=')))
        );
        let unified = found.iter().find(|h| h.version == Version::V2).expect("v2");
        assert_eq!(unified.parent, PathBuf::from("/sys/fs/cgroup/unified"));
    }

    #[test]
    fn a_configured_parent_replaces_the_callers_own_cgroup_in_every_hierarchy() {
        let found = hierarchies(HYBRID_CGROUP, HYBRID_MOUNTINFO, Some("/agentgate-ag"));
        assert!(
            found
                .iter()
                .any(|h| h.parent == Path::new("/sys/fs/cgroup/memory/agentgate-ag"))
        );
        assert!(
            found
                .iter()
                .any(|h| h.parent == Path::new("/sys/fs/cgroup/pids/agentgate-ag"))
        );
    }

    #[test]
    fn on_cgroup_v2_the_parent_is_the_users_delegated_service_under_the_mount() {
        let cgroup =
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/agentgate.service\n";
        let mountinfo = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        let found = hierarchies(cgroup, mountinfo, None);
        assert_eq!(
            found,
            vec![Hierarchy {
                version: Version::V2,
                controllers: vec![],
                parent: PathBuf::from(
                    "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/agentgate.service"
                ),
                mover: Some(PathBuf::from(
                    "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/app.slice/agentgate.service"
                )),
            }]
        );
    }

    #[test]
    fn on_cgroup_v2_a_move_into_a_named_parent_needs_the_common_ancestor() {
        let mountinfo = "29 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let parent = "/user.slice/user-1000.slice/user@1000.service/agentgate";
        // From an ssh session's scope: the move crosses user-1000.slice, which root owns.
        let from_session = hierarchies(
            "0::/user.slice/user-1000.slice/session-3.scope\n",
            mountinfo,
            Some(parent),
        );
        assert_eq!(
            from_session[0].mover,
            Some(PathBuf::from("/sys/fs/cgroup/user.slice/user-1000.slice"))
        );
        // From inside the user's service: within the delegated tree.
        let from_service = hierarchies(
            "0::/user.slice/user-1000.slice/user@1000.service/app.slice/tmux.scope\n",
            mountinfo,
            Some(parent),
        );
        assert_eq!(
            from_service[0].mover,
            Some(PathBuf::from(
                "/sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service"
            ))
        );
        // v1 has no such rule.
        let v1 = hierarchies(
            "4:memory:/a\n",
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
            Some("/b"),
        );
        assert_eq!(v1[0].mover, None);
    }

    #[test]
    fn a_mount_of_a_subtree_maps_only_the_cgroups_below_its_root() {
        // A container sees its own cgroup as the root of its mount.
        let mountinfo =
            "40 31 0:32 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        let inside = hierarchies("4:memory:/docker/abc/agents\n", mountinfo, None);
        assert_eq!(
            inside[0].parent,
            PathBuf::from("/sys/fs/cgroup/memory/agents")
        );
        let root = hierarchies("4:memory:/docker/abc\n", mountinfo, None);
        assert_eq!(root[0].parent, PathBuf::from("/sys/fs/cgroup/memory"));
        // A cgroup the mount does not show (a sibling, or one that only shares a prefix).
        assert!(hierarchies("4:memory:/docker/abcdef\n", mountinfo, None).is_empty());
        assert!(hierarchies("4:memory:/other\n", mountinfo, None).is_empty());
        assert!(hierarchies("4:memory:/docker/abc/../x\n", mountinfo, None).is_empty());
    }

    #[test]
    fn combined_controllers_and_escaped_mount_points_are_read() {
        let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,nosuid,cpu,cpuacct\n33 31 0:30 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\n";
        let found = hierarchies("3:cpu,cpuacct:/a\n2:pids:/b\n", mountinfo, None);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(
            found[0].parent,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/a")
        );
        assert_eq!(found[1].parent, PathBuf::from("/mnt/my cgroups/b"));
    }

    #[test]
    fn no_cgroup_mount_gives_no_hierarchy() {
        // `ip netns exec` mounts a fresh /sys: the cgroup mounts are gone from its view.
        let mountinfo =
            "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n900 22 0:50 / /sys rw - sysfs none rw\n";
        assert!(hierarchies(HYBRID_CGROUP, mountinfo, None).is_empty());
    }

    #[test]
    fn limits_are_written_in_each_versions_files() {
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpu_millis: Some(500),
            pids: Some(32),
        };
        let all: Vec<String> = ["memory", "cpu", "pids"].map(str::to_owned).to_vec();
        assert_eq!(
            limit_files(&Version::V1, &all, &limits),
            vec![
                ("memory.limit_in_bytes", "67108864".to_owned()),
                ("cpu.cfs_period_us", "100000".to_owned()),
                ("cpu.cfs_quota_us", "50000".to_owned()),
                ("pids.max", "32".to_owned()),
            ]
        );
        assert_eq!(
            limit_files(&Version::V2, &all, &limits),
            vec![
                ("memory.max", "67108864".to_owned()),
                ("cpu.max", "50000 100000".to_owned()),
                ("pids.max", "32".to_owned()),
            ]
        );
        // Only the controllers of that cgroup.
        assert_eq!(
            limit_files(&Version::V1, &["pids".to_owned()], &limits),
            vec![("pids.max", "32".to_owned())]
        );
    }

    #[test]
    fn the_cgroup_name_differs_between_homes() {
        let a = cgroup_name(Path::new("/home/ag/.agentgate"), "fix-ci");
        let b = cgroup_name(Path::new("/srv/other/.agentgate"), "fix-ci");
        assert!(a.starts_with("agentgate-") && a.ends_with("-fix-ci"), "{a}");
        assert_ne!(a, b);
    }
}
