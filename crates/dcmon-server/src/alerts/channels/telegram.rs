//! Telegram Bot API `sendMessage` (core.telegram.org/bots/api#sendmessage): plain text
//! (no parse mode, so label values need no escaping), at most 4096 characters. The bot
//! token is part of the URL: it never appears in an error (reqwest errors are reported
//! without their URL).

use super::{Channel, Notification, SendError, post_json};
use serde_json::json;

const DEFAULT_API: &str = "https://api.telegram.org";
const MAX_TEXT: usize = 4096;

pub(super) fn payload(chat_id: &str, n: &Notification) -> serde_json::Value {
    json!({
        "chat_id": chat_id,
        "text": n.text().chars().take(MAX_TEXT).collect::<String>(),
        "disable_web_page_preview": true,
    })
}

pub(super) async fn send(
    client: &reqwest::Client,
    ch: &Channel,
    n: &Notification,
    key: &str,
) -> Result<(), SendError> {
    let c = &ch.record.config;
    let token = ch
        .secrets
        .token
        .as_ref()
        .ok_or_else(|| SendError::permanent("the channel has no bot token"))?;
    let chat = c
        .chat_id
        .as_deref()
        .ok_or_else(|| SendError::permanent("the channel has no chat_id"))?;
    let base = c
        .api_url
        .as_deref()
        .unwrap_or(DEFAULT_API)
        .trim_end_matches('/');
    let url = format!(
        "{base}/bot{}/sendMessage",
        String::from_utf8_lossy(token.expose())
    );
    let resp = post_json(client, &url, &payload(chat, n), key, None).await?;
    let body: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| SendError::retry(format!("reading the answer: {}", e.without_url())))?;
    if body.get("ok") != Some(&serde_json::Value::Bool(true)) {
        return Err(SendError::permanent(format!(
            "Telegram answered ok=false: {}",
            body.get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("no description")
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn chat_and_text() {
        let p = super::payload("-100123", &super::super::tests::sample());
        assert_eq!(p["chat_id"], "-100123");
        assert!(p["text"].as_str().unwrap().starts_with("[FIRING:1]"));
    }
}
