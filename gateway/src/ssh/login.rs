//! A connection's login as the gateway decides it, apart from the SSH protocol: which
//! operator a key or a tailnet identity names, the route the username picks, the login's place
//! among the live connections and in the audit trail, and, at every new channel, whether its
//! credential still lets it in. The connection's session (`session.rs`) asks these; the russh
//! handler (`handler.rs`) only translates.

use std::net::SocketAddr;
use std::sync::Arc;

use russh::keys::PublicKey;
use tracing::{debug, info};

use super::guard::Ticket;
use crate::Gateway;
use crate::agents::live::Revocation;
use crate::agents::said::exit;
use crate::agents::{Caller, access, audit};
use crate::auth::{self, KeyDecision, Route};
use crate::model::{EventKind, EventResult};
use crate::store::StoreError;

/// One connection's login.
pub struct Login {
    gw: Arc<Gateway>,
    peer: Option<SocketAddr>,
    /// The operator once logged in, with the credential they came with.
    pub caller: Option<Caller>,
    /// The route the username picked at login (the control route until then).
    pub route: Route,
    /// The connection's place in the pre-login limits.
    pub ticket: Arc<Ticket>,
    /// Ends the connection when its access is taken back (`agents::live`).
    revocation: Arc<Revocation>,
    /// Its ID among the live connections, once logged in.
    live_id: Option<u64>,
}

impl Drop for Login {
    fn drop(&mut self) {
        if let Some(id) = self.live_id.take() {
            self.gw.live.unregister(id);
        }
    }
}

impl Login {
    pub fn new(
        gw: Arc<Gateway>,
        peer: Option<SocketAddr>,
        ticket: Arc<Ticket>,
        revocation: Arc<Revocation>,
    ) -> Login {
        Login {
            gw,
            peer,
            caller: None,
            route: Route::Control,
            ticket,
            revocation,
            live_id: None,
        }
    }

    pub fn source(&self) -> String {
        self.peer
            .map(|p| p.to_string())
            .unwrap_or_else(|| "unknown".into())
    }

    pub async fn key_decision(&self, key: &PublicKey) -> Result<(KeyDecision, String), StoreError> {
        let fingerprint = auth::fingerprint(key);
        let owner = self.gw.store.operator_by_fingerprint(&fingerprint).await?;
        Ok((auth::decide_key(owner), fingerprint))
    }

    /// Lets `operator` in as `user`, by `credential` (a key's fingerprint, or
    /// `tailscale:LOGIN`): picks the route and records the login. False if the credential was
    /// removed while the login was being checked.
    pub async fn admit(
        &mut self,
        user: &str,
        operator: crate::store::Operator,
        credential: String,
    ) -> Result<bool, StoreError> {
        // Registered first, then checked again: a removal that commits before the check is
        // seen here, one after it is seen by the revalidation the removal runs, which finds
        // this connection registered.
        if let Some(old) = self.live_id.take() {
            self.gw.live.unregister(old);
        }
        let id = self
            .gw
            .live
            .register(&operator.name, &credential, self.revocation.clone());
        self.live_id = Some(id);
        let now = self.gw.store.operator_by_credential(&credential).await?;
        if !access::still_admitted(&operator.name, now.as_ref()) {
            self.gw.live.unregister(id);
            self.live_id = None;
            return Ok(false);
        }
        // An agent this operator may not see does not exist for them: the control route.
        let agent_exists = crate::agents::access::agent(&self.gw.store, &operator, user)
            .await?
            .is_some();
        self.route = auth::route_for(user, agent_exists);
        info!(user, operator = operator.name, key = credential, route = ?self.route, "login");
        self.ticket.logged_in();
        self.record_login(
            Some(operator.name.clone()),
            user,
            &credential,
            EventResult::Ok,
            "",
        )
        .await;
        if matches!(self.route, Route::Agent(_)) {
            // The connection reaches its agent for as long as it lives.
            self.gw.live.reach(id, user);
        }
        self.caller = Some(Caller {
            operator,
            key_fingerprint: credential,
            source: self.source(),
            connection: id,
        });
        Ok(true)
    }

    /// The operator this connection's tailnet identity names, if any (`auth.tailscale`): its
    /// address is asked of tailscaled (whois); a tagged node, an unregistered login, a
    /// non-tailnet address or a failing tailscaled fall back to keys.
    pub async fn tailnet_operator(
        &self,
        user: &str,
    ) -> Result<Option<(crate::store::Operator, String)>, StoreError> {
        let Some(peer) = self.peer else {
            return Ok(None);
        };
        let who = match self.gw.tailnet.api().whois(peer).await {
            Ok(who) => who,
            Err(e) => {
                info!(source = %peer, error = %e, "no tailnet identity (whois failed); a key is needed");
                return Ok(None);
            }
        };
        match auth::tailnet_identity(who.as_ref()) {
            auth::TailnetIdentity::None => {
                debug!(source = %peer, "not a tailnet address; a key is needed");
                Ok(None)
            }
            auth::TailnetIdentity::Tagged(node) => {
                info!(source = %peer, node, "a tagged tailnet node cannot log in by identity; a key is needed");
                Ok(None)
            }
            auth::TailnetIdentity::User(login) => {
                match self.gw.store.operator_by_tailscale_login(&login).await? {
                    Some(operator) => Ok(Some((operator, login))),
                    None => {
                        info!(user, source = %peer, login, "tailnet login not registered; a key is needed");
                        self.record_login(
                            None,
                            user,
                            &format!("tailscale:{login}"),
                            EventResult::Refused,
                            "the tailnet login is not registered",
                        )
                        .await;
                        Ok(None)
                    }
                }
            }
        }
    }

    /// Whether this connection's credential still lets its operator in, checked at every new
    /// channel: a key removed (or an operator's role changed) while the connection is open
    /// takes effect at once. The caller is refreshed with the operator as stored now.
    pub async fn still_admitted(&mut self) -> Result<bool, StoreError> {
        let Some(caller) = &self.caller else {
            return Ok(false);
        };
        let now = self
            .gw
            .store
            .operator_by_credential(&caller.key_fingerprint)
            .await?;
        match now {
            Some(operator) if access::still_admitted(&caller.operator.name, Some(&operator)) => {
                if let Some(caller) = &mut self.caller {
                    caller.operator = operator;
                }
                Ok(true)
            }
            _ => {
                info!(
                    operator = caller.operator.name,
                    key = caller.key_fingerprint,
                    "channel refused: the credential was removed"
                );
                let caller = caller.clone();
                audit::record(
                    &self.gw.core(),
                    &caller,
                    EventKind::Channel,
                    None,
                    &format!("key {}", caller.key_fingerprint),
                    exit::FAILED,
                    "refused: the key or login was removed",
                )
                .await;
                Ok(false)
            }
        }
    }

    /// Records a login attempt that got as far as a verified key.
    pub async fn record_login(
        &self,
        operator: Option<String>,
        user: &str,
        fingerprint: &str,
        result: EventResult,
        message: &str,
    ) {
        let event = crate::store::Event {
            operator,
            source: Some(self.source()),
            agent: matches!(self.route, Route::Agent(_)).then(|| user.to_owned()),
            detail: format!("user {user} key {fingerprint}"),
            message: message.into(),
            ..crate::store::Event::new(EventKind::Login, result)
        };
        if let Err(e) = self.gw.store.record_event(&event).await {
            tracing::error!(error = %e, "could not record a login");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use russh::keys::{Algorithm, PrivateKey};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::model::{AgentStatus, Role};
    use crate::store::{EventFilter, NewKey, Store};

    /// A gateway with nothing running, on a store of its own: a login needs no socket.
    async fn gateway() -> (tempfile::TempDir, Arc<Gateway>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("t.db")).await.expect("store");
        let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
            .expect("a key");
        let gw = crate::Gateway::new(
            crate::config::Config::default(),
            store,
            Arc::new(key),
            CancellationToken::new(),
        )
        .expect("gateway");
        (dir, Arc::new(gw))
    }

    fn login(gw: &Arc<Gateway>, id: u64) -> Login {
        let guard = crate::ssh::guard::Guard::new(&gw.config.ssh);
        let ticket = guard
            .admit(id, IpAddr::V4(Ipv4Addr::LOCALHOST))
            .expect("admitted");
        Login::new(gw.clone(), None, ticket, Arc::default())
    }

    #[tokio::test]
    async fn a_login_takes_its_route_and_loses_its_channels_with_its_key() {
        let (_dir, gw) = gateway().await;
        let key = |fingerprint| NewKey {
            fingerprint,
            algorithm: "ssh-ed25519",
            public_key: "ssh-ed25519 AAAA",
            comment: "c",
        };
        gw.store
            .add_key("root", Role::Admin, &key("SHA256:root"))
            .await
            .expect("key");
        gw.store
            .add_key("alice", Role::Operator, &key("SHA256:alice"))
            .await
            .expect("key");
        gw.store
            .add_key("bob", Role::Operator, &key("SHA256:bob"))
            .await
            .expect("key");
        let mut agent =
            crate::store::sample_agent("w", crate::hosts::LOCAL_HOST, AgentStatus::Running);
        agent.created_by = Some("alice".into());
        gw.store.insert_agent(&agent).await.expect("agent");
        let operator = |name: &str| {
            let store = gw.store.clone();
            let name = name.to_owned();
            async move {
                store
                    .operator_named(&name)
                    .await
                    .expect("q")
                    .expect("operator")
            }
        };

        // Her agent's name takes alice to it; bob, who may not see it, gets the control route.
        let mut alices = login(&gw, 1);
        assert!(
            alices
                .admit("w", operator("alice").await, "SHA256:alice".into())
                .await
                .expect("admit")
        );
        assert_eq!(alices.route, Route::Agent("w".into()));
        let mut bobs = login(&gw, 2);
        assert!(
            bobs.admit("w", operator("bob").await, "SHA256:bob".into())
                .await
                .expect("admit")
        );
        assert_eq!(bobs.route, Route::Control);
        assert!(alices.still_admitted().await.expect("check"));

        // Her key removed: no new channel, and the trail says why.
        gw.store
            .remove_credentials("SHA256:alice")
            .await
            .expect("remove");
        assert!(!alices.still_admitted().await.expect("check"));
        assert!(bobs.still_admitted().await.expect("check"));
        let events = gw
            .store
            .events(&EventFilter::default())
            .await
            .expect("events");
        assert!(
            events.iter().any(|e| e.kind == EventKind::Channel
                && e.operator.as_deref() == Some("alice")
                && e.message.contains("removed")),
            "{events:?}"
        );
        // Logins are in the trail too, with the route's agent.
        assert!(
            events
                .iter()
                .any(|e| e.kind == EventKind::Login && e.agent.as_deref() == Some("w")),
            "{events:?}"
        );
    }
}
