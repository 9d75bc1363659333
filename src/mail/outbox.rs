//! The outbox, used without `[email.smtp]`: one RFC 5322 `.eml` file per message in the
//! outbox directory (mode 0600: messages carry confirmation links), synced before
//! [`Outbox::send`] returns. Nothing sends these files anywhere.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use crate::clock::SharedClock;

/// Writes messages from `from` (`[email] from`) into the outbox directory; message ids
/// are `<random@from_domain>`.
#[derive(Clone)]
pub struct Outbox {
    outbox: PathBuf,
    from: String,
    from_domain: String,
    clock: SharedClock,
}

impl Outbox {
    /// An outbox writing into `outbox` (made on first use), dating messages by `clock`.
    pub fn new(outbox: PathBuf, from: String, from_domain: String, clock: SharedClock) -> Self {
        Self {
            outbox,
            from,
            from_domain,
            clock,
        }
    }

    /// Writes one message. `to` has been validated (no CR, LF or control characters).
    pub fn send(&self, to: &str, subject: &str, body: &str) -> std::io::Result<PathBuf> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.outbox)?;
        let now_ms = self.clock.now_ms();
        let id = super::random_id();
        let date = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(now_ms));
        let message = format!(
            "From: {from}\r\n\
             To: <{to}>\r\n\
             Subject: {subject}\r\n\
             Date: {date}\r\n\
             Message-ID: <{id}@{domain}>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 8bit\r\n\
             \r\n\
             {body}\r\n",
            from = self.from,
            domain = self.from_domain,
            body = body.replace('\n', "\r\n"),
        );
        let path = self.outbox.join(format!("{now_ms:013}-{}.eml", &id[..12]));
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(message.as_bytes())?;
        f.sync_all()?;
        Ok(path)
    }
}
