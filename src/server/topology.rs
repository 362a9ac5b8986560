//! A Redis Cluster upstream's life: its topology read at start, then every
//! `REFRESH_EVERY` or when a node redirects a request, and for each node
//! seen for the first time, what every node gets: its invalidation
//! channel for the near-cache, its spare dedicated connections and the
//! prober of its circuit breaker (a node's circuit closes again on its
//! own; the failover journal's writes are replayed to their slots' masters
//! by [`replay`], whichever node serves them then). A node that serves no
//! slot for [`REST_AFTER`] rests (`upstream::rest`). Topology changes are
//! logged. A single Redis' one node is started by the same [`watch`], its
//! circuit closing through the failover journal's replay.

use super::Shared;
use crate::observe;
use crate::router::cluster::Cluster;
use crate::router::{Node, NodeId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a node serves no slot before it rests (`upstream::rest`):
/// longer than a cluster takes to promote a replica or move a slot.
const REST_AFTER: Duration = Duration::from_secs(30);

/// Keeps `shared`'s cluster topology current, for the life of the process.
pub async fn run(shared: Arc<Shared>) {
    let Some(cluster) = shared.router.as_cluster() else { return };
    if shared.failover.config().enabled {
        tokio::spawn(replay(shared.clone()));
    }
    let mut started = 0;
    let mut last_map = Vec::new();
    let mut idle = Idle::default();
    let mut failing = false;
    loop {
        let mut changed = false;
        match cluster.refresh().await {
            Ok((masters, covered)) => {
                observe::cluster_refresh("ok");
                failing = false;
                let map = cluster.slots_per_node();
                idle.rest(cluster, &map, Instant::now());
                if map != last_map {
                    log_topology(cluster, &map, masters, covered);
                    last_map = map;
                    changed = true;
                }
            }
            Err(e) => {
                observe::cluster_refresh("error");
                if !failing {
                    tracing::warn!(error = %e, "cannot read the Redis Cluster topology: routing with the last one known, retrying");
                }
                failing = true;
            }
        }
        let nodes: Vec<Node> = cluster.nodes().cloned().collect();
        for node in nodes.into_iter().skip(started) {
            watch(&shared, started, node, Closing::Direct);
            started += 1;
        }
        cluster.refresh_due(changed).await;
    }
}

/// Since when each node has served no slot, as the topology reads saw it.
#[derive(Default)]
struct Idle(Vec<Option<Instant>>);

impl Idle {
    /// Rests the nodes that served no slot in any read for [`REST_AFTER`]
    /// up to `now` (`map`: slots per node, just read).
    fn rest(&mut self, cluster: &Cluster, map: &[(NodeId, usize)], now: Instant) {
        for id in self.due(map, now) {
            let node = cluster.node(id);
            if node.health.breaker.rest.rest() {
                tracing::info!(node = id, upstream = %node.config.url, after = ?REST_AFTER, "cluster node serves no slot: resting (no connections, no probes) until it serves slots again");
            }
        }
        let resting = cluster.nodes().filter(|node| node.health.breaker.rest.is_resting()).count();
        observe::cluster_nodes_resting(resting);
    }

    /// The nodes idle for [`REST_AFTER`] by `now`.
    fn due(&mut self, map: &[(NodeId, usize)], now: Instant) -> Vec<NodeId> {
        self.0.resize(map.len().max(self.0.len()), None);
        let mut due = Vec::new();
        for (&(id, slots), since) in map.iter().zip(self.0.iter_mut()) {
            match slots {
                0 if now.duration_since(*since.get_or_insert(now)) >= REST_AFTER => due.push(id),
                0 => {}
                _ => *since = None,
            }
        }
        due
    }
}

/// How a node's circuit closes once its prober reaches it again.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// After the failover journal is replayed to it (a single Redis).
    Replay,
    /// At once (a cluster master: its slots' journaled writes are replayed
    /// by [`replay`]).
    Direct,
}

/// Starts what each node needs: its invalidation channel, its spare
/// dedicated connections and its prober.
pub(super) fn watch(shared: &Arc<Shared>, id: NodeId, node: Node, closing: Closing) {
    let (cache, upstream, health) = (shared.cache.clone(), node.config.clone(), node.health.clone());
    let failover_on = shared.failover.config().enabled;
    tokio::spawn(crate::cache::tracking::run(cache, id, upstream, health, failover_on));
    let spares = node.spares.clone();
    tokio::spawn(async move { spares.run().await });
    let shared = shared.clone();
    tokio::spawn(async move {
        let breaker = &node.health.breaker;
        match closing {
            Closing::Replay => {
                let failover = &shared.failover;
                breaker.run_prober(&node.config, || crate::failover::recover(failover, &node.config)).await
            }
            Closing::Direct => breaker.run_closing_prober(&node.config).await,
        }
    });
}

/// How often a cluster's journal is looked at while writes wait in it.
const REPLAY_EVERY: Duration = Duration::from_millis(100);

/// Replays the failover journal of a cluster's slots as soon as the
/// masters serving them answer (the old master back, or a replica promoted
/// in its place), for the life of the process.
async fn replay(shared: Arc<Shared>) {
    let Some(cluster) = shared.router.as_cluster() else { return };
    let mut tick = crate::timer::interval(REPLAY_EVERY);
    let mut failing = false;
    loop {
        tick.tick().await;
        if !shared.failover.slots_pending() {
            continue;
        }
        match crate::failover::recover_slots(&shared.failover, cluster).await {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot replay the failover journal yet: its slots are served from local memory, retrying");
                }
                failing = true;
            }
        }
    }
}

fn log_topology(cluster: &Cluster, map: &[(usize, usize)], masters: usize, covered: usize) {
    for &(id, slots) in map {
        let url = cluster.node(id).config.url.to_string();
        observe::cluster_slots(&url, slots);
        if slots > 0 {
            tracing::info!(node = id, upstream = %url, slots, "cluster node serves slots");
        }
    }
    if covered < crate::router::slot::SLOTS {
        tracing::warn!(covered, "the cluster does not serve every slot");
    }
    tracing::info!(masters, covered, "Redis Cluster topology");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_rests_once_it_served_no_slot_for_rest_after() {
        let (mut idle, start) = (Idle::default(), Instant::now());
        let at = |n: u32| start + REST_AFTER * n / 2;
        let one_idle = [(0, 16384), (1, 0)];
        assert!(idle.due(&one_idle, at(0)).is_empty());
        assert!(idle.due(&one_idle, at(1)).is_empty());
        assert_eq!(idle.due(&one_idle, at(2)), [1]);
        // Serving slots again starts its clock over.
        assert!(idle.due(&[(0, 8192), (1, 8192)], at(3)).is_empty());
        assert!(idle.due(&one_idle, at(4)).is_empty());
        // A node new to the map starts idle now.
        assert_eq!(idle.due(&[(0, 16384), (1, 0), (2, 0)], at(6)), [1]);
        assert_eq!(idle.due(&[(0, 16384), (1, 0), (2, 0)], at(8)), [1, 2]);
    }
}
