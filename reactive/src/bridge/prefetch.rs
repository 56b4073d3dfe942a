use crate::demand::UNBOUNDED;

/// How much a consumer requests ahead, and when it asks for more.
///
/// The consumer requests `window` items up front. Each time it has consumed
/// `ceil(window × replenish)` of them it requests that many again, so at most `window` items are
/// ever outstanding. The default (256 items, replenish at 75%) follows Reactor's `limitRate`.
///
/// ```
/// use reactive::Prefetch;
/// let p = Prefetch::new(100).replenish_at(0.5);
/// assert_eq!(p.window(), 100);
/// assert_eq!(p.batch(), 50);
/// assert_eq!(Prefetch::new(1).batch(), 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prefetch {
    window: u64,
    replenish: f64,
}

impl Default for Prefetch {
    fn default() -> Self {
        Prefetch {
            window: 256,
            replenish: 0.75,
        }
    }
}

impl Prefetch {
    /// A window of `window` items (at least 1), replenished at 75%.
    pub fn new(window: u64) -> Self {
        Prefetch {
            window: window.clamp(1, UNBOUNDED),
            ..Self::default()
        }
    }

    /// Requests unbounded demand once and never again: the consumer no longer bounds the
    /// producer. This is the "unbounded buffer" end of the design space.
    pub fn unbounded() -> Self {
        Prefetch {
            window: UNBOUNDED,
            replenish: 1.0,
        }
    }

    /// Requests nothing by itself: the consumer calls [`Inbox::request`](crate::Inbox::request).
    /// For operators that compute their own demand.
    pub fn manual() -> Self {
        Prefetch {
            window: 0,
            replenish: 1.0,
        }
    }

    /// Whether requests are left to the consumer.
    pub fn is_manual(&self) -> bool {
        self.window == 0
    }

    /// Replenishes after this fraction of the window is consumed, clamped to `(0, 1]`.
    /// Smaller fractions mean more, smaller requests; `1.0` waits until the window is empty.
    pub fn replenish_at(self, fraction: f64) -> Self {
        let replenish = if fraction.is_nan() {
            0.75
        } else {
            fraction.clamp(f64::MIN_POSITIVE, 1.0)
        };
        Prefetch { replenish, ..self }
    }

    /// The window: the most items ever requested and not yet consumed.
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The size of each replenishing request.
    pub fn batch(&self) -> u64 {
        if self.window == 0 {
            return 0;
        }
        ((self.window as f64 * self.replenish).ceil() as u64).clamp(1, self.window)
    }

    /// Whether this prefetch requests unbounded demand.
    pub fn is_unbounded(&self) -> bool {
        self.window >= UNBOUNDED
    }
}
