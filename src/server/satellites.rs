//! A cluster client's keyspace notifications from every master.
//!
//! In a Redis Cluster, a `PUBLISH` reaches the subscribers of every node
//! (the cluster bus carries it), but keyspace and keyevent notifications
//! (`__keyspace@0__:key`, `__keyevent@0__:set`) only those of the node
//! where the key lives. A client of the proxy subscribes on one dedicated
//! connection (on the master of slot 0); when it subscribes to a channel,
//! or a pattern, that can name such notifications, the proxy sends the
//! same request to every other master too, each on a connection of its
//! own (the client's *satellites*), and passes on only the notifications
//! they deliver: everything else they receive the client's own connection
//! delivers already (confirmations, published messages). Its later
//! (un)subscriptions go to the satellites as well, and they close with
//! the client's dedicated connection. Each is sent with a `PING`, whose
//! answer tells that the satellite has applied it: the client's own
//! connection gets the request only then, so once the client has its
//! confirmation, every master's notifications reach it. A satellite lost ends the client's
//! session, as a lost dedicated connection does (notifications would
//! otherwise go missing unseen).
//!
//! The satellites are opened on the masters known when the client
//! subscribes; a master that joins later is not listened to.

use super::Shared;
use crate::commands::{Handler, State, SubKind};
use crate::observe;
use crate::protocol::frame::{first_element, pubsub, pubsub_channel, PubSub};
use crate::protocol::{Args, Proto};
use crate::router::NodeId;
use crate::upstream::dedicated::DedicatedConn;
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

/// The channel prefixes of Redis' keyspace notifications.
const NOTIFICATIONS: [&[u8]; 2] = [b"__keyspace@", b"__keyevent@"];

/// A client's connections to the masters other than its own.
pub struct Satellites {
    requests: Vec<mpsc::UnboundedSender<(Bytes, oneshot::Sender<()>)>>,
    /// The notifications they deliver, or why one failed.
    pub notifications: mpsc::UnboundedReceiver<Result<Bytes, UpstreamError>>,
}

/// What a request means for a client's satellites.
pub enum Mirror {
    /// Not a (un)subscription they take part in.
    No,
    /// Sent to them if they exist.
    IfOpen,
    /// Sent to them, opened first if need be: it subscribes to
    /// notifications.
    Open,
}

/// Whether `request` (parsed as `args`) goes to the satellites.
pub fn mirror(handler: Handler, args: &Args) -> Mirror {
    match handler {
        Handler::State(State::Subscribe(kind @ (SubKind::Channel | SubKind::Pattern))) => {
            let pattern = kind == SubKind::Pattern;
            match args.iter().skip(1).any(|name| may_name_notifications(name, pattern)) {
                true => Mirror::Open,
                false => Mirror::IfOpen,
            }
        }
        Handler::State(State::Unsubscribe(SubKind::Channel | SubKind::Pattern)) => Mirror::IfOpen,
        _ => Mirror::No,
    }
}

/// True when a channel named `name` is a notification's, or a pattern
/// `name` (when `pattern`) can match one: its literal start (up to the
/// first wildcard or escape) and a notification prefix agree.
fn may_name_notifications(name: &[u8], pattern: bool) -> bool {
    let literal = match pattern {
        true => name.iter().position(|b| matches!(b, b'*' | b'?' | b'[' | b'\\')).map_or(name, |end| &name[..end]),
        false => name,
    };
    NOTIFICATIONS.iter().any(|prefix| match pattern && literal.len() < prefix.len() {
        true => prefix.starts_with(literal),
        false => literal.starts_with(prefix),
    })
}

impl Satellites {
    /// Connects to every master but `own`, speaking `proto`.
    pub async fn open(shared: &Shared, own: NodeId, proto: Proto) -> Result<Satellites, UpstreamError> {
        let Some(cluster) = shared.router.as_cluster() else {
            let (_, notifications) = mpsc::unbounded_channel();
            return Ok(Satellites { requests: Vec::new(), notifications });
        };
        // Opened all at once: a subscription waits for the slowest master,
        // not for the sum of them.
        let mut opening = JoinSet::new();
        for node in cluster.masters().into_iter().filter(|&node| node != own) {
            let config = cluster.node(node).config.clone();
            opening.spawn(async move { DedicatedConn::open(&config, proto, "satellite").await });
        }
        let (out, notifications) = mpsc::unbounded_channel();
        let mut requests = Vec::with_capacity(opening.len());
        while let Some(opened) = opening.join_next().await {
            let conn = opened.map_err(|_| UpstreamError::ConnectionLost)??;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(listen(conn, rx, out.clone()));
            requests.push(tx);
        }
        Ok(Satellites { requests, notifications })
    }

    /// Sends `request` to every satellite; returns once each has applied
    /// it, or fails after `limit`.
    pub async fn send(&self, request: &[u8], limit: Duration) -> Result<(), UpstreamError> {
        let mut request = BytesMut::from(request);
        request.extend_from_slice(PING);
        let request = request.freeze();
        let mut applied = Vec::with_capacity(self.requests.len());
        for satellite in &self.requests {
            let (ack, done) = oneshot::channel();
            satellite.send((request.clone(), ack)).map_err(|_| UpstreamError::ConnectionLost)?;
            applied.push(done);
        }
        let all = async {
            for done in applied {
                done.await.map_err(|_| UpstreamError::ConnectionLost)?;
            }
            Ok(())
        };
        crate::timer::timeout(limit, all).await.map_err(|_| UpstreamError::Timeout)?
    }
}

const PING: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// The answer to a `PING`: `+PONG`, or `pong` in RESP2's subscribed mode.
fn is_pong(frame: &[u8]) -> bool {
    frame == b"+PONG\r\n" || (frame.first() == Some(&b'*') && first_element(frame) == Some(b"pong"))
}

/// One satellite: writes what the session sends, passes its notifications
/// on; ends when the session drops its [`Satellites`] (the connection is
/// closed) or the connection fails.
async fn listen(
    mut conn: DedicatedConn,
    mut requests: mpsc::UnboundedReceiver<(Bytes, oneshot::Sender<()>)>,
    out: mpsc::UnboundedSender<Result<Bytes, UpstreamError>>,
) {
    // Who waits for each PING sent.
    let mut acks = VecDeque::new();
    let failed = loop {
        tokio::select! {
            request = requests.recv() => match request {
                Some((request, ack)) => {
                    if let Err(e) = conn.send(&request).await {
                        break e;
                    }
                    acks.push_back(ack);
                }
                None => return,
            },
            frame = conn.next_frame() => match frame {
                Ok(frame) if is_notification(&frame) => {
                    if out.send(Ok(frame)).is_err() {
                        return;
                    }
                }
                Ok(frame) if is_pong(&frame) => {
                    if let Some(ack) = acks.pop_front() {
                        let _ = ack.send(());
                    }
                }
                Ok(_) => {}
                Err(e) => break e,
            },
        }
    };
    observe::upstream_error(failed.kind());
    let _ = out.send(Err(failed));
}

/// A published message on a notification channel.
fn is_notification(frame: &[u8]) -> bool {
    pubsub(frame) == PubSub::Message
        && pubsub_channel(frame).is_some_and(|channel| NOTIFICATIONS.iter().any(|p| channel.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_and_patterns_that_can_name_notifications() {
        assert!(may_name_notifications(b"__keyspace@0__:user", false));
        assert!(may_name_notifications(b"__keyevent@0__:set", false));
        assert!(!may_name_notifications(b"news", false));
        assert!(!may_name_notifications(b"__key*", false), "a channel is literal");
        for pattern in ["*", "__key*", "__keyspace@0__:*", "__keyevent@*", "_?key*", "[_]*"] {
            assert!(may_name_notifications(pattern.as_bytes(), true), "{pattern}");
        }
        for pattern in ["news.*", "__other*", "__keyspacex*"] {
            assert!(!may_name_notifications(pattern.as_bytes(), true), "{pattern}");
        }
    }

    #[test]
    fn only_notifications_pass() {
        let message =
            |channel: &str| format!("*3\r\n$7\r\nmessage\r\n${}\r\n{channel}\r\n$3\r\nset\r\n", channel.len());
        assert!(is_notification(message("__keyspace@0__:k").as_bytes()));
        assert!(!is_notification(message("news").as_bytes()));
        let pmessage = "*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$18\r\n__keyevent@0__:set\r\n$1\r\nk\r\n";
        assert!(is_notification(pmessage.as_bytes()));
        let push = ">3\r\n$7\r\nmessage\r\n$16\r\n__keyspace@0__:k\r\n$3\r\nset\r\n";
        assert!(is_notification(push.as_bytes()));
        assert!(!is_notification(b"*3\r\n$9\r\nsubscribe\r\n$16\r\n__keyspace@0__:k\r\n:1\r\n"));
    }

    #[test]
    fn pongs_in_both_modes() {
        assert!(is_pong(b"+PONG\r\n"));
        assert!(is_pong(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"));
        assert!(!is_pong(b"*3\r\n$7\r\nmessage\r\n$4\r\npong\r\n$1\r\nx\r\n"));
    }
}
