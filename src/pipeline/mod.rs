//! The request path: the phases of a request, one module each, and the two handlers
//! that run them.
//!
//! `Pipeline::handle_inner` reads as the phases in order, one call each:
//! [`normalize`], the gateway's own [`endpoints`], [`authn`], [`authz`], [`ratelimit`],
//! [`forward`](mod@forward). It returns a `Result`; the outer handler
//! (`Handler::handle`) alone turns an error into a response, writes at most one audit
//! record per request (chosen by an exhaustive match over the error), counts the
//! request in the metrics, adds the security headers and logs exactly one line.
//! [`context`] holds what the phases learn about the request on the way.
//!
//! **The request's future is kept small.** It is written in full, once per request,
//! into the connection's slot for the request in flight, and each level's future is
//! moved whole into the one above it when first polled; with many connections busy those
//! slots are not in the CPU's cache, so every byte of the future costs. Three rules keep
//! it lean:
//! - a function on the proxied path that takes the request by value is a plain `fn`
//!   returning an `async move` block, not an `async fn`: an `async fn` copies its
//!   arguments into locals of its future, and a request borrowed before it is moved on
//!   keeps both slots (344 bytes each) for the life of the future;
//! - what is prepared before the first `.await` (destructuring, the inner future) is
//!   done before the block, so the block holds the pieces rather than the whole;
//! - what a block captures it keeps for its whole life, even once moved on: the request
//!   stays boxed from [`Handler::handle`] through authorization to the forward phase,
//!   which takes it apart in a block that ends with the upstream request made, so no
//!   level holds its 344 bytes (or its parts) while the upstream answers.
//!
//! Rarer paths (forward-auth, the gateway's endpoints, field lists) are boxed where they
//! are awaited, so a proxied request's future does not carry them.

mod audited;
pub mod authn;
pub mod authz;
pub mod client;
pub mod context;
pub mod cors;
pub mod endpoints;
pub mod forward;
pub mod forward_auth;
pub mod normalize;
pub mod ratelimit;
pub mod readiness;

use std::borrow::Borrow;
use std::future::Future;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use http::{Request, Response};

use crate::audit::EventKind;
use crate::auth::service::AuthService;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::GatewayError;
use crate::listener::stamp::Stamp;
use crate::listener::{ConnInfo, Handler};
use crate::metrics::Metrics;
use crate::policy::PolicySet;
use crate::source::SourceError;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use crate::upstream::Upstreams;
use audited::{audit_fields, refusal_event};
use authz::{authorize, Judgement, RouteRef};
use context::{RequestContext, RequestIds};
use endpoints::{Endpoint, Endpoints};
use forward::{forward, ClientInfo};
use ratelimit::RouteLimits;

/// Everything a request needs, shared by all connections.
pub struct Pipeline {
    config: Arc<Config>,
    policy: ArcSwap<PolicySet>,
    upstreams: Upstreams,
    ids: RequestIds,
    auth: Arc<AuthService>,
    endpoints: Endpoints,
    route_limits: RouteLimits,
    reloading: tokio::sync::Mutex<()>,
    metrics: Metrics,
    cors: Option<cors::CorsPolicy>,
}

impl Pipeline {
    /// A pipeline serving `policy` until the next reload.
    pub fn new(
        config: Arc<Config>,
        policy: PolicySet,
        upstreams: Upstreams,
        auth: Arc<AuthService>,
        clock: SharedClock,
    ) -> Self {
        Self {
            endpoints: Endpoints::new(config.rate_limit.auth_per_ip, clock.clone()),
            // Gateways sharing a store share its route budgets; sled's gateway keeps its own.
            route_limits: RouteLimits::new(clock, Some(auth.store().clone()).filter(|s| s.sled().is_none())),
            cors: cors::CorsPolicy::of(&config),
            config,
            policy: ArcSwap::from_pointee(policy),
            upstreams,
            ids: RequestIds::new(),
            auth,
            reloading: tokio::sync::Mutex::new(()),
            metrics: Metrics::default(),
        }
    }

    #[expect(clippy::manual_async_fn, reason = "an `async fn` keeps its arguments twice")]
    fn handle_inner<'a>(
        &'a self,
        req: Box<Request<RequestBody>>,
        ctx: &'a mut RequestContext,
    ) -> impl Future<Output = Result<Response<GatewayBody>, GatewayError>> + Send + 'a {
        async move {
            // 1. normalize: everything below sees only the canonical target.
            let target = normalize::normalize(&req, self.config.limits.max_headers)?;
            ctx.judged(&target, req.uri().path());

            // A CORS preflight is the gateway's to answer, before any token or route limit.
            if let Some(answer) = cors::preflight(self.cors.as_ref(), &req, &target.path, &self.policy, ctx) {
                return answer;
            }

            // Forward-auth: a decision for another proxy, nothing forwarded. (This future and
            // the endpoints' are boxed, so a proxied request's future does not carry them.)
            if target.path == forward_auth::PATH {
                return Box::pin(self.forward_auth(*req, ctx)).await;
            }

            // The gateway's own endpoints, matched on the canonical path.
            if let Some(endpoint) = Endpoint::of(&target.path) {
                let (auth, metrics) = (&*self.auth, &self.metrics);
                let serve = self.endpoints.serve(endpoint, auth, metrics, &target.path, *req, ctx);
                return Box::pin(serve).await;
            }

            // 2. authenticate: a bearer token, when there is one, must be valid; without
            // one, the session cookie, whose unsafe requests must pass the CSRF check.
            let (caller, by_cookie) = authn::credentials(&self.auth, req.headers()).await?;
            ctx.caller = caller;
            if by_cookie {
                crate::auth::browser::check(req.method(), req.headers(), &self.config.server.public_url)?;
            }
            // A browser's anonymous GET is sent to log in rather than answered 401.
            let login = (ctx.caller.is_none() && authn::wants_login_page(&req))
                .then(|| crate::auth::browser::login_location(&target.path_and_query_under("")));

            // 3. authorize with the policy set in force when the request arrived (the time
            // is read only for a caller: `mfa_max_age` is held to it).
            let now = if ctx.caller.is_some() {
                self.auth.clock().now()
            } else {
                0
            };
            let judgement = match authorize(
                self.policy.load_full(),
                req,
                target,
                ctx.caller.clone(),
                now,
                self.config.shadow,
            ) {
                Err(GatewayError::Unauthenticated { .. }) if login.is_some() => {
                    return Ok(authn::login_redirect(login.as_deref().unwrap_or("/auth/login")));
                }
                judged => judged?,
            };
            // 4. rate-limit, per route and per caller; 5. forward. `authorized` lives
            // only in this block, which makes the forwarding future: its slot is not
            // held beside that future while the upstream answers.
            let (host, client);
            let (forwarding, quota) = {
                let authorized = self.admit(judgement, ctx);
                let quota = self
                    .route_limits
                    .check(authorized.route(), authorized.principal(), ctx.client)
                    .await?;
                host = forward::client_host(authorized.request());
                client = ClientInfo {
                    client_ip: ctx.client,
                    tls: ctx.conn.tls,
                    host: host.as_ref(),
                    request_id: &ctx.id,
                    worker: ctx.conn.worker,
                };
                (forward(&self.upstreams, authorized, &client), quota)
            };
            let mut resp = forwarding.await?;
            if let Some(quota) = quota {
                quota.write(resp.headers_mut());
            }
            Ok(resp)
        }
    }

    /// Notes the route that let a request through, and audits a shadowed refusal.
    fn admit<B, R: Borrow<Request<B>>>(
        &self,
        judgement: Judgement<R>,
        ctx: &mut RequestContext,
    ) -> authz::Authorized<R> {
        ctx.route = Some(judgement.authorized().route_ref());
        ctx.audit_route = judgement.authorized().route().audit;
        match judgement {
            Judgement::Allowed(authorized) => authorized,
            Judgement::WouldDeny {
                authorized,
                status,
                reason,
            } => {
                tracing::info!(request_id = %ctx.id, status, reason, "shadow mode: would deny, forwarding");
                let path = authorized.request().borrow().uri().path();
                self.audit_request(ctx, path, EventKind::WouldDeny, status, Some(reason));
                authorized
            }
        }
    }

    /// Queues a high-volume audit record about a request (see [`audit_fields`]).
    fn audit_request(
        &self,
        ctx: &RequestContext,
        raw_path: &str,
        event: EventKind,
        status: u16,
        reason: Option<String>,
    ) {
        let fields = audit_fields(ctx, raw_path, event, status, reason);
        self.auth.audit().record_fields(fields);
    }

    /// Re-reads the policies directory (see [`crate::policy::reload::reload`]); the
    /// limiters of routes that are gone are dropped.
    pub async fn reload_policy(&self) -> Result<crate::policy::reload::Summary, Vec<SourceError>> {
        crate::policy::reload::reload(&self.policy, &self.config, self.auth.audit(), &self.reloading, |set| {
            self.route_limits.prune(set)
        })
        .await
    }

    /// Drops the rate-limit state of callers whose budget is full again.
    pub fn evict_idle(&self) {
        self.endpoints.evict_idle();
        self.route_limits.evict_idle();
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

    /// The identity service, shared with the tasks that run beside the requests.
    pub fn auth_shared(&self) -> &Arc<AuthService> {
        &self.auth
    }

    pub fn upstreams(&self) -> &Upstreams {
        &self.upstreams
    }

    /// What `/readyz` reports, shared with the probe task ([`readiness::run`]).
    pub fn readiness(&self) -> &Arc<readiness::Readiness> {
        self.endpoints.readiness()
    }
}

impl Handler for Pipeline {
    fn handle(
        &self,
        req: Request<RequestBody>,
        conn: ConnInfo,
    ) -> impl Future<Output = (Response<GatewayBody>, Stamp)> + Send {
        // Boxed until the forward phase takes it apart: a future keeps what it captures
        // for its whole life, so this one, `handle_inner`'s and `forward`'s would each
        // keep the request's 344 bytes while the upstream answers.
        let req = Box::new(req);
        async move {
            let mut ctx = RequestContext::new(self.ids.next(), conn, req.method().clone());
            ctx.client = client::client_address(&self.config.server.trusted_proxies, conn.client, req.headers());
            // A clone of the URI shares its bytes: no copy of the path for the log line.
            let uri = req.uri().clone();
            let raw_path = uri.path();
            let origin = cors::origin(self.cors.as_ref(), req.headers());
            // Audited after the match, which then holds no `.await`: the result it takes
            // apart is not kept beside the audit's future.
            let (mut resp, audit) = match self.handle_inner(req, &mut ctx).await {
                Ok(resp) => (resp, ctx.audit_route),
                Err(err) => {
                    let status = err.status();
                    if status.is_server_error() {
                        tracing::warn!(request_id = %ctx.id, error = %crate::error_chain::chain(&err), "request failed");
                    } else {
                        tracing::info!(request_id = %ctx.id, reason = %err, "request refused");
                    }
                    if let GatewayError::UpstreamTimeout { upstream, .. } = &err {
                        self.metrics.upstream_error(upstream, "timeout");
                    } else if let GatewayError::UpstreamUnreachable { upstream, .. } = &err {
                        self.metrics.upstream_error(upstream, "unreachable");
                    }
                    if let Some(event) = refusal_event(&err, ctx.proxied) {
                        self.audit_request(&ctx, raw_path, event, status.as_u16(), Some(err.to_string()));
                    }
                    (err.to_response(&ctx.id), false)
                }
            };
            if audit {
                // Not dropped for want of room: the response waits for it instead.
                let fields = audit_fields(&ctx, raw_path, EventKind::Request, resp.status().as_u16(), None);
                self.auth.audit().record_waiting(fields).await;
            }
            let is_auth = (ctx.endpoint == Some(crate::metrics::ROUTE_AUTH) || raw_path.starts_with("/auth/"))
                && raw_path != crate::auth::browser::STYLESHEET;
            let label = match (&ctx.route, ctx.endpoint) {
                // Forward-auth decisions are counted apart from the requests of their routes.
                (_, Some(endpoint @ crate::metrics::ROUTE_FORWARD_AUTH)) => endpoint,
                (Some(route), _) => route.name(),
                (None, Some(endpoint)) => endpoint,
                (None, None) => crate::metrics::ROUTE_UNMATCHED,
            };
            self.metrics
                .request(label, resp.status().as_u16(), ctx.started.elapsed());
            cors::finish(self.cors.as_ref(), &mut resp, origin.as_ref(), &ctx);
            tracing::info!(
                request_id = %ctx.id,
                client = %ctx.client,
                peer = %ctx.conn.peer,
                method = %ctx.method,
                path = ?raw_path,
                route = ctx.route.as_ref().map_or("-", RouteRef::name),
                user = ctx.caller.as_ref().map_or("-", |c| c.principal.id.as_str()),
                status = resp.status().as_u16(),
                micros = ctx.started.elapsed().as_micros() as u64,
                "request"
            );
            // The security headers and the request's id go on as the response is sent.
            (resp, Stamp::new(security_headers(conn.tls, is_auth), ctx.id))
        }
    }

    fn panicked(&self, conn: ConnInfo, message: &str) -> (Response<GatewayBody>, Stamp) {
        let id = self.ids.next();
        tracing::error!(request_id = %id, peer = %conn.peer, client = %conn.client, panic = message, "request handler panicked");
        self.metrics.panic();
        let resp = GatewayError::Internal("handler panicked".into()).to_response(&id);
        (resp, Stamp::new(security_headers(conn.tls, false), id))
    }
}

const HSTS: (HeaderName, HeaderValue) = (
    http::header::STRICT_TRANSPORT_SECURITY,
    HeaderValue::from_static("max-age=31536000"),
);
const NOSNIFF: (HeaderName, HeaderValue) = (
    http::header::X_CONTENT_TYPE_OPTIONS,
    HeaderValue::from_static("nosniff"),
);
const DENY: (HeaderName, HeaderValue) = (http::header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
const NO_STORE: (HeaderName, HeaderValue) = (CACHE_CONTROL, HeaderValue::from_static("no-store"));

/// Headers every response carries: `Strict-Transport-Security` over TLS, `nosniff`,
/// `X-Frame-Options: DENY`, and `Cache-Control: no-store` for `/auth/` answers, which
/// are never cached. They replace an upstream's own values of the same headers, since
/// the gateway answers for them.
fn security_headers(tls: bool, is_auth: bool) -> &'static [(HeaderName, HeaderValue)] {
    static PLAIN: [(HeaderName, HeaderValue); 2] = [NOSNIFF, DENY];
    static PLAIN_AUTH: [(HeaderName, HeaderValue); 3] = [NOSNIFF, DENY, NO_STORE];
    static TLS: [(HeaderName, HeaderValue); 3] = [HSTS, NOSNIFF, DENY];
    static TLS_AUTH: [(HeaderName, HeaderValue); 4] = [HSTS, NOSNIFF, DENY, NO_STORE];
    match (tls, is_auth) {
        (false, false) => &PLAIN,
        (false, true) => &PLAIN_AUTH,
        (true, false) => &TLS,
        (true, true) => &TLS_AUTH,
    }
}

#[cfg(test)]
mod tests;
