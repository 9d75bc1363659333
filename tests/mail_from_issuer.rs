//! `[email] from` and `[totp] issuer`: the name on the gateway's mail and in
//! authenticator apps, with their defaults and their start-up checks.

mod common;

use common::{Recorder, Setup, OPEN_POLICY};
use serde_json::json;

fn from_line(mail: &str) -> &str {
    mail.lines().find(|l| l.starts_with("From: ")).unwrap()
}

// The outbox's messages come from `[email] from`; without it from
// `Portcullis <no-reply@HOST>`, HOST from `public_url`.
#[tokio::test]
async fn mail_from() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[email]\nfrom = \"Acme Accounts <accounts@acme.example>\"\n")
        .start()
        .await;
    gw.add_user("ann@example.com", &["customer"]).await;
    let (status, _) = gw
        .post("/auth/password/forgot", json!({ "email": "ann@example.com" }))
        .await;
    assert_eq!(status, 202);
    let mail = gw.outbox();
    assert_eq!(mail.len(), 1);
    assert_eq!(from_line(&mail[0]), "From: Acme Accounts <accounts@acme.example>");

    let plain = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    plain.add_user("bob@example.com", &["customer"]).await;
    plain
        .post("/auth/password/forgot", json!({ "email": "bob@example.com" }))
        .await;
    assert_eq!(from_line(&plain.outbox()[0]), "From: Portcullis <no-reply@localhost>");
}

// `[email.smtp] from` may be left out: `[email] from` is used for SMTP too.
#[tokio::test]
async fn smtp_from_defaults_to_email_from() {
    let rec = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
        .extra("[email]\nfrom = \"Acme <no-reply@acme.example>\"\n[email.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n")
        .write(dir.path());
    let config = portcullis::Config::load(&path).unwrap();
    let smtp = config.email.smtp.unwrap();
    assert_eq!(smtp.from.email.to_string(), "no-reply@acme.example");
    assert_eq!(config.email.from.to_string(), smtp.from.to_string());
}

// Enrolment names `[totp] issuer` in the otpauth URI (label and parameter); the default
// stays "Portcullis".
#[tokio::test]
async fn totp_issuer() {
    let rec = Recorder::start().await;
    for (extra, issuer) in [("[totp]\nissuer = \"Acme API\"\n", "Acme%20API"), ("", "Portcullis")] {
        let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
            .extra(extra)
            .start()
            .await;
        let (_, token) = gw.signed_in("ann@example.com", &["customer"]).await;
        let (status, _, enrol) = gw.post_with("/auth/totp/enroll", &token, json!({})).await;
        assert_eq!(status, 200, "{enrol}");
        let uri = enrol["otpauth_uri"].as_str().unwrap();
        assert!(
            uri.starts_with(&format!("otpauth://totp/{issuer}:ann%40example.com?")),
            "{uri}"
        );
        assert!(uri.contains(&format!("issuer={issuer}")), "{uri}");
        assert!(enrol["qr_png"].as_str().is_some_and(|q| !q.is_empty()));
    }
}

// A bad issuer or From stops start-up, naming the file, the line and the key.
#[tokio::test]
async fn bad_values_named() {
    let rec = Recorder::start().await;
    for (extra, key, msg) in [
        ("[totp]\nissuer = \"Acme:API\"\n", "[totp] issuer", "cannot contain ':'"),
        ("[totp]\nissuer = \"  \"\n", "[totp] issuer", "cannot be empty"),
        (
            "[email]\nfrom = \"not an address\"\n",
            "[email] from",
            "is not a mail address",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = Setup::new(&[("rec", rec.url())], OPEN_POLICY)
            .extra(extra)
            .write(dir.path());
        let line = 1 + std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .position(|l| l.starts_with(key.split(' ').nth(1).unwrap()))
            .unwrap();
        let err = portcullis::Config::load(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
        assert!(err.contains(key) && err.contains(msg), "{err}");
    }
}
