//! The SQS client of the services that use SQS.

use std::time::Duration;

/// An SQS client from the AWS SDK's standard settings (`AWS_ENDPOINT_URL_SQS`, `AWS_REGION`,
/// the task role or `AWS_ACCESS_KEY_ID`...), with bounded timeouts. Long polls override the
/// attempt timeout to outlast their wait.
pub async fn client() -> aws_sdk_sqs::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    aws_sdk_sqs::Client::new(&config)
}
