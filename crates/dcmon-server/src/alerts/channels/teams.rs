//! Microsoft Teams through a Workflows ("Post to a channel when a webhook request is
//! received") webhook: a message with one Adaptive Card attachment
//! (learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).

use super::Notification;
use serde_json::{Value, json};

pub(super) fn payload(n: &Notification) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": n.title(),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
        "color": if n.firing().next().is_some() { "Attention" } else { "Good" },
    })];
    body.extend(
        n.lines()
            .into_iter()
            .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true})),
    );
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": [{"type": "Action.OpenUrl", "title": "Open dcmon", "url": n.external_url}],
            },
        }],
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_adaptive_card() {
        let p = super::payload(&super::super::tests::sample());
        assert_eq!(p["type"], "message");
        let card = &p["attachments"][0];
        assert_eq!(
            card["contentType"],
            "application/vnd.microsoft.card.adaptive"
        );
        assert_eq!(card["content"]["type"], "AdaptiveCard");
        assert_eq!(card["content"]["body"].as_array().unwrap().len(), 3);
    }
}
