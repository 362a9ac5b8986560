//! What a client is owed for a batch of its requests on the shared pool:
//! each request's part of the batch's replies, as its [`Slot`] says (passed
//! on, mapped for a tenant, or completing a near-cache read, which fills
//! the cache itself), or one error per request when the batch failed.

use crate::cache::read::{malformed, Fill};
use crate::observe;
use crate::protocol::scan::Frames;
use crate::upstream::pool::JobResult;
use bytes::{Bytes, BytesMut};
use std::time::Instant;

/// Turns one reply into what the client gets (a tenant's key names
/// stripped of the prefix).
pub type ReplyMap = Box<dyn FnOnce(Bytes) -> Bytes + Send>;

/// The replies of one client command within a pool job.
pub enum Slot {
    /// One reply, passed on as it is.
    Plain,
    /// One reply, passed through a map.
    Map(ReplyMap),
    /// A near-cache read: `replies` upstream replies become the client's one.
    Fill { replies: usize, fill: Fill },
}

impl Slot {
    /// The upstream replies its request produces.
    #[inline]
    pub fn replies(&self) -> usize {
        match self {
            Slot::Fill { replies, .. } => *replies,
            Slot::Plain | Slot::Map(_) => 1,
        }
    }
}

/// What the client gets for a pool batch of `count` requests: the replies,
/// or one error per request; nothing when its replies are suppressed.
pub fn pool_replies(
    result: JobResult,
    count: usize,
    silent: bool,
    started: Instant,
    slots: Option<Vec<Slot>>,
) -> Bytes {
    observe::command_duration(started.elapsed(), count);
    if let Some(slots) = slots {
        let replies = complete(result, slots);
        return if silent { Bytes::new() } else { replies };
    }
    match result {
        _ if silent => Bytes::new(),
        Ok(replies) => replies,
        Err(e) => {
            observe::upstream_error(e.kind());
            let reply = e.reply();
            let mut all = BytesMut::with_capacity(reply.len() * count);
            (0..count).for_each(|_| all.extend_from_slice(&reply));
            all.freeze()
        }
    }
}

/// The client's replies for a job whose commands are described by `slots`:
/// plain replies pass through, cache reads are completed (and cached).
fn complete(result: JobResult, slots: Vec<Slot>) -> Bytes {
    let mut out = BytesMut::new();
    let mut frames = match result {
        Ok(replies) => Ok(Frames::new(replies)),
        Err(e) => Err(e),
    };
    for slot in slots {
        let part = match (&mut frames, slot) {
            (Ok(frames), Slot::Plain) => frames.take(1).ok_or_else(malformed),
            (Ok(frames), Slot::Map(map)) => frames.take(1).map(map).ok_or_else(malformed),
            (Ok(frames), Slot::Fill { replies, fill }) => match frames.take(replies) {
                Some(part) => fill.finish(Ok(part)),
                None => fill.finish(Err(malformed())),
            },
            (Err(e), Slot::Plain | Slot::Map(_)) => Err(e.clone()),
            (Err(e), Slot::Fill { fill, .. }) => fill.finish(Err(e.clone())),
        };
        match part {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => out.extend_from_slice(&e.reply()),
        }
    }
    out.freeze()
}
