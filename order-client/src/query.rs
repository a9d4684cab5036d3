//! Queries: one builder type, [`Query`], for the unary `OrderQueryService` RPCs.

use std::future::{Future, IntoFuture};
use std::pin::Pin;

use order_proto::v1 as pb;
use order_proto::v1::order_query_service_client::OrderQueryServiceClient;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::client::{Client, Transport};
use crate::command::CommandAnswer;
use crate::error::Error;
use crate::retry::CallKind;

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

mod sealed {
    pub trait Sealed {}
}

/// A unary request message of `OrderQueryService` (implemented for each of them, and only
/// them).
pub trait QueryRequest: sealed::Sealed + Clone + Send + Sync + 'static {
    /// What the query yields.
    type Output: Send + 'static;
    #[doc(hidden)]
    type Response: Send + 'static;

    #[doc(hidden)]
    fn call(
        client: OrderQueryServiceClient<Transport>,
        request: Request<Self>,
    ) -> BoxFuture<Result<Response<Self::Response>, Status>>;
    #[doc(hidden)]
    fn output(response: Self::Response) -> Result<Self::Output, Error>;
}

impl sealed::Sealed for pb::GetOrderRequest {}
impl QueryRequest for pb::GetOrderRequest {
    type Output = pb::Order;
    type Response = pb::GetOrderResponse;

    fn call(
        mut client: OrderQueryServiceClient<Transport>,
        request: Request<Self>,
    ) -> BoxFuture<Result<Response<Self::Response>, Status>> {
        Box::pin(async move { client.get_order(request).await })
    }

    fn output(response: Self::Response) -> Result<Self::Output, Error> {
        response
            .order
            .ok_or_else(|| Error::InvalidResponse("GetOrder answered without an order".into()))
    }
}

impl sealed::Sealed for pb::ListOrdersRequest {}
impl QueryRequest for pb::ListOrdersRequest {
    type Output = pb::ListOrdersResponse;
    type Response = pb::ListOrdersResponse;

    fn call(
        mut client: OrderQueryServiceClient<Transport>,
        request: Request<Self>,
    ) -> BoxFuture<Result<Response<Self::Response>, Status>> {
        Box::pin(async move { client.list_orders(request).await })
    }

    fn output(response: Self::Response) -> Result<Self::Output, Error> {
        Ok(response)
    }
}

impl sealed::Sealed for pb::GetOrderEventsRequest {}
impl QueryRequest for pb::GetOrderEventsRequest {
    type Output = Vec<pb::Event>;
    type Response = pb::GetOrderEventsResponse;

    /// The whole history asked for, in one answer when it fits in one message; an order
    /// whose history does not (the service answers RESOURCE_EXHAUSTED, reason `HISTORY_TOO_LARGE`)
    /// is read in parts and put together, each part after the last version of the one before.
    fn call(
        mut client: OrderQueryServiceClient<Transport>,
        request: Request<Self>,
    ) -> BoxFuture<Result<Response<Self::Response>, Status>> {
        Box::pin(async move {
            let (metadata, extensions, message) = request.into_parts();
            let whole = Request::from_parts(metadata.clone(), extensions, message.clone());
            match client.get_order_events(whole).await {
                Err(status) if message.max_events.is_none() && too_large(&status) => {}
                answered => return answered,
            }
            let mut part = message;
            let mut size: u32 = 1024;
            let mut events = Vec::new();
            loop {
                part.max_events = Some(size);
                let request = Request::from_parts(
                    metadata.clone(),
                    tonic::Extensions::default(),
                    part.clone(),
                );
                match client.get_order_events(request).await {
                    Ok(response) => {
                        let (metadata, answer, extensions) = response.into_parts();
                        let got = answer.events.len();
                        if let Some(last) = answer.events.last() {
                            part.after_version = last.stream_version;
                        }
                        events.extend(answer.events);
                        if got < size as usize {
                            return Ok(Response::from_parts(
                                metadata,
                                pb::GetOrderEventsResponse { events },
                                extensions,
                            ));
                        }
                    }
                    // Events this large: fewer at a time.
                    Err(status) if size > 1 && too_large(&status) => size /= 2,
                    Err(status) => return Err(status),
                }
            }
        })
    }

    fn output(response: Self::Response) -> Result<Self::Output, Error> {
        Ok(response.events)
    }
}

/// order-grpc's answer to a history larger than one message: RESOURCE_EXHAUSTED with an
/// ErrorInfo of reason `HISTORY_TOO_LARGE` (servers before that detail named `max_events` in
/// the message only). Any other RESOURCE_EXHAUSTED (too many subscriptions, a full pool) is
/// not this.
fn too_large(status: &Status) -> bool {
    use tonic_types::StatusExt;
    if status.code() != tonic::Code::ResourceExhausted {
        return false;
    }
    match status.get_details_error_info() {
        Some(info) => info.reason == "HISTORY_TOO_LARGE" && info.domain == "order-ledger",
        None => status.message().contains("max_events"),
    }
}

/// A query ready to send (retried as the client's policy says: queries change nothing).
/// Await it, or call [`send`](Self::send).
///
/// ```no_run
/// # async fn run(client: order_client::Client, customer: uuid::Uuid) -> Result<(), order_client::Error> {
/// use order_client::pb::OrderStatus;
///
/// let page = client.list_orders().customer(customer).status(OrderStatus::Shipped).await?;
/// for order in &page.orders {
///     let events = client.get_order_events(order.order_id.parse().expect("a UUID")).await?;
///     println!("{}: {} events", order.order_id, events.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Query<R> {
    client: Client,
    request: R,
}

impl<R: QueryRequest> Query<R> {
    fn new(client: &Client, request: R) -> Self {
        Self {
            client: client.clone(),
            request,
        }
    }

    /// The request message as it will be sent.
    pub fn request(&self) -> &R {
        &self.request
    }

    /// Send it through another client (another context, deadline or retry policy).
    pub fn via(mut self, client: &Client) -> Self {
        self.client = client.clone();
        self
    }

    /// Send it.
    pub async fn send(&self) -> Result<R::Output, Error> {
        let answered = self
            .client
            .unary(&self.request, CallKind::Idempotent, |request| {
                R::call(self.client.queries(), request)
            })
            .await?;
        R::output(answered.message)
    }
}

impl<R: QueryRequest> IntoFuture for Query<R> {
    type Output = Result<R::Output, Error>;
    type IntoFuture = BoxFuture<Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.send().await })
    }
}

impl Query<pb::GetOrderRequest> {
    /// Read-your-writes: wait (up to the deadline) until the read model has applied the event
    /// at this global position.
    pub fn min_position(mut self, position: u64) -> Self {
        self.request.min_position = Some(position);
        self
    }
}

impl Query<pb::GetOrderEventsRequest> {
    /// Only the events after this stream version.
    pub fn after_version(mut self, version: u64) -> Self {
        self.request.after_version = version;
        self
    }

    /// Read-your-writes: from a copy of the log that holds the event at this position.
    pub fn min_position(mut self, position: u64) -> Self {
        self.request.min_position = Some(position);
        self
    }
}

impl Query<pb::ListOrdersRequest> {
    /// Only this customer's orders.
    pub fn customer(mut self, customer_id: Uuid) -> Self {
        self.request.customer_id = customer_id.to_string();
        self
    }

    /// Only orders in this status.
    pub fn status(mut self, status: pb::OrderStatus) -> Self {
        self.request.status = status as i32;
        self
    }

    /// Orders per page, at most 500 (0, the default: the service's default page of 50).
    pub fn page_size(mut self, size: u32) -> Self {
        self.request.page_size = size;
        self
    }

    /// The page after a previous answer's `next_page_token`.
    pub fn page_token(mut self, token: impl Into<String>) -> Self {
        self.request.page_token = token.into();
        self
    }

    /// Every page from this one on, newest first (at most `limit` orders).
    pub async fn all(mut self, limit: usize) -> Result<Vec<pb::Order>, Error> {
        let mut orders = Vec::new();
        loop {
            let page = self.send().await?;
            orders.extend(page.orders);
            if page.next_page_token.is_empty() || orders.len() >= limit {
                orders.truncate(limit);
                return Ok(orders);
            }
            self.request.page_token = page.next_page_token;
        }
    }
}

impl Client {
    /// GetOrder: the order as the read model holds it (NOT_FOUND when it holds none).
    pub fn get_order(&self, order_id: Uuid) -> Query<pb::GetOrderRequest> {
        Query::new(
            self,
            pb::GetOrderRequest {
                order_id: order_id.to_string(),
                min_position: None,
            },
        )
    }

    /// Read-your-writes: the order as the read model holds it once it has applied what the
    /// command wrote (GetOrder with `min_position` = the answer's global position; the
    /// service waits, up to the deadline, for the projector to get there).
    ///
    /// A DEADLINE_EXCEEDED (the projector down or behind) is retried like any other, so with
    /// the default policy a read model that never gets there ends the call after 6 deadlines
    /// and the waits between them: about a minute with the service's default deadline of
    /// 10 s. Bound it with [`RetryPolicy::total_timeout`](crate::RetryPolicy::total_timeout)
    /// or a shorter [`ClientBuilder::timeout`](crate::ClientBuilder::timeout).
    ///
    /// ```no_run
    /// # async fn run(client: order_client::Client, order: uuid::Uuid) -> Result<(), order_client::Error> {
    /// let shipped = client.ship_order(order, "DHL", "JD0001").await?;
    /// let order = client.get_order_after(&shipped).await?;
    /// assert!(order.last_position >= shipped.global_position);
    /// # Ok(()) }
    /// ```
    pub async fn get_order_after(&self, answer: &CommandAnswer) -> Result<pb::Order, Error> {
        self.get_order(answer.order_id)
            .min_position(answer.global_position)
            .send()
            .await
    }

    /// ListOrders, newest first; filter and page with the builder.
    pub fn list_orders(&self) -> Query<pb::ListOrdersRequest> {
        Query::new(self, pb::ListOrdersRequest::default())
    }

    /// GetOrderEvents: the order's history from the log (NOT_FOUND for an unknown order). A
    /// history larger than one message (order-grpc's limit, 4 MiB by default) is read in parts
    /// and returned whole.
    pub fn get_order_events(&self, order_id: Uuid) -> Query<pb::GetOrderEventsRequest> {
        Query::new(
            self,
            pb::GetOrderEventsRequest {
                order_id: order_id.to_string(),
                after_version: 0,
                min_position: None,
                max_events: None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};
    use tonic_types::{ErrorDetails, StatusExt};

    use super::too_large;

    fn with_reason(code: Code, reason: &str, message: &str) -> Status {
        let details = ErrorDetails::with_error_info(reason, "order-ledger", []);
        Status::with_error_details(code, message, details)
    }

    #[test]
    fn only_the_history_too_large_answer_is_read_in_parts() {
        let history = with_reason(Code::ResourceExhausted, "HISTORY_TOO_LARGE", "too big");
        assert!(too_large(&history), "the reason decides, not the message");
        // Another exhaustion whose message happens to name the field is not this one.
        let other = with_reason(
            Code::ResourceExhausted,
            "TOO_MANY_SUBSCRIPTIONS",
            "max_events does not help here",
        );
        assert!(!too_large(&other));
        assert!(!too_large(&Status::resource_exhausted("pool exhausted")));
        assert!(!too_large(&with_reason(
            Code::Unavailable,
            "HISTORY_TOO_LARGE",
            "wrong code"
        )));
        // A server from before the ErrorInfo detail.
        assert!(too_large(&Status::resource_exhausted(
            "read them in parts with max_events"
        )));
    }
}
