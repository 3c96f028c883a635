//! In-process tests of the router: every way an agent request is refused, and the
//! handlers' behaviour (users' authentication and authorisation are in `tests_auth`).

use super::app;
use crate::auth::Role;
use crate::config::{Approval, ServerConfig};
use crate::control::ControlDb;
use crate::state::{AppState, Clock};
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use dcmon_wire::api::{PATH_PUSH, PATH_REGISTER, RegisterRequest};
use dcmon_wire::batch::Encoder;

trait EncodeOk {
    fn encode_ok(&mut self, s: &[Scrape]) -> Vec<u8>;
}

impl EncodeOk for Encoder {
    fn encode_ok(&mut self, s: &[Scrape]) -> Vec<u8> {
        self.encode(s).unwrap()
    }
}
use dcmon_wire::{Labels, MetricSample, Scrape, sign};
use ed25519_dalek::SigningKey;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tower::ServiceExt;

pub(super) const T0: i64 = 1_800_000_000_000;

pub(super) struct TestClock(pub(super) AtomicI64);

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub(super) struct Harness {
    _dir: tempfile::TempDir,
    pub(super) state: AppState,
    pub(super) clock: Arc<TestClock>,
    nonce: u64,
}

struct TestAgent {
    id: String,
    key: SigningKey,
}

impl Harness {
    pub(super) fn new(approval: Approval) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_owned(),
            agents: crate::config::AgentsConfig {
                approval,
                ..Default::default()
            },
            ..Default::default()
        };
        let control = ControlDb::open(dir.path()).unwrap();
        let tsdb = dcmon_tsdb::Tsdb::open(&dir.path().join("tsdb")).unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(T0)));
        let state = AppState::new(config, control, tsdb, clock.clone(), "SHA256:test".into());
        Self {
            _dir: dir,
            state,
            clock,
            nonce: 0,
        }
    }

    pub(super) async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let router = app(self.state.clone())
            .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let resp = router.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        format!("{:032x}", self.nonce)
    }

    /// A request signed by `key` as `agent_id` at `ts`, carrying `body` (sent as `sent_body`).
    fn signed(
        &mut self,
        path: &str,
        agent_id: Option<&str>,
        key: &SigningKey,
        ts: i64,
        body: &[u8],
        sent_body: &[u8],
    ) -> Request<Body> {
        let nonce = self.next_nonce();
        let h = sign::sign(key, agent_id, "POST", path, ts, &nonce, body);
        let mut b = Request::post(path)
            .header(sign::HEADER_TIMESTAMP, h.timestamp_ms.to_string())
            .header(sign::HEADER_NONCE, h.nonce)
            .header(sign::HEADER_SIGNATURE, h.signature);
        if let Some(id) = agent_id {
            b = b.header(sign::HEADER_AGENT, id);
        }
        b.body(Body::from(sent_body.to_vec())).unwrap()
    }

    pub(super) async fn register(
        &mut self,
        machine: &str,
        hostname: &str,
    ) -> (StatusCode, Value, SigningKey) {
        let token = self
            .state
            .control
            .create_enroll_token(1, Duration::from_secs(60), "test")
            .unwrap();
        let key = SigningKey::from_bytes(&[machine.len() as u8 + hostname.len() as u8; 32]);
        let body = serde_json::to_vec(&RegisterRequest {
            token,
            public_key: sign::public_key_to_text(&key.verifying_key()),
            hostname: hostname.into(),
            machine_id: machine.into(),
            agent_version: "test".into(),
        })
        .unwrap();
        let now = self.clock.now_ms();
        let req = self.signed(PATH_REGISTER, None, &key, now, &body, &body);
        let (s, v) = self.send(req).await;
        (s, v, key)
    }

    async fn agent(&mut self, machine: &str, hostname: &str) -> TestAgent {
        let (s, v, key) = self.register(machine, hostname).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        TestAgent {
            id: v["agent_id"].as_str().unwrap().to_owned(),
            key,
        }
    }

    async fn push(&mut self, agent: &TestAgent, body: &[u8]) -> (StatusCode, Value) {
        let now = self.clock.now_ms();
        let req = self.signed(PATH_PUSH, Some(&agent.id), &agent.key, now, body, body);
        self.send(req).await
    }

    pub(super) fn token(&self, role: Role) -> String {
        self.state
            .control
            .create_api_token("t", role, "test")
            .unwrap()
    }

    async fn query(&self, token: Option<&str>, q: &str) -> (StatusCode, Value) {
        let mut b = Request::get(format!(
            "/api/v1/query?query={}&time={}",
            urlencode(q),
            T0 as f64 / 1000.0
        ));
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn scrape(ts: i64, host_label: &str) -> Scrape {
    Scrape {
        timestamp_ms: ts,
        samples: vec![
            MetricSample {
                labels: Labels::new("node_load1", [("host", host_label)]).unwrap(),
                value: 0.25,
            },
            MetricSample {
                labels: Labels::new("node_memory_MemTotal_bytes", []).unwrap(),
                value: 8.0 * 1024.0 * 1024.0 * 1024.0,
            },
        ],
    }
}

#[tokio::test]
async fn healthz_answers_anyone_and_reads_need_credentials() {
    let h = Harness::new(Approval::Auto);
    let (s, v) = h
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    for path in [
        "/api/v1/query?query=up",
        "/api/v1/labels",
        "/api/v1/series?match[]=up",
        "/api/agents",
        "/api/stats",
        "/api/v1/label/host/values",
        "/api/commands",
        "/api/commands/1",
        "/api/bmcs",
    ] {
        let (s, v) = h
            .send(Request::get(path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}: {v}");
    }
    let (s, _) = h
        .send(Request::post(PATH_PUSH).body(Body::from("x")).unwrap())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn query_needs_a_valid_token_and_viewer_suffices() {
    let h = Harness::new(Approval::Auto);
    assert_eq!(h.query(None, "up").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.query(Some("dcmon_at_bogus"), "up").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, v) = h.query(Some(&h.token(Role::Viewer)), "up").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["resultType"], "vector");
    let (s, v) = h.query(Some(&h.token(Role::Viewer)), "sum(up) by (").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["errorType"], "bad_data");
}

#[tokio::test]
async fn pushed_samples_are_queryable_under_the_registered_host() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("machine-1", "gpu01").await;
    let mut enc = Encoder::new(7);
    // The agent claims another host; the server files it under the registered one.
    let (s, v) = h
        .push(&agent, &enc.encode_ok(&[scrape(T0 - 1000, "evil")]))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["accepted_samples"], 2);
    let token = h.token(Role::Viewer);
    let (s, v) = h.query(Some(&token), "node_load1{host=\"gpu01\"}").await;
    assert_eq!(s, StatusCode::OK);
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(result.len(), 1, "{v}");
    assert_eq!(result[0]["metric"]["instance"], "gpu01");
    assert_eq!(result[0]["value"][1], "0.25");
    assert_eq!(
        h.query(Some(&token), "node_load1{host=\"evil\"}").await.1["data"]["result"],
        serde_json::json!([])
    );
    // The next batch of the session, and a retransmission of it.
    let b2 = enc.encode_ok(&[scrape(T0, "gpu01")]);
    assert_eq!(h.push(&agent, &b2).await.1["duplicate"], false);
    assert_eq!(h.push(&agent, &b2).await.1["duplicate"], true);
}

#[tokio::test]
async fn unknown_session_asks_for_resync_and_bad_batch_is_rejected_whole() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "host-a").await;
    let mut enc = Encoder::new(1);
    let _first = enc.encode_ok(&[scrape(T0 - 2000, "")]);
    let second = enc.encode_ok(&[scrape(T0 - 1000, "")]);
    let (s, v) = h.push(&agent, &second).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "wire_resync");
    let (s, v) = h.push(&agent, b"\x00garbage").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "batch_invalid");
    let mut enc = Encoder::new(2);
    let (s, v) = h
        .push(&agent, &enc.encode_ok(&[scrape(T0 + 3_600_000, "")]))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("ahead of the server clock"),
        "{v}"
    );
    assert_eq!(h.state.tsdb.stats().unwrap().samples, 0);
}

#[tokio::test]
async fn tampered_body_is_refused() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "a").await;
    let body = Encoder::new(3).encode_ok(&[scrape(T0, "")]);
    let mut tampered = body.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let req = h.signed(PATH_PUSH, Some(&agent.id), &agent.key, T0, &body, &tampered);
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_invalid")),
        "{v}"
    );
}

#[tokio::test]
async fn wrong_key_is_refused() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "a").await;
    let other = SigningKey::from_bytes(&[99; 32]);
    let body = Encoder::new(3).encode_ok(&[scrape(T0, "")]);
    let req = h.signed(PATH_PUSH, Some(&agent.id), &other, T0, &body, &body);
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_invalid")),
        "{v}"
    );
}

#[tokio::test]
async fn replayed_request_is_refused() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "a").await;
    let body = Encoder::new(3).encode_ok(&[scrape(T0, "")]);
    let req = h.signed(PATH_PUSH, Some(&agent.id), &agent.key, T0, &body, &body);
    let (parts, b) = req.into_parts();
    let again = Request::from_parts(parts.clone(), Body::from(body.clone()));
    let (s, v) = h.send(Request::from_parts(parts, b)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = h.send(again).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("nonce_replayed")),
        "{v}"
    );
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "a").await;
    h.clock.0.store(T0 + 3_600_000, Ordering::SeqCst);
    let body = Encoder::new(3).encode_ok(&[scrape(T0, "")]);
    for ts in [T0 + 3_600_000 - 301_000, T0 + 3_600_000 + 301_000] {
        let req = h.signed(PATH_PUSH, Some(&agent.id), &agent.key, ts, &body, &body);
        let (s, v) = h.send(req).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("timestamp_stale")),
            "{v}"
        );
        assert!(
            v["message"]
                .as_str()
                .unwrap()
                .contains("sync the agent's clock"),
            "{v}"
        );
    }
    // Signed before the server started: refused even within the skew window.
    let req = h.signed(PATH_PUSH, Some(&agent.id), &agent.key, T0 - 1, &body, &body);
    h.clock.0.store(T0 + 1000, Ordering::SeqCst);
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("timestamp_stale")),
        "{v}"
    );
}

#[tokio::test]
async fn revoked_agent_is_refused_at_once() {
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("m", "a").await;
    let mut enc = Encoder::new(3);
    assert_eq!(
        h.push(&agent, &enc.encode_ok(&[scrape(T0 - 10, "")]))
            .await
            .0,
        StatusCode::OK
    );
    h.state
        .control
        .set_agent_status(&agent.id, dcmon_wire::api::AgentStatus::Revoked, "test")
        .unwrap();
    let (s, v) = h.push(&agent, &enc.encode_ok(&[scrape(T0, "")])).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("agent_revoked")),
        "{v}"
    );
}

#[tokio::test]
async fn unknown_agent_and_unsigned_requests_are_refused() {
    let mut h = Harness::new(Approval::Auto);
    let key = SigningKey::from_bytes(&[5; 32]);
    let req = h.signed(PATH_PUSH, Some("0123456789abcdef"), &key, T0, b"x", b"x");
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("agent_unknown")),
        "{v}"
    );
    let (s, v) = h
        .send(
            Request::post(PATH_PUSH)
                .header(sign::HEADER_AGENT, "abc")
                .body(Body::from("x"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_missing")),
        "{v}"
    );
}

#[tokio::test]
async fn manual_approval_keeps_agent_pending_until_approved() {
    let mut h = Harness::new(Approval::Manual);
    let (s, v, key) = h.register("m", "a").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "pending");
    let agent = TestAgent {
        id: v["agent_id"].as_str().unwrap().into(),
        key,
    };
    let mut enc = Encoder::new(3);
    let (s, v) = h.push(&agent, &enc.encode_ok(&[scrape(T0, "")])).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("agent_pending")),
        "{v}"
    );
    h.state
        .control
        .set_agent_status("a", dcmon_wire::api::AgentStatus::Approved, "test")
        .unwrap();
    let mut enc = Encoder::new(4);
    assert_eq!(
        h.push(&agent, &enc.encode_ok(&[scrape(T0, "")])).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn registration_needs_a_valid_token_and_proof_of_key() {
    let mut h = Harness::new(Approval::Auto);
    let key = SigningKey::from_bytes(&[1; 32]);
    let body = serde_json::to_vec(&RegisterRequest {
        token: "dcmon_et_invalid".into(),
        public_key: sign::public_key_to_text(&key.verifying_key()),
        hostname: "h".into(),
        machine_id: "m".into(),
        agent_version: "t".into(),
    })
    .unwrap();
    let req = h.signed(PATH_REGISTER, None, &key, T0, &body, &body);
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("enroll_token_invalid")),
        "{v}"
    );
    // Signed by a key other than the one being registered.
    let other = SigningKey::from_bytes(&[2; 32]);
    let req = h.signed(PATH_REGISTER, None, &other, T0, &body, &body);
    let (s, v) = h.send(req).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("signature_invalid")),
        "{v}"
    );
}

#[tokio::test]
async fn reregistering_a_machine_keeps_its_host_and_history() {
    let mut h = Harness::new(Approval::Auto);
    let a1 = h.agent("same-machine", "gpu7").await;
    assert_eq!(
        h.push(&a1, &Encoder::new(1).encode_ok(&[scrape(T0 - 5000, "")]))
            .await
            .0,
        StatusCode::OK
    );
    let a2 = h.agent("same-machine", "gpu7").await;
    assert_eq!(a1.id, a2.id);
    assert_eq!(
        h.push(&a2, &Encoder::new(2).encode_ok(&[scrape(T0, "")]))
            .await
            .0,
        StatusCode::OK
    );
    let token = h.token(Role::Viewer);
    let req = Request::get(format!(
        "/api/v1/query_range?query=node_load1&start={}&end={}&step=1",
        (T0 - 5000) / 1000,
        T0 / 1000
    ))
    .header("authorization", format!("Bearer {token}"))
    .body(Body::empty())
    .unwrap();
    let (s, v) = h.send(req).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let series = v["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{v}");
    assert_eq!(series[0]["metric"]["host"], "gpu7");
}

#[tokio::test]
async fn garbage_registration_bodies_get_clear_errors() {
    let mut h = Harness::new(Approval::Auto);
    let key = SigningKey::from_bytes(&[1; 32]);
    for (body, expect) in [
        (&b"not json"[..], "registration body: expected ident"),
        (&b"{\"token\":\"x\"}"[..], "registration body: missing field `public_key`"),
        (&b"{\"token\":\"x\",\"public_key\":\"k\",\"hostname\":\"h\",\"machine_id\":\"m\",\"agent_version\":\"v\",\"extra\":1}"[..], "unknown field `extra`"),
        (&b"{\"token\":\"x\",\"public_key\":\"k\",\"hostname\":\"\",\"machine_id\":\"m\",\"agent_version\":\"v\"}"[..], "hostname: must be 1 to 253 printable characters"),
        (&b"{\"token\":\"x\",\"public_key\":\"rsa:AAAA\",\"hostname\":\"h\",\"machine_id\":\"m\",\"agent_version\":\"v\"}"[..], "public_key: public key is malformed"),
    ] {
        let req = h.signed(PATH_REGISTER, None, &key, T0, body, body);
        let (s, v) = h.send(req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["message"].as_str().unwrap().contains(expect), "{expect:?} not in {v}");
    }
}

#[tokio::test]
async fn garbage_prometheus_parameters_get_prometheus_errors() {
    let h = Harness::new(Approval::Auto);
    let token = h.token(Role::Viewer);
    for (path, expect) in [
        ("/api/v1/query", "invalid parameter \"query\": missing"),
        (
            "/api/v1/query?query=up&time=yesterday",
            "invalid parameter \"time\": cannot parse \"yesterday\"",
        ),
        (
            "/api/v1/query?query=rate(up[5m]",
            "invalid parameter \"query\"",
        ),
        (
            "/api/v1/query?query=%7B%7D",
            "at least one non-empty matcher",
        ),
        (
            "/api/v1/query?query=up%7Bhost%3D~%22(%22%7D",
            "illegal regex for (",
        ),
        (
            "/api/v1/query_range?query=up&start=x&end=2&step=1",
            "invalid parameter \"start\"",
        ),
        (
            "/api/v1/query_range?query=up&start=1&end=2",
            "invalid parameter \"step\": missing",
        ),
        (
            "/api/v1/query_range?query=up&start=1&end=2&step=0",
            "zero or negative query resolution step",
        ),
        (
            "/api/v1/query_range?query=up&start=1&end=2&step=fast",
            "invalid parameter \"step\": cannot parse",
        ),
        (
            "/api/v1/query_range?query=up&start=3&end=2&step=1",
            "end timestamp must not be before start time",
        ),
        (
            "/api/v1/query_range?query=up&start=0&end=1000000&step=1",
            "exceeded maximum resolution",
        ),
        (
            "/api/v1/query_range?query=up%5B5m%5D&start=1&end=2&step=1",
            "must be Scalar or instant Vector",
        ),
        ("/api/v1/series", "no match[] parameter provided"),
        ("/api/v1/series?match[]=sum(up)", "is not a series selector"),
        (
            "/api/v1/label/host/values?match[]=%7B",
            "invalid parameter \"query\"",
        ),
    ] {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        let (s, v) = h.send(req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert_eq!(v["errorType"], "bad_data", "{path}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains(expect),
            "{path}: {expect:?} not in {v}"
        );
    }
}

mod remote_write {
    use super::*;
    use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        let mut l = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        l.extend(labels.iter().map(|(n, v)| Label {
            name: (*n).into(),
            value: (*v).into(),
        }));
        TimeSeries {
            labels: l,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
        }
    }

    async fn write(h: &Harness, token: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut b = Request::post("/api/v1/write")
            .header("content-encoding", "snappy")
            .header("content-type", "application/x-protobuf");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        h.send(b.body(Body::from(body)).unwrap()).await
    }

    fn stored_samples(h: &Harness) -> u64 {
        h.state.tsdb.stats().unwrap().samples
    }

    #[tokio::test]
    async fn needs_an_operator_token() {
        let h = Harness::new(Approval::Auto);
        let body = encode(&WriteRequest {
            timeseries: vec![series("up", &[("job", "a")], &[(T0, 1.0)])],
        });
        assert_eq!(
            write(&h, None, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        let viewer = h.token(Role::Viewer);
        assert_eq!(
            write(&h, Some(&viewer), body.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        let op = h.token(Role::Operator);
        assert_eq!(write(&h, Some(&op), body).await.0, StatusCode::NO_CONTENT);
        let (s, v) = h.query(Some(&viewer), "up").await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["data"]["result"][0]["metric"]["job"], "a");
        assert_eq!(v["data"]["result"][0]["value"][1], "1");
    }

    #[tokio::test]
    async fn a_second_request_reuses_known_series_and_label_order_does_not_matter() {
        let h = Harness::new(Approval::Auto);
        let op = h.token(Role::Operator);
        let first = encode(&WriteRequest {
            timeseries: vec![series("m", &[("a", "1"), ("b", "2")], &[(T0 - 2000, 1.0)])],
        });
        assert_eq!(write(&h, Some(&op), first).await.0, StatusCode::NO_CONTENT);
        let mut reordered = series("m", &[("b", "2"), ("a", "1")], &[(T0 - 1000, 2.0)]);
        reordered.labels.reverse();
        let again = series("m", &[("a", "1"), ("b", "2")], &[(T0, 3.0)]);
        let body = encode(&WriteRequest {
            timeseries: vec![reordered, again],
        });
        assert_eq!(write(&h, Some(&op), body).await.0, StatusCode::NO_CONTENT);
        assert_eq!(h.state.tsdb.stats().unwrap().series, 1);
        assert_eq!(stored_samples(&h), 3);
    }

    #[tokio::test]
    async fn malformed_requests_get_400_with_the_reason_and_store_nothing() {
        let h = Harness::new(Approval::Auto);
        let op = h.token(Role::Operator);
        let good = series("ok", &[], &[(T0, 1.0)]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"plain text".to_vec(), "snappy"),
            (
                snap::raw::Encoder::new()
                    .compress_vec(&[0x0a, 0x09, 0x01])
                    .unwrap(),
                "malformed protobuf",
            ),
            (
                encode(&WriteRequest {
                    timeseries: vec![good.clone(), series("bad-name", &[], &[(T0, 1.0)])],
                }),
                "time series #1",
            ),
            (
                encode(&WriteRequest {
                    timeseries: vec![good.clone(), series("x", &[("0bad", "v")], &[(T0, 1.0)])],
                }),
                "label name \"0bad\" is not valid",
            ),
            (
                encode(&WriteRequest {
                    timeseries: vec![good.clone(), series("x", &[], &[(T0 + 3_600_000, 1.0)])],
                }),
                "ahead of the server clock",
            ),
        ];
        for (body, reason) in cases {
            let (s, v) = write(&h, Some(&op), body).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(msg.contains(reason), "{msg:?} should contain {reason:?}");
            assert!(msg.contains("nothing of it was stored"), "{msg}");
        }
        assert_eq!(stored_samples(&h), 0);
        assert_eq!(h.state.tsdb.stats().unwrap().series, 0);
    }

    #[tokio::test]
    async fn a_foreign_content_encoding_is_refused() {
        let h = Harness::new(Approval::Auto);
        let op = h.token(Role::Operator);
        let req = Request::post("/api/v1/write")
            .header("content-encoding", "gzip")
            .header("authorization", format!("Bearer {op}"))
            .body(Body::from(vec![1, 2, 3]))
            .unwrap();
        let (s, v) = h.send(req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["message"].as_str().unwrap().contains("gzip"), "{v}");
    }
}

#[tokio::test]
async fn commands_need_operator_reach_a_waiting_poll_and_keep_results() {
    use dcmon_wire::command::{PATH_COMMAND_RESULT, PATH_COMMANDS};
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("machine-1", "gpu01").await;
    let viewer = h.token(Role::Viewer);
    let operator = h.token(Role::Operator);
    let send = |token: &str, body: &str| {
        Request::post("/api/commands")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let body =
        r#"{"host":"gpu01","kind":"fan_control","params":{"action":"zone","zone":0,"duty":40}}"#;
    let (s, _) = h.send(send(&viewer, body)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h
        .send(send(
            &operator,
            r#"{"host":"gpu01","kind":"launch_missiles"}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = h
        .send(send(
            &operator,
            r#"{"host":"gpu01","kind":"fan_control","params":{"action":"mode","mode":"turbo"}}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("heavy_io"), "{v}");
    let (s, v) = h
        .send(send(&operator, r#"{"host":"nosuch","kind":"collect_now"}"#))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");

    // A poll waiting before the command exists is answered when it is queued.
    let now = h.clock.now_ms();
    let poll_body = br#"{"wait_ms":20000}"#;
    let poll = h.signed(
        PATH_COMMANDS,
        Some(&agent.id),
        &agent.key,
        now,
        poll_body,
        poll_body,
    );
    let router =
        app(h.state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let waiting = tokio::spawn(router.oneshot(poll));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let (s, created) = h.send(send(&operator, body)).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    let resp = waiting.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let delivered: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(delivered[0]["id"], created["id"]);
    assert_eq!(delivered[0]["command"]["params"]["duty"], 40);

    let result = serde_json::to_vec(&serde_json::json!({
        "id": created["id"], "ok": true, "message": "Zone 0 duty set to 40 %",
        "output": "{\"duty_percent\":40}",
    }))
    .unwrap();
    let req = h.signed(
        PATH_COMMAND_RESULT,
        Some(&agent.id),
        &agent.key,
        now,
        &result,
        &result,
    );
    let (s, _) = h.send(req).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let req = h.signed(
        PATH_COMMAND_RESULT,
        Some(&agent.id),
        &agent.key,
        now,
        &result,
        &result,
    );
    assert_eq!(
        h.send(req).await.0,
        StatusCode::NOT_FOUND,
        "a result counts once"
    );
    let (s, v) = h
        .send(
            Request::get(format!("/api/commands/{}?wait=1s", created["id"]))
                .header("authorization", format!("Bearer {viewer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["output"]["duty_percent"], 40);
    let (s, v) = h
        .send(
            Request::get("/api/commands?host=gpu01")
                .header("authorization", format!("Bearer {viewer}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["commands"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bmcs_viewer_lists_admin_changes_and_no_answer_carries_a_password() {
    const PW: &str = "pw-SENTINEL-42";
    let h = Harness::new(Approval::Auto);
    let viewer = h.token(Role::Viewer);
    let operator = h.token(Role::Operator);
    let admin = h.token(Role::Admin);
    // Raw answers, so the password check sees every byte sent back.
    let raw = |method: &str, path: &str, token: Option<&str>, body: String| {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        let req = b.body(Body::from(body)).unwrap();
        let router =
            app(h.state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            assert!(!text.contains(PW), "{text}");
            (status, text)
        }
    };
    let body = format!(
        r#"{{"name":"gpu01-bmc","address":"10.0.0.5:624","user":"ADMIN","password":"{PW}","interval":"1m"}}"#
    );
    for (method, path) in [
        ("POST", "/api/bmcs"),
        ("DELETE", "/api/bmcs/gpu01-bmc"),
        ("POST", "/api/bmcs/import"),
    ] {
        let (s, _) = raw(method, path, None, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}");
        for token in [&viewer, &operator] {
            let (s, _) = raw(method, path, Some(token), body.clone()).await;
            assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}");
        }
    }
    let (s, text) = raw("POST", "/api/bmcs", Some(&admin), body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (created["port"].as_u64(), created["interval_s"].as_u64()),
        (Some(624), Some(60))
    );
    let (s, text) = raw("POST", "/api/bmcs", Some(&admin), body.clone()).await;
    assert_eq!(s, StatusCode::CONFLICT, "{text}");
    let too_long = body.replace(PW, &format!("{PW}-and-more-than-20"));
    let (s, text) = raw("POST", "/api/bmcs", Some(&admin), too_long).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(text.contains("at most 20"), "{text}");
    let (s, text) = raw("POST", "/api/bmcs", Some(&admin), r#"{"name":"x"}"#.into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{text}");

    let csv = format!("name,address,user,password\nr1,10.0.1.1,u,{PW}\nr2,10.0.1.2,u,{PW}\n");
    let (s, text) = raw("POST", "/api/bmcs/import", Some(&admin), csv).await;
    assert_eq!(s, StatusCode::CREATED, "{text}");
    assert!(text.contains(r#""imported":2"#), "{text}");
    let bad = format!("name,address,user,password\nr3,10.0.1.3,u,{PW}\nr 4,10.0.1.4,u,{PW}\n");
    let (s, text) = raw("POST", "/api/bmcs/import", Some(&admin), bad).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(text.contains("line 3, column 1 (name)"), "{text}");

    let (s, text) = raw("GET", "/api/bmcs", Some(&viewer), String::new()).await;
    assert_eq!(s, StatusCode::OK);
    let listed: Value = serde_json::from_str(&text).unwrap();
    let names: Vec<_> = listed["bmcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gpu01-bmc", "r1", "r2"], "r3 was not imported");

    let (s, _) = raw("DELETE", "/api/bmcs/r1", Some(&admin), String::new()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, text) = raw("DELETE", "/api/bmcs/r1", Some(&admin), String::new()).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{text}");

    let audit = serde_json::to_string(&h.state.control.audit_tail(100).unwrap()).unwrap();
    assert!(
        audit.contains("bmc.add") && audit.contains("bmc.remove"),
        "{audit}"
    );
    assert!(!audit.contains(PW), "{audit}");
    // Changes made over the API carry the caller's address.
    let entries = h.state.control.audit_tail(100).unwrap();
    let bmc_changes: Vec<_> = entries
        .iter()
        .filter(|e| e.action.starts_with("bmc."))
        .collect();
    assert!(
        !bmc_changes.is_empty()
            && bmc_changes
                .iter()
                .all(|e| e.remote.as_deref() == Some("127.0.0.1")),
        "{bmc_changes:?}"
    );
}

#[tokio::test]
async fn fan_curves_viewer_reads_operator_changes_and_bad_curves_are_refused() {
    let h = Harness::new(Approval::Auto);
    let (viewer, operator) = (h.token(Role::Viewer), h.token(Role::Operator));
    let secrets = crate::secrets::SecretBox::open_with(&h.state.config().data_dir, None).unwrap();
    let new = crate::bmcs::NewBmc {
        name: "r1".into(),
        address: "10.0.0.5".into(),
        user: "ADMIN".into(),
        password: crate::secrets::Secret::new("pw"),
        interval: None,
        agent: None,
        vendor: Some("supermicro".into()),
    };
    h.state.control.add_bmc(&secrets, &new, "t", None).unwrap();
    let req = |method: &str, path: &str, token: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let curve = "/api/bmcs/r1/curve";
    let zephyr = r#"{"preset": "zephyr"}"#;
    let (s, _) = h.send(req("PUT", curve, &viewer, zephyr)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.send(req("GET", curve, &viewer, "")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("no_curve"))
    );
    let (s, v) = h.send(req("PUT", curve, &operator, zephyr)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["config"]["preset"].as_str(), v["enabled"].as_bool()),
        (Some("zephyr"), Some(true))
    );
    let (s, v) = h.send(req("GET", curve, &viewer, "")).await;
    assert_eq!(
        (s, v["config"]["interval_s"].as_u64()),
        (StatusCode::OK, Some(30))
    );

    let low = r#"{"zones": [{"zone": 0, "points": [[30, 15], [60, 100]]}]}"#;
    let (s, v) = h.send(req("PUT", curve, &operator, low)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("duty 15 % is below Supermicro's minimum of 20 %"),
        "{v}"
    );
    let typo = r#"{"zones": [{"zone": 0, "pionts": [[30, 40]]}]}"#;
    let (s, v) = h.send(req("PUT", curve, &operator, typo)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["message"].as_str().unwrap().contains("pionts"), "{v}");
    let fine = r#"{"zones": [{"zone": 0, "points": [[30, 25], [60, 100]]}]}"#;
    let (s, v) = h
        .send(req(
            "PUT",
            &format!("{curve}?enabled=false"),
            &operator,
            fine,
        ))
        .await;
    assert_eq!(
        (s, v["enabled"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{v}"
    );
    let (s, _) = h
        .send(req("PUT", "/api/bmcs/nobody/curve", &operator, fine))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = h.send(req("DELETE", curve, &viewer, "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = h.send(req("DELETE", curve, &operator, "")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h.send(req("DELETE", curve, &operator, "")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let audit = serde_json::to_string(&h.state.control.audit_tail(20).unwrap()).unwrap();
    assert!(
        audit.contains("fans.curve.set") && audit.contains("fans.curve.remove"),
        "{audit}"
    );
}

/// `POST /api/bmcs/{name}/check` against the simulator's BMC over RMCP+: operators may
/// ask, the vendor is recorded, a refused login and an unknown BMC answer as such, and
/// every check is audited with its outcome. The curve preview is the editor's: operator
/// only, and a body that is no curve is refused before the BMC is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bmc_check_logs_in_records_the_vendor_and_is_audited() {
    use dcmon_ipmi::sim::{Fleet, SimConfig, Vendor as SimVendor};
    let h = Harness::new(Approval::Auto);
    let (viewer, operator) = (h.token(Role::Viewer), h.token(Role::Operator));
    let fleet = Fleet::start(SimConfig::loopback(
        SimVendor::Supermicro,
        "admin",
        "s3cret",
    ))
    .await
    .unwrap();
    let secrets = crate::secrets::SecretBox::open_with(&h.state.config().data_dir, None).unwrap();
    for (name, password) in [("sim", "s3cret"), ("wrong", "not-it")] {
        let new = crate::bmcs::NewBmc {
            name: name.into(),
            address: fleet.addrs()[0].to_string(),
            user: "admin".into(),
            password: crate::secrets::Secret::new(password),
            interval: None,
            agent: None,
            vendor: None,
        };
        h.state.control.add_bmc(&secrets, &new, "t", None).unwrap();
    }
    let post = |path: &str, token: &str, body: &str| {
        Request::builder()
            .method("POST")
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (s, _) = h.send(post("/api/bmcs/sim/check", &viewer, "")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.send(post("/api/bmcs/sim/check", &operator, "")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["vendor"], "supermicro", "{v}");
    assert_eq!(
        h.state.control.bmc("sim").unwrap().vendor.as_deref(),
        Some("supermicro")
    );
    let (s, v) = h.send(post("/api/bmcs/wrong/check", &operator, "")).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_GATEWAY, Some("auth_failed")),
        "{v}"
    );
    assert!(!v["message"].as_str().unwrap().contains("not-it"), "{v}");
    let (s, _) = h.send(post("/api/bmcs/nobody/check", &operator, "")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let audit = h.state.control.audit_tail(20).unwrap();
    let checks: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "bmc.check")
        .map(|e| (e.target.as_str(), e.detail.split(' ').next().unwrap_or("")))
        .collect();
    assert_eq!(checks, [("wrong", "failed:"), ("sim", "ok")], "{audit:?}");

    let preview = "/api/bmcs/sim/fans/preview";
    let flat = r#"{"zones": [{"zone": 0, "points": [[20, 60]]}]}"#;
    let (s, _) = h.send(post(preview, &viewer, flat)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.send(post(preview, &operator, r#"{"zones": 3}"#)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = h.send(post(preview, &operator, flat)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["decision"]["duties"][0]["duty_percent"], 60, "{v}");
    assert!(v["curve"].is_null(), "nothing was stored: {v}");
    fleet.shutdown().await;
}

#[tokio::test]
async fn agent_events_are_checked_stored_once_and_fan_writes_audited_once() {
    use dcmon_wire::api::PATH_EVENTS;
    use dcmon_wire::command::{PATH_COMMAND_RESULT, PATH_COMMANDS};
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("machine-1", "gpu01").await;
    let now = h.clock.now_ms();
    let post = |h: &mut Harness, path: &str, body: &[u8]| {
        h.signed(path, Some(&agent.id), &agent.key, now, body, body)
    };
    for (path, body, expect) in [
        (PATH_EVENTS, &b"{not json"[..], "events body"),
        (
            PATH_EVENTS,
            br#"[{"id":"a","ts_ms":1,"kind":"fan_write","severity":"loud","message":"m"}]"#,
            "events[0].severity",
        ),
        (
            PATH_EVENTS,
            br#"[{"id":"a","ts_ms":1,"kind":"Fan Write","severity":"info","message":"m"}]"#,
            "events[0].kind",
        ),
        (
            PATH_EVENTS,
            br#"[{"id":"a","ts_ms":1,"kind":"gpu_xid","severity":"info","message":"m","detail":"{"}]"#,
            "events[0].detail",
        ),
        (PATH_COMMANDS, b"[]", "poll body"),
        (PATH_COMMAND_RESULT, b"{\"id\":1}", "command result body"),
    ] {
        let req = post(&mut h, path, body);
        let (s, v) = h.send(req).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(expect), "{path}: {v}");
    }
    let report = br#"[{"id":"w1","ts_ms":1,"kind":"fan_write","severity":"info","message":"curve: Duty { zone: 0, duty: 40 }: ok"},
                     {"id":"x1","ts_ms":2,"kind":"gpu_xid","severity":"critical","message":"GPU 0 reported XID 79","detail":"{\"xid\":79}"}]"#;
    for _ in 0..2 {
        let req = post(&mut h, PATH_EVENTS, report);
        assert_eq!(h.send(req).await.0, StatusCode::NO_CONTENT);
    }
    let events = h
        .state
        .control
        .list_events(&crate::events::EventFilter::default(), 100)
        .unwrap();
    assert_eq!(events.len(), 2, "a resent report stores nothing twice");
    let audited = h
        .state
        .control
        .audit_tail(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "ipmi.fan_write" && e.actor == "agent:gpu01")
        .count();
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn fleet_table_fills_from_pushes_and_streams_changes() {
    use http_body_util::BodyExt as _;
    let mut h = Harness::new(Approval::Auto);
    let agent = h.agent("machine-1", "gpu01").await;
    let mut enc = Encoder::new(9);
    let collection = |ts: i64, k: f64| Scrape {
        timestamp_ms: ts,
        samples: vec![
            MetricSample {
                labels: Labels::new("node_cpu_seconds_total", [("cpu", "0"), ("mode", "idle")])
                    .unwrap(),
                value: 100.0 + 7.5 * k,
            },
            MetricSample {
                labels: Labels::new("node_cpu_seconds_total", [("cpu", "0"), ("mode", "user")])
                    .unwrap(),
                value: 10.0 + 2.5 * k,
            },
            MetricSample {
                labels: Labels::new("node_memory_MemTotal_bytes", []).unwrap(),
                value: 1000.0,
            },
            MetricSample {
                labels: Labels::new("node_memory_MemAvailable_bytes", []).unwrap(),
                value: 400.0,
            },
        ],
    };
    let batch = enc.encode_ok(&[collection(T0 - 20_000, 0.0), collection(T0 - 10_000, 1.0)]);
    assert_eq!(h.push(&agent, &batch).await.0, StatusCode::OK);

    let get = |token: Option<String>| {
        let mut b = Request::get("/api/fleet");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Body::empty()).unwrap()
    };
    assert_eq!(h.send(get(None)).await.0, StatusCode::UNAUTHORIZED);
    let token = h.token(Role::Viewer);
    let (s, v) = h.send(get(Some(token.clone()))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["total"].clone(), v["online"].clone()),
        (1.into(), 1.into())
    );
    let row = &v["rows"][0];
    assert_eq!(row["host"], "gpu01");
    assert_eq!(row["agent_id"], agent.id.as_str());
    assert_eq!(row["status"], "online");
    assert_eq!(
        row["v"][1], 25,
        "CPU busy share between the two collections"
    );
    assert_eq!(row["v"][7], 60, "RAM used");

    // A cursor that is not a version is refused, not guessed at.
    let (s, _) = h
        .send(
            Request::get("/api/fleet/stream?since=yesterday")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The stream's first event holds every row for a client that holds nothing.
    let req = Request::get("/api/fleet/stream")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app(h.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    assert!(text.starts_with("event: fleet\n"), "{text}");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let event: Value = serde_json::from_str(data).unwrap();
    assert_eq!(event["rows"][0]["v"][7], 60);
    assert_eq!(event["removed"], serde_json::json!([]));
}

/// The alert endpoints: viewers read, operators write, bad bodies get 400 naming the
/// problem, and no answer carries a channel secret.
#[tokio::test]
async fn alert_endpoints_check_roles_and_input_and_never_return_secrets() {
    let h = Harness::new(Approval::Auto);
    let viewer = h.token(Role::Viewer);
    let operator = h.token(Role::Operator);
    let call = |method: &str, path: &str, token: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let rule =
        r#"{"name":"Hot","expr":"temp","threshold":{"op":">","value":90,"resolve":80},"for":"1m"}"#;
    let (s, _) = h.send(call("POST", "/api/rules", &viewer, rule)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, v) = h.send(call("POST", "/api/rules", &operator, rule)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, _) = h.send(call("POST", "/api/rules", &operator, rule)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    for (body, expect) in [
        ("not json", "rule body"),
        (r#"{"name":"X","expr":"rate(up["}"#, "expr:"),
        (
            r#"{"name":"X","expr":"up","threshold":{"op":">","value":1,"resolve":5}}"#,
            "resolve: 5",
        ),
        (r#"{"name":"X","expr":"up","surprise":1}"#, "unknown field"),
        (r#"{"name":"GpuTemperatureHigh","expr":"up"}"#, "built-in"),
    ] {
        let (s, v) = h.send(call("POST", "/api/rules", &operator, body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(expect),
            "{body}: {v}"
        );
    }
    let (s, v) = h
        .send(call("POST", "/api/rules/import", &operator, "groups: ["))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = h.send(call("GET", "/api/rules", &viewer, "")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["rules"][0]["name"], "Hot");
    assert!(v["builtins"].as_array().unwrap().len() >= 15);

    let channel =
        r#"{"name":"ops","type":"slack","url":"https://hooks.slack.com/services/T0/B0/SECRET42"}"#;
    let (s, v) = h
        .send(call("POST", "/api/channels", &operator, channel))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert!(!v.to_string().contains("SECRET42"), "{v}");
    let (s, v) = h.send(call("GET", "/api/channels", &viewer, "")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["channels"][0]["type"], "slack");
    assert!(!v.to_string().contains("SECRET42"), "{v}");
    for body in [
        r#"{"name":"x","type":"pager"}"#,
        r#"{"name":"x","type":"slack","url":"http://hooks.example.com/x"}"#,
        r#"{"name":"x","type":"telegram","token":"1:a"}"#,
    ] {
        let (s, v) = h.send(call("POST", "/api/channels", &operator, body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (s, _) = h
        .send(call("POST", "/api/channels/nope/test", &operator, ""))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, v) = h
        .send(call(
            "POST",
            "/api/silences",
            &operator,
            r#"{"matchers":["host=~gpu-.*"],"duration":"1h","comment":"swap"}"#,
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["silence"]["id"].as_i64().unwrap();
    for body in [
        r#"{"matchers":[],"duration":"1h"}"#,
        r#"{"matchers":["host=~("],"duration":"1h"}"#,
        r#"{"matchers":["a=b"]}"#,
    ] {
        let (s, v) = h.send(call("POST", "/api/silences", &operator, body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
    }
    let (s, _) = h
        .send(call(
            "DELETE",
            &format!("/api/silences/{id}"),
            &operator,
            "",
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = h
        .send(call(
            "DELETE",
            &format!("/api/silences/{id}"),
            &operator,
            "",
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, _) = h
        .send(call("GET", "/api/alerts?state=bogus", &viewer, ""))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = h.send(call("GET", "/api/alerts", &viewer, "")).await;
    assert_eq!(
        (s, v["alerts"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0))
    );
    let (s, _) = h
        .send(call("POST", "/api/alerts/99/ack", &operator, ""))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = h
        .send(call("GET", "/api/notifications?status=lost", &viewer, ""))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = h
        .send(call("DELETE", "/api/rules/Hot", &operator, ""))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // Changes made over the API are audited with the caller's address.
    let audited: Vec<(String, Option<String>)> = h
        .state
        .control
        .audit_tail(100)
        .unwrap()
        .into_iter()
        .filter(|e| e.action.starts_with("alert_rule."))
        .map(|e| (e.action, e.remote))
        .collect();
    assert!(
        audited.len() >= 2
            && audited
                .iter()
                .all(|(_, r)| r.as_deref() == Some("127.0.0.1")),
        "{audited:?}"
    );
}
