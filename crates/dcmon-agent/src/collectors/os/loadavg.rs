//! `/proc/loadavg`: the 1, 5 and 15 minute load averages.

use super::push;
use dcmon_wire::MetricSample;

pub(super) fn parse(text: &str, out: &mut Vec<MetricSample>) -> Result<(), String> {
    let mut fields = text.split_ascii_whitespace();
    for metric in ["node_load1", "node_load5", "node_load15"] {
        let field = fields.next().ok_or_else(|| format!("{metric}: missing"))?;
        let value: f64 = field
            .parse()
            .map_err(|_| format!("{metric}: {field:?} is not a number"))?;
        push(out, metric, &[], value);
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
    fn parses_three_averages() {
        check(
            "0.00 0.06 0.20 2/80 9630\n",
            "node_load1 0\nnode_load5 0.06\nnode_load15 0.2\n",
        );
        check(
            "12.50 8.25 4.10 13/2048 77\n",
            "node_load1 12.5\nnode_load5 8.25\nnode_load15 4.1\n",
        );
        check("0.1 0.2\n", "error: node_load15: missing");
        check("x 0.2 0.3\n", r#"error: node_load1: "x" is not a number"#);
    }
}
