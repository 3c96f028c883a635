//! HTTPS to the server: the certificate is verified by its pinned public key on every
//! connection (never by turning verification off), and every request is signed.

use anyhow::{Context, Result};
use dcmon_wire::api::{self, ErrorBody, PushResponse, RegisterRequest, RegisterResponse, codes};
use dcmon_wire::command::{
    AgentCommand, CommandResult, PATH_COMMAND_RESULT, PATH_COMMANDS, PollRequest,
};
use dcmon_wire::sign;
use ed25519_dalek::SigningKey;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Accepts the server certificate only when its SubjectPublicKeyInfo matches the pin.
/// Without a pin (the first contact of `register`), it accepts any certificate and
/// records its fingerprint for the user to confirm. Either way the handshake signature
/// is checked, so the peer must hold the private key of the certificate it presents.
#[derive(Debug)]
pub struct PinnedVerifier {
    pin: Option<String>,
    seen: Mutex<Option<String>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub fn new(pin: Option<String>) -> Arc<Self> {
        Arc::new(Self {
            pin,
            seen: Mutex::new(None),
            algorithms: provider().signature_verification_algorithms,
        })
    }

    /// The fingerprint of the last certificate presented.
    pub fn seen(&self) -> Option<String> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = dcmon_wire::pin::certificate_fingerprint(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        *self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fp.clone());
        match &self.pin {
            Some(pin) if *pin != fp => Err(rustls::Error::General(format!(
                "server certificate key {fp} does not match the pinned {pin}: possible interception, or the server's key changed"
            ))),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn http_client(verifier: Arc<PinnedVerifier>, timeout: Duration) -> Result<reqwest::Client> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("dcmon-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTPS client")
}

/// Connects once without a pin and returns the fingerprint the server presents.
pub async fn probe_fingerprint(base_url: &str) -> Result<String> {
    let verifier = PinnedVerifier::new(None);
    let client = http_client(verifier.clone(), Duration::from_secs(15))?;
    let url = format!("{}/healthz", base_url.trim_end_matches('/'));
    client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("connecting to {url}"))?;
    verifier
        .seen()
        .context("the server presented no certificate")
}

/// Why a push did not go through, by what the agent should do about it.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The server lost our batch session: start a new one and re-encode.
    #[error("server asked for a new batch session: {0}")]
    Resync(String),
    /// The batch can never be accepted (the message says why): drop it.
    #[error("server rejected the batch: {0}")]
    Rejected(String),
    /// Not allowed now (pending approval, revoked, clock): keep the data, retry later.
    #[error("server refused the agent ({code}): {message}")]
    Refused { code: String, message: String },
    /// Network or server trouble: keep the data, retry the same bytes later.
    #[error("{0}")]
    Transport(String),
}

/// A signed, pinned connection to one server. Clones share the connection pool.
#[derive(Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: String,
    key: SigningKey,
    agent_id: Option<String>,
}

impl ServerClient {
    pub fn new(
        base_url: &str,
        pin: &str,
        key: SigningKey,
        agent_id: Option<String>,
    ) -> Result<Self> {
        let http = http_client(
            PinnedVerifier::new(Some(pin.to_owned())),
            Duration::from_secs(60),
        )?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            key,
            agent_id,
        })
    }

    fn signed(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<reqwest::RequestBuilder> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base))
            .with_context(|| format!("server URL {}", self.base))?;
        let path_and_query = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        };
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let h = sign::sign(
            &self.key,
            self.agent_id.as_deref(),
            "POST",
            &path_and_query,
            now,
            &hex::encode(nonce),
            &body,
        );
        let mut req = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(sign::HEADER_TIMESTAMP, h.timestamp_ms.to_string())
            .header(sign::HEADER_NONCE, h.nonce)
            .header(sign::HEADER_SIGNATURE, h.signature);
        if let Some(id) = h.agent_id {
            req = req.header(sign::HEADER_AGENT, id);
        }
        Ok(req.body(body))
    }

    /// Registers this agent's key with an enrollment token.
    pub async fn register(&self, req: &RegisterRequest) -> Result<RegisterResponse> {
        let body = serde_json::to_vec(req)?;
        let resp = self
            .signed(api::PATH_REGISTER, body, "application/json")?
            .send()
            .await
            .with_context(|| format!("connecting to {}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .context("reading the registration answer")?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| format!("{} ({})", e.message, e.code))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("registration refused: HTTP {status}: {msg}");
        }
        serde_json::from_slice(&bytes).context("parsing the registration answer")
    }

    /// Pushes one encoded batch.
    pub async fn push(&self, batch: Vec<u8>) -> Result<PushResponse, PushError> {
        let req = self
            .signed(api::PATH_PUSH, batch, api::BATCH_CONTENT_TYPE)
            .map_err(|e| PushError::Transport(e.to_string()))?;
        let resp = req.send().await.map_err(|e| {
            PushError::Transport(format!("sending to {}: {}", self.base, error_chain(&e)))
        })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| PushError::Transport(e.to_string()))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| PushError::Transport(format!("parsing the push answer: {e}")));
        }
        let err = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or(ErrorBody {
            code: String::new(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        });
        Err(match (status.as_u16(), err.code.as_str()) {
            (_, codes::WIRE_RESYNC) => PushError::Resync(err.message),
            (_, codes::BATCH_INVALID) => PushError::Rejected(err.message),
            (401 | 403, _) => PushError::Refused {
                code: err.code,
                message: err.message,
            },
            (413, _) => PushError::Rejected(format!("HTTP 413: {}", err.message)),
            _ => PushError::Transport(format!("HTTP {status}: {}", err.message)),
        })
    }
}

impl ServerClient {
    async fn post_json(&self, path: &str, body: Vec<u8>) -> Result<(u16, Vec<u8>)> {
        let resp = self
            .signed(path, body, "application/json")?
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("sending to {}: {}", self.base, error_chain(&e)))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.context("reading the answer")?;
        Ok((status, bytes.to_vec()))
    }

    /// Waits up to `wait_ms` for commands. Each entry is a command, or the id and the
    /// reason of one this agent cannot read (a kind newer than this agent).
    pub async fn poll_commands(
        &self,
        wait_ms: u32,
    ) -> Result<Vec<Result<AgentCommand, (i64, String)>>> {
        let body = serde_json::to_vec(&PollRequest { wait_ms })?;
        let (status, bytes) = self.post_json(PATH_COMMANDS, body).await?;
        if status != 200 {
            let msg = serde_json::from_slice::<ErrorBody>(&bytes)
                .map(|e| format!("{} ({})", e.message, e.code))
                .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned());
            anyhow::bail!("command poll: HTTP {status}: {msg}");
        }
        let raw: Vec<serde_json::Value> =
            serde_json::from_slice(&bytes).context("parsing the command poll answer")?;
        Ok(raw
            .into_iter()
            .map(|v| {
                let id = v.get("id").and_then(serde_json::Value::as_i64).unwrap_or(0);
                serde_json::from_value::<AgentCommand>(v).map_err(|e| {
                    (
                        id,
                        format!(
                            "this agent ({}) cannot run it: {e}",
                            env!("CARGO_PKG_VERSION")
                        ),
                    )
                })
            })
            .collect())
    }

    /// Reports events (see `events`).
    pub async fn report_events(&self, events: &[dcmon_wire::api::AgentEvent]) -> Result<()> {
        let body = serde_json::to_vec(events)?;
        let (status, bytes) = self.post_json(dcmon_wire::api::PATH_EVENTS, body).await?;
        if !(200..300).contains(&status) {
            anyhow::bail!("events: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(())
    }

    /// Reports a command's result.
    pub async fn command_result(&self, result: &CommandResult) -> Result<()> {
        let body = serde_json::to_vec(result)?;
        let (status, bytes) = self.post_json(PATH_COMMAND_RESULT, body).await?;
        if !(200..300).contains(&status) {
            anyhow::bail!(
                "command result: HTTP {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(())
    }
}

/// The error and its sources, which is where reqwest keeps the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
