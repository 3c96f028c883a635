//! `cargo xtask bench wire`: bytes per sample of dcmon batches beside Prometheus
//! remote_write (snappy protobuf) and gzip JSON, on the same synthetic host.
//!
//! The host is ~200 series shaped like node_exporter output on a GPU server, scraped every
//! 30 s: counters advance at noisy, wandering rates in their source units (USER_HZ ticks,
//! bytes, kB pages, milliseconds), gauges wander, a few series stay constant. Values are
//! produced the way the exporters produce them (`ticks / 100`, `kB * 1024`, `mW / 1000`),
//! so their decimal forms are the real ones. Deterministic: a seeded PRNG.

use super::rng::Rng;
use anyhow::{Result, bail};
use dcmon_wire::batch::{Decoder, Encoder, read_header};
use dcmon_wire::{Labels, MetricSample, Scrape};
use std::io::Write;
use std::time::Instant;

const INTERVAL_MS: i64 = 30_000;
const START_MS: i64 = 1_760_000_000_000;
const HOST: &str = "gpu-node-017";
/// §10 targets.
const TARGET_SINGLE: f64 = 4.0;
const TARGET_SPOOLED: f64 = 2.0;

pub fn run(args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("bench wire takes no arguments, got {arg:?}");
    }
    let mut host = Host::new(0x5eed_d00d);
    // Scrape 0 is the session's first; 1..=40 steady single batches; 1..=10 and 1..=60
    // spooled uploads; timing runs over 400 more.
    let scrapes: Vec<Scrape> = (0..461).map(|_| host.scrape()).collect();
    let series = scrapes[0].samples.len();
    println!(
        "synthetic host: {series} series, one scrape every {} s\n",
        INTERVAL_MS / 1000
    );

    let mut enc = Encoder::new(1);
    let first = enc.encode(&scrapes[..1])?;
    let mut steady_bytes = 0;
    let steady_batches = 40;
    for s in &scrapes[1..=steady_batches] {
        steady_bytes += enc.encode(std::slice::from_ref(s))?.len();
    }
    let mut enc = Encoder::new(2);
    enc.encode(&scrapes[..1])?;
    let spooled = enc.encode(&scrapes[1..=10])?;
    let fresh = Encoder::new(3).encode(&scrapes[1..=10])?;
    let fresh60 = Encoder::new(4).encode(&scrapes[1..=60])?;

    let rows = [
        Row::new(
            "first batch of a session (1 scrape)",
            &scrapes[..1],
            first.len() as f64,
        ),
        Row::new(
            "steady 30 s batch (1 scrape, mean of 40)",
            &scrapes[1..2],
            steady_bytes as f64 / steady_batches as f64,
        ),
        Row::new(
            "spooled upload, 10 scrapes, steady",
            &scrapes[1..=10],
            spooled.len() as f64,
        ),
        Row::new(
            "spooled upload, 10 scrapes, new session",
            &scrapes[1..=10],
            fresh.len() as f64,
        ),
        Row::new(
            "spooled upload, 60 scrapes, new session",
            &scrapes[1..=60],
            fresh60.len() as f64,
        ),
    ];
    println!(
        "{:<42} {:>7} | {:>8} {:>6} | {:>12} {:>6} {:>6} | {:>9} {:>6} {:>6}",
        "batch",
        "samples",
        "dcmon B",
        "B/smp",
        "remote_wr B",
        "B/smp",
        "×",
        "gzJSON B",
        "B/smp",
        "×"
    );
    println!("{}", "-".repeat(127));
    for r in &rows {
        println!(
            "{:<42} {:>7} | {:>8.0} {:>6.2} | {:>12} {:>6.2} {:>6.1} | {:>9} {:>6.2} {:>6.1}",
            r.name,
            r.samples,
            r.dcmon,
            r.dcmon / r.samples as f64,
            r.remote_write,
            r.remote_write as f64 / r.samples as f64,
            r.remote_write as f64 / r.dcmon,
            r.json,
            r.json as f64 / r.samples as f64,
            r.json as f64 / r.dcmon,
        );
    }
    println!(
        "(× = peer bytes / dcmon bytes; remote_write: protobuf + snappy block; gzJSON: flate2 default level)\n"
    );

    let single = rows[1].dcmon / rows[1].samples as f64;
    let multi = rows[2].dcmon / rows[2].samples as f64;
    println!(
        "target: steady single batch ≤ {TARGET_SINGLE} B/sample: {single:.2} {}",
        verdict(single <= TARGET_SINGLE)
    );
    println!(
        "target: spooled 10-scrape upload ≤ {TARGET_SPOOLED} B/sample: {multi:.2} {}\n",
        verdict(multi <= TARGET_SPOOLED)
    );

    timing(&scrapes[61..])?;
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

struct Row {
    name: &'static str,
    samples: usize,
    dcmon: f64,
    remote_write: usize,
    json: usize,
}

impl Row {
    fn new(name: &'static str, scrapes: &[Scrape], dcmon: f64) -> Self {
        Self {
            name,
            samples: scrapes.iter().map(|s| s.samples.len()).sum(),
            dcmon,
            remote_write: remote_write::encode(scrapes).len(),
            json: gzip_json(scrapes),
        }
    }
}

/// Encode and decode cost per sample: each scrape as its own batch (the agent's steady
/// state), and as 10-scrape batches.
fn timing(scrapes: &[Scrape]) -> Result<()> {
    if cfg!(debug_assertions) {
        println!(
            "(debug build: `cargo run --release -p xtask -- bench wire` for representative timings)"
        );
    }
    for per_batch in [1, 10] {
        let samples: usize = scrapes.iter().map(|s| s.samples.len()).sum();
        let mut enc = Encoder::new(7);
        let t = Instant::now();
        let batches = scrapes
            .chunks(per_batch)
            .map(|c| enc.encode(c))
            .collect::<Result<Vec<_>, _>>()?;
        let encode = t.elapsed();

        let t = Instant::now();
        let mut dec = Decoder::start(&read_header(&batches[0])?)?;
        let mut decoded = 0;
        for b in &batches {
            let batch = dec.decode(b)?;
            decoded += batch.sample_count();
            dec.commit(batch)?;
        }
        let decode = t.elapsed();
        if decoded != samples {
            bail!("decoded {decoded} samples, encoded {samples}");
        }
        println!(
            "{:>2} scrape(s)/batch: encode {:>4.0} ns/sample, decode {:>4.0} ns/sample ({} batches, {samples} samples)",
            per_batch,
            encode.as_nanos() as f64 / samples as f64,
            decode.as_nanos() as f64 / samples as f64,
            batches.len(),
        );
    }
    Ok(())
}

/// The seed's format: a JSON array of `{name, labels, value, timestamp}`, gzip-compressed.
fn gzip_json(scrapes: &[Scrape]) -> usize {
    let items: Vec<serde_json::Value> = scrapes
        .iter()
        .flat_map(|s| {
            s.samples.iter().map(move |m| {
                let labels: serde_json::Map<String, serde_json::Value> = m
                    .labels
                    .without_name()
                    .map(|(k, v)| (k.to_owned(), v.into()))
                    .collect();
                serde_json::json!({
                    "name": m.labels.metric(),
                    "labels": labels,
                    "value": m.value,
                    "timestamp": s.timestamp_ms,
                })
            })
        })
        .collect();
    let json = serde_json::to_vec(&items).expect("plain values serialise");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&json).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail").len()
}

/// Prometheus remote_write 1.0 bodies of the same samples.
mod remote_write {
    use dcmon_wire::Scrape;
    use dcmon_wire::remote_write::{Label, Sample, TimeSeries, WriteRequest};
    use std::collections::BTreeMap;

    /// One time series per series with all its samples, as Prometheus sends a shard.
    pub fn encode(scrapes: &[Scrape]) -> Vec<u8> {
        let mut series: BTreeMap<&dcmon_wire::Labels, Vec<Sample>> = BTreeMap::new();
        for s in scrapes {
            for m in &s.samples {
                series.entry(&m.labels).or_default().push(Sample {
                    value: m.value,
                    timestamp: s.timestamp_ms,
                });
            }
        }
        let req = WriteRequest {
            timeseries: series
                .into_iter()
                .map(|(labels, samples)| TimeSeries {
                    labels: labels
                        .pairs()
                        .iter()
                        .map(|(name, value)| Label {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                    samples,
                })
                .collect(),
        };
        dcmon_wire::remote_write::encode(&req)
    }
}

/// How one series evolves and how its value is printed from its integer state.
enum Model {
    /// Never changes.
    Const(f64),
    /// A counter in source units: each interval adds about `rate · 30 s` units, the rate
    /// wanders around `mean` (burstiness `burst`, 0 = steady); printed as `units / div`.
    Counter {
        units: u64,
        rate: f64,
        mean: f64,
        burst: f64,
        div: f64,
    },
    /// A gauge in source units doing a mean-reverting walk (step σ `step`); printed as
    /// `units · mul / div`.
    Gauge {
        units: i64,
        mean: i64,
        step: f64,
        mul: f64,
        div: f64,
    },
    /// `node_time_seconds`: nanoseconds since the epoch as a float of seconds.
    WallClock,
}

struct Series {
    labels: Labels,
    model: Model,
}

struct Host {
    rng: Rng,
    series: Vec<Series>,
    now_ms: i64,
}

impl Host {
    fn new(seed: u64) -> Self {
        let mut h = Self {
            rng: Rng(seed),
            series: Vec::new(),
            now_ms: START_MS,
        };
        h.build();
        h
    }

    fn add(&mut self, metric: &str, labels: &[(&str, &str)], model: Model) {
        let mut pairs = vec![
            ("host", HOST),
            ("instance", "gpu-node-017:9100"),
            ("job", "node"),
        ];
        pairs.extend_from_slice(labels);
        let labels = Labels::new(metric, pairs).expect("benchmark labels are valid");
        self.series.push(Series { labels, model });
    }

    fn counter(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        start: u64,
        rate: f64,
        burst: f64,
        div: f64,
    ) {
        let model = Model::Counter {
            units: start,
            rate,
            mean: rate,
            burst,
            div,
        };
        self.add(metric, labels, model);
    }

    fn gauge(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        mean: i64,
        step: f64,
        mul: f64,
        div: f64,
    ) {
        let model = Model::Gauge {
            units: mean,
            mean,
            step,
            mul,
            div,
        };
        self.add(metric, labels, model);
    }

    fn build(&mut self) {
        const UPTIME_S: f64 = 3_456_789.0;
        // CPU: fraction of one CPU per mode, in USER_HZ (100) ticks.
        let modes = [
            ("idle", 0.62, 0.15),
            ("iowait", 0.01, 0.8),
            ("irq", 0.0003, 1.0),
            ("nice", 0.0005, 1.0),
            ("softirq", 0.006, 0.5),
            ("steal", 0.0, 0.0),
            ("system", 0.06, 0.4),
            ("user", 0.30, 0.35),
        ];
        for cpu in 0..8 {
            let c = cpu.to_string();
            for &(mode, share, burst) in &modes {
                let rate = share * 100.0 * (0.8 + 0.05 * f64::from(cpu));
                let start = (rate * UPTIME_S) as u64;
                self.counter(
                    "node_cpu_seconds_total",
                    &[("cpu", &c), ("mode", mode)],
                    start,
                    rate,
                    burst,
                    100.0,
                );
            }
        }
        // Memory, in kB as /proc/meminfo prints it, exported × 1024.
        let total_kb: i64 = 527_958_000;
        let memory: [(&str, i64, f64); 24] = [
            ("MemTotal", total_kb, 0.0),
            ("MemFree", 18_456_320, 40_000.0),
            ("MemAvailable", 402_113_000, 35_000.0),
            ("Buffers", 2_134_560, 300.0),
            ("Cached", 380_112_640, 20_000.0),
            ("SwapCached", 0, 0.0),
            ("Active", 120_445_000, 15_000.0),
            ("Inactive", 260_998_000, 12_000.0),
            ("Active_anon", 98_112_000, 12_000.0),
            ("Inactive_anon", 1_204_000, 200.0),
            ("Active_file", 22_333_000, 4_000.0),
            ("Inactive_file", 259_794_000, 8_000.0),
            ("Unevictable", 35_000, 0.0),
            ("Mlocked", 35_000, 0.0),
            ("SwapTotal", 8_388_604, 0.0),
            ("SwapFree", 8_388_604, 0.0),
            ("Dirty", 5_120, 3_000.0),
            ("Writeback", 0, 20.0),
            ("AnonPages", 99_001_000, 12_000.0),
            ("Mapped", 3_456_000, 500.0),
            ("Shmem", 2_345_000, 100.0),
            ("Slab", 12_345_000, 2_000.0),
            ("KernelStack", 65_536, 64.0),
            ("PageTables", 456_000, 300.0),
        ];
        for (name, kb, step) in memory {
            self.gauge(
                &format!("node_memory_{name}_bytes"),
                &[],
                kb,
                step,
                1024.0,
                1.0,
            );
        }
        // Filesystems, in 4 KiB blocks and inodes.
        let mounts = [
            ("/", "/dev/nvme0n1p2", 240_000_000u64, 0.35, 50.0),
            ("/boot", "/dev/nvme0n1p1", 1_000_000, 0.7, 0.0),
            ("/data", "/dev/md0", 3_700_000_000, 0.4, 4_000.0),
        ];
        for (mount, device, size_blocks, used, churn) in mounts {
            let l = [
                ("device", device),
                ("fstype", "ext4"),
                ("mountpoint", mount),
            ];
            let free = ((1.0 - used) * size_blocks as f64) as i64;
            self.add(
                "node_filesystem_size_bytes",
                &l,
                Model::Const(size_blocks as f64 * 4096.0),
            );
            self.gauge("node_filesystem_free_bytes", &l, free, churn, 4096.0, 1.0);
            self.gauge(
                "node_filesystem_avail_bytes",
                &l,
                free - size_blocks as i64 / 20,
                churn,
                4096.0,
                1.0,
            );
            self.add(
                "node_filesystem_files",
                &l,
                Model::Const((size_blocks / 4) as f64),
            );
            self.gauge(
                "node_filesystem_files_free",
                &l,
                (size_blocks / 5) as i64,
                churn / 20.0,
                1.0,
                1.0,
            );
            self.add("node_filesystem_readonly", &l, Model::Const(0.0));
            self.add("node_filesystem_device_error", &l, Model::Const(0.0));
        }
        // Network: bytes/s, mean packet size, drop rate, burstiness.
        let ifaces = [
            ("eth0", 6.0e6, 900.0, 0.02, 0.6, 1.25e9),
            ("ib0", 4.0e7, 4000.0, 0.0, 0.9, 2.5e10),
            ("lo", 6.0e4, 300.0, 0.0, 0.5, 0.0),
        ];
        for (dev, bytes, pkt, drops, burst, speed) in ifaces {
            let l = [("device", dev)];
            for (dir, share) in [("receive", 1.0), ("transmit", 0.45)] {
                let rate = bytes * share;
                self.counter(
                    &format!("node_network_{dir}_bytes_total"),
                    &l,
                    (rate * UPTIME_S) as u64,
                    rate,
                    burst,
                    1.0,
                );
                self.counter(
                    &format!("node_network_{dir}_packets_total"),
                    &l,
                    (rate / pkt * UPTIME_S) as u64,
                    rate / pkt,
                    burst,
                    1.0,
                );
                self.counter(
                    &format!("node_network_{dir}_errs_total"),
                    &l,
                    0,
                    0.0,
                    0.0,
                    1.0,
                );
                self.counter(
                    &format!("node_network_{dir}_drop_total"),
                    &l,
                    (drops * UPTIME_S) as u64,
                    drops,
                    1.0,
                    1.0,
                );
            }
            self.add("node_network_up", &l, Model::Const(1.0));
            self.add(
                "node_network_mtu_bytes",
                &l,
                Model::Const(if dev == "lo" { 65536.0 } else { 1500.0 }),
            );
            if speed > 0.0 {
                self.add("node_network_speed_bytes", &l, Model::Const(speed));
            }
        }
        // Disks: ops/s, bytes/op, ms per op.
        for (dev, reads, writes, busy) in [
            ("nvme0n1", 40.0, 120.0, 0.05),
            ("nvme1n1", 900.0, 300.0, 0.3),
        ] {
            let l = [("device", dev)];
            self.counter(
                "node_disk_reads_completed_total",
                &l,
                (reads * UPTIME_S) as u64,
                reads,
                0.7,
                1.0,
            );
            self.counter(
                "node_disk_writes_completed_total",
                &l,
                (writes * UPTIME_S) as u64,
                writes,
                0.5,
                1.0,
            );
            self.counter(
                "node_disk_reads_merged_total",
                &l,
                (reads * 0.1 * UPTIME_S) as u64,
                reads * 0.1,
                0.8,
                1.0,
            );
            self.counter(
                "node_disk_writes_merged_total",
                &l,
                (writes * 0.3 * UPTIME_S) as u64,
                writes * 0.3,
                0.8,
                1.0,
            );
            // Bytes move in 512-byte sectors.
            self.counter(
                "node_disk_read_bytes_total",
                &l,
                (reads * 64.0 * UPTIME_S) as u64,
                reads * 64.0,
                0.7,
                1.0 / 512.0,
            );
            self.counter(
                "node_disk_written_bytes_total",
                &l,
                (writes * 32.0 * UPTIME_S) as u64,
                writes * 32.0,
                0.5,
                1.0 / 512.0,
            );
            self.counter(
                "node_disk_read_time_seconds_total",
                &l,
                (reads * 0.08 * UPTIME_S) as u64,
                reads * 0.08,
                0.7,
                1000.0,
            );
            self.counter(
                "node_disk_write_time_seconds_total",
                &l,
                (writes * 0.03 * UPTIME_S) as u64,
                writes * 0.03,
                0.5,
                1000.0,
            );
            self.counter(
                "node_disk_io_time_seconds_total",
                &l,
                (busy * 1000.0 * UPTIME_S) as u64,
                busy * 1000.0,
                0.5,
                1000.0,
            );
            self.counter(
                "node_disk_io_time_weighted_seconds_total",
                &l,
                (busy * 1500.0 * UPTIME_S) as u64,
                busy * 1500.0,
                0.6,
                1000.0,
            );
            self.counter(
                "node_disk_discarded_sectors_total",
                &l,
                123_456,
                0.0,
                0.0,
                1.0,
            );
            self.gauge("node_disk_io_now", &l, 0, 0.8, 1.0, 1.0);
        }
        // System.
        self.gauge("node_load1", &[], 412, 40.0, 1.0, 100.0);
        self.gauge("node_load5", &[], 398, 15.0, 1.0, 100.0);
        self.gauge("node_load15", &[], 390, 6.0, 1.0, 100.0);
        self.gauge("node_procs_running", &[], 4, 2.0, 1.0, 1.0);
        self.gauge("node_procs_blocked", &[], 0, 0.4, 1.0, 1.0);
        self.counter(
            "node_context_switches_total",
            &[],
            81_234_567_890,
            25_000.0,
            0.3,
            1.0,
        );
        self.counter("node_intr_total", &[], 45_678_901_234, 14_000.0, 0.3, 1.0);
        self.counter("node_forks_total", &[], 12_345_678, 6.0, 0.6, 1.0);
        self.add(
            "node_boot_time_seconds",
            &[],
            Model::Const(((START_MS / 1000) as f64 - UPTIME_S).floor()),
        );
        self.add("node_time_seconds", &[], Model::WallClock);
        self.gauge("node_entropy_available_bits", &[], 256, 0.0, 1.0, 1.0);
        self.gauge("node_filefd_allocated", &[], 18_240, 40.0, 1.0, 1.0);
        self.add(
            "node_filefd_maximum",
            &[],
            Model::Const(9_223_372_036_854_775_807.0),
        );
        self.gauge("node_sockstat_TCP_inuse", &[], 212, 4.0, 1.0, 1.0);
        self.gauge("node_sockstat_TCP_tw", &[], 95, 10.0, 1.0, 1.0);
        self.gauge("node_sockstat_sockets_used", &[], 1_490, 8.0, 1.0, 1.0);
        self.gauge("node_netstat_Tcp_CurrEstab", &[], 180, 3.0, 1.0, 1.0);
        self.counter(
            "node_netstat_Tcp_ActiveOpens",
            &[],
            4_567_890,
            1.5,
            0.7,
            1.0,
        );
        self.counter(
            "node_netstat_Tcp_PassiveOpens",
            &[],
            2_345_678,
            0.8,
            0.7,
            1.0,
        );
        self.counter("node_netstat_Tcp_RetransSegs", &[], 98_765, 0.05, 1.0, 1.0);
        self.counter("node_vmstat_pgfault", &[], 9_876_543_210, 3_000.0, 0.5, 1.0);
        self.counter("node_vmstat_pgmajfault", &[], 45_678, 0.02, 1.0, 1.0);
        self.counter("node_vmstat_pgpgin", &[], 1_234_567_890, 400.0, 0.7, 1.0);
        self.counter("node_vmstat_pgpgout", &[], 2_345_678_901, 700.0, 0.5, 1.0);
        self.add(
            "node_uname_info",
            &[
                ("machine", "x86_64"),
                ("release", "6.8.0-49-generic"),
                ("sysname", "Linux"),
            ],
            Model::Const(1.0),
        );
        // hwmon: millidegrees Celsius, most sensors in whole degrees.
        for (chip, sensor, mean, step) in [
            ("platform_coretemp_0", "temp1", 52_000, 1000.0),
            ("platform_coretemp_0", "temp2", 49_000, 1000.0),
            ("platform_coretemp_1", "temp1", 54_000, 1000.0),
            ("platform_coretemp_1", "temp2", 51_000, 1000.0),
            (
                "pci0000:00_0000:00:01_3_0000:01:00_0",
                "temp1",
                41_850,
                300.0,
            ),
            (
                "pci0000:00_0000:00:01_3_0000:02:00_0",
                "temp1",
                43_850,
                300.0,
            ),
        ] {
            self.gauge(
                "node_hwmon_temp_celsius",
                &[("chip", chip), ("sensor", sensor)],
                mean,
                step,
                1.0,
                1000.0,
            );
        }
        // GPUs (NVML units): °C, mW, %, MiB, mJ.
        for gpu in 0..4 {
            let g = gpu.to_string();
            let l = [("gpu", g.as_str()), ("model", "NVIDIA H100 80GB HBM3")];
            self.gauge("dcmon_gpu_temperature_celsius", &l, 61 + gpu, 1.0, 1.0, 1.0);
            self.gauge(
                "dcmon_gpu_power_watts",
                &l,
                512_000 + gpu * 9_000,
                25_000.0,
                1.0,
                1000.0,
            );
            self.gauge("dcmon_gpu_utilization_ratio", &l, 87, 6.0, 1.0, 100.0);
            self.gauge(
                "dcmon_gpu_memory_used_bytes",
                &l,
                71_234,
                300.0,
                1_048_576.0,
                1.0,
            );
            self.counter(
                "dcmon_gpu_energy_joules_total",
                &l,
                912_345_678_901,
                510_000.0,
                0.05,
                1000.0,
            );
        }
    }

    fn scrape(&mut self) -> Scrape {
        let dt = INTERVAL_MS as f64 / 1000.0;
        let timestamp_ms = self.now_ms;
        let rng = &mut self.rng;
        let samples = self
            .series
            .iter_mut()
            .map(|s| {
                let value = match &mut s.model {
                    Model::Const(v) => *v,
                    Model::Counter {
                        units,
                        rate,
                        mean,
                        burst,
                        div,
                    } => {
                        // The rate wanders (mean-reverting), and each interval's
                        // increment is noisy on top of it.
                        *rate =
                            (*rate + 0.3 * (*mean - *rate) + *burst * 0.3 * *mean * rng.normal())
                                .max(0.0);
                        *units += rng.count(*rate * dt);
                        *units as f64 / *div
                    }
                    Model::Gauge {
                        units,
                        mean,
                        step,
                        mul,
                        div,
                    } => {
                        let pull = 0.1 * (*mean - *units) as f64;
                        *units = (*units as f64 + pull + *step * rng.normal())
                            .round()
                            .max(0.0) as i64;
                        *units as f64 * *mul / *div
                    }
                    // Go's float64(t.UnixNano()) / 1e9, with some scheduling jitter.
                    Model::WallClock => {
                        (timestamp_ms * 1_000_000 + (rng.unit() * 3e6) as i64) as f64 / 1e9
                    }
                };
                MetricSample {
                    labels: s.labels.clone(),
                    value,
                }
            })
            .collect();
        self.now_ms += INTERVAL_MS;
        Scrape {
            timestamp_ms,
            samples,
        }
    }
}
