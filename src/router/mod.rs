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
//! A single Redis has one node, which serves every request; a Redis Cluster
//! ([`cluster`]) maps each request's keys to a hash slot ([`slot`]) and the
//! slot to the master serving it, learnt from the cluster ([`topology`]).

pub mod cluster;
pub mod slot;
pub mod topology;

use crate::commands::{self, Command};
use crate::protocol::Args;
use crate::upstream::breaker::{Breaker, BreakerConfig};
use crate::upstream::pool::Health;
use crate::upstream::spares::Spares;
use crate::upstream::UpstreamConfig;
use cluster::Cluster;
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
    pub health: Arc<Health>,
    /// Its dedicated connections waiting for clients (opened ahead, or
    /// given back and cleaned); kept up by [`Spares::run`], which whoever
    /// starts the node's tasks spawns.
    pub spares: Arc<Spares>,
}

impl Node {
    /// The node at `config`'s address, guarded by `breaker`.
    pub fn new(config: UpstreamConfig, breaker: Breaker) -> Node {
        let (config, health) = (Arc::new(config), Arc::new(Health::new(breaker)));
        let spares = Arc::new(Spares::new(config.clone(), health.clone()));
        Node { config, health, spares }
    }
}

/// Why a request names no single node.
#[derive(Debug, PartialEq, Eq)]
pub enum Unroutable {
    /// Its keys hash to different slots of a cluster.
    CrossSlot,
}

impl Unroutable {
    /// The error the client gets.
    pub fn reply(&self) -> bytes::Bytes {
        match self {
            Unroutable::CrossSlot => {
                crate::protocol::encode::error("CROSSSLOT Keys in request don't hash to the same slot")
            }
        }
    }
}

/// Maps requests to upstream nodes.
pub enum Router {
    /// One Redis (a server, or a managed endpoint): every request goes to
    /// it.
    Single(Node),
    /// A Redis Cluster.
    Cluster(Cluster),
}

impl Router {
    /// A router for the one upstream of `config`, guarded by `breaker`.
    pub fn single(config: UpstreamConfig, breaker: Breaker) -> Router {
        Router::Single(Node::new(config, breaker))
    }

    /// A router for the cluster known by `seeds` (`host:port`), every node
    /// reached with `base`'s settings and guarded by a breaker of its own.
    pub fn cluster(base: UpstreamConfig, seeds: Vec<String>, breaker: BreakerConfig) -> Router {
        Router::Cluster(Cluster::new(base, seeds, breaker))
    }

    /// The node that serves the request `args` (its command `cmd`, `None`
    /// when unknown), or why no one node can.
    #[inline(always)]
    pub fn route(&self, cmd: Option<&Command>, args: &Args) -> Result<NodeId, Unroutable> {
        match self {
            Router::Single(_) => Ok(DEFAULT_NODE),
            Router::Cluster(cluster) => route_in(cluster, cmd, args),
        }
    }

    /// The cluster, when the upstream is one.
    pub fn as_cluster(&self) -> Option<&Cluster> {
        match self {
            Router::Single(_) => None,
            Router::Cluster(cluster) => Some(cluster),
        }
    }

    /// The node serving what names no key: a client's dedicated
    /// connection, out-of-band commands, failover's replay.
    #[inline]
    pub fn default_node(&self) -> &Node {
        match self {
            Router::Single(node) => node,
            Router::Cluster(cluster) => cluster.node(DEFAULT_NODE),
        }
    }

    /// Node `id`, as [`Router::route`] named it.
    pub fn node(&self, id: NodeId) -> &Node {
        match self {
            Router::Single(node) => {
                debug_assert_eq!(id, DEFAULT_NODE, "one node");
                node
            }
            Router::Cluster(cluster) => cluster.node(id),
        }
    }

    /// Every node known now, in [`NodeId`] order.
    pub fn nodes(&self) -> Vec<&Node> {
        match self {
            Router::Single(node) => vec![node],
            Router::Cluster(cluster) => cluster.nodes().collect(),
        }
    }

    /// How many nodes there can ever be.
    pub fn capacity(&self) -> usize {
        match self {
            Router::Single(_) => 1,
            Router::Cluster(_) => cluster::MAX_NODES,
        }
    }
}

/// The slot of the request `args` (its command `cmd`): its first key's, 0
/// when it names none (what [`Cluster::keyless_node`] serves).
pub fn slot_of(cmd: Option<&Command>, args: &Args) -> u16 {
    if let Some(mut positions) = cmd.and_then(|cmd| commands::plain_positions(cmd, args)) {
        return positions.next().and_then(|i| args.get(i)).map_or(0, slot::of);
    }
    let mut positions = Vec::new();
    match cmd.map(|cmd| commands::key_indices(cmd, args, &mut positions)) {
        Some(Ok(())) => positions.first().and_then(|&i| args.get(i)).map_or(0, slot::of),
        _ => 0,
    }
}

/// A cluster's node for a request: its keys' slot's master.
#[inline(never)]
fn route_in(cluster: &Cluster, cmd: Option<&Command>, args: &Args) -> Result<NodeId, Unroutable> {
    let Some(cmd) = cmd else { return Ok(cluster.keyless_node()) };
    if let Some(positions) = commands::plain_positions(cmd, args) {
        return cluster.keys_node(positions.filter_map(|i| args.get(i)));
    }
    let mut positions = Vec::new();
    if commands::key_indices(cmd, args, &mut positions).is_err() {
        // Malformed: the node it goes to answers the syntax error.
        return Ok(cluster.keyless_node());
    }
    cluster.keys_node(positions.iter().filter_map(|&i| args.get(i)))
}
