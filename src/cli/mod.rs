//! The `portcullis` command line, one module per command group; printing lives here.
//!
//! A module of the binary, not of the library: nothing in it is shared with the tests,
//! which run the built binary (`tests/common::run_cli`).

pub mod args;
pub mod audit;
pub mod init;
pub mod keys;
pub mod policy;
pub mod reference;
pub mod serve;
mod shared;
pub mod user;

#[cfg(feature = "demo")]
pub mod demo;

/// `portcullis demo` in a build without the demo shop.
#[cfg(not(feature = "demo"))]
#[path = "no_demo.rs"]
pub mod demo;
