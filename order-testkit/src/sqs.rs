//! The SQS emulator: a client configured from the settings, and fresh queues per test.

use std::time::Duration;

use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::settings::workspace_root;
use crate::{START_COMMAND, settings};

/// The emulator's endpoint.
pub fn endpoint() -> &'static str {
    settings().require("AWS_ENDPOINT_URL_SQS")
}

/// Give a child process (a service binary under test, started with a cleared environment) the
/// emulator's endpoint, region and credentials.
pub fn pass_environment(command: &mut std::process::Command) {
    for name in [
        "AWS_ENDPOINT_URL_SQS",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        command.env(name, settings().require(name));
    }
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
    /// The FIFO queue.
    pub queue_url: String,
    /// Its dead-letter queue.
    pub dlq_url: String,
}

/// Create a fresh FIFO queue with a DLQ (redrive after `max_receive_count` receives).
pub async fn fifo_queue_pair(max_receive_count: u32) -> QueuePair {
    let client = client();
    if let Err(message) = try_reachable(&client).await {
        panic!("{message}");
    }
    fifo_queue_pair_on(&client, max_receive_count).await
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

/// A private SQS emulator process (for tests that stop or freeze it), killed on drop.
#[derive(Debug)]
pub struct PrivateEmulator {
    child: std::process::Child,
    /// The emulator's URL.
    pub endpoint: String,
}

impl PrivateEmulator {
    /// Start another fauxqs on a free port, from the install `scripts/dev up` made.
    pub async fn start() -> Self {
        let port = crate::net::free_port().unwrap_or_else(|e| panic!("no free port: {e}"));
        Self::start_on(port).await
    }

    /// Kill the emulator (what it held is gone: it keeps messages in memory) and start a
    /// fresh one on the same port.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Self::start_on(self.port()).await;
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_default()
    }

    /// Start fauxqs on `port`.
    pub async fn start_on(port: u16) -> Self {
        let dir = workspace_root().join(".dev/sqs");
        let script = dir.join("server.mjs");
        assert!(
            script.exists(),
            "{} is missing: run `{START_COMMAND}`",
            script.display()
        );
        let child = std::process::Command::new("node")
            .arg(&script)
            .current_dir(&dir)
            .env("SQS_PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node: {e}"));
        let endpoint = format!("http://127.0.0.1:{port}");
        let emulator = Self { child, endpoint };
        let client = client_for(&emulator.endpoint);
        for _ in 0..100 {
            if try_reachable(&client).await.is_ok() {
                return emulator;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the private SQS emulator did not start");
    }

    /// A client of this emulator.
    pub fn client(&self) -> Client {
        client_for(&self.endpoint)
    }

    /// Freeze (SIGSTOP) or thaw (SIGCONT) the emulator process.
    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(status.success(), "kill -{signal} failed");
    }
}

impl Drop for PrivateEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A FIFO queue pair on any endpoint.
pub async fn fifo_queue_pair_on(client: &Client, max_receive_count: u32) -> QueuePair {
    let name = format!("t{}", uuid::Uuid::new_v4().simple());
    fifo_queue_pair_named(client, &name, max_receive_count).await
}

/// The FIFO queue pair `<name>.fifo` and `<name>-dlq.fifo` (same URLs each time on one
/// emulator port).
pub async fn fifo_queue_pair_named(
    client: &Client,
    name: &str,
    max_receive_count: u32,
) -> QueuePair {
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

/// Receive and delete every message currently in the queue (bodies, with their attributes).
pub async fn drain_queue(client: &Client, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    let mut all = Vec::new();
    let mut empty_rounds = 0;
    while empty_rounds < 2 {
        let output = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(e)));
        let messages = output.messages().to_vec();
        if messages.is_empty() {
            empty_rounds += 1;
            continue;
        }
        empty_rounds = 0;
        for message in &messages {
            if let Some(receipt) = message.receipt_handle() {
                let _ = client
                    .delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt)
                    .send()
                    .await;
            }
        }
        all.extend(messages);
    }
    all
}
