//! Mail over SMTP (contract §9), against a real SMTP server in the test process
//! (`common::smtp`): delivery, an outage then delivery, 4xx retries, a restart with a
//! full spool, a 5xx refusal, a bounded spool, STARTTLS and implicit TLS with a private
//! CA and AUTH, and the password kept out of every log line.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::smtp::{Mode, SmtpServer, Stage};
use common::{confirmation_token, start_shop, PASSWORD};
use portcullis::audit::EventKind;
use portcullis::config::SmtpPassword;
use portcullis::Config;
use serde_json::json;

const SECRET: &str = "Sm7p-s3cret-Pa55word";

/// Everything the gateways of this test binary log, at DEBUG and above.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl Write for LogSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// `[email.smtp]` for a server on loopback without TLS.
fn plain_smtp(server: &SmtpServer) -> String {
    format!(
        "[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Shop <no-reply@shop.example>\"\n",
        server.addr.port()
    )
}

/// Short retry waits, so outages last milliseconds in tests.
fn quick_retries(c: &mut Config) {
    let smtp = c.email.smtp.as_mut().unwrap();
    smtp.retry_first = Duration::from_millis(50);
    smtp.retry_max = Duration::from_millis(200);
}

async fn register(gw: &common::TestGateway, email: &str) -> (u16, serde_json::Value) {
    gw.post(
        "/auth/register",
        json!({"email": email, "password": PASSWORD, "name": "N"}),
    )
    .await
}

/// Waits (at most 10 s) until the spool is empty; returns what is left.
async fn spool_drained(gw: &common::TestGateway) -> Vec<String> {
    for _ in 0..500 {
        if gw.spool().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.spool()
}

// Registering through the gateway sends the confirmation mail to the SMTP server, with
// the contract's headers and a working link; the spool is empty afterwards and the
// outbox is not used.
#[tokio::test(flavor = "multi_thread")]
async fn registration_mail_is_delivered_over_smtp() {
    logs();
    let server = SmtpServer::start(Mode::Plain).await;
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .start_with(quick_retries)
        .await;
    assert_eq!(register(&gw, "new@example.com").await.0, 202);
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the confirmation mail did not arrive");
    let m = &got[0];
    assert_eq!(m.to, ["new@example.com"]);
    assert_eq!(m.from, "no-reply@shop.example");
    for header in [
        "From: Shop <no-reply@shop.example>\r\n",
        "To: new@example.com\r\n",
        "Subject: Confirm your email address\r\n",
        "Date: ",
        "Message-ID: <",
        "Content-Type: text/plain; charset=utf-8\r\n",
    ] {
        assert!(m.data.contains(header), "{header:?} missing:\n{}", m.data);
    }
    assert!(m.data.contains("https://localhost/auth/confirm?token="), "{}", m.data);
    assert_eq!(
        gw.confirm(&confirmation_token(&m.data)).await,
        200,
        "the mailed link does not confirm"
    );
    assert!(
        spool_drained(&gw).await.is_empty(),
        "a delivered message stayed in the spool"
    );
    assert!(gw.outbox().is_empty(), "with SMTP nothing goes to the outbox");
}

// The server is down when the API answers 202: the message waits in the spool (durable
// before the answer), the sender retries, and the mail arrives once the server is back.
// Temporary refusals (4xx) are retried the same way; each message arrives once.
#[tokio::test(flavor = "multi_thread")]
async fn outage_then_delivery_and_4xx_retried() {
    logs();
    let mut server = SmtpServer::start(Mode::Plain).await;
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .start_with(quick_retries)
        .await;
    server.stop();
    assert_eq!(register(&gw, "outage@example.com").await.0, 202);
    let spooled = gw.spool();
    assert_eq!(spooled.len(), 1, "the message is not in the spool when the API answers");
    assert!(spooled[0].contains("To: outage@example.com"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gw.spool().len(), 1, "a message was dropped during the outage");

    server.resume().await;
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1, "the mail did not arrive after the outage");
    assert_eq!(got[0].to, ["outage@example.com"]);
    assert!(spool_drained(&gw).await.is_empty());

    // 4xx at MAIL FROM, then at the end of DATA: kept and retried, delivered once.
    server.fail(Stage::Mail, 451, Some(2));
    server.fail(Stage::Data, 452, Some(1));
    assert_eq!(register(&gw, "busy@example.com").await.0, 202);
    let got = server.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 2, "a message refused with 4xx was not retried");
    assert_eq!(got[1].to, ["busy@example.com"]);
    assert!(spool_drained(&gw).await.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.received().len(), 2, "a message was delivered twice");

    // A server that keeps answering 4xx is tried again and again, at growing intervals
    // (50 ms doubling to 200 ms here: about 7 tries a second), never in a tight loop.
    server.refuse_rcpt("patient", 451);
    assert_eq!(register(&gw, "patient@example.com").await.0, 202);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tries = server.rcpts().iter().filter(|r| r.starts_with("patient")).count();
    assert!((3..=12).contains(&tries), "{tries} tries in a second");
    server.clear_faults();
    assert_eq!(server.wait_for(3, Duration::from_secs(10)).await.len(), 3);
    assert!(gw.audit_events(EventKind::MailUndeliverable).await.is_empty());
}

// Messages spooled while the server is down survive a restart: the gateway stops
// promptly (the sender does not hold the drain while it waits to retry), and a new
// gateway on the same data directory delivers them all, oldest first.
#[tokio::test(flavor = "multi_thread")]
async fn restart_delivers_what_the_spool_holds() {
    logs();
    let mut server = SmtpServer::start(Mode::Plain).await;
    server.stop();
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .many_auth_requests()
        .write(dir.path());
    // A long first wait: the sender is asleep in its backoff when the gateway stops.
    let mut gw = common::TestGateway::launch_with(dir, &path, None, |c| {
        c.email.smtp.as_mut().unwrap().retry_first = Duration::from_secs(300);
    })
    .await;
    let addresses: Vec<String> = (0..4).map(|i| format!("user{i}@example.com")).collect();
    for a in &addresses {
        assert_eq!(register(&gw, a).await.0, 202);
    }
    assert_eq!(gw.spool().len(), 4);
    gw.client = reqwest::Client::new();
    tokio::time::timeout(Duration::from_secs(10), gw.shutdown())
        .await
        .expect("the mail sender held up the shutdown");
    let common::TestGateway { dir, .. } = gw;
    assert_eq!(
        std::fs::read_dir(dir.path().join("data/spool")).unwrap().count(),
        4,
        "the spool lost messages at shutdown"
    );

    server.resume().await;
    let gw = common::TestGateway::launch_with(dir, &path, None, quick_retries).await;
    let got = server.wait_for(4, Duration::from_secs(10)).await;
    let to: Vec<String> = got.iter().map(|m| m.to[0].clone()).collect();
    assert_eq!(to, addresses, "not every spooled message was delivered, oldest first");
    assert!(spool_drained(&gw).await.is_empty());
}

// A 5xx reply is final: the message is given up (audited as mail_undeliverable with its
// recipient, logged with its code), never retried, and the next message still goes out.
#[tokio::test(flavor = "multi_thread")]
async fn refused_for_good_is_given_up_and_the_next_is_sent() {
    logs();
    let server = SmtpServer::start(Mode::Plain).await;
    server.refuse_rcpt("bounce", 550);
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .start_with(quick_retries)
        .await;
    assert_eq!(register(&gw, "bounce@example.com").await.0, 202);
    assert_eq!(register(&gw, "fine@example.com").await.0, 202);
    let got = server.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].to,
        ["fine@example.com"],
        "the message after a refused one was not sent"
    );

    let events = gw.wait_for_events(EventKind::MailUndeliverable, 1).await;
    assert_eq!(events.len(), 1, "the refusal was not audited");
    assert_eq!(events[0].event.email.as_deref(), Some("bounce@example.com"));
    assert_eq!(events[0].event.outcome, "failure");
    assert_eq!(events[0].event.reason.as_deref(), Some("550"));
    assert!(
        spool_drained(&gw).await.is_empty(),
        "a refused message stayed in the spool"
    );

    tokio::time::sleep(Duration::from_millis(500)).await;
    let tries = server.rcpts().iter().filter(|r| r.starts_with("bounce")).count();
    assert_eq!(tries, 1, "a message refused for good was retried");
    let logged = log_text();
    let line = logged
        .lines()
        .find(|l| l.contains("WARN") && l.contains("code=550"))
        .unwrap_or_else(|| panic!("no warning with the reply code:\n{logged}"));
    assert!(line.contains("message_id="), "{line}");
}

// A 5xx to the greeting or to AUTH refuses the gateway (a server in trouble, a wrong
// password), not the message: nothing is given up, and the mail goes out once the
// server takes the gateway again.
#[tokio::test(flavor = "multi_thread")]
async fn refusing_the_gateway_itself_gives_up_nothing() {
    logs();
    let mut server = SmtpServer::start(Mode::Plain).await;
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .start_with(|c| {
            quick_retries(c);
            let smtp = c.email.smtp.as_mut().unwrap();
            smtp.username = Some("portcullis".to_owned());
            smtp.password = Some(SmtpPassword::new(SECRET));
        })
        .await;
    for (stage, code, to) in [
        (Stage::Connect, 554, "greeting@example.com"),
        (Stage::Auth, 535, "auth@example.com"),
    ] {
        // New connections only: a pooled one is past its greeting and AUTH.
        server.stop();
        server.resume().await;
        let before = server.received().len();
        server.fail(stage, code, None);
        assert_eq!(register(&gw, to).await.0, 202);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            gw.spool().len(),
            1,
            "a {code} to {stage:?} made the sender give up the message"
        );
        assert!(
            gw.audit_events(EventKind::MailUndeliverable).await.is_empty(),
            "a message was given up"
        );
        server.clear_faults();
        let got = server.wait_for(before + 1, Duration::from_secs(10)).await;
        assert_eq!(
            got.len(),
            before + 1,
            "the mail did not go out once the server took the gateway"
        );
        assert_eq!(got[before].to, [to]);
        assert_eq!(got[before].auth.as_ref().map(|a| a.0.as_str()), Some("portcullis"));
    }
    assert!(spool_drained(&gw).await.is_empty());
    assert!(
        gw.audit_events(EventKind::MailUndeliverable).await.is_empty(),
        "a message was given up"
    );
}

// The spool is bounded: when it is full (the server is down), mail() fails and the API
// answers 503 busy; nothing already spooled is dropped.
#[tokio::test(flavor = "multi_thread")]
async fn full_spool_answers_busy() {
    logs();
    let mut server = SmtpServer::start(Mode::Plain).await;
    server.stop();
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&plain_smtp(&server))
        .many_auth_requests()
        .start_with(|c| {
            quick_retries(c);
            c.email.smtp.as_mut().unwrap().spool_max = 2;
        })
        .await;
    assert_eq!(register(&gw, "a@example.com").await.0, 202);
    assert_eq!(register(&gw, "b@example.com").await.0, 202);
    let (status, body) = register(&gw, "c@example.com").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "busy", "{body}");
    assert_eq!(gw.spool().len(), 2);
    server.resume().await;
    assert_eq!(server.wait_for(2, Duration::from_secs(10)).await.len(), 2);
}

/// A gateway sending to `server` over `tls` with the server's certificate as `ca`, and
/// the credentials `portcullis` / [`SECRET`].
async fn tls_gateway(server: &SmtpServer, tls: &str) -> common::TestGateway {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = ca_dir.path().join("smtp-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let shop = start_shop().await;
    let gw = common::Setup::shop(shop)
        .extra(&format!(
            "[email.smtp]\nhost = \"localhost\"\nport = {}\ntls = \"{tls}\"\nca = \"{}\"\nfrom = \"no-reply@shop.example\"\n",
            server.addr.port(),
            ca.display()
        ))
        .start_with(|c| {
            quick_retries(c);
            let smtp = c.email.smtp.as_mut().unwrap();
            smtp.username = Some("portcullis".to_owned());
            smtp.password = Some(SmtpPassword::new(SECRET));
        })
        .await;
    drop(ca_dir);
    gw
}

// STARTTLS (the default) and implicit TLS to a server with a private CA (`ca`), with
// AUTH: the password reaches the server, over TLS only, and no log line, Debug print or
// audit record holds it.
#[tokio::test(flavor = "multi_thread")]
async fn tls_modes_authenticate_and_never_log_the_password() {
    logs();
    for (mode, tls) in [(Mode::StartTls, "starttls"), (Mode::Implicit, "tls")] {
        let server = SmtpServer::start(mode).await;
        let gw = tls_gateway(&server, tls).await;
        assert_eq!(register(&gw, &format!("{tls}@example.com")).await.0, 202);
        let got = server.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "{tls}: no mail");
        assert!(got[0].tls, "{tls}: the mail did not travel over TLS");
        assert_eq!(
            got[0].auth,
            Some(("portcullis".to_owned(), SECRET.to_owned())),
            "{tls}: no AUTH"
        );
        assert!(spool_drained(&gw).await.is_empty());
        let config = gw.running.as_ref().unwrap().inner().config();
        let shown = format!("{config:?}");
        assert!(!shown.contains(SECRET), "the configuration's Debug shows the password");
        let records = portcullis::audit::list(gw.auth().store(), &portcullis::audit::Query::default())
            .await
            .unwrap();
        assert!(!format!("{records:?}").contains(SECRET));
    }
    // An outage and a 5xx (both logged) with credentials configured: still no password.
    let mut server = SmtpServer::start(Mode::StartTls).await;
    let gw = tls_gateway(&server, "starttls").await;
    server.stop();
    assert_eq!(register(&gw, "down@example.com").await.0, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.resume().await;
    server.refuse_rcpt("down", 554);
    gw.wait_for_events(EventKind::MailUndeliverable, 1).await;
    let logged = log_text();
    assert!(logged.contains("mail delivery failed"), "the outage was not logged");
    assert!(!logged.contains(SECRET), "the SMTP password is in the log");
}

// A server that does not offer STARTTLS is not sent anything in clear: the message
// waits in the spool.
#[tokio::test(flavor = "multi_thread")]
async fn starttls_is_required() {
    logs();
    let server = SmtpServer::start(Mode::Plain).await;
    let gw = tls_gateway(&server, "starttls").await;
    assert_eq!(register(&gw, "clear@example.com").await.0, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(server.received().is_empty(), "mail went out without TLS");
    assert_eq!(gw.spool().len(), 1, "the message left the spool");
}

// Plain SMTP to a host that is not loopback, a password in the file, and a username
// without PORTCULLIS_SMTP_PASSWORD stop the gateway at start-up, naming file, line and
// key (the variable is never set in this test binary).
#[tokio::test(flavor = "multi_thread")]
async fn start_up_refusals_name_file_line_and_key() {
    let shop = start_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = common::Setup::shop(shop)
        .extra("[email.smtp]\nhost = \"mail.example.com\"\ntls = \"none\"\nfrom = \"no-reply@shop.example\"\n")
        .write(dir.path());
    let e = Config::load(&path).unwrap_err().to_string();
    let line = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("tls = \"none\""))
        .unwrap()
        + 1;
    assert!(e.contains(&format!("gateway.toml:{line}:")), "{e}");
    assert!(e.contains("[email.smtp] tls") && e.contains("loopback"), "{e}");

    let path = common::Setup::shop(shop)
        .extra("[email.smtp]\nhost = \"localhost\"\npassword = \"hunter2\"\nfrom = \"no-reply@shop.example\"\n")
        .write(dir.path());
    let e = Config::load(&path).unwrap_err().to_string();
    assert!(
        e.contains("[email.smtp] password") && e.contains("PORTCULLIS_SMTP_PASSWORD"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    assert!(std::env::var("PORTCULLIS_SMTP_PASSWORD").is_err());
    let path = common::Setup::shop(shop)
        .extra("[email.smtp]\nhost = \"localhost\"\nusername = \"u\"\nfrom = \"no-reply@shop.example\"\n")
        .write(dir.path());
    let config = Config::load(&path).expect("commands that send no mail still load the configuration");
    let e = portcullis::Gateway::new(config)
        .await
        .err()
        .expect("started without the password")
        .to_string();
    assert!(
        e.contains("gateway.toml:") && e.contains("[email.smtp] username") && e.contains("PORTCULLIS_SMTP_PASSWORD"),
        "{e}"
    );
}
