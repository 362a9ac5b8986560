//! Which upstream node serves a request: the middle of the seam Envoy's
//! redis_proxy draws as splitter → router → pool. `server::dispatch` (the
//! splitter) decides what a request becomes: an answer of the proxy's, a
//! request for the shared pool, one for the client's dedicated connection;
//! this router names the node that serves it; `upstream` (the pools, the
//! dedicated connections) carries it there.
//!
//! The router owns the list of upstream nodes, each with its address and
//! settings and its health (identity, breaker, progress): whatever needs
//! "the upstream" (the worker threads' pools, dedicated connections, the
//! invalidation connection, failover's replay, the admin API) asks it.
//! nearcache fronts one Redis today, so the router has one node and sends
//! every request there; Redis Cluster is another kind of router (keys to
//! slots, slots to nodes) behind the same calls, which the session never
//! sees.

use crate::commands::Command;
use crate::protocol::Args;
use crate::upstream::breaker::Breaker;
use crate::upstream::pool::UpstreamInfo;
use crate::upstream::UpstreamConfig;
use std::sync::Arc;

/// A node's position in the router's list.
pub type NodeId = usize;

/// The node serving what names no key (see [`Router::default_node`]).
pub const DEFAULT_NODE: NodeId = 0;

/// One upstream server.
#[derive(Clone)]
pub struct Node {
    /// Where it is and how to talk to it.
    pub config: Arc<UpstreamConfig>,
    /// What it said it is, and how it is doing (its circuit breaker).
    pub health: Arc<UpstreamInfo>,
}

/// Maps requests to upstream nodes.
pub enum Router {
    /// One Redis (a server, or a managed endpoint): every request goes to
    /// it.
    Single(Node),
}

impl Router {
    /// A router for the one upstream of `config`, guarded by `breaker`.
    pub fn single(config: UpstreamConfig, breaker: Breaker) -> Router {
        Router::Single(Node { config: Arc::new(config), health: Arc::new(UpstreamInfo::new(breaker)) })
    }

    /// The node that serves the request `args` (its command `cmd`, `None`
    /// when unknown) on the shared pool. One node serves them all.
    #[inline(always)]
    pub fn route(&self, _cmd: Option<&Command>, _args: &Args) -> NodeId {
        match self {
            Router::Single(_) => DEFAULT_NODE,
        }
    }

    /// The node serving what names no key: a client's dedicated
    /// connection, out-of-band commands, failover's replay.
    pub fn default_node(&self) -> &Node {
        match self {
            Router::Single(node) => node,
        }
    }

    /// Node `id`, as [`Router::route`] named it.
    pub fn node(&self, id: NodeId) -> &Node {
        match self {
            Router::Single(node) => {
                debug_assert_eq!(id, DEFAULT_NODE, "one node");
                node
            }
        }
    }

    /// Every node, in [`NodeId`] order.
    pub fn nodes(&self) -> std::slice::Iter<'_, Node> {
        match self {
            Router::Single(node) => std::slice::from_ref(node).iter(),
        }
    }
}
