//! The PostgreSQL backend: any number of gateways share one database and act as one.
//! Every [`Backend`](super::backend::Backend) method keeps its contract across gateways
//! with transactions, row locks and single statements (`INSERT ... ON CONFLICT`,
//! `DELETE ... RETURNING`), never with anything held in one process.
//!
//! Connections come from a deadpool pool over tokio-postgres, over rustls (ring) with
//! the system's roots and an optional CA file: TLS is required to any host but this
//! machine unless the URL says `sslmode` (which the configuration allows only to this
//! machine). Everything is
//! bounded: the connect and pool-wait timeouts, a `statement_timeout` on every
//! connection, and a deadline on each whole operation, so an unreachable database is
//! [`StoreError::Unavailable`] within seconds, never a hang. The password comes from
//! `PORTCULLIS_STORE_PASSWORD`, never from the URL, and no URL is shown with one.
//!
//! Records are stored as the JSON the sled backend writes, beside the columns the
//! queries need; TOTP secrets in them are sealed with the [`SecretKey`] (`sealed`), and
//! a key check value stored at the first start refuses any other key.

mod audit;
mod error;
mod feed;
mod imp;
mod schema;
mod sessions;
mod shared;
mod tls;
mod tokens;
mod upkeep;
mod users;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::sealed::SecretKey;
use super::secrets::{open_challenge, open_user, seal_challenge, seal_user};
use super::{Challenge, Result, StoreError, User};

use error::db_err;
pub use error::{redact_url, url_has_password, PgError};
pub use tls::refuse_plaintext;

/// The environment variable that holds the database password.
pub const PASSWORD_ENV: &str = "PORTCULLIS_STORE_PASSWORD";

/// A value sealed under the key in `meta`, so a wrong key is found at start-up.
const KEY_CHECK: &str = "secret_key_check";
const KEY_CHECK_TEXT: &str = "portcullis secret key check";

/// How to reach the database.
#[derive(Clone)]
pub struct PgSettings {
    /// `postgres://user@host:port/db` (libpq's `sslmode=disable|prefer|require` in the
    /// query); without a password.
    pub url: String,
    /// From [`PASSWORD_ENV`].
    pub password: Option<String>,
    /// A PEM file of CA certificates trusted besides the system's roots.
    pub ca: Option<PathBuf>,
    /// The most connections this gateway opens.
    pub pool_size: usize,
    /// The longest wait for a new connection, or for a free one from the pool.
    pub connect_timeout: Duration,
    /// The longest one statement may run (PostgreSQL's `statement_timeout`).
    pub statement_timeout: Duration,
}

impl std::fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("ca", &self.ca)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

impl PgSettings {
    /// Settings for `url` with the defaults of `[store]`, the password from
    /// [`PASSWORD_ENV`] if it is set.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            password: password_from_env(),
            ca: None,
            pool_size: 16,
            connect_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The secret key of a shared store, from the value of `PORTCULLIS_SECRET_KEY` only (pass
/// `std::env::var_os(KEY_ENV)`): a key file in one gateway's `data_dir` would not be
/// the other gateways', so without the variable it is [`StoreError::KeyRequired`].
pub fn secret_key(env: Option<std::ffi::OsString>) -> Result<SecretKey> {
    match env {
        None => Err(StoreError::KeyRequired),
        Some(value) => {
            let text = value.into_string().map_err(|_| super::sealed::KeyError::Base64)?;
            Ok(SecretKey::from_base64(&text)?)
        }
    }
}

/// The database password from [`PASSWORD_ENV`], if set.
pub fn password_from_env() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// The PostgreSQL backend: a pool of connections and the key that seals TOTP secrets.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    sealer: Arc<SecretKey>,
    /// The deadline of one whole operation (pool wait, statements, commit).
    deadline: Duration,
    /// Revocations from every gateway, through LISTEN/NOTIFY.
    feed: Arc<feed::Feed>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore(..)")
    }
}

impl PgStore {
    /// Connects, creates or migrates the schema (safe when several gateways start at
    /// once) and checks `key` against the one the database was first started with
    /// ([`StoreError::WrongKey`] if it differs). The pool's connections live on the
    /// runtime this is called on.
    pub async fn connect(settings: &PgSettings, key: SecretKey) -> Result<Self> {
        let mut config: tokio_postgres::Config = settings.url.parse().map_err(|e| {
            StoreError::Database(PgError::new(format!(
                "{}: not a PostgreSQL URL: {e}",
                redact_url(&settings.url)
            )))
        })?;
        if let Some(p) = &settings.password {
            config.password(p.as_bytes());
        }
        tls::require_tls_by_default(&mut config, &settings.url);
        config.connect_timeout(settings.connect_timeout);
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("portcullis");
        config.options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            settings.statement_timeout.as_millis(),
            settings.statement_timeout.as_millis(),
            settings.statement_timeout.as_millis().saturating_mul(2),
        ));
        let tls = tls::connector(settings.ca.as_deref())?;
        let feed = feed::Feed::new(config.clone(), tls.clone());
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let wait = Some(settings.connect_timeout);
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(wait)
            .create_timeout(wait)
            .recycle_timeout(wait)
            .build()
            .map_err(|e| StoreError::Database(PgError::new(format!("the connection pool: {e}"))))?;
        let store = Self {
            pool,
            sealer: Arc::new(key),
            deadline: settings.connect_timeout + settings.statement_timeout,
            feed,
        };
        let applied = store
            .bounded(async {
                let mut client = store.client().await?;
                schema::migrate(&mut client).await
            })
            .await?;
        if !applied.is_empty() {
            tracing::info!(?applied, url = %redact_url(&settings.url), "database schema migrated");
        }
        store.bounded(store.check_key()).await?;
        Ok(store)
    }

    /// A connection from the pool; [`StoreError::Unavailable`] when none can be had.
    async fn client(&self) -> Result<Object> {
        self.pool.get().await.map_err(error::pool_err)
    }

    /// Runs one operation within the store's deadline.
    async fn bounded<T>(&self, op: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.deadline, op).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer from the database within {} ms",
                self.deadline.as_millis()
            ))),
        }
    }

    /// Refuses a key other than the one the database's secrets are sealed with; notes
    /// the key of a database that has none yet (the first start wins).
    async fn check_key(&self) -> Result<()> {
        let client = self.client().await?;
        let sealed = self.sealer.seal(KEY_CHECK.as_bytes(), KEY_CHECK_TEXT);
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&KEY_CHECK, &sealed],
            )
            .await
            .map_err(db_err)?;
        let row = client
            .query_one("SELECT value FROM meta WHERE key = $1", &[&KEY_CHECK])
            .await
            .map_err(db_err)?;
        let stored: String = row.get(0);
        match self.sealer.open(KEY_CHECK.as_bytes(), &stored) {
            Ok(text) if text == KEY_CHECK_TEXT => Ok(()),
            _ => Err(StoreError::WrongKey),
        }
    }

    fn encode_user(&self, user: &User) -> String {
        encode(&*seal_user(&self.sealer, user))
    }

    fn decode_user(&self, text: &str) -> Result<User> {
        let mut user: User = decode("users", text)?;
        open_user(&self.sealer, &mut user)?;
        Ok(user)
    }

    fn encode_challenge(&self, key: &str, c: &Challenge) -> String {
        encode(&*seal_challenge(&self.sealer, key, c))
    }

    fn decode_challenge(&self, key: &str, text: &str) -> Result<Challenge> {
        let mut c: Challenge = decode("challenges", text)?;
        open_challenge(&self.sealer, key, &mut c)?;
        Ok(c)
    }
}

fn encode<T: Serialize>(value: &T) -> String {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(table: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|source| StoreError::Corrupt { tree: table, source })
}

/// A time or sequence number as a PostgreSQL `bigint` (times past year 292 million
/// saturate).
fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` read back (never negative as written).
fn u(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
