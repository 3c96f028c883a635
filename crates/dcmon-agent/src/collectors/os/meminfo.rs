//! `/proc/meminfo`: the fields dashboards use, as `node_memory_<Field>_bytes`, plus
//! `dcmon_memory_used_bytes` (MemTotal − MemAvailable) for the fleet table's RAM %.

use super::{parse_u64, push};
use dcmon_wire::MetricSample;

/// Field → metric name, as node_exporter names them (fields counted in pages, like
/// `HugePages_Total`, get no `_bytes`).
const FIELDS: &[(&str, &str)] = &[
    ("MemTotal", "node_memory_MemTotal_bytes"),
    ("MemFree", "node_memory_MemFree_bytes"),
    ("MemAvailable", "node_memory_MemAvailable_bytes"),
    ("Buffers", "node_memory_Buffers_bytes"),
    ("Cached", "node_memory_Cached_bytes"),
    ("SwapCached", "node_memory_SwapCached_bytes"),
    ("Active", "node_memory_Active_bytes"),
    ("Inactive", "node_memory_Inactive_bytes"),
    ("SwapTotal", "node_memory_SwapTotal_bytes"),
    ("SwapFree", "node_memory_SwapFree_bytes"),
    ("Dirty", "node_memory_Dirty_bytes"),
    ("Writeback", "node_memory_Writeback_bytes"),
    ("Shmem", "node_memory_Shmem_bytes"),
    ("Slab", "node_memory_Slab_bytes"),
    ("SReclaimable", "node_memory_SReclaimable_bytes"),
    ("Committed_AS", "node_memory_Committed_AS_bytes"),
    ("HugePages_Total", "node_memory_HugePages_Total"),
];

pub(super) fn parse(text: &str, out: &mut Vec<MetricSample>) -> Result<(), String> {
    let mut total = None;
    let mut available = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(&(_, metric)) = FIELDS.iter().find(|(k, _)| *k == key) else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let value = parse_u64(
            fields.next().ok_or_else(|| format!("{key}: no value"))?,
            key,
        )?;
        let value = match fields.next() {
            Some("kB") => value.saturating_mul(1024),
            _ => value,
        };
        match key {
            "MemTotal" => total = Some(value),
            "MemAvailable" => available = Some(value),
            _ => {}
        }
        push(out, metric, &[], value as f64);
    }
    // MemAvailable exists since Linux 3.14; without it "used" is not worth guessing.
    if let (Some(total), Some(available)) = (total, available) {
        push(
            out,
            "dcmon_memory_used_bytes",
            &[],
            total.saturating_sub(available) as f64,
        );
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
    fn parses_fields_units_and_used() {
        check(
            "MemTotal:       24683656 kB\nMemFree:        24260852 kB\nMemAvailable:   24332040 kB\nActive(anon):       1512 kB\nHugePages_Total:       4\nHugepagesize:       2048 kB\n",
            "node_memory_MemTotal_bytes 25276063744
node_memory_MemFree_bytes 24843112448
node_memory_MemAvailable_bytes 24916008960
node_memory_HugePages_Total 4
dcmon_memory_used_bytes 360054784
",
        );
        check(
            "MemTotal: 1024 kB\n",
            "node_memory_MemTotal_bytes 1048576\n",
        );
        check(
            "MemTotal: lots kB\n",
            r#"error: MemTotal: "lots" is not a number"#,
        );
        check("MemTotal:\n", "error: MemTotal: no value");
    }
}
