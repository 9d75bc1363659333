//! `GET /readyz`: 200 while the store and every upstream are reachable, 503 naming the
//! upstream that is not, and 200 again once it is back; found by the background probe,
//! never by the request.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Setup, TestGateway, OPEN_POLICY};
use serde_json::Value;
use tokio::net::TcpListener;

/// An upstream that accepts connections on `addr` (and closes them) until aborted.
async fn listening(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    })
}

/// Polls `/readyz` until its status is `want` (the probe runs every 2 s), or fails after
/// 15 s with the last answer.
async fn readyz_until(gw: &TestGateway, want: u16) -> Value {
    readyz_when(gw, |status, _| status == want).await
}

/// Polls `/readyz` until `done(status, body)`, or fails after 15 s with the last answer.
async fn readyz_when(gw: &TestGateway, done: impl Fn(u16, &Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let resp = gw.client.get(gw.url("/readyz")).send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["cache-control"], "no-store");
        let body: Value = resp.json().await.unwrap();
        if done(status, &body) {
            return body;
        }
        assert!(Instant::now() < deadline, "/readyz never got there: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// Up, then the upstream goes away (503 naming it, the store still fine, no address in
// the body), then it comes back (200 again). `/healthz` stays 200 throughout.
#[tokio::test]
async fn follows_the_upstream() {
    let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = probe.local_addr().unwrap();
    drop(probe);
    let upstream = listening(addr).await;
    let gw = Setup::new(
        &[("api", format!("http://{addr}"))],
        &OPEN_POLICY.replace("\"rec\"", "\"api\""),
    )
    .start()
    .await;

    let up = readyz_until(&gw, 200).await;
    assert_eq!(up["status"], "ready");
    assert_eq!(up["checks"]["store"], "ok");
    assert_eq!(up["checks"]["upstream:api"], "ok");

    upstream.abort();
    let _ = upstream.await;
    let down = readyz_until(&gw, 503).await;
    assert_eq!(down["status"], "not_ready");
    assert_eq!(down["checks"]["upstream:api"], "unreachable", "{down}");
    assert_eq!(down["checks"]["store"], "ok");
    assert!(!down.to_string().contains(&addr.port().to_string()), "{down}");
    assert_eq!(gw.status("/healthz").await, 200);

    let _back = listening(addr).await;
    let again = readyz_until(&gw, 200).await;
    assert_eq!(again["checks"]["upstream:api"], "ok");
}

// Each upstream is named on its own: one down among two is named, the other stays ok.
#[tokio::test]
async fn names_each_upstream() {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    drop(up);
    let _up = listening(up_addr).await;
    let down = common::closed_port().await;
    let gw = Setup::new(
        &[
            ("rec", format!("http://{up_addr}")),
            ("billing", format!("http://{down}")),
        ],
        OPEN_POLICY,
    )
    .start()
    .await;
    let body = readyz_when(&gw, |_, body| body["checks"]["upstream:rec"] == "ok").await;
    assert_eq!(body["status"], "not_ready", "{body}");
    assert_eq!(body["checks"]["upstream:billing"], "unreachable", "{body}");
}
