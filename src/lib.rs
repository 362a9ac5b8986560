//! nearcache: a Redis-protocol caching proxy.
//!
//! A request travels `server` (session per client) → `protocol` (framing)
//! → `commands` (the command table) → `upstream` (shared pool or a pinned
//! connection). `config` loads `proxy.toml`, `observe` owns the metrics and
//! `admin` serves them over HTTP.

pub mod admin;
pub mod cache;
pub mod commands;
pub mod config;
pub mod fallback;
pub mod glob;
pub mod observe;
pub mod protocol;
pub mod server;
pub mod tenancy;
pub mod upstream;
