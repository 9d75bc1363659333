//! Second factors for tests: an account enrolled in TOTP, and requests with a bearer token.

use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

use super::{TestGateway, PASSWORD};

/// What enrolling an account hands back.
pub struct Enrolled {
    /// The TOTP secret (base32).
    pub secret: String,
    /// The `/auth/totp/enroll` answer (`secret`, `otpauth_uri`, `qr_png`, `mfa_token`).
    pub enrollment: Value,
    /// The `/auth/mfa` answer that completed it (tokens and `recovery_codes`).
    pub grant: Value,
}

impl Enrolled {
    pub fn access_token(&self) -> &str {
        self.grant["access_token"].as_str().unwrap()
    }

    pub fn recovery_codes(&self) -> Vec<String> {
        self.grant["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    }
}

impl TestGateway {
    /// Adds a user whose roles require TOTP and enrols it at its first login, at the
    /// time of `clock`.
    pub async fn enrolled(&self, clock: &ManualClock, email: &str, roles: &[&str]) -> Enrolled {
        self.add_user(email, roles).await;
        let (status, first) = self.login(email, PASSWORD).await;
        assert_eq!(status, 200, "{first}");
        assert_eq!(first["mfa_enrollment_required"], true, "{first}");
        let (status, enrollment) = self
            .post("/auth/totp/enroll", json!({ "mfa_token": first["mfa_token"] }))
            .await;
        assert_eq!(status, 200, "{enrollment}");
        let secret = enrollment["secret"].as_str().unwrap().to_owned();
        let code = totp::code_at(&secret, clock.now()).unwrap();
        let (status, grant) = self
            .post(
                "/auth/mfa",
                json!({ "mfa_token": enrollment["mfa_token"], "code": code }),
            )
            .await;
        assert_eq!(status, 200, "{grant}");
        Enrolled {
            secret,
            enrollment,
            grant,
        }
    }

    /// Logs in with [`PASSWORD`] and returns the MFA challenge's token.
    pub async fn mfa_token(&self, email: &str) -> String {
        let (status, body) = self.login(email, PASSWORD).await;
        assert_eq!((status, body["mfa_required"].as_bool()), (200, Some(true)), "{body}");
        body["mfa_token"].as_str().unwrap().to_owned()
    }

    /// `POST path` with a bearer token: the status, the `WWW-Authenticate` header (or
    /// ""), and the JSON answer.
    pub async fn post_with(&self, path: &str, token: &str, body: Value) -> (u16, String, Value) {
        let resp = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        challenged(resp).await
    }

    /// `GET path` with a bearer token: as [`TestGateway::post_with`].
    pub async fn get_challenged(&self, path: &str, token: &str) -> (u16, String, Value) {
        challenged(self.client.get(self.url(path)).bearer_auth(token).send().await.unwrap()).await
    }
}

/// An answer's status, its `WWW-Authenticate` header (or ""), and its JSON body.
async fn challenged(resp: reqwest::Response) -> (u16, String, Value) {
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}
