//! A generic webhook with Alertmanager's payload (version 4,
//! prometheus.io/docs/alerting/latest/configuration/#webhook_config), so receivers
//! written for Alertmanager work unchanged. Each POST carries `Idempotency-Key`.

use super::Notification;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into())
}

/// Labels every alert of the notification has with the same value.
fn common(maps: &[&BTreeMap<String, String>]) -> BTreeMap<String, String> {
    let Some(first) = maps.first() else {
        return BTreeMap::new();
    };
    first
        .iter()
        .filter(|(k, v)| maps.iter().all(|m| m.get(*k) == Some(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(super) fn payload(n: &Notification) -> Value {
    let labels: Vec<_> = n.alerts.iter().map(|a| &a.labels).collect();
    let annotations: Vec<_> = n.alerts.iter().map(|a| &a.annotations).collect();
    let group_labels: BTreeMap<String, String> = common(&labels)
        .into_iter()
        .filter(|(k, _)| k == "alertname")
        .collect();
    let alerts: Vec<Value> = n
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": a.status,
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at_ms),
                "endsAt": a.ends_at_ms.map(rfc3339).unwrap_or_else(|| "0001-01-01T00:00:00Z".into()),
                "generatorURL": format!("{}/alerts/{}", n.external_url, a.id),
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status,
        "receiver": n.channel,
        "groupLabels": group_labels,
        "commonLabels": common(&labels),
        "commonAnnotations": common(&annotations),
        "externalURL": n.external_url,
        "alerts": alerts,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn alertmanager_shape() {
        let p = super::payload(&super::super::tests::sample());
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["groupLabels"]["alertname"], "GpuTemperatureHigh");
        assert_eq!(p["commonLabels"]["severity"], "critical");
        assert!(p["commonLabels"].get("host").is_none());
        assert_eq!(p["alerts"][0]["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(p["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(p["alerts"][1]["endsAt"], "2023-11-14T22:14:20Z");
    }
}
