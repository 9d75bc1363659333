//! Mail throughput: spools N messages (each synced to disk, as `mail()` does), then lets
//! the sender deliver them to an SMTP server in the same process over loopback, and
//! prints messages spooled and mails delivered per second. `MAILS=N` sets N (2,000).

#[path = "../tests/common/smtp.rs"]
mod smtp;

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::clock::{SharedClock, SystemClock};
use portcullis::mail::{sender, Spool};

fn main() {
    let n: usize = std::env::var("MAILS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let server = smtp::SmtpServer::start(smtp::Mode::Plain).await;
        let dir = tempfile::tempdir().unwrap();
        let src = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://localhost\"\ndata_dir = \"{}\"\npolicies = \"p\"\n\
             [upstreams]\n[email.smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Shop <no-reply@shop.example>\"\n",
            dir.path().display(),
            server.addr.port()
        );
        let config = portcullis::Config::parse(&dir.path().join("g.toml"), &src).unwrap();
        let smtp = config.email.smtp.clone().unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let spool = Arc::new(Spool::open(&dir.path().join("spool"), smtp.from.clone(), clock.clone(), n + 1).unwrap());

        let body = "Welcome.\n\nConfirm your address by opening this link within 24 hours:\n\n\
                    https://localhost/auth/confirm?token=Qm9ndXNUb2tlbkZvckJlbmNobWFya2luZ09ubHkxMjM0NTY3\n";
        let started = Instant::now();
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..4 {
            let spool = spool.clone();
            writers.spawn_blocking(move || {
                for i in (w..n).step_by(4) {
                    spool.put(&format!("user{i}@example.com"), "Confirm your email address", body).unwrap();
                }
            });
        }
        while writers.join_next().await.is_some() {}
        let spooled = started.elapsed();

        let store = portcullis::store::Store::temporary().unwrap();
        let (audit, _task) = portcullis::audit::Audit::start(&store, clock).unwrap();
        let tls = sender::tls(&smtp).unwrap();
        let transport = sender::transport(&smtp, tls);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let task = tokio::spawn(sender::run(spool.clone(), transport, smtp, audit, async move {
            let _ = stopped.await;
        }));
        let got = server.wait_for(n, Duration::from_secs(600)).await.len();
        let delivered = started.elapsed();
        let _ = stop.send(());
        let _ = task.await;
        assert_eq!(got, n, "not every message was delivered");
        println!(
            "mail/spool    {n} messages in {:.3} s: {:.0} messages/s (4 writers, each message synced)",
            spooled.as_secs_f64(),
            n as f64 / spooled.as_secs_f64()
        );
        println!(
            "mail/deliver  {n} mails in {:.3} s: {:.0} mails/s (one sender, loopback SMTP, pooled connection)",
            delivered.as_secs_f64(),
            n as f64 / delivered.as_secs_f64()
        );
    });
}
