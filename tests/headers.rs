//! What the upstream receives, header by header: headers that upstream frameworks trust
//! (path and method rewrites, client-IP and remote-user claims, httpoxy's `Proxy`) never
//! arrive; underscore spellings of framing and hop-by-hop headers never arrive, over
//! HTTP/1.1 and HTTP/2; `X-Forwarded-Host` is only ever a valid host[:port].

mod common;

use common::{client_builder, Recorder, Setup, OPEN_POLICY};
use reqwest::Version;

/// Headers an upstream framework may trust, in their usual spelling; none may arrive.
const TRUSTED_BY_FRAMEWORKS: [&str; 17] = [
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Forwarded-Prefix",
    "X-Forwarded-Uri",
    "X-Original-Method",
    "X-Forwarded-Method",
    "Proxy",
    "X-Client-IP",
    "True-Client-IP",
    "CF-Connecting-IP",
    "X-Forwarded-User",
    "X-Remote-User",
    "Remote-User",
    "X-Forwarded-Server",
    "Client-IP",
    "X-Cluster-Client-IP",
    "X-ProxyUser-Ip",
];

/// Underscore spellings of framing, hop-by-hop and gateway-owned headers; none may
/// arrive, since an upstream that reads `_` as `-` would act on them.
const UNDERSCORED: [&str; 16] = [
    "Transfer_Encoding",
    "Content_Length",
    "Keep_Alive",
    "Proxy_Connection",
    "Proxy_Authorization",
    "Proxy_Authenticate",
    "X_Forwarded_For",
    "X_Forwarded_Host",
    "X_Forwarded_Proto",
    "X_Real_IP",
    "X_Request_Id",
    "X_HTTP_Method_Override",
    "X_Original_URL",
    "True_Client_IP",
    "X_Remote_User",
    "CF_Connecting_IP",
];

/// A header name as an upstream that folds `_` into `-` would read it.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Panics naming every forbidden header (in any spelling) that the upstream received.
fn assert_none_arrived(seen: &http::HeaderMap, forbidden: &[&str]) {
    assert_none_spelled(seen, forbidden, |_| true);
}

/// Panics naming every header spelled with `_` that folds into a forbidden name (the
/// gateway sets some of these names itself, in their `-` spelling).
fn assert_no_underscore_twin(seen: &http::HeaderMap, forbidden: &[&str]) {
    assert_none_spelled(seen, forbidden, |n| n.contains('_'));
}

fn assert_none_spelled(seen: &http::HeaderMap, forbidden: &[&str], spelled: impl Fn(&str) -> bool) {
    let arrived: Vec<&str> = seen
        .keys()
        .map(http::HeaderName::as_str)
        .filter(|n| spelled(n) && forbidden.iter().any(|f| folded(f) == folded(n)))
        .collect();
    assert!(arrived.is_empty(), "reached the upstream: {arrived:?}");
}

// Over HTTP/1.1: trusted-by-frameworks headers and underscore spellings are stripped,
// while the request's real framing and ordinary headers pass.
#[tokio::test]
async fn stripped_over_http1() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let mut request = String::from("POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n");
    for name in TRUSTED_BY_FRAMEWORKS {
        request.push_str(&format!("{name}: /admin\r\n"));
        let underscored = name.replace('-', "_");
        if underscored != name {
            request.push_str(&format!("{underscored}: /admin\r\n"));
        }
    }
    for name in UNDERSCORED {
        let value = if name.starts_with("Content") { "99" } else { "chunked" };
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Accept: application/json\r\nX-Custom_Thing: kept\r\nConnection: close\r\n\r\nhello");
    let resp = gw.raw(&request).await;
    assert_eq!(resp.status, 200, "{}", resp.head);
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    let h = &seen[0].headers;
    assert_none_arrived(h, &TRUSTED_BY_FRAMEWORKS);
    assert_no_underscore_twin(h, &UNDERSCORED);
    assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["127.0.0.1"]);
    assert_ne!(h["x-request-id"], "chunked");
    assert_eq!(&seen[0].body[..], b"hello");
    assert_eq!(h["content-length"], "5");
    assert_eq!(h["accept"], "application/json");
    assert_eq!(h["x-custom_thing"], "kept", "an ordinary underscore header was dropped");
    assert_eq!(h["x-forwarded-host"], "localhost");
}

// Over HTTP/2 the same names are stripped (HTTP/2 carries them lower-case).
#[tokio::test]
async fn stripped_over_http2() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    let h2 = client_builder(&gw.ca_pem, gw.addr).build().unwrap();
    let mut req = h2.get(gw.url("/echo"));
    for name in TRUSTED_BY_FRAMEWORKS.iter().chain(UNDERSCORED.iter()) {
        req = req.header(name.to_ascii_lowercase(), "/admin");
        req = req.header(name.to_ascii_lowercase().replace('-', "_"), "/admin");
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let seen = rec.requests();
    assert_eq!(seen.len(), 1);
    assert_none_arrived(&seen[0].headers, &TRUSTED_BY_FRAMEWORKS);
    assert_no_underscore_twin(&seen[0].headers, &UNDERSCORED);
    assert_ne!(seen[0].headers["x-forwarded-host"], "/admin");
}

// `X-Forwarded-Host` carries the client's host only when it is a valid host[:port]: a
// Host with userinfo, a path or spaces is either refused or forwarded without it.
#[tokio::test]
async fn forwarded_host_only_when_valid() {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], OPEN_POLICY).start().await;
    for (host, expect) in [
        ("localhost:8443", Some("localhost:8443")),
        ("shop.example", Some("shop.example")),
        ("[::1]:443", Some("[::1]:443")),
        ("127.0.0.1", Some("127.0.0.1")),
        ("evil@x", None),
        ("user:pw@evil.example", None),
        ("x/admin", None),
        ("x:99999", None),
        ("x:", None),
        ("a,b", None),
        ("[::1", None),
    ] {
        let before = rec.requests().len();
        let resp = gw
            .raw(&format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"))
            .await;
        let seen = rec.requests();
        match expect {
            Some(value) => {
                assert_eq!(resp.status, 200, "{host}: {}", resp.head);
                assert_eq!(seen.last().unwrap().headers["x-forwarded-host"], value, "{host}");
            }
            None if seen.len() == before => {
                assert_eq!(resp.status, 400, "{host} neither refused nor forwarded: {}", resp.head);
            }
            None => {
                assert_eq!(resp.status, 200, "{host}: {}", resp.head);
                assert!(
                    !seen.last().unwrap().headers.contains_key("x-forwarded-host"),
                    "{host} reached the upstream as X-Forwarded-Host"
                );
            }
        }
    }
}
