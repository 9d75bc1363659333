//! Identity: the `/auth/*` endpoints over [`service::AuthService`], its flows (one file
//! each), and below them passwords, TOTP and tokens. Mail goes through [`crate::mail`].
//!
//! `http` reads requests and records each flow's event; `service` holds the state the
//! flows share; `registration`, `login`, `mfa`, `password_reset`, `password_change`,
//! `sessions` and `verify` are the flows, each answering with a [`flow::Flow`];
//! `tokens`, `jwt_crypto`, `password`, `password_policy` and `totp` know nothing of
//! accounts.

pub mod activity;
pub mod attributes;
pub mod body;
pub mod browser;
pub mod cookie;
mod feed;
pub mod flow;
pub mod http;
pub mod identity;
pub mod idle;
pub mod jwt_crypto;
pub mod login;
pub mod mfa;
pub mod pages;
pub mod password;
pub mod password_change;
pub mod password_policy;
pub mod password_reset;
pub mod recovery;
pub mod registration;
pub mod service;
pub mod sessions;
mod state;
pub mod step_up;
pub mod tokens;
pub mod totp;
pub mod verify;

pub use self::flow::{AuthEvent, Flow};
pub use self::login::LoginOutcome;
pub use self::mfa::{Enrollment, MfaCode, MfaGrant};
pub use self::registration::normalize_email;
pub use self::service::AuthService;
pub use self::sessions::TokenPair;
pub use self::state::Verified;
