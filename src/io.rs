//! Socket helpers shared by client sessions and upstream connections.

use std::io::ErrorKind;
use tokio::net::tcp::OwnedWriteHalf;

/// Writes all of `data` through a shared write half (`&self` API), so the
/// half can also be held elsewhere (the shutdown registry, a pool).
pub async fn write_all(writer: &OwnedWriteHalf, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match writer.try_write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => writer.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
