//! `OrderQueryService`: orders and their events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use order_proto::v1 as pb;
use order_store::{Cursor, EventListener, EventStore, Pauses, Reach, RecordedEvent, StreamSlice};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{self, InvalidRequest, event_pb};
use crate::error::ApiError;
use crate::read_model;

/// How many events one read of the log fetches while catching up.
const PAGE: u32 = 500;
/// How long a caught-up subscription waits for a notification before polling anyway.
const POLL: Duration = Duration::from_secs(1);

/// The query side of the API.
#[derive(Debug, Clone)]
pub struct Queries {
    store: EventStore,
    /// Where GetOrder, ListOrders and GetOrderEvents read, when not from `store`.
    replica: Option<Replica>,
    listener: EventListener,
    subscriptions: Arc<Semaphore>,
    per_client: Arc<PerClient>,
    buffer: usize,
    shutdown: watch::Receiver<bool>,
    default_deadline: Duration,
    /// The largest message the service sends (GetOrderEvents answers past it at once, with
    /// the way to read in parts, instead of failing while it encodes).
    max_message_bytes: usize,
    /// Places for reads waiting for their `min_position` (see `Place`).
    waits: Arc<Semaphore>,
}

/// The reads that may wait for their `min_position` at once, by default. A waiting read holds
/// no database connection while it sleeps on the primary (it looks a few times a second); on a
/// read replica it holds one of the replica pool's connections (the check and the read must
/// use one), and one that finds none free queues for one a pause at a time, its place under
/// the concurrency limit given back after the first 5 ms: a busy replica pool is no failed
/// replica. It
/// keeps its place among the waiting reads until it answers.
pub const DEFAULT_MAX_WAITING_READS: usize = 512;

/// A read-your-writes call's place: under the service's concurrency limit (the gateway's
/// [`CallSlot`](crate::gateway::CallSlot)) until it has to wait, then among the waiting reads,
/// whose limit is its own. Waits come in numbers exactly when a projector is down or behind
/// (every read-your-writes call waits, and its client retries), and holding the concurrency
/// limit's places through them would refuse every command meanwhile.
struct Place {
    slot: Option<crate::gateway::CallSlot>,
    waiting: Option<OwnedSemaphorePermit>,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.waiting.is_some() {
            metrics::gauge!("order_grpc_waiting_reads").decrement(1.0);
        }
    }
}

impl Place {
    fn of<T>(request: &Request<T>) -> Self {
        Self {
            slot: request
                .extensions()
                .get::<crate::gateway::CallSlot>()
                .cloned(),
            waiting: None,
        }
    }

    /// Move to a place among the waiting reads, giving the call's place under the concurrency
    /// limit back; false when none is free (the call keeps the place it has).
    fn try_wait(&mut self, waits: &Arc<Semaphore>) -> bool {
        if self.waiting.is_some() {
            return true;
        }
        match waits.clone().try_acquire_owned() {
            Ok(permit) => {
                self.waiting = Some(permit);
                metrics::gauge!("order_grpc_waiting_reads").increment(1.0);
                if let Some(slot) = &self.slot {
                    slot.release();
                }
                true
            }
            Err(_) => false,
        }
    }

    /// [`Place::try_wait`], or RESOURCE_EXHAUSTED when every place for waiting reads is taken.
    fn wait(&mut self, waits: &Arc<Semaphore>) -> Result<(), Status> {
        if self.try_wait(waits) {
            return Ok(());
        }
        metrics::counter!("order_grpc_requests_shed_total").increment(1);
        Err(Status::resource_exhausted(
            "too many reads are waiting for their min_position (a projector is down or behind); \
             retry with backoff",
        ))
    }
}

/// A read replica, and how long a read-your-writes call waits for it to catch up.
#[derive(Debug, Clone)]
struct Replica {
    store: EventStore,
    wait: Duration,
}

/// How a read that could go to the replica was served.
#[derive(Debug, Clone, Copy)]
enum Served {
    /// By the replica.
    Replica,
    /// By the primary: the replica had not reached the call's min_position in time, or had
    /// no pooled connection free for the read by then (busy, not failed),
    /// or the read could not wait there (no place among the waiting reads).
    PrimaryReplicaBehind,
    /// By the primary: the replica failed (unreachable, timed out, cancelled by recovery).
    PrimaryReplicaFailed,
}

impl Served {
    fn count(self, rpc: &'static str) {
        let outcome = match self {
            Self::Replica => "replica",
            Self::PrimaryReplicaBehind => "primary_replica_behind",
            Self::PrimaryReplicaFailed => "primary_replica_failed",
        };
        metrics::counter!("order_grpc_replica_reads_total", "rpc" => rpc, "outcome" => outcome)
            .increment(1);
    }
}

/// How long after the primary should take over a replica's read-your-writes wait may still
/// finish its last poll (see `Queries::bounded`).
const REPLICA_SLACK: Duration = Duration::from_millis(100);

/// Whether a replica read that failed so is answered by the primary: a failure that may
/// pass, or a replica that has not replayed a migration's tables yet.
fn replica_may_fail(error: &order_store::Error) -> bool {
    error.is_unavailable()
}

/// A failed replica read is answered by the primary; say so at most every 10 s.
fn replica_failed(rpc: &'static str, error: &order_store::Error) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    Served::PrimaryReplicaFailed.count(rpc);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now >= last + 10
        && LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(%error, rpc, "read replica failed; the primary answers reads");
    }
}

/// When the caller wants an answer by: its `grpc-timeout`, else the server's default.
fn deadline_of<T>(request: &Request<T>, default: Duration) -> tokio::time::Instant {
    // The gateway's, when it passed: the same instant its timer answers at.
    if let Some(context) = request.extensions().get::<crate::gateway::RequestContext>() {
        return context.deadline;
    }
    let timeout = request
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(crate::gateway::parse_grpc_timeout)
        .map_or(default, |t| t.min(default));
    tokio::time::Instant::now() + timeout
}

/// When a wait gives up, to answer with what it waited for before the gateway's timer answers
/// for it: 20 ms before `deadline` (at once when less is left).
fn give_up_before(deadline: tokio::time::Instant) -> tokio::time::Instant {
    deadline - Duration::from_millis(20).min(deadline - tokio::time::Instant::now())
}

/// Bounds on SubscribeEvents.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionLimits {
    /// Streams open at once, over all clients.
    pub total: usize,
    /// Streams open at once per client: the bearer token's name, else the peer's IP address.
    pub per_client: usize,
    /// Events each stream may hold for a slow client before its reader waits (so a client
    /// that stops reading costs at most this many events of memory, never more).
    pub buffer: usize,
}

/// Open streams per client.
#[derive(Debug)]
struct PerClient {
    limit: usize,
    open: std::sync::Mutex<HashMap<String, usize>>,
}

/// One client's stream slot, given back when the stream ends.
#[derive(Debug)]
struct ClientSlot {
    owner: Arc<PerClient>,
    client: String,
}

impl PerClient {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(self: &Arc<Self>, client: String) -> Option<ClientSlot> {
        let mut open = self.lock();
        let count = open.entry(client.clone()).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: self.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// Who a request comes from, for per-client limits: the name of its bearer token, else the
/// peer's IP address.
fn client_of<T>(request: &Request<T>) -> String {
    if let Some(actor) = request
        .extensions()
        .get::<crate::gateway::RequestContext>()
        .and_then(|c| c.actor.clone())
    {
        return format!("token:{actor}");
    }
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_owned(), |a| format!("ip:{}", a.ip()))
}

impl Queries {
    pub fn new(
        store: EventStore,
        listener: EventListener,
        limits: SubscriptionLimits,
        shutdown: watch::Receiver<bool>,
        default_deadline: Duration,
    ) -> Self {
        Self {
            store,
            replica: None,
            listener,
            subscriptions: Arc::new(Semaphore::new(limits.total)),
            per_client: Arc::new(PerClient {
                limit: limits.per_client.max(1),
                open: std::sync::Mutex::new(HashMap::new()),
            }),
            buffer: limits.buffer.max(1),
            shutdown,
            default_deadline,
            max_message_bytes: usize::MAX,
            waits: Arc::new(Semaphore::new(DEFAULT_MAX_WAITING_READS)),
        }
    }

    /// At most `reads` calls wait for their `min_position` at once (see `Place`); a call that
    /// has to wait when all places are taken is answered RESOURCE_EXHAUSTED.
    pub fn with_max_waiting_reads(mut self, reads: usize) -> Self {
        self.waits = Arc::new(Semaphore::new(reads.max(1)));
        self
    }

    /// GetOrderEvents answers RESOURCE_EXHAUSTED, saying how to read in parts, when its answer
    /// would be larger than `bytes` (the server's encoding limit).
    pub fn with_max_message_bytes(mut self, bytes: usize) -> Self {
        self.max_message_bytes = bytes;
        self
    }

    /// Read GetOrder, ListOrders and GetOrderEvents from `replica`. A call with min_position
    /// waits up to `wait` (at most half of its remaining deadline) for the replica to reach
    /// that position, then the primary answers it; a call the replica fails (unreachable,
    /// timed out) is answered by the primary as well.
    pub fn with_replica(mut self, replica: EventStore, wait: Duration) -> Self {
        self.replica = Some(Replica {
            store: replica,
            wait,
        });
        self
    }

    /// Until when a read with min_position waits for the replica before the primary takes
    /// over: the configured wait, and never more than half the time left to the deadline.
    fn replica_give_up(wait: Duration, deadline: tokio::time::Instant) -> tokio::time::Instant {
        let now = tokio::time::Instant::now();
        now + wait.min(deadline.saturating_duration_since(now) / 2)
    }

    /// A replica connection for a read without `min_position`: one that comes free by the
    /// time the read gives up on the replica (at most the pool's own wait). `None` when every
    /// one stays held by other reads: the replica is busy, not failed, and the primary
    /// answers (counted `primary_replica_behind`). A connection that cannot be opened is an
    /// error (the replica failed).
    async fn replica_connection(
        replica: &Replica,
        deadline: tokio::time::Instant,
    ) -> Result<Option<order_store::deadpool_postgres::Object>, order_store::Error> {
        let give_up = Self::replica_give_up(replica.wait, deadline);
        let wait = give_up
            .saturating_duration_since(tokio::time::Instant::now())
            .min(replica.store.config().pool_wait());
        replica
            .store
            .timed(replica.store.connection_within(wait))
            .await
    }

    /// `read` on the replica, bounded: a replica that has not answered shortly after the
    /// primary should take over (the replica wait, at most half the time left) counts as
    /// failed, and the primary answers. A hung replica (a frozen server, a network that drops
    /// packets) would otherwise hold the call for the store's own limit, the statement timeout
    /// and 2 s, past the caller's deadline; and that limit's expiry marks every connection of
    /// the process as suspect, the primary's included.
    async fn bounded<T>(
        replica: &Replica,
        deadline: tokio::time::Instant,
        read: impl Future<Output = Result<T, order_store::Error>>,
    ) -> Result<T, order_store::Error> {
        let give_up = Self::replica_give_up(replica.wait, deadline);
        // A read-your-writes wait ends at give_up by itself (the replica is behind, not
        // failed): a little slack for its last poll.
        let slack = REPLICA_SLACK.min(deadline.saturating_duration_since(give_up) / 2);
        tokio::time::timeout_at(give_up + slack, read)
            .await
            .unwrap_or(Err(order_store::Error::Timeout))
    }

    /// GetOrder from the replica: `Ok(None)` when it had not reached `min_position` in time,
    /// or had no connection free for the read by then.
    async fn get_order_from_replica(
        replica: &Replica,
        order_id: uuid::Uuid,
        min_position: Option<u64>,
        deadline: tokio::time::Instant,
        may_wait: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Option<Option<pb::Order>>, order_store::Error> {
        let client = match min_position {
            Some(position) => {
                let give_up = Self::replica_give_up(replica.wait, deadline);
                let reach = Reach::Subscription(read_model::SUBSCRIPTION);
                match replica
                    .store
                    .connection_reaching_if(position, reach, give_up, may_wait)
                    .await?
                {
                    Ok(client) => client,
                    Err(_behind) => return Ok(None),
                }
            }
            None => match Self::replica_connection(replica, deadline).await? {
                Some(client) => client,
                None => return Ok(None),
            },
        };
        replica
            .store
            .timed(read_model::get_on(&client, order_id))
            .await
            .map(Some)
    }

    /// Part of an order's stream from the replica (see [`EventStore::read_stream_slice`]):
    /// `Ok(None)` when it had not replayed up to `min_position` in time, or had no connection
    /// free for the read by then. One statement on one
    /// connection, so one server and one snapshot, answers.
    async fn slice_from_replica(
        replica: &Replica,
        order_id: uuid::Uuid,
        after_version: u64,
        limit: Option<u32>,
        min_position: Option<u64>,
        deadline: tokio::time::Instant,
        may_wait: &mut (dyn FnMut() -> bool + Send),
    ) -> Result<Option<StreamSlice>, order_store::Error> {
        match min_position {
            Some(position) => {
                let give_up = Self::replica_give_up(replica.wait, deadline);
                replica
                    .store
                    .read_stream_slice_reaching(
                        order_id,
                        after_version,
                        limit,
                        position,
                        give_up,
                        may_wait,
                    )
                    .await
            }
            None => {
                let Some(client) = Self::replica_connection(replica, deadline).await? else {
                    return Ok(None);
                };
                replica
                    .store
                    .read_stream_slice_on(&client, order_id, after_version, limit)
                    .await
                    .map(Some)
            }
        }
    }

    /// Read-your-writes: return once the read model has applied the event at `position`, or
    /// DEADLINE_EXCEEDED shortly before the caller's deadline.
    async fn wait_for_read_model(
        &self,
        position: u64,
        deadline: tokio::time::Instant,
        place: &mut Place,
    ) -> Result<(), Status> {
        let give_up = give_up_before(deadline);
        let store_error = |e| ApiError::from(e).into_status();
        // Where the event is in the gap-safe order: once found, it never moves. Until then it
        // is looked for again only after the read model moved (it applies nothing without
        // moving its checkpoint, so an event it has not moved over is not applied). A look
        // is then one query, the checkpoint, while the projector is down or behind.
        let mut target: Option<Cursor> = None;
        let mut looked_for_at: Option<Cursor> = None;
        let mut pauses = Pauses::default();
        loop {
            let checkpoint = self
                .store
                .checkpoint(read_model::SUBSCRIPTION)
                .await
                .map_err(store_error)?;
            // After the checkpoint is read: an event not there now was not there for it.
            if target.is_none() && looked_for_at != Some(checkpoint) {
                target = self
                    .store
                    .cursor_of_position(position)
                    .await
                    .map_err(store_error)?;
                looked_for_at = Some(checkpoint);
            }
            let reached = match target {
                Some(target) => checkpoint >= target,
                // No event there (yet): a position the log never used is passed once the
                // read model is beyond it and it is below the head.
                None => {
                    checkpoint.global_position >= position
                        && self.store.head_position().await.map_err(store_error)? >= position
                }
            };
            if reached {
                return Ok(());
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(Status::deadline_exceeded(format!(
                    "the read model has not reached position {position} yet (it is at {})",
                    checkpoint.global_position
                )));
            }
            place.wait(&self.waits)?;
            pauses.sleep(give_up).await;
        }
    }

    /// Wait until the log (the primary's) holds `position`, at most until shortly before
    /// `deadline`. Every position a response or a message gave is there already; one beyond
    /// the head is a position of the future, or of a database that lost writes since (a
    /// restore), and answering without it would not be read-your-writes.
    async fn wait_for_log(
        &self,
        position: u64,
        deadline: tokio::time::Instant,
        place: &mut Place,
    ) -> Result<(), Status> {
        let give_up = give_up_before(deadline);
        let mut pauses = Pauses::default();
        loop {
            let head = self
                .store
                .head_position()
                .await
                .map_err(|e| ApiError::from(e).into_status())?;
            if head >= position {
                return Ok(());
            }
            if tokio::time::Instant::now() >= give_up {
                return Err(Status::deadline_exceeded(format!(
                    "the log has not reached position {position} yet (it is at {head})"
                )));
            }
            place.wait(&self.waits)?;
            pauses.sleep(give_up).await;
        }
    }

    async fn slice(
        &self,
        order_id: uuid::Uuid,
        after: u64,
        limit: Option<u32>,
    ) -> Result<StreamSlice, Status> {
        self.store
            .read_stream_slice(order_id, after, limit)
            .await
            .map_err(|e| ApiError::from(e).into_status())
    }
}

/// The category of orders' streams.
const ORDER_CATEGORY: &str = <order_domain::Order as order_domain::es::Aggregate>::CATEGORY;

/// Only an order's events: the log is shared with other aggregates (stream ids are unique
/// across it), and a stream of another one is no order at all.
fn is_order_event(event: &RecordedEvent) -> bool {
    event.category == ORDER_CATEGORY
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::order_query_service_server::OrderQueryService for Queries {
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let deadline = deadline_of(&request, self.default_deadline);
        let mut place = Place::of(&request);
        let request = request.into_inner();
        let order_id = convert::order_id(&request.order_id)
            .map_err(ApiError::from)?
            .as_uuid();
        let not_found = || ApiError::OrderNotFound(order_id.to_string()).into_status();
        if let Some(replica) = &self.replica {
            // A read the replica makes wait takes a place among the waiting reads; with none
            // free it goes to the primary at once (which sheds it if it has to wait there too).
            let waits = &self.waits;
            let mut may_wait = || place.try_wait(waits);
            let read = Self::get_order_from_replica(
                replica,
                order_id,
                request.min_position,
                deadline,
                &mut may_wait,
            );
            match Self::bounded(replica, deadline, read).await {
                Ok(Some(order)) => {
                    Served::Replica.count("GetOrder");
                    let order = order.ok_or_else(not_found)?;
                    return Ok(Response::new(pb::GetOrderResponse { order: Some(order) }));
                }
                Ok(None) => Served::PrimaryReplicaBehind.count("GetOrder"),
                Err(error) if replica_may_fail(&error) => replica_failed("GetOrder", &error),
                Err(error) => return Err(ApiError::from(error).into_status()),
            }
        }
        if let Some(position) = request.min_position {
            self.wait_for_read_model(position, deadline, &mut place)
                .await?;
        }
        let order = read_model::get(&self.store, order_id)
            .await
            .map_err(|e| ApiError::from(e).into_status())?
            .ok_or_else(not_found)?;
        Ok(Response::new(pb::GetOrderResponse { order: Some(order) }))
    }

    async fn list_orders(
        &self,
        request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let deadline = deadline_of(&request, self.default_deadline);
        let query =
            read_model::ListQuery::try_from(request.into_inner()).map_err(ApiError::from)?;
        if let Some(replica) = &self.replica {
            let read = async {
                let Some(client) = Self::replica_connection(replica, deadline).await? else {
                    return Ok(None);
                };
                replica
                    .store
                    .timed(read_model::list_on(&client, &query))
                    .await
                    .map(Some)
            };
            match Self::bounded(replica, deadline, read).await {
                Ok(Some((orders, next_page_token))) => {
                    Served::Replica.count("ListOrders");
                    return Ok(Response::new(pb::ListOrdersResponse {
                        orders,
                        next_page_token,
                    }));
                }
                Ok(None) => Served::PrimaryReplicaBehind.count("ListOrders"),
                Err(error) if replica_may_fail(&error) => replica_failed("ListOrders", &error),
                Err(error) => return Err(ApiError::from(error).into_status()),
            }
        }
        let (orders, next_page_token) = read_model::list(&self.store, &query)
            .await
            .map_err(|e| ApiError::from(e).into_status())?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders,
            next_page_token,
        }))
    }

    async fn get_order_events(
        &self,
        request: Request<pb::GetOrderEventsRequest>,
    ) -> Result<Response<pb::GetOrderEventsResponse>, Status> {
        let deadline = deadline_of(&request, self.default_deadline);
        let mut place = Place::of(&request);
        let request = request.into_inner();
        let order_id = convert::order_id(&request.order_id)
            .map_err(ApiError::from)?
            .as_uuid();
        let limit = request.max_events.filter(|&most| most > 0);
        let mut from_replica = None;
        if let Some(replica) = &self.replica {
            let waits = &self.waits;
            let mut may_wait = || place.try_wait(waits);
            let read = Self::slice_from_replica(
                replica,
                order_id,
                request.after_version,
                limit,
                request.min_position,
                deadline,
                &mut may_wait,
            );
            match Self::bounded(replica, deadline, read).await {
                Ok(Some(slice)) => {
                    Served::Replica.count("GetOrderEvents");
                    from_replica = Some(slice);
                }
                Ok(None) => Served::PrimaryReplicaBehind.count("GetOrderEvents"),
                Err(error) if replica_may_fail(&error) => replica_failed("GetOrderEvents", &error),
                Err(error) => return Err(ApiError::from(error).into_status()),
            }
        }
        let slice = match from_replica {
            Some(slice) => slice,
            None => {
                // The primary holds every committed event, min_position included. Usually the
                // position is one of this order's events, read with it; otherwise the log's
                // head says whether it is there yet (one beyond it is waited for), and the
                // stream is read again after it.
                let mut slice = self.slice(order_id, request.after_version, limit).await?;
                if let Some(position) = request.min_position
                    && slice
                        .events
                        .last()
                        .is_none_or(|e| e.global_position < position)
                {
                    self.wait_for_log(position, deadline, &mut place).await?;
                    slice = self.slice(order_id, request.after_version, limit).await?;
                }
                slice
            }
        };
        // Whether the order exists comes from the same statement as its events; a stream of
        // another aggregate is no order.
        if slice.category.as_deref() != Some(ORDER_CATEGORY) {
            return Err(ApiError::OrderNotFound(order_id.to_string()).into());
        }
        let events = slice
            .events
            .iter()
            .map(event_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::from(e).into_status())?;
        let response = pb::GetOrderEventsResponse { events };
        let bytes = prost::Message::encoded_len(&response);
        if bytes > self.max_message_bytes {
            return Err(history_too_large(
                response.events.len(),
                bytes,
                self.max_message_bytes,
            ));
        }
        Ok(Response::new(response))
    }

    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        request: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let client_slot = self.per_client.take(client_of(&request)).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "this client already has {} event subscriptions open; close one or retry later",
                self.per_client.limit
            ))
        })?;
        let permit = self
            .subscriptions
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted("too many event subscriptions are open; retry later")
            })?;
        let (mut cursor, skip_through) = match request.into_inner().start {
            Some(pb::subscribe_events_request::Start::AfterCursor(text)) => {
                let (cursor, event_id) = convert::parse_api_cursor(&text).ok_or_else(|| {
                    ApiError::from(InvalidRequest(vec![order_domain::ValidationError::new(
                        "after_cursor",
                        order_domain::Violation::Format {
                            expected: "the cursor of an earlier event, such as \
                                       749-1042-0190c3a1b2c34d5e8f9a0b1c2d3e4f50",
                        },
                    )]))
                    .into_status()
                })?;
                // Only a cursor of an event the log holds, the very one it named, is a place
                // to resume: after a failover to an asynchronous standby or a restore lost the
                // event, the new primary hands its transaction id (and maybe its position) out
                // again, and a resume after it would skip the events that got them.
                if cursor != Cursor::START {
                    let held = self
                        .store
                        .event_id_at(cursor)
                        .await
                        .map_err(|e| ApiError::from(e).into_status())?;
                    if held.is_none() || event_id.is_some_and(|id| held != Some(id)) {
                        return Err(cursor_not_in_log(&text));
                    }
                }
                (cursor, 0)
            }
            Some(pb::subscribe_events_request::Start::AfterPosition(position)) => (
                self.store
                    .cursor_before_position(position)
                    .await
                    .map_err(|e| ApiError::from(e).into_status())?,
                position,
            ),
            None => (Cursor::START, 0),
        };

        let (sender, receiver) = mpsc::channel(self.buffer);
        let store = self.store.clone();
        let mut listener = self.listener.clone();
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _client_slot = client_slot;
            loop {
                if *shutdown.borrow() {
                    let _ = sender
                        .send(Err(Status::unavailable(
                            "the server is shutting down; resume from the last cursor",
                        )))
                        .await;
                    return;
                }
                let page = match store.read_all(cursor, PAGE).await {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(ApiError::from(error).into_status())).await;
                        return;
                    }
                };
                let full = page.len() == PAGE as usize;
                for recorded in page {
                    cursor = recorded.cursor();
                    // Events of other aggregates sharing the log are not orders' events: the
                    // cursor passes them.
                    if recorded.global_position <= skip_through || !is_order_event(&recorded) {
                        continue;
                    }
                    let event = event_pb(&recorded).map_err(|e| ApiError::from(e).into_status());
                    let failed = event.is_err();
                    // A send error means the client went away: stop reading for it.
                    if sender.send(event).await.is_err() || failed {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    _ = listener.wait(POLL) => {}
                    () = sender.closed() => return,
                    _ = shutdown.changed() => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }
}

/// FAILED_PRECONDITION for an `after_cursor` whose event the log does not hold, with an
/// ErrorInfo (reason `CURSOR_NOT_IN_LOG`, domain `order-ledger`, metadata `cursor`).
fn cursor_not_in_log(cursor: &str) -> Status {
    crate::error::error_info_status(
        tonic::Code::FailedPrecondition,
        "CURSOR_NOT_IN_LOG",
        &[("cursor", cursor.to_owned())],
        format!(
            "the log holds no event at cursor {cursor}: it comes from another database, or a \
             failover to an asynchronous standby or a restore lost its event; resume with \
             after_position at a position this log still holds that you processed (or 0), and \
             expect events you saw before"
        ),
    )
}

/// RESOURCE_EXHAUSTED for an answer larger than a message may be, with an ErrorInfo (reason
/// `HISTORY_TOO_LARGE`, domain `order-ledger`) that clients act on rather than the message.
fn history_too_large(events: usize, bytes: usize, limit: usize) -> Status {
    crate::error::error_info_status(
        tonic::Code::ResourceExhausted,
        "HISTORY_TOO_LARGE",
        &[
            ("events", events.to_string()),
            ("bytes", bytes.to_string()),
            ("limit_bytes", limit.to_string()),
        ],
        format!(
            "the {events} events asked for take {bytes} bytes, more than the {limit} a message \
             may hold: read them in parts with max_events, each after the last version the \
             previous part held"
        ),
    )
}
