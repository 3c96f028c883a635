//! The part of Prometheus' alert templates that rules use: `{{ $labels.NAME }}`,
//! `{{ $value }}`, `{{ $labels.NAME | toUpper }}`, `{{ humanize $value }}` and
//! `{{ printf "%.1f" $value }}`. Anything else is refused when the rule is saved, not
//! when the alert fires.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Label(String),
    Value,
}

#[derive(Debug, Clone, PartialEq)]
enum Format {
    Plain,
    Humanize,
    Fixed(usize),
    Upper,
    Lower,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Text(String),
    Expr(Value, Format),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

fn parse_value(s: &str) -> Result<Value, String> {
    if s == "$value" {
        return Ok(Value::Value);
    }
    if let Some(name) = s.strip_prefix("$labels.") {
        if super::rules::is_label_name(name) {
            return Ok(Value::Label(name.to_owned()));
        }
    }
    if let Some(rest) = s.strip_prefix("index $labels ") {
        let name = rest.trim().trim_matches('"');
        if super::rules::is_label_name(name) {
            return Ok(Value::Label(name.to_owned()));
        }
    }
    Err(format!(
        "{s:?}: use $value, $labels.NAME, humanize $value, printf \"%.Nf\" $value"
    ))
}

fn parse_expr(inner: &str) -> Result<Part, String> {
    let (head, pipe) = match inner.split_once('|') {
        Some((h, p)) => (h.trim(), Some(p.trim())),
        None => (inner.trim(), None),
    };
    let (value, mut format) = if let Some(v) = head.strip_prefix("humanize ") {
        (parse_value(v.trim())?, Format::Humanize)
    } else if let Some(rest) = head.strip_prefix("printf ") {
        let rest = rest.trim();
        let (fmt, v) = rest
            .strip_prefix('"')
            .and_then(|r| r.split_once('"'))
            .ok_or_else(|| format!("{head:?}: printf needs a quoted format"))?;
        let digits = fmt
            .strip_prefix("%.")
            .and_then(|d| d.strip_suffix('f'))
            .and_then(|d| d.parse::<usize>().ok())
            .filter(|d| *d <= 12)
            .ok_or_else(|| format!("{fmt:?}: only %.Nf formats are supported"))?;
        (parse_value(v.trim())?, Format::Fixed(digits))
    } else {
        (parse_value(head)?, Format::Plain)
    };
    if let Some(p) = pipe {
        format = match p {
            "toUpper" => Format::Upper,
            "toLower" => Format::Lower,
            "humanize" => Format::Humanize,
            other => {
                return Err(format!(
                    "{other:?}: unknown function (toUpper, toLower, humanize)"
                ));
            }
        };
    }
    Ok(Part::Expr(value, format))
}

impl Template {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| "a {{ without its }}".to_owned())?;
            let inner = after[..end]
                .trim()
                .trim_start_matches('-')
                .trim_end_matches('-');
            parts.push(parse_expr(inner.trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self(parts))
    }

    pub fn render(&self, labels: &BTreeMap<String, String>, value: f64) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Expr(v, f) => {
                    let text = match v {
                        Value::Label(name) => labels.get(name).cloned().unwrap_or_default(),
                        Value::Value => dcmon_promql::format_float(value),
                    };
                    let number = || match v {
                        Value::Value => Some(value),
                        Value::Label(_) => text.parse::<f64>().ok(),
                    };
                    match f {
                        Format::Plain => out.push_str(&text),
                        Format::Upper => out.push_str(&text.to_uppercase()),
                        Format::Lower => out.push_str(&text.to_lowercase()),
                        Format::Humanize => match number() {
                            Some(n) => out.push_str(&humanize(n)),
                            None => out.push_str(&text),
                        },
                        Format::Fixed(d) => match number() {
                            Some(n) => out.push_str(&format!("{n:.d$}", d = *d)),
                            None => out.push_str(&text),
                        },
                    }
                }
            }
        }
        out
    }
}

/// Renders `text` or, when it is not a valid template (rules are validated when saved,
/// so only an old stored rule can get here), the text itself.
pub fn render(text: &str, labels: &BTreeMap<String, String>, value: f64) -> String {
    Template::parse(text)
        .map(|t| t.render(labels, value))
        .unwrap_or_else(|_| text.to_owned())
}

/// Prometheus' `humanize`: SI prefixes, 4 significant digits.
fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return dcmon_promql::format_float(v);
    }
    let a = v.abs();
    let (scaled, prefix) = if a >= 1.0 {
        let prefixes = ["", "k", "M", "G", "T", "P", "E"];
        let mut s = v;
        let mut i = 0;
        while s.abs() >= 1000.0 && i + 1 < prefixes.len() {
            s /= 1000.0;
            i += 1;
        }
        (s, prefixes[i])
    } else {
        let prefixes = ["", "m", "u", "n", "p"];
        let mut s = v;
        let mut i = 0;
        while s.abs() < 1.0 && i + 1 < prefixes.len() {
            s *= 1000.0;
            i += 1;
        }
        (s, prefixes[i])
    };
    let text = format!("{scaled:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{prefix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, expect: &str) {
        let labels: BTreeMap<String, String> = [("host", "gpu-07"), ("gpu", "3")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            Template::parse(template).unwrap().render(&labels, 91.25),
            expect
        );
    }

    #[test]
    fn renders_labels_and_values() {
        check("plain", "plain");
        check("{{ $labels.host }} GPU {{$labels.gpu}}", "gpu-07 GPU 3");
        check("{{ $value }} C", "91.25 C");
        check("{{ printf \"%.1f\" $value }}", "91.2");
        check("{{ humanize $value }}", "91.25");
        check("{{ $labels.host | toUpper }}", "GPU-07");
        check("{{ index $labels \"host\" }}", "gpu-07");
        check("{{ $labels.missing }}!", "!");
        assert_eq!(humanize(1_234_567.0), "1.2346M");
        assert_eq!(humanize(0.005), "5m");
    }

    #[test]
    fn refuses_what_it_cannot_render() {
        for bad in [
            "{{ $labels.host",
            "{{ .Foo }}",
            "{{ printf \"%d\" $value }}",
            "{{ $value | nope }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
