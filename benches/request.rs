//! Per-request cost of authentication and forwarding preparation: verifying an access
//! token the first time and from the cache, and rewriting request headers.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis::auth::identity::IdentityHeaders;
use portcullis::auth::service::AuthService;
use portcullis::auth::tokens::{Claims, KeyAlg, KeyRing};
use portcullis::clock::{Clock, SystemClock};
use portcullis::pipeline::forward::{rewrite_request_headers, ClientInfo};
use portcullis::policy::Principal;
use portcullis::upstream::added::AddedFields;

fn tokens(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let src = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n",
        dir.path().display()
    );
    let config = Arc::new(portcullis::Config::parse(&dir.path().join("g.toml"), &src).unwrap());
    let store = portcullis::store::Store::temporary().unwrap();
    let clock: portcullis::clock::SharedClock = Arc::new(SystemClock);
    let (audit, _task) = portcullis::audit::Audit::start(&store, clock.clone()).unwrap();
    let auth = rt.block_on(AuthService::new(config, store, clock, audit)).unwrap();
    let now = SystemClock.now();
    let claims = Claims {
        iss: "https://localhost".into(),
        aud: "https://localhost".into(),
        sub: "u-0123456789abcdef0123456789abcdef".into(),
        email: "customer@example.com".into(),
        roles: vec!["customer".into()],
        attrs: Default::default(),
        amr: vec!["pwd".into()],
        iat: now,
        nbf: now,
        exp: now + 300,
        jti: "R1LxqFbK7bqGmAj2cYJ9hOa0P4T3nQe8sWvZ5uXyD6k".into(),
        sid: "s-0123456789abcdef0123456789abcdef".into(),
        auth_time: 0,
    };
    let token = auth.keys().sign(&claims).unwrap();
    c.bench_function("token: verify EdDSA signature (first sight)", |b| {
        b.iter(|| black_box(auth.keys().verify(black_box(&token), now).unwrap()))
    });
    auth.verify_access(&token).unwrap();
    c.bench_function("token: verify from cache, with revocation checks", |b| {
        b.iter(|| black_box(auth.verify_access(black_box(&token)).unwrap()))
    });
    // The same, on a gateway with `[tokens] idle_timeout`: each request also notes the
    // session's use (one relaxed atomic load and compare, a store at most once a second).
    let idle_dir = tempfile::tempdir().unwrap();
    let idle_src = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n[tokens]\nidle_timeout = \"5m\"\n",
        idle_dir.path().display()
    );
    let idle_config = Arc::new(portcullis::Config::parse(&idle_dir.path().join("g.toml"), &idle_src).unwrap());
    let idle_store = portcullis::store::Store::temporary().unwrap();
    let idle_clock: portcullis::clock::SharedClock = Arc::new(SystemClock);
    let (idle_audit, _idle_task) = portcullis::audit::Audit::start(&idle_store, idle_clock.clone()).unwrap();
    let idle_auth = rt
        .block_on(AuthService::new(idle_config, idle_store, idle_clock, idle_audit))
        .unwrap();
    let idle_token = idle_auth.keys().sign(&claims).unwrap();
    idle_auth.verify_access(&idle_token).unwrap();
    c.bench_function("token: verify from cache, with revocation and idle checks", |b| {
        b.iter(|| black_box(idle_auth.verify_access(black_box(&idle_token)).unwrap()))
    });
    let es = KeyRing::load_or_generate(&dir.path().join("es"), KeyAlg::Es256, "https://localhost").unwrap();
    let es_token = es.sign(&claims).unwrap();
    c.bench_function("token: verify ES256 signature (first sight)", |b| {
        b.iter(|| black_box(es.verify(black_box(&es_token), now).unwrap()))
    });
}

fn headers(c: &mut Criterion) {
    let who = Principal {
        id: "u-0123456789abcdef0123456789abcdef".into(),
        email: "customer@example.com".into(),
        roles: vec!["customer".into()],
        mfa: false,
        attributes: Default::default(),
        auth_time: 0,
    };
    // As in the gateway: the identity headers were made when the token was first verified.
    let identity = IdentityHeaders::of(&who);
    let mut request = HeaderMap::new();
    for (k, v) in [
        ("host", "localhost:8443"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "application/json"),
        (
            "authorization",
            "Bearer eyJ0eXAiOiJhdCtqd3QiLCJhbGciOiJFZERTQSJ9.e30.sig",
        ),
        ("x-auth-user", "u-spoofed"),
        ("connection", "keep-alive"),
    ] {
        request.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    let host = HeaderValue::from_static("localhost:8443");
    let client = ClientInfo {
        client_ip: "127.0.0.1".parse().unwrap(),
        tls: true,
        host: Some(&host),
        request_id: "1a2b3c4d-1f",
        worker: 0,
    };
    let upstream_host = HeaderValue::from_static("shop:8080");
    let mut added_fields = Vec::with_capacity(1024);
    // The client's fields stripped, and the gateway's written as an in-task head has them.
    c.bench_function("headers: rewrite a typical request", |b| {
        b.iter(|| {
            let mut h = request.clone();
            let added = rewrite_request_headers(&mut h, &client, &upstream_host, Some(&identity));
            added_fields.clear();
            added.write(&mut added_fields);
            black_box((h, added_fields.len()))
        })
    });
}

criterion_group!(benches, tokens, headers);
criterion_main!(benches);
