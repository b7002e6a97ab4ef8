//! Gust clusters: `gust serve --config node.toml` with a `[cluster]` table
//! joins the nodes sharing one NATS and one PostgreSQL under one cluster
//! name. Every node serves the current version of every app deployed to the
//! cluster ([`node`]); deployments are versioned artifacts kept on
//! PostgreSQL ([`store`], [`artifact`]); nodes beat their hearts there, and
//! the live count spreads single-owner work (stream partitions, change
//! feeds, blob watchers) through leases
//! ([`gust_triggers::ownership`]). Queues and topics on NATS are shared by
//! every node's consumers; timer slots are claimed once per cluster.

pub mod admin;
pub mod artifact;
pub mod front;
pub mod node;
pub mod store;

pub use node::{Node, NodeOptions};
