//! Resting: a Redis Cluster node that has served no slot for a while (a
//! master replaced for good by its replica, one whose slots all moved
//! away, an address gone with its machine) keeps nothing going: its pool
//! connections and invalidation channel stop reconnecting, its spare
//! dedicated connections are closed and its circuit is not probed, until
//! a topology read or a `MOVED` gives it slots again. Without it, every
//! node a long-lived proxy ever saw would be dialled for the life of the
//! process. The cluster's topology task decides when a node rests
//! (`server::topology`); the router wakes it when it serves slots.

use tokio::sync::watch;

/// Whether a node rests, and a way to wait for it to wake or rest.
pub struct Rest(watch::Sender<bool>);

impl Default for Rest {
    fn default() -> Self {
        Rest(watch::Sender::new(false))
    }
}

impl Rest {
    /// The node rests from now on; true when it did not already.
    pub fn rest(&self) -> bool {
        self.set(true)
    }

    /// The node serves slots again; true when it rested.
    pub fn wake(&self) -> bool {
        self.set(false)
    }

    fn set(&self, resting: bool) -> bool {
        self.0.send_if_modified(|now| std::mem::replace(now, resting) != resting)
    }

    pub fn is_resting(&self) -> bool {
        *self.0.borrow()
    }

    /// Returns once the node does not rest (at once when it does not).
    pub async fn awake(&self) {
        if self.is_resting() {
            let _ = self.0.subscribe().wait_for(|resting| !resting).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_resting_node_is_waited_for_until_it_wakes() {
        let rest = Rest::default();
        rest.awake().await;
        assert!(rest.rest() && !rest.rest(), "rests once");
        let waiting = crate::timer::timeout(Duration::from_millis(20), rest.awake()).await;
        assert!(waiting.is_err(), "a resting node is not awake");
        let (woken, ()) = tokio::join!(async { rest.wake() }, rest.awake());
        assert!(woken && !rest.wake() && !rest.is_resting());
    }
}
