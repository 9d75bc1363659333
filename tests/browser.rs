//! A real browser through the gateway: Debian's Chromium, headless, over WebDriver
//! (tests/common/browser.rs), against a gateway over real TLS whose `public_url` is the
//! origin the browser sees: the login pages, the TOTP step and the cookie session as a
//! person meets them.

mod common;

use std::time::Duration;

use common::browser::{start_for_browser, Browser};
use common::{Recorder, Setup, OPEN_POLICY, PASSWORD};
use fantoccini::Locator;
use portcullis::auth::totp;
use portcullis::clock::{Clock, ManualClock};

// The harness itself: Chromium opens the gateway over TLS and reads what it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_reaches_the_gateway() {
    let rec = Recorder::start().await;
    let gw = start_for_browser(Setup::new(&[("rec", rec.url())], OPEN_POLICY)).await;
    let browser = Browser::start().await;
    browser
        .client
        .goto(&gw.browser_url("/.well-known/jwks.json"))
        .await
        .unwrap();
    let page = browser.client.source().await.unwrap();
    assert!(page.contains("\"keys\""), "{page}");
    assert_eq!(
        browser.client.current_url().await.unwrap().as_str(),
        gw.browser_url("/.well-known/jwks.json")
    );
    browser.close().await;
}

const ADMIN_POLICY: &str = r#"
upstream = "rec"

[[route]]
name = "report"
methods = ["GET"]
path = "/admin/report"
roles = ["admin"]
"#;

// What a person does: opens a protected page, is sent to the login page, logs in, passes
// the TOTP step and lands on the page they asked for, which the upstream served to that
// account (identity headers, no gateway cookie). The session cookie as the browser holds
// it: HttpOnly, Secure, SameSite=Lax, host-only on `/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protected_page_login_totp_and_back() {
    let rec = Recorder::start().await;
    let clock = ManualClock::new();
    let setup = Setup::new(&[("rec", rec.url())], ADMIN_POLICY)
        .with_clock(&clock)
        .many_auth_requests();
    let gw = start_for_browser(setup).await;
    let enrolled = gw.enrolled(&clock, "boss@example.com", &["admin"]).await;
    clock.advance(Duration::from_secs(30));

    let browser = Browser::start().await;
    let c = &browser.client;
    c.goto(&gw.browser_url("/admin/report")).await.unwrap();
    let at = c.current_url().await.unwrap();
    assert_eq!(at.path(), "/auth/login", "{at}");
    assert_eq!(
        at.query_pairs().find(|(k, _)| k == "next").map(|(_, v)| v.into_owned()),
        Some("/admin/report".to_owned()),
        "{at}"
    );

    c.find(Locator::Css("input[name=email]"))
        .await
        .unwrap()
        .send_keys("boss@example.com")
        .await
        .unwrap();
    c.find(Locator::Css("input[name=password]"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    let code = totp::code_at(&enrolled.secret, clock.now()).unwrap();
    c.wait()
        .for_element(Locator::Css("input[name=code]"))
        .await
        .unwrap()
        .send_keys(&code)
        .await
        .unwrap();
    c.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    c.wait()
        .for_url(&gw.browser_url("/admin/report").parse().unwrap())
        .await
        .unwrap();
    let page = c.source().await.unwrap();
    assert!(page.contains("/admin/report"), "{page}");
    let seen = rec.requests();
    let served = seen.last().expect("the upstream saw nothing");
    assert_eq!(served.target, "/admin/report");
    assert_eq!(served.headers.get("x-auth-email").unwrap(), "boss@example.com");
    let cookie = served
        .headers
        .get("cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        !cookie.contains("__Host-portcullis"),
        "the gateway's cookie reached the upstream: {cookie}"
    );

    let cookies = c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|k| k.name() == "__Host-portcullis")
        .expect("no session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(session.secure(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Lax)");
    assert_eq!(session.path(), Some("/"));
    browser.close().await;
}
