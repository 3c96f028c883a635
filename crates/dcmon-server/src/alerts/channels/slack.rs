//! Slack incoming webhooks: `{"text": ..., "blocks": [...]}`. `text` is the
//! notification fallback Slack requires next to blocks; section text is at most 3000
//! characters (api.slack.com/reference/block-kit/blocks#section).

use super::Notification;
use serde_json::{Value, json};

const MAX_SECTION: usize = 3000;

pub(super) fn payload(n: &Notification) -> Value {
    let body: String = n.lines().join("\n").chars().take(MAX_SECTION).collect();
    json!({
        "text": n.title(),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": n.title().chars().take(150).collect::<String>()}},
            {"type": "section", "text": {"type": "mrkdwn", "text": body}},
        ],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn has_text_and_blocks() {
        let p = super::payload(&super::super::tests::sample());
        assert_eq!(p["text"], "[FIRING:1] GpuTemperatureHigh (critical)");
        assert_eq!(p["blocks"][1]["type"], "section");
        assert!(
            p["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("gpu-1")
        );
    }
}
