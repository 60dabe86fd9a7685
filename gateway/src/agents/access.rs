//! Who may see and use what. Every route asks here: the control commands (`ssh gw CMD`), the
//! agent route (`ssh NAME@gw`: its login, sessions, files and forwards), the live view and
//! the watch feed, and the re-check of open connections when a key, a share or a role changes.
//!
//! The store gives plain facts (the operator as stored now, an agent's owner, the operators
//! it is shared with, its host); the rules are pure functions of them and of the gateway's
//! [`Policy`], so that every route's question has a unit test below. The lookups at the end
//! ([`agent`], [`agents`], [`snapshot`], [`snapshots`]) only fetch the facts and apply the
//! rules.
//!
//! The rules:
//! - An admin sees every agent; an operator, those they created and those shared with them.
//!   An agent someone may not see does not exist for them: every answer is the one for a
//!   name that is not taken ([`Denied::NoSuchAgent`]).
//! - The gateway's own machine (`local`) runs agents as the gateway's user, who can read the
//!   gateway's database (every key and secret): an agent there is a way to become admin, so
//!   only admins may have or use agents there, unless `hosts.operators_on_local` says
//!   otherwise; an operator's agent there then runs in a sandbox, which hides the gateway's
//!   files ([`sandbox_on`]).
//! - Port forwarding reaches an agent's host on connections to that agent (`NAME@gw`), never
//!   on the control route, and only while `ssh.allow_forwarding` is on.
//! - A connection lives on its credential: once the key or tailnet login is removed, or names
//!   another operator, it opens no channel and is ended; and one that reaches an agent its
//!   operator may no longer use is ended.
//! - What changes the gateway for everyone (keys of others, hosts, secrets) and the whole audit
//!   trail are for admins. What disposes of an agent or a snapshot (destroy, share, tag,
//!   snapshot, remove a snapshot) is for its owner and admins: an operator an agent is shared
//!   with may use it, not dispose of it.
//! - The audit trail an operator reads is their own events and those about the agents they
//!   may see now; admins read all of it.
//! - A snapshot is seen by admins, by its owner (whatever became of its agent), and by those
//!   who may see the very agent it was taken of (same name, same creation time).

use hostctl::api::Sandbox;

use crate::hosts::LOCAL_HOST;
use crate::model::Role;
use crate::store::StatusChange;
use crate::store::{AgentRecord, EventScope, Operator, SnapshotRecord, Store};

/// The gateway's settings that the rules read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `hosts.operators_on_local`: operators, not only admins, may have agents on `local`.
    pub operators_on_local: bool,
    /// `ssh.allow_forwarding`.
    pub allow_forwarding: bool,
    /// `ssh.allow_remote_forwarding`.
    pub allow_remote_forwarding: bool,
}

impl Policy {
    pub fn from_config(config: &crate::config::Config) -> Policy {
        Policy {
            operators_on_local: config.hosts.operators_on_local,
            allow_forwarding: config.ssh.allow_forwarding,
            allow_remote_forwarding: config.ssh.allow_remote_forwarding,
        }
    }
}

/// The facts about an agent that decide who may see and use it.
#[derive(Clone, Copy, Debug)]
pub struct AgentFacts<'a> {
    pub host: &'a str,
    /// Who created it (None for one taken up from a host with no record of its creator).
    pub owner: Option<&'a str>,
    pub shared_with: &'a [String],
}

impl<'a> From<&'a AgentRecord> for AgentFacts<'a> {
    fn from(agent: &'a AgentRecord) -> Self {
        AgentFacts {
            host: &agent.host,
            owner: agent.created_by.as_deref(),
            shared_with: &agent.shared_with,
        }
    }
}

impl<'a> From<&'a StatusChange> for AgentFacts<'a> {
    /// The agent as it was when its status changed: who may be told of the change.
    fn from(change: &'a StatusChange) -> Self {
        AgentFacts {
            host: &change.host,
            owner: change.owner.as_deref(),
            shared_with: &change.shared_with,
        }
    }
}

/// Why an operator may not do what they asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The agent does not exist for them (there is none, or they may not see it).
    NoSuchAgent,
    /// The agent runs on `local`, where only admins may have agents.
    LocalForAdminsOnly,
    /// A forward asked on the control route.
    ForwardNeedsAnAgent,
    /// `ssh.allow_forwarding` is off.
    ForwardingOff,
    /// `ssh.allow_remote_forwarding` is off.
    RemoteForwardingOff,
    /// An operator's agent on `local` without a sandbox.
    UnsandboxedOnLocal,
}

/// Whether `viewer` may see an agent with these facts (in `list`, `info`, the watch feed, the
/// live view ...).
pub fn may_see(viewer: &Operator, agent: AgentFacts<'_>) -> bool {
    viewer.role == Role::Admin
        || agent.owner == Some(viewer.name.as_str())
        || agent.shared_with.contains(&viewer.name)
}

/// Whether `operator` administers the gateway: manages keys of others, hosts and secrets, and
/// reads the whole audit trail.
pub fn may_administer(operator: &Operator) -> bool {
    operator.role == Role::Admin
}

/// Whether `operator` may dispose of what `owner` owns (an agent, by its creator, or a
/// snapshot, by its agent's owner when it was taken).
pub fn may_dispose(operator: &Operator, owner: Option<&str>) -> bool {
    may_administer(operator) || owner == Some(operator.name.as_str())
}

/// Whether `operator` may have and use agents on `host` (see the module's rules).
pub fn may_use_host(operator: &Operator, host: &str, policy: Policy) -> bool {
    host != LOCAL_HOST || operator.role == Role::Admin || policy.operators_on_local
}

/// Where a new agent's wish for a sandbox comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SandboxAsked {
    /// Asked for by whoever makes it (`create --sandbox`, a template, the configuration, a
    /// restore's `--sandbox`).
    Asked(Option<Sandbox>),
    /// Carried from the agent or snapshot it is a copy of (clone, migrate, restore).
    Copied(Option<Sandbox>),
}

/// The sandbox an agent of `operator`'s on `host` is made with. On `local` a sandbox is what
/// keeps an agent from the gateway's database and keys, so an operator's agent there gets
/// one: asking for none is refused, a copy of an agent without one gets one, and one named
/// nowhere is asked for explicitly (a host that cannot make it then refuses instead of
/// quietly making none). Anyone else's is as asked or copied.
pub fn sandbox_on(
    operator: &Operator,
    host: &str,
    asked: SandboxAsked,
) -> Result<Option<Sandbox>, Denied> {
    let operators_local = host == LOCAL_HOST && operator.role != Role::Admin;
    match asked {
        SandboxAsked::Asked(asked) | SandboxAsked::Copied(asked) if !operators_local => Ok(asked),
        SandboxAsked::Asked(Some(Sandbox::None)) => Err(Denied::UnsandboxedOnLocal),
        SandboxAsked::Asked(_) | SandboxAsked::Copied(_) => Ok(Some(Sandbox::Bwrap)),
    }
}

/// Whether `operator` may use an agent (`None`: there is none): every command on one agent,
/// and every session, file transfer and forward of the agent route.
pub fn may_use(
    operator: &Operator,
    agent: Option<AgentFacts<'_>>,
    policy: Policy,
) -> Result<(), Denied> {
    let agent = agent
        .filter(|a| may_see(operator, *a))
        .ok_or(Denied::NoSuchAgent)?;
    if !may_use_host(operator, agent.host, policy) {
        return Err(Denied::LocalForAdminsOnly);
    }
    Ok(())
}

/// Whether a connection may open a forward: `agent` is the agent its login names (None on the
/// control route). The agent itself is then checked with [`may_use`].
pub fn may_forward(agent: Option<&str>, policy: Policy) -> Result<(), Denied> {
    match agent {
        None => Err(Denied::ForwardNeedsAnAgent),
        Some(_) if !policy.allow_forwarding => Err(Denied::ForwardingOff),
        Some(_) => Ok(()),
    }
}

/// Whether a connection may listen on its agent's host (`ssh -R`): `agent` as for
/// [`may_forward`]; the agent itself is then checked with [`may_use`].
pub fn may_listen(agent: Option<&str>, policy: Policy) -> Result<(), Denied> {
    match agent {
        None => Err(Denied::ForwardNeedsAnAgent),
        Some(_) if !policy.allow_remote_forwarding => Err(Denied::RemoteForwardingOff),
        Some(_) => Ok(()),
    }
}

/// Whether a connection whose login was `operator`'s still lets them in: `now` is the
/// operator its credential names as stored now (None once the key or login is removed).
pub fn still_admitted(operator: &str, now: Option<&Operator>) -> bool {
    now.is_some_and(|now| now.name == operator)
}

/// Whether an open connection of `operator` (as stored now) may keep reaching an agent it
/// reached: `agent` is that agent now (None once it is gone: its sessions end by themselves,
/// and one renamed is reached by its old name no more).
pub fn may_keep(operator: &Operator, agent: Option<AgentFacts<'_>>, policy: Policy) -> bool {
    agent.is_none() || may_use(operator, agent, policy).is_ok()
}

/// Whether `viewer` may see `snapshot`; `agent` is the agent of its name now, if there is one.
pub fn may_see_snapshot(
    viewer: &Operator,
    snapshot: &SnapshotRecord,
    agent: Option<&AgentRecord>,
) -> bool {
    let its_agent = agent
        .filter(|a| a.name == snapshot.agent && Some(a.created_at) == snapshot.agent_created_at);
    viewer.role == Role::Admin
        || snapshot.owner.as_deref() == Some(viewer.name.as_str())
        || its_agent.is_some_and(|a| may_see(viewer, a.into()))
}

// ---- lookups: the store's facts through the rules -----------------------------------------

/// Agent `name`, if `viewer` may see it.
pub async fn agent(
    store: &Store,
    viewer: &Operator,
    name: &str,
) -> crate::store::Result<Option<AgentRecord>> {
    Ok(store
        .agent(name)
        .await?
        .filter(|a| may_see(viewer, a.into())))
}

/// Every agent `viewer` may see, by name.
pub async fn agents(store: &Store, viewer: &Operator) -> crate::store::Result<Vec<AgentRecord>> {
    let mut agents = store.agents().await?;
    agents.retain(|a| may_see(viewer, a.into()));
    Ok(agents)
}

/// Snapshot `id`, if `viewer` may see it.
pub async fn snapshot(
    store: &Store,
    viewer: &Operator,
    id: &str,
) -> crate::store::Result<Option<SnapshotRecord>> {
    let Some(snapshot) = store.snapshot(id).await? else {
        return Ok(None);
    };
    let agent = store.agent(&snapshot.agent).await?;
    Ok(may_see_snapshot(viewer, &snapshot, agent.as_ref()).then_some(snapshot))
}

/// The snapshots `viewer` may see (of agent `of` only, if given), oldest first.
pub async fn snapshots(
    store: &Store,
    viewer: &Operator,
    of: Option<&str>,
) -> crate::store::Result<Vec<SnapshotRecord>> {
    let mut snapshots = store.snapshots(of).await?;
    if viewer.role == Role::Admin {
        return Ok(snapshots);
    }
    let agents: std::collections::HashMap<String, AgentRecord> = store
        .agents()
        .await?
        .into_iter()
        .map(|a| (a.name.clone(), a))
        .collect();
    snapshots.retain(|s| may_see_snapshot(viewer, s, agents.get(&s.agent)));
    Ok(snapshots)
}

/// The part of the audit trail `viewer` may read (`None`: all of it).
pub async fn events_scope(
    store: &Store,
    viewer: &Operator,
) -> crate::store::Result<Option<EventScope>> {
    if may_administer(viewer) {
        return Ok(None);
    }
    let agents = agents(store, viewer).await?;
    Ok(Some(EventScope {
        operator: viewer.name.clone(),
        agents: agents.into_iter().map(|a| a.name).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(name: &str, role: Role) -> Operator {
        Operator {
            id: 0,
            name: name.into(),
            role,
        }
    }

    fn alice() -> Operator {
        who("alice", Role::Operator)
    }
    fn bob() -> Operator {
        who("bob", Role::Operator)
    }
    fn root() -> Operator {
        who("root", Role::Admin)
    }

    fn facts<'a>(host: &'a str, owner: &'a str, shared_with: &'a [String]) -> AgentFacts<'a> {
        AgentFacts {
            host,
            owner: Some(owner),
            shared_with,
        }
    }

    const STRICT: Policy = Policy {
        operators_on_local: false,
        allow_forwarding: true,
        allow_remote_forwarding: true,
    };

    #[test]
    fn an_agent_is_seen_by_admins_its_owner_and_those_it_is_shared_with() {
        let bob_too = ["bob".to_owned()];
        let alices = facts("h1", "alice", &[]);
        assert!(may_see(&alice(), alices));
        assert!(may_see(&root(), alices));
        assert!(!may_see(&bob(), alices));
        assert!(may_see(&bob(), facts("h1", "alice", &bob_too)));
        // One with no recorded creator: admins only.
        let orphan = AgentFacts {
            host: "h1",
            owner: None,
            shared_with: &[],
        };
        assert!(may_see(&root(), orphan));
        assert!(!may_see(&alice(), orphan));
    }

    #[test]
    fn a_control_command_or_the_agent_route_on_an_agent_one_may_not_see_finds_none() {
        // The same answer as for a name that is not taken: nothing tells an operator that
        // someone else's agent exists.
        let alices = facts("h1", "alice", &[]);
        assert_eq!(
            may_use(&bob(), Some(alices), STRICT),
            Err(Denied::NoSuchAgent)
        );
        assert_eq!(may_use(&bob(), None, STRICT), Err(Denied::NoSuchAgent));
        assert_eq!(may_use(&alice(), Some(alices), STRICT), Ok(()));
        assert_eq!(may_use(&root(), Some(alices), STRICT), Ok(()));
    }

    #[test]
    fn an_operators_agent_on_local_runs_in_a_sandbox() {
        use SandboxAsked::{Asked, Copied};
        let none = Some(Sandbox::None);
        let bwrap = Some(Sandbox::Bwrap);
        assert_eq!(
            sandbox_on(&alice(), LOCAL_HOST, Asked(none)),
            Err(Denied::UnsandboxedOnLocal)
        );
        // Asked for explicitly when nothing was named, so a host without bwrap refuses; a
        // copy of an agent without one gets one.
        assert_eq!(sandbox_on(&alice(), LOCAL_HOST, Asked(None)), Ok(bwrap));
        assert_eq!(sandbox_on(&alice(), LOCAL_HOST, Asked(bwrap)), Ok(bwrap));
        assert_eq!(sandbox_on(&alice(), LOCAL_HOST, Copied(none)), Ok(bwrap));
        assert_eq!(sandbox_on(&alice(), LOCAL_HOST, Copied(None)), Ok(bwrap));
        // Elsewhere, and for admins, as asked or copied.
        assert_eq!(sandbox_on(&alice(), "h1", Asked(none)), Ok(none));
        assert_eq!(sandbox_on(&alice(), "h1", Copied(None)), Ok(None));
        assert_eq!(sandbox_on(&root(), LOCAL_HOST, Asked(none)), Ok(none));
        assert_eq!(sandbox_on(&root(), LOCAL_HOST, Copied(none)), Ok(none));
        assert_eq!(sandbox_on(&root(), LOCAL_HOST, Asked(None)), Ok(None));
    }

    #[test]
    fn agents_on_local_are_for_admins_unless_the_policy_lets_operators_in() {
        let on_local = facts(LOCAL_HOST, "alice", &[]);
        assert_eq!(
            may_use(&alice(), Some(on_local), STRICT),
            Err(Denied::LocalForAdminsOnly)
        );
        assert_eq!(may_use(&root(), Some(on_local), STRICT), Ok(()));
        let open = Policy {
            operators_on_local: true,
            ..STRICT
        };
        assert_eq!(may_use(&alice(), Some(on_local), open), Ok(()));
        // Not seeing it comes first: a stranger learns nothing about where it runs.
        assert_eq!(
            may_use(&bob(), Some(on_local), STRICT),
            Err(Denied::NoSuchAgent)
        );
        assert!(!may_use_host(&alice(), LOCAL_HOST, STRICT));
        assert!(may_use_host(&alice(), "h1", STRICT));
        assert!(may_use_host(&alice(), LOCAL_HOST, open));
        assert!(may_use_host(&root(), LOCAL_HOST, STRICT));
    }

    #[test]
    fn only_owners_and_admins_dispose_and_only_admins_administer() {
        assert!(may_dispose(&alice(), Some("alice")));
        assert!(may_dispose(&root(), Some("alice")));
        assert!(may_dispose(&root(), None));
        // Shared with bob: he may use it, not dispose of it.
        assert!(!may_dispose(&bob(), Some("alice")));
        assert!(!may_dispose(&alice(), None));
        assert!(may_administer(&root()));
        assert!(!may_administer(&alice()));
    }

    #[test]
    fn forwards_are_for_the_agent_route_and_only_while_forwarding_is_on() {
        assert_eq!(may_forward(None, STRICT), Err(Denied::ForwardNeedsAnAgent));
        assert_eq!(may_forward(Some("w"), STRICT), Ok(()));
        let off = Policy {
            allow_forwarding: false,
            ..STRICT
        };
        assert_eq!(may_forward(Some("w"), off), Err(Denied::ForwardingOff));
        assert_eq!(may_forward(None, off), Err(Denied::ForwardNeedsAnAgent));
        // `-R` has a switch of its own.
        assert_eq!(may_listen(Some("w"), off), Ok(()));
    }

    #[test]
    fn remote_forwards_are_for_the_agent_route_and_only_while_they_are_on() {
        assert_eq!(may_listen(None, STRICT), Err(Denied::ForwardNeedsAnAgent));
        assert_eq!(may_listen(Some("w"), STRICT), Ok(()));
        let off = Policy {
            allow_remote_forwarding: false,
            ..STRICT
        };
        assert_eq!(may_listen(Some("w"), off), Err(Denied::RemoteForwardingOff));
        assert_eq!(may_forward(Some("w"), off), Ok(()));
    }

    #[test]
    fn a_connection_lives_on_its_credential() {
        assert!(still_admitted("alice", Some(&alice())));
        // Removed, or the key now names someone else.
        assert!(!still_admitted("alice", None));
        assert!(!still_admitted("alice", Some(&bob())));
    }

    #[test]
    fn an_open_connection_to_an_agent_ends_when_its_operator_may_no_longer_use_it() {
        let shared = ["bob".to_owned()];
        assert!(may_keep(
            &bob(),
            Some(facts("h1", "alice", &shared)),
            STRICT
        ));
        // The share is taken back.
        assert!(!may_keep(&bob(), Some(facts("h1", "alice", &[])), STRICT));
        // An agent that is gone ends its sessions by itself.
        assert!(may_keep(&bob(), None, STRICT));
        // Moved to `local`, or its operator is no longer an admin: as at a new login.
        assert!(!may_keep(
            &alice(),
            Some(facts(LOCAL_HOST, "alice", &[])),
            STRICT
        ));
        assert!(may_keep(
            &root(),
            Some(facts(LOCAL_HOST, "alice", &[])),
            STRICT
        ));
    }

    #[test]
    fn a_status_change_is_told_to_those_who_may_see_its_agent() {
        // The watch feed, the live view's bell and the notification channels ask this.
        let change = StatusChange {
            at: crate::model::Timestamp::now(),
            agent: "a".into(),
            host: LOCAL_HOST.into(),
            from: None,
            to: "waiting".into(),
            reason: None,
            owner: Some("alice".into()),
            shared_with: vec!["bob".into()],
            tags: Default::default(),
            host_unreachable: false,
        };
        assert!(may_see(&alice(), (&change).into()));
        assert!(may_see(&bob(), (&change).into()));
        assert!(may_see(&root(), (&change).into()));
        assert!(!may_see(&who("eve", Role::Operator), (&change).into()));
    }

    fn agent_record(
        name: &str,
        owner: &str,
        created_at: &str,
        shared_with: &[&str],
    ) -> AgentRecord {
        let mut agent =
            crate::store::sample_agent(name, LOCAL_HOST, crate::model::AgentStatus::Running);
        agent.created_by = Some(owner.into());
        agent.created_at = created_at.parse().expect("a time");
        agent.shared_with = shared_with.iter().map(|s| (*s).to_owned()).collect();
        agent
    }

    fn snapshot_of(agent: &AgentRecord) -> SnapshotRecord {
        SnapshotRecord {
            id: format!("{}-20261123-1215", agent.name),
            agent: agent.name.clone(),
            agent_created_at: Some(agent.created_at),
            host: "h1".into(),
            label: None,
            created_at: "2026-11-23T12:15:00Z".parse().expect("a time"),
            size: 1,
            sha256: "ab".repeat(32),
            owner: agent.created_by.clone(),
            taken_by: agent.created_by.clone(),
            spec: agent.spec.clone(),
            idle_stop: None,
        }
    }

    #[test]
    fn a_snapshot_is_seen_through_the_very_agent_it_was_taken_of_and_by_its_owner() {
        let first = agent_record("w", "alice", "2026-11-23T10:00:00Z", &["bob"]);
        let snapshot = snapshot_of(&first);
        assert!(may_see_snapshot(&alice(), &snapshot, Some(&first)));
        assert!(may_see_snapshot(&bob(), &snapshot, Some(&first)));
        assert!(may_see_snapshot(&root(), &snapshot, None));
        let carol = who("carol", Role::Operator);
        assert!(!may_see_snapshot(&carol, &snapshot, Some(&first)));
        // The agent goes: its owner keeps it; a later agent of that name, shared with bob and
        // owned by carol, shows it to neither.
        let second = agent_record("w", "carol", "2026-11-23T11:00:00Z", &["bob"]);
        assert!(may_see_snapshot(&alice(), &snapshot, None));
        assert!(may_see_snapshot(&alice(), &snapshot, Some(&second)));
        assert!(!may_see_snapshot(&carol, &snapshot, Some(&second)));
        assert!(!may_see_snapshot(&bob(), &snapshot, Some(&second)));
        // A snapshot taken up from a host, with no creation time of its agent: its owner and
        // admins only.
        let mut adopted = snapshot.clone();
        adopted.agent_created_at = None;
        assert!(!may_see_snapshot(&bob(), &adopted, Some(&first)));
        assert!(may_see_snapshot(&alice(), &adopted, Some(&first)));
    }

    #[tokio::test]
    async fn the_lookups_apply_the_rules_to_what_the_store_holds() {
        let (_dir, store) = crate::store::tests::store().await;
        let w = agent_record("w", "alice", "2026-11-23T10:00:00Z", &[]);
        store.insert_agent(&w).await.expect("agent");
        let x = agent_record("x", "bob", "2026-11-23T10:00:00Z", &[]);
        store.insert_agent(&x).await.expect("agent");
        // The audit trail: root's events about w and x; alice reads those about w.
        for agent in ["w", "x"] {
            let event = crate::store::Event {
                operator: Some("root".into()),
                agent: Some(agent.into()),
                ..crate::store::Event::new(
                    crate::model::EventKind::Command,
                    crate::model::EventResult::Ok,
                )
            };
            store.record_event(&event).await.expect("event");
        }
        let read = |scope: Option<EventScope>| {
            let store = &store;
            async move {
                let filter = crate::store::EventFilter {
                    only: scope,
                    ..Default::default()
                };
                let events = store.events(&filter).await.expect("events");
                events
                    .into_iter()
                    .filter_map(|e| e.agent)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(events_scope(&store, &root()).await.expect("q"), None);
        let alices = events_scope(&store, &alice()).await.expect("q");
        assert_eq!(read(alices).await, ["w"]);
        assert_eq!(read(None).await, ["w", "x"]);
        let names = |agents: Vec<AgentRecord>| -> Vec<String> {
            agents.into_iter().map(|a| a.name).collect()
        };
        assert_eq!(names(agents(&store, &alice()).await.expect("q")), ["w"]);
        assert_eq!(names(agents(&store, &root()).await.expect("q")), ["w", "x"]);
        assert!(agent(&store, &bob(), "w").await.expect("q").is_none());
        store.share("w", "bob", "alice").await.expect("share");
        let seen = agent(&store, &bob(), "w")
            .await
            .expect("q")
            .expect("shared");
        assert_eq!(seen.shared_with, ["bob"]);
        assert_eq!(names(agents(&store, &bob()).await.expect("q")), ["w", "x"]);

        let taken = snapshot_of(&w);
        store
            .insert_snapshot(&taken, crate::store::SameArchive::Keep)
            .await
            .expect("snapshot");
        let ids = |s: Vec<SnapshotRecord>| -> Vec<String> { s.into_iter().map(|s| s.id).collect() };
        assert_eq!(
            ids(snapshots(&store, &bob(), None).await.expect("q")),
            vec![taken.id.clone()]
        );
        assert!(
            snapshots(&store, &bob(), Some("x"))
                .await
                .expect("q")
                .is_empty()
        );
        assert!(
            snapshot(&store, &bob(), &taken.id)
                .await
                .expect("q")
                .is_some()
        );
        store.unshare("w", "bob").await.expect("unshare");
        assert!(
            snapshot(&store, &bob(), &taken.id)
                .await
                .expect("q")
                .is_none()
        );
        assert!(snapshots(&store, &bob(), None).await.expect("q").is_empty());
        assert_eq!(
            ids(snapshots(&store, &alice(), Some("w")).await.expect("q")),
            vec![taken.id.clone()]
        );
    }
}
