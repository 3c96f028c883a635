//! nvidia-smi backend: `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`,
//! parsed into the same readings as NVML gives.

use super::{Field, GpuReading, GpuState};
use crate::collectors::CollectError;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the value of one `--query-gpu` field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Column {
    Index,
    Uuid,
    Name,
    Value(Field),
}

/// One `--query-gpu` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Query {
    pub name: &'static str,
    pub column: Column,
}

const fn q(name: &'static str, column: Column) -> Query {
    Query { name, column }
}

/// Every field asked for, in `--query-gpu` order. nvidia-smi has no PCIe replay counter,
/// NVLink error totals or XID field; those come from NVML only.
pub(super) const QUERY: &[Query] = &[
    q("index", Column::Index),
    q("uuid", Column::Uuid),
    q("name", Column::Name),
    q("temperature.gpu", Column::Value(Field::GpuTemp)),
    q("temperature.memory", Column::Value(Field::MemoryTemp)),
    q("power.draw", Column::Value(Field::PowerUsage)),
    q("power.limit", Column::Value(Field::PowerLimit)),
    q("utilization.gpu", Column::Value(Field::GpuUtil)),
    q("utilization.memory", Column::Value(Field::MemCopyUtil)),
    q("fan.speed", Column::Value(Field::FanSpeed)),
    q("memory.used", Column::Value(Field::FbUsed)),
    q("memory.free", Column::Value(Field::FbFree)),
    q("memory.total", Column::Value(Field::FbTotal)),
    q("clocks.sm", Column::Value(Field::SmClock)),
    q("clocks.mem", Column::Value(Field::MemClock)),
    q("pstate", Column::Value(Field::Pstate)),
    q(
        "clocks_throttle_reasons.active",
        Column::Value(Field::ThrottleReasons),
    ),
    q(
        "ecc.errors.corrected.volatile.total",
        Column::Value(Field::EccSbeVolatile),
    ),
    q(
        "ecc.errors.uncorrected.volatile.total",
        Column::Value(Field::EccDbeVolatile),
    ),
    q(
        "ecc.errors.corrected.aggregate.total",
        Column::Value(Field::EccSbeAggregate),
    ),
    q(
        "ecc.errors.uncorrected.aggregate.total",
        Column::Value(Field::EccDbeAggregate),
    ),
    q("pcie.link.gen.current", Column::Value(Field::PcieLinkGen)),
    q(
        "pcie.link.width.current",
        Column::Value(Field::PcieLinkWidth),
    ),
    q("pcie.link.gen.max", Column::Value(Field::PcieLinkGenMax)),
    q(
        "pcie.link.width.max",
        Column::Value(Field::PcieLinkWidthMax),
    ),
    q(
        "retired_pages.pending",
        Column::Value(Field::RetiredPending),
    ),
    q("retired_pages.sbe", Column::Value(Field::RetiredSbe)),
    q("retired_pages.dbe", Column::Value(Field::RetiredDbe)),
    q(
        "remapped_rows.pending",
        Column::Value(Field::RowRemapPending),
    ),
    q(
        "remapped_rows.failure",
        Column::Value(Field::RowRemapFailure),
    ),
];

/// The line nvidia-smi prints instead of a GPU's values when it cannot open the GPU,
/// e.g. `Unable to determine the device handle for GPU 0000:C1:00.0: GPU is lost.
/// Reboot the system to recover this GPU`.
const NO_HANDLE: &str = "Unable to determine the device handle";

/// nvidia-smi, with the fields the installed version accepts (decided once).
pub(super) struct SmiGpus {
    program: PathBuf,
    timeout: Duration,
    query: Vec<Query>,
    /// `--query-gpu=...`, built once.
    query_arg: String,
    readings: Vec<GpuReading>,
}

impl SmiGpus {
    /// Runs nvidia-smi once; fields an older nvidia-smi rejects (`Field "x" is not a
    /// valid field to query.`) are dropped and the query retried. Fails unless it lists
    /// at least one GPU.
    pub(super) fn probe(program: &Path, timeout: Duration) -> Result<Self, String> {
        let mut gpus = Self {
            program: program.to_owned(),
            timeout,
            query: QUERY.to_vec(),
            query_arg: String::new(),
            readings: Vec::new(),
        };
        for _ in 0..QUERY.len() {
            gpus.query_arg = query_arg(&gpus.query);
            let output = run(&gpus.program, &gpus.query_arg, gpus.timeout)
                .map_err(|e| format!("running {}: {e}", gpus.program.display()))?;
            if let Some(rejected) = rejected_field(&output.text) {
                let before = gpus.query.len();
                gpus.query.retain(|q| q.name != rejected);
                if gpus.query.len() == before {
                    return Err(format!(
                        "nvidia-smi rejects a field: {}",
                        output.text.trim()
                    ));
                }
                continue;
            }
            parse(&gpus.query, &output.text, &mut gpus.readings)
                .map_err(|e| format!("nvidia-smi output: {e}"))?;
            if gpus.readings.is_empty() {
                return Err(format!("nvidia-smi lists no GPU: {}", output.text.trim()));
            }
            return Ok(gpus);
        }
        Err("nvidia-smi rejects every field".to_owned())
    }

    pub(super) fn readings(&self) -> &[GpuReading] {
        &self.readings
    }

    pub(super) fn collect(&mut self) -> Result<&[GpuReading], CollectError> {
        let what = || format!("{} {}", self.program.display(), self.query_arg);
        let output = run(&self.program, &self.query_arg, self.timeout).map_err(|source| {
            CollectError::Io {
                path: what(),
                source,
            }
        })?;
        parse(&self.query, &output.text, &mut self.readings).map_err(|message| {
            CollectError::Parse {
                path: what(),
                message,
            }
        })?;
        if self.readings.is_empty() {
            return Err(CollectError::Parse {
                path: what(),
                message: format!(
                    "no GPU listed (exit status {}): {}",
                    output.status,
                    output.text.trim()
                ),
            });
        }
        Ok(&self.readings)
    }
}

fn query_arg(query: &[Query]) -> String {
    let mut arg = String::from("--query-gpu=");
    for (i, q) in query.iter().enumerate() {
        if i > 0 {
            arg.push(',');
        }
        arg.push_str(q.name);
    }
    arg
}

/// The field named in `Field "x" is not a valid field to query.`, if that is the answer.
fn rejected_field(text: &str) -> Option<&str> {
    let rest = &text[text.find("Field \"")? + 7..];
    let name = &rest[..rest.find('"')?];
    rest[name.len()..]
        .contains("is not a valid field")
        .then_some(name)
}

/// What one nvidia-smi run printed: stdout, then the lines of stderr that name a GPU it
/// could not open (which nvidia-smi versions print on either stream).
struct Output {
    text: String,
    status: std::process::ExitStatus,
}

/// Runs nvidia-smi, killing it after `timeout`. A non-zero exit is not an error by
/// itself: nvidia-smi exits non-zero when one GPU is lost, and still lists the others.
fn run(program: &Path, query_arg: &str, timeout: Duration) -> std::io::Result<Output> {
    let mut child = Command::new(program)
        .arg(query_arg)
        .arg("--format=csv,noheader,nounits")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(std::io::Error::other("no pipes to nvidia-smi"));
    };
    let deadline = Instant::now() + timeout;
    // Both pipes are drained while waiting, so a long answer cannot block the child.
    let (status, out, err) = std::thread::scope(|s| {
        let out = s.spawn(move || {
            let mut b = Vec::new();
            stdout.read_to_end(&mut b).map(|_| b)
        });
        let err = s.spawn(move || {
            let mut b = Vec::new();
            stderr.read_to_end(&mut b).map(|_| b)
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {timeout:?}; killed"),
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => break Err(e),
            }
        };
        let out = out.join().unwrap_or_else(|_| Ok(Vec::new()));
        let err = err.join().unwrap_or_else(|_| Ok(Vec::new()));
        (status, out, err)
    });
    let status = status?;
    let mut text = String::from_utf8_lossy(&out?).into_owned();
    let err = err?;
    let err = String::from_utf8_lossy(&err);
    for line in err.lines() {
        if line.contains(NO_HANDLE) || line.contains("is not a valid field") {
            text.push_str(line);
            text.push('\n');
        }
    }
    if text.trim().is_empty() && !status.success() {
        return Err(std::io::Error::other(format!(
            "exited with {status}: {}",
            err.trim()
        )));
    }
    Ok(Output { text, status })
}

/// Parses `--format=csv,noheader,nounits` output of `query` into `out` (cleared first),
/// one reading per GPU line. A GPU nvidia-smi could not open gets the lowest index no
/// other line has (lines come in index order, so that is its own) and only a state.
/// Errors name the line and column.
pub(super) fn parse(query: &[Query], text: &str, out: &mut Vec<GpuReading>) -> Result<(), String> {
    out.clear();
    let mut unopened = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line.contains(NO_HANDLE) {
            let state = if says_lost(line) {
                GpuState::Lost
            } else {
                GpuState::Failed(line.to_owned())
            };
            unopened.push(out.len());
            out.push(GpuReading {
                state,
                ..GpuReading::default()
            });
            continue;
        }
        if query.len() > 1 && !line.contains(',') {
            return Err(format!(
                "line {line_no}: {line:?} is not a line of GPU values"
            ));
        }
        let mut reading = GpuReading {
            index: u32::try_from(out.len()).unwrap_or(u32::MAX),
            ..GpuReading::default()
        };
        let mut cells = line.split(',');
        for (col, q) in query.iter().enumerate() {
            let Some(cell) = cells.next() else {
                return Err(format!(
                    "line {line_no}: ends after column {col}; expected {} columns, column {} being {}",
                    query.len(),
                    col + 1,
                    q.name
                ));
            };
            let cell = cell.trim();
            let at = || format!("line {line_no}, column {} ({})", col + 1, q.name);
            match q.column {
                Column::Index => {
                    reading.index = cell
                        .parse()
                        .map_err(|_| format!("{}: {cell:?} is not a GPU index", at()))?;
                }
                Column::Uuid => reading.uuid = text_value(cell).to_owned(),
                Column::Name => reading.model = text_value(cell).to_owned(),
                Column::Value(field) => {
                    if says_lost(cell) {
                        reading.state = GpuState::Lost;
                    } else if let Some(v) =
                        parse_value(cell).map_err(|e| format!("{}: {e}", at()))?
                    {
                        reading.set(field, v);
                    }
                }
            }
        }
        if cells.next().is_some() {
            return Err(format!(
                "line {line_no}: column {} is one too many; expected {} columns",
                query.len() + 1,
                query.len()
            ));
        }
        if reading.state == GpuState::Lost {
            reading.values = [None; super::FIELD_COUNT];
        }
        out.push(reading);
    }
    let taken: Vec<u32> = (0..out.len())
        .filter(|i| !unopened.contains(i))
        .map(|i| out[i].index)
        .collect();
    let mut next = 0u32;
    for i in unopened {
        while taken.contains(&next) {
            next += 1;
        }
        out[i].index = next;
        next += 1;
    }
    out.sort_by_key(|r| r.index);
    Ok(())
}

/// Whether nvidia-smi says the GPU has fallen off the bus ("GPU is lost", any case).
fn says_lost(text: &str) -> bool {
    const LOST: &[u8] = b"gpu is lost";
    text.as_bytes()
        .windows(LOST.len())
        .any(|w| w.eq_ignore_ascii_case(LOST))
}

/// A text cell, empty when nvidia-smi has no value.
fn text_value(cell: &str) -> &str {
    if is_missing(cell) { "" } else { cell }
}

/// nvidia-smi's spellings of "no value": `[N/A]`, `N/A`, `[Not Supported]`,
/// `[Unknown Error]`, `[Insufficient Permissions]`, ...
fn is_missing(cell: &str) -> bool {
    cell.is_empty()
        || (cell.starts_with('[') && cell.ends_with(']'))
        || cell.eq_ignore_ascii_case("N/A")
        || cell.eq_ignore_ascii_case("Not Supported")
}

/// A numeric cell: a number (a unit after it, if `nounits` was not honoured, is
/// dropped), `P<n>` for P-states, `0x...` for bit masks, `Yes`/`No`/`Enabled`/`Disabled`
/// for flags; `None` for nvidia-smi's "no value" spellings.
fn parse_value(cell: &str) -> Result<Option<f64>, String> {
    if is_missing(cell) {
        return Ok(None);
    }
    let is = |word: &str| cell.eq_ignore_ascii_case(word);
    if is("yes") || is("enabled") || is("active") {
        return Ok(Some(1.0));
    }
    if is("no") || is("disabled") || is("not active") {
        return Ok(Some(0.0));
    }
    if let Some(hex) = cell.strip_prefix("0x").or_else(|| cell.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16)
            .map(|v| Some(v as f64))
            .map_err(|_| format!("{cell:?} is not a hexadecimal bit mask"));
    }
    if let Some(p) = cell.strip_prefix('P')
        && let Ok(p) = p.parse::<u8>()
    {
        return Ok(Some(f64::from(p)));
    }
    let number = cell.split_whitespace().next().unwrap_or(cell);
    let number = number.strip_suffix('%').unwrap_or(number);
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(Some(v)),
        _ => Err(format!("{cell:?} is not a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Write as _;
    use std::os::unix::fs::PermissionsExt;

    /// A short query, so that each case fits on one line.
    const SHORT: &[Query] = &[
        q("index", Column::Index),
        q("name", Column::Name),
        q("temperature.gpu", Column::Value(Field::GpuTemp)),
        q("pstate", Column::Value(Field::Pstate)),
        q(
            "remapped_rows.pending",
            Column::Value(Field::RowRemapPending),
        ),
    ];

    /// One line per GPU: `index uuid model state field=value...`, or `error: ...`.
    fn render(readings: &[GpuReading]) -> String {
        let mut s = String::new();
        for r in readings {
            let _ = write!(s, "{} {:?} {:?} {:?}", r.index, r.uuid, r.model, r.state);
            for f in Field::ALL {
                if let Some(v) = r.get(f) {
                    let _ = write!(s, " {f:?}={v}");
                }
            }
            s.push('\n');
        }
        s
    }

    fn parse_render(query: &[Query], input: &str) -> String {
        let mut out = Vec::new();
        match parse(query, input, &mut out) {
            Ok(()) => render(&out),
            Err(e) => format!("error: {e}"),
        }
    }

    fn check(input: &str, expect: &str) {
        assert_eq!(parse_render(SHORT, input), expect, "input: {input:?}");
    }

    #[test]
    fn parses_values_markers_and_errors() {
        check("", "");
        check(
            "0, NVIDIA H200, 41, P0, No\n",
            "0 \"\" \"NVIDIA H200\" Up GpuTemp=41 Pstate=0 RowRemapPending=0\n",
        );
        check(
            "1, X, 41 C, P8, Yes",
            "1 \"\" \"X\" Up GpuTemp=41 Pstate=8 RowRemapPending=1\n",
        );
        check("0, X, [N/A], [Not Supported], N/A", "0 \"\" \"X\" Up\n");
        check(
            "0, [N/A], [Unknown Error], Not Supported, [GPU requires reset]",
            "0 \"\" \"\" Up\n",
        );
        check("0, X, [GPU is lost], P0, No", "0 \"\" \"X\" Lost\n");
        check(
            "0,X,41,P0,No\r\n\r\n",
            "0 \"\" \"X\" Up GpuTemp=41 Pstate=0 RowRemapPending=0\n",
        );
        check(
            "0, X, 41, P0",
            "error: line 1: ends after column 4; expected 5 columns, column 5 being remapped_rows.pending",
        );
        check(
            "0, X, 41, P0, No, 7",
            "error: line 1: column 6 is one too many; expected 5 columns",
        );
        check(
            "\n0, X, hot, P0, No",
            "error: line 2, column 3 (temperature.gpu): \"hot\" is not a number",
        );
        check(
            "0, X, NaN, P0, No",
            "error: line 1, column 3 (temperature.gpu): \"NaN\" is not a number",
        );
        check(
            "zero, X, 1, P0, No",
            "error: line 1, column 1 (index): \"zero\" is not a GPU index",
        );
        check(
            "0, X, 1, P0, 0xZZ",
            "error: line 1, column 5 (remapped_rows.pending): \"0xZZ\" is not a hexadecimal bit mask",
        );
    }

    #[test]
    fn unopened_gpus_take_the_missing_indices() {
        let lost = "Unable to determine the device handle for GPU 0000:9A:00.0: GPU is lost.  Reboot the system to recover this GPU";
        let other = "Unable to determine the device handle for GPU 0000:1B:00.0: Unknown Error";
        check(
            &format!("0, A, 30, P0, No\n{lost}\n2, C, 32, P0, No\n"),
            "0 \"\" \"A\" Up GpuTemp=30 Pstate=0 RowRemapPending=0\n1 \"\" \"\" Lost\n2 \"\" \"C\" Up GpuTemp=32 Pstate=0 RowRemapPending=0\n",
        );
        // nvidia-smi versions that print the failure on stderr: it comes after stdout.
        check(
            &format!("0, A, 30, P0, No\n2, C, 32, P0, No\n{other}\n"),
            format!("0 \"\" \"A\" Up GpuTemp=30 Pstate=0 RowRemapPending=0\n1 \"\" \"\" Failed({other:?})\n2 \"\" \"C\" Up GpuTemp=32 Pstate=0 RowRemapPending=0\n").as_str(),
        );
    }

    #[test]
    fn values_parse_as_nvidia_smi_prints_them() {
        let check = |cell: &str, expect: Result<Option<f64>, &str>| {
            assert_eq!(parse_value(cell), expect.map_err(str::to_owned), "{cell:?}");
        };
        check("700.00", Ok(Some(700.0)));
        check("700.00 W", Ok(Some(700.0)));
        check("45 %", Ok(Some(45.0)));
        check("45%", Ok(Some(45.0)));
        check("81559 MiB", Ok(Some(81559.0)));
        check("P12", Ok(Some(12.0)));
        check("0x0000000000000024", Ok(Some(36.0)));
        check("Enabled", Ok(Some(1.0)));
        check("Disabled", Ok(Some(0.0)));
        check("[N/A]", Ok(None));
        check("Px", Err("\"Px\" is not a number"));
        check("inf", Err("\"inf\" is not a number"));
    }

    #[test]
    fn older_gpus_omit_what_they_do_not_support() {
        let csv =
            std::fs::read_to_string(super::super::tests::testdata().join("older.csv")).unwrap();
        assert_eq!(
            parse_render(QUERY, &csv),
            concat!(
                "0 \"GPU-0d4c2f7a-9b1e-3a58-6c70-e2f4a8b1d9c3\" \"Tesla V100-SXM2-16GB\" Up GpuTemp=39 MemoryTemp=37 PowerUsage=42.77 PowerLimit=300 GpuUtil=0 MemCopyUtil=0 FbUsed=0 FbFree=16151 FbTotal=16384 SmClock=135 MemClock=877 Pstate=0 ThrottleReasons=1 EccSbeVolatile=0 EccDbeVolatile=0 EccSbeAggregate=3 EccDbeAggregate=0 PcieLinkGen=3 PcieLinkWidth=16 PcieLinkGenMax=3 PcieLinkWidthMax=16 RetiredPending=0 RetiredSbe=2 RetiredDbe=0\n",
                "1 \"GPU-6a1e8d3b-0c7f-42e9-b5d4-71f9c2a0e8b6\" \"NVIDIA GeForce RTX 3090\" Up GpuTemp=52 PowerUsage=31.2 PowerLimit=350 GpuUtil=3 MemCopyUtil=1 FanSpeed=30 FbUsed=812 FbFree=23439 FbTotal=24576 SmClock=210 MemClock=405 Pstate=8 ThrottleReasons=0 PcieLinkGen=1 PcieLinkWidth=16 PcieLinkGenMax=4 PcieLinkWidthMax=16\n",
            )
        );
    }

    #[test]
    fn rejected_field_is_found_in_nvidia_smis_message() {
        let check =
            |text: &str, expect: Option<&str>| assert_eq!(rejected_field(text), expect, "{text:?}");
        check(
            "Field \"remapped_rows.pending\" is not a valid field to query.\n\n",
            Some("remapped_rows.pending"),
        );
        check("0, X, 41, P0, No\n", None);
        check("Field \"", None);
        check("Field \"x\" is fine", None);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let mut out = Vec::new();
            let _ = parse(QUERY, &text, &mut out);
            let _ = parse(SHORT, &text, &mut out);
            let _ = rejected_field(&text);
        }

        #[test]
        fn arbitrary_cells_never_panic(cells in proptest::collection::vec(
            prop_oneof![
                Just("[N/A]".to_owned()), Just("P3".to_owned()), Just("0x1f".to_owned()),
                Just("GPU is lost".to_owned()), Just(NO_HANDLE.to_owned()), "[0-9. A-Za-z%]{0,8}",
            ],
            0..12,
        )) {
            let line = cells.join(", ");
            let mut out = Vec::new();
            if parse(SHORT, &line, &mut out).is_ok() {
                prop_assert!(out.len() <= 1);
            }
        }
    }

    /// A stand-in `nvidia-smi`: a shell script in a temporary directory.
    fn fake_smi(dir: &Path, script: &str) -> PathBuf {
        let path = dir.join("nvidia-smi");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn probe_drops_fields_an_older_nvidia_smi_rejects_then_collects() {
        let dir = tempfile::tempdir().unwrap();
        let csv = super::super::tests::testdata().join("older.csv");
        // Answers only once the remapped_rows fields are gone, with the V100 line cut to
        // the remaining 28 columns.
        let smi = fake_smi(
            dir.path(),
            &format!(
                r#"case "$1" in
  *remapped_rows.pending*) echo 'Field "remapped_rows.pending" is not a valid field to query.'; exit 2;;
  *remapped_rows.failure*) echo 'Field "remapped_rows.failure" is not a valid field to query.' >&2; exit 2;;
esac
head -n 1 {} | sed 's/, \[Not Supported\], \[Not Supported\]$//'"#,
                csv.display()
            ),
        );
        let mut gpus = SmiGpus::probe(&smi, Duration::from_secs(10)).unwrap();
        assert_eq!(gpus.query.len(), QUERY.len() - 2);
        assert!(
            !gpus.query_arg.contains("remapped_rows"),
            "{}",
            gpus.query_arg
        );
        let readings = gpus.collect().unwrap();
        assert_eq!(readings.len(), 1);
        assert_eq!(readings[0].model, "Tesla V100-SXM2-16GB");
        assert_eq!(readings[0].get(Field::RetiredSbe), Some(2.0));
    }

    #[test]
    fn lost_gpu_on_stderr_and_nonzero_exit_still_reports_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let csv = super::super::tests::testdata().join("h100x8.csv");
        let smi = fake_smi(
            dir.path(),
            &format!(
                "grep -v 'device handle' {}\ngrep 'device handle' {} >&2\nexit 15",
                csv.display(),
                csv.display()
            ),
        );
        let mut gpus = SmiGpus::probe(&smi, Duration::from_secs(10)).unwrap();
        let readings = gpus.collect().unwrap();
        let states: Vec<(u32, bool)> = readings
            .iter()
            .map(|r| (r.index, r.state == GpuState::Lost))
            .collect();
        assert_eq!(
            states,
            [
                (0, false),
                (1, false),
                (2, false),
                (3, false),
                (4, true),
                (5, false),
                (6, false),
                (7, false)
            ]
        );
    }

    #[test]
    fn a_hanging_nvidia_smi_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let smi = fake_smi(dir.path(), "exec sleep 30");
        let started = Instant::now();
        let err = SmiGpus::probe(&smi, Duration::from_millis(200))
            .err()
            .unwrap_or_default();
        assert!(err.contains("no answer within 200ms; killed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn missing_or_silent_nvidia_smi_is_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let err = SmiGpus::probe(&dir.path().join("nvidia-smi"), Duration::from_secs(1))
            .err()
            .unwrap_or_default();
        assert!(
            err.starts_with("running ") && err.contains("No such file"),
            "{err}"
        );
        let smi = fake_smi(dir.path(), "echo 'No devices were found'; exit 6");
        let err = SmiGpus::probe(&smi, Duration::from_secs(10))
            .err()
            .unwrap_or_default();
        assert_eq!(
            err,
            r#"nvidia-smi output: line 1: "No devices were found" is not a line of GPU values"#
        );
    }
}
