//! Alerts end to end: a real server evaluates rules over samples written through
//! remote_write and delivers to real receivers started here: HTTPS receivers (rustls,
//! a self-signed certificate the channels trust through `tls_ca_file`) standing in for
//! Slack, Discord, Teams, Telegram and a webhook, answering 429 and 500 at times; and
//! aiosmtpd (PyPI, in the venv `cargo xtask test` makes under target/py) for mail over
//! STARTTLS and implicit TLS with AUTH.

use super::*;
use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};

/// Alert settings that make a test take seconds, not minutes.
const FAST: &str = "alerts:\n  interval: 1s\n  group_interval: 1s\n  retry_initial: 200ms\n  retry_max: 2s\n  retry_attempts: 8\n";

/// A receiver answer: record the request, and still answer 500 (an ambiguous failure:
/// the message arrived but the sender cannot know).
const ACCEPT_THEN_500: u16 = 1500;

#[derive(Debug, Clone)]
struct Received {
    path: String,
    key: Option<String>,
    body: Value,
    status: u16,
}

#[derive(Default)]
struct Shared {
    /// Answers per path, in order; when none are left: 200.
    script: Mutex<HashMap<String, VecDeque<u16>>>,
    log: Mutex<Vec<Received>>,
    /// Idempotency keys accepted; a repeated key is acknowledged and not counted again.
    accepted: Mutex<Vec<String>>,
}

/// An HTTPS receiver on 127.0.0.1 with a self-signed certificate.
struct Receiver {
    _rt: tokio::runtime::Runtime,
    port: u16,
    shared: Arc<Shared>,
    ca_file: PathBuf,
}

/// The certificate and key for 127.0.0.1, as PEM files in `dir` (made when absent).
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("receiver.crt");
    let key = dir.join("receiver.key");
    if cert.exists() {
        return (cert, key);
    }
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    write(&cert, &ck.cert.pem());
    write(&key, &ck.signing_key.serialize_pem());
    (cert, key)
}

async fn receive(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path().to_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = if path.starts_with("/bad") {
        400
    } else {
        shared
            .script
            .lock()
            .unwrap()
            .get_mut(&path)
            .and_then(VecDeque::pop_front)
            .unwrap_or(200)
    };
    if matches!(status, 200 | ACCEPT_THEN_500)
        && let Some(k) = &key
    {
        let mut accepted = shared.accepted.lock().unwrap();
        if !accepted.contains(k) {
            accepted.push(k.clone());
        }
    }
    shared.log.lock().unwrap().push(Received {
        path: path.clone(),
        key,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        status,
    });
    let telegram = path.ends_with("/sendMessage");
    match status {
        200 if telegram => axum::Json(json!({"ok": true, "result": {"message_id": 1}})).into_response(),
        200 => "ok".into_response(),
        429 => (
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(json!({"ok": false, "error_code": 429, "parameters": {"retry_after": 1}, "retry_after": 1.0})),
        )
            .into_response(),
        s => (
            axum::http::StatusCode::from_u16(if s == ACCEPT_THEN_500 { 500 } else { s }).unwrap(),
            "receiver says no",
        )
            .into_response(),
    }
}

impl Receiver {
    fn start(dir: &Path, port: u16, script: &[(&str, &[u16])]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (cert, key) = self_signed(dir);
        let shared = Arc::new(Shared::default());
        for (path, answers) in script {
            shared
                .script
                .lock()
                .unwrap()
                .insert((*path).to_owned(), answers.iter().copied().collect());
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(shared.clone());
        let (c, k) = (cert.clone(), key.clone());
        rt.block_on(async move {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(c, k)
                .await
                .unwrap();
            let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
            listener.set_nonblocking(true).unwrap();
            let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
            tokio::spawn(server.serve(app.into_make_service()));
        });
        Self {
            _rt: rt,
            port,
            shared,
            ca_file: cert,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> Vec<Received> {
        self.shared.log.lock().unwrap().clone()
    }

    fn on(&self, path: &str) -> Vec<Received> {
        self.log().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `path` answered 200 to a request whose body satisfies `pred`.
    fn wait_for(
        &self,
        path: &str,
        what: &str,
        server: &Proc,
        pred: impl Fn(&Value) -> bool,
    ) -> Received {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self
                .on(path)
                .into_iter()
                .find(|r| r.status == 200 && pred(&r.body))
            {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{path}: no {what} within 30 s; received {:#?}\nserver log:\n{}",
                self.on(path),
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Checks a payload against the shape its service documents.
fn check_shape(r: &Received) {
    let b = &r.body;
    let ctx = || format!("{}: {b:#}", r.path);
    match r.path.as_str() {
        "/slack" => {
            assert!(
                b["text"].as_str().is_some_and(|t| !t.is_empty()),
                "slack text: {}",
                ctx()
            );
            for block in b["blocks"].as_array().expect("slack blocks") {
                assert!(
                    matches!(block["type"].as_str(), Some("header" | "section")),
                    "{}",
                    ctx()
                );
                assert!(
                    block["text"]["text"]
                        .as_str()
                        .is_some_and(|t| t.chars().count() <= 3000),
                    "{}",
                    ctx()
                );
            }
        }
        "/discord" => {
            let content = b["content"].as_str().expect("discord content");
            assert!(
                !content.is_empty() && content.chars().count() <= 2000,
                "{}",
                ctx()
            );
            let embeds = b["embeds"].as_array().expect("discord embeds");
            assert!(embeds.len() <= 10, "{}", ctx());
            for e in embeds {
                assert!(
                    e["title"]
                        .as_str()
                        .is_some_and(|t| t.chars().count() <= 256),
                    "{}",
                    ctx()
                );
                assert!(
                    e["description"]
                        .as_str()
                        .is_some_and(|t| t.chars().count() <= 4096),
                    "{}",
                    ctx()
                );
                assert!(e["color"].is_u64(), "{}", ctx());
            }
        }
        "/teams" => {
            assert_eq!(b["type"], "message", "{}", ctx());
            let a = &b["attachments"][0];
            assert_eq!(
                a["contentType"],
                "application/vnd.microsoft.card.adaptive",
                "{}",
                ctx()
            );
            assert_eq!(a["content"]["type"], "AdaptiveCard", "{}", ctx());
            assert!(a["content"]["version"].is_string(), "{}", ctx());
            assert!(
                a["content"]["body"]
                    .as_array()
                    .is_some_and(|b| b.iter().all(|e| e["type"] == "TextBlock")),
                "{}",
                ctx()
            );
        }
        p if p.ends_with("/sendMessage") => {
            assert_eq!(b["chat_id"], "-1001234", "{}", ctx());
            assert!(
                b["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty() && t.chars().count() <= 4096),
                "{}",
                ctx()
            );
        }
        "/hook" | "/bad" => {
            assert_eq!(b["version"], "4", "{}", ctx());
            assert!(
                matches!(b["status"].as_str(), Some("firing" | "resolved")),
                "{}",
                ctx()
            );
            for k in ["groupKey", "receiver", "externalURL"] {
                assert!(b[k].is_string(), "{k}: {}", ctx());
            }
            for k in ["groupLabels", "commonLabels", "commonAnnotations"] {
                assert!(b[k].is_object(), "{k}: {}", ctx());
            }
            for a in b["alerts"].as_array().expect("alerts") {
                for k in [
                    "status",
                    "startsAt",
                    "endsAt",
                    "generatorURL",
                    "fingerprint",
                ] {
                    assert!(a[k].is_string(), "{k}: {}", ctx());
                }
                assert!(a["labels"]["alertname"].is_string(), "{}", ctx());
            }
        }
        other => panic!("unexpected request to {other}: {b}"),
    }
}

/// Writes `e2e_temp{host="gpu-e2e"} value` now.
fn put_temp(s: &OperatorServer, value: f64) {
    let body = encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: "e2e_temp".into(),
                },
                Label {
                    name: "host".into(),
                    value: "gpu-e2e".into(),
                },
            ],
            samples: vec![Sample {
                value,
                timestamp: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as i64,
            }],
        }],
    });
    let status = s.http.rt.block_on(async {
        s.http
            .http
            .post(format!("{}/api/v1/write", s.base))
            .bearer_auth(&s.token)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204, "remote_write");
}

fn cli(s: &OperatorServer, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(dcmon());
    c.args(args).args(["--config", &s.cfg]);
    for (k, v) in env {
        c.env(k, v);
    }
    stdout(&run(&mut c))
}

fn add_rule(s: &OperatorServer, channels: &[&str]) {
    let (status, body) = s
        .http
        .post(
            &format!("{}/api/rules", s.base),
            &s.token,
            &json!({
                "name": "E2eTemperature",
                "expr": "e2e_temp",
                "for": "1s",
                "severity": "critical",
                "threshold": {"op": ">", "value": 90, "resolve": 80},
                "annotations": {"summary": "{{ $labels.host }} at {{ $value }} C"},
                "channels": channels,
            }),
        )
        .unwrap();
    assert_eq!(status, 201, "{body}");
}

fn get(s: &OperatorServer, path: &str) -> Value {
    let (status, body) = s
        .http
        .get(&format!("{}{path}", s.base), Some(&s.token))
        .unwrap();
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn wait_until(what: &str, server: &Proc, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what} within 30 s:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alerts_reach_slack_discord_teams_telegram_and_webhook_through_429_and_500() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(
        dir.path(),
        free_port(),
        &[
            ("/slack", &[429, 500]),
            ("/discord", &[429]),
            ("/teams", &[500]),
            ("/bot123:SECRETTOKEN/sendMessage", &[429]),
            ("/hook", &[ACCEPT_THEN_500]),
        ],
    );
    let s = OperatorServer::start_with(dir.path(), FAST);
    let ca = rx.ca_file.to_str().unwrap().to_owned();
    for (name, kind, path) in [
        ("slack", "slack", "/slack"),
        ("discord", "discord", "/discord"),
        ("teams", "teams", "/teams"),
        ("hook", "webhook", "/hook"),
        ("bad", "webhook", "/bad"),
    ] {
        cli(
            &s,
            &[
                "channels",
                "add",
                "--name",
                name,
                "--type",
                kind,
                "--url-env",
                "HOOK_URL",
                "--tls-ca-file",
                &ca,
            ],
            &[("HOOK_URL", &rx.url(path))],
        );
    }
    cli(
        &s,
        &[
            "channels",
            "add",
            "--name",
            "telegram",
            "--type",
            "telegram",
            "--token-env",
            "BOT_TOKEN",
            "--chat-id",
            "-1001234",
            "--api-url",
            &rx.url(""),
            "--tls-ca-file",
            &ca,
        ],
        &[("BOT_TOKEN", "123:SECRETTOKEN")],
    );
    let listed = cli(&s, &["channels", "list", "--json"], &[]);
    assert!(
        !listed.contains("SECRETTOKEN") && !listed.contains("/slack"),
        "{listed}"
    );
    add_rule(
        &s,
        &["slack", "discord", "teams", "telegram", "hook", "bad"],
    );

    put_temp(&s, 95.0);
    let firing = |b: &Value| {
        let t = b.to_string();
        t.contains("FIRING") || t.contains("\"firing\"")
    };
    let tg = "/bot123:SECRETTOKEN/sendMessage";
    for path in ["/slack", "/discord", "/teams", tg, "/hook"] {
        let r = rx.wait_for(path, "firing message", &s.proc, firing);
        assert!(r.body.to_string().contains("gpu-e2e"), "{path}: {}", r.body);
    }
    for r in rx.log() {
        check_shape(&r);
    }
    // Every attempt of one message carries the same key; the webhook's receiver got the
    // message twice (it answered 500 after taking it) and counted it once.
    for path in ["/slack", "/discord", "/teams", tg, "/hook"] {
        let keys: HashSet<_> = rx.on(path).into_iter().map(|r| r.key.unwrap()).collect();
        assert_eq!(keys.len(), 1, "{path}");
    }
    assert_eq!(rx.on("/hook").len(), 2);
    let hook_key = rx.on("/hook")[0].key.clone().unwrap();
    assert_eq!(
        rx.shared
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter(|k| **k == hook_key)
            .count(),
        1
    );
    let alert = &rx.wait_for("/hook", "firing", &s.proc, firing).body["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "E2eTemperature");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["annotations"]["summary"], "gpu-e2e at 95 C");

    // The outbox shows attempts and the permanent failure; the counter has it too.
    wait_until("the bad channel's delivery marked failed", &s.proc, || {
        get(&s, "/api/notifications?status=failed")["notifications"]
            .as_array()
            .is_some_and(|n| n.len() == 1)
    });
    let failed = get(&s, "/api/notifications?status=failed");
    assert_eq!(failed["notifications"][0]["channel"], "bad");
    assert!(
        failed["notifications"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("HTTP 400")
    );
    let sent = get(&s, "/api/notifications?status=sent");
    let attempts: HashMap<String, u64> = sent["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["channel"].as_str().unwrap().to_owned(),
                n["attempts"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect: HashMap<String, u64> = [
        ("slack", 3),
        ("discord", 2),
        ("teams", 2),
        ("telegram", 2),
        ("hook", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(attempts, expect);
    wait_until(
        "dcmon_notifications_failed_total{channel=\"bad\"} 1",
        &s.proc,
        || {
            let q = get(&s, "/api/v1/query?query=dcmon_notifications_failed_total");
            q["data"]["result"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|x| x["metric"]["channel"] == "bad" && x["value"][1] == "1")
            })
        },
    );

    // Listed, acknowledged from the CLI; resolved messages follow the value down.
    let alerts = get(&s, "/api/alerts?state=firing");
    let id = alerts["alerts"][0]["id"].as_i64().unwrap();
    assert_eq!(alerts["alerts"].as_array().unwrap().len(), 1);
    let acked = cli(&s, &["alerts", "ack", &id.to_string()], &[]);
    assert!(acked.contains("acknowledged"), "{acked}");
    put_temp(&s, 85.0);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        get(&s, "/api/alerts?state=firing")["alerts"][0]["id"] == id,
        "85 is above the resolve threshold"
    );
    put_temp(&s, 70.0);
    let resolved = |b: &Value| {
        let t = b.to_string();
        t.contains("RESOLVED") || t.contains("\"resolved\"")
    };
    for path in ["/slack", "/discord", "/teams", tg, "/hook"] {
        rx.wait_for(path, "resolved message", &s.proc, resolved);
    }
    let history = get(&s, &format!("/api/alerts/{id}"));
    let states: Vec<&str> = history["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["pending", "firing", "resolved"]);
    assert!(
        history["alert"]["acked_by"]
            .as_str()
            .unwrap()
            .starts_with("cli:"),
        "{history}"
    );

    // A test message on demand.
    let out = cli(&s, &["channels", "test", "slack"], &[]);
    assert!(out.contains("delivered"), "{out}");
    rx.wait_for("/slack", "test message", &s.proc, |b| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.contains("test message"))
    });
    for r in rx.log() {
        check_shape(&r);
    }
    // Secrets never reach the log.
    let log = s.proc.log();
    assert!(
        !log.contains("SECRETTOKEN") && !log.contains("/slack"),
        "{log}"
    );
}

/// The venv with aiosmtpd that `cargo xtask test` makes.
fn python_with_aiosmtpd() -> PathBuf {
    let py = std::env::var_os("DCMON_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/py"))
        .join("bin/python3");
    let ok = Command::new(&py)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "aiosmtpd is missing: {} cannot import it. Run `cargo xtask test` (it makes the venv), or by hand: \
         python3 -m venv target/py && target/py/bin/pip install aiosmtpd",
        py.display()
    );
    py
}

const SMTP_SERVER: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

out, port, mode, cert, key = sys.argv[1:6]

class Store:
    async def handle_DATA(self, server, session, envelope):
        n = len([f for f in os.listdir(out) if f.endswith(".eml")])
        tmp = os.path.join(out, f"{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(out, f"{n}.eml"))
        return "250 OK"

def auth(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"alerts" and data.password == b"mail-pw-42"
    return AuthResult(success=ok, handled=False)

ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
if mode == "starttls":
    c = Controller(Store(), hostname="127.0.0.1", port=int(port), tls_context=ctx,
                   require_starttls=True, authenticator=auth, auth_required=True)
else:
    c = Controller(Store(), hostname="127.0.0.1", port=int(port), ssl_context=ctx,
                   authenticator=auth, auth_required=True, auth_require_tls=False)
c.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"#;

/// aiosmtpd on `port`, storing each message as a file in `out`.
fn smtp_server(
    py: &Path,
    dir: &Path,
    out: &Path,
    port: u16,
    mode: &str,
    cert: &Path,
    key: &Path,
) -> Proc {
    std::fs::create_dir_all(out).unwrap();
    let script = dir.join("smtp_server.py");
    write(&script, SMTP_SERVER);
    let p = Proc::spawn(
        "aiosmtpd",
        Command::new(py)
            .arg(&script)
            .arg(out)
            .arg(port.to_string())
            .arg(mode)
            .arg(cert)
            .arg(key),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "aiosmtpd did not start:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

fn mails(out: &Path) -> Vec<String> {
    let mut files: Vec<_> = std::fs::read_dir(out)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

#[test]
fn mail_is_delivered_over_starttls_and_implicit_tls_with_auth_and_a_wrong_password_fails() {
    let py = python_with_aiosmtpd();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let (p1, p2) = (free_port(), free_port());
    let (out1, out2) = (dir.path().join("starttls"), dir.path().join("tls"));
    let _smtp1 = smtp_server(&py, dir.path(), &out1, p1, "starttls", &cert, &key);
    let _smtp2 = smtp_server(&py, dir.path(), &out2, p2, "tls", &cert, &key);
    let s = OperatorServer::start_with(dir.path(), FAST);
    let ca = cert.to_str().unwrap();
    for (name, port, tls, pw) in [
        ("mail-starttls", p1, "starttls", "mail-pw-42"),
        ("mail-tls", p2, "tls", "mail-pw-42"),
        ("mail-badpw", p1, "starttls", "wrong"),
    ] {
        cli(
            &s,
            &[
                "channels",
                "add",
                "--name",
                name,
                "--type",
                "email",
                "--smtp-host",
                "127.0.0.1",
                "--smtp-port",
                &port.to_string(),
                "--smtp-tls",
                tls,
                "--smtp-user",
                "alerts",
                "--password-env",
                "SMTP_PW",
                "--from",
                "dcmon <dcmon@example.org>",
                "--to",
                "oncall@example.org",
                "--tls-ca-file",
                ca,
            ],
            &[("SMTP_PW", pw)],
        );
    }
    let out = cli(&s, &["channels", "test", "mail-tls"], &[]);
    assert!(out.contains("delivered"), "{out}");
    assert!(mails(&out2)[0].contains("dcmon test message for channel mail-tls"));
    add_rule(&s, &["mail-starttls", "mail-tls", "mail-badpw"]);
    put_temp(&s, 97.0);
    wait_until(
        "a firing mail over STARTTLS and one over TLS",
        &s.proc,
        || mails(&out1).len() == 1 && mails(&out2).len() == 2,
    );
    for m in [&mails(&out1)[0], &mails(&out2)[1]] {
        assert!(
            m.contains("Subject: [FIRING:1] E2eTemperature (critical)"),
            "{m}"
        );
        assert!(m.contains("To: oncall@example.org"), "{m}");
        assert!(m.contains("gpu-e2e at 97 C"), "{m}");
        let id = m
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
            .expect("Message-ID");
        assert!(id.trim_end().ends_with("@dcmon>"), "{id}");
    }
    wait_until("the wrong password failing for good", &s.proc, || {
        get(&s, "/api/notifications?status=failed")["notifications"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["channel"] == "mail-badpw"))
    });
    let failed = get(&s, "/api/notifications?status=failed");
    let err = failed["notifications"][0]["last_error"].as_str().unwrap();
    assert!(
        err.contains("535") || err.to_lowercase().contains("auth"),
        "{err}"
    );
    assert_eq!(
        failed["notifications"][0]["attempts"], 1,
        "a permanent refusal is not retried"
    );
    assert!(!s.proc.log().contains("mail-pw-42"));
}

#[test]
fn an_alert_fired_before_a_sigkill_is_delivered_exactly_once_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut s = OperatorServer::start_with(dir.path(), FAST);
    // The receiver's certificate exists before the receiver runs: the channel needs it.
    let (cert, _) = self_signed(dir.path());
    let url = format!("https://127.0.0.1:{port}/hook");
    cli(
        &s,
        &[
            "channels",
            "add",
            "--name",
            "hook",
            "--type",
            "webhook",
            "--url-env",
            "U",
            "--tls-ca-file",
            cert.to_str().unwrap(),
        ],
        &[("U", &url)],
    );
    add_rule(&s, &["hook"]);
    put_temp(&s, 99.0);
    // Fired and in the outbox, but the receiver is down: attempts fail.
    wait_until(
        "a failed attempt on the queued notification",
        &s.proc,
        || {
            get(&s, "/api/notifications?status=queued")["notifications"]
                .as_array()
                .is_some_and(|n| n.len() == 1 && n[0]["attempts"].as_u64().unwrap_or(0) >= 1)
        },
    );
    s.kill();
    // The receiver comes up with the same certificate, then the server again.
    let rx = Receiver::start(dir.path(), port, &[]);
    s.restart();
    rx.wait_for("/hook", "the firing message", &s.proc, |b| {
        b["status"] == "firing"
    });
    // A few evaluation intervals later: no second message, one notification in all.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.on("/hook").len(), 1, "{:#?}", rx.on("/hook"));
    assert_eq!(rx.shared.accepted.lock().unwrap().len(), 1);
    let all = get(&s, "/api/notifications");
    assert_eq!(all["notifications"].as_array().unwrap().len(), 1, "{all}");
    assert_eq!(all["notifications"][0]["status"], "sent");
    assert_eq!(
        get(&s, "/api/alerts?state=firing")["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn flapping_input_sends_one_message_thanks_to_hysteresis_and_few_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start(dir.path(), free_port(), &[]);
    let s = OperatorServer::start_with(
        dir.path(),
        "alerts:\n  interval: 1s\n  group_interval: 3s\n  retry_initial: 200ms\n",
    );
    cli(
        &s,
        &[
            "channels",
            "add",
            "--name",
            "hook",
            "--type",
            "webhook",
            "--url-env",
            "U",
            "--tls-ca-file",
            rx.ca_file.to_str().unwrap(),
        ],
        &[("U", &rx.url("/hook"))],
    );
    add_rule(&s, &["hook"]);
    // Between the thresholds (90 fires, 80 resolves) the alert stays firing.
    for i in 0..24 {
        put_temp(&s, if i % 2 == 0 { 95.0 } else { 85.0 });
        std::thread::sleep(Duration::from_millis(250));
    }
    rx.wait_for("/hook", "firing", &s.proc, |b| b["status"] == "firing");
    assert_eq!(rx.on("/hook").len(), 1, "{:#?}", rx.on("/hook"));
    // Across both thresholds, switching every 700 ms (so the 1 s evaluations see both
    // values): alerts resolve and fire again and again, messages stay grouped.
    for i in 0..10 {
        put_temp(&s, if i % 2 == 0 { 70.0 } else { 95.0 });
        std::thread::sleep(Duration::from_millis(700));
    }
    std::thread::sleep(Duration::from_secs(4));
    let alerts = get(&s, "/api/alerts?since_ms=0")["alerts"]
        .as_array()
        .unwrap()
        .len();
    let n = rx.on("/hook").len();
    assert!(alerts >= 2, "the input did flap: {alerts} alerts");
    // 7 s of flapping and 4 s after with a 3 s group interval: one message per
    // interval at most, besides the first.
    assert!(
        n <= 5,
        "{n} messages for {alerts} alerts: {:#?}",
        rx.on("/hook")
    );
    for r in rx.log() {
        check_shape(&r);
    }
}

#[test]
fn rules_check_agrees_with_promtool_and_import_takes_the_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yml");
    write(
        &good,
        "groups:\n  - name: node\n    rules:\n      - alert: HostDown\n        expr: up == 0\n        for: 5m\n        labels:\n          severity: critical\n        annotations:\n          summary: \"{{ $labels.instance }} down\"\n      - record: job:up:sum\n        expr: sum by (job) (up)\n      - alert: DiskFull\n        expr: dcmon_filesystem_used_ratio > 0.9\n",
    );
    let bad = dir.path().join("bad.yml");
    write(
        &bad,
        "groups:\n  - name: node\n    rules:\n      - alert: Fine\n        expr: up == 0\n      - alert: Broken\n        expr: rate(up[5m]\n",
    );
    let check = |file: &Path| {
        Command::new(dcmon())
            .args(["rules", "check"])
            .arg(file)
            .output()
            .unwrap()
    };
    let promtool = |file: &Path| {
        Command::new("promtool")
            .args(["check", "rules"])
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = check(&good);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        stdout(&ok).contains("SUCCESS: 2 rules found"),
        "{}",
        stdout(&ok)
    );
    let failed = check(&bad);
    assert_eq!(failed.status.code(), Some(1));
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(
        err.contains(&format!("{}:6: rule \"Broken\": expr:", bad.display())),
        "{err}"
    );
    // promtool (apt `prometheus`, installed by `cargo xtask test`) judges the same files.
    assert_eq!(
        promtool(&good).status.code(),
        Some(0),
        "promtool accepts the good file"
    );
    assert_eq!(
        promtool(&bad).status.code(),
        Some(1),
        "promtool refuses the bad file too"
    );
    let s = OperatorServer::start(dir.path());
    let refused = Command::new(dcmon())
        .args(["rules", "import"])
        .arg(&bad)
        .args(["--config", &s.cfg])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing imported"));
    let out = cli(&s, &["rules", "import", good.to_str().unwrap()], &[]);
    assert!(out.contains("imported 2 rules"), "{out}");
    let rules = get(&s, "/api/rules");
    let names: Vec<&str> = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["DiskFull", "HostDown"]);
    assert_eq!(rules["rules"][1]["severity"], "critical");
    assert_eq!(rules["rules"][1]["for"], "5m");
    assert!(rules["builtins"].as_array().unwrap().len() >= 15);
}
