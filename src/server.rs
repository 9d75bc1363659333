//! Start-up, the tasks that run beside the requests, and shutdown.
//!
//! [`Gateway::new`] loads everything a request needs (policies, TLS material, the
//! database, the signing keys) and refuses to build on any error; [`Gateway::start`]
//! binds the listeners and spawns the tasks: the listeners themselves, the admin socket,
//! the policy watcher, the minutely sweeper (expired state, idle limiter keys, audit
//! retention), the audit checkpoints, the reaper of idle upstream connections, and with
//! `[email.smtp]` the mail sender.
//! [`RunningGateway::shutdown`] drains, then writes and signs what the audit queue holds.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::service::AuthService;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::listener::{self, Lifecycle};
use crate::pipeline::Pipeline;
use crate::policy::PolicySet;
use crate::source::SourceError;
use crate::tls::TlsError;
use crate::upstream::Upstreams;
use crate::workers::Workers;

mod tasks;
use tasks::{
    checkpoint_audit, spawn_admin, spawn_checkpoints, spawn_feed, spawn_mail_sender, spawn_reaper, spawn_sweeper,
};

/// Why the gateway did not start. Each variant names the file or address at fault.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] SourceError),
    #[error("{}", join_lines(.0))]
    Policy(Vec<SourceError>),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{}: {source}", .path.display())]
    Store {
        path: std::path::PathBuf,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("[store] {url}: {source}")]
    SharedStore {
        /// Without its password.
        url: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error(transparent)]
    DataDir(#[from] crate::store::dir::DirError),
    #[error("{0}")]
    Keys(String),
    #[error("{0}")]
    Mail(String),
    #[error("{0}")]
    Upstream(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

fn join_lines(errors: &[SourceError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// A configured gateway, ready to bind its listeners.
pub struct Gateway {
    inner: Arc<Pipeline>,
    tls: Arc<rustls::ServerConfig>,
    audit_task: tokio::task::JoinHandle<()>,
    /// The TLS mode the mail sender connects with, with `[email.smtp]`.
    smtp: Option<lettre::transport::smtp::client::Tls>,
}

impl Gateway {
    /// Loads policies, TLS material, the database and the signing key; refuses to
    /// build on any error.
    pub async fn new(config: Config) -> Result<Self, StartError> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Gateway::new`], reading time from `clock` (tests move it by hand).
    pub async fn with_clock(config: Config, clock: SharedClock) -> Result<Self, StartError> {
        if let Some(missing) = config.email.smtp.as_ref().and_then(|s| s.missing_password.clone()) {
            return Err(StartError::Mail(missing));
        }
        match crate::store::dir::secure(&config.server.data_dir)? {
            0 => {}
            n => tracing::warn!(
                dir = %config.server.data_dir.display(),
                changed = n,
                "the data directory was readable by other users; made it private"
            ),
        }
        let policy = PolicySet::load_dir(&config.server.policies, &config).map_err(StartError::Policy)?;
        let tls = crate::tls::server_config(&config)?;
        let store = open_store(&config).await?;
        let upstreams = Upstreams::new(&config).map_err(StartError::Upstream)?;
        let smtp = match &config.email.smtp {
            Some(smtp) => {
                Some(crate::mail::sender::tls(smtp).map_err(|e| StartError::Mail(format!("[email.smtp]: {e}")))?)
            }
            None => None,
        };
        let config = Arc::new(config);
        let (audit, audit_task) = crate::audit::Audit::start_with_queue(&store, clock.clone(), config.audit_queue)
            .map_err(|source| StartError::Store {
                path: config.server.data_dir.join("db"),
                source,
            })?;
        let auth = AuthService::new(config.clone(), store, clock.clone(), audit)
            .await
            .map_err(StartError::Keys)?;
        Ok(Self {
            inner: Arc::new(Pipeline::new(config, policy, upstreams, Arc::new(auth), clock)),
            tls,
            audit_task,
            smtp,
        })
    }

    pub fn inner(&self) -> &Arc<Pipeline> {
        &self.inner
    }

    /// Binds the TLS listener (and the plain one when configured) and starts serving.
    pub async fn start(self) -> Result<RunningGateway, StartError> {
        let config = self.inner.config().clone();
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let tls_listener = bind(config.server.listen).await?;
        let plain_listener = match config.server.plain_listen {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let tls_addr = tls_listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.listen,
            source,
        })?;
        let plain_addr = plain_listener.as_ref().and_then(|l| l.local_addr().ok());
        let workers = Arc::new(
            Workers::start(config.server.workers, "portcullis-worker").map_err(|source| StartError::Bind {
                addr: tls_addr,
                source: std::io::Error::new(source.kind(), format!("cannot start the connection workers: {source}")),
            })?,
        );
        let (stop, stopped) = watch::channel(Lifecycle::Serving);
        let mut tasks = JoinSet::new();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.clone());
        let proxy_protocol = config
            .server
            .proxy_protocol
            .then(|| Arc::new(config.server.trusted_proxies.clone()));
        tasks.spawn(listener::serve(
            tls_listener,
            Some(acceptor),
            proxy_protocol,
            self.inner.clone(),
            config.limits.clone(),
            workers.clone(),
            stopped.clone(),
        ));
        if let Some(l) = plain_listener {
            tasks.spawn(listener::serve(
                l,
                None,
                None,
                self.inner.clone(),
                config.limits.clone(),
                workers.clone(),
                stopped,
            ));
        }
        let admin = crate::admin::bind_socket(&config.server.data_dir).map_err(|source| StartError::Bind {
            addr: tls_addr,
            source: std::io::Error::new(
                source.kind(),
                format!("admin socket in {}: {source}", config.server.data_dir.display()),
            ),
        })?;
        spawn_admin(&mut tasks, admin, &self.inner, &config, &stop);
        let watched = self.inner.clone();
        tasks.spawn(crate::policy::reload::watch(
            config.server.policies.clone(),
            stop.subscribe(),
            move || {
                let watched = watched.clone();
                async move {
                    let _ = watched.reload_policy().await;
                }
            },
        ));
        crate::policy::reload::report_warnings(&self.inner.policy(), self.inner.auth().audit()).await;
        spawn_sweeper(&mut tasks, &self.inner, &stop);
        spawn_checkpoints(&mut tasks, &self.inner, &stop);
        spawn_reaper(&mut tasks, &self.inner, &stop);
        spawn_feed(&mut tasks, &self.inner, &stop);
        let upstreams = config.upstreams.values().cloned().collect();
        let (readiness, auth) = (self.inner.readiness().clone(), self.inner.auth_shared().clone());
        tasks.spawn(crate::pipeline::readiness::run(
            readiness,
            auth,
            upstreams,
            stop.subscribe(),
        ));
        if let Some(tls) = self.smtp {
            spawn_mail_sender(&mut tasks, &self.inner, tls, &stop);
        }
        tracing::info!(listen = %tls_addr, plain = ?plain_addr, "gateway serving");
        Ok(RunningGateway {
            tls_addr,
            plain_addr,
            inner: self.inner,
            stop,
            tasks,
            workers,
            audit_task: self.audit_task,
        })
    }
}

/// The store `[store]` names: the embedded sled database in `data_dir`, or the
/// PostgreSQL database every gateway of the deployment shares (its secret key from
/// `PORTCULLIS_SECRET_KEY` only, its password from `PORTCULLIS_STORE_PASSWORD`).
pub async fn open_store(config: &Config) -> Result<crate::store::Store, StartError> {
    match &config.store {
        crate::config::store::StoreConfig::Sled => {
            crate::store::Store::open(&config.server.data_dir).map_err(|source| StartError::Store {
                path: config.server.data_dir.join("db"),
                source,
            })
        }
        crate::config::store::StoreConfig::Postgres(pg) => {
            let url = crate::store::postgres::redact_url(&pg.url);
            let shared = |source| StartError::SharedStore {
                url: url.clone(),
                source,
            };
            let key =
                crate::store::postgres::secret_key(std::env::var_os(crate::store::sealed::KEY_ENV)).map_err(shared)?;
            let backend = crate::store::postgres::PgStore::connect(&pg.settings(), key)
                .await
                .map_err(shared)?;
            Ok(crate::store::Store::new(Arc::new(backend)))
        }
    }
}

/// A gateway that is serving.
pub struct RunningGateway {
    pub tls_addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    inner: Arc<Pipeline>,
    stop: watch::Sender<Lifecycle>,
    tasks: JoinSet<()>,
    /// Stopped after the listeners have drained.
    workers: Arc<Workers>,
    audit_task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    pub fn inner(&self) -> &Arc<Pipeline> {
        &self.inner
    }

    /// Stops accepting and lets in-flight requests finish, for at most `[server]
    /// drain_timeout`; then closes the connections still open. Writes what the audit
    /// queue holds and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(Lifecycle::Draining);
        let deadline = self.inner.config().server.drain_timeout;
        let drained = tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(?deadline, "drain deadline passed: closing the connections still open");
            let _ = self.stop.send(Lifecycle::Closing);
            while self.tasks.join_next().await.is_some() {}
        }
        // Every request has finished: keep when sessions were last used, write what the
        // audit queue holds, then stop, and sign the head the trail stopped at.
        if let Err(e) = self.inner.auth().save_activity().await {
            tracing::warn!(error = %e, "saving session activity failed");
        }
        self.inner.auth().audit().close().await;
        let _ = self.audit_task.await;
        checkpoint_audit(self.inner.auth()).await;
        // The worker threads end with their runtimes; when this returns, nothing of this
        // gateway holds the store, and another may open the same data directory.
        let workers = self.workers.clone();
        if tokio::task::spawn_blocking(move || workers.stop()).await.is_err() {
            tracing::error!("stopping the workers failed");
        }
    }
}
