//! Which upstream connection each client's dedicated connection is, so that
//! `CLIENT TRACKING on REDIRECT <id>` works through the proxy. A client
//! names the one that should receive its invalidations (a RESP3 client,
//! or one subscribed to `__redis__:invalidate`) by the id `CLIENT ID` gave
//! it, which is the proxy's own; Redis needs that client's upstream
//! connection's id. The proxy translates one into the other: forwarding
//! the proxy's id would name whatever upstream connection happens to carry
//! it, and acknowledge a redirect that delivers nothing.
//!
//! Replies that name a redirect target (`CLIENT GETREDIR`, `CLIENT
//! TRACKINGINFO`) are translated back the other way.
//!
//! A client named as a redirect target that has no dedicated connection
//! (a client that only listens for pushes, a client redirecting to
//! itself) is given one first: the redirecting session [`Summons`] it
//! through the registry, and it opens one and keeps it, listened to, for
//! as long as it is connected, as Redis keeps a redirect target. A client
//! that does not exist, or that cannot open one, is refused as Redis
//! refuses an unknown id.
//!
//! A client's entry goes when its dedicated connection goes back to the
//! spares (another client may get it next: a redirect or `CLIENT UNBLOCK`
//! naming the first must not reach the second) and when it disconnects. A
//! connection once named as a redirect target is never given to another
//! client: Redis would keep sending it the redirecting client's
//! invalidations.

use crate::protocol::request::{self, parse_int, Limits};
use crate::protocol::{encode, Args};
use atomic_waker::AtomicWaker;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::oneshot;

/// What a summoned client answers: the upstream id of the dedicated
/// connection it now holds, or `None` when it could not open one.
pub type Answer = oneshot::Sender<Option<i64>>;

/// Requests from other clients that this one open a dedicated connection
/// to be their redirect target. Its session polls it while it has no
/// dedicated connection: two atomic loads, its waker registered once (a
/// task's waker stays the same) and again after each summons.
#[derive(Debug, Default)]
pub struct Summons {
    asked: AtomicBool,
    armed: AtomicBool,
    answers: Mutex<Vec<Answer>>,
    waker: AtomicWaker,
}

impl Summons {
    /// Asks the client's session to open its dedicated connection; the
    /// answer comes through `answer`.
    pub fn summon(&self, answer: Answer) {
        self.answers.lock().unwrap_or_else(PoisonError::into_inner).push(answer);
        self.asked.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once some client summoned this one; the answers owed are
    /// then [`Summons::take`]n. Always polled from the same task.
    #[inline]
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.asked.load(Ordering::Acquire) {
            if self.armed.load(Ordering::Relaxed) {
                return Poll::Pending;
            }
            self.waker.register(cx.waker());
            self.armed.store(true, Ordering::Relaxed);
            if !self.asked.load(Ordering::Acquire) {
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }

    /// The answers owed (possibly none: taken with an earlier summons).
    pub fn take(&self) -> Vec<Answer> {
        // The summons' wake took the waker: registered again next time.
        self.armed.store(false, Ordering::Relaxed);
        self.asked.store(false, Ordering::Release);
        std::mem::take(&mut *self.answers.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// A client's dedicated connection.
#[derive(Clone, Copy)]
struct Entry {
    /// Its id upstream.
    upstream: i64,
    /// Named as a redirect target.
    targeted: bool,
}

/// Proxy client id → its dedicated connection.
#[derive(Default)]
pub struct Redirects(Mutex<HashMap<u64, Entry>>);

impl Redirects {
    /// `client` now has the dedicated connection whose id upstream is `upstream`.
    pub fn record(&self, client: u64, upstream: i64) {
        self.lock().insert(client, Entry { upstream, targeted: false });
    }

    /// `client` disconnected, or let its dedicated connection go: true
    /// when that connection was named as a redirect target (it must be
    /// closed, not given to another client).
    pub fn forget(&self, client: u64) -> bool {
        self.lock().remove(&client).is_some_and(|e| e.targeted)
    }

    /// The upstream id of `client`'s dedicated connection.
    pub fn upstream_of(&self, client: u64) -> Option<i64> {
        self.lock().get(&client).map(|e| e.upstream)
    }

    /// The upstream id of `client`'s dedicated connection, which a
    /// redirect is about to name.
    fn target(&self, client: u64) -> Option<i64> {
        let mut entries = self.lock();
        let entry = entries.get_mut(&client)?;
        entry.targeted = true;
        Some(entry.upstream)
    }

    /// The client whose dedicated connection is `upstream` upstream.
    fn client_of(&self, upstream: i64) -> Option<u64> {
        self.lock().iter().find_map(|(&client, e)| (e.upstream == upstream).then_some(client))
    }

    /// The reply of `CLIENT GETREDIR` (an integer) or `CLIENT TRACKINGINFO`
    /// (its `redirect` field) with the redirect target named by the proxy
    /// id `CLIENT ID` gave it instead of its upstream connection's id.
    /// -1 and 0 (no tracking, no redirect) and ids of no known client are
    /// left as they are.
    pub fn name_redirect(&self, reply: &[u8]) -> Bytes {
        const FIELD: &[u8] = b"$8\r\nredirect\r\n:";
        let at = match reply.first() {
            Some(b':') => 1,
            _ => match reply.windows(FIELD.len()).position(|w| w.eq_ignore_ascii_case(FIELD)) {
                Some(i) => i + FIELD.len(),
                None => return Bytes::copy_from_slice(reply),
            },
        };
        let Some(end) = reply[at..].iter().position(|&b| b == b'\r').map(|n| at + n) else {
            return Bytes::copy_from_slice(reply);
        };
        let client = parse_int(&reply[at..end]).filter(|&id| id > 0).and_then(|id| self.client_of(id));
        let Some(client) = client else {
            return Bytes::copy_from_slice(reply);
        };
        let mut out = BytesMut::with_capacity(reply.len() + 8);
        out.extend_from_slice(&reply[..at]);
        out.extend_from_slice(itoa::Buffer::new().format(client).as_bytes());
        out.extend_from_slice(&reply[end..]);
        out.freeze()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a `CLIENT TRACKING` request's `REDIRECT` becomes upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// No `REDIRECT <client id>` (or a malformed id, left for Redis to
    /// refuse): sent as it is.
    Unchanged,
    /// Rewritten with the named client's upstream id.
    Rewritten(Bytes),
    /// The named client has no dedicated connection (yet).
    Unconnected(u64),
}

/// A `CLIENT TRACKING` request (a complete multibulk) as it must reach
/// Redis. (Parsed again here, so requests that are not CLIENT TRACKING
/// carry nothing for it.)
pub fn redirect(request: &[u8], redirects: &Redirects) -> Redirect {
    let (mut ranges, mut inline) = (Vec::new(), Vec::new());
    if request::parse(request, &Limits::default(), &mut ranges, &mut inline).is_err() {
        return Redirect::Unchanged;
    }
    let args = Args::new(request, &ranges);
    let Some(at) = (3..args.len()).find(|&i| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(b"redirect"))) else {
        return Redirect::Unchanged;
    };
    let Some(client) = args.get(at + 1).and_then(parse_int).and_then(|id| u64::try_from(id).ok()) else {
        return Redirect::Unchanged;
    };
    let Some(upstream) = redirects.target(client) else {
        return Redirect::Unconnected(client);
    };
    let upstream = upstream.to_string();
    let mut out = BytesMut::new();
    let parts: Vec<&[u8]> =
        args.iter().enumerate().map(|(i, a)| if i == at + 1 { upstream.as_bytes() } else { a }).collect();
    encode::command(&mut out, parts.into_iter());
    Redirect::Rewritten(out.freeze())
}

/// The reply to a redirect naming no client (or one that could not open
/// an upstream connection), as Redis words it for a client that does not
/// exist.
pub fn no_such_client() -> Bytes {
    encode::error("ERR The client ID you want redirect to does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(parts: &[&str], redirects: &Redirects) -> Redirect {
        let mut request = BytesMut::new();
        encode::command(&mut request, parts.iter().map(|p| p.as_bytes()));
        redirect(&request, redirects)
    }

    #[test]
    fn a_redirect_names_the_clients_upstream_connection() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        let sent = translated(&["CLIENT", "TRACKING", "on", "redirect", "4", "BCAST"], &redirects);
        let expected =
            "*6\r\n$6\r\nCLIENT\r\n$8\r\nTRACKING\r\n$2\r\non\r\n$8\r\nredirect\r\n$4\r\n1017\r\n$5\r\nBCAST\r\n";
        assert_eq!(sent, Redirect::Rewritten(Bytes::from(expected)));
        assert_eq!(translated(&["CLIENT", "TRACKING", "on", "OPTIN"], &redirects), Redirect::Unchanged);
        assert_eq!(translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "x"], &redirects), Redirect::Unchanged);
    }

    #[test]
    fn a_connection_named_as_a_redirect_target_is_not_given_to_another_client() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        redirects.record(5, 1018);
        assert!(matches!(
            translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "4"], &redirects),
            Redirect::Rewritten(_)
        ));
        assert!(redirects.forget(4), "4's connection was a redirect target");
        assert!(!redirects.forget(5));
        assert!(!redirects.forget(4), "forgotten");
    }

    #[test]
    fn redirect_targets_are_named_by_proxy_ids() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        assert_eq!(redirects.name_redirect(b":1017\r\n"), Bytes::from_static(b":4\r\n"));
        assert_eq!(redirects.name_redirect(b":-1\r\n"), Bytes::from_static(b":-1\r\n"));
        assert_eq!(redirects.name_redirect(b":0\r\n"), Bytes::from_static(b":0\r\n"));
        let info = b"%3\r\n$5\r\nflags\r\n~1\r\n$2\r\non\r\n$8\r\nredirect\r\n:1017\r\n$8\r\nprefixes\r\n~0\r\n";
        let named = redirects.name_redirect(info);
        assert!(named.ends_with(b"$8\r\nredirect\r\n:4\r\n$8\r\nprefixes\r\n~0\r\n"), "{named:?}");
    }

    #[test]
    fn a_client_without_an_upstream_connection_is_named() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        assert!(!redirects.forget(4));
        let unconnected = translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "4"], &redirects);
        assert_eq!(unconnected, Redirect::Unconnected(4));
    }
}
