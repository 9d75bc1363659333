//! Identity over real TLS: registration and confirmation, login and lockout, TOTP,
//! tokens (rotation, reuse, revocation, forgeries) and enforcement on proxied requests.

mod common;

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{confirmation_token, start_shop, Recorder, Setup, PASSWORD};
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};
use serde_json::{json, Value};

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

// Register, confirm from the outbox, log in; a second registration of the same address
// answers the same and sends a notice instead of making an account.
#[tokio::test]
async fn register_confirm_login() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let body = json!({ "email": "Ann@Example.com", "password": PASSWORD, "name": "Ann" });
    let (status, resp) = gw.post("/auth/register", body.clone()).await;
    assert_eq!((status, resp.clone()), (202, json!({ "status": "confirmation_sent" })));

    let (status, resp) = gw.login("ann@example.com", PASSWORD).await;
    assert_eq!((status, resp["error"].as_str()), (403, Some("email_unconfirmed")));

    let mail = gw.outbox();
    assert_eq!(mail.len(), 1);
    assert!(mail[0].contains("To: <ann@example.com>") && mail[0].contains("https://localhost/auth/confirm?token="));
    let token = confirmation_token(&mail[0]);
    let resp = gw
        .client
        .get(gw.url(&format!("/auth/confirm?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "status": "confirmed" }));
    let again = gw
        .client
        .get(gw.url(&format!("/auth/confirm?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_token");

    let (status, tokens) = gw.login("ann@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let (status, me) = gw.get_with("/auth/me", tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["roles"], json!(["customer"]));
    assert_eq!(me["mfa_enabled"], false);

    let (status, resp) = gw.post("/auth/register", body).await;
    assert_eq!((status, resp), (202, json!({ "status": "confirmation_sent" })));
    let mail = gw.outbox();
    assert_eq!(mail.len(), 2);
    assert!(mail[1].contains("already has one"), "{}", mail[1]);
    assert_eq!(gw.auth().store().users().await.unwrap().len(), 1);
}

// A weak password gets 422 listing every broken rule; malformed JSON gets 400.
#[tokio::test]
async fn register_validation() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let (status, resp) = gw
        .post(
            "/auth/register",
            json!({ "email": "b@example.com", "password": "short", "name": "B" }),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(resp["error"], "password_policy");
    assert_eq!(
        resp["rules"],
        json!([
            "at least 8 characters",
            "an upper-case letter",
            "a digit",
            "a symbol",
            "common"
        ]),
        "{resp}"
    );
    let resp = gw
        .client
        .post(gw.url("/auth/register"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "bad_request");
    assert!(gw.outbox().is_empty());
}

// Unknown email and wrong password get the same answer, in comparable time.
#[tokio::test]
async fn unknown_and_wrong_look_alike() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    gw.add_user("known@example.com", &["customer"]).await;
    let mut timings = [Duration::ZERO; 2];
    for round in 0..3 {
        for (i, email) in ["known@example.com", format!("nobody{round}@example.com").as_str()]
            .iter()
            .enumerate()
        {
            let started = Instant::now();
            let (status, body) = gw.login(email, "Wrong!Passw0rd").await;
            timings[i] += started.elapsed();
            assert_eq!(status, 401);
            assert_eq!(body["error"], "invalid_credentials");
            assert_eq!(body["message"], "invalid email or password");
        }
    }
    let (known, unknown) = (timings[0].as_secs_f64(), timings[1].as_secs_f64());
    assert!(
        unknown > known * 0.5 && known > unknown * 0.5,
        "known {known:.3}s vs unknown {unknown:.3}s"
    );
}

// Five failures lock the account; even the right password is refused with 429 and
// Retry-After until the lockout passes.
#[tokio::test]
async fn lockout() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    gw.add_user("lock@example.com", &["customer"]).await;
    for _ in 0..5 {
        assert_eq!(gw.login("lock@example.com", "Wrong!Passw0rd").await.0, 401);
    }
    let resp = gw
        .client
        .post(gw.url("/auth/login"))
        .json(&json!({ "email": "lock@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "900");
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "locked");

    clock.advance(Duration::from_secs(14 * 60));
    assert_eq!(gw.login("lock@example.com", PASSWORD).await.0, 429);
    clock.advance(Duration::from_secs(61));
    assert_eq!(gw.login("lock@example.com", PASSWORD).await.0, 200);

    // Unknown addresses lock the same way, so a lockout tells nothing.
    for _ in 0..5 {
        assert_eq!(gw.login("ghost@example.com", PASSWORD).await.0, 401);
    }
    assert_eq!(gw.login("ghost@example.com", PASSWORD).await.0, 429);
}

// Access tokens carry the pinned claims and are signed by the key in the JWKS.
#[tokio::test]
async fn token_claims_and_jwks() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let id = gw.add_user("c@example.com", &["customer"]).await;
    let (_, tokens) = gw.login("c@example.com", PASSWORD).await;
    let access = tokens["access_token"].as_str().unwrap();
    let c = claims_of(access);
    assert_eq!(c["sub"], id.as_str());
    assert!(id.starts_with("u-") && id.len() == 34);
    assert_eq!(c["iss"], "https://localhost");
    assert_eq!(c["roles"], json!(["customer"]));
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 32));
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(access.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let jwks: Value = gw
        .client
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 43);
    assert!(
        !tokens["refresh_token"].as_str().unwrap().contains('.'),
        "refresh token is not opaque"
    );
}

// Refresh rotates; a spent refresh token presented again revokes the whole family,
// including the access tokens issued in it.
#[tokio::test]
async fn refresh_rotation_and_reuse() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    gw.add_user("r@example.com", &["customer"]).await;
    let (_, first) = gw.login("r@example.com", PASSWORD).await;
    let (status, second) = gw
        .post("/auth/refresh", json!({ "refresh_token": first["refresh_token"] }))
        .await;
    assert_eq!(status, 200, "{second}");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let access = second["access_token"].as_str().unwrap().to_owned();
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 200);

    let (status, body) = gw
        .post("/auth/refresh", json!({ "refresh_token": first["refresh_token"] }))
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
    let (status, _) = gw
        .post("/auth/refresh", json!({ "refresh_token": second["refresh_token"] }))
        .await;
    assert_eq!(status, 401, "the family survived a reuse");
    assert_eq!(
        gw.get_with("/auth/me", &access).await.0,
        401,
        "access token of a revoked family still works"
    );
    assert_eq!(
        gw.post("/auth/refresh", json!({ "refresh_token": "made-up" })).await.0,
        401
    );
}

// Logout revokes the access token and its session; `user revoke` ends every session.
#[tokio::test]
async fn logout_and_revoke() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let id = gw.add_user("l@example.com", &["customer"]).await;
    let (_, t) = gw.login("l@example.com", PASSWORD).await;
    let access = t["access_token"].as_str().unwrap();
    let resp = gw
        .client
        .post(gw.url("/auth/logout"))
        .bearer_auth(access)
        .json(&json!({ "refresh_token": t["refresh_token"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (status, _) = gw.get_with("/auth/me", access).await;
    assert_eq!(status, 401);
    assert_eq!(
        gw.post("/auth/refresh", json!({ "refresh_token": t["refresh_token"] }))
            .await
            .0,
        401
    );
    assert_eq!(
        gw.client.post(gw.url("/auth/logout")).send().await.unwrap().status(),
        401
    );

    let (_, a) = gw.login("l@example.com", PASSWORD).await;
    let (_, b) = gw.login("l@example.com", PASSWORD).await;
    gw.auth().revoke_user(&id).await.unwrap();
    for t in [&a, &b] {
        assert_eq!(
            gw.get_with("/auth/me", t["access_token"].as_str().unwrap()).await.0,
            401
        );
        assert_eq!(
            gw.post("/auth/refresh", json!({ "refresh_token": t["refresh_token"] }))
                .await
                .0,
            401
        );
    }
}

// Staff enrol TOTP at first login; a wrong code spends the challenge; a code is never
// accepted twice; the token then says the login passed TOTP.
#[tokio::test]
async fn staff_mfa_enrolment_and_login() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    gw.add_user("admin@example.com", &["admin"]).await;

    let (status, first) = gw.login("admin@example.com", PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(first["mfa_enrollment_required"], true, "{first}");
    let (status, enrol) = gw
        .post("/auth/totp/enroll", json!({ "mfa_token": first["mfa_token"] }))
        .await;
    assert_eq!(status, 200, "{enrol}");
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    assert!(enrol["otpauth_uri"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/Portcullis:admin%40example.com?secret="));

    // A wrong code spends the challenge: the right code after it is refused.
    let (status, body) = gw
        .post(
            "/auth/mfa",
            json!({ "mfa_token": enrol["mfa_token"], "code": "000000" }),
        )
        .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_code")));
    let code = totp::code_at(&secret, clock.now()).unwrap();
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": enrol["mfa_token"], "code": code }))
            .await
            .0,
        401
    );

    // Enrol again from a fresh login, and finish with a valid code.
    let (_, again) = gw.login("admin@example.com", PASSWORD).await;
    let (_, enrol) = gw
        .post("/auth/totp/enroll", json!({ "mfa_token": again["mfa_token"] }))
        .await;
    let secret = enrol["secret"].as_str().unwrap().to_owned();
    let code = totp::code_at(&secret, clock.now()).unwrap();
    let (status, tokens) = gw
        .post("/auth/mfa", json!({ "mfa_token": enrol["mfa_token"], "code": code }))
        .await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        claims_of(tokens["access_token"].as_str().unwrap())["amr"],
        json!(["pwd", "otp"])
    );

    // Enrolled now: login asks for a code; the code just used is refused as a replay.
    let (_, next) = gw.login("admin@example.com", PASSWORD).await;
    assert_eq!(next["mfa_required"], true, "{next}");
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": next["mfa_token"], "code": code }))
            .await
            .0,
        401
    );
    clock.advance(Duration::from_secs(30));
    let (_, next) = gw.login("admin@example.com", PASSWORD).await;
    let code = totp::code_at(&secret, clock.now()).unwrap();
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": next["mfa_token"], "code": code }))
            .await
            .0,
        200
    );

    // A password alone cannot replace an enrolled second factor.
    let (_, next) = gw.login("admin@example.com", PASSWORD).await;
    assert_eq!(
        gw.post("/auth/totp/enroll", json!({ "mfa_token": next["mfa_token"] }))
            .await
            .0,
        401
    );

    // An expired challenge is refused.
    let (_, next) = gw.login("admin@example.com", PASSWORD).await;
    clock.advance(Duration::from_secs(121));
    let code = totp::code_at(&secret, clock.now()).unwrap();
    assert_eq!(
        gw.post("/auth/mfa", json!({ "mfa_token": next["mfa_token"], "code": code }))
            .await
            .0,
        401
    );
}

fn forge(header: &Value, claims: &Value, sig: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{h}.{c}.{sig}")
}

// Forged and misused tokens are all 401 with `error="invalid_token"`.
#[tokio::test]
async fn forged_tokens_refused() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop).with_clock(&clock).start().await;
    gw.add_user("f@example.com", &["customer"]).await;
    let (_, t) = gw.login("f@example.com", PASSWORD).await;
    let access = t["access_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = access.split('.').collect();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let mut claims = claims_of(&access);
    let kid = header["kid"].as_str().unwrap().to_owned();

    let none = forge(&json!({ "alg": "none", "typ": "JWT" }), &claims, "");
    let jwks: Value = gw
        .client
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
    // Algorithm confusion: HS256 keyed with the public key, signed by hand (the gateway's
    // JWT backend refuses to touch HMAC at all).
    let hs_unsigned = forge(&json!({ "alg": "HS256", "typ": "JWT", "kid": kid }), &claims, "");
    let hs_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public);
    let hs_sig = ring::hmac::sign(&hs_key, hs_unsigned.trim_end_matches('.').as_bytes());
    let hs256 = format!("{hs_unsigned}{}", URL_SAFE_NO_PAD.encode(hs_sig.as_ref()));
    let foreign_der = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let mut ed = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    ed.kid = Some(kid.clone());
    let foreign = jsonwebtoken::encode(
        &ed,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(foreign_der.as_ref()),
    )
    .unwrap();
    claims["roles"] = json!(["admin"]);
    let tampered = forge(&header, &claims, parts[2]);
    let with_jku = forge(
        &json!({ "alg": "EdDSA", "kid": "attacker", "jku": "https://evil.example/jwks.json" }),
        &claims,
        parts[2],
    );
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();

    for (name, token) in [
        ("alg none", none),
        ("HS256 with the public key", hs256),
        ("foreign key, our kid", foreign),
        ("tampered claims", tampered),
        ("jku header", with_jku),
        ("refresh token as access token", refresh),
    ] {
        let resp = gw
            .client
            .get(gw.url("/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{name}");
        let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{name}: {challenge}"
        );
        // On a public route too: a bad token is refused, not ignored.
        let resp = gw
            .client
            .get(gw.url("/api/products"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{name} on a public route");
    }
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 200);
    clock.advance(Duration::from_secs(300 + 31));
    assert_eq!(gw.get_with("/auth/me", &access).await.0, 401, "expired token accepted");
}

// Ownership and function-level checks on the shop, with identity headers set by the
// gateway alone.
#[tokio::test]
async fn enforcement_on_the_shop() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop)
        .extra("[login]\nrequire_mfa_roles = []\n")
        .start()
        .await;
    let alice = gw.add_user("alice@example.com", &["customer"]).await;
    let bob = gw.add_user("bob@example.com", &["customer"]).await;
    gw.add_user("clerk@example.com", &["inventory"]).await;
    gw.add_user("boss@example.com", &["admin"]).await;
    let token = |email: &'static str| {
        let gw = &gw;
        async move {
            gw.login(email, PASSWORD).await.1["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let (alice_t, clerk_t, boss_t) = (
        token("alice@example.com").await,
        token("clerk@example.com").await,
        token("boss@example.com").await,
    );

    let put = |path: String, t: String, body: Value| {
        let gw = &gw;
        async move {
            gw.client
                .put(gw.url(&path))
                .bearer_auth(t)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mine = format!("/api/customers/{alice}");
    assert_eq!(
        put(
            mine.clone(),
            alice_t.clone(),
            json!({ "name": "Alice", "address": "1 Lane" })
        )
        .await,
        201
    );
    assert_eq!(gw.get_with(&mine, &alice_t).await.0, 200);
    let theirs = format!("/api/customers/{bob}");
    assert_eq!(
        put(theirs.clone(), alice_t.clone(), json!({ "name": "Mallory" })).await,
        403
    );
    assert_eq!(gw.get_with(&theirs, &alice_t).await.0, 403);
    assert_eq!(gw.get_with(&format!("{theirs}/orders"), &alice_t).await.0, 403);

    // A client-supplied identity header never reaches the shop: the order records the
    // caller the gateway authenticated.
    let resp = gw
        .client
        .post(gw.url(&format!("{mine}/orders")))
        .bearer_auth(&alice_t)
        .header("X-Auth-User", bob.as_str())
        .header("x_auth_user", bob.as_str())
        .json(&json!({ "product_id": 1, "quantity": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let order = resp.json::<Value>().await.unwrap();
    // The shop's policy shows placed_by to support and admin only: read it as admin.
    assert!(order.get("placed_by").is_none(), "a customer read placed_by: {order}");
    let orders = gw.get_with(&format!("{mine}/orders"), &boss_t).await.1;
    let placed = orders
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == order["id"])
        .unwrap();
    assert_eq!(placed["placed_by"], alice.as_str());

    let status = gw
        .client
        .post(gw.url("/api/products"))
        .bearer_auth(&alice_t)
        .json(&json!({ "name": "x", "price": 1.0, "stock": 1 }))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403, "a customer managed products");
    assert_eq!(
        put("/api/products/1".into(), clerk_t.clone(), json!({ "stock": 99 })).await,
        200
    );
    let (status, body) = gw.get_with("/api/staff", &clerk_t).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(gw.get_with("/api/orders", &boss_t).await.0, 200);
    assert_eq!(
        gw.get_with("/api/staff", &boss_t).await.0,
        403,
        "an admin without TOTP reached an mfa route"
    );
}

// The upstream receives the gateway's identity headers and never the token.
#[tokio::test]
async fn identity_headers_forwarded_token_kept() {
    let rec = Recorder::start().await;
    let policy = "upstream = \"rec\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/who\"\nroles = [\"customer\"]\n";
    let gw = Setup::new(&[("rec", rec.url())], policy).start().await;
    let id = gw.add_user("h@example.com", &["customer"]).await;
    let (_, t) = gw.login("h@example.com", PASSWORD).await;
    let resp = gw
        .client
        .get(gw.url("/who"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .header("X-Auth-Roles", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = rec.requests();
    let h = &seen[0].headers;
    assert!(!h.contains_key("authorization"), "the token reached the upstream");
    assert_eq!(h["x-auth-user"], id.as_str());
    assert_eq!(h["x-auth-email"], "h@example.com");
    assert_eq!(h.get_all("x-auth-roles").iter().collect::<Vec<_>>(), ["customer"]);
}

// /auth/* is limited per client IP: the request past the budget gets 429 + Retry-After.
#[tokio::test]
async fn auth_rate_limited_per_ip() {
    let clock = ManualClock::new();
    let shop = start_shop().await;
    let gw = Setup::shop(shop)
        .extra("[rate_limit]\nauth_per_ip = \"3/min\"\n")
        .with_clock(&clock)
        .start()
        .await;
    for _ in 0..3 {
        assert_eq!(gw.login("x@example.com", "Wrong!Passw0rd").await.0, 401);
    }
    let resp = gw.client.get(gw.url("/auth/me")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "20");
    clock.advance(Duration::from_secs(20));
    assert_eq!(gw.client.get(gw.url("/auth/me")).send().await.unwrap().status(), 401);
}

// Attempts on one account are taken one at a time: parallel correct logins all succeed,
// and parallel guesses cannot outrun the lockout (exactly five are checked).
#[tokio::test(flavor = "multi_thread")]
async fn parallel_attempts_serialized() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).many_auth_requests().start().await;
    gw.add_user("p@example.com", &["customer"]).await;
    // The attempts are hashed one after another: the last waits for seventeen argon2
    // hashes, which on a busy machine take longer than the usual client timeout.
    let client = common::client_builder(&gw.ca_pem, gw.addr)
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let attempt = |password: &'static str| {
        let client = client.clone();
        let url = gw.url("/auth/login");
        tokio::spawn(async move {
            let body = json!({ "email": "p@example.com", "password": password });
            client.post(url).json(&body).send().await.unwrap().status().as_u16()
        })
    };
    let right: Vec<_> = (0..8).map(|_| attempt(PASSWORD)).collect();
    for r in right {
        assert_eq!(r.await.unwrap(), 200);
    }
    let wrong: Vec<_> = (0..10).map(|_| attempt("Wrong!Passw0rd")).collect();
    let mut statuses = Vec::new();
    for w in wrong {
        statuses.push(w.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429, 429, 429]);
}
