//! Identity: the `/auth/*` endpoints over [`service::AuthService`], its flows (one file
//! each), and below them passwords, TOTP, tokens and mail.
//!
//! `http` reads requests and records each flow's event; `service` holds the state the
//! flows share; `registration`, `login`, `mfa`, `sessions` and `verify` are the flows,
//! each answering with a [`flow::Flow`]; `tokens`, `jwt_crypto`, `password`, `totp` and
//! `mail` know nothing of accounts.

pub mod flow;
pub mod http;
pub mod identity;
pub mod jwt_crypto;
pub mod login;
pub mod mail;
pub mod mfa;
pub mod password;
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
