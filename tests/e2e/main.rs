//! End-to-end specifications of dynproxy: the built binary, started the way systemd and
//! inetd start it, against a DNS server and backends on loopback. One behaviour per test.

// Shared with tests/systemd and tests/load, which use parts this binary does not.
#[allow(dead_code)]
mod support;

mod cli;
mod connect;
mod faults;
mod keepalive;
mod logging;
mod policy;
mod proxy_protocol;
mod relay;
mod resolve;
mod sandbox;
mod srv;
mod start;
