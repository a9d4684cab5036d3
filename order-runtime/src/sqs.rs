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

/// An SQS call's error on one line: the service's code and message when SQS answered
/// (`AWS.SimpleQueueService.NonExistentQueue: The specified queue does not exist`), else the
/// cause chain (a connection refused, a timeout), never the raw response.
pub fn describe<E, R>(error: &aws_sdk_sqs::error::SdkError<E, R>) -> String
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_sqs::error::SdkError;
    match error {
        SdkError::ServiceError(service) => {
            let err = service.err();
            match (err.code(), err.message()) {
                (Some(code), Some(message)) => format!("{code}: {message}"),
                (Some(code), None) => code.to_owned(),
                (None, Some(message)) => message.to_owned(),
                (None, None) => err.to_string(),
            }
        }
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    }
}

/// Whether SQS refused the request itself: it answered 4xx, and neither for a throttle (429,
/// a `...Throttl...` code) nor for a request that took too long or credentials that expired on
/// the way (408, `RequestTimeout`, `RequestExpired`, `ExpiredToken`, with or without an
/// `Exception` suffix: the SDK signs the next attempt afresh). A
/// queue that does not exist, a standard queue where a FIFO one belongs, a missing permission
/// or a parameter SQS refuses will not pass by themselves, and someone has to act; everything
/// else (no answer, a 5xx, a throttle) is an outage and passes by itself.
pub fn refused<E>(
    error: &aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>,
) -> bool
where
    E: aws_sdk_sqs::error::ProvideErrorMetadata,
{
    let aws_sdk_sqs::error::SdkError::ServiceError(service) = error else {
        return false;
    };
    let status = service.raw().status().as_u16();
    let code = service.err().code().unwrap_or_default();
    (400..500).contains(&status)
        && status != 408
        && status != 429
        && !code.contains("Throttl")
        // With or without an `Exception` suffix, as SQS's JSON and query protocols name them.
        && !["RequestExpired", "ExpiredToken", "RequestTimeout"]
            .iter()
            .any(|passing| code.starts_with(passing))
}
