//! `order-grpc serve` settings: flags with environment fallbacks (`--help` lists them all).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use order_runtime::telemetry::LogFormat;
use order_store::DatabaseArgs;

use crate::gateway::Tokens;

/// Each environment variable `ORDER_GRPC_AUTH_TOKEN_<NAME>` holds one caller's bearer token
/// (the whole value, surrounding white space trimmed), named `<NAME>` in lower case: what
/// a deployment gives order-grpc when every caller's token is a secret of its own (Terraform's
/// `grpc_callers`). They add to `--auth-tokens` and `--auth-tokens-file`, and
/// `--auth-scopes` must name them like any other token. One that is empty, holds no valid
/// token, or whose `<NAME>` is not 1-64 of `A-Z 0-9 _` (`ORDER_GRPC_AUTH_TOKEN_checkout`)
/// stops start-up with an error naming the variable.
pub const CALLER_TOKEN_PREFIX: &str = "ORDER_GRPC_AUTH_TOKEN_";

/// The smallest `--max-message-bytes`: 32 KiB, twice the largest message one valid event or
/// order needs (see [`ServeArgs::max_message_bytes`]).
pub const MIN_MESSAGE_BYTES: u32 = 32 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// gRPC listen address.
    #[arg(long, env = "ORDER_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Admin HTTP listen address (/healthz, /readyz, /metrics).
    #[arg(long, env = "ORDER_ADMIN_ADDR", default_value = "127.0.0.1:9464")]
    pub admin_addr: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// PostgreSQL URL of a read replica (several hosts allowed). GetOrder, ListOrders and
    /// GetOrderEvents read there; with min_position a read waits for the replica to replay
    /// that far (--read-replica-wait-ms), then the primary answers. An unreachable replica is
    /// replaced by the primary. None: the primary serves every read.
    #[arg(
        long = "read-database-url",
        env = "ORDER_GRPC_READ_DATABASE_URL",
        hide_env_values = true
    )]
    pub read_database_url: Option<String>,
    /// Milliseconds a read with min_position waits for the read replica to reach that
    /// position (at most half the call's deadline) before the primary answers it.
    #[arg(long = "read-replica-wait-ms", env = "ORDER_GRPC_READ_REPLICA_WAIT_MS",
          default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub read_replica_wait_ms: u64,
    /// Bearer tokens callers must present, comma separated, each `name=token` or `token`
    /// (16-512 visible ASCII characters; no `,`; a bare token may not start with `#`: this
    /// setting has no comments). Set, it must hold a token. More tokens come from
    /// --auth-tokens-file and from one variable per caller, `ORDER_GRPC_AUTH_TOKEN_<NAME>` (the
    /// whole value; named `<NAME>` in lower case). None of the three = no authentication.
    #[arg(long, env = "ORDER_GRPC_AUTH_TOKENS", hide_env_values = true)]
    pub auth_tokens: Option<String>,
    /// A file with bearer tokens, one `name=token` per line (added to --auth-tokens); lines
    /// starting with `#` are comments. Given, it must hold a token.
    #[arg(long, env = "ORDER_GRPC_AUTH_TOKENS_FILE")]
    pub auth_tokens_file: Option<PathBuf>,
    /// What each token may do: `name=scope+scope` entries, comma separated, one for every
    /// token (scopes: orders.read, orders.place, orders.saga, orders.admin; see
    /// docs/security.md). Without it every token may call every method.
    #[arg(long, env = "ORDER_GRPC_AUTH_SCOPES")]
    pub auth_scopes: Option<String>,
    /// How the events of a command are named: `identity` (the time of the append and bits
    /// hashed from the command id, so that the same command applied again after a restore
    /// gives events of the same identity, and the worker's provider keys with them) or
    /// `random` (a new UUID v7 each, as releases before 2026-12-06 did: only while workers of
    /// such a release still run, docs/operations.md, "Upgrade from a release before 2026-12-06").
    #[arg(
        long,
        env = "ORDER_GRPC_COMMAND_EVENT_IDS",
        value_enum,
        default_value = "identity"
    )]
    pub command_event_ids: order_store::CommandEventIds,
    /// Largest request or response message, in bytes: 32 KiB to 64 MiB. The floor is above
    /// the largest message one valid event needs (an OrderPlaced of 100 lines: 100 x 97 bytes
    /// for the lines, each a 64-byte SKU, a quantity and a price, plus about 3.3 KB for an
    /// address of 200-character lines at up to 4 bytes a character, plus about 1.4 KB of
    /// envelope: ids, 128-byte correlation and causation ids, a 300-byte imported_from; in
    /// all under 15 KB), so every event can always be read one at a time.
    #[arg(long, env = "ORDER_GRPC_MAX_MESSAGE_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(MIN_MESSAGE_BYTES as i64..=64 * 1024 * 1024))]
    pub max_message_bytes: u32,
    /// Deadline (ms) for calls that bring none, and the longest any call may run: a shorter
    /// client deadline wins, a longer one is cut to this.
    #[arg(long, env = "ORDER_GRPC_DEFAULT_DEADLINE_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub default_deadline_ms: u64,
    /// Requests served at once; more are refused at once with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ORDER_GRPC_MAX_CONCURRENT_REQUESTS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,
    /// Reads (GetOrder, GetOrderEvents) waiting for their min_position at once. A read that
    /// has to wait (its first look found the position not reached) gives its place under
    /// ORDER_GRPC_MAX_CONCURRENT_REQUESTS back for one of these, kept until it answers, so
    /// that reads waiting for a projector that is down or behind never take the places of
    /// commands (calls in progress: at most the two limits together); one that has to wait
    /// when all are taken is refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ORDER_GRPC_MAX_WAITING_READS",
          default_value_t = crate::queries::DEFAULT_MAX_WAITING_READS as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_waiting_reads: u32,
    /// SubscribeEvents streams open at once (at least 1); more are refused with
    /// RESOURCE_EXHAUSTED.
    #[arg(long, env = "ORDER_GRPC_MAX_SUBSCRIPTIONS", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscriptions: u32,
    /// SubscribeEvents streams one client may hold open (a client: the bearer token's name,
    /// else the peer's IP address); more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "ORDER_GRPC_MAX_SUBSCRIPTIONS_PER_CLIENT", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscriptions_per_client: u32,
    /// Events each subscription may buffer for a slow client.
    #[arg(long, env = "ORDER_GRPC_SUBSCRIPTION_BUFFER", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub subscription_buffer: u32,
    /// How many times in all a command is decided on its order's state just read, its first
    /// such decision included, when concurrent commands of other processes on its order keep
    /// winning the append; then ABORTED.
    #[arg(long, env = "ORDER_COMMAND_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub command_max_attempts: u32,
    /// Seconds without a frame from a client after which its connection is sent an HTTP/2
    /// PING (and the idle time before TCP keepalive probes start): a client whose network path
    /// went silent is noticed, and its calls and SubscribeEvents streams end. Keep it below the
    /// load balancer's idle timeout (Terraform's `idle_timeout_seconds`, 900 s by default).
    #[arg(long, env = "ORDER_GRPC_KEEPALIVE_INTERVAL_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub keepalive_interval_seconds: u64,
    /// Seconds a client has to acknowledge a PING before its connection is closed. The
    /// client's HTTP/2 layer answers a PING ahead of any data, however busy the calls are.
    #[arg(long, env = "ORDER_GRPC_KEEPALIVE_TIMEOUT_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub keepalive_timeout_seconds: u64,
    /// Seconds in-flight calls get to finish after SIGTERM.
    #[arg(long, env = "ORDER_SHUTDOWN_GRACE_SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,
    /// PEM certificate chain for TLS on the gRPC port (with --tls-key-file); none = plaintext
    /// (behind a load balancer that terminates TLS).
    #[arg(long, env = "ORDER_GRPC_TLS_CERT_FILE", requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for --tls-cert-file.
    #[arg(long, env = "ORDER_GRPC_TLS_KEY_FILE", requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl ServeArgs {
    /// The accepted tokens from both sources, as one list (positions and `token-N` names
    /// run on from the setting into the file). Empty only when neither source is given: a
    /// setting or file that is given but holds no token (blank, only commas, only comment
    /// lines) is an error naming it, so that a mistake never starts the service without
    /// authentication. An unreadable file or a malformed token is an error too; no error
    /// quotes a token.
    pub fn tokens(&self) -> Result<Tokens, String> {
        self.tokens_with_env(std::env::vars_os())
    }

    /// [`ServeArgs::tokens`], with the caller token variables
    /// (`ORDER_GRPC_AUTH_TOKEN_<NAME>`, see [`CALLER_TOKEN_PREFIX`]) read from `vars` instead
    /// of the process environment.
    pub fn tokens_with_env(
        &self,
        vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
    ) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        if let Some(setting) = &self.auth_tokens {
            let added = tokens
                .add_setting(setting)
                .map_err(|e| format!("ORDER_GRPC_AUTH_TOKENS (--auth-tokens): {e}"))?;
            if added == 0 {
                return Err(
                    "ORDER_GRPC_AUTH_TOKENS (--auth-tokens) is set but holds no token: \
                     give at least one `name=token` entry, or unset it to serve without \
                     authentication"
                        .to_owned(),
                );
            }
        }
        if let Some(path) = &self.auth_tokens_file {
            let file = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --auth-tokens-file {}: {e}", path.display()))?;
            let added = tokens.add_file(&file).map_err(|e| {
                format!(
                    "ORDER_GRPC_AUTH_TOKENS_FILE (--auth-tokens-file {}): {e}",
                    path.display()
                )
            })?;
            if added == 0 {
                return Err(format!(
                    "ORDER_GRPC_AUTH_TOKENS_FILE (--auth-tokens-file {}) holds no token (only \
                     blank or comment lines): give at least one `name=token` line, or unset it \
                     to serve without authentication",
                    path.display()
                ));
            }
        }
        let mut callers: Vec<_> = vars
            .into_iter()
            .filter(|(name, _)| {
                name.as_encoded_bytes()
                    .starts_with(CALLER_TOKEN_PREFIX.as_bytes())
            })
            .collect();
        callers.sort();
        for (var, value) in callers {
            let var = var.to_string_lossy().into_owned();
            let value = value.into_string().map_err(|_| {
                format!("{var} is not valid UTF-8 (a token is 16-512 visible ASCII characters)")
            })?;
            tokens
                .add_caller(&var[CALLER_TOKEN_PREFIX.len()..], &value)
                .map_err(|e| format!("{var}: {e}"))?;
        }
        match &self.auth_scopes {
            Some(scopes) => tokens.with_scopes(&crate::scopes::parse_assignments(scopes)?),
            None => Ok(tokens),
        }
    }

    /// The TLS identity, when configured; unreadable files are an error.
    pub fn tls(&self) -> Result<Option<crate::serve::Tls>, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        crate::serve::Tls::from_pem(&read(cert)?, &read(key)?).map(Some)
    }

    /// The read replica's store settings, when one is configured: the primary's pool and
    /// timeouts, any server (a replica is read-only), no group commit (it never writes).
    pub fn read_store_config(&self) -> Option<order_store::StoreConfig> {
        let url = self.read_database_url.as_ref()?;
        let mut config = self.database.store_config("order-grpc-read");
        config.database_url = url.clone();
        config.server = order_store::ServerRole::Any;
        config.group_commit_batch = 1;
        Some(config)
    }

    pub fn read_replica_wait(&self) -> Duration {
        Duration::from_millis(self.read_replica_wait_ms)
    }

    pub fn default_deadline(&self) -> Duration {
        Duration::from_millis(self.default_deadline_ms)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_seconds)
    }

    /// The HTTP/2 and TCP settings of every gRPC connection.
    pub fn connection_settings(&self) -> crate::serve::ConnectionSettings {
        crate::serve::ConnectionSettings {
            keepalive_interval: Duration::from_secs(self.keepalive_interval_seconds),
            keepalive_timeout: Duration::from_secs(self.keepalive_timeout_seconds),
            max_pending_accept_reset_streams: crate::serve::pending_accept_reset_streams(
                self.max_concurrent_requests,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use clap::Parser;

    use super::ServeArgs;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServeArgs,
    }

    /// `order-grpc serve` settings from these flags (and a database URL).
    fn args(flags: &[&str]) -> ServeArgs {
        let mut argv = vec!["order-grpc", "--database-url", "postgres://u@127.0.0.1/db"];
        argv.extend_from_slice(flags);
        Wrapper::try_parse_from(argv).expect("valid flags").args
    }

    /// A token file under the temporary directory, removed when dropped.
    struct TokenFile(std::path::PathBuf);

    impl TokenFile {
        fn with(text: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "order-grpc-tokens-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4()
            ));
            let mut file = std::fs::File::create(&path).expect("a temporary file");
            file.write_all(text.as_bytes()).expect("written");
            Self(path)
        }

        fn arg(&self) -> String {
            format!("--auth-tokens-file={}", self.0.display())
        }
    }

    impl Drop for TokenFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn a_token_setting_that_holds_no_token_stops_start_up_without_quoting_it() {
        let secret = "#aaaaaaaaaaaaaaaaaaaa";
        for setting in [
            "",
            " ",
            ",",
            "\n",
            secret,
            "#aaaaaaaaaaaaaaaaaaaa,#bbbbbbbbbbbbbbbbbbbb",
        ] {
            let flag = format!("--auth-tokens={setting}");
            let error = args(&[&flag]).tokens().expect_err(setting);
            assert!(
                error.contains("ORDER_GRPC_AUTH_TOKENS"),
                "{setting:?}: the error names the setting: {error}"
            );
            assert!(
                !error.contains("aaaaaaaaaaaa"),
                "{setting:?}: quoted: {error}"
            );
        }
    }

    #[test]
    fn a_token_file_that_holds_no_token_stops_start_up() {
        for text in [
            "",
            "\n\n",
            "# the worker's token, rotated out\n#aaaaaaaaaaaaaaaaaaaa\n",
        ] {
            let file = TokenFile::with(text);
            let error = args(&[&file.arg()]).tokens().expect_err(text);
            assert!(
                error.contains("--auth-tokens-file") && error.contains("no token"),
                "{text:?}: {error}"
            );
            assert!(!error.contains("aaaaaaaaaaaa"), "{text:?}: quoted: {error}");
        }
    }

    #[test]
    fn without_any_token_setting_calls_are_not_authenticated() {
        assert!(args(&[]).tokens().expect("no tokens").is_empty());
    }

    #[test]
    fn comments_are_read_in_the_token_file_only() {
        let file = TokenFile::with(
            "# rotated in on Monday, out on Friday\nops=bbbbbbbbbbbbbbbbbbbb\n\n  # old=cccccccccccccccccccc\n",
        );
        let tokens = args(&["--auth-tokens=worker=aaaaaaaaaaaaaaaaaaaa", &file.arg()])
            .tokens()
            .expect("two tokens");
        assert_eq!(tokens.names(), ["worker", "ops"]);
        // In the setting a `#` entry is neither a comment nor a token: refused.
        let error = args(&["--auth-tokens=worker=aaaaaaaaaaaaaaaaaaaa,#bbbbbbbbbbbbbbbbbbbb"])
            .tokens()
            .expect_err("a # entry in the setting");
        assert!(error.contains("entry 2") && error.contains('#'), "{error}");
        assert!(!error.contains("bbbbbbbbbbbb"), "quoted: {error}");
    }

    /// `(name, value)` pairs as `std::env::vars_os` gives them.
    fn env(vars: &[(&str, &str)]) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
        vars.iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn each_caller_token_variable_adds_one_token_named_after_it() {
        let tokens = args(&[
            "--auth-tokens=ops=aaaaaaaaaaaaaaaaaaaa",
            "--auth-scopes=ops=orders.admin,worker=orders.read+orders.saga,checkout_api=orders.place",
        ])
        .tokens_with_env(env(&[
            ("PATH", "/usr/bin"),
            ("ORDER_GRPC_AUTH_TOKEN_WORKER", "bbbbbbbbbbbbbbbbbbbb\n"),
            ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT_API", "cccccccccccccccccccc=="),
            // The worker's own client setting and the file setting are not caller tokens.
            ("ORDER_GRPC_AUTH_TOKEN", "dddddddddddddddddddd"),
            ("ORDER_GRPC_AUTH_TOKENS_FILE", "/nowhere"),
        ]))
        .expect("three tokens");
        // Sorted by variable, after the setting; names in lower case.
        assert_eq!(tokens.names(), ["ops", "checkout_api", "worker"]);
        let name = |token: &str| tokens.name_of(token.as_bytes());
        assert_eq!(name("bbbbbbbbbbbbbbbbbbbb"), Some("worker"), "trimmed");
        assert_eq!(
            name("cccccccccccccccccccc=="),
            Some("checkout_api"),
            "whole"
        );
        assert_eq!(name("dddddddddddddddddddd"), None);
    }

    #[test]
    fn a_caller_token_variable_that_is_empty_or_malformed_stops_start_up_naming_it() {
        for (var, value, says) in [
            ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT", "", "empty"),
            ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT", " \n", "empty"),
            ("ORDER_GRPC_AUTH_TOKEN_CHECKOUT", "short-secret", "16-512"),
            (
                "ORDER_GRPC_AUTH_TOKEN_CHECKOUT",
                "aaaaaaaaaa aaaaaaaaaa",
                "16-512",
            ),
            ("ORDER_GRPC_AUTH_TOKEN_", "aaaaaaaaaaaaaaaaaaaa", "name"),
            (
                "ORDER_GRPC_AUTH_TOKEN_CHECK-OUT",
                "aaaaaaaaaaaaaaaaaaaa",
                "name",
            ),
            // upper case only: a lower-case name is not the caller's name in lower case
            (
                "ORDER_GRPC_AUTH_TOKEN_checkout",
                "aaaaaaaaaaaaaaaaaaaa",
                "A-Z 0-9 _",
            ),
            (
                "ORDER_GRPC_AUTH_TOKEN_Check_Out",
                "aaaaaaaaaaaaaaaaaaaa",
                "A-Z 0-9 _",
            ),
        ] {
            let error = args(&[])
                .tokens_with_env(env(&[(var, value)]))
                .expect_err(var);
            assert!(error.contains(var), "{var}={value:?}: {error}");
            assert!(error.contains(says), "{var}={value:?}: {error}");
            assert!(!error.contains("aaaaaaaaaa"), "quoted: {error}");
            assert!(!error.contains("short-secret"), "quoted: {error}");
        }
        // One secret under two names, or a name the setting already has.
        let error = args(&["--auth-tokens=worker=aaaaaaaaaaaaaaaaaaaa"])
            .tokens_with_env(env(&[(
                "ORDER_GRPC_AUTH_TOKEN_WORKER",
                "bbbbbbbbbbbbbbbbbbbb",
            )]))
            .expect_err("two workers");
        assert!(error.contains("both named worker"), "{error}");
        let error = args(&["--auth-tokens=ops=aaaaaaaaaaaaaaaaaaaa"])
            .tokens_with_env(env(&[(
                "ORDER_GRPC_AUTH_TOKEN_WORKER",
                "aaaaaaaaaaaaaaaaaaaa",
            )]))
            .expect_err("one secret twice");
        assert!(error.contains("the same token"), "{error}");
        // A caller token's name must be given scopes like any other.
        let error = args(&["--auth-scopes=ops=orders.admin"])
            .tokens_with_env(env(&[
                ("ORDER_GRPC_AUTH_TOKEN_OPS", "aaaaaaaaaaaaaaaaaaaa"),
                ("ORDER_GRPC_AUTH_TOKEN_WORKER", "bbbbbbbbbbbbbbbbbbbb"),
            ]))
            .expect_err("worker has no scopes");
        assert!(error.contains("worker"), "{error}");
    }

    /// The largest message one valid event needs, built from the domain's limits at their
    /// worst (100 lines, every text at its longest in 4-byte characters, every id at its
    /// longest), fits in half of the smallest message limit: every event can be read alone.
    #[test]
    fn the_smallest_message_limit_holds_the_largest_event_twice() {
        use order_domain::order::MAX_LINES;
        use order_domain::values::{AddressLine, City, PostalCode, Region, Sku};
        use order_proto::v1 as pb;
        use prost::Message as _;

        // 4 bytes each in UTF-8, the most a character takes
        let text = |chars: usize| "\u{1D11E}".repeat(chars);
        let money = || {
            Some(pb::Money {
                currency: "EUR".to_owned(),
                amount_minor: i64::MAX,
            })
        };
        let lines = (0..MAX_LINES)
            .map(|_| pb::OrderLine {
                sku: "S".repeat(Sku::MAX_CHARS),
                quantity: i64::MAX,
                unit_price: money(),
            })
            .collect();
        let placed = pb::OrderPlaced {
            customer_id: uuid::Uuid::new_v4().to_string(),
            lines,
            total: money(),
            shipping_address: Some(pb::Address {
                recipient: text(AddressLine::MAX_CHARS),
                line1: text(AddressLine::MAX_CHARS),
                line2: text(AddressLine::MAX_CHARS),
                city: text(City::MAX_CHARS),
                region: text(Region::MAX_CHARS),
                postal_code: text(PostalCode::MAX_CHARS),
                country: "GB".to_owned(),
            }),
            shipping_method: i32::MAX,
        };
        let event = pb::Event {
            event_id: uuid::Uuid::new_v4().to_string(),
            order_id: uuid::Uuid::new_v4().to_string(),
            stream_version: u64::MAX,
            global_position: u64::MAX,
            cursor: "9".repeat(64),
            event_type: "CancellationRequested".to_owned(),
            schema_version: u32::MAX,
            recorded_at: Some(prost_types::Timestamp {
                seconds: i64::MAX,
                nanos: i32::MAX,
            }),
            correlation_id: "c".repeat(order_domain::es::MAX_CORRELATION_ID_LEN),
            causation_id: "c".repeat(order_domain::es::MAX_CORRELATION_ID_LEN),
            command_id: "c".repeat(order_domain::es::MAX_CORRELATION_ID_LEN),
            imported_from: "i".repeat(300),
            payload: Some(pb::event::Payload::OrderPlaced(placed)),
        };
        let answer = pb::GetOrderEventsResponse {
            events: vec![event],
        };
        let bytes = answer.encoded_len();
        assert!(
            bytes < 15_000,
            "{bytes} bytes: the flag's doc is out of date"
        );
        assert!(
            2 * bytes <= super::MIN_MESSAGE_BYTES as usize,
            "{bytes} bytes: raise MIN_MESSAGE_BYTES"
        );
        // Other events are smaller: a reason is at most 500 characters.
        assert!(4 * 500 < bytes);
    }

    /// A limit of 0 would refuse every stream while the service looks healthy: refused at
    /// the start like the per-client limit (it was accepted).
    #[test]
    fn a_stream_limit_of_zero_is_refused() {
        for flag in ["--max-subscriptions=0", "--max-subscriptions-per-client=0"] {
            let argv = [
                "order-grpc",
                "--database-url",
                "postgres://u@127.0.0.1/db",
                flag,
            ];
            assert!(Wrapper::try_parse_from(argv).is_err(), "{flag}");
        }
        let argv = [
            "order-grpc",
            "--database-url",
            "postgres://u@127.0.0.1/db",
            "--max-subscriptions=1",
        ];
        assert_eq!(
            Wrapper::try_parse_from(argv)
                .unwrap()
                .args
                .max_subscriptions,
            1
        );
    }

    #[test]
    fn a_message_limit_below_the_largest_event_is_refused() {
        let mut argv = vec!["order-grpc", "--database-url", "postgres://u@127.0.0.1/db"];
        argv.push("--max-message-bytes=32767");
        assert!(Wrapper::try_parse_from(&argv).is_err());
        argv.pop();
        argv.push("--max-message-bytes=32768");
        assert_eq!(
            Wrapper::try_parse_from(&argv)
                .expect("the smallest limit")
                .args
                .max_message_bytes,
            32 * 1024
        );
    }

    #[test]
    fn bare_tokens_of_the_setting_and_the_file_are_numbered_as_one_list() {
        let file = TokenFile::with("bbbbbbbbbbbbbbbbbbbb\n");
        let tokens = args(&["--auth-tokens=aaaaaaaaaaaaaaaaaaaa", &file.arg()])
            .tokens()
            .expect("two tokens");
        assert_eq!(tokens.names(), ["token-1", "token-2"]);
        let same = TokenFile::with("again=aaaaaaaaaaaaaaaaaaaa\n");
        let error = args(&["--auth-tokens=aaaaaaaaaaaaaaaaaaaa", &same.arg()])
            .tokens()
            .expect_err("one secret twice");
        assert!(error.contains("the same token"), "{error}");
    }
}
