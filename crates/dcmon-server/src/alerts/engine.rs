//! The running engine: two tasks.
//!
//! The evaluator wakes every 200 ms. It reloads rules when the control store's
//! `data_version` moved (so `dcmon rules add` in another process takes effect at once),
//! evaluates each rule whose interval came round or whose pending alert's `for:`
//! elapses now (so a transition is not held back to the next interval), and stores the
//! transitions. The work runs on the blocking pool.
//!
//! The dispatcher groups alerts whose state has not been notified (per channel and
//! rule, at most one message per `group_interval`), commits the notifications to the
//! outbox together with the alerts' notified states, then sends what is due, retrying
//! with exponential back-off and jitter. After a restart queued notifications are sent
//! at once, and nothing already notified is notified again.

use super::AlertError;
use super::builtins::{self, CompiledRule, Source};
use super::channels::{self, AlertMessage, Channel, Clients, Notification};
use super::lifecycle::{self, Alert, State, Transition};
use super::silences::{ActiveSilences, LabelMatcher};
use super::store::AlertRecord;
use crate::secrets::SecretBox;
use crate::state::AppState;
use dcmon_promql::QueryValue;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

const TICK: Duration = Duration::from_millis(200);
/// Most deliveries in flight at once.
const MAX_IN_FLIGHT: usize = 16;

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Starts the evaluator and the dispatcher (when `alerts.enabled`).
pub(crate) fn spawn(state: AppState) {
    if !state.config().alerts.enabled {
        tracing::info!("alerts are turned off (alerts.enabled: false)");
        return;
    }
    let wake = Arc::new(Notify::new());
    tokio::spawn(evaluator(state.clone(), wake.clone()));
    tokio::spawn(dispatcher(state, wake));
}

/// Rules and their alerts, moved to the blocking pool for each evaluation.
struct Evaluator {
    rules: Vec<CompiledRule>,
    /// Per rule: its pending and firing alerts by fingerprint.
    active: HashMap<String, HashMap<String, Alert>>,
    next_eval: HashMap<String, i64>,
    /// The last error of each failing rule, logged when it changes.
    errors: HashMap<String, String>,
}

impl Evaluator {
    fn load(state: &AppState) -> Result<Self, AlertError> {
        let mut active: HashMap<String, HashMap<String, Alert>> = HashMap::new();
        for a in state.control.open_alerts()? {
            active
                .entry(a.rule.clone())
                .or_default()
                .insert(a.fingerprint.clone(), a);
        }
        Ok(Self {
            rules: Vec::new(),
            active,
            next_eval: HashMap::new(),
            errors: HashMap::new(),
        })
    }

    /// Loads the rules in force; alerts of rules that are gone resolve.
    fn reload(&mut self, state: &AppState, now: i64) -> Result<(), AlertError> {
        let config = state.config();
        let mut rules = builtins::rules(&config.alerts);
        for r in state.control.list_alert_rules()? {
            match dcmon_promql::parse(&r.spec.expr) {
                Ok(expr) => rules.push(CompiledRule {
                    spec: r.spec,
                    source: Source::Promql(expr),
                    builtin: false,
                }),
                Err(e) => {
                    tracing::warn!(rule = %r.spec.name, error = %e, "stored rule does not parse; skipped")
                }
            }
        }
        let names: HashSet<&str> = rules.iter().map(|r| r.spec.name.as_str()).collect();
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|k| !names.contains(k.as_str()))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for name in gone {
            if let Some(alerts) = self.active.remove(&name) {
                for (_, mut a) in alerts {
                    if a.state == State::Firing {
                        a.state = State::Resolved;
                        a.resolved_ms = Some(now);
                        changes.push((Transition::Resolved, a));
                    } else {
                        changes.push((Transition::Dropped, a));
                    }
                }
            }
        }
        state
            .control
            .apply_transitions(&mut changes, &BTreeMap::new(), now)?;
        self.next_eval.retain(|k, _| names.contains(k.as_str()));
        self.rules = rules;
        Ok(())
    }

    /// When the next rule is due.
    fn next_wake(&self) -> i64 {
        self.rules
            .iter()
            .map(|r| {
                let interval = self.next_eval.get(&r.spec.name).copied().unwrap_or(0);
                let pending = self
                    .active
                    .get(&r.spec.name)
                    .and_then(|a| lifecycle::next_due(&r.spec, a))
                    .unwrap_or(i64::MAX);
                interval.min(pending)
            })
            .min()
            .unwrap_or(i64::MAX)
    }

    /// Evaluates every due rule; returns whether anything fired or resolved.
    fn run(&mut self, state: &AppState, now: i64) -> Result<bool, AlertError> {
        let interval = ms(state.config().alerts.interval);
        let started = std::time::Instant::now();
        let mut evaluated = 0usize;
        let mut changes = Vec::new();
        let mut channels = BTreeMap::new();
        for rule in &self.rules {
            let name = &rule.spec.name;
            let active = self.active.entry(name.clone()).or_default();
            let due_interval = self.next_eval.get(name).is_none_or(|t| *t <= now);
            let due_pending = lifecycle::next_due(&rule.spec, active).is_some_and(|t| t <= now);
            if !due_interval && !due_pending {
                continue;
            }
            if due_interval {
                self.next_eval.insert(name.clone(), now + interval);
            }
            evaluated += 1;
            let series = match select(state, rule, now) {
                Ok(s) => {
                    if self.errors.remove(name).is_some() {
                        tracing::info!(rule = %name, "rule evaluates again");
                    }
                    s
                }
                Err(e) => {
                    if self.errors.get(name) != Some(&e) {
                        tracing::warn!(rule = %name, error = %e, "evaluating rule");
                        self.errors.insert(name.clone(), e);
                    }
                    continue;
                }
            };
            let out = lifecycle::step(&rule.spec, &series, active, now);
            if !out.is_empty() {
                channels.insert(name.clone(), rule.spec.channels.clone());
            }
            changes.extend(out);
        }
        // Full cycles only (every rule due on its interval), so the series is the cost
        // of one cycle, not of the wake-ups for a `for:` elapsing.
        if evaluated == self.rules.len()
            && evaluated > 0
            && let Err(e) = record_evaluation(state, now, evaluated, started.elapsed())
        {
            tracing::debug!(error = %e, "recording the evaluation cost");
        }
        if changes.is_empty() {
            return Ok(false);
        }
        state
            .control
            .apply_transitions(&mut changes, &channels, now)?;
        // New alerts got their ids: keep them in the active map.
        for (t, a) in &changes {
            if matches!(t, Transition::Pending | Transition::Firing)
                && let Some(slot) = self
                    .active
                    .get_mut(&a.rule)
                    .and_then(|m| m.get_mut(&a.fingerprint))
            {
                slot.id = a.id;
            }
        }
        Ok(changes
            .iter()
            .any(|(t, _)| matches!(t, Transition::Firing | Transition::Resolved)))
    }
}

/// Writes how long the last full evaluation cycle took and how many rules it evaluated
/// (`dcmon_alerts_evaluation_seconds`, `dcmon_alerts_evaluated_rules`), so the cost of
/// the rules can be watched and alerted on like any series.
fn record_evaluation(
    state: &AppState,
    now: i64,
    rules: usize,
    took: Duration,
) -> Result<(), AlertError> {
    let labels = [
        dcmon_wire::Labels::new("dcmon_alerts_evaluation_seconds", []),
        dcmon_wire::Labels::new("dcmon_alerts_evaluated_rules", []),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .map_err(|e| AlertError::Store(e.into()))?;
    let ids = state
        .tsdb
        .resolve(&labels)
        .map_err(|e| AlertError::Store(e.into()))?;
    state
        .tsdb
        .append_report(&[
            (ids[0], now, took.as_secs_f64()),
            (ids[1], now, rules as f64),
        ])
        .map_err(|e| AlertError::Store(e.into()))?;
    Ok(())
}

type Series = Vec<(BTreeMap<String, String>, f64)>;

/// The series a rule's source returns at `now`.
fn select(state: &AppState, rule: &CompiledRule, now: i64) -> Result<Series, String> {
    match &rule.source {
        Source::Promql(expr) => {
            let v = dcmon_promql::Engine::default()
                .instant(&*state.tsdb, expr, now)
                .map_err(|e| e.to_string())?;
            Ok(match v {
                QueryValue::Vector(v) => v
                    .into_iter()
                    .map(|(l, v)| (l.pairs().iter().cloned().collect(), v))
                    .collect(),
                QueryValue::Scalar(v) => vec![(BTreeMap::new(), v)],
                other => {
                    return Err(format!(
                        "the expression returns {other:?}-like data, not an instant vector"
                    ));
                }
            })
        }
        Source::AgentSilence => {
            let agents = state.control.list_agents().map_err(|e| e.to_string())?;
            let recent = state
                .last_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            Ok(agents
                .into_iter()
                .filter(|a| a.status == dcmon_wire::api::AgentStatus::Approved)
                .filter_map(|a| {
                    let last = recent.get(&a.id).map(|(t, _)| *t).max(a.last_seen_ms)?;
                    let mut l = BTreeMap::new();
                    l.insert("host".to_owned(), a.host);
                    Some((l, (now - last).max(0) as f64 / 1000.0))
                })
                .collect())
        }
        Source::Sel {
            sensor_type,
            offsets,
            window,
        } => {
            let events = state
                .control
                .list_events(
                    &crate::events::EventFilter {
                        kind: Some("sel".into()),
                        since_ms: Some(now - ms(*window)),
                        ..Default::default()
                    },
                    crate::events::MAX_LIST,
                )
                .map_err(|e| e.to_string())?;
            let mut counts: BTreeMap<(String, String), f64> = BTreeMap::new();
            for e in events {
                let d = &e.detail;
                let st = d.get("sensor_type").and_then(serde_json::Value::as_u64);
                let et = d.get("event_type").and_then(serde_json::Value::as_u64);
                let deassert = d
                    .get("deassertion")
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false);
                let offset = d
                    .get("data")
                    .and_then(|v| v.get(0))
                    .and_then(serde_json::Value::as_u64)
                    .map(|b| (b & 0x0f) as u8);
                if st == Some(u64::from(*sensor_type))
                    && et == Some(0x6f)
                    && !deassert
                    && offset.is_some_and(|o| offsets.contains(&o))
                {
                    *counts
                        .entry((e.host, e.bmc.unwrap_or_default()))
                        .or_default() += 1.0;
                }
            }
            Ok(counts
                .into_iter()
                .map(|((host, bmc), n)| {
                    let mut l = BTreeMap::new();
                    l.insert("host".to_owned(), host);
                    if !bmc.is_empty() {
                        l.insert("bmc".to_owned(), bmc);
                    }
                    (l, n)
                })
                .collect())
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "alerts task panicked");
            None
        }
    }
}

async fn evaluator(state: AppState, wake: Arc<Notify>) {
    let s = state.clone();
    let mut ev = match blocking(move || Evaluator::load(&s)).await {
        Some(Ok(ev)) => ev,
        Some(Err(e)) => {
            tracing::error!(error = %e, "loading alert state; alerts are not evaluated");
            return;
        }
        None => return,
    };
    let mut seen_version = -1;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = state.clone();
        let result = blocking(move || {
            let now = s.clock.now_ms();
            let version = s.control.data_version()?;
            let mut reloaded = false;
            if version != seen_version {
                ev.reload(&s, now)?;
                reloaded = true;
            }
            let fired = if ev.next_wake() <= now {
                ev.run(&s, now)?
            } else {
                false
            };
            Ok::<_, AlertError>((ev, version, fired || reloaded))
        })
        .await;
        match result {
            Some(Ok((back, version, changed))) => {
                ev = back;
                seen_version = version;
                if changed {
                    wake.notify_one();
                }
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "evaluating alert rules");
                // The evaluator moved into the failed closure: start again from the store.
                let s = state.clone();
                match blocking(move || Evaluator::load(&s)).await {
                    Some(Ok(fresh)) => ev = fresh,
                    _ => return,
                }
                seen_version = -1;
            }
            None => return,
        }
    }
}

/// Delay before attempt `attempt + 1` (`attempt` ≥ 1 failed so far): `initial · 2^(attempt-1)`
/// capped at `max`, then "equal jitter" (half fixed, half random by `unit` in [0, 1)),
/// so many failing deliveries do not retry in lockstep.
fn backoff(attempt: u32, initial: Duration, max: Duration, unit: f64) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.div_f64(2.0) + capped.div_f64(2.0).mul_f64(unit.clamp(0.0, 1.0))
}

fn random_unit() -> f64 {
    let b = crate::control::random_bytes::<4>();
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Channels and silences, reloaded when the control store changes.
struct Dispatch {
    channels: Vec<(Arc<Channel>, Vec<LabelMatcher>)>,
    silences: ActiveSilences,
    version: i64,
}

impl Dispatch {
    /// Nothing loaded yet: the first `reload` reads the store.
    fn empty() -> Self {
        Self {
            channels: Vec::new(),
            silences: ActiveSilences::default(),
            version: -1,
        }
    }

    fn reload(&mut self, state: &AppState) -> Result<(), AlertError> {
        let version = state.control.data_version()?;
        if version == self.version {
            return Ok(());
        }
        let secrets = SecretBox::open(&state.config().data_dir)?;
        let (chans, bad) = state.control.load_alert_channels(&secrets)?;
        for b in bad {
            tracing::warn!(error = %b, "alert channel unusable");
        }
        self.channels = chans
            .into_iter()
            .map(|c| {
                let m =
                    super::silences::parse_all(&c.record.config.route.matchers).unwrap_or_default();
                (Arc::new(c), m)
            })
            .collect();
        self.silences = ActiveSilences::new(state.control.list_silences(false)?);
        self.version = version;
        Ok(())
    }

    /// The channels an alert goes to: those its rule names, else those whose route matches.
    fn route(&self, a: &AlertRecord) -> Vec<Arc<Channel>> {
        if !a.channels.is_empty() {
            return self
                .channels
                .iter()
                .filter(|(c, _)| a.channels.contains(&c.record.name))
                .map(|(c, _)| c.clone())
                .collect();
        }
        let severity = a
            .labels
            .get("severity")
            .and_then(|s| super::rules::Severity::parse(s).ok());
        self.channels
            .iter()
            .filter(|(c, m)| {
                let r = &c.record.config.route;
                (r.severities.is_empty() || severity.is_some_and(|s| r.severities.contains(&s)))
                    && m.iter().all(|m| m.matches(&a.labels))
            })
            .map(|(c, _)| c.clone())
            .collect()
    }
}

/// Builds the due groups into the outbox; returns when to look again.
fn enqueue(state: &AppState, d: &Dispatch, now: i64) -> Result<Option<i64>, AlertError> {
    let cfg = state.config().alerts.clone();
    let alerts = state
        .control
        .alerts_to_notify(now, ms(cfg.repeat_interval))?;
    if alerts.is_empty() {
        return Ok(None);
    }
    let mut later: Option<i64> = None;
    let mut at = |t: i64| later = Some(later.map_or(t, |l: i64| l.min(t)));
    // (channel, rule) → alerts of that group.
    let mut groups: BTreeMap<(String, String), Vec<&AlertRecord>> = BTreeMap::new();
    let mut notified: Vec<(i64, State)> = Vec::new();
    let mut last_sent: HashMap<(String, String), Option<i64>> = HashMap::new();
    for a in &alerts {
        if a.state == State::Firing && d.silences.silencing(&a.labels, now).is_some() {
            continue;
        }
        let changed = match a.state {
            State::Resolved => a.resolved_ms,
            _ => a.fired_ms,
        }
        .unwrap_or(now);
        if changed + ms(cfg.group_wait) > now {
            at(changed + ms(cfg.group_wait));
            continue;
        }
        let chans = d.route(a);
        let mut ready = true;
        for c in &chans {
            let key = (c.record.name.clone(), a.rule.clone());
            let last = match last_sent.get(&key) {
                Some(l) => *l,
                None => {
                    let l = state.control.last_group_notification(&key.0, &key.1)?;
                    last_sent.insert(key.clone(), l);
                    l
                }
            };
            if let Some(l) = last
                && l + ms(cfg.group_interval) > now
            {
                at(l + ms(cfg.group_interval));
                ready = false;
            }
        }
        if !ready {
            continue;
        }
        notified.push((a.id, a.state));
        for c in chans {
            if a.state == State::Resolved && !c.record.config.send_resolved {
                continue;
            }
            groups
                .entry((c.record.name.clone(), a.rule.clone()))
                .or_default()
                .push(a);
        }
    }
    if notified.is_empty() {
        return Ok(later);
    }
    let external_url = state.config().public_url();
    let messages: Vec<Notification> = groups
        .into_iter()
        .map(|((channel, rule), alerts)| {
            let firing = alerts.iter().any(|a| a.state == State::Firing);
            Notification {
                channel,
                group_key: rule,
                status: if firing { "firing" } else { "resolved" }.into(),
                alerts: alerts
                    .iter()
                    .map(|a| AlertMessage {
                        id: a.id,
                        status: if a.state == State::Resolved {
                            "resolved"
                        } else {
                            "firing"
                        }
                        .into(),
                        labels: a.labels.clone(),
                        annotations: a.annotations.clone(),
                        value: a.value,
                        starts_at_ms: a.fired_ms.unwrap_or(a.active_since_ms),
                        ends_at_ms: a.resolved_ms,
                        fingerprint: a.fingerprint.clone(),
                    })
                    .collect(),
                external_url: external_url.clone(),
                test: false,
            }
        })
        .collect();
    state
        .control
        .enqueue_notifications(&messages, &notified, now)?;
    Ok(later)
}

/// Writes `dcmon_notifications_{sent,failed}_total{channel}` into the tsdb, as the
/// store writes its own counters: queryable and alertable like any series.
fn record_counters(state: &AppState, now: i64) -> Result<(), AlertError> {
    let counts = state.control.notification_counts()?;
    let mut labels = Vec::new();
    let mut values = Vec::new();
    for (channel, status, n) in counts {
        let metric = match status.as_str() {
            "sent" => "dcmon_notifications_sent_total",
            "failed" => "dcmon_notifications_failed_total",
            _ => continue,
        };
        if let Ok(l) = dcmon_wire::Labels::new(metric, [("channel", channel.as_str())]) {
            labels.push(l);
            values.push(n as f64);
        }
    }
    if labels.is_empty() {
        return Ok(());
    }
    let ids = state
        .tsdb
        .resolve(&labels)
        .map_err(|e| AlertError::Store(e.into()))?;
    let samples: Vec<_> = ids
        .into_iter()
        .zip(values)
        .map(|(id, v)| (id, now, v))
        .collect();
    state
        .tsdb
        .append_report(&samples)
        .map_err(|e| AlertError::Store(e.into()))?;
    Ok(())
}

async fn dispatcher(state: AppState, wake: Arc<Notify>) {
    let clients = Arc::new(Clients::default());
    let mut d = Dispatch::empty();
    let s = state.clone();
    if let Some(Err(e)) = blocking(move || s.control.retry_queued_now(s.clock.now_ms())).await {
        tracing::warn!(error = %e, "resuming queued notifications");
    }
    let in_flight: Arc<std::sync::Mutex<HashSet<i64>>> = Arc::default();
    let done = Arc::new(Notify::new());
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut counters_at = 0i64;
    loop {
        let s = state.clone();
        let flying: HashSet<i64> = in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let step = blocking(move || {
            let now = s.clock.now_ms();
            d.reload(&s)?;
            let later = enqueue(&s, &d, now)?;
            let due: Vec<_> = s
                .control
                .due_notifications(now, 256)?
                .into_iter()
                .filter(|n| !flying.contains(&n.id))
                .collect();
            let next = s.control.next_notification_due()?;
            if now >= counters_at {
                if let Err(e) = record_counters(&s, now) {
                    tracing::debug!(error = %e, "recording notification counters");
                }
                counters_at = now + 5_000;
            }
            Ok::<_, AlertError>((d, later, due, next, now, counters_at))
        })
        .await;
        let (back, later, due, next, now) = match step {
            Some(Ok((back, later, due, next, now, c))) => {
                counters_at = c;
                (back, later, due, next, now)
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "dispatching notifications");
                d = Dispatch {
                    channels: Vec::new(),
                    silences: ActiveSilences::default(),
                    version: -1,
                };
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => return,
        };
        d = back;
        for n in due {
            let Some(ch) = d
                .channels
                .iter()
                .find(|(c, _)| c.record.name == n.channel)
                .map(|(c, _)| c.clone())
            else {
                let s = state.clone();
                let id = n.id;
                let channel = n.channel.clone();
                blocking(move || {
                    s.control.record_attempt(
                        id,
                        Err((format!("channel {channel} no longer exists"), None)),
                        s.clock.now_ms(),
                    )
                })
                .await;
                continue;
            };
            in_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(n.id);
            let Ok(permit) = limit.clone().acquire_owned().await else {
                return;
            };
            let (state, clients, in_flight, done) = (
                state.clone(),
                clients.clone(),
                in_flight.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                let result = channels::send(&ch, &n.message, &n.idempotency_key, &clients).await;
                let cfg = state.config().alerts.clone();
                let now = state.clock.now_ms();
                let attempts = n.attempts + 1;
                let outcome = match &result {
                    Ok(()) => {
                        tracing::info!(channel = %n.channel, id = n.id, attempts, "notification delivered");
                        Ok(())
                    }
                    Err(e) if e.permanent || attempts >= cfg.retry_attempts => {
                        tracing::warn!(channel = %n.channel, id = n.id, attempts, error = %e, "notification failed; giving up");
                        Err((e.message.clone(), None))
                    }
                    Err(e) => {
                        let wait = e.retry_after.unwrap_or_else(|| {
                            backoff(attempts, cfg.retry_initial, cfg.retry_max, random_unit())
                        });
                        tracing::info!(channel = %n.channel, id = n.id, attempts, error = %e, retry_in_ms = wait.as_millis() as u64, "notification failed; will retry");
                        Err((e.message.clone(), Some(now + ms(wait))))
                    }
                };
                let s = state.clone();
                let id = n.id;
                if let Some(Err(e)) =
                    blocking(move || s.control.record_attempt(id, outcome, now)).await
                {
                    tracing::warn!(error = %e, "recording a delivery");
                }
                in_flight
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&n.id);
                drop(permit);
                done.notify_one();
            });
        }
        let wake_at = [later, next].into_iter().flatten().min();
        let sleep = wake_at
            .map(|t| Duration::from_millis(t.saturating_sub(now).clamp(0, 1000) as u64))
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_millis(20));
        tokio::select! {
            _ = wake.notified() => {}
            _ = done.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::channels::NewChannel;
    use crate::alerts::rules::RuleSpec;
    use crate::config::ServerConfig;
    use crate::control::ControlDb;
    use crate::state::Clock;
    use std::sync::atomic::{AtomicI64, Ordering};

    const T0: i64 = 1_800_000_000_000;

    struct TestClock(AtomicI64);

    impl Clock for TestClock {
        fn now_ms(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    struct Harness {
        _dir: tempfile::TempDir,
        state: AppState,
        clock: Arc<TestClock>,
    }

    impl Harness {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut config = ServerConfig {
                data_dir: dir.path().to_owned(),
                ..Default::default()
            };
            config.alerts.group_interval = Duration::from_secs(60);
            let control = ControlDb::open(dir.path()).unwrap();
            let tsdb = dcmon_tsdb::Tsdb::open(&dir.path().join("tsdb")).unwrap();
            let clock = Arc::new(TestClock(AtomicI64::new(T0)));
            let state = AppState::new(config, control, tsdb, clock.clone(), "SHA256:test".into());
            let rule: RuleSpec = serde_json::from_str(
                r#"{"name":"Hot","expr":"temp","for":"30s","threshold":{"op":">","value":90,"resolve":80}}"#,
            )
            .unwrap();
            state.control.add_alert_rule(&rule, "test", None).unwrap();
            let hook: NewChannel = serde_json::from_str(
                r#"{"name":"hook","type":"webhook","url":"https://127.0.0.1:9/x"}"#,
            )
            .unwrap();
            let secrets = SecretBox::open(dir.path()).unwrap();
            state
                .control
                .add_alert_channel(&secrets, &hook, "test", None)
                .unwrap();
            Self {
                _dir: dir,
                state,
                clock,
            }
        }

        /// Moves the clock to `T0 + s` seconds and writes `temp{host="h1"} v` then.
        fn at(&self, s: i64, v: f64) -> i64 {
            let now = T0 + s * 1000;
            self.clock.0.store(now, Ordering::SeqCst);
            let l = dcmon_wire::Labels::new("temp", [("host", "h1")]).unwrap();
            let ids = self.state.tsdb.resolve(&[l]).unwrap();
            self.state.tsdb.append_report(&[(ids[0], now, v)]).unwrap();
            now
        }

        fn notifications(&self) -> Vec<Notification> {
            let mut n: Vec<_> = self
                .state
                .control
                .list_notifications(None, 100)
                .unwrap()
                .into_iter()
                .map(|n| n.message)
                .collect();
            n.reverse();
            n
        }
    }

    fn statuses(n: &Notification) -> Vec<&str> {
        n.alerts.iter().map(|a| a.status.as_str()).collect()
    }

    #[test]
    fn fires_after_for_is_notified_once_and_not_again_after_a_restart() {
        let h = Harness::new();
        let mut ev = Evaluator::load(&h.state).unwrap();
        let mut d = Dispatch::empty();
        let now = h.at(0, 95.0);
        ev.reload(&h.state, now).unwrap();
        d.reload(&h.state).unwrap();
        assert!(
            !ev.run(&h.state, now).unwrap(),
            "pending is not a notified change"
        );
        // The engine wakes when `for:` elapses, not at the next interval.
        assert_eq!(ev.next_wake(), T0 + 15_000);
        let now = h.at(15, 95.0);
        ev.run(&h.state, now).unwrap();
        assert_eq!(ev.next_wake(), T0 + 30_000);
        let now = h.at(30, 95.0);
        assert!(ev.run(&h.state, now).unwrap());
        assert_eq!(enqueue(&h.state, &d, now).unwrap(), None);
        let sent = h.notifications();
        assert_eq!(sent.len(), 1);
        assert_eq!(statuses(&sent[0]), ["firing"]);
        assert_eq!(sent[0].alerts[0].labels["alertname"], "Hot");

        // A restart: state comes from the store; still firing is not news.
        let mut ev = Evaluator::load(&h.state).unwrap();
        let now = h.at(45, 96.0);
        ev.reload(&h.state, now).unwrap();
        assert!(!ev.run(&h.state, now).unwrap());
        enqueue(&h.state, &d, now).unwrap();
        assert_eq!(h.notifications().len(), 1);
        let alerts = h
            .state
            .control
            .list_alerts(Some(State::Firing), 0, 10)
            .unwrap();
        assert_eq!(alerts.len(), 1);
        assert_eq!(
            h.state.control.alert_history(alerts[0].id).unwrap().len(),
            2
        );
    }

    #[test]
    fn flapping_is_grouped_into_one_message_per_group_interval() {
        let h = Harness::new();
        let mut ev = Evaluator::load(&h.state).unwrap();
        let mut d = Dispatch::empty();
        ev.reload(&h.state, T0).unwrap();
        d.reload(&h.state).unwrap();
        // Values swing across both thresholds every 15 s for 3 minutes.
        for step in 0..=12 {
            let s = step * 15;
            let v = if (step / 3) % 2 == 0 { 95.0 } else { 70.0 };
            let now = h.at(s, v);
            ev.run(&h.state, now).unwrap();
            // Wake-ups for `for:` in between, as the engine would.
            enqueue(&h.state, &d, now).unwrap();
        }
        let sent = h.notifications();
        // Fired at 30 s; then at most one message per 60 s group interval.
        let summary: Vec<Vec<&str>> = sent.iter().map(statuses).collect();
        // Fired at 30 s and sent; resolved at 45 s, held to the group interval (90 s);
        // fired again at 120 s and resolved at 135 s, both within the next interval:
        // an alert that resolved before its group was due is not news any more.
        assert_eq!(summary, [vec!["firing"], vec!["resolved"]]);
    }

    #[test]
    fn sel_memory_errors_fire_the_built_in_rule_per_host_and_bmc() {
        let h = Harness::new();
        let event = |offset: u8, deassertion: bool, n: i64| crate::events::NewEvent {
            ts_ms: T0 - 1000,
            source: "bmc".into(),
            host: "gpu-3".into(),
            bmc: Some("gpu-3-bmc".into()),
            kind: "sel".into(),
            severity: "critical".into(),
            message: "Memory".into(),
            detail: serde_json::json!({
                "sensor_type": 0x0C, "event_type": 0x6F, "deassertion": deassertion,
                "data": [offset, 0xff, 0xff], "record_id": n,
            }),
            dedup_key: format!("k{n}"),
        };
        crate::events::insert_events(
            &h.state.control.conn(),
            // Uncorrectable ECC (offset 1) twice; a deassertion and a parity error
            // (offset 2) do not count.
            &[
                event(1, false, 1),
                event(1, false, 2),
                event(1, true, 3),
                event(2, false, 4),
            ],
        )
        .unwrap();
        let mut ev = Evaluator::load(&h.state).unwrap();
        let now = h.at(0, 20.0);
        ev.reload(&h.state, now).unwrap();
        assert!(ev.run(&h.state, now).unwrap());
        let alerts = h
            .state
            .control
            .list_alerts(Some(State::Firing), 0, 10)
            .unwrap();
        assert_eq!(alerts.len(), 1, "{alerts:?}");
        let a = &alerts[0];
        assert_eq!(a.rule, "MemoryErrors");
        assert_eq!(
            (a.labels["host"].as_str(), a.labels["bmc"].as_str()),
            ("gpu-3", "gpu-3-bmc")
        );
        assert_eq!(a.value, 2.0);
        assert_eq!(
            a.annotations["summary"],
            "gpu-3: 2 memory ECC events in the SEL within 1h"
        );
    }

    #[test]
    fn routes_follow_rule_channels_else_severity_and_matchers() {
        let h = Harness::new();
        let secrets = SecretBox::open(&h.state.config().data_dir).unwrap();
        for json in [
            r#"{"name":"pager","type":"webhook","url":"https://127.0.0.1:9/p","config":{"route":{"severities":["critical"]}}}"#,
            r#"{"name":"rack1","type":"webhook","url":"https://127.0.0.1:9/r","config":{"route":{"matchers":["host=~rack1-.*"]}}}"#,
        ] {
            let c: NewChannel = serde_json::from_str(json).unwrap();
            h.state
                .control
                .add_alert_channel(&secrets, &c, "test", None)
                .unwrap();
        }
        let mut d = Dispatch::empty();
        d.reload(&h.state).unwrap();
        let check = |labels: &[(&str, &str)], named: &[&str], expect: &[&str]| {
            let a = AlertRecord {
                id: 1,
                rule: "r".into(),
                fingerprint: String::new(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                annotations: BTreeMap::new(),
                state: State::Firing,
                value: 1.0,
                active_since_ms: 0,
                fired_ms: None,
                resolved_ms: None,
                acked_by: None,
                acked_ms: None,
                notified_state: None,
                notified_ms: None,
                channels: named.iter().map(|s| (*s).to_owned()).collect(),
                silenced_by: None,
            };
            let mut got: Vec<String> = d.route(&a).iter().map(|c| c.record.name.clone()).collect();
            got.sort();
            assert_eq!(got, expect, "{labels:?} {named:?}");
        };
        // `hook` (from the harness) has no route: it takes everything not named.
        check(
            &[("severity", "warning"), ("host", "rack2-1")],
            &[],
            &["hook"],
        );
        check(
            &[("severity", "critical"), ("host", "rack2-1")],
            &[],
            &["hook", "pager"],
        );
        check(
            &[("severity", "info"), ("host", "rack1-7")],
            &[],
            &["hook", "rack1"],
        );
        check(
            &[("severity", "critical"), ("host", "rack1-7")],
            &["pager"],
            &["pager"],
        );
        check(&[("severity", "critical")], &["gone"], &[]);
    }

    #[test]
    fn silenced_alerts_wait_and_acked_alerts_do_not_repeat() {
        let h = Harness::new();
        let mut ev = Evaluator::load(&h.state).unwrap();
        let mut d = Dispatch::empty();
        h.state
            .control
            .add_silence(
                &crate::alerts::silences::NewSilence {
                    matchers: vec!["host=h1".into()],
                    starts_ms: Some(T0),
                    ends_ms: Some(T0 + 60_000),
                    duration: None,
                    comment: "maintenance".into(),
                },
                "test",
                None,
            )
            .unwrap();
        ev.reload(&h.state, T0).unwrap();
        d.reload(&h.state).unwrap();
        for s in [0, 30] {
            let now = h.at(s, 95.0);
            ev.run(&h.state, now).unwrap();
            enqueue(&h.state, &d, now).unwrap();
        }
        assert!(h.notifications().is_empty(), "silenced");
        let now = h.at(61, 95.0);
        enqueue(&h.state, &d, now).unwrap();
        assert_eq!(
            h.notifications().len(),
            1,
            "notified once the silence ended"
        );
        let id = h
            .state
            .control
            .list_alerts(Some(State::Firing), 0, 1)
            .unwrap()[0]
            .id;
        h.state.control.ack_alert(id, "op", None).unwrap();
        let repeat = h.state.config().alerts.repeat_interval.as_secs() as i64;
        let now = h.at(61 + repeat + 1, 95.0);
        enqueue(&h.state, &d, now).unwrap();
        assert_eq!(h.notifications().len(), 1, "acknowledged: no repeat");
    }

    fn check(attempt: u32, unit: f64, expect_ms: u64) {
        let got = backoff(
            attempt,
            Duration::from_secs(1),
            Duration::from_secs(60),
            unit,
        );
        assert_eq!(
            got.as_millis() as u64,
            expect_ms,
            "attempt {attempt} unit {unit}"
        );
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        check(1, 0.0, 500);
        check(1, 0.999_999, 999);
        check(2, 0.0, 1000);
        check(3, 0.5, 3000);
        check(7, 0.0, 30_000);
        check(50, 1.0, 60_000);
        check(0, 0.0, 500);
    }
}
