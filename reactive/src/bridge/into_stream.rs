use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use pin_project_lite::pin_project;

use super::{Inbox, InboxSubscriber, Prefetch, inbox};
use crate::{Error, Publisher};

pin_project! {
    /// A publisher as a [`Stream`] of `Result<Item, Error>`. See
    /// [`PublisherExt::into_stream`](crate::PublisherExt::into_stream).
    ///
    /// The connection is polled by the stream itself, in the caller's task, and only when the
    /// stream has nothing left to yield; demand is replenished by the [`Prefetch`] rule as items
    /// are taken. For a stream whose publisher runs in another task, see
    /// [`PublisherExt::spawn_stream`](crate::PublisherExt::spawn_stream).
    #[must_use = "streams do nothing unless polled"]
    pub struct IntoStream<P: Publisher> {
        #[pin]
        connection: Option<P::Connection<InboxSubscriber<P::Item>>>,
        inbox: Inbox<P::Item>,
    }
}

impl<P: Publisher> IntoStream<P> {
    pub(crate) fn new(publisher: P, prefetch: Prefetch) -> Self {
        let (subscriber, inbox) = inbox(prefetch);
        IntoStream {
            connection: Some(publisher.connect(subscriber)),
            inbox,
        }
    }
}

impl<P: Publisher> std::fmt::Debug for IntoStream<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntoStream")
            .field("connected", &self.connection.is_some())
            .finish()
    }
}

impl<P: Publisher> Stream for IntoStream<P> {
    type Item = Result<P::Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if let Some(item) = this.inbox.pop_local() {
            return Poll::Ready(Some(Ok(item)));
        }
        if let Some(connection) = this.connection.as_mut().as_pin_mut() {
            if connection.poll(cx).is_ready() {
                this.connection.set(None);
            }
        }
        this.inbox.poll_recv(cx)
    }
}
