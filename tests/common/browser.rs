//! A real browser for tests: Debian's Chromium, headless, driven over WebDriver through
//! `chromedriver` (fantoccini), and a gateway whose `public_url` is the origin the browser
//! sees (`https://localhost:PORT`), so that `__Host-` cookies and Origin checks behave as in
//! production. chromedriver and the Chromium it starts are one process group, killed when
//! the [`Browser`] is dropped (and with the test process, by a parent-death signal).

#![allow(dead_code)]

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::{Setup, TestGateway};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A headless Chromium session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a session of headless
    /// Chromium that accepts the gateway's test certificate.
    pub async fn start() -> Browser {
        for bin in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(bin).exists(),
                "{bin} is missing: the browser test needs Chromium and its WebDriver (apt-get install chromium chromium-driver)"
            );
        }
        let port = free_port();
        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--", CHROMEDRIVER])
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let driver = command.spawn().expect("cannot start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let url = format!("http://127.0.0.1:{port}");
        wait_until_up(&url).await;
        let capabilities = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .expect("cannot open a Chromium session through chromedriver");
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// Ends the session (closes Chromium); the driver goes on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: chromedriver and every Chromium process it started.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

/// Waits until chromedriver answers `/status` (at most 20 s).
async fn wait_until_up(url: &str) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = client.get(format!("{url}/status")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not answer on {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the gateway of `setup` on a port chosen now, with `public_url =
/// "https://localhost:PORT"`: the origin a browser sees when it opens
/// [`TestGateway::browser_url`].
pub async fn start_for_browser(setup: Setup) -> TestGateway {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = setup.write(dir.path());
    let config = std::fs::read_to_string(&path).unwrap();
    let config = config
        .replacen("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""), 1)
        .replacen(
            "public_url = \"https://localhost\"",
            &format!("public_url = \"https://localhost:{port}\""),
            1,
        );
    std::fs::write(&path, config).unwrap();
    TestGateway::launch(dir, &path, setup.clock.clone()).await
}

impl TestGateway {
    /// `path` on this gateway as a browser addresses it (`https://localhost:PORT`).
    pub fn browser_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }
}
