//! The HTTP trigger: route matching and key-based authorisation.

mod auth;
mod router;

pub use auth::{AuthFailure, Keys, authorize, constant_time_eq, presented_key};
pub use gust_events::percent_decode;
pub use router::{HttpRouter, RouteEntry, RouteMatch, RouterError};
