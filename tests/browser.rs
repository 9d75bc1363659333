//! A real browser through the gateway: Debian's Chromium, headless, over WebDriver
//! (tests/common/browser.rs), against a gateway over real TLS whose `public_url` is the
//! origin the browser sees.

mod common;

use common::browser::{start_for_browser, Browser};
use common::{Recorder, Setup, OPEN_POLICY};

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
