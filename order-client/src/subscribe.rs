//! SubscribeEvents as a `futures::Stream` that survives disconnects.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use order_proto::v1 as pb;
use order_proto::v1::subscribe_events_request::Start as PbStart;
use tonic::codec::Streaming;
use tonic::{Response, Status};

use crate::client::Client;
use crate::error::Error;
use crate::retry::{CallKind, retryable};

type Opening = Pin<Box<dyn Future<Output = Result<Response<Streaming<pb::Event>>, Status>> + Send>>;

/// Where a subscription starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The first event of the log.
    Beginning,
    /// The first event whose global position is greater than this.
    AfterPosition(u64),
    /// Exactly after the event with this cursor (an earlier event's `cursor`).
    AfterCursor(String),
}

impl Start {
    fn message(&self) -> pb::SubscribeEventsRequest {
        pb::SubscribeEventsRequest {
            start: match self {
                Self::Beginning => None,
                Self::AfterPosition(position) => Some(PbStart::AfterPosition(*position)),
                Self::AfterCursor(cursor) => Some(PbStart::AfterCursor(cursor.clone())),
            },
        }
    }
}

/// The default number of consecutive failed (re)connection attempts after which an
/// [`EventStream`] gives up: no limit by count (`u32::MAX`); unless
/// [`max_reconnects`](EventStream::max_reconnects) is set, the time limit
/// [`DEFAULT_RECONNECT_FOR`] ends a run of failures instead.
pub const DEFAULT_MAX_RECONNECTS: u32 = u32::MAX;

/// How long, by default, an [`EventStream`] keeps trying to subscribe again without a
/// subscription that worked before it gives up: a minute, to outlast a service restart or a
/// deploy. Only the default: a stream given [`max_reconnects`](EventStream::max_reconnects)
/// and no [`reconnect_for`](EventStream::reconnect_for) has no time limit.
pub const DEFAULT_RECONNECT_FOR: Duration = Duration::from_secs(60);

/// The global event log, from a [`Start`], then live: every event once, in the log's gap-safe
/// order, across disconnects.
///
/// When the call fails in a way worth another try (the service restarting or shutting down,
/// a dropped connection, UNAVAILABLE, RESOURCE_EXHAUSTED), the stream waits (the client's
/// backoff) and subscribes again exactly after the cursor of the last event it yielded, so
/// nothing is skipped and nothing repeated. The waits grow as the client's
/// [`RetryPolicy::backoff`](crate::RetryPolicy::backoff) says (by default up to 2 s).
///
/// A run of consecutive failures (attempts that did not get a subscription open, or whose
/// subscription the server ended with an error before any event, within 10 s: a server that opens
/// the call and then cannot read its log) ends when a subscription works: it yields an event, lasts
/// 10 s, or is cut by the connection. The stream gives up, yielding the last error and ending, when
/// a run has lasted [`reconnect_for`](Self::reconnect_for) or counted
/// [`max_reconnects`](Self::max_reconnects) failures, whichever comes first, as far as each is set;
/// with neither set, after [`DEFAULT_RECONNECT_FOR`] (60 s: the service down or unreachable for a
/// minute), with no limit by count; and at once for an error that another try cannot mend
/// (UNAUTHENTICATED, INVALID_ARGUMENT, a service certificate the client's TLS settings reject,
/// ...). Among those: FAILED_PRECONDITION with the ErrorInfo reason `CURSOR_NOT_IN_LOG`, when
/// the event it would resume after is no longer in the log (a failover to an asynchronous
/// standby or a restore lost it): subscribe again with [`Start::AfterPosition`] at a position
/// the log holds, and expect events seen before.
///
/// order-grpc caps SubscribeEvents streams: by default 8 per client (its token's name, else
/// its IP address) and 64 in all (docs/security.md, limits). A stream over the cap is
/// answered RESOURCE_EXHAUSTED, which this stream, like any saturation, tries again as above:
/// it yields nothing meanwhile ([`EventStream::is_subscribed`] says so). Share one stream in a
/// process rather than open one per task.
///
/// ```no_run
/// # async fn run(client: order_client::Client) -> Result<(), order_client::Error> {
/// use futures::StreamExt;
/// use order_client::Start;
///
/// let mut events = client
///     .subscribe_events(Start::AfterPosition(0))
///     .reconnect_for(std::time::Duration::from_secs(600));
/// while let Some(event) = events.next().await {
///     let event = event?;
///     println!("{} {} v{}", event.global_position, event.event_type, event.stream_version);
/// }
/// # Ok(()) }
/// ```
pub struct EventStream {
    client: Client,
    resume: Start,
    /// The limit by count, when set.
    max_reconnects: Option<u32>,
    /// The limit by time, when set.
    reconnect_for: Option<Duration>,
    failures: u32,
    /// When the current run of failures began (its first failure).
    failing_since: Option<Instant>,
    reconnects: u64,
    /// When the open subscription opened.
    opened_at: Option<Instant>,
    /// The correlation id of the latest subscription call.
    correlation_id: String,
    state: State,
}

enum State {
    Idle,
    Opening(Opening),
    Open(Box<Streaming<pb::Event>>),
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Done,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("resume", &self.resume)
            .field("max_reconnects", &self.max_reconnects)
            .field("reconnect_for", &self.reconnect_for)
            .field("failures", &self.failures)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    /// Give up after this many consecutive failed attempts to (re)subscribe (`u32::MAX`:
    /// never), or sooner when a [`reconnect_for`](Self::reconnect_for) set as well runs out.
    /// Set alone, it is the only limit: the default time limit no longer applies.
    pub fn max_reconnects(mut self, attempts: u32) -> Self {
        self.max_reconnects = Some(attempts);
        self
    }

    /// Give up once a run of consecutive failures has lasted this long, counted from its first
    /// failure, without a subscription that worked (`Duration::MAX`: never; with neither limit set,
    /// [`DEFAULT_RECONNECT_FOR`], 60 s), or sooner when a [`max_reconnects`](Self::max_reconnects)
    /// set as well is reached. The stream tolerates the service being down or unreachable for about
    /// this long.
    pub fn reconnect_for(mut self, limit: Duration) -> Self {
        self.reconnect_for = Some(limit);
        self
    }

    /// The limits in force: (by count, by time).
    fn limits(&self) -> (u32, Duration) {
        match (self.max_reconnects, self.reconnect_for) {
            (None, None) => (DEFAULT_MAX_RECONNECTS, DEFAULT_RECONNECT_FOR),
            (count, time) => (count.unwrap_or(u32::MAX), time.unwrap_or(Duration::MAX)),
        }
    }

    /// Where the next subscription would start: after the last event yielded, or the start
    /// it was made with. Keep it to resume in another process.
    pub fn resume_point(&self) -> &Start {
        &self.resume
    }

    /// Whether a subscription is open now (false before the first poll, while subscribing,
    /// while waiting to try again, and once the stream has ended).
    pub fn is_subscribed(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// How many times the stream subscribed again after a failure.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    fn open(&mut self) -> Opening {
        self.correlation_id = self.client.correlation_id();
        // No deadline: the call lasts as long as the subscription.
        let request = self
            .client
            .request(self.resume.message(), &self.correlation_id, None);
        let mut queries = self.client.queries();
        Box::pin(async move { queries.subscribe_events(request).await })
    }

    /// Whether the open subscription has been open long enough to count as working.
    fn lasted(&self) -> bool {
        self.opened_at
            .is_some_and(|at| at.elapsed() >= Duration::from_secs(10))
    }

    /// A subscription worked: the run of failures, if any, is over.
    fn succeeded(&mut self) {
        self.failures = 0;
        self.failing_since = None;
    }

    /// After a failure: wait and try again, or yield the error and end.
    fn failed(&mut self, status: Status) -> Option<Error> {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        let (max_reconnects, reconnect_for) = self.limits();
        if retryable(&status, CallKind::Idempotent)
            && self.failures < max_reconnects
            && since.elapsed() < reconnect_for
        {
            self.failures += 1;
            self.reconnects += 1;
            let wait = self.client.retry_policy().backoff(self.failures);
            tracing::debug!(
                code = ?status.code(),
                message = status.message(),
                failures = self.failures,
                ?wait,
                resume = ?self.resume,
                "event subscription interrupted, resuming"
            );
            self.state = State::Waiting(Box::pin(tokio::time::sleep(wait)));
            None
        } else {
            self.state = State::Done;
            Some(Error::Rpc {
                status: Box::new(status),
                attempts: self.failures.saturating_add(1),
                correlation_id: self.correlation_id.clone(),
            })
        }
    }
}

impl Stream for EventStream {
    type Item = Result<pb::Event, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Idle => {
                    let opening = this.open();
                    this.state = State::Opening(opening);
                }
                State::Opening(opening) => match opening.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(response)) => {
                        // Subscribed; whether that ends the run of failures is known when the
                        // subscription ends (`Open` below).
                        this.opened_at = Some(Instant::now());
                        this.state = State::Open(Box::new(response.into_inner()));
                    }
                    Poll::Ready(Err(status)) => {
                        if let Some(error) = this.failed(status) {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
                State::Open(events) => match events.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(event))) => {
                        this.succeeded();
                        this.resume = Start::AfterCursor(event.cursor.clone());
                        return Poll::Ready(Some(Ok(event)));
                    }
                    Poll::Ready(Some(Err(status))) => {
                        // A subscription cut by the connection, or that lasted, was a
                        // success: the failures so far are behind us (as gRPC's own
                        // connection backoff resets once a connection is ready), so a stream
                        // on a quiet log survives any number of separate interruptions. An
                        // error the server sent at once, before any event, is one more
                        // failure in the run: its backoff grows and the limit holds.
                        if std::error::Error::source(&status).is_some() || this.lasted() {
                            this.succeeded();
                        }
                        if let Some(error) = this.failed(status) {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                    Poll::Ready(None) => {
                        // The log never ends: a stream that does was cut short.
                        this.succeeded();
                        let status = Status::unavailable("the event stream ended");
                        if let Some(error) = this.failed(status) {
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                },
                State::Waiting(sleep) => match sleep.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => this.state = State::Idle,
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl Client {
    /// SubscribeEvents from `start`, resuming after disconnects (see [`EventStream`]).
    pub fn subscribe_events(&self, start: Start) -> EventStream {
        EventStream {
            client: self.clone(),
            resume: start,
            max_reconnects: None,
            reconnect_for: None,
            failures: 0,
            failing_since: None,
            reconnects: 0,
            opened_at: None,
            correlation_id: String::new(),
            state: State::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_limit_set_alone_is_the_only_limit() {
        let client = match Client::builder().endpoint("http://127.0.0.1:1").build() {
            Ok(client) => client,
            Err(error) => panic!("{error}"),
        };
        let stream = || client.subscribe_events(Start::AfterPosition(0));
        assert_eq!(
            stream().limits(),
            (u32::MAX, DEFAULT_RECONNECT_FOR),
            "by default a minute, no count"
        );
        assert_eq!(
            stream().max_reconnects(10_000).limits(),
            (10_000, Duration::MAX),
            "a count set alone is not cut to a minute"
        );
        assert_eq!(
            stream().reconnect_for(Duration::from_secs(5)).limits(),
            (u32::MAX, Duration::from_secs(5))
        );
        assert_eq!(
            stream()
                .max_reconnects(3)
                .reconnect_for(Duration::from_secs(5))
                .limits(),
            (3, Duration::from_secs(5))
        );
    }
}
