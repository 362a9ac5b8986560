//! Pools logged in as clients' own Redis users (`server.auth = "upstream"`):
//! once Redis accepted a client's `AUTH`, its stateless commands go on a
//! pool whose connections are logged in with the same credentials, shared
//! by every client of this worker thread that logged in with them, so
//! Redis' ACLs apply per user at a pool's cost rather than a connection per
//! client. Created on first use and kept for the life of the process, at
//! most [`MAX_USERS`] per worker thread. Each has its own circuit breaker:
//! credentials revoked or changed upstream fail that user's requests, not
//! everyone's.

use super::NodePools;
use crate::router::Node;
use crate::upstream::breaker::Breaker;
use crate::upstream::UpstreamConfig;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Distinct credentials (user and password) with a pool per worker thread.
pub(super) const MAX_USERS: usize = 64;

/// A login Redis accepted: the user (`None`: `default`) and its password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct Credentials {
    pub(super) user: Option<Bytes>,
    pub(super) password: Bytes,
}

impl Credentials {
    /// `base` logged in with these credentials.
    pub(super) fn config(&self, base: &UpstreamConfig) -> UpstreamConfig {
        let mut config = base.clone();
        config.url.username = self.user.as_deref().map(|u| String::from_utf8_lossy(u).into_owned());
        config.url.password = Some(String::from_utf8_lossy(&self.password).into_owned());
        config
    }
}

/// One worker thread's pools per login.
#[derive(Default)]
pub(super) struct UserPools {
    pools: Mutex<HashMap<Credentials, Arc<NodePools>>>,
}

impl UserPools {
    /// The pool logged in as `login` on `node`, started on first use (one
    /// connection per protocol); `None` past [`MAX_USERS`].
    pub(super) fn get(&self, node: &Node, login: &Credentials, max_batch_reply: usize) -> Option<Arc<NodePools>> {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pool) = pools.get(login) {
            return Some(pool.clone());
        }
        if pools.len() >= MAX_USERS {
            tracing::warn!(max = MAX_USERS, "AUTH refused: this worker thread has pools for too many Redis logins");
            return None;
        }
        let mut config = login.config(&node.config);
        config.pool_size = 1;
        tracing::info!(user = %config.url.username.as_deref().unwrap_or("default"), "pool for a Redis user started");
        let breaker = Breaker::new(node.health.breaker.settings(), config.url.to_string());
        let user_node = Node::new(config, breaker);
        let (health, config) = (user_node.health.clone(), user_node.config.clone());
        tokio::spawn(async move { health.breaker.run_closing_prober(&config).await });
        let pool = Arc::new(NodePools::start(&user_node, max_batch_reply));
        pools.insert(login.clone(), pool.clone());
        Some(pool)
    }
}
