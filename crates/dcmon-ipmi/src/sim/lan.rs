//! One simulated BMC's LAN channel, without sockets: a datagram in, at most one
//! datagram out. RMCP/ASF presence ping (DSP0136 §3.2.4), IPMI 1.5 session-less
//! discovery, RMCP+ Open Session and RAKP 1–4 (IPMI 2.0 §13.17–13.24) for cipher suites
//! 3 and 17, then authenticated, encrypted IPMI payloads. The bytes are the crate's
//! codecs (`packet`, `rakp`, `session`, `msg`, `crypto`) used from the BMC's side.

use super::bmc::{Bmc, Request, Response};
use crate::CodecError;
use crate::crypto::{CipherSuite, RakpExchange, SessionKeys, same_mac};
use crate::msg::{self, CompletionCode, netfn};
use crate::packet::{self, Asf, Packet, PayloadType, SessionV15};
use crate::rakp::{
    OpenSessionRequest, OpenSessionResponse, Privilege, Rakp1, Rakp2, Rakp3, Rakp4, RakpStatus,
};
use crate::session::{self, ReplayWindow, SequenceNumbers};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// A user the BMC knows (IPMI 2.0 §13.31: name-only lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Up to 20 bytes (IPMI 2.0 passwords).
    pub password: String,
    /// The highest privilege a session of this user may reach (the user's limit).
    pub max_privilege: Privilege,
}

/// Why a datagram got no answer; the server logs it at debug level.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Dropped {
    #[error("malformed datagram: {0}")]
    Malformed(#[from] CodecError),
    #[error("not offered: {0}")]
    Unsupported(&'static str),
    #[error("no session {0:#010x}")]
    UnknownSession(u32),
    #[error("session {0:#010x}: {1}")]
    Refused(u32, CodecError),
    #[error("session {0:#010x}: sequence number {1} replayed or outside the window")]
    Sequence(u32, u32),
    #[error("session {0:#010x}: the console reported RAKP error {1}")]
    ConsoleAborted(u32, RakpStatus),
}

/// Idle time after which a session is gone (IPMI 2.0 §13.24 suggests 60 s ± 3).
pub(crate) const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Sessions (pending or active) one BMC holds at once; more are refused with RMCP+
/// status 01h, as a BMC with a small session table does.
const MAX_SESSIONS: usize = 8;
/// RMCP+ status 01h: insufficient resources to create a session (Table 13-15).
const INSUFFICIENT_RESOURCES: RakpStatus = RakpStatus(0x01);
/// IANA enterprise number of the ASF, in the Presence Pong.
const ASF_IANA: u32 = 4542;

/// Session commands the channel answers itself (IPMI 2.0 §22.18, §22.19).
const SET_SESSION_PRIVILEGE: u8 = 0x3B;
const CLOSE_SESSION: u8 = 0x3C;
/// Set Session Privilege Level: "requested level exceeds channel and/or user limit".
const PRIVILEGE_EXCEEDS_LIMIT: CompletionCode = CompletionCode(0x81);
/// Close Session: "invalid session ID in request".
const INVALID_SESSION_ID: CompletionCode = CompletionCode(0x87);

/// A session between RAKP 2 and RAKP 3: whose name was given, what both HMACs cover.
#[derive(Debug)]
struct Rakp {
    user: usize,
    exchange: RakpExchange,
}

#[derive(Debug)]
struct Session {
    bmc_id: u32,
    console_id: u32,
    suite: CipherSuite,
    rakp: Option<Rakp>,
    /// Present once RAKP 3 verified: the session is active.
    keys: Option<SessionKeys>,
    max_privilege: Privilege,
    privilege: Privilege,
    inbound: ReplayWindow,
    outbound: SequenceNumbers,
    last_activity: Duration,
}

/// The LAN channel of one BMC and the BMC behind it.
#[derive(Debug)]
pub struct Endpoint {
    bmc: Bmc,
    users: Arc<[User]>,
    sessions: Vec<Session>,
    reject_credentials: bool,
}

impl Endpoint {
    pub fn new(bmc: Bmc, users: Arc<[User]>) -> Self {
        Self {
            bmc,
            users,
            sessions: Vec::new(),
            reject_credentials: false,
        }
    }

    pub fn bmc_mut(&mut self) -> &mut Bmc {
        &mut self.bmc
    }

    /// Fault: every user name is unknown (RAKP 2 status 0Dh), as a BMC whose accounts
    /// were changed behind the poller's back.
    pub fn set_reject_credentials(&mut self, reject: bool) {
        self.reject_credentials = reject;
    }

    /// Active (authenticated) sessions.
    pub fn active_sessions(&self) -> usize {
        self.sessions.iter().filter(|s| s.keys.is_some()).count()
    }

    /// Answers one datagram received at `now` (time since the Unix epoch); `random`
    /// fills session IDs, RAKP randoms and IVs.
    pub fn handle(
        &mut self,
        datagram: &[u8],
        now: Duration,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, Dropped> {
        self.sessions
            .retain(|s| now.saturating_sub(s.last_activity) < SESSION_TIMEOUT);
        match packet::decode(datagram)? {
            Packet::Asf(Asf::Ping { tag }) => Ok(packet::encode(&Packet::Asf(Asf::Pong {
                tag,
                enterprise: ASF_IANA,
                oem: 0,
                // IPMI supported, ASF version 1.0; no ASF interactions.
                entities: 0x81,
                interactions: 0,
            }))),
            Packet::Asf(Asf::Pong { .. }) => Err(Dropped::Unsupported("ASF Presence Pong")),
            Packet::V15(s) if s.auth_type == 0 && s.session_id == 0 => {
                let reply = self.sessionless(&s.payload, now)?;
                Ok(packet::encode(&Packet::V15(SessionV15 {
                    auth_type: 0,
                    sequence: 0,
                    session_id: 0,
                    auth_code: None,
                    payload: reply,
                })))
            }
            Packet::V15(_) => Err(Dropped::Unsupported("IPMI 1.5 sessions")),
            Packet::V20(p) => match p.header.payload_type {
                PayloadType::OpenSessionRequest => {
                    let req = OpenSessionRequest::decode(&p.payload)?;
                    let resp = self.open_session(&req, now, random);
                    Ok(session::unauthenticated(
                        PayloadType::OpenSessionResponse,
                        &resp.encode(),
                    ))
                }
                PayloadType::Rakp1 => {
                    let rakp2 = self.rakp1(&Rakp1::decode(&p.payload)?, now, random);
                    Ok(session::unauthenticated(
                        PayloadType::Rakp2,
                        &rakp2.encode(),
                    ))
                }
                PayloadType::Rakp3 => {
                    let rakp4 = self.rakp3(&Rakp3::decode(&p.payload)?, now)?;
                    Ok(session::unauthenticated(
                        PayloadType::Rakp4,
                        &rakp4.encode(),
                    ))
                }
                PayloadType::Ipmi if p.header.session_id == 0 => {
                    let reply = self.sessionless(&p.payload, now)?;
                    Ok(session::unauthenticated(PayloadType::Ipmi, &reply))
                }
                PayloadType::Ipmi => self.in_session(datagram, p.header.session_id, now, random),
                _ => Err(Dropped::Unsupported("payload type")),
            },
        }
    }

    /// Discovery commands before a session: Get Channel Authentication Capabilities,
    /// Get Channel Cipher Suites, Get System GUID (the model allows only these at
    /// Callback level).
    fn sessionless(&mut self, message: &[u8], now: Duration) -> Result<Vec<u8>, Dropped> {
        let (addr, req) = msg::decode_request(message)?;
        let resp = self.bmc.handle(
            &Request {
                netfn: req.netfn,
                cmd: req.cmd,
                data: &req.data,
                privilege: Privilege::Callback,
            },
            now,
        );
        Ok(encode_response(&addr, &req, resp))
    }

    /// Open Session Request → Response (IPMI 2.0 §13.17, §13.18).
    fn open_session(
        &mut self,
        req: &OpenSessionRequest,
        now: Duration,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> OpenSessionResponse {
        let mut resp = OpenSessionResponse {
            tag: req.tag,
            status: RakpStatus::OK,
            max_privilege: 0,
            console_session_id: req.console_session_id,
            bmc_session_id: 0,
            authentication: 0,
            integrity: 0,
            confidentiality: 0,
        };
        let Some(suite) =
            CipherSuite::from_algorithms(req.authentication, req.integrity, req.confidentiality)
        else {
            resp.status = RakpStatus::NO_CIPHER_SUITE_MATCH;
            return resp;
        };
        // 0 asks for the highest level the algorithms allow.
        let requested = match req.max_privilege {
            0 => Some(Privilege::Administrator),
            code => Privilege::from_code(code),
        };
        let Some(requested) = requested else {
            resp.status = RakpStatus::INVALID_ROLE;
            return resp;
        };
        if self.sessions.len() >= MAX_SESSIONS {
            resp.status = INSUFFICIENT_RESOURCES;
            return resp;
        }
        let bmc_id = loop {
            let mut id = [0u8; 4];
            random(&mut id);
            let id = u32::from_le_bytes(id);
            if id != 0 && self.sessions.iter().all(|s| s.bmc_id != id) {
                break id;
            }
        };
        self.sessions.push(Session {
            bmc_id,
            console_id: req.console_session_id,
            suite,
            rakp: None,
            keys: None,
            max_privilege: requested,
            privilege: Privilege::User.min(requested),
            inbound: ReplayWindow::default(),
            outbound: SequenceNumbers::default(),
            last_activity: now,
        });
        (resp.authentication, resp.integrity, resp.confidentiality) = suite.algorithms();
        resp.max_privilege = requested.code();
        resp.bmc_session_id = bmc_id;
        resp
    }

    /// RAKP Message 1 → 2 (IPMI 2.0 §13.20, §13.21).
    fn rakp1(&mut self, m: &Rakp1, now: Duration, random: &mut dyn FnMut(&mut [u8])) -> Rakp2 {
        let mut resp = Rakp2 {
            tag: m.tag,
            status: RakpStatus::OK,
            console_session_id: 0,
            bmc_random: [0; 16],
            bmc_guid: [0; 16],
            auth_code: Vec::new(),
        };
        let Some(index) = self
            .sessions
            .iter()
            .position(|s| s.bmc_id == m.bmc_session_id && s.keys.is_none())
        else {
            resp.status = RakpStatus::INVALID_SESSION_ID;
            return resp;
        };
        resp.console_session_id = self.sessions[index].console_id;
        let user = if self.reject_credentials {
            None
        } else {
            self.users
                .iter()
                .position(|u| u.name.as_bytes() == m.username)
        };
        let status = match (user, Privilege::from_code(m.role)) {
            (None, _) => RakpStatus::UNAUTHORIZED_NAME,
            (_, None) => RakpStatus::INVALID_ROLE,
            (Some(u), Some(p)) if p > self.users[u].max_privilege => RakpStatus::UNAUTHORIZED_ROLE,
            _ => RakpStatus::OK,
        };
        let (Some(user), Some(requested), RakpStatus::OK) =
            (user, Privilege::from_code(m.role), status)
        else {
            self.sessions.remove(index);
            resp.status = status;
            return resp;
        };
        random(&mut resp.bmc_random);
        resp.bmc_guid = self.bmc.guid();
        let session = &mut self.sessions[index];
        session.max_privilege = requested;
        session.privilege = Privilege::User.min(requested);
        session.last_activity = now;
        let exchange = RakpExchange {
            suite: session.suite,
            console_session_id: session.console_id,
            bmc_session_id: session.bmc_id,
            console_random: m.console_random,
            bmc_random: resp.bmc_random,
            bmc_guid: resp.bmc_guid,
            role: m.role,
            username: m.username.clone(),
        };
        resp.auth_code = exchange.rakp2_auth_code(self.users[user].password.as_bytes());
        session.rakp = Some(Rakp { user, exchange });
        resp
    }

    /// RAKP Message 3 → 4 (IPMI 2.0 §13.22, §13.23): verifies the console knows the
    /// password, derives the session keys and activates the session.
    fn rakp3(&mut self, m: &Rakp3, now: Duration) -> Result<Rakp4, Dropped> {
        let mut resp = Rakp4 {
            tag: m.tag,
            status: RakpStatus::OK,
            console_session_id: 0,
            integrity_check: Vec::new(),
        };
        let Some(index) = self
            .sessions
            .iter()
            .position(|s| s.bmc_id == m.bmc_session_id && s.rakp.is_some())
        else {
            resp.status = RakpStatus::INVALID_SESSION_ID;
            return Ok(resp);
        };
        if m.status != RakpStatus::OK {
            self.sessions.remove(index);
            return Err(Dropped::ConsoleAborted(m.bmc_session_id, m.status));
        }
        let session = &self.sessions[index];
        resp.console_session_id = session.console_id;
        let rakp = session.rakp.as_ref().expect("found by its RAKP state");
        let password = self.users[rakp.user].password.as_bytes();
        if !same_mac(&rakp.exchange.rakp3_auth_code(password), &m.auth_code) {
            self.sessions.remove(index);
            resp.status = RakpStatus::INVALID_INTEGRITY_CHECK;
            return Ok(resp);
        }
        // KG is the user's password: the simulated BMCs have no BMC key (§13.31).
        let sik = rakp.exchange.session_integrity_key(password);
        resp.integrity_check = rakp.exchange.rakp4_integrity_check(&sik);
        let keys = SessionKeys::derive(session.suite, &sik);
        let session = &mut self.sessions[index];
        session.keys = Some(keys);
        session.rakp = None;
        session.last_activity = now;
        Ok(resp)
    }

    /// An IPMI request inside an active session: verify, decrypt, answer, seal.
    fn in_session(
        &mut self,
        datagram: &[u8],
        bmc_id: u32,
        now: Duration,
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Result<Vec<u8>, Dropped> {
        let Some(index) = self
            .sessions
            .iter()
            .position(|s| s.bmc_id == bmc_id && s.keys.is_some())
        else {
            return Err(Dropped::UnknownSession(bmc_id));
        };
        let session = &mut self.sessions[index];
        let keys = session.keys.as_ref().expect("found by its keys");
        let opened = session::open(keys, datagram).map_err(|e| Dropped::Refused(bmc_id, e))?;
        if !opened.header.encrypted {
            // Both suites encrypt; a clear payload in a session is a console bug.
            return Err(Dropped::Unsupported(
                "unencrypted payload in an encrypted session",
            ));
        }
        if !session.inbound.accept(opened.header.sequence) {
            return Err(Dropped::Sequence(bmc_id, opened.header.sequence));
        }
        session.last_activity = now;
        let (addr, req) = msg::decode_request(&opened.payload)?;
        let resp = match (req.netfn, req.cmd) {
            (netfn::APP, SET_SESSION_PRIVILEGE) => set_privilege(session, &req.data),
            (netfn::APP, CLOSE_SESSION) => self.close_session(&req.data),
            _ => {
                let privilege = session.privilege;
                self.bmc.handle(
                    &Request {
                        netfn: req.netfn,
                        cmd: req.cmd,
                        data: &req.data,
                        privilege,
                    },
                    now,
                )
            }
        };
        let closed = (req.netfn, req.cmd, resp.completion)
            == (netfn::APP, CLOSE_SESSION, CompletionCode::OK);
        let reply = encode_response(&addr, &req, resp);
        let session = &mut self.sessions[index];
        let keys = session.keys.as_ref().expect("found by its keys");
        let mut iv = [0u8; 16];
        random(&mut iv);
        let sequence = session.outbound.advance();
        let out = session::seal(
            keys,
            PayloadType::Ipmi,
            session.console_id,
            sequence,
            &reply,
            iv,
        );
        if closed {
            // The answer still goes out under the closed session's keys.
            let id = le32(&req.data);
            self.sessions.retain(|s| s.bmc_id != id);
        }
        Ok(out)
    }

    /// Close Session (IPMI 2.0 §22.19): any session of this BMC, by its ID.
    fn close_session(&self, data: &[u8]) -> Response {
        let completion = match data {
            [_, _, _, _] if self.sessions.iter().any(|s| s.bmc_id == le32(data)) => {
                CompletionCode::OK
            }
            [_, _, _, _] => INVALID_SESSION_ID,
            _ => CompletionCode::DATA_LENGTH_INVALID,
        };
        Response {
            completion,
            data: Vec::new(),
        }
    }
}

/// Set Session Privilege Level (IPMI 2.0 §22.18): 0 asks for the present level.
fn set_privilege(session: &mut Session, data: &[u8]) -> Response {
    let [level] = data else {
        return Response {
            completion: CompletionCode::DATA_LENGTH_INVALID,
            data: Vec::new(),
        };
    };
    let completion = match (*level, Privilege::from_code(*level)) {
        (0, _) => CompletionCode::OK,
        (_, Some(p)) if p <= session.max_privilege && p != Privilege::Callback => {
            session.privilege = p;
            CompletionCode::OK
        }
        (_, Some(_)) => PRIVILEGE_EXCEEDS_LIMIT,
        (_, None) => CompletionCode::INVALID_DATA_FIELD,
    };
    let data = if completion == CompletionCode::OK {
        vec![session.privilege.code()]
    } else {
        Vec::new()
    };
    Response { completion, data }
}

fn le32(b: &[u8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

fn encode_response(addr: &msg::Addressing, req: &msg::Request, resp: Response) -> Vec<u8> {
    let resp = msg::Response::to(req, resp.completion, resp.data);
    msg::encode_response(addr, &resp)
}

#[cfg(test)]
mod tests;
