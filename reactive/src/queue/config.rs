//! The queue's configuration: its capacity semantics and what it does with the excess.

use std::sync::Arc;

use super::Overflow;

/// Capacity semantics. See the [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// At most this many items.
    Bounded(usize),
    /// No limit, or a safety cap that ends the stream with an error instead of an OOM kill.
    Unbounded {
        /// The most items held before the stream ends with [`Error::Overflow`](crate::Error::Overflow).
        safety_cap: Option<usize>,
    },
    /// No buffer: demand passes straight through.
    Pull,
}

type Weigh<T> = Arc<dyn Fn(&T) -> u64 + Send + Sync>;
type Classify<T> = Arc<dyn Fn(&T) -> u8 + Send + Sync>;

/// How a [`Queue`](super::Queue) behaves.
pub struct QueueConfig<T> {
    pub(crate) mode: Mode,
    pub(crate) overflow: Overflow,
    pub(crate) weigh: Option<Weigh<T>>,
    pub(crate) priority: Option<Classify<T>>,
}

impl<T> Clone for QueueConfig<T> {
    fn clone(&self) -> Self {
        QueueConfig {
            mode: self.mode,
            overflow: self.overflow.clone(),
            weigh: self.weigh.clone(),
            priority: self.priority.clone(),
        }
    }
}

impl<T> std::fmt::Debug for QueueConfig<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueConfig")
            .field("mode", &self.mode)
            .field("overflow", &self.overflow)
            .finish()
    }
}

impl<T> QueueConfig<T> {
    /// A queue of at most `capacity` items (at least 1) that blocks the source when full.
    pub fn bounded(capacity: usize) -> Self {
        Self::new(Mode::Bounded(capacity.max(1)))
    }

    /// A queue without limit: the source is never slowed.
    pub fn unbounded() -> Self {
        Self::new(Mode::Unbounded { safety_cap: None })
    }

    /// No buffer: downstream demand goes straight upstream.
    pub fn pull() -> Self {
        Self::new(Mode::Pull)
    }

    /// The queue for a [`Mode`].
    pub fn new(mode: Mode) -> Self {
        QueueConfig {
            mode,
            overflow: Overflow::Block,
            weigh: None,
            priority: None,
        }
    }

    /// For an unbounded queue: end the stream with [`Error::Overflow`](crate::Error::Overflow)
    /// (and cancel the source) once this many items are queued, instead of growing until the OOM
    /// killer ends the process.
    pub fn safety_cap(mut self, cap: usize) -> Self {
        if let Mode::Unbounded { safety_cap } = &mut self.mode {
            *safety_cap = Some(cap.max(1));
        }
        self
    }

    /// For a bounded queue: what to do when full (default [`Overflow::Block`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How many bytes an item weighs, for the byte depth (default: its `size_of`).
    pub fn weigh(mut self, f: impl Fn(&T) -> u64 + Send + Sync + 'static) -> Self {
        self.weigh = Some(Arc::new(f));
        self
    }

    /// An item's priority class, for [`Overflow::Priority`] (default 0 for all).
    pub fn priority(mut self, f: impl Fn(&T) -> u8 + Send + Sync + 'static) -> Self {
        self.priority = Some(Arc::new(f));
        self
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub(crate) fn weight(&self, item: &T) -> u64 {
        match &self.weigh {
            Some(f) => f(item),
            None => std::mem::size_of::<T>() as u64,
        }
    }

    /// The weight of all of `items`.
    pub(crate) fn weight_all(&self, items: &[T]) -> u64 {
        match &self.weigh {
            Some(f) => items.iter().map(|item| f(item)).sum(),
            None => std::mem::size_of_val(items) as u64,
        }
    }

    pub(crate) fn class(&self, item: &T) -> u8 {
        self.priority.as_ref().map_or(0, |f| f(item))
    }
}
