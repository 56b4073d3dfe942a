//! Shared by the behaviour tests.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use reactive::{Error, Subscriber, Subscription};

/// A subscriber that requests only on cue, like tower-test's `handle.allow(n)`, and keeps what
/// it receives. Clones share state, so a test keeps one and connects the other.
#[derive(Debug)]
pub struct Scripted<T> {
    pub subscription: Arc<Mutex<Option<Subscription>>>,
    pub received: Arc<Mutex<Vec<T>>>,
}

impl<T> Default for Scripted<T> {
    fn default() -> Self {
        Scripted {
            subscription: Arc::default(),
            received: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

impl<T> Clone for Scripted<T> {
    fn clone(&self) -> Self {
        Scripted {
            subscription: self.subscription.clone(),
            received: self.received.clone(),
        }
    }
}

impl<T> Subscriber<T> for Scripted<T> {
    fn on_subscribe(&mut self, s: Subscription) {
        *self.subscription.lock().unwrap() = Some(s);
    }
    fn on_next(&mut self, item: T) {
        self.received.lock().unwrap().push(item);
    }
    fn on_error(&mut self, _: Error) {}
    fn on_complete(&mut self) {}
}

impl<T: Clone> Scripted<T> {
    /// Requests `n` more.
    pub fn allow(&self, n: u64) {
        self.subscription
            .lock()
            .unwrap()
            .as_ref()
            .expect("subscribed")
            .request(n);
    }

    /// Cancels.
    pub fn cancel(&self) {
        self.subscription
            .lock()
            .unwrap()
            .as_ref()
            .expect("subscribed")
            .cancel();
    }

    /// How many items arrived.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// A copy of what arrived.
    pub fn items(&self) -> Vec<T> {
        self.received.lock().unwrap().clone()
    }
}
