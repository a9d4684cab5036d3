//! `order-cli`: the order ledger's gRPC API from a shell, for people (order-client
//! underneath). See `order-cli --help`.

mod args;
mod input;
mod output;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use futures::StreamExt;
use order_client::{Client, Code, Command, CommandRequest, Error, Start, pb};

use crate::args::{Cli, Connection, Print, Sub};
use crate::input::{CommandInput, Usage};
use crate::output::Output;

/// Exit codes, by what went wrong (documented in `--help`).
mod exit {
    pub const OK: u8 = 0;
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REJECTED: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const UNAVAILABLE: u8 = 5;
    pub const DENIED: u8 = 6;
}

/// The exit code for a client error: by its status code, except that a call refused for its
/// size (RESOURCE_EXHAUSTED with `REQUEST_TOO_LARGE`) is refused for good, not unavailable.
fn client_exit_code(error: &Error) -> u8 {
    if error.is_too_large() {
        exit::REJECTED
    } else {
        exit_code(error.code())
    }
}

/// The exit code for a gRPC status code.
fn exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => exit::OK,
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::AlreadyExists
        | Code::Aborted
        | Code::OutOfRange => exit::REJECTED,
        Code::NotFound => exit::NOT_FOUND,
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted | Code::Cancelled => {
            exit::UNAVAILABLE
        }
        Code::Unauthenticated | Code::PermissionDenied => exit::DENIED,
        Code::Unknown | Code::Internal | Code::DataLoss | Code::Unimplemented => exit::OTHER,
    }
}

/// How a run failed.
enum Failure {
    Usage(String),
    Client(Error),
    Other(anyhow::Error),
}

impl From<Usage> for Failure {
    fn from(usage: Usage) -> Self {
        Self::Usage(usage.0)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        if let Some(problem) = error.tls_certificate_problem() {
            // A setting to fix (the CA file, the name), not an outage.
            let correlation = match &error {
                Error::Rpc { correlation_id, .. } => format!(", correlation id {correlation_id}"),
                _ => String::new(),
            };
            return Self::Usage(format!("{problem} (not retried{correlation})"));
        }
        match error {
            Error::Config(message) => Self::Usage(message),
            other => Self::Client(other),
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    cli.connection.token_from_env =
        matches.value_source("token") == Some(clap::parser::ValueSource::EnvVariable);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("order-cli: cannot start: {error}");
            return ExitCode::from(exit::OTHER);
        }
    };
    let out = Output::new(cli.json);
    match runtime.block_on(run(cli, &out)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(Failure::Usage(message)) => {
            out.error("USAGE", &message);
            ExitCode::from(exit::USAGE)
        }
        Err(Failure::Client(error)) => {
            out.client_error(&error);
            ExitCode::from(client_exit_code(&error))
        }
        Err(Failure::Other(error)) => {
            out.error("ERROR", &format!("{error:#}"));
            ExitCode::from(exit::OTHER)
        }
    }
}

fn client(connection: &Connection) -> Result<Client, Failure> {
    let mut builder = Client::builder()
        .endpoints(connection.url.iter().map(|u| u.trim().to_owned()))
        .timeout(connection.timeout)
        .retry(order_client::RetryPolicy::default().max_attempts(connection.attempts))
        .context(order_client::CallContext::new(
            connection.correlation_id.as_deref(),
            None,
        ));
    if let Some(token) = &connection.token {
        if token.trim().is_empty() {
            return Err(Failure::Usage(if connection.token_from_env {
                "ORDER_GRPC_TOKEN is set but empty: set it to the token, or unset it to call \
                 without one"
                    .to_owned()
            } else {
                "--token is empty: give the token, or leave --token out to call without one"
                    .to_owned()
            }));
        }
        builder = builder.bearer_token(token.trim());
    }
    if let Some(path) = &connection.tls_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::Usage(format!("cannot read the CA file {}: {e}", path.display()))
        })?;
        builder = builder.tls_ca_pem(pem);
    }
    if let Some(domain) = &connection.tls_domain {
        builder = builder.tls_domain(domain);
    }
    Ok(builder.build()?)
}

async fn run(cli: Cli, out: &Output) -> Result<(), Failure> {
    let client = client(&cli.connection)?;
    match cli.command {
        Sub::Place(args) => {
            let input = args.input()?;
            let mut command = client.place_order(input.customer_id);
            if let Some(order_id) = input.order_id {
                command = command.order_id(order_id);
            }
            *command.request_mut() = pb::PlaceOrderRequest {
                command_id: command.request().command_id.clone(),
                order_id: command.request().order_id.clone(),
                ..input.request
            };
            send(command, input.command_id, None, args.print, out).await
        }
        Sub::Reserve(args) => {
            let input = args.input()?;
            let id = input.order_id()?;
            let reservation = input.required(input.reservation_id.clone(), "reservation_id")?;
            let command = client.reserve_inventory(id, reservation);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::RejectInventory(args) => {
            let input = args.input("reject-inventory")?;
            let command = client.reject_inventory(input.order_id()?, input.reason()?);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::Authorize(args) => {
            let input = args.input()?;
            let payment = input.required(input.payment_id.clone(), "payment_id")?;
            let command = client.authorize_payment(input.order_id()?, payment, input.amount()?);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::FailPayment(args) => {
            let input = args.input("fail-payment")?;
            let command = client.fail_payment(input.order_id()?, input.reason()?);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::Confirm(args) => {
            let input = args.input("confirm")?;
            let command = client.confirm_order(input.order_id()?);
            send_with(command, &input, args.print, out).await
        }
        Sub::StartFulfillment(args) => {
            let input = args.input("start-fulfillment")?;
            let command = client.start_fulfillment(input.order_id()?);
            send_with(command, &input, args.print, out).await
        }
        Sub::Ship(args) => {
            let input = args.input()?;
            let carrier = input.required(input.carrier.clone(), "carrier")?;
            let tracking = input.required(input.tracking_number.clone(), "tracking_number")?;
            let command = client.ship_order(input.order_id()?, carrier, tracking);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::Deliver(args) => {
            let input = args.input("deliver")?;
            let command = client.deliver_order(input.order_id()?);
            send_with(command, &input, args.print, out).await
        }
        Sub::Complete(args) => {
            let input = args.input("complete")?;
            let command = client.complete_order(input.order_id()?);
            send_with(command, &input, args.print, out).await
        }
        Sub::Cancel(args) => {
            let input = args.input("cancel")?;
            let command = client.cancel_order(input.order_id()?, input.reason()?);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::ReleaseInventory(args) => {
            let input = args.input("release-inventory")?;
            let command = client.release_inventory(input.order_id()?);
            send_with(command, &input, args.print, out).await
        }
        Sub::Refund(args) => {
            let input = args.input()?;
            let command = client.refund_payment(input.order_id()?, input.amount()?);
            send_with(command, &input, args.common.print, out).await
        }
        Sub::Get(args) => {
            let mut query = client.get_order(args.order_id);
            if let Some(position) = args.min_position {
                query = query.min_position(position);
            }
            out.order(&query.await?);
            Ok(())
        }
        Sub::List(args) => {
            let mut query = client.list_orders().page_size(args.page_size);
            if let Some(customer) = args.customer {
                query = query.customer(customer);
            }
            if let Some(status) = &args.status {
                query = query.status(input::status(status)?);
            }
            if let Some(token) = &args.page_token {
                query = query.page_token(token);
            }
            if args.all {
                let orders = query.all(usize::MAX).await?;
                out.orders(&orders, "");
            } else {
                let page = query.await?;
                out.orders(&page.orders, &page.next_page_token);
            }
            Ok(())
        }
        Sub::Events(args) => {
            let mut query = client
                .get_order_events(args.order_id)
                .after_version(args.after_version);
            if let Some(position) = args.min_position {
                query = query.min_position(position);
            }
            out.events(&query.await?);
            Ok(())
        }
        Sub::Follow(args) => follow(&client, args, out).await,
    }
}

/// Send a saga command with what the input says about ids and versions.
async fn send_with<R: CommandRequest>(
    command: Command<R>,
    input: &CommandInput,
    print: Option<Print>,
    out: &Output,
) -> Result<(), Failure> {
    send(
        command,
        input.command_id,
        input.expected_version,
        print,
        out,
    )
    .await
}

async fn send<R: CommandRequest>(
    mut command: Command<R>,
    command_id: Option<uuid::Uuid>,
    expected_version: Option<u64>,
    print: Option<Print>,
    out: &Output,
) -> Result<(), Failure> {
    if let Some(id) = command_id {
        command = command.command_id(id);
    }
    if let Some(version) = expected_version {
        command = command.expected_version(version);
    }
    let answer = command.await?;
    match print {
        Some(field) => out.field(&answer, field),
        // A command id made here is known to no other call.
        None => out.answer(&answer, command_id.is_none()),
    }
    Ok(())
}

/// Print the live log until interrupted (or `--limit` events).
async fn follow(client: &Client, args: args::FollowArgs, out: &Output) -> Result<(), Failure> {
    let start = match (args.after_position, args.after_cursor) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(
                "give --after-position or --after-cursor, not both".into(),
            ));
        }
        (Some(position), None) => Start::AfterPosition(position),
        (None, Some(cursor)) => Start::AfterCursor(cursor),
        (None, None) => Start::Beginning,
    };
    let order = args.order.map(|o| o.to_string());
    let mut events = client
        .subscribe_events(start)
        .reconnect_for(args.reconnect_for);
    if let Some(limit) = args.max_reconnects {
        events = events.max_reconnects(limit);
    }
    let mut shown = 0u64;
    out.event_header();
    loop {
        let next = tokio::select! {
            next = events.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let event = match next {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(error.into()),
            None => {
                return Err(Failure::Other(anyhow::anyhow!(
                    "the event stream ended unexpectedly"
                )));
            }
        };
        if order.as_ref().is_some_and(|o| *o != event.order_id) {
            continue;
        }
        out.event_line(&event);
        shown += 1;
        if args.limit.is_some_and(|limit| shown >= limit) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_exit_code() {
        assert_eq!(exit_code(Code::InvalidArgument), 3);
        assert_eq!(exit_code(Code::FailedPrecondition), 3);
        assert_eq!(exit_code(Code::NotFound), 4);
        assert_eq!(exit_code(Code::Unavailable), 5);
        assert_eq!(exit_code(Code::DeadlineExceeded), 5);
        assert_eq!(exit_code(Code::Unauthenticated), 6);
        assert_eq!(exit_code(Code::PermissionDenied), 6);
        // RESOURCE_EXHAUSTED: a busy service is unavailable; a request too large is refused.
        let rpc = |status: tonic::Status| Error::Rpc {
            status: Box::new(status),
            attempts: 1,
            correlation_id: "c".to_owned(),
        };
        assert_eq!(
            client_exit_code(&rpc(tonic::Status::resource_exhausted("busy"))),
            5
        );
        let too_large = {
            use tonic_types::{ErrorDetails, StatusExt};
            tonic::Status::with_error_details(
                Code::ResourceExhausted,
                "too large",
                ErrorDetails::with_error_info(
                    "REQUEST_TOO_LARGE",
                    "order-ledger",
                    std::collections::HashMap::<String, String>::new(),
                ),
            )
        };
        assert_eq!(client_exit_code(&rpc(too_large)), 3);
        assert_eq!(exit_code(Code::Internal), 1);
    }

    #[test]
    fn a_refused_service_certificate_is_a_settings_problem() {
        let refused = |detail: &str| Error::Rpc {
            status: Box::new(tonic::Status::from_error(Box::new(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("invalid peer certificate: {detail}"),
            )))),
            attempts: 1,
            correlation_id: "c".to_owned(),
        };
        for (detail, says) in [
            ("UnknownIssuer", "--tls-ca-file"),
            ("NotValidForName", "--tls-domain"),
            ("Expired", "expired"),
        ] {
            match Failure::from(refused(detail)) {
                Failure::Usage(message) => assert!(message.contains(says), "{message}"),
                _ => panic!("{detail}: not a usage error"),
            }
        }
        let down = Error::Rpc {
            status: Box::new(tonic::Status::unavailable("tcp connect error")),
            attempts: 4,
            correlation_id: "c".to_owned(),
        };
        assert!(matches!(Failure::from(down), Failure::Client(_)));
    }
}
