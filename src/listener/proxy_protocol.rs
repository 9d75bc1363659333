//! The PROXY protocol (v1 text and v2 binary, parsed by the `ppp` crate) on the TLS
//! listener, with `[server] proxy_protocol = true`: a load balancer in
//! `trusted_proxies` says, before the TLS handshake, which client it is passing on.
//!
//! Only peers in `trusted_proxies` may send one: a connection from any other peer is
//! closed before anything is read (and a warning logged). From a trusted peer the header
//! is required and read before the TLS handshake, within the handshake timeout and a size
//! bound (v1: 107 bytes, the spec's maximum; v2: 16 bytes and at most
//! [`V2_MAX_ADDRESS_LEN`] of addresses and TLVs), and never a byte past it: the
//! ClientHello that follows, often in the same packet, is left for rustls. v2 is read by
//! its length; v1 by peeking for its line end and consuming exactly up to it. A
//! malformed header, or a connection that ends or stalls before it is whole, is closed.
//!
//! v2 `LOCAL` (the balancer's own health check), v1 `UNKNOWN`, and addresses that are
//! not IP (v2 `UNSPEC`, UNIX sockets) keep the peer's address. The address a header
//! gives becomes the connection's client address. `X-Forwarded-For` on that connection
//! is then read only if that address is itself in `trusted_proxies` (see
//! `pipeline::client`): the PROXY header's source is treated as the peer would be.

use std::io;
use std::net::IpAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest v1 header, `\r\n` included (the spec's bound).
pub const V1_MAX: usize = 107;
/// The most bytes of addresses and TLVs a v2 header may announce.
pub const V2_MAX_ADDRESS_LEN: usize = 512;
/// The fixed part of a v2 header: signature, version and command, family, length.
const V2_FIXED: usize = 16;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Read first, whatever the version: shorter than the shortest header of either
/// (`PROXY UNKNOWN\r\n` is 15 bytes), so nothing past a header is ever read here.
const PREFIX: usize = 12;

/// Reads one PROXY header from `stream`, consuming exactly its bytes. `Some` with the
/// client's address, `None` when the header keeps the peer's (`LOCAL`, `UNKNOWN`, or not
/// an IP connection). Not bounded in time: the caller holds it to a deadline.
pub async fn read_header(stream: &mut TcpStream) -> io::Result<Option<IpAddr>> {
    let mut buf = [0u8; V2_FIXED + V2_MAX_ADDRESS_LEN];
    stream.read_exact(&mut buf[..PREFIX]).await?;
    if &buf[..PREFIX] == V2_SIGNATURE {
        stream.read_exact(&mut buf[PREFIX..V2_FIXED]).await?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if len > V2_MAX_ADDRESS_LEN {
            return Err(malformed(format!("v2 header announces {len} bytes of addresses")));
        }
        stream.read_exact(&mut buf[V2_FIXED..V2_FIXED + len]).await?;
        let header =
            ppp::v2::Header::try_from(&buf[..V2_FIXED + len]).map_err(|e| malformed(format!("v2 header: {e}")))?;
        return Ok(match (header.command, header.addresses) {
            (ppp::v2::Command::Local, _) => None,
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => Some(IpAddr::V4(a.source_address)),
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => Some(IpAddr::V6(a.source_address)),
            (ppp::v2::Command::Proxy, ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_)) => None,
        });
    }
    if !buf.starts_with(b"PROXY ") || buf[..PREFIX].contains(&b'\n') {
        return Err(malformed("no PROXY header".into()));
    }
    let mut len = PREFIX;
    while buf[len - 1] != b'\n' {
        if len >= V1_MAX {
            return Err(malformed(format!("v1 header longer than {V1_MAX} bytes")));
        }
        // Peek at what has arrived, then consume it up to the line end at most.
        let seen = stream.peek(&mut buf[len..V1_MAX]).await?;
        if seen == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = buf[len..len + seen]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(seen, |i| i + 1);
        stream.read_exact(&mut buf[len..len + take]).await?;
        len += take;
    }
    parse_v1(&buf[..len])
}

/// A whole v1 line, `\r\n` included.
fn parse_v1(line: &[u8]) -> io::Result<Option<IpAddr>> {
    if !line.ends_with(b"\r\n") {
        return Err(malformed("v1 header does not end in CRLF".into()));
    }
    let header = ppp::v1::Header::try_from(line).map_err(|e| malformed(format!("v1 header: {e}")))?;
    if header.header.len() != line.len() {
        return Err(malformed("v1 header has a stray CR".into()));
    }
    Ok(match header.addresses {
        ppp::v1::Addresses::Unknown => None,
        ppp::v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
        ppp::v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
    })
}

fn malformed(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    /// Sends `chunks` (pausing between them) on a fresh connection, reads a header on
    /// the other end, and returns it with the bytes left after it.
    async fn read(chunks: &[&[u8]]) -> (io::Result<Option<IpAddr>>, Vec<u8>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let chunks: Vec<Vec<u8>> = chunks.iter().map(|c| c.to_vec()).collect();
        let writer = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            for c in chunks {
                s.write_all(&c).await.unwrap();
                s.flush().await.unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        });
        let (mut s, _) = listener.accept().await.unwrap();
        let header = read_header(&mut s).await;
        writer.await.unwrap();
        let mut rest = Vec::new();
        if header.is_ok() {
            s.read_to_end(&mut rest).await.unwrap();
        }
        (header, rest)
    }

    fn v2(command: ppp::v2::Command, addresses: impl Into<ppp::v2::Addresses>) -> Vec<u8> {
        ppp::v2::Builder::with_addresses(ppp::v2::Version::Two | command, ppp::v2::Protocol::Stream, addresses)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn v1_consumes_exactly_the_header() {
        let (h, rest) = read(&[b"PROXY TCP4 203.0.113.9 10.0.0.1 51234 443\r\n\x16\x03\x01hello"]).await;
        assert_eq!(h.unwrap(), Some("203.0.113.9".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01hello");
        let (h, rest) = read(&[b"PROXY TCP6 2001:db8::9 2001:db8::1 51234 443\r\n", b"\x16next"]).await;
        assert_eq!(h.unwrap(), Some("2001:db8::9".parse().unwrap()));
        assert_eq!(rest, b"\x16next");
        // Trickled in pieces: still exactly the header.
        let (h, rest) = read(&[b"PROXY TCP4 1.2.", b"3.4 10.0.0.1 1 443\r", b"\n\x16tls"]).await;
        assert_eq!(h.unwrap(), Some("1.2.3.4".parse().unwrap()));
        assert_eq!(rest, b"\x16tls");
        let (h, rest) = read(&[b"PROXY UNKNOWN\r\n\x16"]).await;
        assert_eq!(h.unwrap(), None);
        assert_eq!(rest, b"\x16");
    }

    #[tokio::test]
    async fn v2_consumes_exactly_the_header() {
        let addrs: (std::net::SocketAddr, std::net::SocketAddr) =
            ("198.51.100.7:40000".parse().unwrap(), "10.0.0.1:443".parse().unwrap());
        let mut bytes = v2(ppp::v2::Command::Proxy, addrs);
        bytes.extend_from_slice(b"\x16\x03\x01rest");
        let (h, rest) = read(&[&bytes]).await;
        assert_eq!(h.unwrap(), Some("198.51.100.7".parse().unwrap()));
        assert_eq!(rest, b"\x16\x03\x01rest");
        let addrs: (std::net::SocketAddr, std::net::SocketAddr) = (
            "[2001:db8::7]:40000".parse().unwrap(),
            "[2001:db8::1]:443".parse().unwrap(),
        );
        let (h, _) = read(&[&v2(ppp::v2::Command::Proxy, addrs)]).await;
        assert_eq!(h.unwrap(), Some("2001:db8::7".parse().unwrap()));
        // LOCAL: the balancer's own connection keeps the peer's address.
        let (h, rest) = read(&[&v2(ppp::v2::Command::Local, addrs), b"x"]).await;
        assert_eq!(h.unwrap(), None);
        assert_eq!(rest, b"x");
    }

    #[tokio::test]
    async fn malformed_headers_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00\x00\x00",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1\r\n....",
            b"PROXY TCP4 1.2.3.4 10.0.0.1 1 443\n....",
            b"PROXY TCP4 not.an.ip 10.0.0.1 1 443\r\n",
            b"PROXY\nTCP4 1.2.3.4 10.0.0.1 1 443\r\n",
        ] {
            let (h, _) = read(&[bad]).await;
            assert!(h.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        // Too long without a line end: refused after 107 bytes.
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat();
        let (h, _) = read(&[&long]).await;
        assert_eq!(h.unwrap_err().kind(), io::ErrorKind::InvalidData);
        // A v2 header announcing more than the bound.
        let mut big = V2_SIGNATURE.to_vec();
        big.extend_from_slice(&[0x21, 0x11, 0x10, 0x00]);
        let (h, _) = read(&[&big]).await;
        assert!(h.unwrap_err().to_string().contains("4096 bytes"));
        // A connection that ends first.
        let (h, _) = read(&[b"PROXY TCP4 1.2.3.4"]).await;
        assert_eq!(h.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
