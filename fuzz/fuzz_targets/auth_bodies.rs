//! The `/auth/*` JSON bodies as they arrive: any body of at most `MAX_AUTH_BODY` bytes
//! either decodes into each endpoint's body type or is refused with a message that never
//! repeats a secret the body carried (the message reaches the log); nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::auth::body::parse;
use portcullis::auth::http::{
    ChangeBody, EnrollBody, ForgotBody, LoginBody, LogoutBody, MfaBody, RefreshBody, RegisterBody, ResetBody, StepUpBody,
    MAX_AUTH_BODY,
};
use serde::de::DeserializeOwned;

/// The fields that hold secrets.
const SECRETS: &[&str] = &[
    "password",
    "mfa_token",
    "code",
    "recovery_code",
    "refresh_token",
    "token",
    "current_password",
    "new_password",
];

/// Decodes a body the way `read_json` does, and checks a refusal's message (the log's
/// text and the client's).
fn decode<T: DeserializeOwned>(data: &[u8], secrets: &[String]) -> Option<T> {
    match parse::<T>(data, false) {
        Ok(body) => Some(body),
        Err(err) => {
            let message = err.to_string();
            // serde names a rejected string value as `string "..."`, Debug-quoted.
            for s in secrets {
                let quoted = format!("{s:?}");
                assert!(!message.contains(&quoted), "{message:?} repeats a secret");
            }
            None
        }
    }
}

/// String values of secret fields, at any depth, long enough to be recognised.
fn secrets_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if SECRETS.contains(&k.as_str()) && s.len() >= 6 => {
                        out.push(s.clone())
                    }
                    _ => secrets_in(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secrets_in(v, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_AUTH_BODY {
        return;
    }
    let mut secrets = Vec::new();
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        secrets_in(&value, &mut secrets);
    }
    let _ = decode::<RegisterBody>(data, &secrets);
    let _ = decode::<LoginBody>(data, &secrets);
    let _ = decode::<EnrollBody>(data, &secrets);
    let _ = decode::<MfaBody>(data, &secrets);
    let _ = decode::<RefreshBody>(data, &secrets);
    let _ = decode::<LogoutBody>(data, &secrets);
    let _ = decode::<StepUpBody>(data, &secrets);
    let _ = decode::<ForgotBody>(data, &secrets);
    let _ = decode::<ResetBody>(data, &secrets);
    let _ = decode::<ChangeBody>(data, &secrets);
});
