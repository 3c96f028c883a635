//! Mail over SMTP with lettre (rustls): STARTTLS (required, never silently plain),
//! implicit TLS, or plain for a local relay; AUTH when a user is set. The idempotency
//! key becomes the Message-ID, so a receiving system can drop a duplicate.

use super::{Channel, Notification, SendError, SmtpTls};
use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

pub(super) fn message(ch: &Channel, n: &Notification, key: &str) -> Result<Message, SendError> {
    let c = &ch.record.config;
    let from: Mailbox = c
        .from
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| SendError::permanent(format!("from: {e}")))?;
    let mut b = Message::builder()
        .from(from)
        .subject(n.title())
        .message_id(Some(format!("<{key}@dcmon>")))
        .header(ContentType::TEXT_PLAIN);
    for to in &c.to {
        b = b.to(to
            .parse()
            .map_err(|e| SendError::permanent(format!("to {to:?}: {e}")))?);
    }
    b.body(n.text())
        .map_err(|e| SendError::permanent(format!("building the mail: {e}")))
}

pub(super) async fn send(ch: &Channel, n: &Notification, key: &str) -> Result<(), SendError> {
    let c = &ch.record.config;
    let host = c
        .smtp_host
        .clone()
        .ok_or_else(|| SendError::permanent("the channel has no smtp_host"))?;
    let mail = message(ch, n, key)?;
    let params = || -> Result<TlsParameters, SendError> {
        let mut b = TlsParameters::builder(host.clone());
        if let Some(ca) = &c.tls_ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| SendError::retry(format!("tls_ca_file {}: {e}", ca.display())))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| SendError::retry(format!("tls_ca_file {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        b.build_rustls()
            .map_err(|e| SendError::retry(format!("TLS settings: {e}")))
    };
    let (tls, default_port) = match c.smtp_tls {
        SmtpTls::Starttls => (Tls::Required(params()?), 587),
        SmtpTls::Tls => (Tls::Wrapper(params()?), 465),
        SmtpTls::None => (Tls::None, 25),
    };
    let mut t = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(c.smtp_port.unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(Duration::from_secs(15)));
    if let (Some(user), Some(pw)) = (&c.smtp_user, &ch.secrets.password) {
        t = t.credentials(Credentials::new(
            user.clone(),
            String::from_utf8_lossy(pw.expose()).into_owned(),
        ));
    }
    t.build().send(mail).await.map(|_| ()).map_err(|e| {
        // lettre's message already includes its causes.
        let message = format!("SMTP: {e}");
        if e.is_permanent() {
            SendError::permanent(message)
        } else {
            SendError::retry(message)
        }
    })
}
