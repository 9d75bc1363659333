//! `[store]`: where the state lives. `backend = "sled"` (the default) keeps it in
//! `data_dir`; `backend = "postgres"` shares it, through one PostgreSQL database, with
//! every gateway started with the same `[store]` (contract §11). The database password
//! is never read from the file: it comes from `PORTCULLIS_STORE_PASSWORD`.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::store::postgres::{redact_url, refuse_plaintext, url_has_password, PgSettings, PASSWORD_ENV};
use crate::units::HumanDuration;

/// The most connections one gateway may open.
const MAX_POOL: usize = 1000;
/// The longest `connect_timeout` or `statement_timeout` accepted.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    backend: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    ca: Option<Spanned<String>>,
    pool_size: Option<Spanned<usize>>,
    connect_timeout: Option<Spanned<HumanDuration>>,
    statement_timeout: Option<Spanned<HumanDuration>>,
}

/// `[store]`, validated.
#[derive(Debug, Clone, Default)]
pub enum StoreConfig {
    /// The embedded store in `data_dir`.
    #[default]
    Sled,
    /// One PostgreSQL database shared by every gateway.
    Postgres(PostgresStore),
}

/// `[store]` with `backend = "postgres"`.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    /// Without a password (refused in the file).
    pub url: String,
    /// `ca`: CA certificates trusted beside the system's roots, resolved against the
    /// file's directory.
    pub ca: Option<PathBuf>,
    /// `pool_size` (default 16): the most connections this gateway opens.
    pub pool_size: usize,
    /// `connect_timeout` (default 2s): the longest wait for a connection.
    pub connect_timeout: Duration,
    /// `statement_timeout` (default 5s): the longest one statement may run.
    pub statement_timeout: Duration,
}

impl PostgresStore {
    /// The backend's settings, with the password from `PORTCULLIS_STORE_PASSWORD`.
    pub fn settings(&self) -> PgSettings {
        let mut s = PgSettings::new(&self.url);
        s.ca.clone_from(&self.ca);
        s.pool_size = self.pool_size;
        s.connect_timeout = self.connect_timeout;
        s.statement_timeout = self.statement_timeout;
        s
    }
}

/// An error: the span of the value at fault, the key, and the message.
type Error = (Range<usize>, String, String);

fn err(span: Range<usize>, key: &str, message: impl Into<String>) -> Error {
    (span, format!("[store] {key}"), message.into())
}

/// Validates `[store]`; `resolve` makes a path relative to the file absolute.
pub(super) fn validate(raw: Option<RawStore>, resolve: &dyn Fn(&str) -> PathBuf) -> Result<StoreConfig, Error> {
    let Some(raw) = raw else {
        return Ok(StoreConfig::Sled);
    };
    let backend = raw.backend.as_ref().map(|b| (b.get_ref().as_str(), b.span()));
    match backend {
        None | Some(("sled", _)) => {
            // A postgres key beside the embedded store would be silently unused.
            let extra = [
                raw.url.as_ref().map(|v| ("url", v.span())),
                raw.ca.as_ref().map(|v| ("ca", v.span())),
                raw.pool_size.as_ref().map(|v| ("pool_size", v.span())),
                raw.connect_timeout.as_ref().map(|v| ("connect_timeout", v.span())),
                raw.statement_timeout.as_ref().map(|v| ("statement_timeout", v.span())),
            ];
            match extra.into_iter().flatten().next() {
                Some((key, span)) => Err(err(
                    span,
                    key,
                    format!("{key} is for backend = \"postgres\"; the sled backend keeps its state in data_dir"),
                )),
                None => Ok(StoreConfig::Sled),
            }
        }
        Some(("postgres", span)) => postgres(raw, span, resolve).map(StoreConfig::Postgres),
        Some((other, span)) => Err(err(
            span,
            "backend",
            format!("unknown backend {other:?}: expected \"sled\" or \"postgres\""),
        )),
    }
}

fn postgres(raw: RawStore, backend: Range<usize>, resolve: &dyn Fn(&str) -> PathBuf) -> Result<PostgresStore, Error> {
    let Some(url) = raw.url else {
        return Err(err(
            backend,
            "url",
            "backend = \"postgres\" needs url = \"postgres://USER@HOST/DATABASE\"",
        ));
    };
    let text = url.get_ref().trim();
    if url_has_password(text) {
        return Err(err(
            url.span(),
            "url",
            format!(
                "{}: the database password is never read from the configuration file: remove it and set {PASSWORD_ENV}",
                redact_url(text)
            ),
        ));
    }
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Err(err(
            url.span(),
            "url",
            format!("{text:?} is not a PostgreSQL URL: expected postgres://USER@HOST[:PORT]/DATABASE"),
        ));
    }
    if let Err(e) = text.parse::<tokio_postgres::Config>() {
        return Err(err(
            url.span(),
            "url",
            format!("{text:?} is not a valid PostgreSQL URL: {e}"),
        ));
    }
    if let Some(why) = refuse_plaintext(text) {
        return Err(err(url.span(), "url", why));
    }
    let pool_size = match raw.pool_size {
        Some(p) if !(1..=MAX_POOL).contains(p.get_ref()) => {
            return Err(err(p.span(), "pool_size", format!("pool_size is 1 to {MAX_POOL}")))
        }
        Some(p) => p.into_inner(),
        None => 16,
    };
    let timeout = |key: &str, v: Option<Spanned<HumanDuration>>, default: u64| match v {
        Some(d) if d.get_ref().0.is_zero() || d.get_ref().0 > MAX_TIMEOUT => Err(err(
            d.span(),
            key,
            format!("{key} is more than 0 and at most {} s", MAX_TIMEOUT.as_secs()),
        )),
        Some(d) => Ok(d.into_inner().0),
        None => Ok(Duration::from_secs(default)),
    };
    Ok(PostgresStore {
        url: text.to_owned(),
        ca: raw.ca.map(|c| resolve(c.get_ref())),
        pool_size,
        connect_timeout: timeout("connect_timeout", raw.connect_timeout, 2)?,
        statement_timeout: timeout("statement_timeout", raw.statement_timeout, 5)?,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::tests::MINIMAL;
    use crate::config::Config;

    use super::*;

    fn parse(store: &str) -> Result<Config, String> {
        Config::parse(
            Path::new("/etc/portcullis/gateway.toml"),
            &format!("{MINIMAL}\n[store]\n{store}"),
        )
        .map_err(|e| e.to_string())
    }

    // No [store], or backend = "sled": the embedded store.
    #[test]
    fn sled_by_default() {
        let c = Config::parse(Path::new("g.toml"), MINIMAL).unwrap();
        assert!(matches!(c.store, StoreConfig::Sled));
        assert!(matches!(parse("backend = \"sled\"").unwrap().store, StoreConfig::Sled));
    }

    // A postgres store with its defaults, and every key set; the CA path is relative to
    // the file.
    #[test]
    fn postgres_keys() {
        let StoreConfig::Postgres(p) = parse("backend = \"postgres\"\nurl = \"postgres://gw@db.internal/portcullis\"")
            .unwrap()
            .store
        else {
            panic!("not postgres");
        };
        assert_eq!(p.url, "postgres://gw@db.internal/portcullis");
        assert_eq!((p.pool_size, p.connect_timeout), (16, Duration::from_secs(2)));
        assert_eq!(p.statement_timeout, Duration::from_secs(5));
        assert!(p.ca.is_none());
        let StoreConfig::Postgres(p) = parse(
            "backend = \"postgres\"\nurl = \"postgresql://gw@db:5433/p?sslmode=require\"\nca = \"certs/db-ca.pem\"\npool_size = 4\nconnect_timeout = \"1s\"\nstatement_timeout = \"3s\"",
        )
        .unwrap()
        .store
        else {
            panic!("not postgres");
        };
        assert_eq!(p.ca.as_deref(), Some(Path::new("/etc/portcullis/certs/db-ca.pem")));
        assert_eq!((p.pool_size, p.connect_timeout), (4, Duration::from_secs(1)));
        assert_eq!(p.statement_timeout, Duration::from_secs(3));
        let s = p.settings();
        assert_eq!(
            (s.pool_size, s.url.as_str()),
            (4, "postgresql://gw@db:5433/p?sslmode=require")
        );
    }

    // Each mistake is refused with the file, the line and the key; a password in the URL
    // is never echoed, and the message names the environment variable.
    #[test]
    fn refusals() {
        let cases = [
            ("backend = \"mysql\"", "[store] backend", "unknown backend \"mysql\""),
            ("backend = \"postgres\"", "[store] url", "needs url"),
            (
                "backend = \"postgres\"\nurl = \"mysql://db/x\"",
                "[store] url",
                "not a PostgreSQL URL",
            ),
            ("url = \"postgres://db/x\"", "[store] url", "for backend = \"postgres\""),
            (
                "backend = \"postgres\"\nurl = \"postgres://db/x\"\npool_size = 0",
                "[store] pool_size",
                "1 to 1000",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://db/x\"\nconnect_timeout = \"0s\"",
                "[store] connect_timeout",
                "more than 0",
            ),
            ("dialect = \"pg\"", "dialect", "unknown field"),
            (
                "backend = \"postgres\"\nurl = \"postgres://gw@db.internal/p?sslmode=disable\"",
                "[store] url",
                "use sslmode=require",
            ),
            (
                "backend = \"postgres\"\nurl = \"postgres://gw@10.0.0.5/p?sslmode=prefer\"",
                "[store] url",
                "in clear",
            ),
        ];
        for (store, key, message) in cases {
            let e = parse(store).unwrap_err();
            assert!(
                e.contains("gateway.toml:") && e.contains(key) && e.contains(message),
                "{store}: {e}"
            );
        }
        let e = parse("backend = \"postgres\"\nurl = \"postgres://gw:hunter2@db/portcullis\"").unwrap_err();
        assert!(e.contains("gateway.toml:13") && e.contains("[store] url"), "{e}");
        assert!(e.contains(PASSWORD_ENV) && !e.contains("hunter2"), "{e}");
        // Without TLS to this machine is fine.
        for local in [
            "postgres://gw@127.0.0.1:5432/p?sslmode=disable",
            "postgres://gw@localhost/p?sslmode=prefer",
        ] {
            parse(&format!("backend = \"postgres\"\nurl = \"{local}\"")).unwrap();
        }
    }
}
