//! The one shape every auth flow ends with: its answer, and the event it records.

use crate::audit::EventKind;
use crate::error::GatewayError;

/// An event worth recording, emitted by a flow as it decides.
#[derive(Debug, Clone)]
pub struct AuthEvent {
    pub event: EventKind,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub reason: Option<String>,
}

impl AuthEvent {
    /// The audit record of this event, for a request from `ip`.
    pub fn to_audit(&self, ip: Option<std::net::IpAddr>, request_id: Option<&str>) -> crate::audit::Event {
        let mut ev = crate::audit::Event::new(self.event);
        ev.user_id.clone_from(&self.user_id);
        ev.email.clone_from(&self.email);
        ev.reason.clone_from(&self.reason);
        ev.ip = ip.map(|i| i.to_string());
        ev.request_id = request_id.map(str::to_owned);
        ev
    }
}

/// How an auth flow ended: the answer (or the error to answer with), and the event to
/// record, when the flow records one. `auth::http` records the event, if any, then
/// answers; nothing else decides what is recorded.
///
/// Which outcomes carry an event is the flow's choice, made by the constructor it ends
/// with: [`Flow::audited`] (login, MFA, refresh: every outcome), [`Flow::audited_success`]
/// (registration, confirmation, logout: a refusal there is a malformed or stale request,
/// not a security event) and [`Flow::unaudited`] (enrolment: the event comes with the
/// code that completes it).
#[must_use]
#[derive(Debug)]
pub struct Flow<T> {
    pub result: Result<T, GatewayError>,
    pub event: Option<AuthEvent>,
}

impl<T> Flow<T> {
    /// A flow whose every outcome, granted or refused, is an event.
    pub fn audited(outcome: Result<(T, AuthEvent), (GatewayError, AuthEvent)>) -> Self {
        match outcome {
            Ok((value, event)) => Self {
                result: Ok(value),
                event: Some(event),
            },
            Err((error, event)) => Self {
                result: Err(error),
                event: Some(event),
            },
        }
    }

    /// A flow whose success is an event and whose refusals are not.
    pub fn audited_success(outcome: Result<(T, AuthEvent), GatewayError>) -> Self {
        match outcome {
            Ok((value, event)) => Self {
                result: Ok(value),
                event: Some(event),
            },
            Err(error) => Self {
                result: Err(error),
                event: None,
            },
        }
    }

    /// A flow that records nothing.
    pub fn unaudited(result: Result<T, GatewayError>) -> Self {
        Self { result, event: None }
    }
}
