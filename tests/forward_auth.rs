//! Forward-auth (`/auth/verify`), OpenID discovery and the `aud` claim, over real TLS:
//! the decisions another proxy gets are the gateway's own, nothing reaches an upstream,
//! and every decision is audited and counted.

mod common;

use base64::Engine;
use common::{Recorder, Setup, TestGateway};
use portcullis::audit::EventKind;
use serde_json::Value;

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "catalogue"
methods = ["GET"]
path = "/api/products"
public = true

[[route]]
name = "orders"
methods = ["GET", "POST"]
path = "/api/orders"
roles = ["customer"]
audit = true

[[route]]
name = "staff"
methods = ["GET"]
path = "/api/staff"
roles = ["admin"]

[[route]]
name = "internal"
methods = ["GET"]
path = "/internal"
roles = ["admin"]

[[route]]
name = "limited"
methods = ["GET"]
path = "/api/limited"
public = true
rate_limit = "2/min"
"#;

async fn gateway(rec: &Recorder, extra: &str) -> TestGateway {
    Setup::new(&[("rec", rec.url())], POLICY).extra(extra).start().await
}

/// `GET /auth/verify` asking about `method` `uri` with the Caddy/Traefik pair, with a
/// bearer token and extra headers.
async fn verify(
    gw: &TestGateway,
    method: &str,
    uri: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = gw
        .client
        .get(gw.url("/auth/verify"))
        .header("x-forwarded-method", method)
        .header("x-forwarded-uri", uri)
        .header("x-forwarded-host", "app.example.com")
        .header("x-forwarded-proto", "https");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

// Allowed: 200 with the identity the upstream would get; anonymous on a public route:
// 200 without identity. No upstream request is made.
#[tokio::test]
async fn allowed_with_identity_headers() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let resp = verify(&gw, "GET", "/api/orders?page=2", Some(&token), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-auth-user"), Some(id.as_str()));
    assert_eq!(header(&resp, "x-auth-email"), Some("casey@example.com"));
    assert_eq!(header(&resp, "x-auth-roles"), Some("customer"));
    assert_eq!(header(&resp, "cache-control"), Some("no-store"));
    let resp = verify(&gw, "POST", "/api/orders", Some(&token), &[]).await;
    assert_eq!(
        resp.status(),
        200,
        "the asked method is decided, not the verify request's"
    );

    let resp = verify(&gw, "GET", "/api/products", None, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-auth-user"), None);

    // Attributes: the X-Auth-Attr-* headers an upstream would get.
    let set = [("customer_id".to_owned(), "42".to_owned())].into_iter().collect();
    gw.auth()
        .change_attributes("casey@example.com", set, Vec::new())
        .await
        .unwrap();
    let token = gw.access_token("casey@example.com").await;
    let resp = verify(&gw, "GET", "/api/orders", Some(&token), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-auth-attr-customer-id"), Some("42"));
    assert!(rec.requests().is_empty(), "forward-auth reached the upstream");
}

// Refused: a route without the caller's role 403; no token 401 with a bare challenge
// (and the login page in Location for a browser only); a refused token 401
// invalid_token; no route, or a method no route allows, 403.
#[tokio::test]
async fn refusals() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    let resp = verify(&gw, "GET", "/api/staff", Some(&token), &[]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "x-auth-user"), None);

    let resp = verify(&gw, "GET", "/api/orders?page=2", None, &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "www-authenticate"), Some("Bearer"));
    assert_eq!(header(&resp, "location"), None, "an API client got a redirect");
    let html = [("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")];
    let resp = verify(&gw, "GET", "/api/orders?page=2", None, &html).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(header(&resp, "location"), Some("/auth/login?next=/api/orders"));
    let resp = verify(&gw, "GET", "/api/orders/%7Eme%20too", None, &html).await;
    assert_eq!(resp.status(), 403, "no route");
    assert_eq!(header(&resp, "location"), None);

    let resp = verify(&gw, "GET", "/api/orders", Some("not.a.token"), &[]).await;
    assert_eq!(resp.status(), 401);
    assert!(header(&resp, "www-authenticate").unwrap().contains("invalid_token"));

    assert_eq!(verify(&gw, "GET", "/api/nothing-here", None, &[]).await.status(), 403);
    assert_eq!(verify(&gw, "DELETE", "/api/products", None, &[]).await.status(), 403);
    assert!(rec.requests().is_empty());
}

// Path tricks are decided exactly as the gateway decides them: what its normalizer
// refuses (400 through the gateway) is 403 here, even for an admin; what it decodes
// (`%70` is `p`) is judged in its canonical form.
#[tokio::test]
async fn path_tricks_decided_as_the_gateway_would() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let customer = gw.signed_in("casey@example.com", &["customer"]).await.1;
    for trick in [
        "/api/products/../../internal",
        "/api/products/%2e%2e/%2E%2E/internal",
        "/api/products/.%2e/.%2e/internal",
        "//internal",
        "/api//orders",
        "/api%2Forders",
        "/api%2forders",
        "/api/products/..;/../internal",
        "/api\\orders",
        "/api/orders%00",
    ] {
        // Raw bytes: an HTTP client would resolve the dot segments itself.
        let direct = gw
            .raw(&format!(
                "GET {trick} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {customer}\r\nConnection: close\r\n\r\n"
            ))
            .await;
        assert_eq!(direct.status, 400, "the gateway itself did not refuse {trick}");
        let resp = verify(&gw, "GET", trick, Some(&customer), &[]).await;
        assert_eq!(resp.status(), 403, "{trick}");
        assert_eq!(header(&resp, "x-auth-user"), None, "{trick}");
    }
    assert_eq!(verify(&gw, "GET", "/api/%70roducts", None, &[]).await.status(), 200);
    assert_eq!(verify(&gw, "GET", "/api/%6Frders", None, &[]).await.status(), 401);
    assert!(rec.requests().is_empty());
}

// nginx's pair works like Caddy's and Traefik's; neither pair, both, half a pair or a
// repeated header is 400 (a client must not be able to add the pair its proxy does not
// set); the target must be a path.
#[tokio::test]
async fn header_pairs() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    let ask = |pairs: &[(&str, &str)]| {
        let mut req = gw.client.get(gw.url("/auth/verify")).bearer_auth(&token);
        for (k, v) in pairs {
            req = req.header(*k, *v);
        }
        req.send()
    };
    let resp = ask(&[("x-original-method", "GET"), ("x-original-uri", "/api/orders")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-auth-user").is_some());
    let resp = ask(&[("x-original-method", "GET"), ("x-original-uri", "/api/staff")])
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    for pairs in [
        &[][..],
        &[("x-forwarded-method", "GET")][..],
        &[("x-forwarded-uri", "/api/orders")][..],
        &[("x-forwarded-method", "GET"), ("x-original-uri", "/api/orders")][..],
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/api/products"),
            ("x-original-method", "GET"),
            ("x-original-uri", "/api/staff"),
        ][..],
        &[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "https://elsewhere.example/api/orders"),
        ][..],
        &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "api/orders")][..],
    ] {
        let resp = ask(pairs).await.unwrap();
        assert_eq!(resp.status(), 400, "{pairs:?}");
        assert_eq!(resp.json::<Value>().await.unwrap()["error"], "bad_request");
    }
    let resp = gw
        .client
        .get(gw.url("/auth/verify"))
        .header("x-forwarded-method", "GET")
        .header("x-forwarded-uri", "/api/products")
        .header("x-forwarded-uri", "/api/staff")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400, "a repeated header");
}

// Only `[forward_auth] trusted` peers are answered: with a range that leaves out
// 127.0.0.1, even a valid question with a valid token is 403, while the gateway still
// serves its routes.
#[tokio::test]
async fn untrusted_peer_refused() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "[forward_auth]\ntrusted = [\"10.0.0.0/8\", \"::1\"]\n").await;
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    let resp = verify(&gw, "GET", "/api/products", Some(&token), &[]).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(header(&resp, "x-auth-user"), None);
    assert_eq!(gw.status("/api/products").await, 200);
}

// Every decision is audited as the proxied request would be: refusals as access_denied
// with the reason and the asked method and (canonical) path, allowed requests only on a
// route with `audit = true`; and counted in the metrics under `(forward-auth)`.
#[tokio::test]
async fn decisions_audited_and_counted() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    assert_eq!(verify(&gw, "POST", "/api/orders", None, &[]).await.status(), 401);
    assert_eq!(verify(&gw, "GET", "/api/staff", Some(&token), &[]).await.status(), 403);
    assert_eq!(
        verify(&gw, "GET", "/api/%2e%2e/internal", None, &[]).await.status(),
        403
    );
    assert_eq!(verify(&gw, "GET", "/api/orders", Some(&token), &[]).await.status(), 200);
    assert_eq!(verify(&gw, "GET", "/api/products", None, &[]).await.status(), 200);

    let denied = gw.wait_for_events(EventKind::AccessDenied, 3).await;
    assert_eq!(denied.len(), 3, "{denied:?}");
    let summary: Vec<_> = denied
        .iter()
        .map(|r| {
            (
                r.event.method.as_deref().unwrap(),
                r.event.path.as_deref().unwrap(),
                r.event.status.unwrap(),
                r.event.user_id.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("POST", "/api/orders", 401, None),
            ("GET", "/api/staff", 403, Some(id.as_str())),
            ("GET", "/api/%2e%2e/internal", 403, None),
        ]
    );
    assert!(denied[0].event.reason.as_deref().unwrap().contains("orders"));
    assert!(denied[1].event.reason.as_deref().unwrap().contains("admin"));
    let allowed = gw.wait_for_events(EventKind::Request, 1).await;
    assert_eq!(allowed.len(), 1, "only the route with audit = true: {allowed:?}");
    assert_eq!(allowed[0].event.route.as_deref(), Some("orders"));
    assert_eq!(allowed[0].event.user_id.as_deref(), Some(id.as_str()));
    assert_eq!(allowed[0].event.status, Some(200));

    let metrics = gw.metrics().await;
    for status in ["200", "401", "403"] {
        let line = format!("route=\"(forward-auth)\",status=\"{status}\"");
        assert!(metrics.contains(&line), "no {line} in:\n{metrics}");
    }
}

// A route's rate limit counts forward-auth decisions as the requests they stand for:
// the third within the minute is 403 (audited rate_limited), and the route's budget is
// the one proxied requests spend.
#[tokio::test]
async fn rate_limited_route() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    assert_eq!(verify(&gw, "GET", "/api/limited", None, &[]).await.status(), 200);
    assert_eq!(verify(&gw, "GET", "/api/limited", None, &[]).await.status(), 200);
    let resp = verify(&gw, "GET", "/api/limited", None, &[]).await;
    assert_eq!(resp.status(), 403);
    assert!(header(&resp, "retry-after").is_some());
    assert_eq!(
        gw.status("/api/limited").await,
        429,
        "the proxied request has its own budget"
    );
    let limited = gw.wait_for_events(EventKind::RateLimited, 2).await;
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].event.path.as_deref(), Some("/api/limited"));
    assert_eq!(limited[0].event.status, Some(403));
    assert!(rec.requests().is_empty());
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

// Discovery names the issuer (the tokens' `iss`) and the JWKS, the algorithm, and no
// endpoint the gateway does not have; it is not cached, like the JWKS.
#[tokio::test]
async fn openid_discovery() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let resp = gw
        .client
        .get(gw.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control"), Some("no-store"));
    assert_eq!(header(&resp, "content-type"), Some("application/json"));
    let doc: Value = resp.json().await.unwrap();
    assert_eq!(doc["issuer"], "https://localhost");
    assert_eq!(doc["jwks_uri"], "https://localhost/.well-known/jwks.json");
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["EdDSA"])
    );
    assert!(doc.get("token_endpoint").is_none() && doc.get("authorization_endpoint").is_none());
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    assert_eq!(claims(&token)["iss"], doc["issuer"]);
    let jwks: Value = gw
        .client
        .get(gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
}

// Access tokens carry `aud` = public_url; a token signed by the gateway's own key for
// another audience, or an empty one, is refused 401 (through the gateway and forward-auth).
#[tokio::test]
async fn audience_required() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "").await;
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    let claims_of = claims(&token);
    assert_eq!(claims_of["aud"], "https://localhost");
    assert_eq!(gw.get_with("/api/orders", &token).await.0, 200);

    let mut forged: portcullis::auth::tokens::Claims = serde_json::from_value(claims_of.clone()).unwrap();
    forged.aud = "https://elsewhere.example".into();
    forged.jti = "other-audience".into();
    let elsewhere = gw.auth().keys().sign(&forged).unwrap();
    forged.aud = String::new();
    forged.jti = "empty-audience".into();
    let empty = gw.auth().keys().sign(&forged).unwrap();
    for bad in [&elsewhere, &empty] {
        let (status, body) = gw.get_with("/api/orders", bad).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
        assert_eq!(verify(&gw, "GET", "/api/orders", Some(bad), &[]).await.status(), 401);
    }
    assert!(rec.requests().iter().all(|r| r.target == "/api/orders"));
    assert_eq!(rec.requests().len(), 1);
}

// `[tokens] audience` sets the claim; the issuer stays public_url.
#[tokio::test]
async fn custom_audience() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "[tokens]\naudience = \"api://shop-orders\"\n").await;
    let token = gw.signed_in("casey@example.com", &["customer"]).await.1;
    assert_eq!(claims(&token)["aud"], "api://shop-orders");
    assert_eq!(claims(&token)["iss"], "https://localhost");
    assert_eq!(gw.get_with("/api/orders", &token).await.0, 200);
    assert_eq!(verify(&gw, "GET", "/api/orders", Some(&token), &[]).await.status(), 200);
}

// Shadow mode decides for forward-auth as for proxied requests: a refusal is let
// through (200, with the caller's identity) and audited as would_deny; a path no route
// matches is still refused.
#[tokio::test]
async fn shadow_mode() {
    let rec = Recorder::start().await;
    let gw = gateway(&rec, "[policy]\nmode = \"shadow\"\n").await;
    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let resp = verify(&gw, "GET", "/api/staff", Some(&token), &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-auth-user"), Some(id.as_str()));
    let shadowed = gw.wait_for_events(EventKind::WouldDeny, 1).await;
    assert_eq!(shadowed.len(), 1);
    assert_eq!(shadowed[0].event.path.as_deref(), Some("/api/staff"));
    assert_eq!(shadowed[0].event.status, Some(403));
    assert_eq!(
        verify(&gw, "GET", "/api/nothing-here", Some(&token), &[])
            .await
            .status(),
        403
    );
}
