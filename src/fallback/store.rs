//! The local store (being written).
