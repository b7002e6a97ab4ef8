//! `gust.toml`: the app manifest.
//!
//! [`load_app`] reads an app folder, parses its `gust.toml` and validates it.
//! Every problem is reported as a [`ManifestError`] that names the file, the
//! line and column, the key involved and a fix a person can apply.

mod blob_pattern;
mod error;
mod locate;
mod model;
mod node;
mod outbound;
mod parse;
mod route;
mod sse;
mod static_mount;
mod units;

pub use blob_pattern::BlobPattern;
pub use error::ManifestError;
pub use locate::{KeyStep, key_steps, locate};
pub use model::*;
pub use node::{ClusterConfig, NodeConfig, NodeTls};
pub use outbound::{OutboundRule, outbound_allowed};
pub use parse::{MANIFEST_FILE, is_resource_name, load_app, parse_app};
pub use route::{RouteError, route_shape, validate_route};
pub use sse::SseRoute;
pub use units::{parse_duration, parse_size};
