//! CORS (`[cors]`): preflights answered by the gateway without the upstream or a token,
//! only for allowed origins, methods and headers on routed paths; actual answers (the
//! upstream's and the gateway's own errors) carry the CORS headers for allowed origins
//! only; the upstream's own `Access-Control-*` headers never pass.

mod common;

use common::{Recorder, Setup, TestGateway, OPEN_POLICY};
use reqwest::header::HeaderMap;
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const APP: &str = "https://app.example";

/// Routes with and without CORS, behind the `rec` upstream.
const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "items"
methods = ["GET", "PUT", "OPTIONS"]
path = "/items/{id}"
public = true

[[route]]
name = "private"
methods = ["GET"]
path = "/private"
roles = ["customer"]

[[route]]
name = "internal"
methods = ["GET", "POST"]
path = "/internal/{*rest}"
public = true
cors = false
"#;

const CORS: &str = "[cors]\nallowed_origins = [\"https://app.example\", \"http://localhost:5173\"]\nallowed_methods = [\"GET\", \"POST\", \"PUT\"]\nallowed_headers = [\"authorization\", \"content-type\", \"x-trace\"]\n";

async fn gateway(policy: &str, cors: &str) -> (TestGateway, Recorder) {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], policy).extra(cors).start().await;
    (gw, rec)
}

/// Sends a preflight for `method` with `headers` from `origin`.
async fn preflight(
    gw: &TestGateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> (u16, HeaderMap) {
    let mut req = gw
        .client
        .request(Method::OPTIONS, gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.headers().clone())
}

/// A GET with an `Origin` (or none): the status, the headers and the body.
async fn get_from(gw: &TestGateway, path: &str, origin: Option<&str>) -> (u16, HeaderMap, serde_json::Value) {
    let mut req = gw.client.get(gw.url(path));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.json().await.unwrap_or_default())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

fn varies_on_origin(h: &HeaderMap) -> bool {
    h.get_all("vary").iter().any(|v| {
        v.to_str()
            .unwrap()
            .split(',')
            .any(|p| p.trim().eq_ignore_ascii_case("origin"))
    })
}

fn no_cors_grant(h: &HeaderMap) -> bool {
    [
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-expose-headers",
        "access-control-max-age",
    ]
    .iter()
    .all(|n| !h.contains_key(*n))
}

// A preflight from an allowed origin is answered 204 by the gateway with exactly the
// configured grant, though the route lists OPTIONS: the upstream never sees it.
#[tokio::test]
async fn preflight_from_an_allowed_origin() {
    let (gw, rec) = gateway(POLICY, CORS).await;
    let (status, h) = preflight(&gw, "/items/7", APP, "PUT", Some("Authorization, Content-Type")).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-methods"), Some("GET, POST, PUT"));
    assert_eq!(
        header(&h, "access-control-allow-headers"),
        Some("authorization, content-type, x-trace")
    );
    assert_eq!(header(&h, "access-control-max-age"), Some("600"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
    assert!(varies_on_origin(&h), "{h:?}");
    // The second listed origin, with a port, and no requested headers at all.
    let (status, h) = preflight(&gw, "/items/7", "http://localhost:5173", "GET", None).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("http://localhost:5173"));
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
}

// Refusals: an origin not listed (or a near miss of one, or "null"), a method or a header
// not allowed, a route with `cors = false` get 403 and no CORS header; a path and method
// no route serves gets the same 404 as the request itself. The upstream sees nothing.
#[tokio::test]
async fn refused_preflights() {
    let (gw, rec) = gateway(POLICY, CORS).await;
    for origin in [
        "https://evil.example",
        "https://app.example.evil",
        "https://app.example:8443",
        "http://app.example",
        "HTTPS://APP.EXAMPLE",
        "null",
    ] {
        let (status, h) = preflight(&gw, "/items/7", origin, "GET", None).await;
        assert_eq!(status, 403, "{origin}");
        assert!(no_cors_grant(&h), "{origin}: {h:?}");
        assert!(varies_on_origin(&h), "{origin}: {h:?}");
    }
    let refused = [
        ("/items/7", "PUT", Some("x-evil")),
        ("/items/7", "PUT", Some("authorization, x-evil")),
        ("/internal/x", "GET", None),
        ("/internal/x", "POST", Some("content-type")),
    ];
    for (path, method, headers) in refused {
        let (status, h) = preflight(&gw, path, APP, method, headers).await;
        assert_eq!(status, 403, "{path} {method} {headers:?}");
        assert!(no_cors_grant(&h), "{path}: {h:?}");
    }
    // DELETE is routed nowhere here; PATCH is neither routed nor allowed.
    for (path, method) in [
        ("/nothing", "GET"),
        ("/items/7", "DELETE"),
        ("/items/7/x", "GET"),
        ("/private", "PATCH"),
    ] {
        let (status, h) = preflight(&gw, path, APP, method, None).await;
        assert_eq!(status, 404, "{path} {method}");
        assert!(no_cors_grant(&h), "{path}: {h:?}");
    }
    // From a refused origin, an unrouted path is the same 404: no new oracle.
    let (status, _) = preflight(&gw, "/nothing", "https://evil.example", "GET", None).await;
    assert_eq!(status, 404);
    assert!(rec.requests().is_empty(), "{:?}", rec.requests());
}

// An actual request from an allowed origin carries the origin, `Vary: Origin` and the
// exposed headers on the upstream's answer and on the gateway's own 401 and 404; from a
// refused origin the answer is served without any CORS grant; without `Origin` there
// is nothing CORS at all; a `cors = false` route grants nothing.
#[tokio::test]
async fn actual_requests() {
    let (gw, rec) = gateway(POLICY, CORS).await;
    let (status, h, body) = get_from(&gw, "/items/7", Some(APP)).await;
    assert_eq!(status, 200);
    assert_eq!(body["target"], "/items/7");
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert!(varies_on_origin(&h));
    let exposed = header(&h, "access-control-expose-headers").unwrap();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("www-authenticate"),
        "{exposed}"
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), None);

    for (path, want) in [("/private", 401), ("/nothing", 404)] {
        let (status, h, body) = get_from(&gw, path, Some(APP)).await;
        assert_eq!(status, want, "{path}");
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP), "{path}");
        assert!(varies_on_origin(&h), "{path}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }

    let (status, h, _) = get_from(&gw, "/items/7", Some("https://evil.example")).await;
    assert_eq!(status, 200);
    assert!(no_cors_grant(&h), "{h:?}");
    assert!(varies_on_origin(&h));

    let (status, h, _) = get_from(&gw, "/items/7", None).await;
    assert_eq!(status, 200);
    assert!(no_cors_grant(&h) && !varies_on_origin(&h), "{h:?}");

    let (status, h, _) = get_from(&gw, "/internal/x", Some(APP)).await;
    assert_eq!(status, 200);
    assert!(no_cors_grant(&h), "{h:?}");
    assert_eq!(rec.requests().len(), 4);
}

// With credentials: the exact origin and `Allow-Credentials: true`, on preflights and
// actual answers alike, never `*`.
#[tokio::test]
async fn with_credentials_the_exact_origin() {
    let cors = format!("{CORS}allow_credentials = true\nmax_age = \"1h\"\n");
    let (gw, _rec) = gateway(POLICY, &cors).await;
    let (status, h) = preflight(&gw, "/items/7", APP, "GET", Some("authorization")).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&h, "access-control-max-age"), Some("3600"));
    for path in ["/items/7", "/private"] {
        let (_, h, _) = get_from(&gw, path, Some(APP)).await;
        assert_eq!(header(&h, "access-control-allow-origin"), Some(APP), "{path}");
        assert_eq!(header(&h, "access-control-allow-credentials"), Some("true"), "{path}");
    }
    let (_, h, _) = get_from(&gw, "/items/7", Some("https://evil.example")).await;
    assert!(no_cors_grant(&h), "{h:?}");
}

// `"*"` grants `*` without credentials; with credentials it stops start-up, naming the
// file, the line and the key. Origins with a path or a trailing slash are refused too.
#[tokio::test]
async fn star_and_bad_origins() {
    let (gw, _rec) = gateway(POLICY, "[cors]\nallowed_origins = [\"*\"]\n").await;
    let (status, h) = preflight(&gw, "/items/7", "https://anyone.example", "GET", None).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    let (_, h, _) = get_from(&gw, "/items/7", Some("https://anyone.example")).await;
    assert_eq!(header(&h, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);

    let rec = Recorder::start().await;
    let bad = [
        (
            "[cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n",
            "[cors] allow_credentials",
            "credentials cannot be allowed for any origin",
        ),
        (
            "[cors]\nallowed_origins = [\"https://app.example/\"]\n",
            "[cors] allowed_origins",
            "trailing slash",
        ),
        (
            "[cors]\nallowed_origins = [\"https://*.example\"]\n",
            "[cors] allowed_origins",
            "wildcards",
        ),
    ];
    for (extra, key, msg) in bad {
        let dir = tempfile::tempdir().unwrap();
        let path = Setup::new(&[("rec", rec.url())], POLICY).extra(extra).write(dir.path());
        let err = portcullis::Config::load(&path).unwrap_err().to_string();
        let line = 1 + std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .position(|l| l.starts_with(key.split(' ').nth(1).unwrap()))
            .unwrap();
        assert!(err.contains(&format!("gateway.toml:{line}:")), "{err}");
        assert!(err.contains(key) && err.contains(msg), "{err}");
    }
}

// The `/auth/` endpoints take preflights for the method they serve, and their answers
// carry the grant (a browser app can read a failed login's JSON).
#[tokio::test]
async fn auth_endpoints() {
    let (gw, _rec) = gateway(POLICY, CORS).await;
    let (status, h) = preflight(&gw, "/auth/login", APP, "POST", Some("content-type")).await;
    assert_eq!(status, 204);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    let (status, _) = preflight(&gw, "/auth/refresh", APP, "POST", Some("content-type")).await;
    assert_eq!(status, 204);
    let (status, _) = preflight(&gw, "/auth/me", APP, "GET", Some("authorization")).await;
    assert_eq!(status, 204);
    let (status, h) = preflight(&gw, "/auth/login", APP, "PUT", None).await;
    assert_eq!(status, 404);
    assert!(no_cors_grant(&h));
    let (status, _) = preflight(&gw, "/auth/nothing", APP, "POST", None).await;
    assert_eq!(status, 404);
    let (status, _) = preflight(&gw, "/auth/register", APP, "POST", Some("content-type")).await;
    assert_eq!(status, 204, "registration is on in the test configuration");

    let resp = gw
        .client
        .post(gw.url("/auth/login"))
        .header("origin", APP)
        .json(&serde_json::json!({ "email": "nobody@example.com", "password": "wrong-password" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(header(resp.headers(), "access-control-allow-origin"), Some(APP));
    assert_eq!(header(resp.headers(), "cache-control"), Some("no-store"));
}

// With registration off, /auth/register and /auth/confirm are no endpoints: their
// preflights get the same 404 as the requests themselves.
#[tokio::test]
async fn no_registration_no_preflight() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY)
        .registration(None)
        .extra(CORS)
        .start()
        .await;
    let (status, h) = preflight(&gw, "/auth/register", APP, "POST", Some("content-type")).await;
    assert_eq!(status, 404);
    assert!(no_cors_grant(&h));
    let (status, _) = preflight(&gw, "/auth/confirm", APP, "GET", None).await;
    assert_eq!(status, 404);
    let (status, _) = preflight(&gw, "/auth/login", APP, "POST", Some("content-type")).await;
    assert_eq!(status, 204);
}

/// An upstream that answers every request with its own permissive CORS headers.
async fn permissive_upstream() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\
                          access-control-allow-origin: *\r\naccess-control-allow-credentials: true\r\n\
                          access-control-allow-methods: *\r\naccess-control-expose-headers: x-secret\r\n\
                          vary: Accept-Encoding\r\nconnection: close\r\n\r\n{}",
                    )
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

// The gateway owns CORS: the upstream's own `Access-Control-*` headers are replaced by
// the gateway's for an allowed origin and removed for anyone else; its `Vary` is kept.
#[tokio::test]
async fn upstream_cors_headers_do_not_pass() {
    let gw = Setup::new(&[("rec", permissive_upstream().await)], POLICY)
        .extra(CORS)
        .start()
        .await;
    let (status, h, _) = get_from(&gw, "/items/7", Some(APP)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
    assert_eq!(header(&h, "access-control-allow-methods"), None);
    assert!(!header(&h, "access-control-expose-headers")
        .unwrap()
        .contains("x-secret"));
    let vary: Vec<_> = h.get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(vary.contains(&"Accept-Encoding") && varies_on_origin(&h), "{vary:?}");
    for origin in [Some("https://evil.example"), None] {
        let (status, h, _) = get_from(&gw, "/items/7", origin).await;
        assert_eq!(status, 200);
        assert!(no_cors_grant(&h), "{origin:?}: {h:?}");
    }
}

// Without `[cors]` nothing changes: a preflight is an ordinary OPTIONS request, judged
// by the routes and forwarded, and no CORS header is added.
#[tokio::test]
async fn without_cors_nothing_changes() {
    let (gw, rec) = gateway(OPEN_POLICY, "").await;
    let (status, h) = preflight(&gw, "/items/7", APP, "GET", None).await;
    assert_eq!(status, 200);
    assert!(no_cors_grant(&h) && !varies_on_origin(&h), "{h:?}");
    assert_eq!(rec.requests().len(), 1);
    assert_eq!(rec.requests()[0].method, "OPTIONS");
}
