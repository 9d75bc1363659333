//! The client's address, decided once per request: what the per-IP rate limits, the
//! `/auth/` limiter, lockout evidence, every audit record's `ip`, the log line, the
//! `/metrics` loopback rule and the forwarded `X-Forwarded-For` use.
//!
//! The connection's address is the TCP peer, or the source a PROXY header gave (see
//! [`crate::listener`]). When that address is in `[server] trusted_proxies`, the
//! request's `X-Forwarded-For` headers (all of them, in order, comma lists) are read
//! from the right: the client is the right-most address that is not itself trusted (or
//! the left-most, when every one is). Each trusted hop appends the address it saw, so
//! whatever a client writes into the header itself stays to the left of its real
//! address and is never read. When the header is missing, too long, or an address read
//! on the way does not parse, the client is the connection's address (fail safe: a
//! claim that cannot be read is not believed). From a peer not trusted the headers are
//! ignored. `Forwarded` (RFC 7239) is not read; both are stripped before forwarding.

use std::net::IpAddr;

use http::header::HeaderMap;
use http::HeaderName;

use crate::config::TrustedProxies;

/// The most `X-Forwarded-For` entries read, from the right: a longer chain of trusted
/// hops is not believed.
pub const MAX_FORWARDED_HOPS: usize = 32;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client of a request that arrived on a connection from `conn_client` (the TCP
/// peer, or the PROXY header's source) with `headers`.
pub fn client_address(trusted: &TrustedProxies, conn_client: IpAddr, headers: &HeaderMap) -> IpAddr {
    // The default (no trusted proxy) costs one comparison: no header is read.
    if trusted.is_empty() || !trusted.contains(conn_client) {
        return conn_client;
    }
    match forwarded_client(trusted, headers) {
        Ok(ip) => ip,
        Err(why) => {
            tracing::debug!(peer = %conn_client, why, "X-Forwarded-For from a trusted proxy not used");
            conn_client
        }
    }
}

/// The right-most untrusted address of the `X-Forwarded-For` headers (the left-most
/// when every one is trusted), or why there is none.
fn forwarded_client(trusted: &TrustedProxies, headers: &HeaderMap) -> Result<IpAddr, &'static str> {
    let mut read = 0;
    let mut leftmost = None;
    // Headers are joined in order: the last header's last entry is the nearest hop.
    for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
        let text = value.to_str().map_err(|_| "not ASCII")?;
        for entry in text.rsplit(',') {
            let entry = entry.trim();
            if entry.is_empty() {
                // `a,,b` or a trailing comma: no hop wrote that.
                return Err("an empty entry");
            }
            read += 1;
            if read > MAX_FORWARDED_HOPS {
                return Err("more trusted hops than are read");
            }
            let ip: IpAddr = entry.parse().map_err(|_| "an entry is not an IP address")?;
            if !trusted.contains(ip) {
                return Ok(ip);
            }
            leftmost = Some(ip);
        }
    }
    leftmost.ok_or("no X-Forwarded-For")
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trusted(nets: &[&str]) -> TrustedProxies {
        TrustedProxies::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    fn client(t: &TrustedProxies, peer: &str, xff: &[&str]) -> String {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append(X_FORWARDED_FOR, HeaderValue::from_str(v).unwrap());
        }
        client_address(t, peer.parse().unwrap(), &h).to_string()
    }

    // The right-most untrusted address is the client, whatever the client wrote to its
    // left; with no untrusted address, the left-most.
    #[test]
    fn rightmost_untrusted() {
        let t = trusted(&["10.0.0.0/8", "127.0.0.1/32"]);
        assert_eq!(client(&t, "127.0.0.1", &["203.0.113.9"]), "203.0.113.9");
        assert_eq!(client(&t, "127.0.0.1", &["1.2.3.4, 10.0.0.5"]), "1.2.3.4");
        assert_eq!(client(&t, "127.0.0.1", &["6.6.6.6, 1.2.3.4, 10.0.0.5"]), "1.2.3.4");
        assert_eq!(client(&t, "127.0.0.1", &["6.6.6.6", "1.2.3.4,10.0.0.5"]), "1.2.3.4");
        assert_eq!(client(&t, "127.0.0.1", &["1.2.3.4", "10.0.0.5"]), "1.2.3.4");
        // 10.0.0.5 is not trusted here: it is the client.
        let only_local = trusted(&["127.0.0.1/32"]);
        assert_eq!(client(&only_local, "127.0.0.1", &["1.2.3.4, 10.0.0.5"]), "10.0.0.5");
        // Every hop trusted: the left-most.
        assert_eq!(client(&t, "127.0.0.1", &["10.1.1.1, 10.0.0.5"]), "10.1.1.1");
        // Garbage left of the client is the client's own writing, never read.
        assert_eq!(client(&t, "127.0.0.1", &["not-an-ip, 1.2.3.4"]), "1.2.3.4");
        // IPv6 and IPv4-mapped entries.
        assert_eq!(
            client(&t, "::ffff:127.0.0.1", &["2001:db8::1, ::ffff:10.0.0.1"]),
            "2001:db8::1"
        );
    }

    // From a peer not trusted the header is ignored; a claim that cannot be read leaves
    // the peer as the client.
    #[test]
    fn fail_safe() {
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client(&t, "192.0.2.1", &["203.0.113.9"]), "192.0.2.1");
        assert_eq!(client(&trusted(&[]), "127.0.0.1", &["203.0.113.9"]), "127.0.0.1");
        assert_eq!(client(&t, "10.0.0.1", &[]), "10.0.0.1");
        assert_eq!(client(&t, "10.0.0.1", &["1.2.3.4, bogus"]), "10.0.0.1");
        assert_eq!(client(&t, "10.0.0.1", &["1.2.3.4:5678"]), "10.0.0.1");
        assert_eq!(client(&t, "10.0.0.1", &["1.2.3.4,"]), "10.0.0.1");
        let long = vec!["10.0.0.9"; MAX_FORWARDED_HOPS + 1].join(",");
        assert_eq!(client(&t, "10.0.0.1", &[&format!("1.2.3.4,{long}")]), "10.0.0.1");
        let just = vec!["10.0.0.9"; MAX_FORWARDED_HOPS - 1].join(",");
        assert_eq!(client(&t, "10.0.0.1", &[&format!("1.2.3.4,{just}")]), "1.2.3.4");
    }
}
