//! The SSH agents forwarded into an agent (`ssh -A NAME@gw`): the directory on the agent's
//! host where the gateway listens for them, one socket per connection that forwards its
//! agent, and the stable link `agent.sock` that `SSH_AUTH_SOCK` names in the agent's
//! environment and in its attached sessions.
//!
//! The gateway makes the sockets (it listens itself on `local`; on a remote host the host's
//! sshd listens for it, as for `ssh -R`), so it alone knows which are alive: each call here
//! says which to keep, and every other file of the directory (a socket left by a gateway that
//! restarted, whose listener is gone) is removed. The link points at the newest live socket,
//! so a long-lived tmux session whose shells read `SSH_AUTH_SOCK` once reaches whichever
//! forwarding is live now.
//!
//! The directory is inside the agent's own directory, which the agent's sandbox shows
//! read-only at the same path: the agent reaches its own forwarded agents there, and no other
//! agent's. It is 0700, as sshd's `/tmp/ssh-XXXX` is.

use std::path::{Path, PathBuf};

use crate::api::{AgentSockets, SocketLink, validate_socket_id};
use crate::error::{Error, Result};
use crate::files::{Files, SSH_AGENT_LINK as LINK_NAME};

/// The most bytes a unix socket's path may have (`sun_path` holds 108 with its NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Arranges agent `name`'s directory: makes it if need be, removes every socket but those in
/// `keep` and the one `link` names, and does `link` to the stable link. Refused when a socket
/// in the directory would have a path longer than a unix socket may have.
pub fn arrange(
    files: &Files,
    name: &str,
    keep: &[String],
    link: &SocketLink,
) -> Result<AgentSockets> {
    crate::api::validate_agent_name(name).map_err(Error::InvalidInput)?;
    for id in keep.iter().chain(match link {
        SocketLink::To(id) => Some(id),
        SocketLink::Keep | SocketLink::Remove => None,
    }) {
        validate_socket_id(id).map_err(Error::InvalidInput)?;
    }
    if !files.meta_path(name).is_file() {
        return Err(Error::NotFound(format!("agent '{name}' not found")));
    }
    let dir = files.ssh_agent_dir(name);
    check_length(&dir)?;
    make_private_dir(&dir)?;
    let linked = match link {
        SocketLink::To(id) => Some(id.as_str()),
        SocketLink::Keep | SocketLink::Remove => None,
    };
    for entry in std::fs::read_dir(&dir).map_err(Error::io("reading", &dir))? {
        let entry = entry.map_err(Error::io("reading", &dir))?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file == LINK_NAME || keep.iter().any(|k| *k == file) || linked == Some(&*file) {
            continue;
        }
        remove(&entry.path())?;
    }
    let stable = dir.join(LINK_NAME);
    match link {
        SocketLink::Keep => {}
        SocketLink::Remove => remove(&stable)?,
        SocketLink::To(id) => {
            // A new link beside, then renamed over the old one: whoever reads the link sees
            // the old socket or the new one, never none.
            let fresh = dir.join(format!(".{LINK_NAME}.{}", std::process::id()));
            remove(&fresh)?;
            std::os::unix::fs::symlink(id, &fresh).map_err(Error::io("creating", &fresh))?;
            std::fs::rename(&fresh, &stable).map_err(Error::io("replacing", &stable))?;
        }
    }
    Ok(AgentSockets { dir, link: stable })
}

/// Refuses a directory whose sockets' paths would be too long for the system.
fn check_length(dir: &Path) -> Result<()> {
    let longest = dir.as_os_str().len() + 1 + crate::api::MAX_SOCKET_ID_LEN;
    if longest > MAX_SOCKET_PATH {
        return Err(Error::Failed(format!(
            "the forwarded agent's socket would be at a path of {longest} bytes under {}, more than \
             the {MAX_SOCKET_PATH} a unix socket's path may have: give the agent a shorter name, or \
             the host user a shorter home",
            dir.display()
        )));
    }
    Ok(())
}

fn make_private_dir(dir: &PathBuf) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io("creating", dir))?;
    // One made before by another umask is made private too.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io("setting", dir))
}

fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn agent(files: &Files, name: &str) {
        let dir = files.agent_dir(name);
        std::fs::create_dir_all(&dir).expect("agent dir");
        std::fs::write(files.meta_path(name), "{}").expect("meta");
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_link_points_at_the_newest_socket_and_stale_ones_go() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = Files::new(tmp.path().join(".agentgate"));
        agent(&files, "w1");
        let made = arrange(&files, "w1", &[], &SocketLink::Keep).expect("arrange");
        assert_eq!(made.dir, files.ssh_agent_dir("w1"));
        assert_eq!(
            std::fs::metadata(&made.dir)
                .expect("dir")
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // Two live sockets (plain files stand for them here) and one a restarted gateway left.
        for id in ["aa", "bb", "0ld"] {
            std::fs::write(made.dir.join(id), "").expect("socket");
        }
        arrange(&files, "w1", &["aa".into()], &SocketLink::To("bb".into())).expect("link");
        assert_eq!(listing(&made.dir), ["aa", "agent.sock", "bb"]);
        assert_eq!(
            std::fs::read_link(&made.link).expect("link"),
            PathBuf::from("bb")
        );
        // bb's connection ends: the link goes back to aa.
        arrange(&files, "w1", &["aa".into()], &SocketLink::To("aa".into())).expect("relink");
        assert_eq!(listing(&made.dir), ["aa", "agent.sock"]);
        assert_eq!(
            std::fs::read_link(&made.link).expect("link"),
            PathBuf::from("aa")
        );
        // The last one ends: nothing is left.
        arrange(&files, "w1", &[], &SocketLink::Remove).expect("unlink");
        assert!(listing(&made.dir).is_empty());
    }

    #[test]
    fn names_paths_and_agents_are_checked() {
        let tmp = tempfile::tempdir().expect("tmp");
        let files = Files::new(tmp.path().join(".agentgate"));
        let missing = arrange(&files, "nobody", &[], &SocketLink::Keep).expect_err("no agent");
        assert!(matches!(missing, Error::NotFound(_)), "{missing:?}");
        agent(&files, "w1");
        for bad in ["", "../x", "ABC", "0123456789abcdef0"] {
            let e = arrange(&files, "w1", &[bad.into()], &SocketLink::Keep).expect_err(bad);
            assert!(e.to_string().contains("hexadecimal"), "{e}");
        }
        let e = arrange(&files, "w1", &[], &SocketLink::To("../../x".into())).expect_err("link");
        assert!(e.to_string().contains("hexadecimal"), "{e}");
        let long = "a".repeat(63);
        let deep = Files::new(
            tmp.path()
                .join("a-long-home-directory-for-a-user")
                .join(".agentgate"),
        );
        agent(&deep, &long);
        let e = arrange(&deep, &long, &[], &SocketLink::Keep).expect_err("too long");
        assert!(e.to_string().contains("shorter name"), "{e}");
    }
}
