//! Portcullis: a TLS-terminating, authenticating reverse proxy.
//!
//! A connection is accepted by [`listener`] (TLS by [`tls`]) and served on one of the
//! per-core [`workers`]. Each request then meets these phases, in this order, each in
//! its own module under [`pipeline`]:
//!
//! 1. [`pipeline::normalize`]: the request target becomes one canonical path
//!    ([`path`]), or 400. The gateway's own endpoints ([`pipeline::endpoints`]:
//!    `/healthz`, JWKS, `/metrics`, the `/auth/` endpoints of [`auth`]) answer next,
//!    matched on that path.
//! 2. [`pipeline::authn`]: a bearer token becomes a [`policy::Principal`], or the caller
//!    is anonymous.
//! 3. [`pipeline::authz`]: the [`policy::PolicySet`] decides; only an
//!    [`pipeline::authz::Authorized`] request, which owns the request it judged, can be
//!    forwarded (404 / 401 / 403 otherwise).
//! 4. [`pipeline::ratelimit`]: per route and per caller (429).
//! 5. [`pipeline::forward`]: header hygiene, identity headers, and the upstream call
//!    over the connection pools of [`upstream`].
//!
//! [`pipeline`]'s outer handler turns every error ([`error`]) into exactly one response
//! and at most one [`audit`] record, and logs one line. [`server`] starts the gateway,
//! runs the tasks beside the requests (sweeper, audit checkpoints, the [`admin`] socket,
//! the policy watcher of [`policy::reload`]) and shuts it down. [`config`] and [`policy`]
//! read the files an operator writes; [`store`] keeps accounts, sessions and the audit
//! trail.

pub mod admin;
pub mod attributes;
pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod error;
pub mod error_chain;
pub mod header_maps;
pub mod json_text;
pub mod listener;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod path;
pub mod pipeline;
pub mod policy;
pub mod refusal;
pub mod server;
pub mod source;
pub mod store;
pub mod tls;
pub mod units;
pub mod upstream;
pub mod workers;

pub use config::Config;
pub use server::{Gateway, RunningGateway};
