//! The CLIENT commands that name the proxy's clients (LIST, INFO, KILL,
//! UNBLOCK, PAUSE, UNPAUSE), answered from the proxy's registry of its
//! clients rather than by Redis, which only knows the proxy's own
//! connections. A blocked client waits on its dedicated connection: Redis
//! unblocks that one, named by its upstream id in a request sent out of
//! band, and the client gets the reply as if it had talked to Redis
//! directly.

use super::answer;
use super::route::{ClientState, ClientsOp};
use super::tenant;
use super::{Apply, Carry, Fate};
use crate::protocol::encode;
use crate::server::activity::Activity;
use crate::server::registry::{self, Caller};
use crate::server::Shared;
use bytes::{Bytes, BytesMut};

/// The one asking, as the registry sees it.
pub struct Asker<'a> {
    pub shared: &'a Shared,
    pub st: &'a ClientState,
    pub tenant: &'a tenant::Client,
    pub activity: &'a Activity,
}

/// What `op` owes the client: a reply of the registry's; the reply and
/// the end of the connection (it killed itself); or a `CLIENT UNBLOCK`
/// for Redis, sent out of band.
pub fn answer(op: ClientsOp, asker: Asker) -> Fate {
    let Asker { shared, st, tenant, activity } = asker;
    // What the registry shows of the asker is current.
    activity.refresh(st);
    activity.touch_now();
    let registry = &shared.clients;
    let caller = Caller { id: st.id, tenant: tenant.tenant(), tenancy: shared.tenancy.enabled() };
    let reply = match op {
        ClientsOp::Info => registry::text_reply(&registry.info(st.id), st.proto),
        ClientsOp::Pause { timeout, writes_only } => {
            shared.pause.pause(timeout, writes_only);
            Bytes::from_static(encode::OK)
        }
        ClientsOp::Unpause => {
            shared.pause.unpause();
            Bytes::from_static(encode::OK)
        }
        ClientsOp::List(filter) => registry::text_reply(&registry.list(&filter, &caller), st.proto),
        ClientsOp::Kill(filter) if filter.user().is_some_and(|u| !caller.tenancy && u != "default") => {
            let user = filter.user().unwrap_or_default();
            encode::error(&format!("ERR No such user '{user}'"))
        }
        ClientsOp::Kill(filter) => {
            let (killed, itself) = registry.kill(&filter, &caller);
            let reply = match (filter.old_form, killed) {
                (true, 0) => encode::error("ERR No such client"),
                (true, _) => Bytes::from_static(encode::OK),
                (false, n) => answer::integer(i64::try_from(n).unwrap_or(i64::MAX)),
            };
            if itself {
                return Fate::Apply(Box::new(Apply { carry: Carry::Close(reply), map: None, rewritten: None }));
            }
            reply
        }
        ClientsOp::Unblock { id, .. } if !registry.sees(id, &caller) => answer::integer(0),
        ClientsOp::Unblock { id, error } => match shared.redirects.upstream_of(id) {
            None => answer::integer(0),
            Some(upstream) => return unblock(upstream, error),
        },
    };
    Fate::Ready(reply)
}

/// `CLIENT UNBLOCK` of the upstream connection `upstream`, out of band.
fn unblock(upstream: i64, error: bool) -> Fate {
    let upstream = upstream.to_string();
    let how: &[u8] = if error { b"ERROR" } else { b"TIMEOUT" };
    let mut request = BytesMut::new();
    encode::command(&mut request, [&b"CLIENT"[..], b"UNBLOCK", upstream.as_bytes(), how].into_iter());
    Fate::Apply(Box::new(Apply { carry: Carry::OutOfBand, map: None, rewritten: Some(request.freeze()) }))
}
