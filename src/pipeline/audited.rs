//! What the trail says about a request: which refusals make a record, and the record's
//! fields.

use crate::audit::EventKind;
use crate::error::GatewayError;

use super::context::RequestContext;

/// The audit record a refused request gets, if any: every variant is listed, so a new
/// refusal is filed by a decision, not by default. `proxied`: see
/// [`RequestContext::proxied`].
pub(crate) fn refusal_event(err: &GatewayError, proxied: bool) -> Option<EventKind> {
    match err {
        GatewayError::RateLimited { .. } | GatewayError::RouteRateLimited { .. } => Some(EventKind::RateLimited),
        GatewayError::BadTarget(_)
        | GatewayError::MethodNotAllowed(_)
        | GatewayError::NoRoute
        | GatewayError::Unauthenticated { .. }
        | GatewayError::TokenRefused(_)
        | GatewayError::InsufficientUserAuthentication { .. }
        | GatewayError::Forbidden { .. }
        | GatewayError::Csrf
        | GatewayError::RequestFields(_) => proxied.then_some(EventKind::AccessDenied),
        GatewayError::UpstreamUnreachable { .. }
        | GatewayError::UpstreamTimeout { .. }
        | GatewayError::UnfilterableResponse { .. } => Some(EventKind::UpstreamError),
        // Not audited, deliberately: the `/auth/` flows' refusals are audited by those
        // flows with their own events; the rest are the client's framing or the
        // gateway's own failure, not access decisions, and the log line and the metrics
        // record them (auditing them would change the trail: a decision of its own).
        GatewayError::PasswordPolicy { .. }
        | GatewayError::InvalidConfirmation
        | GatewayError::InvalidResetToken
        | GatewayError::InvalidCredentials
        | GatewayError::EmailUnconfirmed
        | GatewayError::DomainNotAllowed
        | GatewayError::AccountDisabled
        | GatewayError::Locked { .. }
        | GatewayError::InvalidCode { .. }
        | GatewayError::CodeReused { .. }
        | GatewayError::InvalidGrant
        | GatewayError::RequestTimeout
        | GatewayError::HeadersTooLarge { .. }
        | GatewayError::PayloadTooLarge { .. }
        | GatewayError::Malformed(_)
        | GatewayError::InvalidBody(_)
        | GatewayError::Busy { .. }
        | GatewayError::Store(_)
        | GatewayError::StoreUnavailable(_)
        | GatewayError::Internal(_) => None,
    }
}

/// The audit record of a request: `raw_path` is the path as received; the record names
/// the canonical one when the target was judged.
pub(crate) fn audit_fields(
    ctx: &RequestContext,
    raw_path: &str,
    event: EventKind,
    status: u16,
    reason: Option<String>,
) -> crate::audit::Fields {
    let mut ev = crate::audit::EventRef::new(event);
    if let Some(c) = &ctx.caller {
        (ev.user_id, ev.email) = (Some(c.principal.id.as_str()), Some(c.principal.email.as_str()));
    }
    ev.ip = Some(crate::audit::Address::Ip(ctx.client));
    ev.method = Some(ctx.method.as_str());
    ev.path = Some(crate::audit::clip(ctx.canonical.as_deref().unwrap_or(raw_path)));
    ev.route = ctx.route.as_ref().map(|r| r.name());
    ev.status = Some(status);
    ev.reason = reason.as_deref();
    ev.request_id = Some(&ctx.id);
    ev.latency_ms = Some(u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX));
    crate::audit::Fields::of_kind(event, &ev)
}
