//! Every kind of audit event, with its name in the trail and its outcome.
//!
//! The names are part of the contract (`audit list --event NAME`, the JSON records, the
//! `portcullis_auth_events_total` metric): they are written here and nowhere else. Each
//! kind's outcome is decided by one exhaustive match, so a new kind cannot be filed as a
//! success by default.

use std::fmt;

/// What an audit record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    // Requests judged by the policy.
    /// A request on a route with `audit = true` that was answered.
    Request,
    /// A request refused by normalization or the policy (400, 401, 403, 404, 405).
    AccessDenied,
    /// Shadow mode: a request the policy would refuse, forwarded anyway.
    WouldDeny,
    /// A request refused by a rate limit (429).
    RateLimited,
    /// A forwarded request whose upstream could not be reached or timed out.
    UpstreamError,

    // The `/auth` flows.
    /// A registration was accepted (a confirmation link is mailed, or nothing is).
    Register,
    /// A confirmation link activated an account.
    EmailConfirmed,
    /// A login (password, or password and code) completed.
    LoginSuccess,
    /// A login was refused.
    LoginFailure,
    /// A login was refused because the account is locked.
    LoginLocked,
    /// A TOTP enrolment completed.
    MfaEnrolled,
    /// A TOTP code completed a login.
    MfaSuccess,
    /// A TOTP code was refused.
    MfaFailure,
    /// A refresh token was exchanged for a new pair.
    TokenRefresh,
    /// A refresh token was refused (unknown, expired, revoked); the trail names it
    /// `token_refresh`, with a reason.
    TokenRefreshRefused,
    /// A refresh token was used twice: its whole family is revoked.
    RefreshReuse,
    /// A session ended at the client's request.
    Logout,
    /// `/auth/password/forgot` was asked (whether a mail went out is in the reason).
    PasswordResetRequested,
    /// A reset token set a new password.
    PasswordReset,
    /// A reset token was refused (unknown, spent, expired); the trail names it
    /// `password_reset`, with a reason.
    PasswordResetRefused,
    /// An account's password was changed (by its owner, or by an administrator).
    PasswordChanged,
    /// A password change was refused (wrong current password, policy); the trail names
    /// it `password_changed`, with a reason.
    PasswordChangeRefused,
    /// A session unused for `[tokens] idle_timeout` was ended.
    SessionExpired,
    /// A recovery code stood in for a TOTP code (at login or step-up); the reason says
    /// how many are left.
    RecoveryCodeUsed,
    /// A signed-in caller replaced their recovery codes.
    RecoveryCodesRegenerated,
    /// A signed-in caller passed the second factor again (RFC 9470 step-up).
    StepUp,
    /// A step-up was refused; the trail names it `step_up`, with a reason.
    StepUpRefused,

    // Operations.
    /// A new policy set is in force.
    PolicyReload,
    /// A policy reload was refused; the previous set stays.
    PolicyReloadFailed,
    /// A policy in force draws a lint warning (at start-up and on each reload, one
    /// record per warning, the reason `file:line: text`).
    PolicyWarning,
    /// The high-volume queue dropped records.
    AuditOverflow,
    /// An administrator created an account.
    UserCreated,
    /// An administrator cleared an account's lockout.
    UserUnlocked,
    /// An administrator changed an account's roles.
    RolesChanged,
    /// An administrator set or removed attributes of an account (the keys are in the
    /// reason, not the values).
    UserAttributesChanged,
    /// An administrator disabled an account.
    UserDisabled,
    /// An administrator revoked an account's sessions.
    SessionsRevoked,

    // Mail.
    /// The mail server refused a message for good (5xx): it is not retried.
    MailUndeliverable,
    /// An administrator enabled a disabled account.
    UserEnabled,
    /// An administrator removed an account's TOTP and recovery codes.
    MfaReset,
}

/// How an event ended, as the trail records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// A request refused by the gateway.
    Denied,
    /// Shadow mode let through what the policy would refuse.
    Allowed,
}

impl Outcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
            Self::Allowed => "allowed",
        }
    }
}

impl EventKind {
    /// Every kind, for listing and parsing names.
    pub const ALL: [Self; 40] = [
        Self::Request,
        Self::AccessDenied,
        Self::WouldDeny,
        Self::RateLimited,
        Self::UpstreamError,
        Self::Register,
        Self::EmailConfirmed,
        Self::LoginSuccess,
        Self::LoginFailure,
        Self::LoginLocked,
        Self::MfaEnrolled,
        Self::MfaSuccess,
        Self::MfaFailure,
        Self::TokenRefresh,
        Self::TokenRefreshRefused,
        Self::RefreshReuse,
        Self::Logout,
        Self::SessionExpired,
        Self::PolicyReload,
        Self::PolicyReloadFailed,
        Self::PolicyWarning,
        Self::AuditOverflow,
        Self::UserCreated,
        Self::UserUnlocked,
        Self::RolesChanged,
        Self::UserAttributesChanged,
        Self::UserDisabled,
        Self::SessionsRevoked,
        Self::MailUndeliverable,
        Self::PasswordResetRequested,
        Self::PasswordReset,
        Self::PasswordResetRefused,
        Self::PasswordChanged,
        Self::PasswordChangeRefused,
        Self::UserEnabled,
        Self::RecoveryCodeUsed,
        Self::RecoveryCodesRegenerated,
        Self::StepUp,
        Self::StepUpRefused,
        Self::MfaReset,
    ];

    /// The event's name in the trail and in metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::AccessDenied => "access_denied",
            Self::WouldDeny => "would_deny",
            Self::RateLimited => "rate_limited",
            Self::UpstreamError => "upstream_error",
            Self::Register => "register",
            Self::EmailConfirmed => "email_confirmed",
            Self::LoginSuccess => "login_success",
            Self::LoginFailure => "login_failure",
            Self::LoginLocked => "login_locked",
            Self::MfaEnrolled => "mfa_enrolled",
            Self::MfaSuccess => "mfa_success",
            Self::MfaFailure => "mfa_failure",
            Self::TokenRefresh | Self::TokenRefreshRefused => "token_refresh",
            Self::RefreshReuse => "refresh_reuse",
            Self::Logout => "logout",
            Self::SessionExpired => "session_expired",
            Self::PolicyReload => "policy_reload",
            Self::PolicyReloadFailed => "policy_reload_failed",
            Self::PolicyWarning => "policy_warning",
            Self::AuditOverflow => "audit_overflow",
            Self::UserCreated => "user_created",
            Self::UserUnlocked => "user_unlocked",
            Self::RolesChanged => "roles_changed",
            Self::UserAttributesChanged => "user_attributes_changed",
            Self::UserDisabled => "user_disabled",
            Self::SessionsRevoked => "sessions_revoked",
            Self::MailUndeliverable => "mail_undeliverable",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset | Self::PasswordResetRefused => "password_reset",
            Self::PasswordChanged | Self::PasswordChangeRefused => "password_changed",
            Self::UserEnabled => "user_enabled",
            Self::RecoveryCodeUsed => "recovery_code_used",
            Self::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Self::StepUp | Self::StepUpRefused => "step_up",
            Self::MfaReset => "mfa_reset",
        }
    }

    /// How an event of this kind ended.
    pub const fn outcome(self) -> Outcome {
        match self {
            Self::Request
            | Self::Register
            | Self::EmailConfirmed
            | Self::LoginSuccess
            | Self::MfaEnrolled
            | Self::MfaSuccess
            | Self::TokenRefresh
            | Self::Logout
            | Self::SessionExpired
            | Self::PolicyReload
            | Self::PolicyWarning
            | Self::UserCreated
            | Self::UserUnlocked
            | Self::RolesChanged
            | Self::UserAttributesChanged
            | Self::UserDisabled
            | Self::SessionsRevoked
            | Self::PasswordResetRequested
            | Self::PasswordReset
            | Self::PasswordChanged
            | Self::UserEnabled
            | Self::RecoveryCodeUsed
            | Self::RecoveryCodesRegenerated
            | Self::StepUp
            | Self::MfaReset => Outcome::Success,
            Self::LoginFailure
            | Self::LoginLocked
            | Self::MfaFailure
            | Self::TokenRefreshRefused
            | Self::RefreshReuse
            | Self::PasswordResetRefused
            | Self::PasswordChangeRefused
            | Self::StepUpRefused
            | Self::UpstreamError
            | Self::PolicyReloadFailed
            | Self::AuditOverflow
            | Self::MailUndeliverable => Outcome::Failure,
            Self::AccessDenied | Self::RateLimited => Outcome::Denied,
            Self::WouldDeny => Outcome::Allowed,
        }
    }

    /// Whether `name` is the trail's name of some kind (for `audit list --event`).
    pub fn is_name(name: &str) -> bool {
        Self::ALL.iter().any(|k| k.name() == name)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ALL lists every kind once; names are unique except the two faces of a refresh
    // and of a step-up.
    #[test]
    fn all_kinds_named_once() {
        let mut names: Vec<_> = EventKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        let shared = ["password_changed", "password_reset", "step_up", "token_refresh"];
        assert_eq!(
            before - names.len(),
            shared.len(),
            "only {shared:?} have two kinds each"
        );
        let mut kinds = EventKind::ALL.to_vec();
        kinds.sort_unstable();
        kinds.dedup();
        assert_eq!(kinds.len(), EventKind::ALL.len());
        assert!(EventKind::is_name("login_failure"));
        assert!(!EventKind::is_name("login_fail"));
    }

    // The outcomes the trail has always recorded for these kinds.
    #[test]
    fn outcomes() {
        assert_eq!(EventKind::TokenRefresh.outcome(), Outcome::Success);
        assert_eq!(EventKind::TokenRefreshRefused.outcome(), Outcome::Failure);
        assert_eq!(EventKind::AccessDenied.outcome().as_str(), "denied");
        assert_eq!(EventKind::WouldDeny.outcome().as_str(), "allowed");
        assert_eq!(EventKind::AuditOverflow.outcome().as_str(), "failure");
    }
}
