//! `request_fields` (contract §13): a JSON body with a field outside the route's list is
//! refused before the upstream sees a byte; what passes is forwarded byte for byte.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "particulars"
methods = ["GET", "POST", "PUT"]
path = "/fields"
public = true
request_fields = ["name", "address", "phone"]

[[route]]
name = "free"
methods = ["POST"]
path = "/free"
public = true
"#;

async fn start(extra: &str) -> (Recorder, TestGateway) {
    let rec = Recorder::start().await;
    let gw = Setup::new(&[("rec", rec.url())], POLICY).extra(extra).start().await;
    (rec, gw)
}

fn http1(gw: &TestGateway) -> reqwest::Client {
    client_builder(&gw.ca_pem, gw.addr)
        .http1_only()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn send(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn json_post(client: &reqwest::Client, gw: &TestGateway, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
    client
        .post(gw.url("/fields"))
        .header("content-type", "application/json")
        .body(body)
}

/// A body sent in pieces (chunked over HTTP/1.1, no `Content-Length` either way).
fn pieces(parts: Vec<&'static [u8]>) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, Infallible>> = parts.into_iter().map(|p| Ok(Bytes::from_static(p))).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

// An unlisted field is refused with 422 naming it, audited, and never forwarded.
#[tokio::test]
async fn unknown_field_refused_and_not_forwarded() {
    let (rec, gw) = start("").await;
    let body = r#"{"name": "Ann", "role": "admin"}"#;
    let (status, answer) = send(json_post(&gw.client, &gw, body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"], "unknown_field");
    assert!(answer["message"].as_str().unwrap().contains("\"role\""), "{answer}");
    assert!(rec.requests().is_empty(), "a refused body was forwarded");
    let events = gw.wait_for_events(portcullis::audit::EventKind::AccessDenied, 1).await;
    assert_eq!(events[0].event.status, Some(422));

    // A long name made of control characters comes back bounded and clean.
    let name = format!("{}\\u0000\\n", "x".repeat(10_000));
    let (status, answer) = send(json_post(&gw.client, &gw, format!("{{\"{name}\": 1}}"))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = answer["message"].as_str().unwrap();
    assert!(message.len() < 300, "{message}");
    assert!(!message.chars().any(char::is_control), "{message:?}");
    assert!(rec.requests().is_empty());
}

// A top-level key given twice is refused: which of the two the upstream reads is its own
// parser's choice, not the one the gateway checked.
#[tokio::test]
async fn duplicate_key_refused() {
    let (rec, gw) = start("").await;
    let (status, answer) = send(json_post(&gw.client, &gw, r#"{"name": "a", "name": "b"}"#)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"], "duplicate_field");
    assert!(rec.requests().is_empty());
}

// Not JSON (by Content-Type or by its bytes) is 415; JSON that is no object is 422.
#[tokio::test]
async fn not_json_refused() {
    let (rec, gw) = start("").await;
    for content_type in ["text/plain", "application/x-www-form-urlencoded", ""] {
        let mut req = gw.client.post(gw.url("/fields")).body(r#"{"name": "a"}"#);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        let (status, answer) = send(req).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert_eq!(answer["error"], "unsupported_media_type");
    }
    for bad in [r#"{"name": "a""#, "name=a", r#"{"name": 1} trailing"#] {
        let (status, _) = send(json_post(&gw.client, &gw, bad)).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
    }
    for other in [r#"[{"name": "a"}]"#, r#""name""#, "null"] {
        let (status, answer) = send(json_post(&gw.client, &gw, other)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{other}");
        assert_eq!(answer["error"], "not_an_object");
    }
    assert!(rec.requests().is_empty());
}

// A good body is forwarded exactly as sent, whatever its spacing, escapes and nesting,
// with its length; so is a body sent in chunks without a length, over HTTP/1.1 and
// HTTP/2. Requests without a body pass.
#[tokio::test]
async fn good_body_forwarded_byte_for_byte() {
    let (rec, gw) = start("").await;
    let good = " {\n\t\"name\" :\"An\\u00e9 \\ud83d\\ude00\",\r\n \"address\": {\"role\": [1, {\"id\": null}]}, \"phone\":null}  ";
    let h1 = http1(&gw);
    for client in [&h1, &gw.client] {
        let (status, _) = send(json_post(client, &gw, good)).await;
        assert_eq!(status, StatusCode::OK);
        let chunked = pieces(vec![b" {\"na", b"me\": \"A\", ", b"\"phone\": \"1\"}"]);
        let (status, _) = send(json_post(client, &gw, chunked)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let seen = rec.requests();
    assert_eq!(seen.len(), 4);
    for (i, r) in seen.iter().enumerate() {
        let expected: &[u8] = if i % 2 == 0 {
            good.as_bytes()
        } else {
            b" {\"name\": \"A\", \"phone\": \"1\"}"
        };
        assert_eq!(&r.body[..], expected, "request {i}");
        assert_eq!(
            r.headers["content-length"],
            expected.len().to_string().as_str(),
            "request {i}"
        );
        assert!(r.headers.get("transfer-encoding").is_none(), "request {i}");
    }

    let (status, _) = send(gw.client.get(gw.url("/fields"))).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = send(h1.post(gw.url("/fields")).header("content-length", "0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(rec.requests().len(), 6);
}

// Over max_body is 413, read as an answer (not a reset) even while the client is still
// sending: announced by Content-Length or streamed in chunks, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_max_body_is_a_readable_413() {
    let (rec, gw) = start("[limits]\nmax_body = \"1KiB\"\n").await;
    let h1 = http1(&gw);
    for client in [&h1, &gw.client] {
        // 16 MiB the client is still sending when the answer comes.
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(16 << 20));
        let (status, answer) = send(json_post(client, &gw, big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer["error"], "payload_too_large");

        let streamed: Vec<&'static [u8]> = std::iter::once(&b"{\"name\": \""[..])
            .chain(std::iter::repeat_n(&[b'y'; 65536][..], 256))
            .collect();
        let (status, answer) = send(json_post(client, &gw, pieces(streamed))).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(answer["error"], "payload_too_large");
    }
    assert!(rec.requests().is_empty());
}

// A refusal by the list while the client is still sending its body reads as an answer:
// a body that is not JSON is refused before it is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusal_while_sending_is_readable() {
    let (rec, gw) = start("").await;
    let h1 = http1(&gw);
    for client in [&h1, &gw.client] {
        let streamed: Vec<&'static [u8]> = std::iter::repeat_n(&[b'x'; 65536][..], 128).collect();
        let req = client.post(gw.url("/fields")).header("content-type", "text/plain");
        let (status, answer) = send(req.body(pieces(streamed))).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(answer["error"], "unsupported_media_type");
        let (status, _) = send(client.post(gw.url("/fields")).body(vec![b'x'; 8 << 20])).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    assert!(rec.requests().is_empty());
}

/// An upstream that reports each request's first piece of body as it arrives, then
/// reads the rest and answers 200.
async fn first_piece_reporter() -> (SocketAddr, mpsc::UnboundedReceiver<Bytes>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let mut body = req.into_body();
                        let mut reported = false;
                        while let Some(Ok(frame)) = body.frame().await {
                            if let (Ok(data), false) = (frame.into_data(), reported) {
                                reported = true;
                                let _ = tx.send(data);
                            }
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

// A route without the key streams the body on: the upstream receives its start while
// the client still holds the rest back (and a route with the key does not).
#[tokio::test]
async fn route_without_the_key_still_streams() {
    let (addr, mut firsts) = first_piece_reporter().await;
    let gw = Setup::new(&[("rec", format!("http://{addr}"))], POLICY).start().await;
    for (path, streams) in [("/free", true), ("/fields", false)] {
        let (tx, rx) = mpsc::unbounded_channel::<Result<Bytes, Infallible>>();
        let body = reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|piece| (piece, rx))
        }));
        let req = gw
            .client
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send();
        let answer = tokio::spawn(req);
        tx.send(Ok(Bytes::from_static(b"{\"name\": "))).unwrap();
        let early = tokio::time::timeout(Duration::from_secs(2), firsts.recv()).await;
        if streams {
            let piece = early.expect("the upstream saw nothing before the body ended").unwrap();
            assert_eq!(&piece[..], b"{\"name\": ");
        } else {
            assert!(early.is_err(), "a checked body was forwarded before it was whole");
        }
        tx.send(Ok(Bytes::from_static(b"\"Ann\"}"))).unwrap();
        drop(tx);
        let resp = answer.await.unwrap().unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        if !streams {
            let piece = firsts.recv().await.unwrap();
            assert_eq!(&piece[..], b"{\"name\": \"Ann\"}");
        }
    }
}

// The demo shop's policy: a customer cannot give themselves a role or an order its
// placer, and the honest requests go through.
#[tokio::test]
async fn shop_refuses_mass_assignment() {
    let shop = start_shop().await;
    let gw = Setup::shop(shop).start().await;
    let (id, token) = gw.signed_in("casey@example.com", &["customer"]).await;
    let mine = format!("/api/customers/{id}");
    let put = |body: Value| gw.client.put(gw.url(&mine)).bearer_auth(&token).json(&body);
    let (status, answer) = send(put(json!({"name": "Casey", "role": "admin"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"], "unknown_field");
    assert_eq!(
        gw.get_with(&mine, &token).await.0,
        404,
        "the refused update reached the shop"
    );
    let (status, answer) = send(put(json!({"name": "Casey", "address": "1 High St", "phone": "555"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["name"], "Casey");

    let orders = format!("{mine}/orders");
    let order = |body: Value| gw.client.post(gw.url(&orders)).bearer_auth(&token).json(&body);
    let (status, answer) = send(order(json!({"product_id": 1, "quantity": 1, "placed_by": "u-1"}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer["message"].as_str().unwrap().contains("placed_by"));
    let (status, answer) = send(order(json!({"product_id": 1, "quantity": 1}))).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    // The shop records who placed it from the identity the gateway vouches for (see
    // tests/identity.rs); a customer's view of the order leaves that field out.
    assert_eq!(answer["quantity"], 1);
    assert!(answer.get("placed_by").is_none(), "{answer}");
}

// `policy check` warns about request_fields on a route that takes no body and about an
// empty list, naming file, line and route, and still exits 0.
#[test]
fn policy_check_warns_about_field_lists() {
    let policy = r#"upstream = "rec"

[[route]]
name = "read"
methods = ["GET"]
path = "/r"
public = true
request_fields = ["name"]

[[route]]
name = "nothing"
methods = ["GET"]
path = "/n"
roles = ["customer"]
response_fields = []
"#;
    let dir = tempfile::tempdir().unwrap();
    let config = Setup::new(&[("rec", "http://127.0.0.1:9".into())], policy).write(dir.path());
    let out = cli(&config, &["policy", "check"]);
    assert!(out.ok, "{}", out.text);
    assert!(
        out.text
            .contains("test.toml:3: route \"read\": request_fields on a route without POST, PUT or PATCH"),
        "{}",
        out.text
    );
    assert!(
        out.text
            .contains("test.toml:10: route \"nothing\": response_fields = []"),
        "{}",
        out.text
    );
}
