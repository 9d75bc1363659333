//! The sender: one task per gateway that delivers the spool, oldest first, over SMTP.
//! One loop for both spools ([`Queue`]): the gateway's own files, or with a shared store
//! the spool every gateway delivers, from which it claims one message at a time.
//!
//! - Accepted (2xx): the message leaves the spool; only then.
//! - A connection failure, a TLS failure, a timeout or a 4xx reply: the message stays
//!   (a claimed one goes back to the shared spool, due after the wait, for any gateway),
//!   and the sender waits before trying again: `retry_first` (5 s), doubling after each
//!   failure, at most `retry_max` (10 min) apart. Success resets the wait. One delivery
//!   may take at most [`DELIVERY_LIMIT`] (well within the shared spool's lease).
//! - A 5xx reply: the server refuses the message for good. The sender logs a warning with
//!   the message id and the reply code (never the message), records
//!   `mail_undeliverable` in the audit trail with the recipient, removes the message
//!   (its body holds a live link: it is not kept), and goes on with the next one. Unless
//!   the server refuses the gateway itself (a 5xx to the greeting, EHLO or AUTH, e.g. a
//!   wrong password): the sender checks that a new session still opens before it gives up
//!   on a message, and otherwise logs an error and retries as for a 4xx.
//! - The spool cannot be read (with a shared store: the database is unreachable): the
//!   sender logs an error and tries again after the same wait; it never stops for it.
//!
//! The task sleeps while the spool is empty and wakes when a message is spooled; with a
//! shared spool it also looks every few seconds for messages of other gateways (put
//! while they could not send, or left by a gateway that stopped mid-delivery once their
//! lease ends). When the gateway stops it returns at once, even mid-delivery: a message
//! whose delivery was cut short is still in the spool, and is sent again by the next run
//! (a claimed one, by any gateway once its lease ends).

use std::future::Future;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::queue::{Item, Queue};
use crate::audit::{Audit, Event, EventKind};
use crate::config::{Smtp, SmtpTls};

/// How long one SMTP command may take before the try counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one delivery (or the check that follows a 5xx) may take in all before the
/// try counts as failed: twice this is within a shared spool's lease
/// ([`super::shared::LEASE`]), so no other gateway claims a message still being sent.
pub const DELIVERY_LIMIT: Duration = Duration::from_secs(2 * 60);
const _: () = assert!(2 * DELIVERY_LIMIT.as_secs() < super::shared::LEASE.as_secs());

/// The TLS mode of `smtp`, with `ca_pem` trusted beside the public roots (a private
/// mail server). Checked at start-up.
pub fn tls(smtp: &Smtp) -> Result<Tls, String> {
    let params = || -> Result<TlsParameters, String> {
        let mut params = TlsParameters::builder(smtp.host.clone());
        if !smtp.ca_pem.is_empty() {
            let cert = Certificate::from_pem(&smtp.ca_pem).map_err(|e| format!("the CA certificate: {e}"))?;
            params = params.add_root_certificate(cert);
        }
        params.build_rustls().map_err(|e| format!("TLS: {e}"))
    };
    Ok(match smtp.tls {
        SmtpTls::StartTls => Tls::Required(params()?),
        SmtpTls::Tls => Tls::Wrapper(params()?),
        SmtpTls::None => Tls::None,
    })
}

/// The SMTP transport for `smtp` over `tls` (see [`tls`]), with the credentials when a
/// username is set; its connections are pooled. Call it on the runtime.
pub fn transport(smtp: &Smtp, tls: Tls) -> AsyncSmtpTransport<Tokio1Executor> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.as_str())
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(COMMAND_TIMEOUT));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    builder.build()
}

/// Delivers `queue` until `stop` completes.
pub async fn run(
    queue: impl Into<Queue>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    smtp: Smtp,
    audit: Audit,
    stop: impl Future<Output = ()>,
) {
    let queue = queue.into();
    tokio::pin!(stop);
    let mut wait = smtp.retry_first;
    loop {
        let next = tokio::select! {
            r = queue.next() => r,
            () = &mut stop => return,
        };
        let items = match next {
            Ok(items) => items,
            Err(e) => {
                tracing::error!(error = %e, retry_in = ?wait, "the mail sender cannot read its spool; will retry");
                if !back_off(&mut wait, smtp.retry_max, stop.as_mut()).await {
                    return;
                }
                continue;
            }
        };
        if items.is_empty() {
            tokio::select! {
                () = queue.idle() => continue,
                () = &mut stop => return,
            }
        }
        for item in items {
            let message = match queue.read(&item).await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    // Unreadable: it could never be sent; keeping it would block the spool.
                    tracing::error!(message_id = item.id(), error = %e, "unreadable message removed from the mail spool");
                    if give_up(&queue, &audit, &item, None, "unreadable").await {
                        continue;
                    }
                    if !back_off(&mut wait, smtp.retry_max, stop.as_mut()).await {
                        return;
                    }
                    break;
                }
            };
            let sent = tokio::select! {
                r = tokio::time::timeout(DELIVERY_LIMIT, transport.send_raw(&message.envelope, &message.bytes)) => r,
                () = &mut stop => return,
            };
            let next = match sent {
                Ok(Ok(_)) => {
                    tracing::debug!(message_id = item.id(), "mail delivered");
                    wait = smtp.retry_first;
                    if queue.remove(&item).await {
                        Next::Go
                    } else {
                        Next::Stall
                    }
                }
                Ok(Err(e)) if e.is_permanent() => {
                    let code = e.status().map_or_else(|| "5xx".to_owned(), |c| c.to_string());
                    // A 5xx to the greeting, EHLO or AUTH refuses the gateway, not this
                    // message: only when the server still takes a session is it final.
                    let session = tokio::select! {
                        r = tokio::time::timeout(DELIVERY_LIMIT, transport.test_connection()) => matches!(r, Ok(Ok(true))),
                        () = &mut stop => return,
                    };
                    if session {
                        tracing::warn!(message_id = item.id(), code = %code, "the mail server refused a message for good; not retried");
                        if give_up(&queue, &audit, &item, Some(message.recipient()), &code).await {
                            Next::Go
                        } else {
                            Next::Stall
                        }
                    } else {
                        tracing::error!(message_id = item.id(), code = %code, error = %crate::error_chain::chain(&e), retry_in = ?wait, "the mail server refuses the gateway (greeting, TLS or AUTH): check [email.smtp]; will retry");
                        Next::Retry
                    }
                }
                Ok(Err(e)) => {
                    let code = e.status().map(|c| c.to_string());
                    tracing::warn!(message_id = item.id(), code = code.as_deref().unwrap_or("-"), error = %crate::error_chain::chain(&e), retry_in = ?wait, "mail delivery failed; will retry");
                    Next::Retry
                }
                Err(_) => {
                    tracing::warn!(message_id = item.id(), limit = ?DELIVERY_LIMIT, retry_in = ?wait, "mail delivery took too long; will retry");
                    Next::Retry
                }
            };
            if next == Next::Retry {
                queue.keep(&item, wait).await;
            }
            if next != Next::Go {
                if !back_off(&mut wait, smtp.retry_max, stop.as_mut()).await {
                    return;
                }
                break;
            }
        }
    }
}

/// What the sender does after one message.
#[derive(PartialEq, Eq)]
enum Next {
    /// On with the next message.
    Go,
    /// The message failed for now: keep it, wait, start again.
    Retry,
    /// The spool failed (a removal did not happen): wait, start again.
    Stall,
}

/// Waits `wait` (unless `stop` completes first: then `false`), and doubles it up to `max`.
async fn back_off(wait: &mut Duration, max: Duration, stop: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(*wait) => {}
        () = stop => return false,
    }
    *wait = (*wait * 2).min(max);
    true
}

/// Gives up on a message: audited as `mail_undeliverable`, then removed.
async fn give_up(queue: &Queue, audit: &Audit, item: &Item, recipient: Option<String>, reason: &str) -> bool {
    let mut event = Event::new(EventKind::MailUndeliverable);
    event.email = recipient;
    event.reason = Some(reason.to_owned());
    audit.durable(event).await;
    queue.remove(item).await
}
