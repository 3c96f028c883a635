//! The BMC pages in a real browser: `tests/web/bmc.mjs` drives Debian's Chromium
//! through playwright-core against a real server and a `dcmon bmc-sim` Supermicro BMC
//! (with its thermal model), added through the page's own form. Polls run every 2 s
//! (`bmc_poll.interval_override`) and the curve every 2 s, so state and duty changes
//! show within seconds. Without Chromium or playwright-core this test fails with how to
//! get them (it never passes by skipping).

use super::bmc_sim::Sim;
use super::web_ui::{BROWSER, first_admin, playwright, run_scenarios};
use super::{OperatorServer, dcmon, run, stdout};
use std::process::Command;

const POLL_CONFIG: &str = "bmc_poll:\n  timeout: 1s\n  attempts: 2\n  interval_override: 2s\n";
/// The name the scenario gives the simulated BMC.
const BMC: &str = "rack1-smc";
/// The name of the BMC added as an HPE iLO.
const HPE_BMC: &str = "rack1-ilo";
/// The duty of the curve the scenario saves (flat, so the zone duty is known).
const DUTY: u8 = 63;

#[test]
fn web_bmc_in_chromium_inventory_live_fans_refused_and_saved_curve() {
    playwright();
    let _one_browser = BROWSER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let server = OperatorServer::start_with(dir.path(), POLL_CONFIG);
    let sim = Sim::start(1, &["--vendor", "supermicro", "--seed", "7"]);

    let (admin_token, password) = first_admin(&server);
    // The same simulated BMC once more, as an HPE iLO by override: the page must say
    // that iLO offers no fan control over IPMI instead of offering an editor.
    let (status, body) = server
        .http
        .post(
            &format!("{}/api/bmcs", server.base),
            &admin_token,
            &serde_json::json!({
                "name": HPE_BMC, "address": format!("127.0.0.1:{}", sim.port),
                "user": "admin", "password": "s3cret", "interval": "1m", "vendor": "hpe"
            }),
        )
        .unwrap();
    assert_eq!(status, 201, "adding the iLO: {body}");

    run_scenarios(
        &server,
        "bmc.mjs",
        password,
        &[
            ("DCMON_BMC", BMC.to_owned()),
            ("DCMON_HPE_BMC", HPE_BMC.to_owned()),
            ("DCMON_BMC_PORT", sim.port.to_string()),
            ("DCMON_BMC_USER", "admin".to_owned()),
            ("DCMON_BMC_PASSWORD", "s3cret".to_owned()),
            ("DCMON_DUTY", DUTY.to_string()),
        ],
        |name| name.starts_with("bmc"),
    );

    // What the browser did, as the server recorded it: the BMC added by the admin, the
    // refused curve never stored, the saved one stored and run, and the BMC's zone at
    // the curve's duty.
    let (status, curve) = server
        .http
        .get(
            &format!("{}/api/bmcs/{BMC}/curve", server.base),
            Some(&server.token),
        )
        .unwrap();
    assert_eq!(status, 200, "{curve}");
    assert_eq!(
        curve["config"]["zones"][0]["points"],
        serde_json::json!([[20.0, DUTY], [90.0, DUTY]]),
        "{curve}"
    );
    assert_eq!(curve["updated_by"], "admin", "{curve}");
    let audit = stdout(&run(Command::new(dcmon()).args([
        "audit",
        "--limit",
        "1000",
        "--config",
        &server.cfg,
    ])));
    let count = |action: &str| {
        audit
            .lines()
            .filter(|l| l.contains(&format!("\t{action}\t")))
            .count()
    };
    assert_eq!(count("bmc.add"), 2, "{audit}");
    assert_eq!(count("bmc.check"), 1, "{audit}");
    assert_eq!(
        count("fans.curve.set"),
        1,
        "the refused curve is not stored: {audit}"
    );
    assert!(
        audit.contains(&format!("new=\"{DUTY} %\"")),
        "the server's loop wrote the duty: {audit}"
    );
    assert!(!audit.contains("s3cret"), "{audit}");
    drop(sim);
}
