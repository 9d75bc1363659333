//! Reading an `/auth/*` request body: bounded JSON, and refusals that say which field is
//! wrong and how, built from the endpoint's own field names so that no value a client
//! sent (a password, a code) is ever echoed in an answer or a log line.
//!
//! Unknown fields are ignored, as before; a `null` counts as an absent field.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Limited};
use serde::de::{DeserializeOwned, Visitor};
use serde_json::Value;

use crate::error::{BodyProblem, GatewayError};
use crate::upstream::request::RequestBody;

/// Largest body an `/auth/*` endpoint reads.
pub const MAX_AUTH_BODY: usize = 16 * 1024;

/// Reads a JSON body of at most [`MAX_AUTH_BODY`] bytes. A body announced larger is
/// refused (413) before any of it is read; one that turns out larger is 413 too, one
/// that stalls 408 (the body's own deadlines), one that is malformed 400 with what to fix.
pub async fn read_json<T: DeserializeOwned>(req: Request<RequestBody>) -> Result<T, GatewayError> {
    let too_large = GatewayError::PayloadTooLarge {
        limit: MAX_AUTH_BODY as u64,
    };
    if let Some(len) = req.headers().get(http::header::CONTENT_LENGTH) {
        if len
            .to_str()
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .is_none_or(|n| n > MAX_AUTH_BODY as u64)
        {
            return Err(too_large);
        }
    }
    let form = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v.trim_start().to_ascii_lowercase();
            v.starts_with("application/x-www-form-urlencoded") || v.starts_with("multipart/form-data")
        });
    let bytes: Bytes = Limited::new(req.into_body(), MAX_AUTH_BODY)
        .collect()
        .await
        .map_err(|e| {
            crate::error::client_body_error(&*e, MAX_AUTH_BODY as u64)
                .unwrap_or_else(|| GatewayError::Malformed("body unreadable".into()))
        })?
        .to_bytes();
    parse(&bytes, form)
}

/// Parses a body into `T`. `form`: the client said the body is a form, which gets its
/// own hint when the body is not JSON. Any JSON is read as JSON whatever the
/// `Content-Type` says (curl's `-d` sends a form type), so only a body that is not JSON
/// is refused for its type.
pub fn parse<T: DeserializeOwned>(bytes: &[u8], form: bool) -> Result<T, GatewayError> {
    let bad = GatewayError::InvalidBody;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(BodyProblem::Empty));
    }
    let Ok(value) = serde_json::from_slice::<Value>(bytes) else {
        return Err(bad(if form { BodyProblem::Form } else { BodyProblem::NotJson }));
    };
    let Value::Object(mut map) = value else {
        return Err(bad(BodyProblem::NotObject));
    };
    map.retain(|_, v| !v.is_null());
    let fields = fields_of::<T>();
    // Every field of every `/auth/*` body is a string.
    if let Some(field) = fields.iter().find(|f| map.get(**f).is_some_and(|v| !v.is_string())) {
        return Err(bad(BodyProblem::NotString(field)));
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        // serde_json's text may quote a value: only a field name of ours is kept from it.
        let text = e.to_string();
        fields
            .iter()
            .find(|f| text.starts_with(&format!("missing field `{f}`")))
            .map_or_else(
                || GatewayError::Malformed(format!("body does not fit ({:?})", e.classify())),
                |f| bad(BodyProblem::Missing(f)),
            )
    })
}

/// The field names of a derived `Deserialize` struct, as serde gives them to the
/// deserializer (empty for anything that is not a struct).
pub fn fields_of<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut fields = None;
    let _ = T::deserialize(Probe(&mut fields));
    fields.unwrap_or(&[])
}

/// A deserializer that only records the field names it is asked for.
struct Probe<'a>(&'a mut Option<&'static [&'static str]>);

/// The probe's way of stopping once it has the names.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("probe")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for Probe<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
        code: Option<String>,
    }

    fn problem(body: &str, form: bool) -> BodyProblem {
        match parse::<Login>(body.as_bytes(), form) {
            Err(GatewayError::InvalidBody(p)) => p,
            other => panic!("{body}: {other:?}"),
        }
    }

    // The probe finds a derived struct's field names, in declaration order.
    #[test]
    fn fields_are_found() {
        assert_eq!(fields_of::<Login>(), ["email", "password", "code"]);
        assert!(fields_of::<String>().is_empty());
    }

    // Each fault gets its own message, naming the field and never echoing a value.
    #[test]
    fn faults_name_the_field() {
        assert_eq!(problem(r#"{"email":"a@b.c"}"#, false), BodyProblem::Missing("password"));
        assert_eq!(
            problem(r#"{"email":"a@b.c","password":null}"#, false),
            BodyProblem::Missing("password")
        );
        assert_eq!(
            problem(r#"{"email":"a@b.c","password":12345678}"#, false),
            BodyProblem::NotString("password")
        );
        assert_eq!(problem("email=a%40b.c&password=hunter2", true), BodyProblem::Form);
        assert_eq!(problem("email=a%40b.c&password=hunter2", false), BodyProblem::NotJson);
        assert_eq!(problem("[1,2]", false), BodyProblem::NotObject);
        assert_eq!(problem("  ", false), BodyProblem::Empty);
        let secret = "s3cr3t-Value";
        let msg = problem(&format!(r#"{{"email":"{secret}","password":["{secret}"]}}"#), false).to_string();
        assert!(!msg.contains(secret), "{msg}");
    }

    // Unknown fields are ignored; optional fields may be absent; any JSON is read as JSON.
    #[test]
    fn good_bodies_pass() {
        let l: Login = parse(br#"{"email":"a","password":"p","extra":1}"#, true).unwrap();
        assert_eq!((l.email.as_str(), l.password.as_str(), l.code), ("a", "p", None));
    }
}
