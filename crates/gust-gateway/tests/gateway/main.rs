//! End-to-end tests of the gateway over real sockets on 127.0.0.1.

mod common;

mod affinity;
mod auth;
mod breaker;
mod canary;
mod proxy;
mod traffic;
