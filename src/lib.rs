//! Portcullis: a TLS-terminating, authenticating reverse proxy.
//!
//! A request meets these phases, in this order, each in its own module:
//!
//! 1. [`pipeline::normalize`]: the request target becomes one canonical path, or 400.
//! 2. authenticate: a bearer token becomes a [`policy::Principal`], or the caller is anonymous.
//! 3. [`pipeline::authz`]: the [`policy::PolicySet`] decides; only an
//!    [`pipeline::authz::Authorized`] value can be forwarded (404 / 401 / 403 otherwise).
//! 4. rate-limit: per route and per caller (429).
//! 5. [`pipeline::forward`]: header hygiene, identity headers, the upstream call.
//! 6. audit: one record for every security decision.
//!
//! [`gateway`] holds the per-request context and the outer/inner handler that runs the
//! phases and turns every error into exactly one response; [`listener`] accepts TLS and
//! plain connections and hands each to one of the per-core [`workers`]; [`config`] and [`policy`] read the files an operator writes.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod path;
pub mod pipeline;
pub mod policy;
pub mod server;
pub mod source;
pub mod store;
pub mod tls;
pub mod units;
pub mod upstream;
pub mod workers;

pub use config::Config;
pub use server::{Gateway, RunningGateway};
