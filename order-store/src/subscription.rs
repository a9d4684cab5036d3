//! Subscriptions: a named checkpoint over the gap-safe log, and the lease that makes exactly
//! one live instance its writer.
//!
//! An instance acquires the lease (which increments the lease token), renews it while it
//! works, and advances the checkpoint only in a statement that names the token it holds. A
//! stale owner (paused, partitioned, or preempted by an operator) finds its token gone: its
//! checkpoint write changes nothing and its transaction rolls back. This works through
//! connection poolers (no session state), unlike session advisory locks.

use std::time::{Duration, SystemTime};

use deadpool_postgres::Transaction;

use crate::error::Error;
use crate::store::EventStore;
use crate::xid::{Cursor, Xid8};

/// The right to advance one subscription's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The subscription's name.
    pub subscription: String,
    /// Who holds it.
    pub owner: String,
    /// Increased by every acquisition: the fence of checkpoint writes.
    pub token: i64,
}

/// A subscription as the database records it.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionState {
    /// The subscription's name.
    pub name: String,
    /// How far it is.
    pub checkpoint: Cursor,
    /// Who holds its lease (possibly expired).
    pub owner: Option<String>,
    /// The current lease token.
    pub lease_token: i64,
    /// When the lease runs out.
    pub lease_expires_at: Option<SystemTime>,
    /// Events applied since it began.
    pub events_processed: u64,
    /// When the last applied event was recorded.
    pub last_event_at: Option<SystemTime>,
    /// The last error, cleared by the next checkpoint.
    pub last_error: Option<String>,
    /// When it happened.
    pub last_error_at: Option<SystemTime>,
    /// When the row last changed.
    pub updated_at: SystemTime,
}

const STATE_COLUMNS: &str = "name, checkpoint_xid, checkpoint_position, owner, lease_token, \
    lease_expires_at, events_processed, last_event_at, last_error, last_error_at, updated_at";

fn state(row: &tokio_postgres::Row) -> Result<SubscriptionState, tokio_postgres::Error> {
    Ok(SubscriptionState {
        name: row.try_get(0)?,
        checkpoint: Cursor {
            transaction_id: row.try_get(1)?,
            global_position: row.try_get::<_, i64>(2)? as u64,
        },
        owner: row.try_get(3)?,
        lease_token: row.try_get(4)?,
        lease_expires_at: row.try_get(5)?,
        events_processed: row.try_get::<_, i64>(6)? as u64,
        last_event_at: row.try_get(7)?,
        last_error: row.try_get(8)?,
        last_error_at: row.try_get(9)?,
        updated_at: row.try_get(10)?,
    })
}

/// Longest error text kept in the subscription's status.
const MAX_ERROR_LEN: usize = 2000;

impl EventStore {
    /// Take the lease of `subscription` for `ttl` if it is free, expired, or already ours;
    /// with `preempt`, take it regardless (an operator's rebuild). Returns the lease and the
    /// checkpoint to continue from, or `None` while another live instance holds it.
    pub async fn acquire_lease(
        &self,
        subscription: &str,
        owner: &str,
        ttl: Duration,
        preempt: bool,
    ) -> Result<Option<(Lease, Cursor)>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            client
                .execute(
                    "INSERT INTO orders.subscriptions (name) VALUES ($1) ON CONFLICT (name) DO NOTHING",
                    &[&subscription],
                )
                .await?;
            let row = client
                .query_opt(
                    "UPDATE orders.subscriptions
                     SET owner = $2, lease_token = lease_token + 1,
                         lease_expires_at = now() + make_interval(secs => $3), updated_at = now()
                     WHERE name = $1
                       AND ($4 OR owner IS NULL OR owner = $2 OR lease_expires_at < now())
                     RETURNING lease_token, checkpoint_xid, checkpoint_position",
                    &[&subscription, &owner, &ttl.as_secs_f64(), &preempt],
                )
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some((
                Lease {
                    subscription: subscription.to_owned(),
                    owner: owner.to_owned(),
                    token: row.try_get(0)?,
                },
                Cursor {
                    transaction_id: row.try_get(1)?,
                    global_position: row.try_get::<_, i64>(2)? as u64,
                },
            )))
        })
        .await
    }

    /// Extend the lease; `false` when it was lost (another instance or an operator took it).
    pub async fn renew_lease(&self, lease: &Lease, ttl: Duration) -> Result<bool, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let renewed = client
                .execute(
                    "UPDATE orders.subscriptions
                     SET lease_expires_at = now() + make_interval(secs => $4), updated_at = now()
                     WHERE name = $1 AND owner = $2 AND lease_token = $3",
                    &[
                        &lease.subscription,
                        &lease.owner,
                        &lease.token,
                        &ttl.as_secs_f64(),
                    ],
                )
                .await?;
            Ok(renewed == 1)
        })
        .await
    }

    /// Whether the database still has `lease` as it was taken (its owner and token: what
    /// [`EventStore::renew_lease`] and [`advance_checkpoint`] check), without extending it.
    pub async fn holds_lease(&self, lease: &Lease) -> Result<bool, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let statement = client
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM orders.subscriptions
                     WHERE name = $1 AND owner = $2 AND lease_token = $3)",
                )
                .await?;
            let row = client
                .query_one(
                    &statement,
                    &[&lease.subscription, &lease.owner, &lease.token],
                )
                .await?;
            Ok(row.try_get::<_, bool>(0)?)
        })
        .await
    }

    /// Give the lease up so that a standby can take over at once.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), Error> {
        self.timed(async {
            let client = self.connection().await?;
            client
                .execute(
                    "UPDATE orders.subscriptions SET owner = NULL, lease_expires_at = NULL, updated_at = now()
                     WHERE name = $1 AND owner = $2 AND lease_token = $3",
                    &[&lease.subscription, &lease.owner, &lease.token],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Show an error in the subscription's status (cleared by the next checkpoint).
    pub async fn record_subscription_error(&self, lease: &Lease, error: &str) -> Result<(), Error> {
        let error: String = error.chars().take(MAX_ERROR_LEN).collect();
        self.timed(async {
            let client = self.connection().await?;
            client
                .execute(
                    "UPDATE orders.subscriptions SET last_error = $4, last_error_at = now(), updated_at = now()
                     WHERE name = $1 AND owner = $2 AND lease_token = $3",
                    &[&lease.subscription, &lease.owner, &lease.token, &error],
                )
                .await?;
            Ok(())
        })
        .await
    }

    /// Every subscription's state.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionState>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let rows = client
                .query(
                    &format!("SELECT {STATE_COLUMNS} FROM orders.subscriptions ORDER BY name"),
                    &[],
                )
                .await?;
            rows.iter().map(|r| state(r).map_err(Error::from)).collect()
        })
        .await
    }

    /// The checkpoint of one subscription (the start of the log if it never ran).
    pub async fn checkpoint(&self, subscription: &str) -> Result<Cursor, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let statement = client
                .prepare_cached(
                    "SELECT checkpoint_xid, checkpoint_position FROM orders.subscriptions WHERE name = $1",
                )
                .await?;
            let row = client.query_opt(&statement, &[&subscription]).await?;
            Ok(match row {
                Some(row) => Cursor {
                    transaction_id: row.try_get(0)?,
                    global_position: row.try_get::<_, i64>(1)? as u64,
                },
                None => Cursor::START,
            })
        })
        .await
    }

    /// The checkpoint of `lease`'s subscription, if the database still has `lease` as it was
    /// taken (its owner and token); `None` when another holder took it. One read by primary
    /// key: a holder that checks its checkpoint learns in the same read whether it may still act
    /// on it, so a checkpoint another holder moved is not taken for writes the database lost.
    pub async fn checkpoint_under_lease(&self, lease: &Lease) -> Result<Option<Cursor>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let statement = client
                .prepare_cached(
                    "SELECT checkpoint_xid, checkpoint_position FROM orders.subscriptions
                     WHERE name = $1 AND owner = $2 AND lease_token = $3",
                )
                .await?;
            let row = client
                .query_opt(
                    &statement,
                    &[&lease.subscription, &lease.owner, &lease.token],
                )
                .await?;
            row.map(|row| {
                Ok(Cursor {
                    transaction_id: row.try_get(0)?,
                    global_position: row.try_get::<_, i64>(1)? as u64,
                })
            })
            .transpose()
        })
        .await
    }

    /// When the first event after `cursor` (in the gap-safe order) was recorded, if any: how
    /// far behind a subscriber at that cursor is, in time.
    pub async fn first_recorded_after(&self, cursor: Cursor) -> Result<Option<SystemTime>, Error> {
        self.timed(async {
            let client = self.connection().await?;
            let statement = client
                .prepare_cached(
                    "SELECT recorded_at FROM orders.events
                     WHERE (transaction_id, global_position) > ($1::xid8, $2::int8)
                     ORDER BY transaction_id, global_position LIMIT 1",
                )
                .await?;
            let row = client
                .query_opt(
                    &statement,
                    &[&cursor.transaction_id, &(cursor.global_position as i64)],
                )
                .await?;
            Ok(match row {
                Some(row) => Some(row.try_get(0)?),
                None => None,
            })
        })
        .await
    }

    /// The gap-safe cursor of the event at `position`, if there is one.
    pub async fn cursor_of_position(&self, position: u64) -> Result<Option<Cursor>, Error> {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        self.timed(async {
            let client = self.connection().await?;
            let statement = client
                .prepare_cached(
                    "SELECT transaction_id FROM orders.events WHERE global_position = $1",
                )
                .await?;
            let row = client.query_opt(&statement, &[&position]).await?;
            Ok(match row {
                Some(row) => Some(Cursor {
                    transaction_id: row.try_get::<_, Xid8>(0)?,
                    global_position: position as u64,
                }),
                None => None,
            })
        })
        .await
    }
}

/// What a reader saw of the log between two cursors: how many events, of any category, a sum
/// over their ids, and which server they were read from (its start time). Digests add up page
/// by page ([`LogDigest::merge`]), and [`verify_read`] checks, in the transaction that moves a
/// checkpoint over those pages, that the database holds exactly these events between the same
/// cursors.
///
/// Why: a page read from one server and applied on another is not the database's. After a
/// failover to an asynchronous standby, the events a projector read from the old primary
/// just before the crash may be gone, while the checkpoint it moves from survived; and the new
/// primary hands the lost transactions' ids (and may hand their positions) out again, so the
/// same cursors then span other events. Comparing cursors cannot tell; the event ids can.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogDigest {
    events: u64,
    id_sum: i128,
    /// The start time of the server every page was read from; `None` when unknown, or when
    /// pages came from different servers.
    server: Option<SystemTime>,
}

impl LogDigest {
    /// No event.
    pub const EMPTY: Self = Self {
        events: 0,
        id_sum: 0,
        server: None,
    };

    /// The events were read from the server started at `started`
    /// (`pg_postmaster_start_time()`): [`verify_read`] on that same server (no failover and
    /// no restore since) needs no scan.
    pub(crate) fn read_from(&mut self, started: SystemTime) {
        if self.events == 0 {
            self.server = Some(started);
        } else if self.server != Some(started) {
            self.server = None;
        }
    }

    /// Count one more event read (from a server [`verify_read`] then does not know: it checks
    /// the events themselves).
    pub fn add(&mut self, event_id: uuid::Uuid) {
        let bytes = event_id.as_bytes();
        let mut low = [0u8; 8];
        low.copy_from_slice(&bytes[8..]);
        self.events += 1;
        self.id_sum += i128::from(i64::from_be_bytes(low));
    }

    /// The digest of `ids`.
    pub fn of(ids: impl IntoIterator<Item = uuid::Uuid>) -> Self {
        let mut digest = Self::EMPTY;
        for id in ids {
            digest.add(id);
        }
        digest
    }

    /// The digest of this read followed by `next`.
    #[must_use]
    pub fn merge(self, next: Self) -> Self {
        let server = match (self.events, next.events) {
            (_, 0) => self.server,
            (0, _) => next.server,
            _ if self.server == next.server => self.server,
            _ => None,
        };
        Self {
            events: self.events + next.events,
            id_sum: self.id_sum + next.id_sum,
            server,
        }
    }

    /// How many events were read.
    pub fn events(&self) -> u64 {
        self.events
    }
}

/// Check, in the transaction that moves a checkpoint from `from` to `to` (or on any
/// connection, before acting on what was read), that the database holds exactly the events a
/// reader saw between them (`read`): their number and their ids.
/// On the database the pages were read from this always holds (the gap-safe read never
/// passes a transaction that may still commit below it); when it does not, the pages came
/// from a server whose history this one does not share (a failover to an asynchronous
/// standby, a restore), and the answer is [`Error::CheckpointMoved`]: roll back and read the
/// checkpoint again.
///
/// When every page was read from this very server (the same start time: no failover, no
/// restore, no restart since), that is all it checks; otherwise it counts and sums the events
/// of the span (one index range scan).
pub async fn verify_read(
    client: &impl deadpool_postgres::GenericClient,
    subscription: &str,
    from: Cursor,
    to: Cursor,
    read: &LogDigest,
) -> Result<(), Error> {
    if to <= from && read.events == 0 {
        return Ok(());
    }
    // The span is scanned only when the server is not the one read from (an init plan runs
    // when its value is needed).
    let statement = client
        .prepare_cached(
            "SELECT CASE WHEN $7::timestamptz = pg_postmaster_start_time() THEN true ELSE (
                 SELECT count(*) = $5 AND coalesce(sum(('x' || encode(
                         substring(uuid_send(event_id) FROM 9 FOR 8), 'hex'))::bit(64)::int8),
                     0) = $6::text::numeric
                 FROM orders.events
                 WHERE (transaction_id, global_position) > ($1::xid8, $2::int8)
                   AND (transaction_id, global_position) <= ($3::xid8, $4::int8)) END",
        )
        .await?;
    let events = i64::try_from(read.events).unwrap_or(i64::MAX);
    let row = client
        .query_one(
            &statement,
            &[
                &from.transaction_id,
                &i64::try_from(from.global_position).unwrap_or(i64::MAX),
                &to.transaction_id,
                &i64::try_from(to.global_position).unwrap_or(i64::MAX),
                &events,
                &read.id_sum.to_string(),
                &read.server,
            ],
        )
        .await?;
    if row.try_get::<_, bool>(0)? {
        Ok(())
    } else {
        Err(Error::CheckpointMoved {
            subscription: subscription.to_owned(),
            expected: format!(
                "the {} events read after {from} up to {to} are not this database's",
                read.events
            ),
        })
    }
}

/// Advance the checkpoint from `from` to `to` inside the transaction that applied the events,
/// if the lease is still held; otherwise [`Error::LeaseLost`] and the caller rolls back.
///
/// `from` is the checkpoint as this writer last read or wrote it. The write goes through only
/// when the database still holds exactly that checkpoint, [`Cursor::START`] included: a writer
/// whose first page committed but whose answer was lost must not apply it again. A writer
/// that starts over (a rebuild, a projection created anew) first moves the checkpoint back
/// with [`restart_checkpoint`]. A database that lost writes (a failover to an asynchronous
/// standby, a point-in-time restore) lost the writer's last checkpoints together with the
/// projection rows written in the same transactions, and may hand the lost transaction ids
/// out again; going on from the writer's memory would skip events or leave rows behind. Then
/// nothing is written and the answer is [`Error::CheckpointMoved`]: roll back and read the
/// checkpoint again.
///
/// The row is locked before its checkpoint is compared: a second write of the same lease from
/// the same checkpoint (a page whose commit was cut off by a timeout, retried on another
/// connection while the first commits) waits for the first and then compares with what it
/// wrote, so it too gets [`Error::CheckpointMoved`] rather than moving the checkpoint again.
pub async fn advance_checkpoint(
    transaction: &Transaction<'_>,
    lease: &Lease,
    from: Cursor,
    to: Cursor,
    events: u64,
    last_event_at: Option<SystemTime>,
) -> Result<(), Error> {
    let statement = transaction
        .prepare_cached(
            "WITH held AS (
                 SELECT checkpoint_xid, checkpoint_position FROM orders.subscriptions
                 WHERE name = $1 AND owner = $2 AND lease_token = $3
                 FOR UPDATE
             ), agreed AS (
                 SELECT (checkpoint_xid, checkpoint_position) = ($8::xid8, $9::int8) AS ok
                 FROM held
             ), moved AS (
                 UPDATE orders.subscriptions
                 SET checkpoint_xid = $4, checkpoint_position = $5,
                     events_processed = events_processed + $6,
                     last_event_at = coalesce($7, last_event_at),
                     last_error = NULL, last_error_at = NULL, updated_at = now()
                 WHERE name = $1 AND owner = $2 AND lease_token = $3
                   AND (SELECT ok FROM agreed)
                 RETURNING 1
             )
             SELECT ok, (SELECT count(*) FROM moved) FROM agreed",
        )
        .await?;
    let row = transaction
        .query_opt(
            &statement,
            &[
                &lease.subscription,
                &lease.owner,
                &lease.token,
                &to.transaction_id,
                &(to.global_position as i64),
                &(events as i64),
                &last_event_at,
                &from.transaction_id,
                &(from.global_position as i64),
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(Error::LeaseLost {
            subscription: lease.subscription.clone(),
        });
    };
    let agreed: bool = row.try_get(0)?;
    let moved: i64 = row.try_get(1)?;
    match (agreed, moved) {
        (true, 1) => Ok(()),
        (true, _) => Err(Error::LeaseLost {
            subscription: lease.subscription.clone(),
        }),
        (false, _) => Err(Error::CheckpointMoved {
            subscription: lease.subscription.clone(),
            expected: from.to_string(),
        }),
    }
}

/// Move the checkpoint back to the start of the log inside `transaction`, if the lease is
/// still held (else [`Error::LeaseLost`]): for a writer that starts over (a rebuild into empty
/// tables, a projection created anew), whose next [`advance_checkpoint`] goes from
/// [`Cursor::START`].
pub async fn restart_checkpoint(transaction: &Transaction<'_>, lease: &Lease) -> Result<(), Error> {
    let statement = transaction
        .prepare_cached(
            "UPDATE orders.subscriptions
             SET checkpoint_xid = '0'::xid8, checkpoint_position = 0, updated_at = now()
             WHERE name = $1 AND owner = $2 AND lease_token = $3",
        )
        .await?;
    let moved = transaction
        .execute(
            &statement,
            &[&lease.subscription, &lease.owner, &lease.token],
        )
        .await?;
    if moved == 1 {
        Ok(())
    } else {
        Err(Error::LeaseLost {
            subscription: lease.subscription.clone(),
        })
    }
}

/// How far a checkpoint at `checkpoint_position` is behind the log's head (`head`, a global
/// position), in positions: an estimate of the events behind, not exact either way (a
/// rolled-back append leaves its position unused; see below for events at lower positions),
/// and at least 1 while an event after the checkpoint waits (`pending`). Checkpoints are
/// ordered by writing transaction first, so the checkpoint's position can be the head's while
/// an event of a later transaction, at a lower position, is still to be applied. What
/// `order-projector status`, its lag gauge and the console show.
pub fn lag_positions(head: u64, checkpoint_position: u64, pending: bool) -> u64 {
    let behind = head.saturating_sub(checkpoint_position);
    if pending { behind.max(1) } else { behind }
}

#[cfg(test)]
mod digest_tests {
    use super::LogDigest;
    use std::time::{Duration, SystemTime};
    use uuid::Uuid;

    fn page(server: SystemTime, ids: &[Uuid]) -> LogDigest {
        let mut digest = LogDigest::EMPTY;
        digest.read_from(server);
        for id in ids {
            digest.add(*id);
        }
        digest
    }

    #[test]
    fn a_digest_names_its_server_only_while_every_page_came_from_it() {
        let (a, b) = (
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
            SystemTime::UNIX_EPOCH + Duration::from_secs(2_000),
        );
        let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
        let one = page(a, &ids[..2]).merge(page(a, &ids[2..]));
        assert_eq!(one.server, Some(a));
        assert_eq!(one.events(), 4);
        // The sum does not depend on how the events were paged.
        assert_eq!(one.id_sum, LogDigest::of(ids.clone()).id_sum);
        // Pages of two servers, or of one the digest does not know: checked event by event.
        assert_eq!(page(a, &ids[..2]).merge(page(b, &ids[2..])).server, None);
        assert_eq!(
            page(a, &ids[..2]).merge(LogDigest::of([ids[3]])).server,
            None
        );
        // An empty side changes nothing.
        assert_eq!(LogDigest::EMPTY.merge(one), one);
        assert_eq!(one.merge(LogDigest::EMPTY), one);
        // A page of one server, then a later page of another.
        let mut read = page(a, &ids[..1]);
        read.read_from(b);
        assert_eq!(read.server, None);
    }
}
