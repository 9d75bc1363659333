//! A real SMTP server for tests and the mail benchmark, on tokio: greeting, EHLO/HELO,
//! STARTTLS (or TLS from the first byte) with an rcgen certificate for `localhost`, AUTH
//! PLAIN, MAIL FROM, RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT. It records each
//! message it accepts, can be told to answer a given code at a given stage, and can be
//! stopped and started again on the same port (an outage).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// The message after dot-unstuffing, CRLF line ends.
    pub data: String,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The `AUTH PLAIN` user and password of the session, if any.
    pub auth: Option<(String, String)>,
}

/// Where a fault applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The greeting (the server then closes).
    Connect,
    /// The answer to AUTH.
    Auth,
    Mail,
    Rcpt,
    /// The answer after the message's final dot.
    Data,
}

/// An answer the server gives instead of success.
#[derive(Debug, Clone)]
struct Fault {
    stage: Stage,
    code: u16,
    /// Only for RCPT TO addresses containing this; any when empty.
    matching: String,
    /// How many more times; `None`: always.
    times: Option<usize>,
}

/// How the server speaks TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    StartTls,
    /// TLS from the first byte.
    Implicit,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    /// Every RCPT TO seen, accepted or not, in order.
    rcpts: Mutex<Vec<String>>,
    faults: Mutex<Vec<Fault>>,
    connections: std::sync::atomic::AtomicUsize,
    arrived: Notify,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    /// The certificate (PEM) clients must trust, for the TLS modes.
    pub ca_pem: String,
    mode: Mode,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    task: Option<JoinHandle<()>>,
}

impl SmtpServer {
    /// A server on a free loopback port.
    pub async fn start(mode: Mode) -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let ca_pem = cert.cert.pem();
        let acceptor = (mode != Mode::Plain).then(|| {
            let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)
                .unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(config))
        });
        let mut server = Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            ca_pem,
            mode,
            acceptor,
            state: Arc::default(),
            task: None,
        };
        server.resume().await;
        server
    }

    /// Stops listening and drops every open connection: an outage.
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn resume(&mut self) {
        // The stopped listener closes when its aborted task is next polled: try again
        // for a moment.
        let mut tries = 0;
        let listener = loop {
            let socket = TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            match socket.bind(self.addr).and_then(|()| socket.listen(64)) {
                Ok(l) => break l,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot listen on {} again: {e}", self.addr),
            }
        };
        self.addr = listener.local_addr().unwrap();
        let (state, acceptor, mode) = (self.state.clone(), self.acceptor.clone(), self.mode);
        self.task = Some(tokio::spawn(accept(listener, state, acceptor, mode)));
    }

    /// Answers `code` at `stage`, `times` times (`None`: until cleared).
    pub fn fail(&self, stage: Stage, code: u16, times: Option<usize>) {
        self.push_fault(Fault {
            stage,
            code,
            matching: String::new(),
            times,
        });
    }

    /// Answers `code` to every RCPT TO whose address contains `matching`.
    pub fn refuse_rcpt(&self, matching: &str, code: u16) {
        self.push_fault(Fault {
            stage: Stage::Rcpt,
            code,
            matching: matching.to_owned(),
            times: None,
        });
    }

    pub fn clear_faults(&self) {
        self.state.faults.lock().unwrap().clear();
    }

    fn push_fault(&self, f: Fault) {
        self.state.faults.lock().unwrap().push(f);
    }

    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Every RCPT TO address seen so far, refused or not.
    pub fn rcpts(&self) -> Vec<String> {
        self.state.rcpts.lock().unwrap().clone()
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits until at least `n` messages were accepted, for at most `within`; returns
    /// what there is.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.state.arrived.notified();
            if self.state.received.lock().unwrap().len() >= n {
                return self.received();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.received();
            }
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, state: Arc<State>, acceptor: Option<tokio_rustls::TlsAcceptor>, mode: Mode) {
    // Dropped with this task: an outage closes every connection too.
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((tcp, _)) = accepted else { continue };
                state.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                sessions.spawn(connection(tcp, state.clone(), acceptor.clone(), mode));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
}

async fn connection(tcp: TcpStream, state: Arc<State>, acceptor: Option<tokio_rustls::TlsAcceptor>, mode: Mode) {
    let _ = tcp.set_nodelay(true);
    match (mode, acceptor) {
        (Mode::Implicit, Some(acceptor)) => {
            if let Ok(tls) = acceptor.accept(tcp).await {
                let _ = session(BufReader::new(tls), &state, true, false, true).await;
            }
        }
        (Mode::StartTls, Some(acceptor)) => {
            if let Ok(End::StartTls(plain)) = session(BufReader::new(tcp), &state, false, true, true).await {
                if let Ok(tls) = acceptor.accept(plain.into_inner()).await {
                    let _ = session(BufReader::new(tls), &state, true, false, false).await;
                }
            }
        }
        _ => {
            let _ = session(BufReader::new(tcp), &state, false, false, true).await;
        }
    }
}

enum End<S> {
    Closed,
    StartTls(S),
}

/// The fault for `stage` (and `rcpt`), counting it down.
fn fault(state: &State, stage: Stage, rcpt: &str) -> Option<u16> {
    let mut faults = state.faults.lock().unwrap();
    let i = faults
        .iter()
        .position(|f| f.stage == stage && (f.matching.is_empty() || rcpt.contains(&f.matching)))?;
    let code = faults[i].code;
    if let Some(n) = &mut faults[i].times {
        *n -= 1;
        if *n == 0 {
            faults.remove(i);
        }
    }
    Some(code)
}

fn reply(code: u16, text: &str) -> String {
    format!("{code} {text}\r\n")
}

/// The address inside `<...>` after a `MAIL FROM:` / `RCPT TO:` verb.
fn address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_owned()
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: BufReader<S>,
    state: &State,
    tls: bool,
    offer_starttls: bool,
    greet: bool,
) -> std::io::Result<End<BufReader<S>>> {
    if greet {
        if let Some(code) = fault(state, Stage::Connect, "") {
            io.write_all(reply(code, "not now").as_bytes()).await?;
            return Ok(End::Closed);
        }
        io.write_all(b"220 localhost ESMTP test\r\n").await?;
        io.flush().await?;
    }
    let mut from = String::new();
    let mut to = Vec::new();
    let mut auth = None;
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await? == 0 {
            return Ok(End::Closed);
        }
        let cmd = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
        let answer = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                let mut s = String::from("250-localhost\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n");
                if offer_starttls && !tls {
                    s.push_str("250-STARTTLS\r\n");
                }
                s.push_str("250 AUTH PLAIN\r\n");
                s
            }
            "HELO" => reply(250, "localhost"),
            "STARTTLS" if offer_starttls && !tls => {
                io.write_all(b"220 go ahead\r\n").await?;
                io.flush().await?;
                return Ok(End::StartTls(io));
            }
            "AUTH" if fault(state, Stage::Auth, "").is_some() => reply(535, "authentication failed"),
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                match (parts.next().map(str::to_ascii_uppercase).as_deref(), parts.next()) {
                    (Some("PLAIN"), Some(b64)) => {
                        let raw = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .unwrap_or_default();
                        let raw = String::from_utf8_lossy(&raw).into_owned();
                        let mut f = raw.split('\0').skip(1);
                        auth = Some((f.next().unwrap_or("").to_owned(), f.next().unwrap_or("").to_owned()));
                        reply(235, "authenticated")
                    }
                    _ => reply(504, "mechanism not supported"),
                }
            }
            "MAIL" => match fault(state, Stage::Mail, "") {
                Some(code) => reply(code, "sender refused"),
                None => {
                    from = address(arg);
                    to.clear();
                    reply(250, "ok")
                }
            },
            "RCPT" => {
                let rcpt = address(arg);
                state.rcpts.lock().unwrap().push(rcpt.clone());
                match fault(state, Stage::Rcpt, &rcpt) {
                    Some(code) => reply(code, "recipient refused"),
                    None => {
                        to.push(rcpt);
                        reply(250, "ok")
                    }
                }
            }
            "DATA" if to.is_empty() => reply(503, "no recipients"),
            "DATA" => {
                io.write_all(b"354 go on\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if io.read_line(&mut line).await? == 0 {
                        return Ok(End::Closed);
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    // Dot-unstuffing: a leading dot was doubled by the client.
                    data.push_str(line.strip_prefix('.').unwrap_or(&line));
                }
                match fault(state, Stage::Data, &to.join(",")) {
                    Some(code) => reply(code, "message refused"),
                    None => {
                        state.received.lock().unwrap().push(Received {
                            from: std::mem::take(&mut from),
                            to: std::mem::take(&mut to),
                            data,
                            tls,
                            auth: auth.clone(),
                        });
                        state.arrived.notify_waiters();
                        reply(250, "queued")
                    }
                }
            }
            "RSET" => {
                from.clear();
                to.clear();
                reply(250, "ok")
            }
            "NOOP" => reply(250, "ok"),
            "QUIT" => {
                io.write_all(b"221 bye\r\n").await?;
                return Ok(End::Closed);
            }
            _ => reply(500, "unknown command"),
        };
        io.write_all(answer.as_bytes()).await?;
        io.flush().await?;
    }
}
