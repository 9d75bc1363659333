//! Accounts for tests: one password, one way to add a user, sign in and get a token.

use super::TestGateway;

/// The password test accounts are made with; it meets the default policy.
pub const PASSWORD: &str = "Str0ng!Passw0rd";

impl TestGateway {
    /// Adds a confirmed user directly, as `portcullis user add` does; returns its id.
    pub async fn add_user(&self, email: &str, roles: &[&str]) -> String {
        self.auth()
            .add_user(
                email,
                roles.iter().map(|r| (*r).to_owned()).collect(),
                PASSWORD.into(),
                "Test",
            )
            .await
            .unwrap()
            .id
    }

    /// Adds a confirmed user with `roles` and signs it in: its id and its access token.
    pub async fn signed_in(&self, email: &str, roles: &[&str]) -> (String, String) {
        let id = self.add_user(email, roles).await;
        (id, self.access_token(email).await)
    }

    /// Signs a user in with [`PASSWORD`] and returns its access token (the login must
    /// not ask for a second factor).
    pub async fn access_token(&self, email: &str) -> String {
        let (status, body) = self.login(email, PASSWORD).await;
        match body["access_token"].as_str() {
            Some(token) if status == 200 => token.to_owned(),
            _ => panic!("no access token for {email}: {status} {body}"),
        }
    }

    /// `POST /auth/login`: the status and the JSON answer.
    pub async fn login(&self, email: &str, password: &str) -> (u16, serde_json::Value) {
        self.post(
            "/auth/login",
            serde_json::json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Follows a confirmation link: the status of `GET /auth/confirm?token=TOKEN`.
    pub async fn confirm(&self, token: &str) -> u16 {
        let url = self.url(&format!("/auth/confirm?token={token}"));
        self.client.get(url).send().await.unwrap().status().as_u16()
    }
}

/// The token of the confirmation link in a mail.
pub fn confirmation_token(mail: &str) -> String {
    let at = mail.find("token=").expect("no confirmation link");
    mail[at + 6..].split_whitespace().next().unwrap().to_owned()
}
