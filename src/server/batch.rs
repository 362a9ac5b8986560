//! Requests gathered for one write on the shared pool: consecutive pool
//! requests of one read go upstream together, as the bytes the client sent
//! (a range of the read buffer, no copy) while they are contiguous, copied
//! once they are not (a near-cache read adds its PTTL, an inline command
//! was re-encoded).

use super::dispatch::reply::Slot;
use crate::router::NodeId;
use bytes::BytesMut;
use std::ops::Range;

/// Where a request's bytes are.
pub enum Source<'a> {
    /// A range of the read buffer.
    Input(Range<usize>),
    /// Bytes of their own.
    Bytes(&'a [u8]),
}

#[derive(Default)]
pub struct Batch {
    /// The batch while it is one contiguous run of the read buffer.
    run: Range<usize>,
    /// The batch once copied.
    bytes: BytesMut,
    owned: bool,
    /// Upstream replies the batch produces.
    pub replies: usize,
    /// Client commands it answers.
    pub commands: usize,
    pub silent: bool,
    /// The upstream node it goes to.
    pub node: NodeId,
    /// Plain commands before the first near-cache read: slots are only
    /// materialized once there is one, so plain batches allocate nothing.
    plain: usize,
    slots: Vec<Slot>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.commands == 0
    }

    #[inline]
    pub fn add(&mut self, input: &[u8], source: Source, slot: Slot, silent: bool, node: NodeId) {
        self.silent = silent;
        self.node = node;
        match source {
            Source::Input(r) if !self.owned && (self.commands == 0 || self.run.end == r.start) => {
                if self.commands == 0 {
                    self.run = r;
                } else {
                    self.run.end = r.end;
                }
            }
            source => {
                if !self.owned {
                    self.owned = true;
                    self.bytes.extend_from_slice(&input[self.run.clone()]);
                }
                match source {
                    Source::Input(r) => self.bytes.extend_from_slice(&input[r]),
                    Source::Bytes(b) => self.bytes.extend_from_slice(b),
                }
            }
        }
        self.replies += slot.replies();
        self.commands += 1;
        match slot {
            Slot::Plain if self.slots.is_empty() => self.plain += 1,
            slot => {
                if self.slots.is_empty() {
                    self.slots.extend((0..self.plain).map(|_| Slot::Plain));
                }
                self.slots.push(slot);
            }
        }
    }

    /// Every reply is passed on as it comes (no near-cache read to
    /// complete, no reply map).
    pub fn is_plain(&self) -> bool {
        self.slots.is_empty()
    }

    /// The bytes to send.
    pub fn payload<'a>(&'a self, input: &'a [u8]) -> &'a [u8] {
        if self.owned {
            &self.bytes
        } else {
            &input[self.run.clone()]
        }
    }

    /// The per-command slots when the batch has near-cache reads, and
    /// makes the batch empty again.
    pub fn finish(&mut self) -> Option<Vec<Slot>> {
        let slots = (!self.slots.is_empty()).then(|| std::mem::take(&mut self.slots));
        self.bytes.clear();
        self.owned = false;
        self.run = 0..0;
        self.replies = 0;
        self.commands = 0;
        self.plain = 0;
        slots
    }
}
