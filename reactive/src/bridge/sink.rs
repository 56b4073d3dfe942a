use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_sink::Sink;
use pin_project_lite::pin_project;

use super::{Inbox, InboxSubscriber, Prefetch, inbox};
use crate::Error;

/// Makes a subscriber from a [`Sink`]: returns the subscriber to connect to a publisher, and the
/// driver future that feeds the sink. Spawn or await the driver.
///
/// The subscriber requests `prefetch.window()` items, and more only as the sink accepts them, so
/// a slow sink slows the publisher and no more than the window is ever buffered. The driver ends
/// with `Ok(())` once the publisher completes and the sink is closed, or with the first error of
/// either side (a sink error cancels the subscription).
///
/// ```
/// use reactive::{Prefetch, Publisher};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tx, rx) = futures::channel::mpsc::unbounded::<u32>();
/// let (subscriber, driver) = reactive::from_sink(tx, Prefetch::new(8));
/// let connection = reactive::iter(0..100).connect(subscriber);
/// let (_, result) = futures::join!(connection, driver);
/// result.unwrap();
/// use futures::StreamExt;
/// assert_eq!(rx.collect::<Vec<_>>().await.len(), 100);
/// # }
/// ```
pub fn from_sink<T, Si>(sink: Si, prefetch: Prefetch) -> (InboxSubscriber<T>, SinkDriver<Si, T>)
where
    Si: Sink<T>,
    Si::Error: std::error::Error + Send + Sync + 'static,
{
    let (subscriber, inbox) = inbox(prefetch);
    (
        subscriber,
        SinkDriver {
            sink,
            inbox,
            closing: None,
        },
    )
}

pin_project! {
    /// Feeds a sink from its [`from_sink`] subscriber.
    #[must_use = "the sink is fed only while the driver is polled"]
    #[derive(Debug)]
    pub struct SinkDriver<Si, T> {
        #[pin]
        sink: Si,
        inbox: Inbox<T>,
        // Set once the input ended: the result to report after the sink is closed.
        closing: Option<Result<(), Error>>,
    }
}

impl<Si, T> Future for SinkDriver<Si, T>
where
    Si: Sink<T>,
    Si::Error: std::error::Error + Send + Sync + 'static,
{
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(end) = this.closing {
                let closed = ready!(this.sink.as_mut().poll_close(cx)).map_err(Error::sink);
                // An upstream failure outranks a failure to close.
                return Poll::Ready(std::mem::replace(end, Ok(())).and(closed));
            }
            if let Err(e) = ready!(this.sink.as_mut().poll_ready(cx)) {
                this.inbox.cancel();
                return Poll::Ready(Err(Error::sink(e)));
            }
            match this.inbox.poll_recv(cx) {
                Poll::Ready(Some(Ok(item))) => {
                    if let Err(e) = this.sink.as_mut().start_send(item) {
                        this.inbox.cancel();
                        return Poll::Ready(Err(Error::sink(e)));
                    }
                }
                // Deliver what was accepted before reporting the upstream failure.
                Poll::Ready(Some(Err(upstream))) => *this.closing = Some(Err(upstream)),
                Poll::Ready(None) => *this.closing = Some(Ok(())),
                Poll::Pending => {
                    if let Err(e) = ready!(this.sink.as_mut().poll_flush(cx)) {
                        this.inbox.cancel();
                        return Poll::Ready(Err(Error::sink(e)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}
