//! `/proc/stat`: CPU time per CPU and mode, interrupts, context switches, forks, boot time.

use super::{parse_u64, push};
use dcmon_wire::MetricSample;

/// Clock ticks per second of `/proc/stat`: the kernel reports in USER_HZ, which is 100 on
/// every architecture Linux exports to user space.
const USER_HZ: f64 = 100.0;

/// The columns of a `cpuN` line, in order (guest time is already counted in user).
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub(super) fn parse(text: &str, out: &mut Vec<MetricSample>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let Some(key) = fields.next() else { continue };
        if let Some(cpu) = key.strip_prefix("cpu") {
            // `cpu ` is the sum over all CPUs; node_exporter reports only the per-CPU lines.
            if cpu.is_empty() {
                continue;
            }
            for (mode, ticks) in MODES.iter().zip(fields) {
                let ticks = parse_u64(ticks, key)?;
                push(
                    out,
                    "node_cpu_seconds_total",
                    &[("cpu", cpu), ("mode", mode)],
                    ticks as f64 / USER_HZ,
                );
            }
            continue;
        }
        let metric = match key {
            "intr" => "node_intr_total",
            "ctxt" => "node_context_switches_total",
            "btime" => "node_boot_time_seconds",
            "processes" => "node_forks_total",
            "procs_running" => "node_procs_running",
            "procs_blocked" => "node_procs_blocked",
            _ => continue,
        };
        let value = fields.next().ok_or_else(|| format!("{key}: no value"))?;
        push(out, metric, &[], parse_u64(value, key)? as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_parse;

    fn check(input: &str, expect: &str) {
        check_parse(super::parse, input, expect);
    }

    #[test]
    fn parses_cpus_and_counters() {
        check(
            "cpu  5 0 0 0 0 0 0 0 0 0\ncpu3 123 4 56 7890 12 0 3 1 0 0\nintr 402849 0 0 5\nctxt 412209\nbtime 1795463627\nprocesses 9630\nprocs_running 2\nprocs_blocked 0\nsoftirq 1 2 3\n",
            r#"node_cpu_seconds_total{cpu="3",mode="user"} 1.23
node_cpu_seconds_total{cpu="3",mode="nice"} 0.04
node_cpu_seconds_total{cpu="3",mode="system"} 0.56
node_cpu_seconds_total{cpu="3",mode="idle"} 78.9
node_cpu_seconds_total{cpu="3",mode="iowait"} 0.12
node_cpu_seconds_total{cpu="3",mode="irq"} 0
node_cpu_seconds_total{cpu="3",mode="softirq"} 0.03
node_cpu_seconds_total{cpu="3",mode="steal"} 0.01
node_intr_total 402849
node_context_switches_total 412209
node_boot_time_seconds 1795463627
node_forks_total 9630
node_procs_running 2
node_procs_blocked 0
"#,
        );
        // Kernels before 2.6.11 had no steal column: the modes present are reported.
        check("cpu0 1 2 3 4 5 6 7\n", &{
            let mut s = String::new();
            for (m, v) in ["user", "nice", "system", "idle", "iowait", "irq", "softirq"]
                .iter()
                .zip(1..)
            {
                s += &format!(
                    "node_cpu_seconds_total{{cpu=\"0\",mode=\"{m}\"}} {}\n",
                    v as f64 / 100.0
                );
            }
            s
        });
        check("ctxt x\n", r#"error: ctxt: "x" is not a number"#);
        check("btime\n", "error: btime: no value");
        check("", "");
    }
}
