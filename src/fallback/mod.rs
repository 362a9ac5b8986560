//! Failover to local memory while the upstream is unreachable: the local
//! store ([`store`]) that answers the commands the table marks FALLBACK.

pub mod store;
