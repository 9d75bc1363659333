//! The sender: one task per gateway that delivers the spool, oldest first, over SMTP.
//!
//! - Accepted (2xx): the message leaves the spool; only then.
//! - A connection failure, a TLS failure, a timeout or a 4xx reply: the message stays,
//!   and the sender waits before trying again: `retry_first` (5 s), doubling after each
//!   failure, at most `retry_max` (10 min) apart. Success resets the wait.
//! - A 5xx reply: the server refuses the message for good. The sender logs a warning with
//!   the message id and the reply code (never the message), records
//!   `mail_undeliverable` in the audit trail with the recipient, removes the message
//!   (its body holds a live link: it is not kept), and goes on with the next one. Unless
//!   the server refuses the gateway itself (a 5xx to the greeting, EHLO or AUTH, e.g. a
//!   wrong password): the sender checks that a new session still opens before it gives up
//!   on a message, and otherwise logs an error and retries as for a 4xx.
//!
//! The task sleeps while the spool is empty and wakes when a message is spooled. When the
//! gateway stops it returns at once, even mid-delivery: a message whose delivery was
//! cut short is still in the spool, and is sent again by the next run.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::spool::{message_id, Spool};
use crate::audit::{Audit, Event, EventKind};
use crate::config::{Smtp, SmtpTls};

/// How long one SMTP command may take before the try counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Delivers the spool until `stop` completes.
pub async fn run(
    spool: Arc<Spool>,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    smtp: Smtp,
    audit: Audit,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut wait = smtp.retry_first;
    loop {
        let names = {
            let spool = spool.clone();
            tokio::task::spawn_blocking(move || spool.list()).await
        };
        let names = match names {
            Ok(Ok(names)) => names,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the mail spool");
                Vec::new()
            }
            Err(e) => {
                tracing::error!(error = %e, "the mail spool task failed");
                Vec::new()
            }
        };
        if names.is_empty() {
            tokio::select! {
                () = spool.spooled() => continue,
                () = &mut stop => return,
            }
        }
        for name in names {
            let read = {
                let (spool, name) = (spool.clone(), name.clone());
                tokio::task::spawn_blocking(move || spool.read(&name)).await
            };
            let message = match read {
                Ok(Ok(Some(m))) => m,
                Ok(Ok(None)) => continue,
                Ok(Err(e)) => {
                    // Unreadable: it could never be sent; keeping it would block the spool.
                    tracing::error!(message_id = message_id(&name), error = %e, "unreadable message removed from the mail spool");
                    if give_up(&spool, &audit, &name, None, "unreadable").await {
                        continue;
                    }
                    if !back_off(&mut wait, smtp.retry_max, stop.as_mut()).await {
                        return;
                    }
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, "the mail spool task failed");
                    break;
                }
            };
            let sent = tokio::select! {
                r = transport.send_raw(&message.envelope, &message.bytes) => r,
                () = &mut stop => return,
            };
            let retry = match sent {
                Ok(_) => {
                    tracing::debug!(message_id = message_id(&name), "mail delivered");
                    wait = smtp.retry_first;
                    !remove(&spool, &name).await
                }
                Err(e) if e.is_permanent() => {
                    let code = e.status().map_or_else(|| "5xx".to_owned(), |c| c.to_string());
                    // A 5xx to the greeting, EHLO or AUTH refuses the gateway, not this
                    // message: only when the server still takes a session is it final.
                    let session = tokio::select! {
                        r = transport.test_connection() => matches!(r, Ok(true)),
                        () = &mut stop => return,
                    };
                    if session {
                        tracing::warn!(message_id = message_id(&name), code = %code, "the mail server refused a message for good; not retried");
                        !give_up(&spool, &audit, &name, Some(message.recipient()), &code).await
                    } else {
                        tracing::error!(message_id = message_id(&name), code = %code, error = %crate::error_chain::chain(&e), retry_in = ?wait, "the mail server refuses the gateway (greeting, TLS or AUTH): check [email.smtp]; will retry");
                        true
                    }
                }
                Err(e) => {
                    let code = e.status().map(|c| c.to_string());
                    tracing::warn!(message_id = message_id(&name), code = code.as_deref().unwrap_or("-"), error = %crate::error_chain::chain(&e), retry_in = ?wait, "mail delivery failed; will retry");
                    true
                }
            };
            if retry {
                if !back_off(&mut wait, smtp.retry_max, stop.as_mut()).await {
                    return;
                }
                break;
            }
        }
    }
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

/// Removes a delivered message from the spool; `false` when it could not (the caller
/// waits before going on, rather than sending it again at once).
async fn remove(spool: &Arc<Spool>, name: &str) -> bool {
    let (spool, owned) = (spool.clone(), name.to_owned());
    match tokio::task::spawn_blocking(move || spool.remove(&owned)).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::error!(message_id = message_id(name), error = %e, "cannot remove a message from the mail spool");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, "the mail spool task failed");
            false
        }
    }
}

/// Gives up on a message: audited as `mail_undeliverable`, then removed.
async fn give_up(spool: &Arc<Spool>, audit: &Audit, name: &str, recipient: Option<String>, reason: &str) -> bool {
    let mut event = Event::new(EventKind::MailUndeliverable);
    event.email = recipient;
    event.reason = Some(reason.to_owned());
    audit.durable(event).await;
    remove(spool, name).await
}
