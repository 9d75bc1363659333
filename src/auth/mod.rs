//! Identity: passwords, TOTP, tokens, mail, and the `/auth/*` endpoints.

pub mod password;
pub mod tokens;
pub mod totp;
