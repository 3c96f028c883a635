//! JSON bodies of the agent endpoints (see PROTOCOL.md §Endpoints).

use serde::{Deserialize, Serialize};

/// Path of the registration endpoint.
pub const PATH_REGISTER: &str = "/api/agent/register";
/// Path of the batch push endpoint.
pub const PATH_PUSH: &str = "/api/agent/push";
/// Path where an agent reports events (GPU XID errors, its fan loop's writes and
/// fail-safe transitions).
pub const PATH_EVENTS: &str = "/api/agent/events";
/// Most events in one report.
pub const MAX_EVENTS_PER_REPORT: usize = 500;
/// Content type of a batch body.
pub const BATCH_CONTENT_TYPE: &str = "application/x-dcmon-batch";

/// `POST /api/agent/register`: signed with the key it registers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The enrollment token an admin issued (`dcmon enroll create`).
    pub token: String,
    /// `ed25519:<base64>`.
    pub public_key: String,
    pub hostname: String,
    /// `/etc/machine-id` (or the DMI product UUID when absent).
    pub machine_id: String,
    pub agent_version: String,
}

/// Registration state of an agent.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// May push and poll.
    Approved,
    /// Waiting for an admin (`dcmon agents approve`).
    Pending,
    /// Refused for good; re-registering needs a new token.
    Revoked,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Pending => "pending",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(Self::Approved),
            "pending" => Some(Self::Pending),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegisterResponse {
    pub agent_id: String,
    pub status: AgentStatus,
    /// The `host` label this agent's samples are stored under.
    pub host: String,
}

/// Answer to an accepted push.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushResponse {
    /// Samples stored (0 when the batch was a retransmission already stored).
    pub accepted_samples: u64,
    /// True when this sequence number had been accepted before.
    pub duplicate: bool,
}

/// One thing that happened on the agent's machine, as `POST /api/agent/events` carries
/// a list of them (signed, JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentEvent {
    /// Unique per agent (random): a report sent twice stores each event once.
    pub id: String,
    pub ts_ms: i64,
    /// `gpu_xid`, `fan_write`, `fan_fail_safe`, `fan_fail_safe_cleared`, ...
    pub kind: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub message: String,
    /// Structured detail as JSON text.
    #[serde(default)]
    pub detail: Option<String>,
}

/// Every error answer of the API: a stable machine code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// Stable error codes the agent acts on.
pub mod codes {
    /// The server lost (or never had) this batch session: start a new one.
    pub const WIRE_RESYNC: &str = "wire_resync";
    pub const BATCH_INVALID: &str = "batch_invalid";
    pub const SIGNATURE_MISSING: &str = "signature_missing";
    pub const SIGNATURE_INVALID: &str = "signature_invalid";
    pub const TIMESTAMP_STALE: &str = "timestamp_stale";
    pub const NONCE_REPLAYED: &str = "nonce_replayed";
    pub const AGENT_UNKNOWN: &str = "agent_unknown";
    pub const AGENT_REVOKED: &str = "agent_revoked";
    pub const AGENT_PENDING: &str = "agent_pending";
    pub const ENROLL_TOKEN_INVALID: &str = "enroll_token_invalid";
}
