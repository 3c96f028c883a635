//! Fan curves of agentless BMCs (DESIGN §8): one [`CurveConfig`] per BMC in the control
//! store's `fan_curves` table, written by `dcmon fans curve ...` and the REST API, run by
//! [`crate::fanloop`].
//!
//! A curve is validated when it is stored, against the BMC's vendor when it is known
//! (override or detected), so that a duty below the vendor minimum is refused with the
//! engine's message before anything runs. A curve stored before the vendor was known is
//! checked again by the loop once Get Device ID has told it; a refusal then is logged
//! and recorded, and that BMC's fans stay with the BMC.
//!
//! Removing the BMC removes its curve (`ON DELETE CASCADE`). Every change is audited
//! with the whole configuration, so the audit log tells what ran when.

use crate::bmcs::{BmcError, BmcRecord};
use crate::control::{ControlDb, audit, now_ms};
use dcmon_ipmi::curve::CurveConfig;
use dcmon_ipmi::vendor::Vendor;
use dcmon_wire::command::{CommandSpec, ConfigUpdate};
use rusqlite::{OptionalExtension, params};

/// A BMC's stored fan curve.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StoredCurve {
    pub bmc_id: i64,
    /// The BMC's name.
    pub bmc: String,
    pub config: CurveConfig,
    /// A disabled curve is kept (to dry-run it, or for later) but does not run.
    pub enabled: bool,
    pub updated_ms: i64,
    pub updated_by: String,
}

/// The vendor whose rules apply to a BMC: the administrator's override, else the one
/// detected at first contact; `None` before either is known.
pub(crate) fn effective_vendor(b: &BmcRecord) -> Option<Vendor> {
    b.vendor_override
        .as_deref()
        .or(b.vendor.as_deref())
        .and_then(parse_vendor_key)
}

/// The inverse of [`crate::bmcs::vendor_key`].
fn parse_vendor_key(key: &str) -> Option<Vendor> {
    match key {
        "supermicro" => Some(Vendor::Supermicro),
        "dell" => Some(Vendor::Dell),
        "hpe" => Some(Vendor::Hpe),
        other => other
            .strip_prefix("other:")
            .and_then(|n| n.parse().ok())
            .map(Vendor::Other),
    }
}

/// Checks `config` for `vendor` when known (its minimum duty, whether it offers fan
/// control at all), else everything that does not depend on the vendor.
fn validate_curve(config: &CurveConfig, vendor: Option<Vendor>) -> Result<(), BmcError> {
    let checked = match vendor {
        Some(v) => config.validate_for(v),
        None => config.validate(),
    };
    checked.map_err(|problems| {
        BmcError::Invalid(format!("fan curve refused: {}", problems.join("; ")))
    })
}

/// A row's configuration; `Err` says what is wrong with a row edited by hand.
fn parse_config(bmc: &str, json: &str) -> Result<CurveConfig, String> {
    serde_json::from_str(json).map_err(|e| {
        format!(
            "the stored fan curve of BMC {bmc} is not readable ({e}); set it again with `dcmon fans curve set --bmc {bmc} --file F`"
        )
    })
}

/// What a row of [`ControlDb::fan_curves_to_run`] gives the control loop.
pub(crate) struct CurveRow {
    pub bmc: BmcRecord,
    pub curve: Result<StoredCurve, String>,
}

/// The stored columns, joined to the BMC's name.
const CURVE_COLUMNS: &str = "f.bmc_id, b.name, f.config, f.enabled, f.updated_ms, f.updated_by";

fn curve_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, String, String, bool, i64, String)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn stored(
    (bmc_id, bmc, json, enabled, updated_ms, updated_by): (i64, String, String, bool, i64, String),
) -> Result<StoredCurve, String> {
    Ok(StoredCurve {
        config: parse_config(&bmc, &json)?,
        bmc_id,
        bmc,
        enabled,
        updated_ms,
        updated_by,
    })
}

impl ControlDb {
    /// Stores (replacing any) the fan curve of the BMC named by name or id, after
    /// [`validate_curve`] for its vendor; audited with the whole configuration.
    pub fn set_fan_curve(
        &self,
        who: &str,
        config: &CurveConfig,
        enabled: bool,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<StoredCurve, BmcError> {
        let bmc = self.bmc(who)?;
        validate_curve(config, effective_vendor(&bmc))?;
        let json = serde_json::to_string(config)
            .map_err(|e| BmcError::Store(anyhow::anyhow!("encoding a fan curve: {e}")))?;
        let now = now_ms();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // The BMC may have gone since it was looked up; the foreign key would refuse
        // the row with a less helpful message.
        let exists: Option<i64> = tx
            .query_row("SELECT id FROM bmcs WHERE id = ?1", params![bmc.id], |r| {
                r.get(0)
            })
            .optional()?;
        if exists.is_none() {
            return Err(BmcError::NotFound(who.to_owned()));
        }
        tx.execute(
            "INSERT INTO fan_curves (bmc_id, config, enabled, updated_ms, updated_by)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (bmc_id) DO UPDATE SET config = excluded.config,
                 enabled = excluded.enabled, updated_ms = excluded.updated_ms,
                 updated_by = excluded.updated_by",
            params![bmc.id, json, enabled, now, actor],
        )?;
        audit(
            &tx,
            actor,
            "fans.curve.set",
            &bmc.name,
            &format!("enabled={enabled} config={json}"),
            remote,
        )?;
        tx.commit()?;
        drop(conn);
        if let Some(agent) = &bmc.agent_id {
            let update = ConfigUpdate {
                fan_curve: enabled.then(|| json.clone()),
                remove_fan_curve: !enabled,
                ..ConfigUpdate::default()
            };
            self.send_curve_to_agent(agent, update, actor);
        }
        Ok(StoredCurve {
            bmc_id: bmc.id,
            bmc: bmc.name,
            config: config.clone(),
            enabled,
            updated_ms: now,
            updated_by: actor.to_owned(),
        })
    }

    /// The fan curve of the BMC named by name or id; `None` when it has none.
    pub fn fan_curve(&self, who: &str) -> Result<Option<StoredCurve>, BmcError> {
        let bmc = self.bmc(who)?;
        let row = self
            .conn()
            .query_row(
                &format!(
                    "SELECT {CURVE_COLUMNS} FROM fan_curves f JOIN bmcs b ON b.id = f.bmc_id
                     WHERE f.bmc_id = ?1"
                ),
                params![bmc.id],
                curve_row,
            )
            .optional()?;
        row.map(stored)
            .transpose()
            .map_err(|e| BmcError::Store(anyhow::anyhow!(e)))
    }

    /// Removes the fan curve of the BMC named by name or id (the control loop hands its
    /// fans back to the BMC); audited. `None` when it had none.
    pub fn remove_fan_curve(
        &self,
        who: &str,
        actor: &str,
        remote: Option<&str>,
    ) -> Result<Option<i64>, BmcError> {
        let bmc = self.bmc(who)?;
        let conn = self.conn();
        let removed = conn.execute("DELETE FROM fan_curves WHERE bmc_id = ?1", params![bmc.id])?;
        if removed == 0 {
            return Ok(None);
        }
        audit(&conn, actor, "fans.curve.remove", &bmc.name, "", remote)?;
        drop(conn);
        if let Some(agent) = &bmc.agent_id {
            let update = ConfigUpdate {
                remove_fan_curve: true,
                ..ConfigUpdate::default()
            };
            self.send_curve_to_agent(agent, update, actor);
        }
        Ok(Some(bmc.id))
    }

    /// A BMC linked to an agent runs its curve on that agent (in-band, and on through a
    /// server outage): the change goes to it as a `config_update` command, which waits
    /// a day for an agent that is offline.
    fn send_curve_to_agent(&self, agent: &str, update: ConfigUpdate, actor: &str) {
        const CURVE_COMMAND_TTL_MS: i64 = 24 * 3600 * 1000;
        match self.queue_command(
            agent,
            &CommandSpec::ConfigUpdate(update),
            actor,
            None,
            CURVE_COMMAND_TTL_MS,
        ) {
            Ok(c) => tracing::info!(agent, command = c.id, "fan curve sent to the agent"),
            Err(e) => tracing::warn!(agent, error = %e, "cannot send the fan curve to the agent"),
        }
    }

    /// Enabled curves of BMCs without a linked agent: what the server's loop runs (an
    /// agent runs the curve of its own BMC in-band).
    pub(crate) fn fan_curves_to_run(&self) -> Result<Vec<CurveRow>, BmcError> {
        let ids: Vec<(i64, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare(
                "SELECT b.id, b.name FROM fan_curves f JOIN bmcs b ON b.id = f.bmc_id
                 WHERE f.enabled AND b.agent_id IS NULL ORDER BY b.id",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut rows = Vec::with_capacity(ids.len());
        for (id, name) in ids {
            // Removed between the two reads: the next reload sees it gone.
            let Ok(bmc) = self.bmc(&name) else { continue };
            if bmc.id != id {
                continue;
            }
            let curve = self
                .fan_curve(&name)
                .map_err(|e| e.to_string())
                .and_then(|c| c.ok_or_else(|| format!("BMC {name}: fan curve removed")));
            rows.push(CurveRow { bmc, curve });
        }
        Ok(rows)
    }

    /// Everything that decides what the control loop runs, cheaply (no decryption):
    /// the loop reloads its plans only when this changes.
    pub(crate) fn fan_curves_signature(&self) -> Result<Vec<String>, BmcError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT f.bmc_id || ' ' || f.updated_ms || ' ' || f.enabled || ' ' || b.updated_ms
                    || ' ' || coalesce(b.agent_id, '-') || ' ' || coalesce(b.vendor, '-')
                    || ' ' || coalesce(b.vendor_override, '-')
             FROM fan_curves f JOIN bmcs b ON b.id = f.bmc_id ORDER BY f.bmc_id",
        )?;
        let rows = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bmcs::NewBmc;
    use crate::secrets::{Secret, SecretBox};
    use dcmon_ipmi::curve::ZoneCurve;

    fn open() -> (tempfile::TempDir, ControlDb, SecretBox) {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(dir.path()).unwrap();
        (dir, db, SecretBox::from_key(&[5; 32]))
    }

    fn add(db: &ControlDb, s: &SecretBox, name: &str, vendor: Option<&str>) -> BmcRecord {
        let new = NewBmc {
            name: name.into(),
            address: "10.0.0.7".into(),
            user: "ADMIN".into(),
            password: Secret::new("pw"),
            interval: None,
            agent: None,
            vendor: vendor.map(str::to_owned),
        };
        db.add_bmc(s, &new, "t", None).unwrap()
    }

    fn curve(points: Vec<(f64, u8)>) -> CurveConfig {
        let zone: ZoneCurve = serde_json::from_value(serde_json::json!({
            "zone": 0, "points": points
        }))
        .unwrap();
        CurveConfig {
            preset: None,
            zones: vec![zone],
            ..CurveConfig::default()
        }
    }

    #[test]
    fn set_get_replace_remove_and_audit() {
        let (_dir, db, s) = open();
        add(&db, &s, "r1", Some("supermicro"));
        assert_eq!(db.fan_curve("r1").unwrap(), None);
        let set = db
            .set_fan_curve("r1", &CurveConfig::default(), true, "alice", None)
            .unwrap();
        assert_eq!(db.fan_curve("r1").unwrap().as_ref(), Some(&set));
        let c = curve(vec![(30.0, 25), (60.0, 80)]);
        db.set_fan_curve("r1", &c, false, "bob", None).unwrap();
        let got = db.fan_curve("r1").unwrap().unwrap();
        assert_eq!(
            (&got.config, got.enabled, got.updated_by.as_str()),
            (&c, false, "bob")
        );
        assert!(db.fan_curves_to_run().unwrap().is_empty(), "disabled");
        assert!(db.remove_fan_curve("r1", "bob", None).unwrap().is_some());
        assert_eq!(db.remove_fan_curve("r1", "bob", None).unwrap(), None);
        let log = serde_json::to_string(&db.audit_tail(10).unwrap()).unwrap();
        assert!(log.contains("fans.curve.set") && log.contains("fans.curve.remove"));
        assert!(log.contains("\\\"preset\\\":\\\"zephyr\\\""), "{log}");
    }

    #[test]
    fn a_duty_below_the_vendor_minimum_is_refused_with_the_engines_message() {
        let (_dir, db, s) = open();
        add(&db, &s, "smc", Some("supermicro"));
        add(&db, &s, "unknown", None);
        add(&db, &s, "ilo", Some("hpe"));
        let low = curve(vec![(30.0, 15), (60.0, 80)]);
        let e = db.set_fan_curve("smc", &low, true, "t", None).unwrap_err();
        assert!(
            e.to_string()
                .contains("zones[0].points[0]: duty 15 % is below Supermicro's minimum of 20 %"),
            "{e}"
        );
        // The vendor is not known yet: only vendor-independent checks apply.
        db.set_fan_curve("unknown", &low, true, "t", None).unwrap();
        let e = db
            .set_fan_curve("ilo", &CurveConfig::default(), true, "t", None)
            .unwrap_err();
        assert!(e.to_string().contains("fan curve refused"), "{e}");
        assert!(matches!(
            db.set_fan_curve("nobody", &low, true, "t", None),
            Err(BmcError::NotFound(_))
        ));
    }

    #[test]
    fn the_loop_runs_enabled_curves_of_agentless_bmcs_and_removal_cascades() {
        let (_dir, db, s) = open();
        let b = add(&db, &s, "r1", Some("dell"));
        let before = db.fan_curves_signature().unwrap();
        db.set_fan_curve("r1", &curve(vec![(40.0, 30)]), true, "t", None)
            .unwrap();
        assert_ne!(db.fan_curves_signature().unwrap(), before);
        let rows = db.fan_curves_to_run().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].bmc.id, b.id);
        assert_eq!(effective_vendor(&rows[0].bmc), Some(Vendor::Dell));
        db.remove_bmc("r1", "t", None).unwrap();
        assert!(db.fan_curves_to_run().unwrap().is_empty());
        assert!(db.fan_curves_signature().unwrap().is_empty());
    }

    #[test]
    fn stored_vendor_keys_parse_back() {
        for v in [
            Vendor::Supermicro,
            Vendor::Dell,
            Vendor::Hpe,
            Vendor::Other(343),
        ] {
            assert_eq!(parse_vendor_key(&crate::bmcs::vendor_key(v)), Some(v));
        }
        assert_eq!(parse_vendor_key("other:x"), None);
    }
}
