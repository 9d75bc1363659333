//! What is known about one request as it passes the phases, and the request ids.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::Method;

use super::authz::RouteRef;
use super::normalize::Target;
use crate::auth::Verified;
use crate::listener::ConnInfo;

/// Request ids: a random prefix per process and a counter, unique and cheap.
pub struct RequestIds {
    prefix: String,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        Self {
            prefix: format!("{:08x}", rand::random::<u32>()),
            next: AtomicU64::new(1),
        }
    }

    /// The next id: the prefix, `-`, and the counter in lower-case hexadecimal, written
    /// without the formatter (this runs on every request).
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut id = String::with_capacity(self.prefix.len() + 17);
        id.push_str(&self.prefix);
        id.push('-');
        push_hex(&mut id, n);
        id
    }
}

/// Appends `n` in lower-case hexadecimal, without leading zeros (`0` for zero).
fn push_hex(out: &mut String, n: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - (n | 1).leading_zeros()).div_ceil(4);
    for i in (0..digits).rev() {
        out.push(char::from(DIGITS[((n >> (i * 4)) & 0xf) as usize]));
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}

/// What is known about one request as it passes the phases; read once at the end for
/// the audit record and the log line.
pub struct RequestContext {
    pub id: String,
    pub conn: ConnInfo,
    /// The client's address (see [`super::client`]): the connection's, unless a trusted
    /// proxy's `X-Forwarded-For` names another.
    pub client: IpAddr,
    pub started: Instant,
    pub method: Method,
    pub route: Option<RouteRef>,
    /// The verified token of the request, when it has one.
    pub caller: Option<Arc<Verified>>,
    /// A refusal of the request is audited: its canonical path is not under `/auth/`
    /// (whose endpoints audit their own events), or the normalizer refused its target.
    pub proxied: bool,
    /// The canonical path, when it differs from the path as received (rarely: escapes
    /// decoded or re-encoded). Audit records name the path the policy judged.
    pub canonical: Option<String>,
    /// The route that allowed it asks for every request to be audited.
    pub audit_route: bool,
    /// The metrics label of a request no route judged (gateway endpoints).
    pub endpoint: Option<&'static str>,
    /// A CORS preflight the gateway answered (see [`super::cors`]).
    pub preflight: bool,
}

impl RequestContext {
    /// The context of a request that just arrived with `method` on `conn`.
    pub fn new(id: String, conn: ConnInfo, method: Method) -> Self {
        Self {
            id,
            client: conn.client,
            conn,
            started: Instant::now(),
            method,
            route: None,
            caller: None,
            // Until the target is judged canonical: a refused target is audited whatever
            // its raw path looks like.
            proxied: true,
            canonical: None,
            audit_route: false,
            endpoint: None,
            preflight: false,
        }
    }

    /// Notes the canonical target: from here on, refusals of anything but the gateway's
    /// own `/auth/` endpoints are audited, and records name the canonical path.
    pub fn judged(&mut self, target: &Target, raw_path: &str) {
        self.proxied = !target.path.starts_with("/auth/");
        if target.path != raw_path {
            self.canonical = Some(target.path.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_prefix_and_the_counter_in_hex() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            256,
            0xdead_beef,
            u64::from(u32::MAX) + 1,
            u64::MAX,
        ] {
            let mut out = String::new();
            push_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}"));
        }
        let ids = RequestIds::new();
        let (a, b) = (ids.next(), ids.next());
        assert_eq!(a, format!("{}-1", ids.prefix));
        assert_eq!(b, format!("{}-2", ids.prefix));
    }
}
