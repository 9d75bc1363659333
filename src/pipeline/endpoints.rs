//! The gateway's own endpoints, matched on the canonical path before any route:
//! `/healthz`, `/readyz` (see [`super::readiness`]), the JWKS, `/metrics` (loopback clients and admins only, see
//! [`metrics_allowed`]) and the `/auth/` endpoints, which are rate-limited per client IP
//! and then served by [`crate::auth::http::handle`].

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::{Request, Response, StatusCode};

use super::authn::authenticate;
use super::context::RequestContext;
use super::ratelimit::{ip_key, Limiter, Verdict, DEFAULT_MAX_KEYS};
use super::readiness::Readiness;
use crate::auth::service::AuthService;
use crate::clock::SharedClock;
use crate::error::{json_response, GatewayError};
use crate::metrics::Metrics;
use crate::policy::Principal;
use crate::units::Rate;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;

/// One of the gateway's own endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`: the gateway is up.
    Health,
    /// `GET /readyz`: the store and every upstream are reachable.
    Ready,
    /// `/.well-known/jwks.json`: the public keys that verify the gateway's tokens.
    Jwks,
    /// `/.well-known/openid-configuration`: the issuer and where its keys are.
    OpenIdConfiguration,
    /// `/metrics`: Prometheus text.
    Metrics,
    /// Anything under `/auth/`: registration, login, tokens, MFA.
    Auth,
}

impl Endpoint {
    /// The endpoint a canonical path names, if any.
    pub fn of(path: &str) -> Option<Self> {
        match path {
            "/healthz" => Some(Self::Health),
            "/readyz" => Some(Self::Ready),
            "/.well-known/jwks.json" => Some(Self::Jwks),
            "/.well-known/openid-configuration" => Some(Self::OpenIdConfiguration),
            "/metrics" => Some(Self::Metrics),
            p if p.starts_with("/auth/") => Some(Self::Auth),
            _ => None,
        }
    }
}

/// The state of the gateway's own endpoints: the per-IP limiter of `/auth/`, and what
/// the readiness probes last found.
pub struct Endpoints {
    auth_limiter: Limiter<IpAddr>,
    readiness: Arc<Readiness>,
}

impl Endpoints {
    /// `auth_per_ip`: `[rate_limit] auth_per_ip`.
    pub fn new(auth_per_ip: Rate, clock: SharedClock) -> Self {
        Self {
            auth_limiter: Limiter::new(auth_per_ip, DEFAULT_MAX_KEYS, clock),
            readiness: Arc::default(),
        }
    }

    /// What `/readyz` reports, shared with the probe task.
    pub fn readiness(&self) -> &Arc<Readiness> {
        &self.readiness
    }

    /// Drops the clients whose `/auth/` budget is full again.
    pub fn evict_idle(&self) {
        self.auth_limiter.evict_idle();
    }

    /// Answers a request for one of the gateway's own endpoints; `path` is its
    /// canonical path.
    pub async fn serve(
        &self,
        endpoint: Endpoint,
        auth: &AuthService,
        metrics: &Metrics,
        path: &str,
        req: Request<RequestBody>,
        ctx: &mut RequestContext,
    ) -> Result<Response<GatewayBody>, GatewayError> {
        match endpoint {
            Endpoint::Health => {
                ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
                Ok(json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" })))
            }
            Endpoint::Ready => {
                ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
                Ok(self.readiness.answer().await)
            }
            Endpoint::Jwks => {
                ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
                Ok(json_response(StatusCode::OK, &auth.keys().jwks()))
            }
            Endpoint::OpenIdConfiguration => {
                ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
                Ok(json_response(StatusCode::OK, &openid_configuration(auth)))
            }
            Endpoint::Metrics => {
                ctx.endpoint = Some(crate::metrics::ROUTE_GATEWAY);
                let caller = authenticate(auth, req.headers())?;
                let principal = caller.as_ref().map(|c| &*c.principal);
                if !metrics_allowed(ctx.client, ctx.conn.peer.ip(), principal) {
                    return Err(GatewayError::Forbidden {
                        reason: "metrics are served to loopback clients and admins only".into(),
                    });
                }
                let text = metrics.render(auth.event_counts(), auth.audit().stats());
                let mut resp = Response::new(GatewayBody::full(text));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp.headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Ok(resp)
            }
            Endpoint::Auth => {
                ctx.endpoint = Some(crate::metrics::ROUTE_AUTH);
                if let Verdict::Limited { retry_after } = self.auth_limiter.check(&ip_key(ctx.client)) {
                    return Err(GatewayError::RateLimited { retry_after });
                }
                if crate::auth::pages::serves(auth, path, &req) {
                    return crate::auth::pages::serve(auth, path, req, &ctx.id, ctx.client).await;
                }
                crate::auth::http::handle(auth, path, req, &ctx.id, ctx.client).await
            }
        }
    }
}

/// OpenID Connect discovery, kept to what is true: the issuer (the tokens' `iss`), the
/// JWKS, the signing algorithm and public subject ids. The gateway has no authorization
/// or token endpoint in the OAuth sense, so none is listed.
pub fn openid_configuration(auth: &AuthService) -> serde_json::Value {
    let keys = auth.keys();
    serde_json::json!({
        "issuer": keys.issuer(),
        "jwks_uri": format!("{}/.well-known/jwks.json", keys.issuer()),
        "id_token_signing_alg_values_supported": [keys.algorithm()],
        "subject_types_supported": ["public"],
    })
}

/// `GET /metrics` is for the machine itself (a scraper on loopback) and for admins.
/// Loopback means both the client (see [`super::client`]) and the TCP peer: a client
/// behind a proxy on the same machine is not local, and neither is a trusted proxy
/// elsewhere that names a loopback client.
pub fn metrics_allowed(client: IpAddr, peer: IpAddr, principal: Option<&Principal>) -> bool {
    let local = client.to_canonical().is_loopback() && peer.to_canonical().is_loopback();
    local || principal.is_some_and(|p| p.roles.iter().any(|r| r == "admin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Metrics: loopback (IPv4, IPv6 and IPv4-mapped) always; elsewhere only an admin.
    #[test]
    fn metrics_access() {
        let who = |role: &str| Principal {
            id: "u-1".into(),
            email: "a@example.com".into(),
            roles: vec![role.into()],
            mfa: true,
            auth_time: 0,
            attributes: Default::default(),
        };
        for ip in ["127.0.0.1", "::1", "::ffff:127.0.0.1"] {
            assert!(metrics_allowed(ip.parse().unwrap(), ip.parse().unwrap(), None), "{ip}");
        }
        let remote = "192.0.2.7".parse().unwrap();
        let local = "127.0.0.1".parse().unwrap();
        assert!(!metrics_allowed(remote, remote, None));
        assert!(!metrics_allowed(remote, remote, Some(&who("support"))));
        assert!(metrics_allowed(remote, remote, Some(&who("admin"))));
        // Behind a local proxy, the client is remote; a remote proxy's loopback claim is
        // not local either.
        assert!(!metrics_allowed(remote, local, None));
        assert!(!metrics_allowed(local, remote, None));
        assert!(metrics_allowed(remote, local, Some(&who("admin"))));
    }
}
