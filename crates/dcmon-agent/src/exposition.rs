//! Renderings of a [`Scrape`]: the Prometheus text format 0.0.4 (the local `/metrics`
//! and `collect --format prometheus`) and a JSON document (`collect --format json`).

use dcmon_wire::{MetricSample, Scrape};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Writes `scrape` in the Prometheus text format 0.0.4, as node_exporter does: samples
/// grouped by metric name (in order of first appearance), each family introduced by
/// `# HELP` (when known) and `# TYPE`, and no timestamps. A name ending in `_total` is a
/// counter, every other one a gauge.
pub fn prometheus_text(scrape: &Scrape, out: &mut String) {
    let mut families: Vec<(&str, Vec<&MetricSample>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for s in &scrape.samples {
        let name = s.labels.metric();
        let i = *index.entry(name).or_insert_with(|| {
            families.push((name, Vec::new()));
            families.len() - 1
        });
        families[i].1.push(s);
    }
    for (name, samples) in families {
        write_help(name, out);
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for s in samples {
            out.push_str(name);
            let mut first = true;
            for (k, v) in s.labels.without_name() {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(k);
                out.push_str("=\"");
                escape_label_value(v, out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            write_value(s.value, out);
            out.push('\n');
        }
    }
}

/// `\`, `"` and line feed are the only characters escaped in label values.
fn escape_label_value(v: &str, out: &mut String) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Integers without exponent or fraction, other finite values in the shortest form that
/// reads back to the same f64, and Prometheus' spellings of the non-finite ones.
fn write_value(v: f64, out: &mut String) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e16 {
        let _ = write!(out, "{}", v as i64);
    } else {
        // Debug is the shortest round-trip form, with an exponent outside [1e-4, 1e16).
        let _ = write!(out, "{v:?}");
    }
}

/// `# HELP` for the metrics dcmon emits (node_exporter's wording for its names).
fn write_help(name: &str, out: &mut String) {
    let fixed = match name {
        "node_cpu_seconds_total" => "Seconds the CPUs spent in each mode.",
        "node_context_switches_total" => "Total number of context switches.",
        "node_intr_total" => "Total number of interrupts serviced.",
        "node_forks_total" => "Total number of forks.",
        "node_procs_running" => "Number of processes in runnable state.",
        "node_procs_blocked" => "Number of processes blocked waiting for I/O to complete.",
        "node_boot_time_seconds" => "Node boot time, in unixtime.",
        "node_load1" => "1m load average.",
        "node_load5" => "5m load average.",
        "node_load15" => "15m load average.",
        "dcmon_memory_used_bytes" => "Memory in use: MemTotal minus MemAvailable.",
        "node_filesystem_size_bytes" => "Filesystem size in bytes.",
        "node_filesystem_free_bytes" => "Filesystem free space in bytes.",
        "node_filesystem_avail_bytes" => "Filesystem space available to non-root users in bytes.",
        "node_filesystem_files" => "Filesystem total file nodes.",
        "node_filesystem_files_free" => "Filesystem total free file nodes.",
        "node_filesystem_readonly" => "Filesystem read-only status.",
        "node_filesystem_device_error" => {
            "Whether an error occurred while getting statistics for the given device."
        }
        "dcmon_filesystem_used_ratio" => {
            "Used fraction of the file system holding / (role root) or Docker's data directory (role docker), as df computes Use%."
        }
        "node_disk_reads_completed_total" => "The total number of reads completed successfully.",
        "node_disk_writes_completed_total" => "The total number of writes completed successfully.",
        "node_disk_read_bytes_total" => "The total number of bytes read successfully.",
        "node_disk_written_bytes_total" => "The total number of bytes written successfully.",
        "node_disk_io_time_seconds_total" => "Total seconds spent doing I/Os.",
        "node_hwmon_chip_names" => "Annotation metric for human-readable chip names",
        "node_hwmon_sensor_label" => "Label for given chip and sensor",
        "node_hwmon_temp_celsius" => "Hardware monitor for temperature (input)",
        "node_hwmon_temp_crit_celsius" => "Hardware monitor for temperature (crit)",
        "node_hwmon_temp_max_celsius" => "Hardware monitor for temperature (max)",
        "node_hwmon_fan_rpm" => "Hardware monitor for fan revolutions per minute (input)",
        "dcmon_cpu_temperature_celsius" => {
            "CPU package temperature (hottest package), from hwmon or a CPU thermal zone."
        }
        "dcmon_vrm_temperature_celsius" => "Hottest hwmon temperature sensor labelled VRM.",
        "node_uname_info" => "Labeled system information as provided by the uname system call.",
        "node_time_seconds" => "System time in seconds since epoch (1970).",
        "node_processes_pids" => "Number of PIDs",
        "dcmon_collector_up" => {
            "Whether the collector's last collection succeeded (1) or failed (0)."
        }
        "dcmon_collector_duration_seconds" => "How long the collector's last collection took.",
        "dcmon_agent_spool_bytes" => "Bytes in the agent's on-disk spool.",
        "dcmon_agent_spool_scrapes" => "Scrapes waiting in the agent's spool for the server.",
        "dcmon_agent_spool_dropped_scrapes_total" => {
            "Scrapes dropped because the spool (or the in-memory queue) was full or damaged."
        }
        "dcmon_agent_spool_corrupt_segments_total" => "Damaged spool segments moved aside.",
        "dcmon_apt_upgrades_pending" => "Packages with an upgrade available in apt's lists.",
        "dcmon_apt_security_upgrades_pending" => {
            "Packages with an upgrade available from a security suite."
        }
        "dcmon_apt_lists_age_seconds" => "Age of apt's newest package list (apt update).",
        "dcmon_reboot_required" => "Whether the system asks for a reboot (1) or not (0).",
        "dcmon_reboot_required_packages_info" => "A package that asked for the pending reboot.",
        "dcmon_bmc_fan_mode" => {
            "The BMC's fan mode (Supermicro: 0 standard, 1 full, 2 optimal, 4 heavy I/O)."
        }
        "dcmon_bmc_fan_zone_duty_percent" => "The BMC's fan duty per zone, in percent.",
        "dcmon_gpu_up" => "Whether the GPU could be read (1) or not (0).",
        "dcmon_gpu_lost" => "Whether the GPU has fallen off the bus (1).",
        "dcmon_gpu_xid_errors_total" => "XID errors reported by the driver, by XID code.",
        "dcmon_gpu_pcie_link_gen_max" => "Highest PCIe generation the GPU's link supports.",
        "dcmon_gpu_pcie_link_width_max" => "Widest PCIe link the GPU supports (lanes).",
        "dcmon_nvme_up" => "Whether the NVMe controller's health log could be read.",
        "dcmon_nvme_unsafe_shutdowns" => "Unsafe shutdowns the NVMe controller counted.",
        "DCGM_FI_DEV_GPU_TEMP" => "GPU temperature (in C).",
        "DCGM_FI_DEV_MEMORY_TEMP" => "Memory temperature (in C).",
        "DCGM_FI_DEV_POWER_USAGE" => "Power draw (in W).",
        "DCGM_FI_DEV_POWER_MGMT_LIMIT" => "Power management limit (in W).",
        "DCGM_FI_DEV_GPU_UTIL" => "GPU utilization (in %).",
        "DCGM_FI_DEV_MEM_COPY_UTIL" => "Memory utilization (in %).",
        "DCGM_FI_DEV_FAN_SPEED" => "Fan speed (in %).",
        "DCGM_FI_DEV_FB_USED" => "Framebuffer memory used (in MiB).",
        "DCGM_FI_DEV_FB_FREE" => "Framebuffer memory free (in MiB).",
        "DCGM_FI_DEV_FB_TOTAL" => "Framebuffer memory total (in MiB).",
        "DCGM_FI_DEV_SM_CLOCK" => "SM clock frequency (in MHz).",
        "DCGM_FI_DEV_MEM_CLOCK" => "Memory clock frequency (in MHz).",
        "DCGM_FI_DEV_PSTATE" => "Performance state (P-state) 0-15.",
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS" => "Current clock throttle reasons (bitmask).",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL" => "Total number of single-bit volatile ECC errors.",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" => "Total number of double-bit volatile ECC errors.",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL" => "Total number of single-bit persistent ECC errors.",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL" => "Total number of double-bit persistent ECC errors.",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER" => "Total number of PCIe retries.",
        "DCGM_FI_DEV_PCIE_LINK_GEN" => "Current PCIe link generation.",
        "DCGM_FI_DEV_PCIE_LINK_WIDTH" => "Current PCIe link width (lanes).",
        "DCGM_FI_DEV_RETIRED_SBE" => "Total number of retired pages due to single-bit errors.",
        "DCGM_FI_DEV_RETIRED_DBE" => "Total number of retired pages due to double-bit errors.",
        "DCGM_FI_DEV_RETIRED_PENDING" => "Total number of pages pending retirement.",
        "DCGM_FI_DEV_ROW_REMAP_PENDING" => "Whether remapping of rows is pending.",
        "DCGM_FI_DEV_ROW_REMAP_FAILURE" => "Whether remapping of rows has failed.",
        "DCGM_FI_DEV_XID_ERRORS" => "Value of the last XID error encountered.",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL" => {
            "Total number of NVLink flow-control CRC errors."
        }
        "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL" => {
            "Total number of NVLink data CRC errors."
        }
        "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL" => "Total number of NVLink retries.",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL" => {
            "Total number of NVLink recovery errors."
        }
        "smartctl_device" => "Device info.",
        "smartctl_device_temperature" => "Device temperature celsius.",
        "smartctl_device_available_spare" => {
            "Normalized percentage (0 to 100%) of the remaining spare capacity available."
        }
        "smartctl_device_available_spare_threshold" => {
            "When the Available Spare falls below the threshold indicated in this field, an asynchronous event completion may occur."
        }
        "smartctl_device_percentage_used" => "Device write percentage used.",
        "smartctl_device_critical_warning" => {
            "This field indicates critical warnings for the state of the controller."
        }
        "smartctl_device_media_errors" => {
            "Contains the number of occurrences where the controller detected an unrecovered data integrity error."
        }
        "smartctl_device_num_err_log_entries" => {
            "Contains the number of Error Information log entries over the life of the controller."
        }
        "smartctl_device_power_on_seconds" => "Device power on seconds.",
        "smartctl_device_power_cycle_count" => "Device power cycle count.",
        "smartctl_device_bytes_read" => "Bytes read from the device.",
        "smartctl_device_bytes_written" => "Bytes written to the device.",
        "ipmi_up" => "'1' if a scrape of the IPMI device was successful, '0' otherwise.",
        "ipmi_temperature_celsius" => "Temperature reading in degree Celsius.",
        "ipmi_temperature_state" => {
            "Reported state of a temperature sensor (0=nominal, 1=warning, 2=critical)."
        }
        "ipmi_fan_speed_rpm" => "Fan speed in rotations per minute.",
        "ipmi_fan_speed_state" => {
            "Reported state of a fan speed sensor (0=nominal, 1=warning, 2=critical)."
        }
        "ipmi_voltage_volts" => "Voltage reading in Volts.",
        "ipmi_voltage_state" => {
            "Reported state of a voltage sensor (0=nominal, 1=warning, 2=critical)."
        }
        "ipmi_current_amperes" => "Current reading in Amperes.",
        "ipmi_current_state" => {
            "Reported state of a current sensor (0=nominal, 1=warning, 2=critical)."
        }
        "ipmi_power_watts" => "Power reading in Watts.",
        "ipmi_power_state" => {
            "Reported state of a power sensor (0=nominal, 1=warning, 2=critical)."
        }
        "ipmi_sensor_value" => {
            "Generic data read from an IPMI sensor of unknown type, relying on labels for context."
        }
        "ipmi_sensor_state" => {
            "Indicates the severity of the state reported by an IPMI sensor (0=nominal, 1=warning, 2=critical)."
        }
        _ => {
            if let Some(field) = name.strip_prefix("node_memory_") {
                let _ = writeln!(out, "# HELP {name} Memory information field {field}.");
            } else if let Some(stat) = name.strip_prefix("node_network_") {
                let stat = stat.strip_suffix("_total").unwrap_or(stat);
                let _ = writeln!(out, "# HELP {name} Network device statistic {stat}.");
            }
            return;
        }
    };
    let _ = writeln!(out, "# HELP {name} {fixed}");
}

/// `{"timestamp_ms":…,"samples":[{"metric":"name","labels":{…},"value":1.5},…]}`; the
/// non-finite values, which JSON has no numbers for, as the strings `"NaN"`, `"+Inf"`,
/// `"-Inf"`.
pub fn json(scrape: &Scrape) -> String {
    #[derive(Serialize)]
    struct Doc<'a> {
        timestamp_ms: i64,
        samples: Vec<Sample<'a>>,
    }
    #[derive(Serialize)]
    struct Sample<'a> {
        metric: &'a str,
        labels: LabelMap<'a>,
        value: Value,
    }
    let doc = Doc {
        timestamp_ms: scrape.timestamp_ms,
        samples: scrape
            .samples
            .iter()
            .map(|s| Sample {
                metric: s.labels.metric(),
                labels: LabelMap(s),
                value: Value(s.value),
            })
            .collect(),
    };
    serde_json::to_string(&doc).expect("a document of strings and numbers always serialises")
}

/// The labels of a sample other than `__name__`, as a JSON object.
struct LabelMap<'a>(&'a MetricSample);

impl Serialize for LabelMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.labels.without_name() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct Value(f64);

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            s.serialize_str("NaN")
        } else if v.is_infinite() {
            s.serialize_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else if v.fract() == 0.0 && v.abs() < 1e16 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcmon_wire::Labels;

    /// Metric, labels, value.
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

    fn scrape(samples: &[Row]) -> Scrape {
        Scrape {
            timestamp_ms: 1_700_000_000_123,
            samples: samples
                .iter()
                .map(|(m, l, v)| MetricSample {
                    labels: Labels::new(m, l.iter().copied()).unwrap(),
                    value: *v,
                })
                .collect(),
        }
    }

    fn check_text(samples: &[Row], expect: &str) {
        let mut out = String::new();
        prometheus_text(&scrape(samples), &mut out);
        assert_eq!(out, expect);
    }

    #[test]
    fn text_groups_families_with_help_and_type() {
        check_text(
            &[
                ("node_load1", &[], 0.5),
                (
                    "dcmon_collector_up",
                    &[("collector", "os"), ("host", "gpu01")],
                    1.0,
                ),
                (
                    "node_network_receive_bytes_total",
                    &[("device", "eth0")],
                    1234.0,
                ),
                (
                    "dcmon_collector_up",
                    &[("collector", "gpu"), ("host", "gpu01")],
                    0.0,
                ),
                ("node_memory_MemTotal_bytes", &[], 25276063744.0),
                ("custom_thing", &[], 3.0),
            ],
            r#"# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.5
# HELP dcmon_collector_up Whether the collector's last collection succeeded (1) or failed (0).
# TYPE dcmon_collector_up gauge
dcmon_collector_up{collector="os",host="gpu01"} 1
dcmon_collector_up{collector="gpu",host="gpu01"} 0
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 1234
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 25276063744
# TYPE custom_thing gauge
custom_thing 3
"#,
        );
        check_text(&[], "");
    }

    #[test]
    fn text_escapes_label_values() {
        check_text(
            &[(
                "node_hwmon_sensor_label",
                &[("label", "a\\b \"c\"\nd")],
                1.0,
            )],
            "# HELP node_hwmon_sensor_label Label for given chip and sensor\n# TYPE node_hwmon_sensor_label gauge\nnode_hwmon_sensor_label{label=\"a\\\\b \\\"c\\\"\\nd\"} 1\n",
        );
    }

    #[test]
    fn values_format_like_prometheus() {
        let check = |v: f64, expect: &str| {
            let mut out = String::new();
            write_value(v, &mut out);
            assert_eq!(out, expect, "{v:?}");
            if v.is_finite() {
                assert_eq!(expect.parse::<f64>().unwrap(), v);
            }
        };
        check(0.0, "0");
        check(-0.0, "0");
        check(1.0, "1");
        check(-42.0, "-42");
        check(25276063744.0, "25276063744");
        check(0.06, "0.06");
        check(78.9, "78.9");
        check(1.0 / 3.0, "0.3333333333333333");
        check(1e-7, "1e-7");
        check(1.5e300, "1.5e300");
        check(1e15, "1000000000000000");
        check(1e16, "1e16");
        check(12345678901234567890.0, "1.2345678901234567e19");
        check(f64::NAN, "NaN");
        check(f64::INFINITY, "+Inf");
        check(f64::NEG_INFINITY, "-Inf");
    }

    #[test]
    fn json_document() {
        let s = scrape(&[
            ("node_load1", &[], 0.25),
            (
                "node_cpu_seconds_total",
                &[("cpu", "0"), ("mode", "idle")],
                1904.38,
            ),
            ("a", &[("x", "\"q\"")], 3.0),
            ("b", &[], f64::NAN),
            ("c", &[], f64::INFINITY),
            ("d", &[], f64::NEG_INFINITY),
        ]);
        assert_eq!(
            json(&s),
            r#"{"timestamp_ms":1700000000123,"samples":[{"metric":"node_load1","labels":{},"value":0.25},{"metric":"node_cpu_seconds_total","labels":{"cpu":"0","mode":"idle"},"value":1904.38},{"metric":"a","labels":{"x":"\"q\""},"value":3},{"metric":"b","labels":{},"value":"NaN"},{"metric":"c","labels":{},"value":"+Inf"},{"metric":"d","labels":{},"value":"-Inf"}]}"#
        );
        let back: serde_json::Value = serde_json::from_str(&json(&Scrape::default())).unwrap();
        assert_eq!(back, serde_json::json!({"timestamp_ms": 0, "samples": []}));
    }
}
