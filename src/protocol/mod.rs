//! RESP on the wire: parsing client requests, finding reply boundaries in
//! upstream streams, and encoding the replies the proxy writes itself.
//!
//! The hot path never builds frame trees: requests are parsed into argument
//! ranges over the read buffer ([`request`]), upstream replies are only
//! delimited ([`scan`]) so their bytes can be handed to clients as they came.
//! Where a reply's structure matters (handshakes, pub/sub confirmations) the
//! `redis-protocol` crate decodes that one bounded frame ([`frame`]).

mod args;
pub mod encode;
pub mod frame;
pub mod request;
pub mod scan;

#[cfg(test)]
pub use args::laid_out;
pub use args::Args;

/// RESP protocol version spoken on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Resp2,
    Resp3,
}

impl Proto {
    /// The number HELLO uses for this version.
    pub fn number(self) -> i64 {
        match self {
            Proto::Resp2 => 2,
            Proto::Resp3 => 3,
        }
    }
}

/// A violation of the protocol by the peer; the connection cannot continue.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    MultibulkLength,
    #[error("invalid bulk length")]
    BulkLength,
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulk,
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulk,
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    #[error("too big inline request")]
    InlineTooBig,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("invalid frame type byte {0:#04x}")]
    FrameType(u8),
    #[error("invalid length or integer in frame header")]
    Header,
    #[error("missing CRLF after bulk data")]
    MissingCrlf,
    #[error("streamed RESP3 frames are not supported")]
    Streamed,
    #[error("request larger than the tenant's max_request_bytes")]
    RequestTooLarge,
}
