//! Per-organisation key namespaces (being built).

pub mod rewrite;
