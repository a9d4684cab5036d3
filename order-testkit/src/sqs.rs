//! The SQS emulator: a client configured from the settings, and fresh queues per test.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::{START_COMMAND, settings};

/// The emulator's endpoint.
pub fn endpoint() -> &'static str {
    settings().require("AWS_ENDPOINT_URL_SQS")
}

/// A client for the emulator, independent of the process environment.
pub fn client() -> Client {
    client_for(endpoint())
}

/// A client for an SQS-compatible endpoint with local credentials.
pub fn client_for(endpoint: &str) -> Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "local",
            "local",
            None,
            None,
            "order-testkit",
        ))
        .build();
    Client::from_conf(config)
}

/// Check the emulator answers, or explain which command starts it.
pub async fn try_reachable(client: &Client) -> Result<(), String> {
    match tokio::time::timeout(Duration::from_secs(5), client.list_queues().send()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unreachable_message(
            &aws_sdk_sqs::error::DisplayErrorContext(e).to_string(),
        )),
        Err(_) => Err(unreachable_message("no answer within 5 s")),
    }
}

fn unreachable_message(cause: &str) -> String {
    format!(
        "the SQS emulator is not reachable for the tests ({cause}): start it with \
         `{START_COMMAND}` (or run every check with `scripts/check`)"
    )
}

/// A FIFO queue and its FIFO dead-letter queue, named uniquely for one test.
#[derive(Debug, Clone)]
pub struct QueuePair {
    pub queue_url: String,
    pub dlq_url: String,
}

/// Create a fresh FIFO queue with a DLQ (redrive after `max_receive_count` receives).
pub async fn fifo_queue_pair(max_receive_count: u32) -> QueuePair {
    let client = client();
    if let Err(message) = try_reachable(&client).await {
        panic!("{message}");
    }
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating a DLQ: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        });
    let dlq_url = dlq.queue_url().unwrap_or_default().to_owned();
    let arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|out| {
            out.attributes()
                .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        })
        .unwrap_or_else(|| panic!("the emulator did not report the DLQ's ARN"));
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{max_receive_count}"}}"#);
    let queue = client
        .create_queue()
        .queue_name(format!("{name}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "30")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating a queue: {}",
                aws_sdk_sqs::error::DisplayErrorContext(e)
            )
        });
    QueuePair {
        queue_url: queue.queue_url().unwrap_or_default().to_owned(),
        dlq_url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_absent_emulator_fails_with_the_command_that_starts_it() {
        let error = try_reachable(&client_for("http://127.0.0.1:1"))
            .await
            .err()
            .unwrap_or_default();
        assert!(error.contains("SQS emulator is not reachable"), "{error}");
        assert!(error.contains(START_COMMAND), "{error}");
    }
}
