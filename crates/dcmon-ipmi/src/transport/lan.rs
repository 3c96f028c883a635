//! RMCP+ (IPMI 2.0 "lanplus") over UDP: session establishment (IPMI 2.0 §13.15:
//! Get Channel Authentication Capabilities, Open Session, RAKP 1–4, Set Session
//! Privilege Level), encrypted and authenticated requests with retries inside a total
//! time budget, re-opening a session the BMC dropped, and Close Session on drop.
//!
//! A session either owns one connected UDP socket ([`LanSession::connect`]) or shares
//! the few sockets of a [`LanPool`] with many other sessions: a pool socket's receive
//! task hands each datagram to the session whose BMC address sent it, so a poller holds
//! thousands of sessions on a handful of file descriptors. A session is a few hundred
//! bytes of state and serves one request at a time.

use super::Transport;
use crate::cmd::app;
use crate::crypto::{CipherSuite, RakpExchange, SessionKeys, same_mac};
use crate::msg::{self, Addressing, CompletionCode, Request, Response};
use crate::packet::{self, Packet, PayloadType, SessionV15};
use crate::rakp::{
    NAME_ONLY_LOOKUP, OpenSessionRequest, OpenSessionResponse, Privilege, Rakp1, Rakp2, Rakp3,
    Rakp4, RakpStatus,
};
use crate::session::{self, ReplayWindow, SequenceNumbers};
use crate::{CodecError, IpmiError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{Mutex, mpsc};
use tokio::time::{Instant, timeout_at};

/// Where and how to reach one BMC.
#[derive(Clone)]
pub struct LanConfig {
    /// Host name or address, as given (used in errors).
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: Vec<u8>,
    /// BMC key K_G; `None` when the BMC has none (the password keys the SIK).
    pub kg: Option<Vec<u8>>,
    pub suite: CipherSuite,
    pub privilege: Privilege,
    /// Total time one request (including a session (re)establishment) may take.
    pub timeout: Duration,
    /// Sends per message before giving up on it; the budget is split between them.
    pub attempts: u32,
}

impl std::fmt::Debug for LanConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("suite", &self.suite)
            .field("privilege", &self.privilege)
            .field("timeout", &self.timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The RMCP+ port BMCs listen on unless told otherwise.
pub const DEFAULT_PORT: u16 = 623;

/// Splits a BMC target as users write it, HOST, HOST:PORT or [V6]:PORT (a bare IPv6
/// address takes the default port), into host and port.
pub fn parse_target(s: &str) -> Result<(String, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("{s:?}: {p:?} is not a port number"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (h, tail) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']'"))?;
        return match tail.strip_prefix(':') {
            Some(p) => Ok((h.to_string(), port(p)?)),
            None if tail.is_empty() => Ok((h.to_string(), DEFAULT_PORT)),
            None => Err(format!("{s:?}: unexpected {tail:?} after ']'")),
        };
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), port(p)?)),
        _ if s.is_empty() => Err("empty host".into()),
        _ => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

impl LanConfig {
    pub fn new(
        host: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Vec<u8>>,
    ) -> Self {
        LanConfig {
            host: host.into(),
            port: DEFAULT_PORT,
            username: username.into(),
            password: password.into(),
            kg: None,
            suite: CipherSuite::Suite3,
            privilege: Privilege::Administrator,
            timeout: Duration::from_secs(5),
            attempts: 3,
        }
    }

    fn per_attempt(&self) -> Duration {
        self.timeout / self.attempts.max(1) / 2
    }
}

/// An established session's state.
struct Established {
    keys: SessionKeys,
    console_session_id: u32,
    bmc_session_id: u32,
    outgoing: SequenceNumbers,
    incoming: ReplayWindow,
    rq_seq: u8,
}

/// One BMC reached over RMCP+. Connects lazily on the first request.
pub struct LanSession {
    config: LanConfig,
    link: Link,
    state: Mutex<Option<Established>>,
}

/// How a session's datagrams travel.
enum Link {
    /// A connected socket of its own.
    Own(UdpSocket),
    /// One socket of a pool, and the datagrams its receive task routed to this session.
    Shared {
        socket: Arc<PoolSocket>,
        peer: SocketAddr,
        rx: Mutex<mpsc::Receiver<Vec<u8>>>,
    },
}

impl Link {
    async fn send(&self, d: &[u8]) -> std::io::Result<()> {
        match self {
            Link::Own(s) => s.send(d).await.map(drop),
            Link::Shared { socket, peer, .. } => socket.socket.send_to(d, peer).await.map(drop),
        }
    }

    fn try_send(&self, d: &[u8]) {
        let _ = match self {
            Link::Own(s) => s.try_send(d),
            Link::Shared { socket, peer, .. } => socket.socket.try_send_to(d, *peer),
        };
    }

    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Own(s) => s.recv(buf).await,
            Link::Shared { rx, .. } => {
                let d = rx.lock().await.recv().await.ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the pool was closed")
                })?;
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(n)
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Link::Shared { socket, peer, .. } = self {
            socket.routes().remove(peer);
        }
    }
}

/// Datagrams waiting per pooled session before more are dropped (a session has one
/// request in flight; the extra room absorbs late duplicates).
const POOL_QUEUE: usize = 8;

/// One socket of a [`LanPool`] and where its datagrams go.
struct PoolSocket {
    socket: Arc<UdpSocket>,
    routes: std::sync::Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>>,
    receiver: tokio::task::JoinHandle<()>,
}

impl PoolSocket {
    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for PoolSocket {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// A few UDP sockets shared by many sessions. Each BMC address is served by at most one
/// session per socket, so the source address of a datagram names its session.
pub struct LanPool {
    sockets: Vec<Arc<PoolSocket>>,
}

impl LanPool {
    /// Binds `sockets` UDP sockets on the unspecified address (IPv6 when `ipv6`, for
    /// BMCs reached over IPv6; else IPv4). Needs a tokio runtime: each socket gets a
    /// receive task.
    pub async fn new(sockets: usize, ipv6: bool) -> std::io::Result<Self> {
        let mut out = Vec::with_capacity(sockets.max(1));
        for _ in 0..sockets.max(1) {
            let local: SocketAddr = if ipv6 {
                ([0u16; 8], 0).into()
            } else {
                ([0, 0, 0, 0], 0).into()
            };
            let socket = Arc::new(UdpSocket::bind(local).await?);
            let routes: std::sync::Mutex<HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>> =
                std::sync::Mutex::default();
            let pool_socket = Arc::new_cyclic(|weak: &std::sync::Weak<PoolSocket>| {
                let weak = weak.clone();
                let rx_socket = socket.clone();
                let receiver = tokio::spawn(async move {
                    let mut buf = vec![0u8; 2048];
                    loop {
                        let Ok((n, from)) = rx_socket.recv_from(&mut buf).await else {
                            // ICMP errors surface here on some systems: keep serving.
                            tokio::task::yield_now().await;
                            continue;
                        };
                        let Some(me) = weak.upgrade() else { return };
                        let route = me.routes().get(&from).cloned();
                        if let Some(tx) = route {
                            // A full queue means a stale or flooding peer: drop it.
                            let _ = tx.try_send(buf[..n].to_vec());
                        }
                    }
                });
                PoolSocket {
                    socket,
                    routes,
                    receiver,
                }
            });
            out.push(pool_socket);
        }
        Ok(Self { sockets: out })
    }

    /// A session to the BMC of `config` over one of the pool's sockets (connects
    /// lazily, as [`LanSession::connect`]).
    pub async fn session(&self, config: LanConfig) -> Result<LanSession, IpmiError> {
        let addr = resolve(&config).await?;
        let (tx, rx) = mpsc::channel(POOL_QUEUE);
        // The least loaded socket that does not serve this address yet.
        let socket = self
            .sockets
            .iter()
            .filter(|s| !s.routes().contains_key(&addr))
            .min_by_key(|s| s.routes().len())
            .cloned()
            .ok_or_else(|| IpmiError::Io {
                host: config.host.clone(),
                context: "choosing a pool socket",
                source: std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!(
                        "every socket of the pool already has a session to {addr}: close one or grow the pool"
                    ),
                ),
            })?;
        socket.routes().insert(addr, tx);
        Ok(LanSession {
            config,
            link: Link::Shared {
                socket,
                peer: addr,
                rx: Mutex::new(rx),
            },
            state: Mutex::new(None),
        })
    }

    /// Sessions currently registered on the pool's sockets.
    pub fn sessions(&self) -> usize {
        self.sockets.iter().map(|s| s.routes().len()).sum()
    }
}

async fn resolve(config: &LanConfig) -> Result<SocketAddr, IpmiError> {
    tokio::net::lookup_host((config.host.as_str(), config.port))
        .await
        .map_err(|source| IpmiError::Io {
            host: config.host.clone(),
            context: "resolving the BMC address",
            source,
        })?
        .next()
        .ok_or_else(|| IpmiError::Io {
            host: config.host.clone(),
            context: "resolving the BMC address",
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no address"),
        })
}

/// Why one attempt at an exchange failed.
enum Miss {
    /// Nothing usable arrived in time; `malformed` holds the last bad datagram's error.
    Silence {
        malformed: Option<CodecError>,
    },
    Fatal(IpmiError),
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The OS random source failing is not something to recover from; fall back to a
    // clock-derived value so a session still gets distinct IDs rather than panicking.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t[i % t.len()];
        }
    }
    b
}

impl LanSession {
    /// Binds a UDP socket connected to the BMC. Resolves `host` once.
    pub async fn connect(config: LanConfig) -> Result<Self, IpmiError> {
        let io = |context| {
            let host = config.host.clone();
            move |source| IpmiError::Io {
                host,
                context,
                source,
            }
        };
        let addr = resolve(&config).await?;
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(io("binding a UDP socket"))?;
        socket
            .connect(addr)
            .await
            .map_err(io("connecting the UDP socket"))?;
        Ok(LanSession {
            config,
            link: Link::Own(socket),
            state: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &LanConfig {
        &self.config
    }

    fn malformed(&self, source: CodecError) -> IpmiError {
        IpmiError::Malformed {
            host: self.config.host.clone(),
            source,
        }
    }

    fn auth_failed(&self, reason: impl Into<String>) -> IpmiError {
        IpmiError::Authentication {
            host: self.config.host.clone(),
            reason: reason.into(),
        }
    }

    /// Sends `datagram` up to `attempts` times, each time waiting for a datagram that
    /// `accept` takes (`Ok(Some)`), skips (`Ok(None)`: late or foreign) or rejects.
    async fn exchange<T>(
        &self,
        deadline: Instant,
        mut datagram: impl FnMut() -> Vec<u8>,
        mut accept: impl FnMut(&[u8]) -> Result<Option<T>, Miss>,
    ) -> Result<T, Miss> {
        let mut malformed = None;
        let mut buf = vec![0u8; 1024];
        for _ in 0..self.config.attempts.max(1) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let attempt_end = (now + self.config.per_attempt()).min(deadline);
            if let Err(e) = self.link.send(&datagram()).await {
                return Err(Miss::Fatal(IpmiError::Io {
                    host: self.config.host.clone(),
                    context: "sending to the BMC",
                    source: e,
                }));
            }
            loop {
                match timeout_at(attempt_end, self.link.recv(&mut buf)).await {
                    Err(_) => break,
                    // ICMP port unreachable and the like: the BMC is not there (yet).
                    Ok(Err(_)) => {
                        tokio::time::sleep_until(attempt_end).await;
                        break;
                    }
                    Ok(Ok(n)) => match accept(&buf[..n]) {
                        Ok(Some(v)) => return Ok(v),
                        Ok(None) => {}
                        Err(Miss::Silence { malformed: m }) => malformed = m.or(malformed),
                        Err(fatal) => return Err(fatal),
                    },
                }
            }
        }
        Err(Miss::Silence { malformed })
    }

    fn give_up(&self, miss: Miss) -> IpmiError {
        match miss {
            Miss::Fatal(e) => e,
            Miss::Silence {
                malformed: Some(source),
            } => self.malformed(source),
            Miss::Silence { malformed: None } => IpmiError::Timeout {
                host: self.config.host.clone(),
                budget: self.config.timeout,
                attempts: self.config.attempts,
            },
        }
    }

    /// An unauthenticated RMCP+ message of session establishment and its answer.
    async fn handshake_step<T>(
        &self,
        deadline: Instant,
        send_type: PayloadType,
        body: &[u8],
        want: PayloadType,
        parse: impl Fn(&[u8]) -> Result<T, CodecError>,
    ) -> Result<T, IpmiError> {
        let datagram = session::unauthenticated(send_type, body);
        self.exchange(
            deadline,
            || datagram.clone(),
            |d| match packet::decode(d) {
                Ok(Packet::V20(p)) if p.header.payload_type == want => parse(&p.payload)
                    .map(Some)
                    .map_err(|e| Miss::Silence { malformed: Some(e) }),
                Ok(_) => Ok(None),
                Err(e) => Err(Miss::Silence { malformed: Some(e) }),
            },
        )
        .await
        .map_err(|m| self.give_up(m))
    }

    async fn establish(&self, deadline: Instant) -> Result<Established, IpmiError> {
        let cfg = &self.config;
        // Get Channel Authentication Capabilities, in an IPMI 1.5 packet outside any
        // session (§13.14): it tells whether the BMC speaks IPMI 2.0.
        let caps_req = app::get_channel_auth_capabilities(cfg.privilege);
        let v15 = packet::encode(&Packet::V15(SessionV15 {
            auth_type: 0,
            sequence: 0,
            session_id: 0,
            auth_code: None,
            payload: msg::encode_request(&Addressing::console_to_bmc(0), &caps_req),
        }));
        let caps = self
            .exchange(
                deadline,
                || v15.clone(),
                |d| match packet::decode(d) {
                    Ok(Packet::V15(p)) => match msg::decode_response(&p.payload) {
                        Ok((_, rsp)) if rsp.cmd == caps_req.cmd => Ok(Some(rsp)),
                        Ok(_) => Ok(None),
                        Err(e) => Err(Miss::Silence { malformed: Some(e) }),
                    },
                    Ok(_) => Ok(None),
                    Err(e) => Err(Miss::Silence { malformed: Some(e) }),
                },
            )
            .await
            .map_err(|m| self.give_up(m))?;
        let caps_data = caps.ok().map_err(|code| IpmiError::Completion {
            host: cfg.host.clone(),
            command: "Get Channel Authentication Capabilities".into(),
            code,
        })?;
        let caps = app::ChannelAuthCapabilities::parse(caps_data).map_err(|e| self.malformed(e))?;
        if !caps.ipmi20 {
            return Err(IpmiError::Unexpected {
                host: cfg.host.clone(),
                command: "Get Channel Authentication Capabilities".into(),
                detail: "the BMC does not support IPMI 2.0 (RMCP+) sessions".into(),
            });
        }

        let console_session_id = u32::from_le_bytes(random::<4>()).max(1);
        let (auth, integrity, confidentiality) = cfg.suite.algorithms();
        let open = OpenSessionRequest {
            tag: 0,
            max_privilege: cfg.privilege.code(),
            console_session_id,
            authentication: auth,
            integrity,
            confidentiality,
        };
        let opened: OpenSessionResponse = self
            .handshake_step(
                deadline,
                PayloadType::OpenSessionRequest,
                &open.encode(),
                PayloadType::OpenSessionResponse,
                OpenSessionResponse::decode,
            )
            .await?;
        self.check_status(opened.status)?;
        if opened.console_session_id != console_session_id {
            return Err(self.malformed(CodecError::Field {
                what: "open session response console session ID",
                value: opened.console_session_id,
            }));
        }

        let console_random = random::<16>();
        let role = cfg.privilege.code() | NAME_ONLY_LOOKUP;
        let username = cfg.username.as_bytes()[..cfg.username.len().min(16)].to_vec();
        let rakp1 = Rakp1 {
            tag: 1,
            bmc_session_id: opened.bmc_session_id,
            console_random,
            role,
            username: username.clone(),
        };
        let rakp2: Rakp2 = self
            .handshake_step(
                deadline,
                PayloadType::Rakp1,
                &rakp1.encode(),
                PayloadType::Rakp2,
                Rakp2::decode,
            )
            .await?;
        self.check_status(rakp2.status)?;
        let exchange = RakpExchange {
            suite: cfg.suite,
            console_session_id,
            bmc_session_id: opened.bmc_session_id,
            console_random,
            bmc_random: rakp2.bmc_random,
            bmc_guid: rakp2.bmc_guid,
            role,
            username,
        };
        if !same_mac(&exchange.rakp2_auth_code(&cfg.password), &rakp2.auth_code) {
            // Tell the BMC, as the spec asks (§13.22), then give up: the password is wrong.
            let refuse = Rakp3 {
                tag: 2,
                status: RakpStatus::INVALID_INTEGRITY_CHECK,
                bmc_session_id: opened.bmc_session_id,
                auth_code: Vec::new(),
            };
            let _ = self
                .link
                .send(&session::unauthenticated(
                    PayloadType::Rakp3,
                    &refuse.encode(),
                ))
                .await;
            return Err(self.auth_failed(format!(
                "wrong password for user \"{}\" (RAKP 2 key exchange code does not match)",
                cfg.username
            )));
        }
        let rakp3 = Rakp3 {
            tag: 2,
            status: RakpStatus::OK,
            bmc_session_id: opened.bmc_session_id,
            auth_code: exchange.rakp3_auth_code(&cfg.password),
        };
        let rakp4: Rakp4 = self
            .handshake_step(
                deadline,
                PayloadType::Rakp3,
                &rakp3.encode(),
                PayloadType::Rakp4,
                Rakp4::decode,
            )
            .await?;
        self.check_status(rakp4.status)?;
        let sik = exchange.session_integrity_key(cfg.kg.as_deref().unwrap_or(&cfg.password));
        if !same_mac(
            &exchange.rakp4_integrity_check(&sik),
            &rakp4.integrity_check,
        ) {
            return Err(self
                .auth_failed("RAKP 4 integrity check value does not match (wrong BMC key K_G?)"));
        }
        let mut est = Established {
            keys: SessionKeys::derive(cfg.suite, &sik),
            console_session_id,
            bmc_session_id: opened.bmc_session_id,
            outgoing: SequenceNumbers::default(),
            incoming: ReplayWindow::default(),
            rq_seq: 0,
        };
        let rsp = self
            .session_request(
                &mut est,
                deadline,
                &app::set_session_privilege(cfg.privilege),
            )
            .await?;
        if let Err(code) = rsp.ok() {
            return Err(IpmiError::Completion {
                host: cfg.host.clone(),
                command: format!("Set Session Privilege Level ({:?})", cfg.privilege),
                code,
            });
        }
        Ok(est)
    }

    fn check_status(&self, status: RakpStatus) -> Result<(), IpmiError> {
        if status == RakpStatus::OK {
            Ok(())
        } else if status.is_authentication_failure() {
            Err(self.auth_failed(format!(
                "user \"{}\" refused: {status}",
                self.config.username
            )))
        } else {
            Err(IpmiError::SessionRefused {
                host: self.config.host.clone(),
                status,
            })
        }
    }

    /// One request inside an established session. Retries re-send the same rqSeq under
    /// a new session sequence number, so a late answer to an earlier try still counts.
    async fn session_request(
        &self,
        est: &mut Established,
        deadline: Instant,
        req: &Request,
    ) -> Result<Response, IpmiError> {
        est.rq_seq = (est.rq_seq + 1) & 0x3F;
        let rq_seq = est.rq_seq;
        let body = msg::encode_request(&Addressing::console_to_bmc(rq_seq), req);
        let keys = est.keys.clone();
        let bmc_session_id = est.bmc_session_id;
        let console_session_id = est.console_session_id;
        let outgoing = &mut est.outgoing;
        let incoming = &mut est.incoming;
        self.exchange(
            deadline,
            || {
                session::seal(
                    &keys,
                    PayloadType::Ipmi,
                    bmc_session_id,
                    outgoing.advance(),
                    &body,
                    random::<16>(),
                )
            },
            |d| {
                let opened =
                    session::open(&keys, d).map_err(|e| Miss::Silence { malformed: Some(e) })?;
                if opened.header.session_id != console_session_id
                    || opened.header.payload_type != PayloadType::Ipmi
                    || !incoming.accept(opened.header.sequence)
                {
                    return Ok(None);
                }
                match msg::decode_response(&opened.payload) {
                    Ok((addr, rsp)) if addr.rq_seq == rq_seq && rsp.cmd == req.cmd => Ok(Some(rsp)),
                    Ok(_) => Ok(None),
                    Err(e) => Err(Miss::Silence { malformed: Some(e) }),
                }
            },
        )
        .await
        .map_err(|m| self.give_up(m))
    }

    /// Closes the session now (Close Session, §22.19) instead of on drop.
    pub async fn close(&self) {
        let mut state = self.state.lock().await;
        if let Some(mut est) = state.take() {
            let deadline = Instant::now() + self.config.per_attempt();
            let req = app::close_session(est.bmc_session_id);
            let _ = self.session_request(&mut est, deadline, &req).await;
        }
    }
}

impl Drop for LanSession {
    /// Best effort: one Close Session datagram without waiting for its answer, so the
    /// BMC frees the session slot instead of waiting for its idle timeout.
    fn drop(&mut self) {
        if let Some(est) = self.state.get_mut().as_mut() {
            let req = app::close_session(est.bmc_session_id);
            let body = msg::encode_request(&Addressing::console_to_bmc(est.rq_seq + 1), &req);
            let d = session::seal(
                &est.keys,
                PayloadType::Ipmi,
                est.bmc_session_id,
                est.outgoing.advance(),
                &body,
                random::<16>(),
            );
            self.link.try_send(&d);
        }
    }
}

impl Transport for LanSession {
    async fn send(&self, req: &Request) -> Result<Response, IpmiError> {
        let deadline = Instant::now() + self.config.timeout;
        let mut state = self.state.lock().await;
        let mut fresh = false;
        loop {
            if state.is_none() {
                *state = Some(self.establish(deadline).await?);
                fresh = true;
            }
            let Some(est) = state.as_mut() else {
                continue;
            };
            match self.session_request(est, deadline, req).await {
                // A BMC that lost our session (reset, idle timeout) stays silent or
                // answers "invalid session"; open a new one once, within the budget.
                Err(IpmiError::Timeout { .. }) if !fresh && Instant::now() < deadline => {
                    *state = None;
                }
                Ok(rsp) if rsp.completion == CompletionCode(0x81) && !fresh => {
                    *state = None;
                }
                other => return other,
            }
        }
    }

    fn host(&self) -> &str {
        &self.config.host
    }
}

#[cfg(test)]
mod tests {
    use super::parse_target;

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(parse_target("bmc1"), Ok(("bmc1".into(), 623)));
        assert_eq!(parse_target("10.0.0.1:6230"), Ok(("10.0.0.1".into(), 6230)));
        assert_eq!(parse_target("[::1]:6230"), Ok(("::1".into(), 6230)));
        assert_eq!(parse_target("::1"), Ok(("::1".into(), 623)));
        assert!(parse_target("bmc:x").is_err());
        assert!(parse_target("").is_err());
    }
}
