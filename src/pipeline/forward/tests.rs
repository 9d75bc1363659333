//! Tests of the forward phase's header rewrite.

use super::*;
use crate::auth::tokens::Claims;
use crate::auth::Verified;
use crate::pipeline::authz::{authorize, Judgement};
use crate::pipeline::normalize::Target;
use crate::policy::{PolicySet, Principal};
use crate::upstream::added::AddedFields;
use http::header::HeaderName;
use std::path::Path;
use std::sync::Arc;

/// A verified token for `p`, as the token cache holds it.
fn verified(p: Principal) -> Arc<Verified> {
    let claims = Claims {
        iss: "https://localhost".into(),
        aud: "https://localhost".into(),
        sub: p.id.clone(),
        email: p.email.clone(),
        roles: p.roles.clone(),
        amr: vec!["pwd".into()],
        iat: 0,
        nbf: 0,
        exp: 0,
        jti: "j".into(),
        sid: "s".into(),
        auth_time: 0,
        attrs: Default::default(),
    };
    let identity = IdentityHeaders::of(&p);
    Arc::new(Verified {
        claims,
        principal: Arc::new(p),
        identity,
        activity: None,
    })
}

/// Authorizes a GET for `principal` (on a role route) or for nobody (on a public one).
fn authorized(principal: Option<Principal>) -> Authorized<Request<()>> {
    let src = "upstream = \"shop\"\n[[route]]\nmethods = [\"GET\"]\npath = \"/x\"\nroles = [\"customer\"]\n[[route]]\nmethods = [\"GET\"]\npath = \"/p\"\npublic = true\n";
    let set = Arc::new(PolicySet::from_source(Path::new("t.toml"), src, &|_| true).unwrap());
    let path = if principal.is_some() { "/x" } else { "/p" };
    let target = Target {
        path: path.into(),
        query: None,
    };
    let req = Request::get(path).body(()).unwrap();
    match authorize(set, req, target, principal.map(verified), 0, false).unwrap() {
        Judgement::Allowed(a) => a,
        Judgement::WouldDeny { .. } => panic!("refused"),
    }
}

/// The identity headers forwarded for an authorized request.
fn identity_of(a: &Authorized<Request<()>>) -> Option<&IdentityHeaders> {
    a.caller().map(|c| &c.identity)
}

// Spoofed identity, credentials, overrides and hop-by-hop headers are removed, and
// the gateway's own forwarding and identity headers replace the client's.
#[test]
fn rewrite_removes_and_sets() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("x-auth-user", "admin"),
        ("x_auth_roles", "admin"),
        ("X-AUTH-EMAIL", "a@b"),
        ("authorization", "Bearer secret"),
        ("x-http-method-override", "DELETE"),
        ("x-forwarded-for", "1.2.3.4"),
        ("connection", "close,  X-Custom-Hop ,"),
        ("x-custom-hop", "1"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("upgrade", "websocket"),
        ("accept", "application/json"),
    ] {
        h.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let host: HeaderValue = "localhost:8443".parse().unwrap();
    let client = ClientInfo {
        client_ip: "127.0.0.7".parse().unwrap(),
        tls: true,
        host: Some(&host),
        request_id: "req-9",
        worker: 0,
    };
    let who = Principal {
        id: "u-1".into(),
        email: "c@example.com".into(),
        roles: vec!["customer".into()],
        mfa: false,
        auth_time: 0,
        attributes: Default::default(),
    };
    let authorized = authorized(Some(who));
    let upstream_host = HeaderValue::from_static("shop:8080");
    rewrite_request_headers(&mut h, &client, &upstream_host, identity_of(&authorized)).insert_into(&mut h);
    for gone in [
        "authorization",
        "x-http-method-override",
        "connection",
        "x-custom-hop",
        "keep-alive",
        "te",
        "upgrade",
    ] {
        assert!(!h.contains_key(gone), "{gone} kept");
    }
    assert_eq!(h["x-auth-user"], "u-1");
    assert_eq!(h["x-auth-email"], "c@example.com");
    assert_eq!(h["x-auth-roles"], "customer");
    assert!(!h.contains_key("x_auth_roles"));
    assert_eq!(h.get_all("x-forwarded-for").iter().collect::<Vec<_>>(), ["127.0.0.7"]);
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-forwarded-host"], "localhost:8443");
    assert_eq!(h["x-request-id"], "req-9");
    assert_eq!(h["host"], "shop:8080");
    assert_eq!(h["accept"], "application/json");
}

// An anonymous request on a public route carries no identity headers at all.
#[test]
fn anonymous_has_no_identity() {
    let mut h = HeaderMap::new();
    h.insert("x-auth-user", "admin".parse().unwrap());
    let client = ClientInfo {
        client_ip: "127.0.0.1".parse().unwrap(),
        tls: false,
        host: None,
        request_id: "r",
        worker: 0,
    };
    let authorized = authorized(None);
    let upstream_host = HeaderValue::from_static("shop");
    let added = rewrite_request_headers(&mut h, &client, &upstream_host, identity_of(&authorized));
    added.insert_into(&mut h);
    assert!(h.keys().all(|k| !k.as_str().starts_with("x-auth")));
    assert_eq!(h["x-forwarded-proto"], "http");
    let mut head = Vec::new();
    added.write(&mut head);
    assert!(!String::from_utf8(head).unwrap().contains("x-auth"));
}

/// The fields as written into a head: each line parsed back, in order.
fn written(added: &Forwarded<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    added.write(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("\r\n"), "{text:?}");
    text.split_terminator("\r\n")
        .map(|line| {
            let (name, value) = line.split_once(": ").unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

// The two ways the added fields reach an upstream (written into an in-task head,
// inserted into a map for hyper's client) give the same fields: every name valid and
// lower-case, every value the same, none twice.
#[test]
fn written_fields_are_the_inserted_ones() {
    let mut attributes = crate::attributes::Attributes::new();
    attributes.insert("customer_id".to_owned(), "c-42".to_owned());
    attributes.insert("tier".to_owned(), "gold".to_owned());
    let who = Principal {
        id: "u-1".into(),
        email: "c@example.com".into(),
        roles: vec!["customer".into(), "staff".into()],
        mfa: false,
        auth_time: 0,
        attributes,
    };
    let authorized = authorized(Some(who));
    let upstream_host = HeaderValue::from_static("shop:8080");
    let (good_host, bad_host) = (
        HeaderValue::from_static("example.com:8443"),
        HeaderValue::from_static("a@b"),
    );
    for (ip, tls, host, id, identity) in [
        ("10.1.2.3", true, Some(&good_host), "gw-1f", identity_of(&authorized)),
        ("2001:db8::7", false, Some(&bad_host), "gw-20", None),
        ("127.0.0.1", false, None, "bad\r\nid", identity_of(&authorized)),
    ] {
        let client = ClientInfo {
            client_ip: ip.parse().unwrap(),
            tls,
            host,
            request_id: id,
            worker: 0,
        };
        let added = Forwarded::new(&client, &upstream_host, identity);
        let fields = written(&added);
        let mut map = HeaderMap::new();
        added.insert_into(&mut map);
        assert_eq!(fields.len(), map.len(), "{fields:?}");
        for (name, value) in &fields {
            assert_eq!(HeaderName::from_bytes(name.as_bytes()).unwrap().as_str(), name);
            assert_eq!(
                map.get_all(name.as_str()).iter().collect::<Vec<_>>(),
                [value.as_str()],
                "{name}"
            );
        }
        assert_eq!(map["x-forwarded-for"], ip);
        assert_eq!(map["x-forwarded-proto"], if tls { "https" } else { "http" });
        assert_eq!(map.get("x-forwarded-host"), host.filter(|h| *h == good_host));
        assert_eq!(map.get("x-request-id").is_some(), !id.contains('\r'));
        assert_eq!(map.contains_key("x-auth-attr-customer-id"), identity.is_some());
    }
}

mod request_fields_check {
    use super::super::request_fields::{check, is_json};
    use crate::error::FieldRefusal;
    use crate::policy::FieldList;
    use http::HeaderValue;

    fn list() -> FieldList {
        FieldList::new(["name".to_owned(), "address".to_owned(), "phone".to_owned()])
    }

    // Only the listed top-level fields pass; nested objects and escapes are fine.
    #[test]
    fn allowed_fields_pass() {
        let ok = br#" { "name" : "A\u00e9", "address": {"role": 1, "x": [1, {"y": null}]} } "#;
        assert_eq!(check(ok, &list()), Ok(()));
        assert_eq!(check(b"{}", &list()), Ok(()));
    }

    // An unlisted field is named, even when written with escapes; a twice-given one too.
    #[test]
    fn unknown_and_duplicate_fields_refused() {
        assert_eq!(
            check(br#"{"name":"a","role":"admin"}"#, &list()),
            Err(FieldRefusal::Unknown("role".into()))
        );
        assert_eq!(
            check(br#"{"r\u006fle":"admin"}"#, &list()),
            Err(FieldRefusal::Unknown("role".into()))
        );
        assert_eq!(
            check(br#"{"name":"a","name":"b"}"#, &list()),
            Err(FieldRefusal::Duplicate("name".into()))
        );
    }

    // A long or control-laden name is bounded and cleaned before it is repeated.
    #[test]
    fn refused_name_is_bounded() {
        let long = format!("{{\"{}\\u0007x\":1}}", "a".repeat(5000));
        let Err(FieldRefusal::Unknown(name)) = check(long.as_bytes(), &list()) else {
            panic!("not refused");
        };
        assert_eq!(name.chars().count(), 65);
        assert!(!name.chars().any(char::is_control));
    }

    // Not JSON is 415's refusal, JSON that is no object 422's; a deeply nested value is
    // skipped without recursion (serde_json keeps its own stack of at most the body's
    // length), so it cannot overflow the gateway's stack.
    #[test]
    fn not_json_and_not_object() {
        for bad in [&b"{"[..], b"{\"name\":}", b"name=a", b"{\"name\":1} x", b"\xff"] {
            assert_eq!(check(bad, &list()), Err(FieldRefusal::NotJson), "{bad:?}");
        }
        for other in [&b"[]"[..], b"\"name\"", b"1", b"null"] {
            assert_eq!(check(other, &list()), Err(FieldRefusal::NotObject), "{other:?}");
        }
        let deep = format!("{{\"name\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check(deep.as_bytes(), &list()), Ok(()));
        let unclosed = format!("{{\"name\":{}", "[".repeat(100_000));
        assert_eq!(check(unclosed.as_bytes(), &list()), Err(FieldRefusal::NotJson));
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(yes))), "{yes}");
        }
        for no in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "application/jsonx",
            "+json",
        ] {
            assert!(!is_json(Some(&HeaderValue::from_static(no))), "{no}");
        }
        assert!(!is_json(None));
    }
}

#[test]
fn forwarded_for_writes_every_address_as_its_display_does() {
    // Every octet value in every position, and a few IPv6 addresses.
    for n in 0..=255u8 {
        for ip in [[n, 0, 0, 1], [10, n, 255, 7], [192, 168, n, 99], [1, 22, 3, n]] {
            let ip = IpAddr::from(ip);
            assert_eq!(forwarded::ip_header(ip).to_str().unwrap(), ip.to_string());
        }
    }
    for text in [
        "::1",
        "2001:db8::8a2e:370:7334",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    ] {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(forwarded::ip_header(ip).to_str().unwrap(), ip.to_string());
    }
}
