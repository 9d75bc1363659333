//! Identity: passwords, TOTP, tokens, mail, and the `/auth/*` endpoints.

pub mod http;
pub mod jwt_crypto;
pub mod mail;
pub mod password;
pub mod service;
pub mod tokens;
pub mod totp;
