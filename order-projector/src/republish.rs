//! `order-projector republish --from POS [--to POS]`: send a range of the log to SQS again,
//! with the same deduplication ids (the event ids), for a consumer that lost messages.
//! Within SQS's deduplication window, copies of messages it already has are dropped.

use order_store::EventStore;
use tokio::sync::watch;

use crate::read_model::decode;
use crate::sqs::{Message, Publisher};

/// Re-send every event with `from <= global_position <= through`. Returns how many.
pub async fn republish(
    store: &EventStore,
    publisher: &Publisher,
    from: u64,
    through: u64,
    shutdown: &watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut after = from.saturating_sub(1);
    let mut sent = 0u64;
    loop {
        let events = store.read_range(after, through, 1000).await?;
        let Some(last) = events.last() else { break };
        after = last.global_position;
        let decoded = decode(&events)?;
        let messages = events
            .iter()
            .zip(&decoded)
            .map(|(event, decoded)| Message::of(event, decoded))
            .collect::<Result<Vec<_>, _>>()?;
        let on_error = |failure: &crate::sqs::SendFailure| {
            tracing::warn!(error = %failure.text, "republish: SQS refused; retrying");
        };
        sent += publisher.publish(messages, shutdown, &on_error).await? as u64;
        tracing::info!(through = after, sent, "republish progress");
    }
    Ok(sent)
}
