//! The fields the forward phase adds to every request it sends upstream: `Host` (the
//! upstream's own authority), `X-Forwarded-For` (the client address
//! [`crate::pipeline::client`] decided), `X-Forwarded-Proto`, `X-Forwarded-Host` (only a
//! valid `host[:port]`), `X-Request-Id`, and the identity headers of the principal the
//! request was authorized for.
//!
//! They go beside the request rather than into its header map
//! ([`crate::upstream::added`]): the in-task client writes them straight into the head it
//! sends, so a request pays neither the map's inserts nor a copy of each value. The
//! client's fields of these names were stripped before ([`super::hygiene`]), so none
//! goes twice.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::ClientInfo;
use crate::auth::identity::IdentityHeaders;
use crate::listener::stamp::X_REQUEST_ID;
use crate::upstream::added::{is_field_value, write_field, AddedFields};

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The fields the gateway adds to one forwarded request.
#[derive(Debug, Clone, Copy)]
pub struct Forwarded<'a> {
    /// `Host`: the upstream's authority, as the client would set it (it is told not to).
    host: &'a HeaderValue,
    client_ip: IpAddr,
    tls: bool,
    /// The host the client asked for, when it is a valid `host[:port]`.
    forwarded_host: Option<&'a HeaderValue>,
    /// The request's id, when it can be a field value (the gateway's own ids always can).
    request_id: Option<&'a str>,
    identity: Option<&'a IdentityHeaders>,
}

impl<'a> Forwarded<'a> {
    /// The fields for a request from `client` to the upstream whose `Host` is
    /// `upstream_host`, authorized for the principal with `identity` (none for an
    /// anonymous request).
    pub fn new(client: &ClientInfo<'a>, upstream_host: &'a HeaderValue, identity: Option<&'a IdentityHeaders>) -> Self {
        Self {
            host: upstream_host,
            client_ip: client.client_ip,
            tls: client.tls,
            forwarded_host: client.host.filter(|h| super::hygiene::is_valid_host(h.as_bytes())),
            request_id: Some(client.request_id).filter(|id| is_field_value(id.as_bytes())),
            identity,
        }
    }

    fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

impl AddedFields for Forwarded<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        write_field(out, &header::HOST, self.host.as_bytes());
        let mut ip = [0u8; IP_TEXT];
        let len = write_ip(self.client_ip, &mut ip);
        write_field(out, &X_FORWARDED_FOR, &ip[..len]);
        write_field(out, &X_FORWARDED_PROTO, self.proto().as_bytes());
        if let Some(host) = self.forwarded_host {
            write_field(out, &X_FORWARDED_HOST, host.as_bytes());
        }
        if let Some(id) = self.request_id {
            write_field(out, &X_REQUEST_ID, id.as_bytes());
        }
        for (name, value) in self.identity.into_iter().flat_map(IdentityHeaders::fields) {
            write_field(out, name, value.as_bytes());
        }
    }

    fn insert_into(&self, headers: &mut HeaderMap) {
        headers.insert(header::HOST, self.host.clone());
        headers.insert(X_FORWARDED_FOR, ip_header(self.client_ip));
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(self.proto()));
        if let Some(host) = self.forwarded_host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
        if let Some(id) = self.request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
            headers.insert(X_REQUEST_ID, id);
        }
        if let Some(identity) = self.identity {
            identity.insert_into(headers);
        }
    }
}

/// Room for an address's text: the longest IPv6 text is 45 bytes.
const IP_TEXT: usize = 64;

/// Writes `ip`'s text (as its `Display` writes it) into `buf`, returning its length. An
/// IPv4 address is written octet by octet with itoa (the formatter costs more than the
/// rest of this field's work).
pub fn write_ip(ip: IpAddr, buf: &mut [u8; IP_TEXT]) -> usize {
    use std::io::Write;
    match ip {
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
    }
}

/// `ip` as a field value (an address always is one).
pub fn ip_header(ip: IpAddr) -> HeaderValue {
    let mut buf = [0u8; IP_TEXT];
    let len = write_ip(ip, &mut buf);
    HeaderValue::from_bytes(&buf[..len]).unwrap_or(HeaderValue::from_static("unknown"))
}
