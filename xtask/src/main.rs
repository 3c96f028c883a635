//! Developer tasks. `cargo xtask help` lists them.
//!
//! - `test`: installs the system packages the tests need (Debian, apt-get), the browser
//!   driver of the web UI tests (npm `playwright-core`) and the PyPI ones (aiosmtpd, in a
//!   venv at target/py), builds the binaries the end-to-end tests start, runs the whole
//!   suite. `.ci/run` calls this.
//! - `ci`: `cargo fmt --check`, `cargo clippy -D warnings`, then `test`.
//! - `bench wire`: bytes per sample of dcmon batches beside remote_write and gzip JSON.
//! - `bench ipmi`: reading one BMC (ours vs `ipmitool`) and polling 1,000 simulated BMCs.
//! - `bench agent`: the agent's CPU per collection, RSS and series beside node_exporter.
//! - `bench bmc`: the server's agentless poller against 1,000 simulated BMCs.
//! - `bench tsdb`: fleet-shaped remote_write load against dcmon, Prometheus and
//!   VictoriaMetrics in one run (ingest rate, CPU, RSS, disk, query latency, ratios).
//! - `bench alerts`: for:-to-webhook latency with 10,000 series and 100 rules, and
//!   the cost of one evaluation cycle.
//! - `fuzz <target> [--seconds N]`: a time-bounded `cargo fuzz` run (needs nightly).

mod bench;

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Debian packages the test suite starts as real peers (see shared TESTING.md).
const SYSTEM_PACKAGES: &[&str] = &[
    "ca-certificates",
    "procps",
    "prometheus",
    "openipmi",
    "ipmitool",
    "freeipmi-tools",
    "chromium",
    "nodejs",
    "python3-venv",
];

/// The browser driver of the web UI tests (shared TESTING.md): the same major version as
/// Debian's Chromium, installed under the target dir where `tests/e2e/web_ui.rs` finds it.
const PLAYWRIGHT_CORE: &str = "playwright-core@1.64.1";

/// PyPI packages the test suite starts as real peers, in a venv under target/py.
const PYTHON_PACKAGES: &[&str] = &["aiosmtpd"];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = args
        .split_first()
        .map(|(t, r)| (t.as_str(), r))
        .unwrap_or(("help", &[]));
    match task {
        "test" => test(rest),
        "ci" => ci(rest),
        "bench" => bench::run(rest),
        "fuzz" => fuzz(rest),
        "help" | "--help" | "-h" => {
            println!(
                "usage: cargo xtask <test|ci|bench wire|bench tsdb [--help]|bench ipmi [--help]|bench agent [--help]|bench bmc [--help]|bench alerts [--help]|fuzz TARGET [--seconds N]>"
            );
            Ok(())
        }
        other => bail!("unknown task {other:?}; try `cargo xtask help`"),
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

fn run(mut cmd: Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Installs missing Debian packages: one `apt-get update`, then one install.
fn install_system_packages() -> Result<()> {
    let missing: Vec<&str> = SYSTEM_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query").args(["-W", "-f=${Status}", p]).output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !have("apt-get") {
        bail!(
            "system packages {missing:?} are missing and apt-get is not available; install them by hand"
        );
    }
    let sudo: &[&str] = if rustix_is_root() { &[] } else { &["sudo"] };
    let apt = |args: &[&str]| {
        let mut all: Vec<&str> = sudo.to_vec();
        all.push("apt-get");
        all.extend_from_slice(args);
        let mut c = Command::new(all[0]);
        c.args(&all[1..]).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    run(apt(&["update", "-q"]))?;
    let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
    args.extend(missing.iter().copied());
    run(apt(&args))
}

fn rustix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The target dir cargo builds into (where the e2e tests look for `web-tests/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root().join(p) })
        .unwrap_or_else(|| root().join("target"))
}

/// Installs `playwright-core` from npm into `<target>/web-tests`, unless that version is
/// there already. Debian's `nodejs` brings no npm when it comes from elsewhere (NodeSource
/// builds bundle it); Debian's own npm package is installed only when npm is missing.
fn install_playwright() -> Result<()> {
    let prefix = target_dir().join("web-tests");
    let (name, version) = PLAYWRIGHT_CORE
        .split_once('@')
        .context("PLAYWRIGHT_CORE is name@version")?;
    let manifest = prefix.join("node_modules").join(name).join("package.json");
    if let Ok(text) = std::fs::read_to_string(&manifest) {
        let installed: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", manifest.display()))?;
        if installed["version"] == version {
            return Ok(());
        }
    }
    if !have("npm") {
        let mut apt = Command::new(if rustix_is_root() { "apt-get" } else { "sudo" });
        if !rustix_is_root() {
            apt.arg("apt-get");
        }
        apt.args(["install", "-y", "-q", "--no-install-recommends", "npm"])
            .env("DEBIAN_FRONTEND", "noninteractive");
        run(apt)?;
    }
    std::fs::create_dir_all(&prefix).with_context(|| format!("creating {}", prefix.display()))?;
    let mut npm = Command::new("npm");
    npm.args([
        "install",
        "--no-save",
        "--no-audit",
        "--no-fund",
        "--prefix",
    ])
    .arg(&prefix)
    .arg(PLAYWRIGHT_CORE);
    run(npm)
}

/// Makes `target/py` (a Python venv) with [`PYTHON_PACKAGES`] unless they import already.
fn install_python_packages() -> Result<()> {
    let venv = root().join("target/py");
    let python = venv.join("bin/python3");
    let imports = PYTHON_PACKAGES.join(", ");
    let present = Command::new(&python)
        .args(["-c", &format!("import {imports}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if present {
        return Ok(());
    }
    let mut make = Command::new("python3");
    make.args(["-m", "venv"]).arg(&venv);
    run(make)?;
    let mut pip = Command::new(venv.join("bin/pip"));
    pip.args(["install", "-q"]).args(PYTHON_PACKAGES);
    run(pip)
}

fn test(extra: &[String]) -> Result<()> {
    install_system_packages()?;
    install_playwright()?;
    install_python_packages()?;
    // The end-to-end tests start the real binaries of every crate.
    let mut build = cargo();
    build.args(["build", "--workspace", "--bins"]);
    run(build)?;
    let nextest = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["nextest", "--version"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    let mut t = cargo();
    if nextest {
        t.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
    } else {
        t.args(["test", "--workspace", "--no-fail-fast"]);
    }
    t.args(extra);
    run(t)
}

fn ci(extra: &[String]) -> Result<()> {
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut clippy = cargo();
    clippy.args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]);
    run(clippy)?;
    test(extra)
}

fn fuzz(args: &[String]) -> Result<()> {
    let target = args
        .first()
        .context("usage: cargo xtask fuzz TARGET [--seconds N]")?;
    let seconds = match args.iter().position(|a| a == "--seconds") {
        Some(i) => args
            .get(i + 1)
            .context("--seconds needs a number")?
            .parse::<u64>()?,
        None => 60,
    };
    let crate_dir = std::fs::read_dir(root().join("crates"))?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("fuzz"))
        .find(|d| d.join("fuzz_targets").join(format!("{target}.rs")).exists())
        .with_context(|| format!("no fuzz target named {target:?}"))?;
    let mut c = Command::new("cargo");
    c.current_dir(crate_dir).args([
        "+nightly",
        "fuzz",
        "run",
        target,
        "--",
        &format!("-max_total_time={seconds}"),
    ]);
    run(c)
}
