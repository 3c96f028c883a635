//! A streaming reader of deb822 control data (dpkg's `status`, apt's `Packages` and
//! `Release` files): stanzas of `Field: value` lines separated by blank lines, values
//! continued on lines that start with white space.
//!
//! Only the fields asked for are kept, in strings reused from stanza to stanza, and a line
//! is decoded as UTF-8 only when it holds one of them: a `Packages` file of tens of MB is
//! mostly descriptions and checksums the collector never looks at.

use std::io::BufRead;

/// A line that is not deb822, with its 1-based number.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct StanzaError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Reads stanzas one at a time from `input`.
pub(super) struct StanzaReader<R> {
    input: R,
    line: Vec<u8>,
    line_no: usize,
}

impl<R: BufRead> StanzaReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            line: Vec::with_capacity(256),
            line_no: 0,
        }
    }

    /// Reads the next stanza, setting `values[i]` to the value of field `wanted[i]`
    /// (field names compare case-insensitively, as in deb822) or to "" when the stanza
    /// lacks it. Returns the line the stanza starts on, or `None` at the end of input.
    pub fn next_stanza(
        &mut self,
        wanted: &[&str],
        values: &mut [String],
    ) -> Result<Option<usize>, StanzaError> {
        values.iter_mut().for_each(String::clear);
        let mut start = None;
        loop {
            self.line.clear();
            let n = self
                .input
                .read_until(b'\n', &mut self.line)
                .map_err(|e| StanzaError {
                    line: self.line_no + 1,
                    message: format!("read failed: {e}"),
                })?;
            if n == 0 {
                return Ok(start);
            }
            self.line_no += 1;
            let line = trim_end(&self.line);
            if line.is_empty() {
                if start.is_some() {
                    return Ok(start);
                }
                continue;
            }
            match line[0] {
                b' ' | b'\t' if start.is_none() => {
                    return Err(self.error("continuation line outside a field"));
                }
                b' ' | b'\t' => continue,
                b'#' => continue,
                _ => {}
            }
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                return Err(self.error("expected `Field: value`"));
            };
            let name = &line[..colon];
            if name.is_empty() {
                return Err(self.error("empty field name"));
            }
            start.get_or_insert(self.line_no);
            if let Some(i) = wanted
                .iter()
                .position(|w| w.as_bytes().eq_ignore_ascii_case(name))
            {
                let value = std::str::from_utf8(trim_start(&line[colon + 1..]))
                    .map_err(|_| self.error("value is not UTF-8"))?;
                values[i].clear();
                values[i].push_str(value);
            }
        }
    }

    fn error(&self, message: &str) -> StanzaError {
        let shown = String::from_utf8_lossy(trim_end(&self.line));
        let shown: String = shown.chars().take(60).collect();
        StanzaError {
            line: self.line_no,
            message: format!("{message}: {shown:?}"),
        }
    }
}

fn trim_end(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &s[..end]
}

fn trim_start(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;

    /// Every stanza as `line: Package=..., Version=...`, or the error.
    fn check(input: &str, expect: &str) {
        let mut r = StanzaReader::new(input.as_bytes());
        let wanted = ["Package", "Version"];
        let mut values = vec![String::new(); 2];
        let mut got = String::new();
        loop {
            match r.next_stanza(&wanted, &mut values) {
                Ok(Some(line)) => {
                    let _ = writeln!(got, "{line}: {}={}", values[0], values[1]);
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = writeln!(got, "error: {e}");
                    break;
                }
            }
        }
        assert_eq!(got, expect);
    }

    #[test]
    fn stanzas_fields_and_errors() {
        check(
            "Package: a\nVersion: 1.0\nDescription: x\n more\n .\n\n\n\
             package:  b \r\nSize: 3\n",
            "1: a=1.0\n8: b=\n",
        );
        check("", "");
        check("\n\n", "");
        check("# comment\nPackage: c\n", "2: c=\n");
        check(
            "Package: a\n\nno colon here\n",
            "1: a=\nerror: line 3: expected `Field: value`: \"no colon here\"\n",
        );
        check(
            " leading\n",
            "error: line 1: continuation line outside a field: \" leading\"\n",
        );
        check(": v\n", "error: line 1: empty field name: \": v\"\n");
    }

    #[test]
    fn non_utf8_outside_wanted_fields_is_ignored() {
        let input = b"Package: a\nDescription: caf\xe9\nVersion: 1\n";
        let mut r = StanzaReader::new(&input[..]);
        let mut values = vec![String::new(); 2];
        assert_eq!(
            r.next_stanza(&["Package", "Version"], &mut values),
            Ok(Some(1))
        );
        assert_eq!(values, ["a", "1"]);
        let bad = b"Package: caf\xe9\n";
        let mut r = StanzaReader::new(&bad[..]);
        let err = r.next_stanza(&["Package"], &mut values).unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.starts_with("value is not UTF-8"), "{err}");
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400),
                                        text in "(\\PC|\n| |:){0,200}") {
            for input in [&bytes[..], text.as_bytes()] {
                let mut r = StanzaReader::new(input);
                let mut values = vec![String::new(); 2];
                let mut last = 0;
                // Each call consumes at least one line or ends, so this terminates.
                while let Ok(Some(line)) = r.next_stanza(&["Package", "Version"], &mut values) {
                    prop_assert!(line > last);
                    last = line;
                }
            }
        }
    }
}
