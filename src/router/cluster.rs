//! The router of a Redis Cluster upstream: keys to hash slots, slots to the
//! master serving them. The slot map starts with every slot on the first
//! seed and is learnt from the cluster ([`topology`]) at start, every
//! [`REFRESH_EVERY`], and whenever a node answers `MOVED` (the slot moves
//! at once, the rest is asked for). A node's address seen for the first time
//! becomes a new [`Node`]: nodes are only ever added, so a [`NodeId`] stays
//! valid for the life of the process (a node that no longer serves slots
//! gets no requests, and rests: `upstream::rest`; it wakes when it is
//! given slots again).
//!
//! Every node shares the first seed's settings: credentials, TLS, timeouts.

use super::topology::{self, Shard, TopologyError};
use super::{slot, Node, NodeId, Unroutable};
use crate::protocol::{encode, Proto};
use crate::upstream::breaker::{Breaker, BreakerConfig};
use crate::upstream::dedicated::DedicatedConn;
use crate::upstream::{UpstreamConfig, UpstreamError};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Nodes one proxy can know: far more masters and their successors than
/// any cluster has (Redis Cluster's advised maximum is 1,000 nodes).
pub const MAX_NODES: usize = 1024;

/// How often the topology is asked for when nothing prompts it.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// How often while a node's circuit is open: the cluster may be promoting
/// one of its replicas.
pub const REFRESH_WHILE_DOWN: Duration = Duration::from_secs(1);

/// The node serving each slot, shared with whoever needs to know where a
/// key lives (the near-cache).
#[derive(Clone)]
pub struct SlotMap(Arc<[AtomicU16]>);

impl SlotMap {
    /// The node serving `slot`.
    #[inline]
    pub fn node(&self, slot: u16) -> NodeId {
        self.0.get(usize::from(slot)).map_or(0, |cell| NodeId::from(cell.load(Ordering::Relaxed)))
    }

    /// The node serving `key`.
    pub fn key_node(&self, key: &[u8]) -> NodeId {
        self.node(slot::of(key))
    }
}

/// A Redis Cluster's nodes and slot map.
pub struct Cluster {
    /// The first seed's settings, which every node shares.
    base: Arc<UpstreamConfig>,
    breaker: BreakerConfig,
    /// Where to ask for the topology when no known node answers.
    seeds: Vec<String>,
    /// Append-only: `len` are set.
    nodes: Box<[OnceLock<Node>]>,
    len: AtomicUsize,
    adding: Mutex<()>,
    /// A node could not be added (logged once).
    full: AtomicBool,
    /// Told of each node added, before any slot is served by it.
    on_added: OnceLock<Box<dyn Fn(NodeId) + Send + Sync>>,
    /// The node serving each slot.
    slots: SlotMap,
    /// Wakes the refresh task (a `MOVED`, a lost node).
    refresh: Notify,
}

impl Cluster {
    /// A cluster known by its `seeds` (`host:port`, the first's settings in
    /// `base`); each node's circuit breaker is configured by `breaker`.
    pub fn new(base: UpstreamConfig, seeds: Vec<String>, breaker: BreakerConfig) -> Cluster {
        let cluster = Cluster {
            base: Arc::new(base),
            breaker,
            seeds,
            nodes: (0..MAX_NODES).map(|_| OnceLock::new()).collect(),
            len: AtomicUsize::new(0),
            adding: Mutex::new(()),
            full: AtomicBool::new(false),
            on_added: OnceLock::new(),
            slots: SlotMap((0..slot::SLOTS).map(|_| AtomicU16::new(0)).collect()),
            refresh: Notify::new(),
        };
        let first = cluster.seeds.first().cloned().unwrap_or_else(|| cluster.base.url.addr.clone());
        cluster.node_at(&first);
        cluster
    }

    /// The node serving `slot`.
    #[inline]
    pub fn slot_node(&self, slot: u16) -> NodeId {
        self.slots.node(slot)
    }

    /// The slot map, shared: it changes as the cluster does.
    pub fn slot_map(&self) -> SlotMap {
        self.slots.clone()
    }

    /// Calls `f` with each node added from now on, before any slot is
    /// served by it (the near-cache then knows that node's keys are not
    /// covered by an invalidation channel yet). Set once.
    pub fn on_added(&self, f: impl Fn(NodeId) + Send + Sync + 'static) {
        let _ = self.on_added.set(Box::new(f));
    }

    /// The node serving `keys`: the one serving the slot of the first (the
    /// [`Cluster::keyless_node`] when there is none), or
    /// [`Unroutable::CrossSlot`].
    pub fn keys_node<'a>(&self, mut keys: impl Iterator<Item = &'a [u8]>) -> Result<NodeId, Unroutable> {
        let Some(first) = keys.next() else { return Ok(self.keyless_node()) };
        let slot = slot::of(first);
        if keys.any(|key| slot::of(key) != slot) {
            return Err(Unroutable::CrossSlot);
        }
        Ok(self.slot_node(slot))
    }

    /// The node serving what names no key: the master of slot 0 (a master
    /// that is up, as far as the map knows).
    pub fn keyless_node(&self) -> NodeId {
        self.slot_node(0)
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(id).and_then(OnceLock::get).unwrap_or_else(|| self.first())
    }

    fn first(&self) -> &Node {
        self.nodes[0].get().expect("the first seed is node 0 from the start")
    }

    /// Every node known, in [`NodeId`] order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes[..self.len.load(Ordering::Acquire)].iter().filter_map(OnceLock::get)
    }

    /// The node at `addr` (`host:port`), added if new; `None` past
    /// [`MAX_NODES`].
    pub fn node_at(&self, addr: &str) -> Option<NodeId> {
        if let Some(id) = self.find(addr) {
            return Some(id);
        }
        let _adding = self.adding.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = self.find(addr) {
            return Some(id);
        }
        let id = self.len.load(Ordering::Acquire);
        let Some(cell) = self.nodes.get(id) else {
            if !self.full.swap(true, Ordering::Relaxed) {
                tracing::error!(addr, max = MAX_NODES, "cluster node not added: this process has seen the most nodes it can know; restart it to serve the slots of nodes new to it");
            }
            return None;
        };
        let config = node_config(&self.base, addr);
        let breaker = Breaker::new(self.breaker.clone(), config.url.to_string());
        let _ = cell.set(Node::new(config, breaker));
        if let Some(added) = self.on_added.get() {
            added(id);
        }
        self.len.store(id + 1, Ordering::Release);
        tracing::info!(node = id, addr, "cluster node added");
        Some(id)
    }

    fn find(&self, addr: &str) -> Option<NodeId> {
        self.nodes().position(|n| n.config.url.addr == addr)
    }

    /// A node answered `MOVED slot addr`: the slot is served there from
    /// now on, and the rest of the map is asked for.
    pub fn moved(&self, slot: u16, addr: &str) -> Option<NodeId> {
        let id = self.node_at(addr)?;
        self.set_slot(slot, id);
        self.wake(id);
        self.refresh.notify_one();
        Some(id)
    }

    fn set_slot(&self, slot: u16, id: NodeId) {
        if let (Some(cell), Ok(id)) = (self.slots.0.get(usize::from(slot)), u16::try_from(id)) {
            cell.store(id, Ordering::Relaxed);
        }
    }

    /// Waits until a refresh is asked for or [`REFRESH_EVERY`] passed
    /// ([`REFRESH_WHILE_DOWN`] while a master's circuit is open, or when the
    /// map just `changed`: the node asked may have learnt a failover or a
    /// slot's move before the others, whose answer may be older).
    pub async fn refresh_due(&self, changed: bool) {
        let every = if changed { REFRESH_WHILE_DOWN } else { REFRESH_EVERY };
        let due = tokio::time::Instant::now() + every;
        loop {
            let asked = crate::timer::timeout(REFRESH_WHILE_DOWN, self.refresh.notified()).await.is_ok();
            // (A node serving no slot any more, a dead master replaced by
            // its replica, is not waited for.)
            let down = self.masters().into_iter().any(|id| !self.node(id).health.breaker.allows());
            if asked || tokio::time::Instant::now() >= due || down {
                return;
            }
        }
    }

    /// Asks the known nodes, then the seeds, for the topology, and applies
    /// the first answer. Returns the masters' count and slots covered.
    pub async fn refresh(&self) -> Result<(usize, usize), TopologyError> {
        let mut last = TopologyError::Refused("no node to ask".into());
        let known = self.ask_order();
        for addr in known.iter().chain(self.seeds.iter().filter(|s| !known.contains(s))) {
            match ask(&node_config(&self.base, addr)).await {
                Ok(shards) => return Ok(self.apply(&shards)),
                Err(e) => {
                    tracing::debug!(addr, error = %e, "cannot read the cluster topology there");
                    last = e;
                }
            }
        }
        Err(last)
    }

    /// The known nodes' addresses, those likeliest to answer first: the
    /// masters serving slots whose circuit is closed, then the other
    /// masters, then the nodes that serve no slot any more (a node that
    /// left the cluster, perhaps gone for good: each costs a connection
    /// attempt, up to `connect_timeout`, before the next is asked).
    fn ask_order(&self) -> Vec<String> {
        let slots = self.slots_per_node();
        let rank = |id: NodeId, node: &Node| match slots.get(id).map_or(0, |&(_, n)| n) {
            0 => 2,
            _ if node.health.breaker.allows() => 0,
            _ => 1,
        };
        let mut known: Vec<(u8, &Node)> = self.nodes().enumerate().map(|(id, node)| (rank(id, node), node)).collect();
        known.sort_by_key(|&(rank, _)| rank);
        known.into_iter().map(|(_, node)| node.config.url.addr.clone()).collect()
    }

    /// Serves each shard's slots from its master; returns the masters'
    /// count and the slots covered.
    fn apply(&self, shards: &[Shard]) -> (usize, usize) {
        for shard in shards {
            let Some(id) = self.node_at(&shard.master) else { continue };
            for &(start, end) in &shard.ranges {
                (start..=end).for_each(|s| self.set_slot(s, id));
            }
            if !shard.ranges.is_empty() {
                self.wake(id);
            }
        }
        (shards.len(), covered(shards))
    }

    /// Node `id` serves slots: it rests no more.
    fn wake(&self, id: NodeId) {
        let node = self.node(id);
        if node.health.breaker.rest.wake() {
            tracing::info!(node = id, upstream = %node.config.url, "cluster node serves slots again: no longer resting");
        }
    }

    /// Slots per node, for logs and `/ready`.
    pub fn slots_per_node(&self) -> Vec<(NodeId, usize)> {
        let mut counts = vec![0usize; self.len.load(Ordering::Acquire)];
        for cell in self.slots.0.iter() {
            if let Some(c) = counts.get_mut(usize::from(cell.load(Ordering::Relaxed))) {
                *c += 1;
            }
        }
        counts.into_iter().enumerate().collect()
    }

    /// The nodes serving slots now, in [`NodeId`] order.
    pub fn masters(&self) -> Vec<NodeId> {
        self.slots_per_node().into_iter().filter(|&(_, slots)| slots > 0).map(|(id, _)| id).collect()
    }
}

/// `base` with `addr` (`host:port`) as its address.
fn node_config(base: &UpstreamConfig, addr: &str) -> UpstreamConfig {
    let mut config = base.clone();
    config.url.addr = addr.to_string();
    config.url.host = match addr.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']').to_string(),
        None => addr.to_string(),
    };
    config
}

/// One node's view of the topology: `CLUSTER SHARDS`, or `CLUSTER SLOTS`
/// where that is unknown (Redis < 7.0) or leaves slots out (Redis 7.2.6
/// lists the shard of a master replaced by its replica with no slots).
async fn ask(config: &UpstreamConfig) -> Result<Vec<Shard>, TopologyError> {
    let failed = |e: UpstreamError| TopologyError::Refused(e.to_string());
    let mut conn = DedicatedConn::open(config, Proto::Resp2, "topology").await.map_err(failed)?;
    let limit = config.request_timeout;
    let mut request = bytes::BytesMut::new();
    encode::command(&mut request, [&b"CLUSTER"[..], b"SHARDS"].into_iter());
    let reply = exchange(&mut conn, &request, limit).await.map_err(failed)?;
    let shards = match topology::parse_shards(&reply, &config.url.addr, config.url.tls) {
        Ok(shards) if covered(&shards) == slot::SLOTS => return Ok(shards),
        Ok(shards) => Some(shards),
        Err(TopologyError::Refused(_)) => None,
        Err(e) => return Err(e),
    };
    request.clear();
    encode::command(&mut request, [&b"CLUSTER"[..], b"SLOTS"].into_iter());
    let reply = exchange(&mut conn, &request, limit).await.map_err(failed)?;
    let slots = topology::parse_slots(&reply, &config.url.addr)?;
    Ok(match shards {
        Some(shards) if covered(&shards) >= covered(&slots) => shards,
        _ => slots,
    })
}

/// Slots the masters of `shards` serve.
fn covered(shards: &[Shard]) -> usize {
    shards.iter().flat_map(|s| &s.ranges).map(|&(start, end)| usize::from(end - start) + 1).sum()
}

async fn exchange(conn: &mut DedicatedConn, request: &[u8], limit: Duration) -> Result<bytes::Bytes, UpstreamError> {
    conn.send(request).await?;
    crate::timer::timeout(limit, conn.next_frame()).await.map_err(|_| UpstreamError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let base = UpstreamConfig {
            url: crate::upstream::UpstreamUrl::parse("redis://127.0.0.1:7000").expect("a URL"),
            pool_size: 1,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            reconnect_max_backoff: Duration::from_secs(1),
            tls: None,
        };
        Cluster::new(base, vec!["127.0.0.1:7000".into()], BreakerConfig::default())
    }

    #[test]
    fn slots_start_on_the_first_seed_and_follow_the_topology() {
        let c = cluster();
        assert_eq!(c.slot_node(0), 0);
        assert_eq!(c.node(0).config.url.addr, "127.0.0.1:7000");
        let shards = vec![
            Shard { master: "127.0.0.1:7000".into(), ranges: vec![(0, 8191)] },
            Shard { master: "127.0.0.1:7001".into(), ranges: vec![(8192, 16383)] },
        ];
        assert_eq!(c.apply(&shards), (2, 16384));
        assert_eq!(c.slot_node(slot::of(b"foo")), 1);
        assert_eq!(c.slot_node(slot::of(b"bar")), 0);
        assert_eq!(c.moved(slot::of(b"bar"), "127.0.0.1:7002"), Some(2));
        assert_eq!(c.slot_node(slot::of(b"bar")), 2);
        assert_eq!(c.nodes().count(), 3);
        assert_eq!(c.node(2).config.url.host, "127.0.0.1");
    }

    /// The topology is asked of the masters that are up first, and last of
    /// nodes that serve nothing any more (the first seed, here).
    #[test]
    fn the_topology_is_asked_of_serving_masters_first() {
        let c = cluster();
        let shards = vec![
            Shard { master: "127.0.0.1:7001".into(), ranges: vec![(0, 8191)] },
            Shard { master: "127.0.0.1:7002".into(), ranges: vec![(8192, 16383)] },
        ];
        c.apply(&shards);
        assert_eq!(c.ask_order(), ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7000"]);
        c.node(1).health.breaker.trip();
        assert_eq!(c.ask_order(), ["127.0.0.1:7002", "127.0.0.1:7001", "127.0.0.1:7000"]);
    }

    #[test]
    fn keys_in_different_slots_are_cross_slot() {
        let c = cluster();
        let keys: [&[u8]; 2] = [b"{u}a", b"{u}b"];
        assert_eq!(c.keys_node(keys.into_iter()), Ok(0));
        let keys: [&[u8]; 2] = [b"a", b"b"];
        assert_eq!(c.keys_node(keys.into_iter()), Err(Unroutable::CrossSlot));
        assert_eq!(c.keys_node(std::iter::empty()), Ok(0));
    }
}
