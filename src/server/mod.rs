//! The client-facing side: the listener, the [`shard`] threads serving
//! clients, one [`session::Session`] task per client, and graceful shutdown.
//!
//! [`dispatch`] decides each request's fate ([`dispatch::route`]: what it
//! does to the client's connection), `crate::router` names the upstream
//! node, and [`dispatch::answer`] builds the replies the proxy gives itself.

mod activity;
mod batch;
mod control;
mod dispatch;
mod pause;
mod redirects;
mod registry;
mod satellites;
mod session;
mod shard;
mod socket;
mod topology;
mod users;

pub use crate::client_tls::{ServerTls, ServerTlsError};
pub use control::{ConfigSource, Control, NodeReport, Report};
use socket::ClientWriter;

use crate::cache::NearCache;
use crate::config::Config;
use crate::failover::Failover;
use crate::observe;
use crate::protocol::{request::Limits, Proto};
use crate::router::{self, Node, NodeId, Router};
use crate::upstream::breaker::Breaker;
use crate::upstream::pool::Pool;
use activity::Activity;
use registry::Clients;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// What every session shares.
pub struct Shared {
    /// The upstream nodes, and which serves a request.
    pub router: Router,
    pub cache: Arc<NearCache>,
    pub failover: Arc<Failover>,
    pub tenancy: crate::tenancy::Tenancy,
    pub limits: Limits,
    pub max_pipeline: usize,
    /// `server.client_output_buffer_limit` (`usize::MAX`: none).
    pub output_limit: usize,
    /// Clients' dedicated upstream connections, for `CLIENT TRACKING … REDIRECT`
    /// and `CLIENT UNBLOCK`.
    pub redirects: redirects::Redirects,
    /// The connected clients, for `CLIENT KILL`.
    clients: Arc<Clients>,
    /// `CLIENT PAUSE`, held at the proxy.
    pub pause: pause::Pause,
    /// `server.auth = "upstream"`: clients' AUTH is checked by Redis.
    pub auth_upstream: bool,
}

/// How many times `client_output_buffer_limit` a client may never pass (the
/// hard limit; the limit itself is soft), as in Redis' defaults for pub/sub
/// clients (8 MB for 60 s, 32 MB).
const OUTPUT_HARD_FACTOR: usize = 4;

impl Shared {
    /// Unwritten output past which a client is disconnected at once. A pool
    /// batch whose replies pass it is dropped as it arrives: holding it
    /// would only end in that disconnection.
    pub fn hard_output_limit(&self) -> usize {
        self.output_limit.saturating_mul(OUTPUT_HARD_FACTOR)
    }
}

/// A worker thread's ([`shard`]) shared pools: per upstream node, one per
/// protocol version, so replies pass through in the client's protocol
/// untouched; and those logged in as clients' own Redis users.
pub struct Pools {
    shared: Arc<Shared>,
    /// Per node, started on first use (the first node's at once).
    nodes: Box<[OnceLock<NodePools>]>,
    users: users::UserPools,
    max_batch_reply: usize,
}

impl Pools {
    /// A batch's replies past `max_batch_reply` bytes are dropped (see
    /// [`Shared::hard_output_limit`]).
    fn start(shared: &Arc<Shared>, max_batch_reply: usize) -> Pools {
        let nodes = (0..shared.router.capacity()).map(|_| OnceLock::new()).collect();
        let pools = Pools { shared: shared.clone(), nodes, users: users::UserPools::default(), max_batch_reply };
        pools.get(router::DEFAULT_NODE, Proto::Resp2);
        pools
    }

    /// The pool of `node` speaking `proto`.
    #[inline]
    pub fn get(&self, node: NodeId, proto: Proto) -> &Pool {
        self.nodes[node]
            .get_or_init(|| NodePools::start(self.shared.router.node(node), self.max_batch_reply))
            .get(proto)
    }

    /// The pools of `node` logged in as `login` (see [`users`]); `None`
    /// when this thread has pools for too many logins already.
    fn for_user(&self, node: &Node, login: &users::Credentials) -> Option<Arc<NodePools>> {
        self.users.get(node, login, self.max_batch_reply)
    }
}

/// One node's pools. The RESP3 pool starts on first use.
struct NodePools {
    node: Node,
    resp2: Pool,
    resp3: OnceLock<Pool>,
    max_batch_reply: usize,
}

impl NodePools {
    fn start(node: &Node, max_batch_reply: usize) -> NodePools {
        let node = node.clone();
        let resp2 = Pool::start(node.config.clone(), Proto::Resp2, node.health.clone(), max_batch_reply);
        NodePools { node, resp2, resp3: OnceLock::new(), max_batch_reply }
    }

    /// Its pool speaking `proto`.
    fn get(&self, proto: Proto) -> &Pool {
        match proto {
            Proto::Resp2 => &self.resp2,
            Proto::Resp3 => self.resp3.get_or_init(|| {
                Pool::start(self.node.config.clone(), Proto::Resp3, self.node.health.clone(), self.max_batch_reply)
            }),
        }
    }

    /// The node as these pools reach it (address, credentials).
    fn node(&self) -> &Node {
        &self.node
    }
}

/// One accepted session in `Clients::live`.
struct Live(Arc<Clients>);

impl Live {
    fn new(clients: &Arc<Clients>) -> Live {
        clients.live.fetch_add(1, Ordering::AcqRel);
        Live(clients.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: std::io::Error },
    #[error("failover journal: {0}")]
    Journal(#[from] crate::failover::journal::JournalError),
    #[error("cannot start the worker threads: {0}")]
    Workers(std::io::Error),
}

/// A bound, not yet running, proxy listener.
pub struct Server {
    listener: TcpListener,
    /// `server.tls_listen` and its certificate, when configured.
    tls: Option<(TcpListener, ServerTls)>,
    /// The configuration it started with, for reloads to compare against.
    running: Config,
    shared: Arc<Shared>,
    clients: Arc<Clients>,
    shards: shard::Shards,
    max_clients: usize,
    tcp_keepalive: Duration,
    idle_timeout: Option<Duration>,
}

impl Server {
    /// Binds the client listener and starts the worker threads with their
    /// upstream pools, which connect in the background: no upstream is
    /// needed to start, failover serves from local memory until one answers.
    pub async fn bind(config: &Config) -> Result<Server, StartError> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .map_err(|source| StartError::Listen { addr: config.server.listen, source })?;
        let router = if config.cluster_seeds.is_empty() {
            Router::single(
                config.upstream.clone(),
                Breaker::new(config.breaker.clone(), config.upstream.url.to_string()),
            )
        } else {
            Router::cluster(config.upstream.clone(), config.cluster_seeds.clone(), config.breaker.clone())
        };
        let home = router.default_node();
        let cache = NearCache::new(config.cache.clone());
        if let (Some(cluster), true) = (router.as_cluster(), config.cache.enabled) {
            cache.partition(cluster.slot_map());
            let added = cache.clone();
            cluster.on_added(move |node| added.channel_added(node));
        }
        let in_cluster = router.as_cluster().is_some();
        let failover =
            Arc::new(Failover::new(config.failover.clone(), home.health.clone(), cache.clone(), in_cluster)?);
        let clients: Arc<Clients> = Arc::default();
        let shared = Arc::new(Shared {
            cache,
            failover,
            tenancy: crate::tenancy::Tenancy::new(&config.tenancy),
            router,
            limits: Limits {
                max_bulk_len: config.server.proto_max_bulk_len,
                max_multibulk_len: config.server.max_multibulk_len,
                ..Limits::default()
            },
            max_pipeline: config.server.max_pipeline,
            output_limit: config.server.client_output_buffer_limit.unwrap_or(usize::MAX),
            redirects: redirects::Redirects::default(),
            clients: clients.clone(),
            pause: pause::Pause::default(),
            auth_upstream: config.server.auth == crate::config::AuthMode::Upstream,
        });
        if shared.router.as_cluster().is_some() {
            tokio::spawn(topology::run(shared.clone()));
        } else {
            let home = shared.router.default_node().clone();
            topology::watch(&shared, router::DEFAULT_NODE, home, topology::Closing::Replay);
        }
        if shared.failover.config().journal_path.is_some() {
            let failover = shared.failover.clone();
            tokio::spawn(async move {
                let mut tick = crate::timer::interval(Duration::from_secs(1));
                loop {
                    tick.tick().await;
                    failover.sync_journal();
                }
            });
        }
        let tls = match &config.server.tls {
            Some(t) => {
                let listener = TcpListener::bind(t.listen)
                    .await
                    .map_err(|source| StartError::Listen { addr: t.listen, source })?;
                Some((listener, t.acceptor.clone()))
            }
            None => None,
        };
        let shards = shard::Shards::start(config.server.worker_threads, &shared, config.server.shutdown_timeout)
            .map_err(StartError::Workers)?;
        Ok(Server {
            listener,
            tls,
            running: config.clone(),
            shared,
            clients,
            shards,
            max_clients: config.server.max_clients,
            tcp_keepalive: config.server.tcp_keepalive,
            idle_timeout: config.server.client_idle_timeout,
        })
    }

    /// The operator's handle on this proxy (reload, client counts); a
    /// reload reads `source`.
    pub fn control(&self, source: ConfigSource) -> Arc<Control> {
        Arc::new(Control::new(source, self.running.clone(), self.shared.clone(), self.clients.clone()))
    }

    /// The near-cache, for the admin endpoints.
    pub fn cache(&self) -> Arc<NearCache> {
        self.shared.cache.clone()
    }

    /// Failover state, for `/ready`.
    pub fn failover(&self) -> Arc<Failover> {
        self.shared.failover.clone()
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where TLS clients connect, when `server.tls_listen` is set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Accepts clients until `stop` resolves, then stops accepting, lets
    /// sessions finish what they owe (at most the shutdown timeout) and
    /// returns.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        if let Some(limit) = self.idle_timeout {
            let clients = self.clients.clone();
            tokio::spawn(async move {
                let mut tick = crate::timer::interval((limit / 2).min(Duration::from_secs(1)));
                loop {
                    tick.tick().await;
                    activity::tick();
                    clients.close_idle(limit);
                }
            });
        }
        let next_id = AtomicU64::new(1);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, peer)) if self.clients.live.load(Ordering::Acquire) >= self.max_clients => {
                        tokio::spawn(refuse(stream, peer));
                    }
                    Ok((stream, peer)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        self.hand_over(stream, peer, id, None);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        crate::timer::sleep(Duration::from_millis(50)).await;
                    }
                },
                accepted = accept_tls(&self.tls), if self.tls.is_some() => match accepted {
                    Ok((stream, peer, tls)) if self.clients.live.load(Ordering::Acquire) >= self.max_clients => {
                        drop((stream, tls));
                        observe::client_refused();
                        tracing::warn!(%peer, "max number of clients reached, TLS connection refused");
                    }
                    Ok((stream, peer, tls)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        self.hand_over(stream, peer, id, Some(tls));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS accept failed");
                        crate::timer::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(self.listener);
        drop(self.tls);
        let open = self.clients.live.load(Ordering::Acquire);
        tracing::info!(clients = open, "shutting down: no longer accepting, finishing in-flight requests");
        self.clients.end_input();
        self.shards.finish().await;
    }

    /// Passes an accepted client to a worker thread, counted in
    /// `max_clients` from now on.
    fn hand_over(&self, stream: TcpStream, peer: SocketAddr, id: u64, tls: Option<ServerTls>) {
        configure(&stream, self.tcp_keepalive);
        let live = Live::new(&self.clients);
        match stream.into_std() {
            Ok(stream) => self.shards.dispatch(shard::Accepted { stream, peer, id, tls, live }),
            Err(e) => tracing::warn!(%peer, error = %e, "cannot hand an accepted client over"),
        }
    }

    /// How many threads serve clients.
    pub fn workers(&self) -> usize {
        self.shards.count()
    }
}

/// The next connection on the TLS listener, with the TLS settings.
async fn accept_tls(tls: &Option<(TcpListener, ServerTls)>) -> std::io::Result<(TcpStream, SocketAddr, ServerTls)> {
    match tls {
        Some((listener, settings)) => {
            let (stream, peer) = listener.accept().await?;
            Ok((stream, peer, settings.clone()))
        }
        None => std::future::pending().await,
    }
}

/// Socket options for a client: no Nagle delay, keepalive probes so a
/// vanished peer's session ends.
fn configure(stream: &TcpStream, keepalive: Duration) {
    let _ = stream.set_nodelay(true);
    let probes = socket2::TcpKeepalive::new().with_time(keepalive);
    let _ = socket2::SockRef::from(stream).set_tcp_keepalive(&probes);
}

/// Over `max_clients`: tell the client why, as Redis does, and close.
async fn refuse(mut stream: TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt;
    observe::client_refused();
    tracing::warn!(%peer, "max number of clients reached, connection refused");
    let _ = stream.write_all(b"-ERR max number of clients reached\r\n").await;
    let _ = stream.shutdown().await;
}

/// Starts one client's task on its worker thread: its session, after the
/// TLS handshake if it came in on the TLS listener. A plain connection's
/// task is the session itself (no future around it to go through on every
/// wake).
fn serve(sessions: &mut tokio::task::JoinSet<()>, shared: Arc<Shared>, pools: Arc<Pools>, accepted: shard::Accepted) {
    let shard::Accepted { stream, peer, id, tls, live } = accepted;
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(%peer, error = %e, "cannot serve an accepted client");
            return;
        }
    };
    let local = stream.local_addr().unwrap_or(peer);
    let activity = Arc::new(Activity::new(peer, local));
    match tls {
        None => {
            let (reader, writer) = stream.into_split();
            sessions.spawn(serve_halves(shared, pools, reader, Arc::new(writer), activity, id, live));
        }
        Some(tls) => {
            sessions.spawn(async move {
                if let Some(plain) = tls.accept(stream, peer).await {
                    let (reader, writer) = plain.into_split();
                    serve_halves(shared, pools, reader, Arc::new(writer), activity, id, live).await;
                }
            });
        }
    }
}

async fn serve_halves<R, W>(
    shared: Arc<Shared>,
    pools: Arc<Pools>,
    reader: R,
    writer: Arc<W>,
    activity: Arc<Activity>,
    id: u64,
    live: Live,
) where
    R: crate::fill::Fill,
    W: ClientWriter,
{
    // Held to the end: the client is counted out however the session
    // ends, a panic included.
    let clients = &live.0;
    let peer = activity.peer;
    if !clients.register(id, writer.clone(), activity.clone()) {
        return;
    }
    observe::client_connections(1.0);
    tracing::debug!(client = id, %peer, "client connected");
    let result = session::Session::new(shared.clone(), pools, reader, writer, id, peer.ip(), activity).run().await;
    clients.deregister(id);
    shared.redirects.forget(id);
    tracing::debug!(client = id, %peer, result = ?result.err(), "client disconnected");
    observe::client_connections(-1.0);
}
