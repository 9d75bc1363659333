//! Phase 5: forward an [`Authorized`] request to its upstream.
//!
//! Header hygiene is done here and only here, as data (see [`hygiene`]): every client
//! header removed, each with its reason (hop-by-hop headers, RFC 9110 §7.6.1, and those
//! named in `Connection`; `Authorization`; method overrides; path rewrites; client-IP and
//! remote-user claims; httpoxy's `Proxy`; forwarding headers), plus every header that
//! reads as `x-auth-*`. Then the gateway adds its own `X-Forwarded-*` (one
//! `X-Forwarded-For`: the client address [`super::client`] decided; `X-Forwarded-Host`
//! only when the client's host is a valid `host[:port]`),
//! `X-Request-Id`, and the identity headers of the principal the request was authorized
//! for. Bodies stream both ways; the request body is bounded by `max_body`. The
//! connection and the upstream's timeout are [`crate::upstream`]'s.

pub mod cookies;
pub mod hygiene;
pub mod request_fields;
pub mod response_fields;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, Uri, Version};
use http_body_util::Limited;

use super::authz::Authorized;
use crate::auth::identity::IdentityHeaders;
use crate::error::GatewayError;
use crate::upstream::body::GatewayBody;
use crate::upstream::request::RequestBody;
use crate::upstream::{SendError, Upstreams};
use hygiene::{is_stripped, is_valid_host, strip, strip_hop_by_hop};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

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

/// Rewrites a client's request headers into what the upstream receives; `identity` is
/// the identity headers of the principal the request was authorized for (none for an
/// anonymous request).
pub fn rewrite_request_headers(headers: &mut HeaderMap, client: &ClientInfo<'_>, identity: Option<&IdentityHeaders>) {
    strip(headers, is_stripped);
    // Room for the headers added below (and `Host`) at once, rather than growing the
    // map, rehashing it each time, as they go in.
    headers.reserve(8);
    cookies::strip_gateway_cookies(headers);

    headers.insert(X_FORWARDED_FOR, ip_header(client.client_ip));
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if client.tls { "https" } else { "http" }),
    );
    // Only a well-formed host: the client's Host is otherwise passed on verbatim.
    if let Some(host) = client.host.filter(|h| is_valid_host(h.as_bytes())) {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    if let Ok(id) = HeaderValue::from_str(client.request_id) {
        headers.insert(X_REQUEST_ID, id);
    }
    if let Some(identity) = identity {
        identity.insert_into(headers);
    }
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

fn ip_header(ip: IpAddr) -> HeaderValue {
    use std::io::Write;
    // Formatted on the stack: the longest IPv6 text is 45 bytes, an IPv4 address at most
    // 15, its octets written by itoa (the formatter costs more than the rest of this
    // header's work). An IP address always formats as a valid header value.
    let mut buf = [0u8; 64];
    let len = match ip {
        IpAddr::V4(v4) => {
            let (mut len, mut digits) = (0, itoa::Buffer::new());
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let octet = digits.format(octet).as_bytes();
                buf[len..len + octet.len()].copy_from_slice(octet);
                len += octet.len();
            }
            len
        }
        IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    };
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
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
        let (upstream_req, progress, head) = {
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
            rewrite_request_headers(&mut parts.headers, client, caller.as_deref().map(|c| &c.identity));
            if filtered.is_some() {
                response_fields::prepare_request(&mut parts.headers);
            }
            let head = parts.method == http::Method::HEAD;
            // The upstream's own authority, as the client would set it (it is told not to).
            parts.headers.insert(header::HOST, upstream.host().clone());

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
            (Request::from_parts(parts, Limited::new(body, limit)), progress, head)
        };

        let timeout = upstreams.timeout();
        let response = match upstream.send(upstream_req, client.worker, timeout, progress).await {
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
