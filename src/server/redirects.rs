//! Which upstream connection each client's dedicated connection is, so that
//! `CLIENT TRACKING on REDIRECT <id>` works through the proxy. A client
//! names the one that should receive its invalidations (subscribed to
//! `__redis__:invalidate`) by the id `CLIENT ID` gave it, which is the
//! proxy's own; Redis needs that client's upstream connection's id. The
//! proxy translates one into the other, or refuses the redirect when the
//! named client has no upstream connection: forwarding the proxy's id
//! would name whatever upstream connection happens to carry it, and
//! acknowledge a redirect that delivers nothing.
//!
//! Replies that name a redirect target (`CLIENT GETREDIR`, `CLIENT
//! TRACKINGINFO`) are translated back the other way.
//!
//! A client's entry goes when its dedicated connection goes back to the
//! spares (another client may get it next: a redirect or `CLIENT UNBLOCK`
//! naming the first must not reach the second) and when it disconnects. A
//! connection once named as a redirect target is never given to another
//! client: Redis would keep sending it the redirecting client's
//! invalidations.

use crate::protocol::request::{self, parse_int, Limits};
use crate::protocol::{encode, Args};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

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

/// A `CLIENT TRACKING` request (a complete multibulk) as it must reach
/// Redis: `None` when it has no `REDIRECT <client id>` (sent as it is),
/// otherwise rewritten with the named client's upstream id; `Err` is the
/// reply when that client has no upstream connection. A malformed id is
/// left for Redis to refuse. (Parsed again here, so requests that are not
/// CLIENT TRACKING carry nothing for it.)
pub fn redirect(request: &[u8], redirects: &Redirects) -> Result<Option<Bytes>, Bytes> {
    let (mut ranges, mut inline) = (Vec::new(), Vec::new());
    if request::parse(request, &Limits::default(), &mut ranges, &mut inline).is_err() {
        return Ok(None);
    }
    let args = Args::new(request, &ranges);
    let Some(at) = (3..args.len()).find(|&i| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(b"redirect"))) else {
        return Ok(None);
    };
    let Some(client) = args.get(at + 1).and_then(parse_int).and_then(|id| u64::try_from(id).ok()) else {
        return Ok(None);
    };
    let Some(upstream) = redirects.target(client) else {
        return Err(encode::error(
            "ERR The client ID you want redirect to does not exist or has no upstream connection \
             (through nearcache, SUBSCRIBE it to __redis__:invalidate first)",
        ));
    };
    let upstream = upstream.to_string();
    let mut out = BytesMut::new();
    let parts: Vec<&[u8]> =
        args.iter().enumerate().map(|(i, a)| if i == at + 1 { upstream.as_bytes() } else { a }).collect();
    encode::command(&mut out, parts.into_iter());
    Ok(Some(out.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translated(parts: &[&str], redirects: &Redirects) -> Result<Option<Bytes>, Bytes> {
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
        assert_eq!(sent, Ok(Some(Bytes::from(expected))));
        assert_eq!(translated(&["CLIENT", "TRACKING", "on", "OPTIN"], &redirects), Ok(None));
        assert_eq!(translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "x"], &redirects), Ok(None));
    }

    #[test]
    fn a_connection_named_as_a_redirect_target_is_not_given_to_another_client() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        redirects.record(5, 1018);
        translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "4"], &redirects).expect("translated");
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
    fn a_client_without_an_upstream_connection_is_refused() {
        let redirects = Redirects::default();
        redirects.record(4, 1017);
        assert!(!redirects.forget(4));
        let refused = translated(&["CLIENT", "TRACKING", "on", "REDIRECT", "4"], &redirects);
        assert!(refused.is_err_and(|e| e.starts_with(b"-ERR The client ID you want redirect to does not exist")));
    }
}
