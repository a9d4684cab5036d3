//! The read-model view of an order: what lists and dashboards need, folded from events alone.
//!
//! A summary is what `order_summaries` holds per order. It folds the same events as the
//! aggregate and must agree with it on every field it has (a property test checks that).

use super::{OrderEvent, Status};
use crate::money::Money;
use crate::values::CustomerId;

/// One order as the read model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSummary {
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Where the order is in its life.
    pub status: Status,
    /// The sum of the lines.
    pub total: Money,
    /// The captured amount.
    pub captured: Money,
    /// The refunded amount.
    pub refunded: Money,
    /// How many lines.
    pub line_count: u32,
}

/// Why an event could not be applied to a summary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    /// An event of an order never placed.
    #[error("{event_type} for an order that was never placed")]
    NotPlaced {
        /// The event's type.
        event_type: &'static str,
    },
    /// A second placement.
    #[error("OrderPlaced for an order that exists")]
    PlacedTwice,
}

impl OrderSummary {
    /// The summary an `OrderPlaced` starts.
    pub fn placed(event: &super::OrderPlaced) -> Self {
        let zero = Money::zero(event.total.currency());
        Self {
            customer_id: event.customer_id,
            status: Status::Placed,
            total: event.total,
            captured: zero,
            refunded: zero,
            line_count: event.lines.len() as u32,
        }
    }

    /// Fold one event into an optional summary (`None` before placement).
    pub fn fold(summary: Option<Self>, event: &OrderEvent) -> Result<Option<Self>, SummaryError> {
        use crate::es::EventSchema;
        match (summary, event) {
            (None, OrderEvent::OrderPlaced(placed)) => Ok(Some(Self::placed(placed))),
            (Some(_), OrderEvent::OrderPlaced(_)) => Err(SummaryError::PlacedTwice),
            (None, other) => Err(SummaryError::NotPlaced {
                event_type: other.event_type(),
            }),
            (Some(mut summary), event) => {
                summary.apply(event);
                Ok(Some(summary))
            }
        }
    }

    /// Apply an event after placement (only assigns state, as the aggregate's evolve does).
    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::OrderPlaced(_)
            | OrderEvent::InventoryUnavailable(_)
            | OrderEvent::PaymentFailed(_)
            | OrderEvent::InventoryReleased(_)
            | OrderEvent::PaymentVoided(_) => {}
            OrderEvent::InventoryReserved(_) => self.status = Status::InventoryReserved,
            OrderEvent::PaymentAuthorized(_) => self.status = Status::PaymentAuthorized,
            OrderEvent::OrderConfirmed(e) => {
                self.status = Status::Confirmed;
                self.captured = e.captured;
            }
            OrderEvent::FulfillmentStarted(_) => self.status = Status::Processing,
            OrderEvent::OrderShipped(_) => self.status = Status::Shipped,
            OrderEvent::OrderDelivered(_) => self.status = Status::Delivered,
            OrderEvent::OrderCompleted(_) => self.status = Status::Completed,
            OrderEvent::CancellationRequested(_) => self.status = Status::CancellationPending,
            OrderEvent::PaymentRefunded(e) => {
                self.refunded = self.refunded.checked_add(e.amount).unwrap_or(self.refunded);
            }
            OrderEvent::OrderCancelled(_) => self.status = Status::Cancelled,
        }
    }

    /// What this order adds to its customer's totals: one order, and the money kept
    /// (captured minus refunded) in the order's currency.
    pub fn contribution(&self) -> (i64, i64) {
        (
            1,
            self.captured.amount_minor() - self.refunded.amount_minor(),
        )
    }
}
