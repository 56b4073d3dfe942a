//! [`Bounded`]: a time series held in memory that never grows past a fixed number of points,
//! however long the run.
//!
//! Up to its capacity a [`Bounded`] keeps every sample. When it is full it merges neighbours
//! pairwise (half the points, each covering twice the time), and from then on merges each
//! 2, 4, 8 ... consecutive samples into one point, so a run of any length fits in the same
//! points at a resolution that halves as the run doubles. Its buffer is allocated and written
//! whole when it is made, so its memory is the same at the first sample and the millionth.
//! How two points merge is the type's ([`Coarsen`]): for a [`Sample`], rates are averaged
//! (weighted by the samples each point covers), levels (queue, lag, RSS) and the p99 keep their
//! maximum, and running totals keep the later value; so peaks, totals and mean rates read off
//! the coarse series are those of the full one.
//!
//! The full-resolution series is the CSV's ([`super::CsvWriter`]); the bounded one is what the
//! report and the charts read.

use super::Sample;

/// What a point of a [`Bounded`] series is made of when two merge.
pub trait Coarsen: Clone + Default {
    /// One point for `self`, covering `w` samples, followed by `later`, covering `wl`.
    fn coarsen(&self, w: u32, later: &Self, wl: u32) -> Self;
}

/// A time series of at most `capacity` points (see the module docs).
#[derive(Debug)]
pub struct Bounded<T> {
    /// Preallocated; the first `len` are the points, each with the samples it covers.
    points: Vec<(T, u32)>,
    len: usize,
    /// Samples per complete point.
    stride: u32,
    /// The samples since the last complete point, merged.
    pending: Option<(T, u32)>,
}

impl<T: Coarsen> Bounded<T> {
    /// An empty series of at most `capacity` points (at least 2; an odd one is rounded down).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(2) & !1;
        Bounded {
            points: vec![(T::default(), 0); capacity],
            len: 0,
            stride: 1,
            pending: None,
        }
    }

    /// Adds the next sample.
    pub fn push(&mut self, sample: T) {
        let (point, n) = match self.pending.take() {
            Some((p, n)) => (p.coarsen(n, &sample, 1), n + 1),
            None => (sample, 1),
        };
        if n < self.stride {
            self.pending = Some((point, n));
            return;
        }
        if self.len == self.points.len() {
            self.halve();
            // The point covers the old stride: half of a point now.
            self.pending = Some((point, n));
            return;
        }
        self.points[self.len] = (point, n);
        self.len += 1;
    }

    /// Merges neighbours pairwise: half the points, each covering twice the samples.
    fn halve(&mut self) {
        for i in 0..self.len / 2 {
            let ((a, wa), (b, wb)) = (&self.points[2 * i], &self.points[2 * i + 1]);
            self.points[i] = (a.coarsen(*wa, b, *wb), wa + wb);
        }
        self.len /= 2;
        self.stride *= 2;
    }

    /// Samples per complete point: 1 until the series first filled up.
    #[cfg(test)]
    pub fn stride(&self) -> u32 {
        self.stride
    }

    /// The points, the last one possibly covering fewer samples than the others.
    pub fn to_vec(&self) -> Vec<T> {
        self.points[..self.len]
            .iter()
            .chain(self.pending.as_ref())
            .map(|(p, _)| p.clone())
            .collect()
    }
}

impl Coarsen for Sample {
    fn coarsen(&self, w: u32, later: &Self, wl: u32) -> Self {
        let (w, wl) = (f64::from(w), f64::from(wl));
        let mean = |a: f64, b: f64| (a * w + b * wl) / (w + wl);
        // Every field named, so a new field has to say how it merges.
        Sample {
            t: later.t,
            target_rate: mean(self.target_rate, later.target_rate),
            generated_rate: mean(self.generated_rate, later.generated_rate),
            delivered_rate: mean(self.delivered_rate, later.delivered_rate),
            writes_rate: mean(self.writes_rate, later.writes_rate),
            queue_depth: self.queue_depth.max(later.queue_depth),
            queue_bytes: self.queue_bytes.max(later.queue_bytes),
            source_backlog: self.source_backlog.max(later.source_backlog),
            lag: self.lag.max(later.lag),
            rss_bytes: self.rss_bytes.max(later.rss_bytes),
            dropped: later.dropped,
            // The p99 of two periods together is at most the larger of their p99s.
            p99_ms: self.p99_ms.max(later.p99_ms),
            signal_rate: mean(self.signal_rate, later.signal_rate),
            concurrency_limit: later.concurrency_limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, rate: f64, lag: u64, dropped: u64) -> Sample {
        Sample {
            t,
            delivered_rate: rate,
            lag,
            dropped,
            p99_ms: lag as f64,
            ..Sample::default()
        }
    }

    #[test]
    fn it_keeps_every_sample_until_full_then_never_more_than_its_capacity() {
        let mut s = Bounded::new(8);
        for i in 0..8 {
            s.push(at(f64::from(i), 1.0, i as u64, i as u64));
        }
        assert_eq!((s.to_vec().len(), s.stride()), (8, 1));
        for i in 8..10_000 {
            s.push(at(f64::from(i), 1.0, i as u64, i as u64));
            assert!(s.to_vec().len() <= 9, "at {i}: {}", s.to_vec().len());
        }
        assert!(s.stride() >= 1024, "{}", s.stride());
        // The last sample stays visible, in the last point.
        assert_eq!(s.to_vec().last().map(|x| x.t), Some(9_999.0));
        assert_eq!(s.to_vec().last().map(|x| x.dropped), Some(9_999));
    }

    #[test]
    fn coarse_points_keep_peaks_totals_and_mean_rates() {
        let mut s = Bounded::new(4);
        // 64 samples: rate 10 for the first half, 30 for the second; one lag spike at 37.
        for i in 0..64u64 {
            let rate = if i < 32 { 10.0 } else { 30.0 };
            let lag = if i == 37 { 1_000 } else { i };
            s.push(at(i as f64, rate, lag, i * 2));
        }
        let points = s.to_vec();
        assert!(points.len() <= 5, "{}", points.len());
        let max_lag = points.iter().map(|p| p.lag).max();
        assert_eq!(max_lag, Some(1_000), "the spike survives");
        let max_p99 = points.iter().map(|p| p.p99_ms).fold(0.0, f64::max);
        assert_eq!(max_p99, 1_000.0);
        assert_eq!(points.last().map(|p| (p.t, p.dropped)), Some((63.0, 126)));
        // Complete points cover equal numbers of samples: their mean is the samples' mean.
        let full = &points[..points.len().min(4)];
        let mean = full.iter().map(|p| p.delivered_rate).sum::<f64>() / full.len() as f64;
        assert_eq!(mean, 20.0);
    }

    #[test]
    fn a_weighted_merge_is_the_mean_of_what_it_covers() {
        let a = at(1.0, 10.0, 5, 1);
        let b = at(2.0, 40.0, 3, 2);
        let m = a.coarsen(2, &b, 1);
        assert_eq!((m.t, m.delivered_rate, m.lag, m.dropped), (2.0, 20.0, 5, 2));
    }
}
