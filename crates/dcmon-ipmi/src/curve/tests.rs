use super::*;
use proptest::prelude::*;

const T0: i64 = 1_790_000_000_000;
const CYCLE: i64 = 30_000;
/// Zephyr's 0x18, written as it is (above the Supermicro profile's minimum of 20 %).
const ZEPHYR_WRITE: u8 = 0x18;

fn temp(name: &str, kind: SensorKind, celsius: f64) -> Reading {
    Reading {
        name: name.into(),
        kind,
        celsius,
        at_ms: 0,
    }
}

fn cpu(celsius: f64) -> Reading {
    temp("CPU1 Temp", SensorKind::CpuTemp, celsius)
}

fn fan(name: &str, rpm: f64) -> FanRpm {
    FanRpm {
        name: name.into(),
        zone: None,
        rpm,
        at_ms: 0,
    }
}

fn full(duties: &[(u8, u8)]) -> Option<CurrentFans> {
    Some(CurrentFans {
        mode: Some(FanMode::Full),
        zones: duties
            .iter()
            .map(|&(zone, duty_percent)| ZoneDuty { zone, duty_percent })
            .collect(),
    })
}

fn duty(zone: u8, duty: u8) -> FanWrite {
    FanWrite::Duty { zone, duty }
}

const SUPERMICRO_FAIL_SAFE: [FanWrite; 3] = [
    FanWrite::FullMode,
    FanWrite::Duty { zone: 0, duty: 100 },
    FanWrite::Duty { zone: 1, duty: 100 },
];

fn zone_curve(zone: u8, sensors: SensorSelector, points: &[(f64, u8)]) -> ZoneCurve {
    ZoneCurve {
        zone,
        sensors,
        points: points.to_vec(),
        hysteresis_c: 3.0,
        min_dwell_s: 30,
        fans: Vec::new(),
    }
}

/// CPU zone 0: 30 °C/25 % – 50 °C/40 % – 70 °C/100 %.
fn cpu_curve() -> ZoneCurve {
    zone_curve(
        0,
        SensorSelector::cpu_temps(),
        &[(30.0, 25), (50.0, 40), (70.0, 100)],
    )
}

fn curves(zones: Vec<ZoneCurve>) -> CurveConfig {
    CurveConfig {
        preset: None,
        zones,
        ..CurveConfig::default()
    }
}

/// A controller driven one cycle at a time, readings taken at the step's time.
struct Loop {
    ctl: Controller,
    now: i64,
}

impl Loop {
    fn new(vendor: Vendor, config: CurveConfig) -> Self {
        Self {
            ctl: Controller::new(vendor, config).expect("valid configuration"),
            now: T0,
        }
    }

    fn inputs(&self, temps: &[Reading], fans: &[FanRpm]) -> Inputs {
        Inputs {
            now_ms: self.now,
            temps: temps
                .iter()
                .map(|r| Reading {
                    at_ms: self.now,
                    ..r.clone()
                })
                .collect(),
            fans: fans
                .iter()
                .map(|f| FanRpm {
                    at_ms: self.now,
                    ..f.clone()
                })
                .collect(),
            current: None,
            bmc_reachable: true,
            last_run_ms: None,
        }
    }

    /// One cycle later.
    fn step_with(&mut self, f: impl FnOnce(&mut Inputs)) -> Decision {
        self.now += CYCLE;
        let mut inputs = self.inputs(&[], &[]);
        f(&mut inputs);
        self.ctl.step(&inputs)
    }

    fn step(&mut self, temps: &[Reading], fans: &[FanRpm]) -> Decision {
        self.now += CYCLE;
        let inputs = self.inputs(temps, fans);
        self.ctl.step(&inputs)
    }
}

#[test]
fn first_step_writes_the_curve_then_only_changes() {
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    let d = l.step(
        &[cpu(45.0), temp("CPU2 Temp", SensorKind::CpuTemp, 40.0)],
        &[],
    );
    assert_eq!(d.writes, [duty(0, 36)]);
    assert_eq!(
        d.duties,
        [ZoneDuty {
            zone: 0,
            duty_percent: 36
        }]
    );
    assert_eq!(
        d.explanation,
        [
            "zone 0: CPU1 Temp 45 °C (hottest of 2) → 36 % on 30 °C/25 % – 50 °C/40 %",
            "zone 0: set 36 % (was unknown)"
        ]
    );
    let d = l.step(&[cpu(45.0)], &[]);
    assert_eq!(d.writes, []);
    assert_eq!(d.explanation[1], "zone 0: at 36 % already, nothing written");
    // The BMC reports another duty (someone changed it): written again.
    let d = l.step_with(|i| {
        i.temps = vec![Reading {
            at_ms: i.now_ms,
            ..cpu(45.0)
        }];
        i.current = full(&[(0, 60), (1, 100)]);
    });
    assert_eq!(d.writes, [duty(0, 36)]);
    // The BMC fell back to Standard mode: written again, with the reason.
    let d = l.step_with(|i| {
        i.temps = vec![Reading {
            at_ms: i.now_ms,
            ..cpu(45.0)
        }];
        i.current = Some(CurrentFans {
            mode: Some(FanMode::Standard),
            zones: vec![ZoneDuty {
                zone: 0,
                duty_percent: 36,
            }],
        });
    });
    assert_eq!(d.writes, [duty(0, 36)]);
    assert!(
        d.explanation
            .iter()
            .any(|e| e == "zone 0: set 36 %, after Full mode (the BMC is in standard mode)"),
        "{d:?}"
    );
}

#[test]
fn hysteresis_keeps_a_wobbling_temperature_from_flapping_the_duty() {
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    let mut check = |celsius: f64, expect: &[FanWrite]| {
        let d = l.step(&[cpu(celsius)], &[]);
        assert_eq!(d.writes, expect, "{celsius} °C: {:?}", d.explanation);
    };
    check(49.0, &[duty(0, 39)]);
    check(51.0, &[duty(0, 43)]);
    check(49.0, &[]);
    check(51.0, &[]);
    check(49.0, &[]);
    check(50.0, &[]);
    check(48.0, &[duty(0, 39)]); // 3 °C below the 51 °C that set 43 %
    check(49.0, &[]);
    check(52.0, &[duty(0, 46)]);
}

#[test]
fn dwell_holds_a_falling_duty_but_never_a_rising_one() {
    let mut z = cpu_curve();
    z.min_dwell_s = 90;
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![z]));
    let mut check = |celsius: f64, expect: &[FanWrite], why: &str| {
        let d = l.step(&[cpu(celsius)], &[]);
        assert_eq!(d.writes, expect, "{celsius} °C: {:?}", d.explanation);
        assert!(
            d.explanation.iter().any(|e| e.contains(why)),
            "{why}: {:?}",
            d.explanation
        );
    };
    check(60.0, &[duty(0, 70)], "70 %");
    check(40.0, &[], "set 30 s ago, the minimum dwell is 90 s");
    check(40.0, &[], "set 60 s ago, the minimum dwell is 90 s");
    check(65.0, &[duty(0, 85)], "rising from 70 %");
    check(40.0, &[], "set 30 s ago");
    check(40.0, &[], "set 60 s ago");
    check(40.0, &[duty(0, 33)], "falling from 85 %");
}

#[test]
fn min_duty_is_refused_in_the_config_and_raised_at_run_time() {
    let e = Controller::new(
        Vendor::Supermicro,
        curves(vec![zone_curve(
            0,
            SensorSelector::cpu_temps(),
            &[(30.0, 10), (60.0, 80)],
        )]),
    )
    .expect_err("below minimum");
    assert_eq!(
        e,
        [
            "zones[0].points[0]: duty 10 % is below Supermicro's minimum of 20 % (fans stall or trip the BMC's lower-critical alarm); use at least 20 %"
        ]
    );
    // A max_rpm ceiling that asks for less than the minimum.
    let mut z = cpu_curve();
    z.fans.push(FanOverride {
        fan: "FANA".into(),
        min_duty: None,
        max_duty: None,
        min_rpm: None,
        max_rpm: Some(900.0),
    });
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![z]));
    let d = l.step_with(|i| {
        i.temps = vec![Reading {
            at_ms: i.now_ms,
            ..cpu(60.0)
        }];
        i.fans = vec![FanRpm {
            at_ms: i.now_ms,
            ..fan("FANA", 3000.0)
        }];
        i.current = full(&[(0, 50)]);
    });
    assert_eq!(d.writes, [duty(0, 20)]);
    assert_eq!(
        d.explanation[1..],
        [
            "zone 0: lowered to 15 % by FANA max_rpm 900 (3000 RPM at 50 %)",
            "zone 0: 15 % raised to Supermicro's minimum of 20 %",
            "zone 0: set 20 % (was 50 %)"
        ]
    );
}

#[test]
fn per_fan_bounds_floor_and_ceiling() {
    // The zone is at 30 % when the fan is read.
    let check = |o: FanOverride, reading: FanRpm, celsius: f64, expect: u8| {
        let mut z = cpu_curve();
        z.fans.push(o.clone());
        let mut l = Loop::new(Vendor::Supermicro, curves(vec![z]));
        let d = l.step_with(|i| {
            i.temps = vec![Reading {
                at_ms: i.now_ms,
                ..cpu(celsius)
            }];
            i.fans = vec![FanRpm {
                at_ms: i.now_ms,
                ..reading
            }];
            i.current = full(&[(0, 30)]);
        });
        let got = d.duties[0].duty_percent;
        assert_eq!(got, expect, "{o:?}: {:?}", d.explanation);
    };
    let o = |min_duty, max_duty, min_rpm, max_rpm| FanOverride {
        fan: "FAN*".into(),
        min_duty,
        max_duty,
        min_rpm,
        max_rpm,
    };
    let f = |rpm| fan("FAN1", rpm);
    let fz = |zone, rpm| FanRpm {
        zone: Some(zone),
        ..fan("FAN1", rpm)
    };
    // The curve gives 33 % at 40 °C, 70 % at 60 °C, 85 % at 65 °C.
    check(o(None, None, Some(1500.0), None), f(1000.0), 40.0, 45);
    check(o(None, None, None, Some(1500.0)), f(1000.0), 60.0, 45);
    check(o(Some(50), None, None, None), f(1000.0), 40.0, 50);
    check(o(None, Some(60), None, None), f(1000.0), 65.0, 60);
    check(o(Some(80), Some(80), None, None), f(1000.0), 30.0, 80);
    // The floor beats the ceiling.
    check(o(Some(70), None, None, Some(1000.0)), f(1000.0), 65.0, 70);
    // A stopped fan gives no ratio; a fan of the other zone does not count.
    check(o(None, None, Some(1500.0), None), f(0.0), 40.0, 33);
    check(o(None, None, Some(1500.0), None), fz(0, 1000.0), 40.0, 45);
    check(o(None, None, Some(1500.0), None), fz(1, 1000.0), 40.0, 33);
}

#[test]
fn zephyr_preset_exactly_as_stated() {
    let check = |celsius: f64, rpms: &[f64], current: Option<CurrentFans>, expect: &[FanWrite]| {
        let mut l = Loop::new(Vendor::Supermicro, CurveConfig::default());
        let d = l.step_with(|i| {
            i.temps = vec![Reading {
                at_ms: i.now_ms,
                ..cpu(celsius)
            }];
            i.fans = rpms
                .iter()
                .enumerate()
                .map(|(n, &rpm)| FanRpm {
                    at_ms: i.now_ms,
                    ..fan(&format!("FAN{n}"), rpm)
                })
                .collect();
            i.current = current;
        });
        assert_eq!(
            d.writes, expect,
            "{celsius} °C {rpms:?}: {:?}",
            d.explanation
        );
        assert_eq!(d.fail_safe, None);
    };
    let standard = Some(CurrentFans {
        mode: Some(FanMode::Standard),
        zones: Vec::new(),
    });
    check(50.0, &[1500.0, 2100.0], None, &[duty(0, ZEPHYR_WRITE)]);
    check(50.0, &[2050.1], standard.clone(), &[duty(0, ZEPHYR_WRITE)]);
    check(30.0, &[2100.0], full(&[(0, 50)]), &[duty(0, ZEPHYR_WRITE)]);
    check(50.0, &[2050.0, 1900.0], None, &[]);
    check(49.0, &[], None, &[]);
    check(45.0, &[2400.0], full(&[(0, ZEPHYR_WRITE)]), &[]); // in effect already
    let back = &[FanWrite::HandBack];
    check(50.1, &[2100.0], full(&[(0, ZEPHYR_WRITE)]), back);
    check(50.1, &[2100.0], standard, &[]);
    check(50.1, &[2100.0], None, &[]); // this controller never took control
}

#[test]
fn zephyr_hands_back_what_it_took_when_the_bmc_reports_no_mode() {
    let mut l = Loop::new(Vendor::Supermicro, CurveConfig::default());
    let d = l.step(&[cpu(45.0)], &[fan("FAN1", 2500.0)]);
    assert_eq!(d.writes, [duty(0, ZEPHYR_WRITE)]);
    assert_eq!(
        d.explanation,
        [
            "zephyr: CPU1 Temp 45 °C is at or below 50 °C and FAN1 runs at 2500 RPM, above 2050: zone 0 to 24 %"
        ]
    );
    assert_eq!(l.step(&[cpu(45.0)], &[fan("FAN1", 1800.0)]).writes, []);
    let d = l.step(&[cpu(55.0)], &[fan("FAN1", 1800.0)]);
    assert_eq!(d.writes, [FanWrite::HandBack]);
    assert_eq!(
        d.explanation,
        [
            "zephyr: CPU1 Temp 55 °C is above 50 °C: the fans belong to the BMC",
            "fans handed back to the BMC (Standard mode)"
        ]
    );
    assert_eq!(l.step(&[cpu(56.0)], &[fan("FAN1", 2500.0)]).writes, []);
    assert_eq!(
        l.step(&[cpu(50.0)], &[fan("FAN1", 2500.0)]).writes,
        [duty(0, ZEPHYR_WRITE)]
    );
}

#[test]
fn gpu_zone_follows_the_hottest_gpu() {
    let gpu = SensorSelector {
        kinds: vec![SensorKind::GpuTemp],
        names: Vec::new(),
    };
    let config = curves(vec![
        cpu_curve(),
        zone_curve(1, gpu, &[(40.0, 30), (85.0, 100)]),
    ]);
    let mut l = Loop::new(Vendor::Supermicro, config.clone());
    let temps = [
        cpu(40.0),
        temp("GPU0", SensorKind::GpuTemp, 60.0),
        temp("GPU1", SensorKind::GpuTemp, 76.0),
        temp("nvme0", SensorKind::NvmeTemp, 90.0),
    ];
    let d = l.step(&temps, &[]);
    assert_eq!(d.writes, [duty(0, 33), duty(1, 86)]);
    assert_eq!(
        d.explanation[1],
        "zone 1: GPU1 76 °C (hottest of 2) → 86 % on 40 °C/30 % – 85 °C/100 %"
    );
    // Dell: one duty for all fans, the highest zone's.
    let mut dell = Loop::new(Vendor::Dell, config);
    let d = dell.step(&temps, &[]);
    assert_eq!(d.writes, [duty(0, 86)]);
    assert_eq!(
        d.duties,
        [ZoneDuty {
            zone: 0,
            duty_percent: 86
        }]
    );
    assert_eq!(dell.step(&temps, &[]).writes, []);
}

#[test]
fn fail_safe_within_one_step() {
    let check = |vendor: Vendor, spoil: fn(&mut Inputs), reason: &str| {
        let mut l = Loop::new(vendor, curves(vec![cpu_curve()]));
        let good = l.step(&[cpu(40.0)], &[]);
        assert_eq!(good.fail_safe, None);
        let d = l.step_with(|i| {
            i.temps = vec![Reading {
                at_ms: i.now_ms,
                ..cpu(40.0)
            }];
            spoil(i);
        });
        let expect: &[FanWrite] = match vendor {
            Vendor::Dell => &[FanWrite::HandBack],
            _ => &SUPERMICRO_FAIL_SAFE,
        };
        assert_eq!(d.writes, expect, "{reason}");
        let got = d.fail_safe.clone().expect("fail-safe");
        assert_eq!(got.to_string(), reason);
        assert_eq!(d.events, [Event::FailSafeEntered { reason: got }]);
        assert!(
            d.explanation.iter().any(|e| e.starts_with("FAIL-SAFE: ")),
            "{d:?}"
        );
    };
    let (sm, dell) = (Vendor::Supermicro, Vendor::Dell);
    let no_cpu = "zone 0: no fresh temperature from its sensors (cpu_temp)";
    let bmc = "the BMC did not answer";
    let late = "the control loop last ran 60 s ago, two intervals of 30 s or more";
    check(sm, |i| i.temps.clear(), no_cpu);
    check(sm, |i| i.temps[0].at_ms -= 60_001, no_cpu);
    check(sm, |i| i.temps[0].celsius = f64::NAN, no_cpu);
    check(sm, |i| i.temps[0].kind = SensorKind::Other, no_cpu);
    check(sm, |i| i.bmc_reachable = false, bmc);
    check(sm, |i| i.now_ms += CYCLE, late); // two cycles after the last step
    check(dell, |i| i.temps.clear(), no_cpu);
    check(dell, |i| i.bmc_reachable = false, bmc);
}

#[test]
fn stale_readings_are_explained_and_a_late_caller_counts() {
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    let d = l.step_with(|i| {
        i.temps = vec![Reading {
            at_ms: i.now_ms - 61_000,
            ..cpu(40.0)
        }];
    });
    assert_eq!(
        d.explanation,
        [
            "CPU1 Temp: reading is 61 s old (more than 60 s), ignored",
            "FAIL-SAFE: zone 0: no fresh temperature from its sensors (cpu_temp): Full mode, both zones at 100 %"
        ]
    );
    // The caller's own record of the last run counts on a fresh controller.
    let l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    let mut i = l.inputs(&[cpu(40.0)], &[]);
    i.last_run_ms = Some(i.now_ms - 59_999);
    assert_eq!(l.ctl.dry_run(&i).fail_safe, None);
    i.last_run_ms = Some(i.now_ms - 60_000);
    assert!(matches!(
        l.ctl.dry_run(&i).fail_safe,
        Some(FailSafeReason::LoopLate { .. })
    ));
}

#[test]
fn fail_safe_repeats_its_writes_raises_one_event_and_recovers() {
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    assert_eq!(l.step(&[cpu(45.0)], &[]).writes, [duty(0, 36)]);
    let lost = l.step(&[], &[]);
    assert_eq!(lost.writes, SUPERMICRO_FAIL_SAFE);
    assert_eq!(lost.events.len(), 1);
    let still = l.step(&[], &[]);
    assert_eq!(still.writes, SUPERMICRO_FAIL_SAFE);
    assert_eq!(still.events, []);
    let other = l.step_with(|i| i.bmc_reachable = false);
    assert_eq!(
        other.events,
        [Event::FailSafeEntered {
            reason: FailSafeReason::BmcUnreachable
        }]
    );
    // Back: the curve's duty at once, dwell and hysteresis start afresh.
    let back = l.step(&[cpu(45.0)], &[]);
    assert_eq!(back.writes, [duty(0, 36)]);
    assert_eq!(back.fail_safe, None);
    assert_eq!(
        back.events,
        [Event::FailSafeCleared {
            reason: FailSafeReason::BmcUnreachable
        }]
    );
    assert_eq!(
        back.explanation[0],
        "fail-safe cleared: no longer true that the BMC did not answer"
    );
    assert_eq!(l.step(&[cpu(45.0)], &[]).writes, []);
    // Zephyr after fail-safe: Full mode at 100 % is manual control, handed back when hot.
    let mut z = Loop::new(Vendor::Supermicro, CurveConfig::default());
    assert_eq!(z.step(&[], &[]).writes, SUPERMICRO_FAIL_SAFE);
    assert_eq!(
        z.step(&[cpu(60.0)], &[fan("FAN1", 4000.0)]).writes,
        [FanWrite::HandBack]
    );
    // Dell after fail-safe (automatic): manual duty again.
    let mut dell = Loop::new(Vendor::Dell, curves(vec![cpu_curve()]));
    assert_eq!(dell.step(&[cpu(45.0)], &[]).writes, [duty(0, 36)]);
    assert_eq!(dell.step(&[], &[]).writes, [FanWrite::HandBack]);
    assert_eq!(dell.step(&[cpu(45.0)], &[]).writes, [duty(0, 36)]);
}

#[test]
fn dry_run_changes_nothing() {
    let mut l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    l.step(&[cpu(60.0)], &[]);
    l.now += CYCLE;
    let i = l.inputs(&[cpu(58.0)], &[]);
    let first = l.ctl.dry_run(&i);
    assert_eq!(first, l.ctl.dry_run(&i));
    assert_eq!(first, l.ctl.step(&i));
    assert_eq!(
        first.explanation.last().map(String::as_str),
        Some("zone 0: at 70 % already, nothing written")
    );
}

#[test]
fn shutdown_hands_back_and_writes_map_onto_fan_actions() {
    let l = Loop::new(Vendor::Supermicro, curves(vec![cpu_curve()]));
    assert_eq!(l.ctl.shutdown(), [FanWrite::HandBack]);
    let check = |w: FanWrite, json: &str| {
        assert_eq!(
            serde_json::to_string(&w.action()).expect("serialises"),
            json
        );
    };
    check(FanWrite::HandBack, r#"{"action":"mode","mode":"standard"}"#);
    check(FanWrite::FullMode, r#"{"action":"mode","mode":"full"}"#);
    check(duty(1, 40), r#"{"action":"zone","zone":1,"duty":40}"#);
}

#[test]
fn vendors_without_fan_control_get_no_controller() {
    let check = |vendor: Vendor, expect: &str| {
        let e = Controller::new(vendor, curves(vec![cpu_curve()])).expect_err("refused");
        assert_eq!(e, [expect]);
    };
    check(
        Vendor::Hpe,
        "fan control is not available over IPMI on HPE iLO (use iLO's own thermal settings)",
    );
    check(
        Vendor::Other(7),
        "no fan profile for manufacturer 7 (fan control is offered for Supermicro and Dell BMCs)",
    );
}

fn any_reading() -> impl Strategy<Value = Reading> {
    let celsius = prop_oneof![-60.0..220.0f64, any::<f64>()];
    let kind = prop_oneof![
        Just(SensorKind::CpuTemp),
        Just(SensorKind::GpuTemp),
        Just(SensorKind::NvmeTemp),
        Just(SensorKind::Other),
    ];
    (
        prop::sample::select(vec!["CPU1 Temp", "GPU0", "nvme0", "Inlet"]),
        kind,
        celsius,
        -200_000i64..200_000,
    )
        .prop_map(|(name, kind, celsius, age)| Reading {
            name: name.into(),
            kind,
            celsius,
            at_ms: T0 - age,
        })
}

fn any_fan() -> impl Strategy<Value = FanRpm> {
    let rpm = prop_oneof![0.0..6000.0f64, any::<f64>()];
    (
        prop::sample::select(vec!["FAN1", "FANA"]),
        rpm,
        -200_000i64..200_000,
    )
        .prop_map(|(name, rpm, age)| FanRpm {
            name: name.into(),
            zone: None,
            rpm,
            at_ms: T0 - age,
        })
}

/// One cycle's inputs (`now_ms` is filled in by the test) and how far the clock moves
/// before it.
fn any_cycle() -> impl Strategy<Value = (Inputs, i64)> {
    let current =
        (prop::option::of(0u8..6), any::<u8>(), any::<u8>()).prop_map(|(mode, z0, z1)| {
            CurrentFans {
                mode: mode.map(FanMode::from_code),
                zones: vec![
                    ZoneDuty {
                        zone: 0,
                        duty_percent: z0,
                    },
                    ZoneDuty {
                        zone: 1,
                        duty_percent: z1,
                    },
                ],
            }
        });
    (
        prop::collection::vec(any_reading(), 0..5),
        prop::collection::vec(any_fan(), 0..3),
        prop::option::of(current),
        prop::bool::weighted(0.9),
        prop::option::weighted(0.2, T0 - 100_000..T0 + 100_000),
        prop_oneof![0i64..40_000, any::<i64>()],
    )
        .prop_map(
            |(temps, fans, current, bmc_reachable, last_run_ms, advance)| {
                let inputs = Inputs {
                    now_ms: 0,
                    temps,
                    fans,
                    current,
                    bmc_reachable,
                    last_run_ms,
                };
                (inputs, advance)
            },
        )
}

/// Zone 0 on CPUs with a fan ceiling and floor, zone 1 on GPUs.
fn busy_config() -> CurveConfig {
    let mut z0 = cpu_curve();
    z0.fans.push(FanOverride {
        fan: "FAN*".into(),
        min_duty: None,
        max_duty: None,
        min_rpm: Some(900.0),
        max_rpm: Some(1500.0),
    });
    let gpu = SensorSelector {
        kinds: vec![SensorKind::GpuTemp],
        names: vec!["inlet".into()],
    };
    curves(vec![z0, zone_curve(1, gpu, &[(40.0, 30), (85.0, 100)])])
}

proptest! {
    /// Whatever the readings, clock and BMC say, every duty written is within the
    /// vendor's minimum and 100 % on an existing zone, and fail-safe writes only the
    /// fail-safe.
    #[test]
    fn decisions_stay_within_vendor_limits(
        steps in prop::collection::vec(any_cycle(), 1..8),
        vendor in prop_oneof![Just(Vendor::Supermicro), Just(Vendor::Dell)],
        zephyr in any::<bool>(),
    ) {
        let config = if zephyr && vendor == Vendor::Supermicro { CurveConfig::default() } else { busy_config() };
        let mut ctl = Controller::new(vendor, config).expect("valid");
        let minimum = vendor.minimum_duty_percent().expect("has a minimum");
        let mut now = T0;
        for (mut inputs, advance) in steps {
            now = now.saturating_add(advance);
            inputs.now_ms = now;
            let dry = ctl.dry_run(&inputs);
            let d = ctl.step(&inputs);
            prop_assert_eq!(&dry, &d);
            if d.fail_safe.is_some() {
                let expect: &[FanWrite] = if vendor == Vendor::Dell { &[FanWrite::HandBack] } else { &SUPERMICRO_FAIL_SAFE };
                prop_assert_eq!(&d.writes[..], expect);
            }
            for w in &d.writes {
                if let FanWrite::Duty { zone, duty } = *w {
                    prop_assert!((minimum..=100).contains(&duty), "{:?}", d);
                    prop_assert!(zone <= 1);
                }
            }
            for z in &d.duties {
                prop_assert!((minimum..=100).contains(&z.duty_percent), "{:?}", d);
            }
        }
    }
}
