//! Reading the projector's read model (`orders.order_summaries`): one order, or a page of
//! orders newest first, filtered by customer and/or status, with keyset pagination.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use order_domain::values::CustomerId;
use order_domain::{ValidationError, Violation};
use order_proto::v1 as pb;
use order_store::EventStore;
use order_store::tokio_postgres::Row;
use uuid::Uuid;

use crate::convert::{InvalidRequest, status_filter, status_label, timestamp};

/// The projector's subscription that maintains the read model.
pub const SUBSCRIPTION: &str = "read_model";

const COLUMNS: &str = "order_id, customer_id, status, currency, total_minor, refunded_minor, \
    line_count, stream_version, last_position, placed_at, updated_at";

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

fn order(row: &Row) -> Result<pb::Order, order_store::tokio_postgres::Error> {
    let currency: String = row.try_get(3)?;
    let money = |amount_minor| pb::Money {
        currency: currency.clone(),
        amount_minor,
    };
    Ok(pb::Order {
        order_id: row.try_get::<_, Uuid>(0)?.to_string(),
        customer_id: row.try_get::<_, Uuid>(1)?.to_string(),
        status: status_label(row.try_get::<_, &str>(2)?) as i32,
        total: Some(money(row.try_get(4)?)),
        refunded: Some(money(row.try_get(5)?)),
        line_count: row.try_get::<_, i32>(6)? as u32,
        version: row.try_get::<_, i64>(7)? as u64,
        last_position: row.try_get::<_, i64>(8)? as u64,
        placed_at: Some(timestamp(row.try_get(9)?)),
        updated_at: Some(timestamp(row.try_get(10)?)),
    })
}

/// One order from the read model.
pub async fn get(
    store: &EventStore,
    order_id: Uuid,
) -> Result<Option<pb::Order>, order_store::Error> {
    store
        .timed(async {
            let client = store.connection().await?;
            get_on(&client, order_id).await
        })
        .await
}

/// One order from the read model, on this connection (see
/// [`EventStore::connection_reaching`]).
pub async fn get_on(
    client: &order_store::deadpool_postgres::Object,
    order_id: Uuid,
) -> Result<Option<pb::Order>, order_store::Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM orders.order_summaries WHERE order_id = $1"
        ))
        .await?;
    match client.query_opt(&statement, &[&order_id]).await? {
        Some(row) => Ok(Some(order(&row)?)),
        None => Ok(None),
    }
}

/// 9999-12-31T23:59:59.999999Z in microseconds since the Unix epoch: no later page token.
const LATEST_PLACED_MICROS: u64 = 253_402_300_799_999_999;

/// Where a page starts: after this (placed_at, order_id) in newest-first order, and the
/// filters of the listing that gave it (a token continues that listing only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageToken {
    placed_at: SystemTime,
    order_id: Uuid,
    /// The listing's `customer_id` and `status` (the request's enum value); `None` in a token
    /// of the release before (`v1`), which named no filters.
    filters: Option<(Option<Uuid>, i32)>,
}

impl PageToken {
    fn encode(&self) -> String {
        let micros = self
            .placed_at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let id = self.order_id.simple();
        match self.filters {
            Some((customer, status)) => {
                let customer = customer.map(|c| c.simple().to_string()).unwrap_or_default();
                format!("v2.{micros}.{id}.{customer}.{status}")
            }
            None => format!("v1.{micros}.{id}"),
        }
    }

    /// A token this service wrote, read back strictly: one spelling per token (digits without a
    /// sign or leading zeros, lower-case hex), so a forged variant is refused as malformed.
    fn decode(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.split('.').collect();
        let (micros, id, filters) = match parts[..] {
            ["v1", micros, id] => (micros, id, None),
            ["v2", micros, id, customer, status] => {
                let customer = match customer {
                    "" => None,
                    hex => Some(simple_uuid(hex)?),
                };
                let status = i32::try_from(canonical_number(status)?).ok()?;
                (micros, id, Some((customer, status)))
            }
            _ => return None,
        };
        let micros = canonical_number(micros)?;
        // A time no order was placed at, past what PostgreSQL's timestamps hold (a forged
        // token): refused as malformed, not turned into `infinity` or an overflow.
        if micros > LATEST_PLACED_MICROS {
            return None;
        }
        Some(Self {
            placed_at: UNIX_EPOCH.checked_add(Duration::from_micros(micros))?,
            order_id: simple_uuid(id)?,
            filters,
        })
    }
}

/// Decimal digits in their one spelling (no sign, no leading zero but in `0`), as a number.
fn canonical_number(text: &str) -> Option<u64> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    (digits && (text == "0" || !text.starts_with('0')))
        .then(|| text.parse().ok())
        .flatten()
}

/// A UUID as 32 lower-case hex digits (how tokens write them), and no other spelling.
fn simple_uuid(text: &str) -> Option<Uuid> {
    (text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| Uuid::try_parse(text).ok())
        .flatten()
}

/// A validated ListOrders request.
#[derive(Debug, Clone)]
pub struct ListQuery {
    customer: Option<Uuid>,
    status: Option<&'static str>,
    /// The request's `status` as sent (0: any), which the next page's token names.
    status_value: i32,
    after: Option<PageToken>,
    limit: u32,
}

impl TryFrom<pb::ListOrdersRequest> for ListQuery {
    type Error = InvalidRequest;

    fn try_from(request: pb::ListOrdersRequest) -> Result<Self, Self::Error> {
        let mut violations = Vec::new();
        let customer = if request.customer_id.is_empty() {
            None
        } else {
            match CustomerId::parse(&request.customer_id) {
                Ok(id) => Some(id.as_uuid()),
                Err(v) => {
                    violations.push(ValidationError::new("customer_id", v));
                    None
                }
            }
        };
        let status = match request.status {
            0 => None,
            value => match status_filter(value) {
                Some(status) => Some(status.as_str()),
                None => {
                    violations.push(ValidationError::new("status", Violation::UnknownValue));
                    None
                }
            },
        };
        if request.page_size > MAX_PAGE {
            violations.push(ValidationError::new(
                "page_size",
                Violation::OutOfRange {
                    min: 0,
                    max: i64::from(MAX_PAGE),
                },
            ));
        }
        let after = if request.page_token.is_empty() {
            None
        } else {
            let token = PageToken::decode(&request.page_token);
            match token {
                None => violations.push(ValidationError::new(
                    "page_token",
                    Violation::Format {
                        expected: "a next_page_token from an earlier ListOrders response",
                    },
                )),
                // A token continues the listing it came from: under other filters its place
                // means nothing (the page would skip or repeat orders).
                Some(PageToken {
                    filters: Some(filters),
                    ..
                }) if filters != (customer, request.status) => {
                    violations.push(ValidationError::new(
                        "page_token",
                        Violation::Format {
                            expected: "a next_page_token from an earlier ListOrders response \
                                       with the same customer_id and status",
                        },
                    ));
                }
                Some(_) => {}
            }
            token
        };
        if !violations.is_empty() {
            return Err(InvalidRequest(violations));
        }
        let limit = match request.page_size {
            0 => DEFAULT_PAGE,
            size => size,
        };
        Ok(Self {
            customer,
            status,
            status_value: request.status,
            after,
            limit,
        })
    }
}

/// A page of orders, newest first, and the token of the next page (empty on the last).
pub async fn list(
    store: &EventStore,
    query: &ListQuery,
) -> Result<(Vec<pb::Order>, String), order_store::Error> {
    store
        .timed(async {
            let client = store.connection().await?;
            list_on(&client, query).await
        })
        .await
}

/// [`list`] on this connection (see [`EventStore::connection_within`]), with no time limit of
/// its own: run it inside [`EventStore::timed`].
pub async fn list_on(
    client: &order_store::deadpool_postgres::Object,
    query: &ListQuery,
) -> Result<(Vec<pb::Order>, String), order_store::Error> {
    // One statement per combination of filters, so that each uses its index.
    let mut conditions = Vec::new();
    let mut index = 1;
    let mut placeholder = || {
        let p = format!("${index}");
        index += 1;
        p
    };
    if query.customer.is_some() {
        conditions.push(format!("customer_id = {}", placeholder()));
    }
    if query.status.is_some() {
        conditions.push(format!("status = {}", placeholder()));
    }
    if query.after.is_some() {
        let (at, id) = (placeholder(), placeholder());
        conditions.push(format!("(placed_at, order_id) < ({at}, {id})"));
    }
    let limit = placeholder();
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM orders.order_summaries {filter} ORDER BY placed_at DESC, order_id DESC LIMIT {limit}"
    );
    let fetch = i64::from(query.limit) + 1;
    let statement = client.prepare_cached(&sql).await?;
    let mut params: Vec<&(dyn order_store::tokio_postgres::types::ToSql + Sync)> = Vec::new();
    if let Some(customer) = &query.customer {
        params.push(customer);
    }
    if let Some(status) = &query.status {
        params.push(status);
    }
    if let Some(after) = &query.after {
        params.push(&after.placed_at);
        params.push(&after.order_id);
    }
    params.push(&fetch);
    let rows = client.query(&statement, &params).await?;
    let more = rows.len() > query.limit as usize;
    let page: Vec<&Row> = rows.iter().take(query.limit as usize).collect();
    let next = match (more, page.last()) {
        (true, Some(last)) => PageToken {
            placed_at: last.try_get(9)?,
            order_id: last.try_get(0)?,
            filters: Some((query.customer, query.status_value)),
        }
        .encode(),
        _ => String::new(),
    };
    let orders = page.into_iter().map(order).collect::<Result<Vec<_>, _>>()?;
    Ok((orders, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_junk_is_refused() {
        let at = UNIX_EPOCH + Duration::from_micros(1_795_300_000_123_456);
        for filters in [None, Some((None, 0)), Some((Some(Uuid::from_u128(9)), 3))] {
            let token = PageToken {
                placed_at: at,
                order_id: Uuid::from_u128(7),
                filters,
            };
            assert_eq!(
                PageToken::decode(&token.encode()),
                Some(token),
                "{filters:?}"
            );
        }
        assert!(
            PageToken::decode("v1.253402300799999999.00000000000000000000000000000007").is_some()
        );
        assert!(PageToken::decode("v2.0.00000000000000000000000000000007..0").is_some());
        for junk in [
            "",
            "v1",
            "v3.1.00000000000000000000000000000007",
            "v1.x.y",
            "v1.253402300800000000.00000000000000000000000000000007",
            "v1.9223372036854775807.00000000000000000000000000000007",
            "v1.1.2.3",
            "v1.-1.00000000000000000000000000000007",
            // Other spellings of a valid token: a sign, leading zeros, upper case, hyphens.
            "v1.+5.00000000000000000000000000000007",
            "v1.05.00000000000000000000000000000007",
            "v1.5.0000000000000000000000000000000A",
            "v1.5.00000000-0000-0000-0000-000000000007",
            "v2.5.00000000000000000000000000000007.",
            "v2.5.00000000000000000000000000000007..",
            "v2.5.00000000000000000000000000000007..+1",
            "v2.5.00000000000000000000000000000007..01",
            "v2.5.00000000000000000000000000000007..-0",
            "v2.5.00000000000000000000000000000007..-1",
            "v2.5.00000000000000000000000000000007.9.1",
            "v2.5.00000000000000000000000000000007..99999999999",
        ] {
            assert_eq!(PageToken::decode(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn a_token_continues_only_the_listing_it_came_from() {
        let customer = Uuid::from_u128(9);
        let token = |filters| {
            PageToken {
                placed_at: UNIX_EPOCH + Duration::from_micros(5),
                order_id: Uuid::from_u128(7),
                filters,
            }
            .encode()
        };
        let request =
            |customer: Option<Uuid>, status: i32, page_token: String| pb::ListOrdersRequest {
                customer_id: customer.map(|c| c.to_string()).unwrap_or_default(),
                status,
                page_size: 0,
                page_token,
            };
        let same = token(Some((Some(customer), 2)));
        assert!(ListQuery::try_from(request(Some(customer), 2, same.clone())).is_ok());
        for (other_customer, status) in [
            (None, 2),
            (Some(Uuid::from_u128(8)), 2),
            (Some(customer), 0),
        ] {
            let refused = ListQuery::try_from(request(other_customer, status, same.clone()));
            let InvalidRequest(violations) = refused.expect_err("another listing's token");
            assert_eq!(violations[0].field, "page_token");
        }
        // A token of the release before names no filters: taken as it was.
        assert!(ListQuery::try_from(request(None, 2, token(None))).is_ok());
    }
}
