//! Discord webhooks: `{"content": ..., "embeds": [...]}` with content at most 2000
//! characters, at most 10 embeds, each title 256 and description 4096 characters
//! (discord.com/developers/docs/resources/webhook#execute-webhook).

use super::Notification;
use serde_json::{Value, json};

const RED: u32 = 0xE0_1E_5A;
const GREEN: u32 = 0x2E_B8_86;
const BLUE: u32 = 0x36_C5_F0;

pub(super) fn payload(n: &Notification) -> Value {
    let lines = n.lines();
    let embeds: Vec<Value> = if n.test {
        vec![json!({"title": n.title(), "description": lines.join("\n"), "color": BLUE})]
    } else {
        n.alerts
            .iter()
            .zip(&lines)
            .take(10)
            .map(|(a, line)| {
                let name = a.labels.get("alertname").map(String::as_str).unwrap_or("alert");
                json!({
                    "title": format!("{} {name}", a.status.to_uppercase()).chars().take(256).collect::<String>(),
                    "description": line.chars().take(4096).collect::<String>(),
                    "color": if a.status == "firing" { RED } else { GREEN },
                })
            })
            .collect()
    };
    json!({
        "content": n.title().chars().take(2000).collect::<String>(),
        "embeds": embeds,
        "allowed_mentions": {"parse": []},
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn content_and_coloured_embeds() {
        let p = super::payload(&super::super::tests::sample());
        assert_eq!(p["content"], "[FIRING:1] GpuTemperatureHigh (critical)");
        assert_eq!(p["embeds"].as_array().unwrap().len(), 2);
        assert_eq!(p["embeds"][0]["color"], super::RED);
        assert_eq!(p["embeds"][1]["color"], super::GREEN);
    }
}
