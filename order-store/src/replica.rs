//! Reading from a read replica without going back in time.
//!
//! A replica replays the primary's WAL in commit order, so what it shows only moves forward,
//! and a subscription's checkpoint arrives there in the same transaction as the rows it
//! covers. A read that must reflect at least a given position of the log (read-your-writes)
//! is therefore safe on a replica when one connection first sees that position reached and
//! then reads: both statements run on the same server, which cannot have moved backwards in
//! between. Two connections of a pool may lead to two replicas (a reader endpoint balances
//! them) that are not equally far; the check and the read never use different connections.

use std::time::Duration;

use deadpool_postgres::Object;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::Error;
use crate::event::RecordedEvent;
use crate::store::{EventStore, StreamSlice};

/// The pauses between a wait's looks at the database: from 5 ms, twice as long each time, to
/// 100 ms. A wait that ends soon (the usual case) answers within a few milliseconds of it; one
/// that lasts (a replica that is behind, a projector that is down) costs a few queries a
/// second, not hundreds, and such waits come in numbers exactly when the database is in
/// trouble (every read-your-writes call waits, and its client retries).
///
/// ```
/// # async fn example() {
/// let give_up = tokio::time::Instant::now() + std::time::Duration::from_millis(50);
/// let mut pauses = order_store::Pauses::default();
/// while tokio::time::Instant::now() < give_up {
///     // look at the database here
///     pauses.sleep(give_up).await;
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Pauses {
    next: Duration,
}

impl Pauses {
    const FIRST: Duration = Duration::from_millis(5);
    const LONGEST: Duration = Duration::from_millis(100);

    /// Sleep for the next pause, at most until `give_up`.
    pub async fn sleep(&mut self, give_up: Instant) {
        tokio::time::sleep(self.next_within(give_up)).await;
        self.advance();
    }

    /// The next pause, at most until `give_up`.
    fn next_within(&self, give_up: Instant) -> Duration {
        self.next
            .min(give_up.saturating_duration_since(Instant::now()))
    }

    /// Go on to the pause after the next.
    fn advance(&mut self) {
        self.next = (self.next * 2).min(Self::LONGEST);
    }
}

impl Default for Pauses {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// What a position must have reached on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    /// The log holds the event at the position.
    Log,
    /// The subscription of this name has applied the event at the position: the server holds
    /// the event and the subscription's checkpoint is at or past its cursor. Without the event
    /// the answer is "not reached", whatever the checkpoint: on a replica the event may be
    /// committed on the primary and not replayed yet, and a checkpoint's position says nothing
    /// about the events before it in cursor order (checkpoints are ordered by transaction id
    /// first). A position the log never used is therefore never reached here; the caller
    /// gives up and asks the primary.
    Subscription(&'a str),
}

const LOG_REACHED_SQL: &str =
    "SELECT EXISTS (SELECT 1 FROM orders.events WHERE global_position = $1), 0::int8";

const SUBSCRIPTION_REACHED_SQL: &str = "
SELECT e.global_position IS NOT NULL
         AND (coalesce(s.checkpoint_xid, '0'::xid8), coalesce(s.checkpoint_position, 0))
             >= (e.transaction_id, e.global_position),
       coalesce(s.checkpoint_position, 0)
FROM (SELECT 1) AS one
LEFT JOIN orders.subscriptions s ON s.name = $2
LEFT JOIN orders.events e ON e.global_position = $1";

impl EventStore {
    /// A pooled connection to a server whose data has reached `position` as `reach` says,
    /// waiting (asking again after each of [`Pauses`], on that one connection) until `give_up`.
    /// `Ok(Err(at))` when it had not by then: `at` is how far it was (the subscription's
    /// checkpoint position; 0 for [`Reach::Log`], or when no look was made). Reads made on the
    /// connection afterwards see at least that state.
    ///
    /// A pool with no connection free for it (all in use: held by other such waits, as when a
    /// projector is down, or by other reads) is "not reached yet", never an error: the wait
    /// queues for a connection one pause at a time (see [`Pauses`]) until `give_up`. A
    /// connection that cannot be opened is an error.
    pub async fn connection_reaching(
        &self,
        position: u64,
        reach: Reach<'_>,
        give_up: Instant,
    ) -> Result<Result<Object, u64>, Error> {
        self.connection_reaching_if(position, reach, give_up, &mut || true)
            .await
    }

    /// [`EventStore::connection_reaching`], asking `may_wait` once, when the first look finds
    /// the position not reached or no pooled connection is free for it: `false` gives up at
    /// once (`Ok(Err(at))`), as if `give_up` had come. A caller that counts what waits (a
    /// service's limit on waiting reads) takes its place there only when a read really waits.
    pub async fn connection_reaching_if(
        &self,
        position: u64,
        reach: Reach<'_>,
        give_up: Instant,
        may_wait: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Result<Object, u64>, Error> {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        let mut pauses = Pauses::default();
        let mut asked = false;
        // A busy pool is waited out like a position not reached, and is no error (the server
        // is fine): the read queues for a connection for one pause at a time (the first, 5 ms,
        // under what the caller holds before `may_wait` is asked; then up to 100 ms at a time,
        // in the pool's queue beside the other reads, until `give_up`).
        let client = loop {
            let wait = pauses.next_within(give_up);
            if let Some(client) = self.timed(self.connection_within(wait)).await? {
                break client;
            }
            if Instant::now() >= give_up || !(asked || may_wait()) {
                return Ok(Err(0));
            }
            asked = true;
            pauses.advance();
        };
        loop {
            let (reached, at) = self
                .timed(async {
                    let row = match reach {
                        Reach::Log => {
                            let statement = client.prepare_cached(LOG_REACHED_SQL).await?;
                            client.query_one(&statement, &[&position]).await?
                        }
                        Reach::Subscription(name) => {
                            let statement = client.prepare_cached(SUBSCRIPTION_REACHED_SQL).await?;
                            client.query_one(&statement, &[&position, &name]).await?
                        }
                    };
                    Ok((row.try_get::<_, bool>(0)?, row.try_get::<_, i64>(1)?))
                })
                .await?;
            if reached {
                return Ok(Ok(client));
            }
            if Instant::now() >= give_up || !(asked || may_wait()) {
                return Ok(Err(u64::try_from(at).unwrap_or(0)));
            }
            asked = true;
            pauses.sleep(give_up).await;
        }
    }

    /// A stream's events after `after_version`, from a server whose log holds the event at
    /// `min_position` (see [`EventStore::connection_reaching`]); `Ok(None)` when the server had
    /// not replayed that far (or no pooled connection was free) by `give_up`.
    pub async fn read_stream_reaching(
        &self,
        stream_id: Uuid,
        after_version: u64,
        min_position: u64,
        give_up: Instant,
    ) -> Result<Option<Vec<RecordedEvent>>, Error> {
        let Ok(client) = self
            .connection_reaching(min_position, Reach::Log, give_up)
            .await?
        else {
            return Ok(None);
        };
        self.timed(crate::store::read_stream(&client, stream_id, after_version))
            .await
            .map(Some)
    }

    /// [`EventStore::read_stream_slice`] from a server whose log holds the event at
    /// `min_position`; `Ok(None)` when the server had not replayed that far (or no pooled
    /// connection was free) by `give_up`, or when it had not at first and `may_wait` said not
    /// to wait (see [`EventStore::connection_reaching_if`]).
    pub async fn read_stream_slice_reaching(
        &self,
        stream_id: Uuid,
        after_version: u64,
        limit: Option<u32>,
        min_position: u64,
        give_up: Instant,
        may_wait: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Option<StreamSlice>, Error> {
        let Ok(client) = self
            .connection_reaching_if(min_position, Reach::Log, give_up, may_wait)
            .await?
        else {
            return Ok(None);
        };
        self.timed(crate::store::read_stream_slice(
            &client,
            stream_id,
            after_version,
            limit,
        ))
        .await
        .map(Some)
    }
}
