//! `OrderQueryService`: orders and their events.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use order_domain::order::OrderEvent;
use order_domain::{Aggregate, Order};
use order_proto::v1 as pb;
use order_store::{Cursor, EventListener, EventStore, RecordedEvent};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::convert::{self, InvalidRequest, event_pb, order_pb};
use crate::error::ApiError;

/// How many events one read of the log fetches while catching up.
const PAGE: u32 = 500;
/// How long a caught-up subscription waits for a notification before polling anyway.
const POLL: Duration = Duration::from_secs(1);

/// The query side of the API.
#[derive(Debug, Clone)]
pub struct Queries {
    store: EventStore,
    listener: EventListener,
    subscriptions: Arc<Semaphore>,
    buffer: usize,
    shutdown: watch::Receiver<bool>,
}

impl Queries {
    /// `max_subscriptions` bounds concurrent SubscribeEvents streams; `buffer` is how many
    /// events each may hold for a slow client before the reader waits.
    pub fn new(
        store: EventStore,
        listener: EventListener,
        max_subscriptions: usize,
        buffer: usize,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            store,
            listener,
            subscriptions: Arc::new(Semaphore::new(max_subscriptions)),
            buffer: buffer.max(1),
            shutdown,
        }
    }

    async fn stream(&self, order_id: uuid::Uuid, after: u64) -> Result<Vec<RecordedEvent>, Status> {
        self.store
            .read_stream(order_id, after)
            .await
            .map_err(|e| ApiError::from(e).into_status())
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::order_query_service_server::OrderQueryService for Queries {
    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let request = request.into_inner();
        let order_id = convert::order_id(&request.order_id)
            .map_err(ApiError::from)?
            .as_uuid();
        // Folded from the log, which is always current: min_position is satisfied by the
        // time the command that produced it returned.
        let events = self.stream(order_id, 0).await?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Err(ApiError::OrderNotFound(order_id.to_string()).into());
        };
        let mut order = Order::default();
        for recorded in &events {
            let envelope = recorded
                .decode::<OrderEvent>()
                .map_err(|e| ApiError::from(e).into_status())?;
            order.evolve(&envelope.event);
        }
        let details = order
            .details()
            .ok_or_else(|| Status::internal("the order's log does not start with a placement"))?;
        Ok(Response::new(pb::GetOrderResponse {
            order: Some(order_pb(
                order_id,
                details,
                last.stream_version,
                last.global_position,
                first.recorded_at,
                last.recorded_at,
            )),
        }))
    }

    async fn list_orders(
        &self,
        _request: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        Err(Status::unimplemented(
            "ListOrders reads the order_summaries read model, which this version does not have yet",
        ))
    }

    async fn get_order_events(
        &self,
        request: Request<pb::GetOrderEventsRequest>,
    ) -> Result<Response<pb::GetOrderEventsResponse>, Status> {
        let request = request.into_inner();
        let order_id = convert::order_id(&request.order_id)
            .map_err(ApiError::from)?
            .as_uuid();
        let events = self.stream(order_id, request.after_version).await?;
        if events.is_empty()
            && (request.after_version == 0 || self.stream(order_id, 0).await?.is_empty())
        {
            return Err(ApiError::OrderNotFound(order_id.to_string()).into());
        }
        let events = events
            .iter()
            .map(event_pb)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ApiError::from(e).into_status())?;
        Ok(Response::new(pb::GetOrderEventsResponse { events }))
    }

    type SubscribeEventsStream = EventStream;

    async fn subscribe_events(
        &self,
        request: Request<pb::SubscribeEventsRequest>,
    ) -> Result<Response<Self::SubscribeEventsStream>, Status> {
        let permit = self
            .subscriptions
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                Status::resource_exhausted("too many event subscriptions are open; retry later")
            })?;
        let (mut cursor, skip_through) = match request.into_inner().start {
            Some(pb::subscribe_events_request::Start::AfterCursor(text)) => {
                let cursor = text.parse::<Cursor>().map_err(|_| {
                    ApiError::from(InvalidRequest(vec![order_domain::ValidationError::new(
                        "after_cursor",
                        order_domain::Violation::Format {
                            expected: "the cursor of an earlier event, such as 749-1042",
                        },
                    )]))
                    .into_status()
                })?;
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
                    if recorded.global_position <= skip_through {
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
