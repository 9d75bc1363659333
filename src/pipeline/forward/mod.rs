//! Phase 5: forward an [`Authorized`] request to its upstream.
//!
//! Header hygiene is done here and only here, as data (see [`hygiene`]): every client
//! header removed, each with its reason (hop-by-hop headers, RFC 9110 §7.6.1, and those
//! named in `Connection`; `Authorization`; method overrides; path rewrites; client-IP and
//! remote-user claims; httpoxy's `Proxy`; forwarding headers), plus every header that
//! reads as `x-auth-*`. Then the gateway adds its own `Host`, `X-Forwarded-*` (one
//! `X-Forwarded-For`: the client address [`super::client`] decided; `X-Forwarded-Host`
//! only when the client's host is a valid `host[:port]`), `X-Request-Id`, and the
//! identity headers of the principal the request was authorized for: beside the
//! request, not in its header map (see [`forwarded`]). Bodies stream both ways; the request body is bounded by `max_body`. The
//! connection and the upstream's timeout are [`crate::upstream`]'s.

pub mod cookies;
pub mod forwarded;
pub mod hygiene;
pub mod request_fields;
pub mod response_fields;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::Limited;

use super::authz::Authorized;
use crate::auth::identity::IdentityHeaders;
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use crate::upstream::{SendError, Upstreams};
pub use forwarded::Forwarded;
use hygiene::{is_stripped, strip, strip_hop_by_hop};

/// What the gateway knows about the client connection, for the forwarding headers.
#[derive(Debug, Clone)]
pub struct ClientInfo<'a> {
    /// The client's address (see [`super::client`]): the one `X-Forwarded-For` names.
    pub client_ip: IpAddr,
    pub tls: bool,
    /// The host the client asked for (`Host` or `:authority`).
    pub host: Option<&'a HeaderValue>,
    pub request_id: &'a str,
    /// The connection worker the request runs on: it picks that worker's upstream pool.
    pub worker: usize,
}

/// Rewrites a client's request headers into what the upstream receives: strips them
/// (see [`hygiene`]) and returns the fields the gateway adds in place of those removed
/// ([`Forwarded`]), which go beside the request rather than into `headers`.
/// `upstream_host` is the upstream's `Host`; `identity` the identity headers of the
/// principal the request was authorized for (none for an anonymous request).
pub fn rewrite_request_headers<'a>(
    headers: &mut HeaderMap,
    client: &ClientInfo<'a>,
    upstream_host: &'a HeaderValue,
    identity: Option<&'a IdentityHeaders>,
) -> Forwarded<'a> {
    strip(headers, is_stripped);
    cookies::strip_gateway_cookies(headers);
    Forwarded::new(client, upstream_host, identity)
}

/// The host the client asked for: `Host`, or the authority of an absolute-form target
/// (HTTP/2 `:authority`).
pub fn client_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

/// Sends an authorized request upstream and returns the upstream's response, with its
/// hop-by-hop headers removed and its body streamed.
///
/// The request comes boxed, and is taken apart in a block inside the future, which ends
/// with the upstream request made: so the future holds neither the request nor its
/// parts beside the upstream's answer (see [`crate::pipeline`]).
pub fn forward<'a>(
    upstreams: &'a Upstreams,
    authorized: Authorized<Box<Request<RequestBody>>>,
    client: &'a ClientInfo<'a>,
) -> impl Future<Output = Result<Response<GatewayBody>, GatewayError>> + Send + 'a {
    let (req, target, caller, route) = authorized.into_parts();
    async move {
        let name = &route.route().upstream;
        let upstream = upstreams.get(name).ok_or_else(|| {
            // Policies are validated against the configured upstreams; reaching this is a bug.
            GatewayError::Internal(format!("route names unknown upstream {name:?}").into())
        })?;

        let max_body = upstreams.max_body();
        let filtered = route.route().response_fields.as_deref();
        let (upstream_req, added, progress, head) = {
            let (mut parts, mut body) = (*req).into_parts();
            if let Some(len) = parts.headers.get(header::CONTENT_LENGTH) {
                let len = len.to_str().ok().and_then(|s| s.parse::<u64>().ok());
                if len.is_some_and(|n| n > max_body) {
                    return Err(GatewayError::PayloadTooLarge { limit: max_body });
                }
            }
            // A field list reads the whole body and checks it before anything goes
            // upstream. (The field lists' futures are boxed, here and below: a route
            // without them keeps its request's future small.)
            if let Some(fields) = &route.route().request_fields {
                Box::pin(request_fields::enforce(&mut parts.headers, &mut body, fields, max_body)).await?;
            }
            let progress = body.progress();
            let added = rewrite_request_headers(
                &mut parts.headers,
                client,
                upstream.host(),
                caller.as_deref().map(|c| &c.identity),
            );
            if filtered.is_some() {
                response_fields::prepare_request(&mut parts.headers);
            }
            let head = parts.method == http::Method::HEAD;

            let path = match parts.uri.path_and_query() {
                // The canonical target as it came (no prefix to add): its bytes are shared.
                Some(received) if upstream.base_path().is_empty() && target.is_verbatim(received) => received.clone(),
                _ => http::uri::PathAndQuery::try_from(target.path_and_query_under(upstream.base_path()))
                    .map_err(|e| GatewayError::Internal(e.into()))?,
            };
            // Origin form: the connection already is to the upstream.
            let mut uri = http::uri::Parts::default();
            uri.path_and_query = Some(path);
            parts.uri = Uri::from_parts(uri).map_err(|e| GatewayError::Internal(e.into()))?;
            parts.version = Version::HTTP_11;
            let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
            (
                Request::from_parts(parts, Limited::new(body, limit)),
                added,
                progress,
                head,
            )
        };

        let timeout = upstreams.timeout();
        let response = match upstream
            .send(upstream_req, Some(&added), client.worker, timeout, progress)
            .await
        {
            Ok(r) => r,
            Err(SendError::TimedOut) => {
                return Err(GatewayError::UpstreamTimeout {
                    upstream: name.clone(),
                    timeout,
                })
            }
            Err(SendError::Failed(e)) => {
                // The client's body failing (too long, too slow, malformed) is the client's
                // fault, not the upstream's.
                if let Some(client_fault) = crate::error::client_body_error(&*e, max_body) {
                    return Err(client_fault);
                }
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: name.clone(),
                    source: e,
                });
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(fields) = filtered {
            let allowed = response_fields::Allowed::new(fields, caller.as_deref().map(|c| &*c.principal));
            let from = response_fields::Upstream {
                name,
                limit: upstreams.max_filtered_response(),
                timeout,
                head,
            };
            return Box::pin(response_fields::filter_response(parts, body, &allowed, &from)).await;
        }
        Ok(Response::from_parts(parts, GatewayBody::Upstream(body)))
    }
}
