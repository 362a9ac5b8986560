//! Tests of tenant rewriting: requests, replies, pushed frames, and
//! property-style checks that nothing escapes the prefix.

mod property;
mod replies;
mod requests;
mod support;
