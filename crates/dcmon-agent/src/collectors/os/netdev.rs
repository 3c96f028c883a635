//! `/proc/net/dev`: bytes, packets, errors and drops per interface and direction.

use super::{NameFilter, parse_u64, push};
use dcmon_wire::MetricSample;

/// Column of `/proc/net/dev` (after the interface name) → metric.
const COLUMNS: [(usize, &str); 8] = [
    (0, "node_network_receive_bytes_total"),
    (1, "node_network_receive_packets_total"),
    (2, "node_network_receive_errs_total"),
    (3, "node_network_receive_drop_total"),
    (8, "node_network_transmit_bytes_total"),
    (9, "node_network_transmit_packets_total"),
    (10, "node_network_transmit_errs_total"),
    (11, "node_network_transmit_drop_total"),
];

pub(super) fn parse(
    text: &str,
    exclude: &NameFilter,
    out: &mut Vec<MetricSample>,
) -> Result<(), String> {
    // Two header lines, then `  name: rx... tx...`; the name can touch the first number
    // (`eth0:125597495`) on old kernels, so split at the colon, not at white space.
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let device = name.trim();
        if exclude.matches(device) {
            continue;
        }
        let mut values = [0u64; 12];
        let mut n = 0;
        for (slot, field) in values.iter_mut().zip(counters.split_ascii_whitespace()) {
            *slot = parse_u64(field, device)?;
            n += 1;
        }
        if n < values.len() {
            return Err(format!("{device}: {n} counters, expected 16"));
        }
        for (column, metric) in COLUMNS {
            push(out, metric, &[("device", device)], values[column] as f64);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::NameFilter;
    use super::super::tests::check_parse;

    const HEADER: &str = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n";

    fn check(input: &str, expect: &str) {
        let exclude = NameFilter::new(&["lo".into(), "veth*".into()]);
        let input = format!("{HEADER}{input}");
        check_parse(
            |text, out| super::parse(text, &exclude, out),
            &input,
            expect,
        );
    }

    #[test]
    fn parses_interfaces_and_skips_excluded() {
        check(
            "    lo:    3245      30    0    0    0     0          0         0     3245      30    0    0    0     0       0          0\n  eth0:125597495    7537    1    2    0     0          0         0   544590    5804    3    4    0     0       0          0\nveth9a1: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n",
            r#"node_network_receive_bytes_total{device="eth0"} 125597495
node_network_receive_packets_total{device="eth0"} 7537
node_network_receive_errs_total{device="eth0"} 1
node_network_receive_drop_total{device="eth0"} 2
node_network_transmit_bytes_total{device="eth0"} 544590
node_network_transmit_packets_total{device="eth0"} 5804
node_network_transmit_errs_total{device="eth0"} 3
node_network_transmit_drop_total{device="eth0"} 4
"#,
        );
        check("eth1: 1 2 3\n", "error: eth1: 3 counters, expected 16");
        check(
            "eth1: 1 2 x 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
            r#"error: eth1: "x" is not a number"#,
        );
        check("", "");
    }
}
