//! The shared pool: a few long-lived upstream connections, each multiplexing
//! the stateless commands of many client sessions.
//!
//! A session hands a connection a [`Job`]: the raw bytes of one or more
//! pipelined requests and how many replies they produce. The connection's
//! task writes jobs in arrival order and, because Redis answers in order,
//! the replies of one job are contiguous in the stream: they are split off
//! the read buffer as one `Bytes` and sent back untouched. A connection that
//! fails or times out fails every job in flight on it and reconnects in the
//! background with exponential backoff; while it is down, jobs fail at once.

use super::{conn, UpstreamError};
use crate::config::UpstreamConfig;
use crate::observe;
use crate::protocol::{scan, Proto};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

/// The replies of a job, or why there are none.
pub type JobResult = Result<Bytes, UpstreamError>;

/// Requests to forward and where to deliver their replies.
pub struct Job {
    /// One or more complete RESP requests.
    pub payload: Bytes,
    /// How many replies `payload` produces.
    pub count: usize,
    pub reply: oneshot::Sender<JobResult>,
}

/// What the connections learn about the upstream server.
#[derive(Default)]
pub struct UpstreamInfo {
    version: Mutex<Option<String>>,
}

impl UpstreamInfo {
    /// The upstream's version, once a handshake reported it.
    pub fn version(&self) -> Option<String> {
        self.version.lock().ok()?.clone()
    }

    fn set_version(&self, v: Option<String>) {
        if let (Some(v), Ok(mut slot)) = (v, self.version.lock()) {
            *slot = Some(v);
        }
    }
}

/// A fixed set of multiplexed connections speaking one protocol version.
pub struct Pool {
    conns: Vec<mpsc::UnboundedSender<Job>>,
}

impl Pool {
    /// Starts `cfg.pool_size` connection tasks; they connect in the
    /// background and keep reconnecting for the life of the process.
    pub fn start(cfg: Arc<UpstreamConfig>, proto: Proto, info: Arc<UpstreamInfo>) -> Pool {
        let conns = (0..cfg.pool_size)
            .map(|slot| {
                let (tx, rx) = mpsc::unbounded_channel();
                let conn = PoolConn { cfg: cfg.clone(), proto, info: info.clone(), slot, rx };
                tokio::spawn(conn.run());
                tx
            })
            .collect();
        Pool { conns }
    }

    /// Queues `payload` on the connection chosen by `affinity` (a session
    /// keeps one connection, so its jobs stay in order on one stream).
    pub fn send(&self, affinity: usize, payload: Bytes, count: usize) -> oneshot::Receiver<JobResult> {
        let (reply, rx) = oneshot::channel();
        let job = Job { payload, count, reply };
        if let Err(mpsc::error::SendError(job)) = self.conns[affinity % self.conns.len()].send(job) {
            let _ = job.reply.send(Err(UpstreamError::Unavailable("proxy shutting down".into())));
        }
        rx
    }
}

/// A job written upstream, waiting for its replies.
struct InFlight {
    count: usize,
    reply: oneshot::Sender<JobResult>,
    sent_at: Instant,
}

struct PoolConn {
    cfg: Arc<UpstreamConfig>,
    proto: Proto,
    info: Arc<UpstreamInfo>,
    slot: usize,
    rx: mpsc::UnboundedReceiver<Job>,
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);

impl PoolConn {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        let mut failures = 0u32;
        loop {
            match conn::open(&self.cfg, self.proto).await {
                Ok(connected) => {
                    tracing::info!(upstream = %self.cfg.url, slot = self.slot, proto = ?self.proto, "upstream connected");
                    self.info.set_version(connected.version);
                    backoff = MIN_BACKOFF;
                    failures = 0;
                    observe::upstream_connected(1.0);
                    let err = self.serve(connected.stream).await;
                    observe::upstream_connected(-1.0);
                    match err {
                        None => return,
                        Some(e) => {
                            observe::upstream_error(&e);
                            tracing::warn!(upstream = %self.cfg.url, slot = self.slot, error = %e, "upstream connection failed")
                        }
                    }
                }
                Err(e) => {
                    observe::upstream_error(&e);
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(upstream = %self.cfg.url, slot = self.slot, error = %e, "upstream unreachable, retrying in the background");
                    } else {
                        tracing::debug!(upstream = %self.cfg.url, slot = self.slot, error = %e, failures, "upstream still unreachable");
                    }
                    if !self.fail_jobs_for(backoff, &e).await {
                        return;
                    }
                    backoff = (backoff * 2).min(self.cfg.reconnect_max_backoff);
                }
            }
        }
    }

    /// While disconnected: answers every job with `err` for `wait`.
    /// Returns false when the pool was dropped.
    async fn fail_jobs_for(&mut self, wait: Duration, err: &UpstreamError) -> bool {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return true,
                job = self.rx.recv() => match job {
                    Some(job) => { let _ = job.reply.send(Err(err.clone())); }
                    None => return false,
                },
            }
        }
    }

    /// Runs one connection until it fails (`Some(error)`) or the pool is
    /// dropped (`None`). Jobs in flight when it fails get the error.
    async fn serve(&mut self, stream: TcpStream) -> Option<UpstreamError> {
        let mut io = Io::new(stream);
        let result = io.run(&mut self.rx, self.cfg.request_timeout).await;
        let err = result.clone().err().unwrap_or(UpstreamError::ConnectionLost);
        for job in io.inflight.drain(..) {
            let _ = job.reply.send(Err(err.clone()));
        }
        result.err()
    }
}

/// The live half of a pool connection: socket, read buffer, jobs in flight.
struct Io {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    inflight: VecDeque<InFlight>,
    scanner: scan::Scanner,
    /// Bytes of the front job's replies already delimited.
    scanned: usize,
    /// Replies of the front job already delimited.
    frames: usize,
}

/// Payloads larger than this are written on their own instead of being
/// copied into the coalescing write buffer.
const COPY_LIMIT: usize = 16 * 1024;

impl Io {
    fn new(stream: TcpStream) -> Io {
        Io {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            inflight: VecDeque::new(),
            scanner: scan::Scanner::default(),
            scanned: 0,
            frames: 0,
        }
    }

    /// `Ok(())` only when the pool is dropped.
    async fn run(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Job>,
        request_timeout: Duration,
    ) -> Result<(), UpstreamError> {
        let mut tick = tokio::time::interval(request_timeout.min(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.rbuf) => {
                    if read.map_err(|_| UpstreamError::ConnectionLost)? == 0 {
                        return Err(UpstreamError::ConnectionLost);
                    }
                    self.deliver()?;
                }
                job = rx.recv() => match job {
                    None => return Ok(()),
                    Some(job) => self.write_jobs(job, rx, request_timeout).await?,
                },
                _ = tick.tick(), if !self.inflight.is_empty() => {
                    if self.inflight.front().is_some_and(|f| f.sent_at.elapsed() > request_timeout) {
                        return Err(UpstreamError::Timeout);
                    }
                }
            }
        }
    }

    /// Writes `first` and every job already queued behind it in as few
    /// writes as possible.
    async fn write_jobs(
        &mut self,
        first: Job,
        rx: &mut mpsc::UnboundedReceiver<Job>,
        request_timeout: Duration,
    ) -> Result<(), UpstreamError> {
        let now = Instant::now();
        let mut next = Some(first);
        while let Some(job) = next {
            if job.payload.len() > COPY_LIMIT {
                self.flush(request_timeout).await?;
                write_all(&mut self.stream, &job.payload, request_timeout).await?;
            } else {
                self.wbuf.extend_from_slice(&job.payload);
            }
            self.inflight.push_back(InFlight { count: job.count, reply: job.reply, sent_at: now });
            next = rx.try_recv().ok();
        }
        self.flush(request_timeout).await
    }

    async fn flush(&mut self, request_timeout: Duration) -> Result<(), UpstreamError> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        write_all(&mut self.stream, &self.wbuf, request_timeout).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Hands every job whose replies are all in the buffer back to its
    /// session.
    fn deliver(&mut self) -> Result<(), UpstreamError> {
        while let Some(front) = self.inflight.front() {
            let found = self
                .scanner
                .next_frame(&self.rbuf[self.scanned..])
                .map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            let Some(len) = found else {
                return Ok(());
            };
            if scan::kind(&self.rbuf[self.scanned..self.scanned + len]) == scan::FrameKind::Push {
                return Err(UpstreamError::Protocol("unexpected push frame on a pool connection".into()));
            }
            self.scanned += len;
            self.frames += 1;
            if self.frames == front.count {
                let replies = self.rbuf.split_to(self.scanned).freeze();
                self.scanned = 0;
                self.frames = 0;
                if let Some(done) = self.inflight.pop_front() {
                    let _ = done.reply.send(Ok(replies));
                }
            }
        }
        if self.rbuf.is_empty() {
            Ok(())
        } else {
            Err(UpstreamError::Protocol("reply without a request".into()))
        }
    }
}

/// Writes all of `data`, failing after `limit`.
pub(super) async fn write_all(stream: &mut TcpStream, data: &[u8], limit: Duration) -> Result<(), UpstreamError> {
    match tokio::time::timeout(limit, stream.write_all(data)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(UpstreamError::ConnectionLost),
        Err(_) => Err(UpstreamError::Timeout),
    }
}
