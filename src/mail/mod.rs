//! Outgoing mail: what the auth flows hand over with `AuthService::mail`, and how it
//! leaves.
//!
//! Without `[email.smtp]`, messages are files in the `[email] outbox` ([`outbox`]). With
//! it, each message is built with lettre ([`message`]), made durable in the spool under
//! `data_dir` ([`spool`]) before the flow goes on, and delivered by one background task
//! per gateway ([`sender`]) that retries with backoff and removes a message only once the
//! mail server accepted it (or refused it for good).

pub mod message;
pub mod outbox;
pub mod sender;
pub mod spool;

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;

pub use self::outbox::Outbox;
pub use self::spool::{Spool, SpoolError};

/// Where the auth flows' mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// `[email] outbox`: files for someone else to send.
    Outbox(Outbox),
    /// `[email.smtp]`: the spool the sender delivers.
    Spool(Arc<Spool>),
}

impl Mailer {
    /// The mailer `config` asks for; opens the spool (`data_dir/spool`) with SMTP.
    pub fn new(config: &Config, clock: SharedClock) -> std::io::Result<Self> {
        match &config.email.smtp {
            Some(smtp) => {
                let dir = config.server.data_dir.join("spool");
                Ok(Self::Spool(Arc::new(Spool::open(
                    &dir,
                    smtp.from.clone(),
                    clock,
                    smtp.spool_max,
                )?)))
            }
            None => {
                let left = std::fs::read_dir(config.server.data_dir.join("spool"))
                    .map(|d| {
                        d.filter_map(Result::ok)
                            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                            .count()
                    })
                    .unwrap_or(0);
                if left > 0 {
                    tracing::warn!(
                        messages = left,
                        "mail waits in the spool but [email.smtp] is not set: it is sent once SMTP is configured again"
                    );
                }
                let domain = config.server.public_url.host().unwrap_or("localhost").to_owned();
                Ok(Self::Outbox(Outbox::new(
                    config.email.outbox.clone(),
                    config.email.from.to_string(),
                    domain,
                    clock,
                )))
            }
        }
    }

    /// Writes one message durably (blocking: call it on the blocking pool). `to` has
    /// been validated.
    pub fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), SpoolError> {
        match self {
            Self::Outbox(o) => o.send(to, subject, body).map(|_| ()).map_err(SpoolError::Io),
            Self::Spool(s) => s.put(to, subject, body).map(|_| ()),
        }
    }

    /// The spool, when mail goes over SMTP.
    pub fn spool(&self) -> Option<&Arc<Spool>> {
        match self {
            Self::Spool(s) => Some(s),
            Self::Outbox(_) => None,
        }
    }
}

/// A random message id: 128 bits, hex.
pub(crate) fn random_id() -> String {
    use std::fmt::Write;
    let bytes: [u8; 16] = rand::random();
    bytes.iter().fold(String::with_capacity(32), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
