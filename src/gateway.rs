//! The gateway: its state, the per-request context, and the outer/inner handler.
//!
//! [`Inner::handle_inner`] runs the phases in order and returns a `Result`;
//! [`Inner::handle`] alone turns errors into responses, adds the security headers and
//! logs exactly one line per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::header::{HeaderValue, CACHE_CONTROL};
use http::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::auth::service::{AuthService, Verified};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::error::{json_response, GatewayError};
use crate::listener::{self, ConnInfo, Handler, Lifecycle};
use crate::metrics::Metrics;
use crate::pipeline::authn::authenticate;
use crate::pipeline::authz::{authorize, Judgement, RouteRef};
use crate::pipeline::forward::{forward, ClientInfo, X_REQUEST_ID};
use crate::pipeline::normalize::normalize_request;
use crate::pipeline::ratelimit::{ip_key, Limiter, Verdict, DEFAULT_MAX_KEYS};
use crate::policy::PolicySet;
use crate::source::SourceError;
use crate::tls::TlsError;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use crate::upstream::Upstreams;
use crate::workers::Workers;

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
    #[error(transparent)]
    DataDir(#[from] crate::store::dir::DirError),
    #[error("{0}")]
    Keys(String),
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

/// Request ids: a random prefix per process and a counter, unique and cheap.
struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: format!("{:08x}", rand::random::<u32>()),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!("{}-{:x}", self.prefix, self.next.fetch_add(1, Ordering::Relaxed))
    }
}

/// Everything a request needs, shared by all connections.
pub struct Inner {
    config: Arc<Config>,
    policy: ArcSwap<PolicySet>,
    upstreams: Upstreams,
    ids: RequestIds,
    auth: AuthService,
    auth_limiter: Limiter<std::net::IpAddr>,
    /// Per-route limiters, keyed by route file, name and rate.
    route_limiters: dashmap::DashMap<String, Arc<Limiter<String>>>,
    reloading: tokio::sync::Mutex<()>,
    metrics: Metrics,
}

/// What is known about one request as it passes the phases; read once at the end for
/// the log line.
struct RequestContext {
    id: String,
    conn: ConnInfo,
    started: Instant,
    method: Method,
    route: Option<RouteRef>,
    /// The verified token of the request, when it has one.
    caller: Option<Arc<Verified>>,
    /// A refusal of the request is audited: its canonical path is not under `/auth/`
    /// (whose endpoints audit their own events), or the normalizer refused its target.
    proxied: bool,
    /// The canonical path, when it differs from the path as received (rarely: escapes
    /// decoded or re-encoded). Audit records name the path the policy judged.
    canonical: Option<String>,
    /// The route that allowed it asks for every request to be audited.
    audit_route: bool,
    /// The metrics label of a request no route judged (gateway endpoints).
    endpoint: Option<&'static str>,
}

impl Handler for Inner {
    async fn handle(&self, req: Request<RequestBody>, conn: ConnInfo) -> Response<GatewayBody> {
        let mut ctx = RequestContext {
            id: self.ids.next(),
            conn,
            started: Instant::now(),
            method: req.method().clone(),
            route: None,
            caller: None,
            // Until the target is judged canonical: a refused target is audited whatever
            // its raw path looks like.
            proxied: true,
            canonical: None,
            audit_route: false,
            endpoint: None,
        };
        // A clone of the URI shares its bytes: no copy of the path for the log line.
        let uri = req.uri().clone();
        let raw_path = uri.path();
        let mut resp = match self.handle_inner(req, &mut ctx).await {
            Ok(resp) => {
                if ctx.audit_route {
                    self.audit_request(
                        &ctx,
                        raw_path,
                        crate::audit::EventKind::Request,
                        resp.status().as_u16(),
                        None,
                    );
                }
                resp
            }
            Err(err) => {
                let status = err.status();
                if status.is_server_error() {
                    tracing::warn!(request_id = %ctx.id, error = %err, source = ?std::error::Error::source(&err), "request failed");
                } else {
                    tracing::info!(request_id = %ctx.id, reason = %err, "request refused");
                }
                let reason = err.to_string();
                match &err {
                    GatewayError::RateLimited { .. } | GatewayError::RouteRateLimited { .. } => self.audit_request(
                        &ctx,
                        raw_path,
                        crate::audit::EventKind::RateLimited,
                        status.as_u16(),
                        Some(reason),
                    ),
                    GatewayError::BadTarget(_)
                    | GatewayError::MethodNotAllowed(_)
                    | GatewayError::NoRoute
                    | GatewayError::Unauthenticated { .. }
                    | GatewayError::Forbidden { .. }
                        if ctx.proxied =>
                    {
                        self.audit_request(
                            &ctx,
                            raw_path,
                            crate::audit::EventKind::AccessDenied,
                            status.as_u16(),
                            Some(reason),
                        )
                    }
                    GatewayError::UpstreamUnreachable { upstream, .. }
                    | GatewayError::UpstreamTimeout { upstream, .. } => {
                        let kind = if matches!(err, GatewayError::UpstreamTimeout { .. }) {
                            "timeout"
                        } else {
                            "unreachable"
                        };
                        self.metrics.upstream_error(upstream, kind);
                        self.audit_request(
                            &ctx,
                            raw_path,
                            crate::audit::EventKind::UpstreamError,
                            status.as_u16(),
                            Some(reason),
                        );
                    }
                    _ => {}
                }
                err.to_response(&ctx.id)
            }
        };
        let is_auth = ctx.endpoint == Some(crate::metrics::ROUTE_AUTH) || raw_path.starts_with("/auth/");
        let label = match (&ctx.route, ctx.endpoint) {
            (Some(route), _) => route.name(),
            (None, Some(endpoint)) => endpoint,
            (None, None) => crate::metrics::ROUTE_UNMATCHED,
        };
        self.metrics
            .request(label, resp.status().as_u16(), ctx.started.elapsed());
        security_headers(&mut resp, conn.tls, is_auth);
        if let Ok(id) = HeaderValue::from_str(&ctx.id) {
            resp.headers_mut().insert(X_REQUEST_ID, id);
        }
        tracing::info!(
            request_id = %ctx.id,
            peer = %ctx.conn.peer,
            method = %ctx.method,
            path = ?raw_path,
            route = ctx.route.as_ref().map_or("-", RouteRef::name),
            user = ctx.caller.as_ref().map_or("-", |c| c.principal.id.as_str()),
            status = resp.status().as_u16(),
            micros = ctx.started.elapsed().as_micros() as u64,
            "request"
        );
        resp
    }

    fn panicked(&self, conn: ConnInfo, message: &str) -> Response<GatewayBody> {
        let id = self.ids.next();
        tracing::error!(request_id = %id, peer = %conn.peer, panic = message, "request handler panicked");
        self.metrics.panic();
        let mut resp = GatewayError::Internal("handler panicked".into()).to_response(&id);
        security_headers(&mut resp, conn.tls, false);
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(X_REQUEST_ID, v);
        }
        resp
    }
}

impl Inner {
    /// Drops audit records older than `[audit] retain`; the chain stays verifiable.
    fn prune_audit(&self) {
        if let Some(retain) = self.config.audit_retain {
            let now = self.auth.clock().now_ms();
            let cutoff = now.saturating_sub(u64::try_from(retain.as_millis()).unwrap_or(u64::MAX));
            match crate::audit::prune(self.auth.store(), cutoff) {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "pruned old audit records"),
                Err(e) => tracing::warn!(error = %e, "cannot prune the audit trail"),
            }
        }
    }

    /// Signs a checkpoint of the audit chain's head, when it moved since the last one.
    async fn checkpoint_audit(&self) {
        let now = self.auth.clock().now_ms();
        match crate::audit::sign_checkpoint(self.auth.store(), self.auth.keys(), now).await {
            Ok(Some(c)) => tracing::debug!(seq = c.seq, "audit checkpoint signed"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot sign an audit checkpoint"),
        }
    }

    /// Queues a high-volume audit record about a request. `raw_path` is the path as
    /// received; the record names the canonical one when the target was judged.
    fn audit_request(
        &self,
        ctx: &RequestContext,
        raw_path: &str,
        event: crate::audit::EventKind,
        status: u16,
        reason: Option<String>,
    ) {
        let mut ev = crate::audit::Event::new(event);
        if let Some(c) = &ctx.caller {
            ev.user_id = Some(c.principal.id.clone());
            ev.email = Some(c.principal.email.clone());
        }
        ev.ip = Some(ctx.conn.peer.ip().to_string());
        ev.method = Some(ctx.method.to_string());
        let path = ctx.canonical.as_deref().unwrap_or(raw_path);
        ev.path = Some(path.chars().take(2048).collect());
        ev.route = ctx.route.as_ref().map(|r| r.name().to_owned());
        ev.status = Some(status);
        ev.reason = reason;
        ev.request_id = Some(ctx.id.clone());
        ev.latency_ms = Some(u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX));
        self.auth.audit().record(ev);
    }

    async fn handle_inner(
        &self,
        req: Request<RequestBody>,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        // 1. normalize: everything below sees only the canonical target. A refusal here
        // is audited (ctx.proxied starts true); from here on, refusals of anything but
        // the gateway's own /auth/ endpoints are, classified on the canonical path.
        // hyper holds HTTP/1.1 to the header count (its own 431); HTTP/2 is held here.
        if req.headers().len() > self.config.limits.max_headers {
            return Err(GatewayError::HeadersTooLarge {
                limit: self.config.limits.max_headers,
            });
        }
        let target = normalize_request(req.method(), req.uri(), req.version(), req.headers())?;
        ctx.proxied = !target.path.starts_with("/auth/");
        if target.path != req.uri().path() {
            ctx.canonical = Some(target.path.clone());
        }

        // The gateway's own endpoints, matched on the canonical path.
        if target.path == "/healthz" {
            ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
            return Ok(json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })));
        }
        if target.path == "/.well-known/jwks.json" {
            ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
            return Ok(json_response(StatusCode::OK, &self.auth.keys().jwks()));
        }
        if target.path == "/metrics" {
            ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
            let caller = authenticate(&self.auth, req.headers())?;
            if !metrics_allowed(ctx.conn.peer.ip(), caller.as_ref().map(|c| &*c.principal)) {
                return Err(GatewayError::Forbidden {
                    reason: "metrics are served to loopback clients and admins only".into(),
                });
            }
            let text = self.metrics.render(self.auth.event_counts());
            let mut resp = Response::new(GatewayBody::full(text));
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp.headers_mut()
                .insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            return Ok(resp);
        }
        if target.path.starts_with("/auth/") {
            ctx.endpoint = Some(crate::metrics::ROUTE_AUTH);
            if let Verdict::Limited { retry_after } = self.auth_limiter.check(&ip_key(ctx.conn.peer.ip())) {
                return Err(GatewayError::RateLimited { retry_after });
            }
            return crate::auth::http::handle(&self.auth, &target.path, req, &ctx.id, ctx.conn.peer.ip()).await;
        }

        // 2. authenticate: a bearer token, when there is one, must be valid.
        ctx.caller = authenticate(&self.auth, req.headers())?;

        // 3. authorize with the policy set in force when the request arrived.
        let judgement = authorize(
            self.policy.load_full(),
            req,
            target,
            ctx.caller.clone(),
            self.config.shadow,
        )?;
        ctx.route = Some(judgement.authorized().route_ref());
        ctx.audit_route = judgement.authorized().route().audit;
        let authorized = match judgement {
            Judgement::Allowed(authorized) => authorized,
            Judgement::WouldDeny {
                authorized,
                status,
                reason,
            } => {
                tracing::info!(request_id = %ctx.id, status, reason, "shadow mode: would deny, forwarding");
                self.audit_request(
                    ctx,
                    authorized.request().uri().path(),
                    crate::audit::EventKind::WouldDeny,
                    status,
                    Some(reason),
                );
                authorized
            }
        };

        // 4. rate-limit, per route and per caller.
        let quota = self.route_quota(authorized.route(), authorized.principal(), ctx)?;

        // 5. forward.
        let req = authorized.request();
        let host = req.headers().get(http::header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client = ClientInfo {
            peer_ip: ctx.conn.peer.ip(),
            tls: ctx.conn.tls,
            host: host.as_ref(),
            request_id: &ctx.id,
            worker: ctx.conn.worker,
        };
        let mut resp = forward(&self.upstreams, authorized, &client).await?;
        if let Some((limit, remaining, reset)) = quota {
            let h = resp.headers_mut();
            h.insert("ratelimit-limit", HeaderValue::from(limit));
            h.insert("ratelimit-remaining", HeaderValue::from(remaining));
            h.insert("ratelimit-reset", HeaderValue::from(crate::error::ceil_secs(reset)));
        }
        Ok(resp)
    }

    /// Counts a request against its route's `rate_limit`, per caller (the user id, or
    /// the client IP on public routes). Limiters live across policy reloads for as long
    /// as a route keeps its name and rate.
    fn route_quota(
        &self,
        route: &crate::policy::Route,
        principal: Option<&crate::policy::Principal>,
        ctx: &RequestContext,
    ) -> Result<Option<(u64, u32, std::time::Duration)>, GatewayError> {
        let Some(rate) = route.rate_limit else {
            return Ok(None);
        };
        let id = format!("{}|{}|{rate}", route.file.display(), route.name);
        let limiter = match self.route_limiters.get(&id) {
            Some(l) => l.clone(),
            None => self
                .route_limiters
                .entry(id)
                .or_insert_with(|| Arc::new(Limiter::new(rate, DEFAULT_MAX_KEYS, self.auth.clock().clone())))
                .clone(),
        };
        let caller = match principal {
            Some(p) => format!("user:{}", p.id),
            None => format!("ip:{}", ip_key(ctx.conn.peer.ip())),
        };
        match limiter.check(&caller) {
            Verdict::Allowed { remaining, reset } => Ok(Some((limiter.limit(), remaining, reset))),
            Verdict::Limited { retry_after } => Err(GatewayError::RouteRateLimited {
                retry_after,
                limit: limiter.limit(),
            }),
        }
    }

    /// Re-reads the policies directory. A valid set replaces the one in force in one
    /// atomic swap; an invalid one changes nothing. Both outcomes are audited.
    pub async fn reload_policy(&self) -> Result<crate::policy::reload::Summary, Vec<SourceError>> {
        // One reload at a time, so an older read can never be swapped in after a newer one.
        let _one = self.reloading.lock().await;
        let dir = &self.config.server.policies;
        let before = crate::policy::reload::fingerprint_dir(dir);
        let loaded = PolicySet::load_dir(dir, &self.config);
        if crate::policy::reload::fingerprint_dir(dir) != before {
            // Files changed while being read: what was read may be half of an edit. The
            // change has raised another reload; this one swaps nothing.
            tracing::info!("policy files changed during a reload; waiting for the next one");
            return Err(vec![SourceError::whole_file(dir, "files changed during the reload")]);
        }
        match loaded {
            Ok(new) => {
                let summary = crate::policy::reload::diff(&self.policy.load(), &new);
                self.policy.store(Arc::new(new));
                // Limiters of routes that no longer exist are dropped.
                let live: std::collections::HashSet<String> = self
                    .policy
                    .load()
                    .routes
                    .iter()
                    .filter_map(|r| {
                        r.rate_limit
                            .map(|rate| format!("{}|{}|{rate}", r.file.display(), r.name))
                    })
                    .collect();
                self.route_limiters.retain(|k, _| live.contains(k));
                tracing::info!(%summary, "policy reloaded");
                let mut ev = crate::audit::Event::new(crate::audit::EventKind::PolicyReload);
                ev.reason = Some(summary.to_string());
                self.auth.audit().durable(ev).await;
                Ok(summary)
            }
            Err(errors) => {
                for e in &errors {
                    tracing::error!(error = %e, "policy reload refused; the previous policy stays in force");
                }
                let mut ev = crate::audit::Event::new(crate::audit::EventKind::PolicyReloadFailed);
                let text: Vec<String> = errors.iter().take(5).map(ToString::to_string).collect();
                ev.reason = Some(format!(
                    "{} error(s), previous policy kept: {}",
                    errors.len(),
                    text.join("; ")
                ));
                self.auth.audit().durable(ev).await;
                Err(errors)
            }
        }
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.load_full()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn auth(&self) -> &AuthService {
        &self.auth
    }
}

static HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000");
static NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
static DENY: HeaderValue = HeaderValue::from_static("DENY");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Headers every response carries; an upstream's own values of the same headers are
/// replaced, since the gateway answers for them.
/// `GET /metrics` is for the machine itself (a scraper on loopback) and for admins.
fn metrics_allowed(peer: std::net::IpAddr, principal: Option<&crate::policy::Principal>) -> bool {
    peer.to_canonical().is_loopback() || principal.is_some_and(|p| p.roles.iter().any(|r| r == "admin"))
}

fn security_headers(resp: &mut Response<GatewayBody>, tls: bool, is_auth: bool) {
    let h = resp.headers_mut();
    if tls {
        h.insert(http::header::STRICT_TRANSPORT_SECURITY, HSTS.clone());
    }
    h.insert(http::header::X_CONTENT_TYPE_OPTIONS, NOSNIFF.clone());
    h.insert(http::header::X_FRAME_OPTIONS, DENY.clone());
    if is_auth {
        h.insert(CACHE_CONTROL, NO_STORE.clone());
    }
}

/// Reloads the policy when a file in the policies directory changes (debounced) or on
/// SIGHUP, until shutdown. Reads (access events) are ignored, and a reload whose files
/// are byte for byte those already in force is skipped.
async fn watch_policies(inner: Arc<Inner>, mut stop: watch::Receiver<Lifecycle>) {
    use notify::{EventKind, RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let dir = inner.config.server.policies.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let changed = match res {
            Ok(event) => !matches!(event.kind, EventKind::Access(_)),
            Err(_) => true,
        };
        if changed {
            // A reload already pending covers this change too.
            let _ = tx.try_send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the policies; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the policies; reload with SIGHUP");
            None
        }
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut in_force = crate::policy::reload::fingerprint_dir(&dir);
    loop {
        let forced = tokio::select! {
            Some(()) = rx.recv() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading the policy");
                true
            }
            _ = stop.changed() => return,
        };
        // Editors write in bursts: wait until the directory is quiet.
        tokio::time::sleep(crate::policy::reload::DEBOUNCE).await;
        while rx.try_recv().is_ok() {}
        let now = crate::policy::reload::fingerprint_dir(&dir);
        if now == in_force && !forced {
            continue;
        }
        in_force = now;
        let _ = inner.reload_policy().await;
    }
}

/// A configured gateway, ready to bind its listeners.
pub struct Gateway {
    inner: Arc<Inner>,
    tls: Arc<rustls::ServerConfig>,
    audit_task: tokio::task::JoinHandle<()>,
}

impl Gateway {
    /// Loads policies, TLS material, the database and the signing key; refuses to
    /// build on any error.
    pub fn new(config: Config) -> Result<Self, StartError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Gateway::new`], reading time from `clock` (tests move it by hand).
    pub fn with_clock(config: Config, clock: SharedClock) -> Result<Self, StartError> {
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
        let store = crate::store::Store::open(&config.server.data_dir).map_err(|source| StartError::Store {
            path: config.server.data_dir.join("db"),
            source,
        })?;
        let upstreams = Upstreams::new(&config);
        let config = Arc::new(config);
        let (audit, audit_task) = crate::audit::Audit::start_with_queue(&store, clock.clone(), config.audit_queue)
            .map_err(|source| StartError::Store {
                path: config.server.data_dir.join("db"),
                source,
            })?;
        let auth = AuthService::new(config.clone(), store, clock.clone(), audit).map_err(StartError::Keys)?;
        let auth_limiter = Limiter::new(config.rate_limit.auth_per_ip, DEFAULT_MAX_KEYS, clock);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                policy: ArcSwap::from_pointee(policy),
                upstreams,
                ids: RequestIds::new(),
                metrics: Metrics::default(),
                auth,
                auth_limiter,
                route_limiters: dashmap::DashMap::new(),
                reloading: tokio::sync::Mutex::new(()),
            }),
            tls,
            audit_task,
        })
    }

    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Binds the TLS listener (and the plain one when configured) and starts serving.
    pub async fn start(self) -> Result<RunningGateway, StartError> {
        let config = self.inner.config.clone();
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
        tasks.spawn(listener::serve(
            tls_listener,
            Some(acceptor),
            self.inner.clone(),
            config.limits.clone(),
            workers.clone(),
            stopped.clone(),
        ));
        if let Some(l) = plain_listener {
            tasks.spawn(listener::serve(
                l,
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
        let admin_inner = self.inner.clone();
        let mut admin_stop = stop.subscribe();
        let admin_path = crate::admin::socket_path(&config.server.data_dir);
        tasks.spawn(async move {
            tokio::select! {
                () = crate::admin::serve_socket(admin, admin_inner) => {}
                _ = admin_stop.changed() => {}
            }
            let _ = std::fs::remove_file(admin_path);
        });
        tasks.spawn(watch_policies(self.inner.clone(), stop.subscribe()));
        let sweeper = self.inner.clone();
        let mut sweep_stop = stop.subscribe();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        sweeper.auth.sweep();
                        sweeper.auth_limiter.evict_idle();
                        for l in sweeper.route_limiters.iter() {
                            l.evict_idle();
                        }
                        sweeper.prune_audit();
                    }
                    _ = sweep_stop.changed() => return,
                }
            }
        });
        let anchor = self.inner.clone();
        let mut anchor_stop = stop.subscribe();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(crate::audit::CHECKPOINT_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => anchor.checkpoint_audit().await,
                    _ = anchor_stop.changed() => return,
                }
            }
        });
        // Upstream connections idle too long are closed on a timer, not only when a
        // request next looks at the pool.
        let reaper = self.inner.clone();
        let mut reap_stop = stop.subscribe();
        let reap_every = (config.limits.upstream_idle_timeout / 4)
            .clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(15));
        tasks.spawn(async move {
            let mut every = tokio::time::interval(reap_every);
            loop {
                tokio::select! {
                    _ = every.tick() => reaper.upstreams.reap(),
                    _ = reap_stop.changed() => return,
                }
            }
        });
        tracing::info!(listen = %tls_addr, plain = ?plain_addr, "gateway serving");
        Ok(RunningGateway {
            tls_addr,
            plain_addr,
            inner: self.inner,
            stop,
            tasks,
            _workers: workers,
            audit_task: self.audit_task,
        })
    }
}

/// A gateway that is serving.
pub struct RunningGateway {
    pub tls_addr: SocketAddr,
    pub plain_addr: Option<SocketAddr>,
    inner: Arc<Inner>,
    stop: watch::Sender<Lifecycle>,
    tasks: JoinSet<()>,
    /// Stopped when this is dropped, after the listeners have drained.
    _workers: Arc<Workers>,
    audit_task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    pub fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Stops accepting and lets in-flight requests finish, for at most `[server]
    /// drain_timeout`; then closes the connections still open. Writes what the audit
    /// queue holds and returns.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(Lifecycle::Draining);
        let deadline = self.inner.config.server.drain_timeout;
        let drained = tokio::time::timeout(deadline, async { while self.tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(?deadline, "drain deadline passed: closing the connections still open");
            let _ = self.stop.send(Lifecycle::Closing);
            while self.tasks.join_next().await.is_some() {}
        }
        // Every request has finished: write what the audit queue holds, then stop, and
        // sign the head the trail stopped at.
        self.inner.auth.audit().close().await;
        let _ = self.audit_task.await;
        self.inner.checkpoint_audit().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Principal;

    // Metrics: loopback (IPv4, IPv6 and IPv4-mapped) always; elsewhere only an admin.
    #[test]
    fn metrics_access() {
        let who = |role: &str| Principal {
            id: "u-1".into(),
            email: "a@example.com".into(),
            roles: vec![role.into()],
            mfa: true,
        };
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(metrics_allowed(ip.parse().unwrap(), None), "{ip}");
        }
        let remote = "192.0.2.7".parse().unwrap();
        assert!(!metrics_allowed(remote, None));
        assert!(!metrics_allowed(remote, Some(&who("support"))));
        assert!(metrics_allowed(remote, Some(&who("admin"))));
    }
}
