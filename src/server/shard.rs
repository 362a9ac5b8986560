//! The threads that serve clients. Each runs its own single-threaded event
//! loop (a current-thread tokio runtime) with its own upstream pool
//! connections, and serves the clients the listener hands it: a client's
//! session and the pool tasks carrying its requests then run on one thread,
//! and the request path has no cross-thread wake-ups. (One multi-threaded
//! runtime for everything spent 45% more CPU per proxied GET with two
//! workers on two cores, its tasks bouncing between the workers.)

use super::{serve, Live, Pools, ServerTls, Shared};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// A client the listener accepted, on its way to a shard.
pub(super) struct Accepted {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub id: u64,
    /// The TLS settings when it came in on the TLS listener.
    pub tls: Option<ServerTls>,
    /// Counts it in `max_clients` until its session ends.
    pub live: Live,
}

/// The serving threads, fed round-robin.
pub(super) struct Shards {
    inboxes: Vec<mpsc::UnboundedSender<Accepted>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    next: AtomicUsize,
}

impl Shards {
    /// Starts `count` threads (0: one per core); each connects its pools
    /// at once.
    pub fn start(count: usize, shared: &Arc<Shared>, shutdown_timeout: Duration) -> std::io::Result<Shards> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        let mut inboxes = Vec::with_capacity(count);
        let mut threads = Vec::with_capacity(count);
        for index in 0..count {
            // No time driver: timers are kept by `crate::timer`'s thread.
            let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
            let (inbox, rx) = mpsc::unbounded_channel();
            let shard = Shard { shared: shared.clone(), shutdown_timeout };
            let thread = std::thread::Builder::new()
                .name(format!("nearcache-worker-{index}"))
                .spawn(move || runtime.block_on(shard.run(rx)))?;
            inboxes.push(inbox);
            threads.push(thread);
        }
        Ok(Shards { inboxes, threads, next: AtomicUsize::new(0) })
    }

    pub fn count(&self) -> usize {
        self.inboxes.len()
    }

    /// Hands a client to the next shard.
    pub fn dispatch(&self, accepted: Accepted) {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.inboxes.len();
        if self.inboxes[index].send(accepted).is_err() {
            tracing::error!(shard = index, "a worker thread is gone: client dropped");
        }
    }

    /// No more clients: each shard lets its sessions finish (at most the
    /// shutdown timeout) and ends; returns when all have.
    pub async fn finish(self) {
        drop(self.inboxes);
        for thread in self.threads {
            if tokio::task::spawn_blocking(move || thread.join()).await.map_or(true, |joined| joined.is_err()) {
                tracing::error!("a worker thread panicked");
            }
        }
    }
}

struct Shard {
    shared: Arc<Shared>,
    shutdown_timeout: Duration,
}

impl Shard {
    async fn run(self, mut inbox: mpsc::UnboundedReceiver<Accepted>) {
        let hard_limit = self.shared.hard_output_limit();
        let pools = Arc::new(Pools::start(&self.shared, hard_limit));
        let mut sessions = JoinSet::new();
        loop {
            tokio::select! {
                accepted = inbox.recv() => match accepted {
                    Some(accepted) => {
                        serve(&mut sessions, self.shared.clone(), pools.clone(), accepted);
                    }
                    None => break,
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            }
        }
        let drained =
            crate::timer::timeout(self.shutdown_timeout, async { while sessions.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(clients = sessions.len(), "shutdown timeout reached, closing remaining clients");
            sessions.abort_all();
        }
    }
}
