//! The phases of a proxied request, one module each, in the order a request meets them.

pub mod authz;
pub mod forward;
pub mod normalize;
