/// Additive-increase / multiplicative-decrease control of a rate from a pressure signal, as TCP
/// controls its window: the "slow-source" overload policy.
///
/// Each [`update`](Self::update) reads the pressure (a queue's fill from 0 to 1, or any signal
/// scaled so): at or above `high`, the rate is multiplied by `decrease`; at or below `low`, it
/// grows by `increase`; in between it holds. The rate stays within `[min, max]`.
///
/// ```
/// use reactive::flow::Aimd;
/// let mut aimd = Aimd::new(8_000.0, 100.0, 8_000.0);
/// assert_eq!(aimd.update(0.95), 4_000.0); // a full queue halves the rate
/// assert_eq!(aimd.update(0.60), 4_000.0); // in the band: hold
/// assert_eq!(aimd.update(0.10), 4_160.0); // an emptying queue adds 2% of max
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Aimd {
    rate: f64,
    min: f64,
    max: f64,
    increase: f64,
    decrease: f64,
    high: f64,
    low: f64,
}

impl Aimd {
    /// Starts at `initial`, within `[min, max]`; adds 2% of `max` per step, halves on pressure
    /// at or above 0.8, grows at or below 0.5.
    pub fn new(initial: f64, min: f64, max: f64) -> Self {
        let min = if min.is_finite() && min > 0.0 {
            min
        } else {
            1.0
        };
        let max = if max.is_finite() && max >= min {
            max
        } else {
            min
        };
        let initial = if initial.is_nan() { max } else { initial };
        Aimd {
            rate: initial.clamp(min, max),
            min,
            max,
            increase: max * 0.02,
            decrease: 0.5,
            high: 0.8,
            low: 0.5,
        }
    }

    /// The additive step, per update.
    pub fn increase(mut self, step: f64) -> Self {
        self.increase = step.max(0.0);
        self
    }

    /// The multiplicative factor on pressure, in `(0, 1)`.
    pub fn decrease(mut self, factor: f64) -> Self {
        self.decrease = factor.clamp(0.01, 0.99);
        self
    }

    /// The pressure band: decrease at or above `high`, increase at or below `low`.
    pub fn band(mut self, low: f64, high: f64) -> Self {
        self.low = low.min(high);
        self.high = high.max(low);
        self
    }

    /// Feeds one pressure reading; returns the new rate.
    pub fn update(&mut self, pressure: f64) -> f64 {
        if pressure >= self.high {
            self.rate = (self.rate * self.decrease).max(self.min);
        } else if pressure <= self.low {
            self.rate = (self.rate + self.increase).min(self.max);
        }
        self.rate
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_settles_around_the_sink_ceiling() {
        // A source offered at up to 8,000/s into a 2,000-slot queue drained at 2,000/s; the
        // controller reads the fill every 100 ms.
        let (ceiling, cap, step) = (2_000.0, 2_000.0, 0.1);
        let mut aimd = Aimd::new(8_000.0, 100.0, 8_000.0);
        let mut depth: f64 = 0.0;
        let mut sent = 0.0;
        let mut drained = 0.0;
        for tick in 0..3_000 {
            let rate = aimd.rate();
            let room = cap - depth;
            let arrive = (rate * step).min(room);
            depth += arrive;
            let out = (ceiling * step).min(depth);
            depth -= out;
            if tick >= 1_000 {
                sent += arrive;
                drained += out;
            }
            aimd.update(depth / cap);
        }
        let offered = sent / 200.0;
        assert!(
            (offered - ceiling).abs() / ceiling < 0.05,
            "average offered {offered}/s"
        );
        assert!(
            drained / 200.0 > ceiling * 0.95,
            "the sink stays busy: {}/s",
            drained / 200.0
        );
    }

    #[test]
    fn the_rate_stays_within_its_bounds() {
        let mut aimd = Aimd::new(50.0, 100.0, 1_000.0);
        assert_eq!(aimd.rate(), 100.0);
        for _ in 0..100 {
            aimd.update(1.0);
        }
        assert_eq!(aimd.rate(), 100.0);
        for _ in 0..1_000 {
            aimd.update(0.0);
        }
        assert_eq!(aimd.rate(), 1_000.0);
        let mut odd = Aimd::new(f64::NAN, f64::NAN, -1.0);
        assert_eq!(odd.rate(), 1.0, "nonsense bounds collapse to a rate of 1/s");
        assert_eq!(odd.update(0.0), 1.0);
    }
}
