//! `/proc/diskstats`: I/O per whole disk (partitions, loop and RAM disks are skipped as
//! node_exporter's default `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$` does).

use super::{parse_u64, push};
use dcmon_wire::MetricSample;

/// The kernel counts sectors of 512 bytes in diskstats, whatever the device's sector size.
const SECTOR_BYTES: f64 = 512.0;

pub(super) fn parse(text: &str, out: &mut Vec<MetricSample>) -> Result<(), String> {
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(_major), Some(_minor), Some(device)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if ignored(device) {
            continue;
        }
        // reads, reads merged, sectors read, ms reading, writes, writes merged,
        // sectors written, ms writing, in progress, ms doing I/O (Documentation/admin-guide/iostats.rst).
        let mut v = [0u64; 10];
        let mut n = 0;
        for (slot, field) in v.iter_mut().zip(fields) {
            *slot = parse_u64(field, device)?;
            n += 1;
        }
        if n < v.len() {
            return Err(format!("{device}: {n} counters, expected at least 10"));
        }
        let labels = [("device", device)];
        push(out, "node_disk_reads_completed_total", &labels, v[0] as f64);
        push(
            out,
            "node_disk_read_bytes_total",
            &labels,
            v[2] as f64 * SECTOR_BYTES,
        );
        push(
            out,
            "node_disk_writes_completed_total",
            &labels,
            v[4] as f64,
        );
        push(
            out,
            "node_disk_written_bytes_total",
            &labels,
            v[6] as f64 * SECTOR_BYTES,
        );
        push(
            out,
            "node_disk_io_time_seconds_total",
            &labels,
            v[9] as f64 / 1000.0,
        );
    }
    Ok(())
}

/// node_exporter's default device exclusion, matched by hand: a known prefix followed by
/// one or more digits.
fn ignored(device: &str) -> bool {
    let stem = device.trim_end_matches(|c: char| c.is_ascii_digit());
    if stem.len() == device.len() {
        return false;
    }
    match stem {
        "ram" | "zram" | "loop" | "fd" => true,
        _ => {
            let b = stem.as_bytes();
            let letter_after = |prefix: &str| {
                b.len() == prefix.len() + 1
                    && stem.starts_with(prefix)
                    && b[prefix.len()].is_ascii_lowercase()
            };
            letter_after("hd")
                || letter_after("sd")
                || letter_after("vd")
                || letter_after("xvd")
                || is_nvme_partition_stem(stem)
        }
    }
}

/// `nvme<digits>n<digits>p`.
fn is_nvme_partition_stem(stem: &str) -> bool {
    let Some(rest) = stem.strip_prefix("nvme").and_then(|r| r.strip_suffix('p')) else {
        return false;
    };
    let Some((controller, namespace)) = rest.split_once('n') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    digits(controller) && digits(namespace)
}

#[cfg(test)]
mod tests {
    use super::super::tests::check_parse;

    fn check(input: &str, expect: &str) {
        check_parse(super::parse, input, expect);
    }

    #[test]
    fn parses_whole_disks() {
        check(
            " 254       0 vda 57088 25916 6437794 22777 6100 37847 2542872 10437 0 10716 34561 4537 64 182336 1237 92 108\n 254       1 vda1 5 0 40 1 0 0 0 0 0 1 1\n   7       0 loop0 9 0 9 0 0 0 0 0 0 0 0\n",
            r#"node_disk_reads_completed_total{device="vda"} 57088
node_disk_read_bytes_total{device="vda"} 3296150528
node_disk_writes_completed_total{device="vda"} 6100
node_disk_written_bytes_total{device="vda"} 1301950464
node_disk_io_time_seconds_total{device="vda"} 10.716
"#,
        );
        check(
            " 8 0 sda 1 2 3\n",
            "error: sda: 3 counters, expected at least 10",
        );
        check("", "");
    }

    #[test]
    fn ignores_what_node_exporter_ignores() {
        let check =
            |device: &str, expect: bool| assert_eq!(super::ignored(device), expect, "{device}");
        for d in [
            "ram0",
            "zram0",
            "loop7",
            "fd0",
            "sda1",
            "hdb2",
            "vda15",
            "xvda1",
            "nvme0n1p1",
            "nvme12n3p15",
        ] {
            check(d, true);
        }
        for d in [
            "sda",
            "vda",
            "nvme0n1",
            "dm-0",
            "md0",
            "sr0",
            "mmcblk0",
            "mmcblk0p1",
            "sdaa1",
            "nvme0n1p",
            "loop",
            "nvmen1p1",
        ] {
            check(d, false);
        }
    }
}
