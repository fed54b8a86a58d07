//! The stages of a dynproxy session, one module each; `src/main.rs` wires them into the
//! program. A library so that the fuzzers (fuzz/) and property tests reach the parsers.

// Nothing reachable from input may panic: every failure is an `Error` with an exit status.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod alloc;
pub mod cli;
pub mod client;
pub mod connect;
pub mod error;
pub mod hosts;
pub mod log;
pub mod policy;
pub mod proxy_header;
pub mod relay;
pub mod resolve;
pub mod runtime;
pub mod sandbox;
pub mod srv;
pub mod sys;
pub mod target;
