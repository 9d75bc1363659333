//! Database errors: what the database refused ([`StoreError::Database`]) apart from what
//! could not reach it ([`StoreError::Unavailable`], which callers answer with 503), and
//! URLs shown without their password.

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use crate::store::StoreError;

/// An error of the database, as it said it (statements and parameters are never in it).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PgError(String);

impl PgError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// The start of tokio-postgres's messages for errors that are not an outage.
const OURS: &[&str] = &[
    "error serializing",
    "error deserializing",
    "invalid column",
    "expected ",
    "invalid configuration",
    "authentication error",
    "query returned an unexpected number of rows",
];

/// Sorts a tokio-postgres error: a lost or refused connection, a server shutting down
/// or a statement cut off by `statement_timeout` is `Unavailable`; the rest is a
/// database error.
pub(crate) fn db_err(e: tokio_postgres::Error) -> StoreError {
    let text = crate::error_chain::chain(&e);
    let unavailable = match e.code() {
        Some(code) => {
            code.code().starts_with("08")
                || code.code().starts_with("53")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::QUERY_CANCELED,
                    SqlState::LOCK_NOT_AVAILABLE,
                    SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                ]
                .contains(code)
        }
        // Not from the server: a lost connection, or something of ours (a parameter
        // or column of the wrong type, a bad configuration) that no retry would mend.
        None => !OURS.iter().any(|p| text.starts_with(p)),
    };
    if unavailable {
        StoreError::Unavailable(text)
    } else {
        StoreError::Database(PgError(text))
    }
}

/// A pool that could not give a connection: the database is out of reach (or every
/// connection is busy for longer than the wait allows).
pub(crate) fn pool_err(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => match db_err(e) {
            StoreError::Database(e) => StoreError::Unavailable(e.0),
            other => other,
        },
        other => StoreError::Unavailable(format!("no database connection: {other}")),
    }
}

/// `url` with its password, if any, replaced by `***`: the only form of a database URL
/// that goes into a log or an error.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Whether a URL carries a password (`user:password@`).
pub fn url_has_password(url: &str) -> bool {
    redact_url(url) != url
}

#[cfg(test)]
mod tests {
    use super::*;

    // The shared store's key comes from the variable only, and a bad one is refused
    // without being shown.
    #[test]
    fn secret_key_from_the_variable_only() {
        use crate::store::postgres::secret_key;
        assert!(matches!(secret_key(None), Err(StoreError::KeyRequired)));
        let message = secret_key(None).unwrap_err().to_string();
        assert!(
            message.contains("PORTCULLIS_SECRET_KEY") && message.contains("postgres"),
            "{message}"
        );
        let bad = secret_key(Some("c2hvcnQ=".into())).unwrap_err().to_string();
        assert!(bad.contains("32") && !bad.contains("c2hvcnQ"), "{bad}");
        assert!(secret_key(Some("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=".into())).is_ok());
    }

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://gw:s3cret@db.internal:5432/portcullis?sslmode=require"),
            "postgres://gw:***@db.internal:5432/portcullis?sslmode=require"
        );
        assert_eq!(redact_url("postgres://gw@db/p"), "postgres://gw@db/p");
        assert_eq!(redact_url("postgresql://db/p?x=a@b"), "postgresql://db/p?x=a@b");
        assert!(url_has_password("postgres://a:b@c/d"));
        assert!(!url_has_password("postgres://a@c/d"));
        assert!(!redact_url("postgres://u:p%40ss@h/d").contains("p%40ss"));
    }
}
