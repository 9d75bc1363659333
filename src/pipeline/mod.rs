//! The phases of a proxied request, one module each, in the order a request meets them.

pub mod authn;
pub mod authz;
pub mod forward;
pub mod normalize;
pub mod ratelimit;
