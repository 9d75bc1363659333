//! `response_fields` and `response_fields_by_role` (contract §13): a route's JSON answers
//! keep only the listed top-level fields; what cannot be filtered is a 502, never passed
//! through; routes without the keys still stream.

mod common;

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const POLICY: &str = r#"
upstream = "up"

[[route]]
name = "filtered"
methods = ["GET", "HEAD"]
path = "/f/{case}"
public = true
response_fields = ["zeta", "id", "alpha", "error"]

[[route]]
name = "by role"
methods = ["GET"]
path = "/r/{case}"
roles = ["customer", "agent"]
response_fields = ["id", "name"]
response_fields_by_role = { agent = ["secret"] }

[[route]]
name = "unfiltered"
methods = ["GET"]
path = "/u/{case}"
public = true
"#;

/// The object the upstream answers; its keys are deliberately out of alphabetical order.
const OBJECT: &str = r#"{"zeta": 1, "secret": "s3", "id": 7, "name": "Ann", "alpha": [1, 2]}"#;
const LIMIT: &str = "[limits]\nmax_filtered_response = \"1KiB\"\n";

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// A test upstream: answers by the last path segment, records each request's headers,
/// and for `/stream` sends a first piece then waits on `release`.
struct Upstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    release: Arc<Notify>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn pieces(parts: Vec<Bytes>) -> Body {
    let frames = parts.into_iter().map(|p| Ok::<_, Infallible>(Frame::data(p)));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

fn answer(case: &str, release: Arc<Notify>) -> Response<Body> {
    let json = |status: u16, body: Body| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("etag", "\"unfiltered\"")
            .body(body)
            .unwrap()
    };
    match case {
        "obj" => json(200, full(OBJECT)),
        "arr" => json(200, full(format!(r#"[{OBJECT}, 2, "x", {{"secret": 1, "id": 8}}]"#))),
        "error" => json(404, full(r#"{"error": "not_found", "trace": "at db.rs:12"}"#)),
        "html" => Response::builder()
            .header("content-type", "text/html")
            .body(full("<html><body>secret</body></html>"))
            .unwrap(),
        "big" => json(200, full(format!(r#"{{"id": "{}"}}"#, "x".repeat(2000)))),
        "bigchunked" => json(
            200,
            pieces(vec![
                Bytes::from(format!(r#"{{"id": "{}"#, "x".repeat(1500))),
                Bytes::from("\"}"),
            ]),
        ),
        "gzip" => {
            let mut r = json(200, full(gzip(OBJECT.as_bytes())));
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "bomb" => {
            let mut r = json(
                200,
                full(gzip(format!(r#"{{"id": "{}"}}"#, "x".repeat(1 << 20)).as_bytes())),
            );
            r.headers_mut().insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "nocontent" => Response::builder().status(204).body(full("")).unwrap(),
        "stream" => {
            let first =
                futures_util::stream::once(async { Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"first;"))) });
            let rest = futures_util::stream::once(async move {
                release.notified().await;
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"rest")))
            });
            let body = StreamBody::new(futures_util::StreamExt::chain(first, rest)).boxed();
            Response::builder()
                .header("content-type", "application/json")
                .body(body)
                .unwrap()
        }
        _ => Response::builder().status(500).body(full("")).unwrap(),
    }
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let release = Arc::new(Notify::new());
        let (seen2, release2) = (seen.clone(), release.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (seen, release) = (seen2.clone(), release2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        seen.lock().unwrap().push(req.headers().clone());
                        let case = req.uri().path().rsplit('/').next().unwrap_or("").to_owned();
                        let release = release.clone();
                        async move { Ok::<_, Infallible>(answer(&case, release)) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, release }
    }

    fn last_headers(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

async fn start(extra: &str) -> (Upstream, TestGateway) {
    let up = Upstream::start().await;
    let gw = Setup::new(&[("up", format!("http://{}", up.addr))], POLICY)
        .extra(extra)
        .start()
        .await;
    (up, gw)
}

/// The status, headers and raw body of a GET, with the client's decompression off.
async fn get(gw: &TestGateway, path: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Bytes) {
    let client = client_builder(&gw.ca_pem, gw.addr)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut req = client.get(gw.url(path)).header("accept-encoding", "gzip, br");
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let (status, headers) = (resp.status(), resp.headers().clone());
    (status, headers, resp.bytes().await.unwrap())
}

fn content_length(headers: &HeaderMap) -> usize {
    headers["content-length"].to_str().unwrap().parse().unwrap()
}

// An object keeps only the listed fields, in the upstream's order; the length and
// validators describe what the client got, and the upstream was asked for identity.
#[tokio::test]
async fn object_filtered_in_order() {
    let (up, gw) = start("").await;
    let (status, headers, body) = get(&gw, "/f/obj", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = std::str::from_utf8(&body).unwrap();
    assert!(!text.contains("secret") && !text.contains("Ann"), "{text}");
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(text)
        .unwrap()
        .keys()
        .cloned()
        .collect();
    // serde_json's Map sorts unless preserve_order: compare the raw text order instead.
    let (z, i, a) = (
        text.find("\"zeta\"").unwrap(),
        text.find("\"id\"").unwrap(),
        text.find("\"alpha\"").unwrap(),
    );
    assert!(z < i && i < a, "upstream key order lost: {text}");
    assert_eq!(keys.len(), 3, "{text}");
    assert_eq!(content_length(&headers), body.len());
    assert!(headers.get("etag").is_none(), "the unfiltered ETag was passed on");
    assert_eq!(headers["content-type"], "application/json");
    let asked = up.last_headers();
    assert_eq!(asked["accept-encoding"], "identity");
}

// A top-level array: each object is filtered, other elements are kept.
#[tokio::test]
async fn array_elements_filtered() {
    let (_up, gw) = start("").await;
    let (status, headers, body) = get(&gw, "/f/arr", None).await;
    assert_eq!(status, StatusCode::OK);
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value, json!([{"zeta": 1, "id": 7, "alpha": [1, 2]}, 2, "x", {"id": 8}]));
    assert_eq!(content_length(&headers), body.len());
}

// Error bodies are filtered too: only the listed `error` reaches the client.
#[tokio::test]
async fn error_body_filtered() {
    let (_up, gw) = start("").await;
    let (status, _, body) = get(&gw, "/f/error", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let value: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(value, json!({"error": "not_found"}));
}

// The same upstream answer: a customer sees the route's fields, an agent also `secret`.
#[tokio::test]
async fn by_role_widens() {
    let (_up, gw) = start("").await;
    let (_, customer) = gw.signed_in("cust@example.com", &["customer"]).await;
    let (_, agent) = gw.signed_in("agent@example.com", &["agent"]).await;
    let (status, _, body) = get(&gw, "/r/obj", Some(&customer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"id": 7, "name": "Ann"})
    );
    let (status, _, body) = get(&gw, "/r/obj", Some(&agent)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"secret": "s3", "id": 7, "name": "Ann"})
    );
}

// Not JSON: 502 with the gateway's own body, audited as an upstream error.
#[tokio::test]
async fn html_is_502_and_audited() {
    let (_up, gw) = start("").await;
    let (status, _, body) = get(&gw, "/f/html", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!std::str::from_utf8(&body).unwrap().contains("secret"));
    let events = gw.wait_for_events(portcullis::audit::EventKind::UpstreamError, 1).await;
    assert_eq!(events[0].event.status, Some(502));
}

// Over `max_filtered_response`: by Content-Length, by a chunked body without one, and
// by a small gzip body that decodes past the limit.
#[tokio::test]
async fn oversized_is_502() {
    let (_up, gw) = start(LIMIT).await;
    for case in ["big", "bigchunked", "bomb"] {
        let (status, _, body) = get(&gw, &format!("/f/{case}"), None).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{case}");
        assert!(!body.windows(10).any(|w| w == b"xxxxxxxxxx"), "{case} leaked");
    }
    // Under the limit the same route answers.
    assert_eq!(get(&gw, "/f/obj", None).await.0, StatusCode::OK);
}

// An upstream that answers gzip although asked for identity: the client gets the
// filtered body, unencoded, with its true length.
#[tokio::test]
async fn gzip_decoded_and_filtered() {
    let (_up, gw) = start("").await;
    let (status, headers, body) = get(&gw, "/f/gzip", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("content-encoding").is_none(), "{headers:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        json!({"zeta": 1, "id": 7, "alpha": [1, 2]})
    );
    assert_eq!(content_length(&headers), body.len());
}

// HEAD and 204 pass without a body to filter.
#[tokio::test]
async fn head_and_no_content_pass() {
    let (_up, gw) = start("").await;
    let resp = gw.client.head(gw.url("/f/obj")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (status, _, body) = get(&gw, "/f/nocontent", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(body.is_empty());
}

// A route without the keys: the client's Accept-Encoding reaches the upstream, and the
// body streams — the client reads the first piece while the upstream still holds the
// rest back (a buffering gateway would hang here until the timeout).
#[tokio::test]
async fn unfiltered_route_streams() {
    let (up, gw) = start("").await;
    let resp = tokio::time::timeout(Duration::from_secs(10), async {
        gw.client
            .get(gw.url("/u/stream"))
            .header("accept-encoding", "br")
            .send()
            .await
            .unwrap()
    })
    .await
    .expect("the gateway held the headers back");
    assert_eq!(up.last_headers()["accept-encoding"], "br");
    let mut resp = resp;
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the gateway buffered an unfiltered body")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    up.release.notify_one();
    let rest = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&rest[..], b"rest");
}

// The demo shop's policy: browsing hides a product's supplier (staff see it when they
// manage the product), and a customer's order answer hides who placed it.
#[tokio::test]
async fn shop_hides_internal_fields() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let (status, body) = anonymous(&gw, "/api/products/1").await;
    assert_eq!(status, 200);
    assert_eq!(body["name"], "Trail running shoes");
    assert!(body.get("supplier").is_none(), "{body}");
    let direct: Value = reqwest::get(format!("http://{shop}/api/products/1"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        direct["supplier"].is_string(),
        "the shop has no supplier to hide: {direct}"
    );

    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let resp = gw
        .client
        .post(gw.url(&format!("/api/customers/{id}/orders")))
        .bearer_auth(&token)
        .json(&json!({"product_id": 1, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let order: Value = resp.json().await.unwrap();
    assert_eq!(order["product_id"], 1);
    assert!(order.get("placed_by").is_none(), "{order}");
    // Error bodies are cut to the listed fields, and `error` is listed.
    let (status, body) = anonymous(&gw, "/api/products/999").await;
    assert_eq!(status, 404);
    assert_eq!(body, json!({"error": "not found"}));
}

async fn anonymous(gw: &TestGateway, path: &str) -> (u16, Value) {
    let resp = gw.client.get(gw.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}
