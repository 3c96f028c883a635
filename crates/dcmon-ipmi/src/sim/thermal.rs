//! The simulated server's physics: fans follow their duty with a lag, temperatures
//! follow heat and airflow as first-order systems. Deterministic: time is an argument.

/// Fans 0–3 cool zone 0 (CPU/system), fan 4 zone 1 (peripheral), as on Supermicro
/// boards where FANA is the peripheral zone.
pub(crate) const FAN_ZONES: [usize; 5] = [0, 0, 0, 0, 1];
pub(crate) const ZONES: usize = 2;

/// RPM of a fan at 100 % duty (before the per-fan spread); 24 % gives ~1800 RPM.
const FAN_MAX_RPM: f64 = 7500.0;
/// Time constant of a fan's speed change.
const FAN_TAU_S: f64 = 2.0;
/// Time constants of the CPU die + heatsink, and of the board and peripheral air.
const CPU_TAU_S: f64 = 15.0;
const BOARD_TAU_S: f64 = 45.0;
/// CPU package power: idle and added at full load.
const CPU_IDLE_W: f64 = 30.0;
const CPU_LOAD_W: f64 = 170.0;
/// Everything else on the board, and the fans at full speed.
const BOARD_W: f64 = 60.0;
const FANS_MAX_W: f64 = 40.0;
/// Longest step of the integration; longer gaps are taken in steps this long.
pub(crate) const MAX_STEP_S: f64 = 0.5;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Thermal {
    pub inlet_c: f64,
    /// CPU utilisation, 0–1.
    pub load: f64,
    pub cpu_c: f64,
    pub system_c: f64,
    pub peripheral_c: f64,
    pub fan_rpm: [f64; 5],
    /// Per-fan RPM at 100 % duty: fans of one model differ by a few percent.
    fan_max_rpm: [f64; 5],
}

impl Thermal {
    /// A server at rest in steady state for `duty`, with spreads drawn from `seed`.
    pub(crate) fn new(seed: u64, duty: [f64; ZONES], powered: bool) -> Self {
        let mut rng = SplitMix(seed);
        let mut fan_max_rpm = [FAN_MAX_RPM; 5];
        for m in &mut fan_max_rpm {
            *m *= 0.97 + 0.06 * rng.unit();
        }
        let inlet_c = 21.0 + 5.0 * rng.unit();
        let mut t = Self {
            inlet_c,
            load: 0.15 + 0.35 * rng.unit(),
            cpu_c: inlet_c,
            system_c: inlet_c,
            peripheral_c: inlet_c,
            fan_rpm: [0.0; 5],
            fan_max_rpm,
        };
        for (i, rpm) in t.fan_rpm.iter_mut().enumerate() {
            *rpm = if powered {
                fan_max_rpm[i] * duty[FAN_ZONES[i]] / 100.0
            } else {
                0.0
            };
        }
        let target = t.targets(powered);
        (t.cpu_c, t.system_c, t.peripheral_c) = target;
        t
    }

    /// Fraction of full airflow through a zone.
    fn airflow(&self, zone: usize) -> f64 {
        let (sum, n) = FAN_ZONES
            .iter()
            .zip(self.fan_rpm)
            .filter(|(z, _)| **z == zone)
            .fold((0.0, 0.0), |(s, n), (_, rpm)| (s + rpm, n + 1.0));
        (sum / n / FAN_MAX_RPM).clamp(0.0, 1.2)
    }

    pub(crate) fn cpu_watts(&self, powered: bool) -> f64 {
        if powered {
            CPU_IDLE_W + CPU_LOAD_W * self.load.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// Power drawn at the wall, for DCMI Get Power Reading: CPU, board, fans (cube of
    /// speed), 92 % supply efficiency; a few watts of standby when off.
    pub(crate) fn system_watts(&self, powered: bool) -> f64 {
        if !powered {
            return 8.0;
        }
        let fans: f64 = self
            .fan_rpm
            .iter()
            .map(|r| (r / FAN_MAX_RPM).powi(3) * FANS_MAX_W / 5.0)
            .sum();
        (self.cpu_watts(true) + BOARD_W + fans) / 0.92
    }

    /// Steady-state temperatures for the present airflow: CPU, system, peripheral.
    fn targets(&self, powered: bool) -> (f64, f64, f64) {
        let a0 = self.airflow(0);
        let a1 = self.airflow(1);
        let cpu_w = self.cpu_watts(powered);
        let board_w = if powered { BOARD_W } else { 0.0 };
        // Heatsink resistance °C/W: 0.40 with no airflow down to 0.15 at full.
        let cpu = self.inlet_c + cpu_w * (0.10 + 0.30 / (1.0 + 5.0 * a0));
        let system = self.inlet_c + (cpu_w + board_w) * 0.12 / (1.0 + 3.0 * a0);
        let peripheral = self.inlet_c + board_w * 0.5 / (1.0 + 4.0 * a1);
        (cpu, system, peripheral)
    }

    /// Advances by `dt_s` seconds (≤ [`MAX_STEP_S`]) under zone duties in percent.
    pub(crate) fn step(&mut self, dt_s: f64, duty: [f64; ZONES], powered: bool) {
        let follow = |value: &mut f64, target: f64, tau: f64| {
            *value += (target - *value) * (1.0 - (-dt_s / tau).exp());
        };
        for (i, rpm) in self.fan_rpm.iter_mut().enumerate() {
            let target = if powered {
                self.fan_max_rpm[i] * duty[FAN_ZONES[i]].clamp(0.0, 100.0) / 100.0
            } else {
                0.0
            };
            follow(rpm, target, FAN_TAU_S);
        }
        let (cpu, system, peripheral) = self.targets(powered);
        follow(&mut self.cpu_c, cpu, CPU_TAU_S);
        follow(&mut self.system_c, system, BOARD_TAU_S);
        follow(&mut self.peripheral_c, peripheral, BOARD_TAU_S);
    }
}

/// SplitMix64: a tiny deterministic generator for the per-BMC spreads (no statistical
/// demands here, and no dependency).
pub(crate) struct SplitMix(pub u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: &mut Thermal, seconds: f64, duty: [f64; ZONES]) {
        let steps = (seconds / MAX_STEP_S) as usize;
        for _ in 0..steps {
            t.step(MAX_STEP_S, duty, true);
        }
    }

    #[test]
    fn fans_follow_duty_with_a_lag() {
        let mut t = Thermal::new(7, [100.0, 100.0], true);
        assert!(t.fan_rpm[0] > 7000.0);
        run(&mut t, 1.0, [24.0, 24.0]);
        assert!(t.fan_rpm[0] > 3000.0, "still slowing: {}", t.fan_rpm[0]);
        run(&mut t, 20.0, [24.0, 24.0]);
        assert!((t.fan_rpm[0] - 1800.0).abs() < 120.0, "{}", t.fan_rpm[0]);
    }

    #[test]
    fn less_airflow_or_more_load_means_hotter() {
        let mut t = Thermal::new(7, [50.0, 50.0], true);
        let at_half = t.cpu_c;
        run(&mut t, 300.0, [20.0, 20.0]);
        let at_fifth = t.cpu_c;
        assert!(at_fifth > at_half + 5.0, "{at_half} → {at_fifth}");
        t.load = 1.0;
        run(&mut t, 300.0, [20.0, 20.0]);
        assert!(t.cpu_c > at_fifth + 20.0, "{at_fifth} → {}", t.cpu_c);
    }

    #[test]
    fn same_seed_same_server() {
        assert_eq!(
            Thermal::new(42, [50.0; 2], true),
            Thermal::new(42, [50.0; 2], true)
        );
        assert_ne!(
            Thermal::new(42, [50.0; 2], true),
            Thermal::new(43, [50.0; 2], true)
        );
    }
}
