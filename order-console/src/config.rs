//! Settings: command-line arguments with environment fallbacks, checked before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use order_runtime::telemetry::LogFormat;
use order_store::DatabaseArgs;

/// The command line.
#[derive(Debug, clap::Parser)]
#[command(
    name = "order-console",
    version,
    about = "The health board of the order ledger: a read-only web console"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the console.
    Serve(Box<ServeArgs>),
    /// Probe a running console's /readyz and exit 0 when it answers 200.
    Healthcheck {
        /// The URL to probe (default: `/readyz` on `--addr`).
        #[arg(long, env = "ORDER_HEALTHCHECK_URL")]
        url: Option<String>,
        /// Where the console listens, as `serve` is given it.
        #[arg(long, env = "ORDER_CONSOLE_ADDR", default_value = "127.0.0.1:9470")]
        addr: SocketAddr,
    },
}

/// Settings of `order-console serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "console")]
pub struct ServeArgs {
    /// Where the console listens (HTTP). Without tokens it may only listen on a loopback
    /// address.
    #[arg(long, env = "ORDER_CONSOLE_ADDR", default_value = "127.0.0.1:9470")]
    pub addr: SocketAddr,
    /// The services' admin endpoints, comma-separated: `http://host:port` or
    /// `name=http://host:port` (default name: the service the endpoint reports, then the
    /// address).
    #[arg(long, env = "ORDER_CONSOLE_SERVICES", value_delimiter = ',')]
    pub services: Vec<String>,
    /// Named console tokens, `name=token` comma-separated (16-512 visible ASCII characters
    /// each). People sign in with one; scripts send `authorization: Bearer <token>`.
    #[arg(
        long,
        env = "ORDER_CONSOLE_TOKENS",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub tokens: Vec<String>,
    /// A file with `name=token` lines instead of (or besides) --tokens.
    #[arg(long, env = "ORDER_CONSOLE_TOKENS_FILE")]
    pub tokens_file: Option<std::path::PathBuf>,
    /// Mark the session cookie `Secure` (when a TLS proxy serves the console).
    #[arg(long, env = "ORDER_CONSOLE_SECURE_COOKIES", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value = "false",
          action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub secure_cookies: bool,
    /// The orders FIFO queue (depth, oldest message).
    #[arg(long, env = "ORDERS_QUEUE_URL")]
    pub orders_queue_url: Option<String>,
    /// Its dead-letter queue (depth; messages read without being removed).
    #[arg(long, env = "ORDERS_DLQ_URL")]
    pub orders_dlq_url: Option<String>,
    /// Milliseconds between two scrapes of every service (and of the queues).
    #[arg(long, env = "ORDER_CONSOLE_SCRAPE_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(200..=60_000))]
    pub scrape_ms: u64,
    /// Milliseconds between two refreshes of an open page.
    #[arg(long, env = "ORDER_CONSOLE_REFRESH_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(200..=60_000))]
    pub refresh_ms: u64,
    /// Minutes of history kept for the charts and the alarms (at least 16: the longest alarm
    /// looks back 15 minutes).
    #[arg(long, env = "ORDER_CONSOLE_HISTORY_MINUTES", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(16..=240))]
    pub history_minutes: u64,
    /// A trace viewer's URL with `{trace_id}` in it (e.g.
    /// `http://127.0.0.1:16686/trace/{trace_id}`): each event links to its trace.
    #[arg(long, env = "ORDER_CONSOLE_TRACE_URL")]
    pub trace_url: Option<String>,
    /// The proxies in front of the console (a load balancer, a TLS proxy), comma-separated
    /// addresses or CIDR ranges (`10.0.0.0/16`, `::1`). A request whose connection comes from
    /// one of them is counted, for the limit on failed sign-ins, as its client's: the
    /// right-most `X-Forwarded-For` entry that is not itself one of them. Empty (the
    /// default): no header is trusted, and the client is the connection's peer.
    #[arg(long, env = "ORDER_CONSOLE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,
    /// The read-only database connection (a member of orders_readonly).
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

/// One service admin endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name given on the command line, if any.
    pub name: Option<String>,
    /// `host:port`.
    pub authority: String,
}

impl Target {
    /// Parse `http://host:port` or `name=http://host:port` (a trailing `/` is allowed).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (name, url) = match text.split_once('=') {
            Some((name, url)) => (Some(name.trim()), url.trim()),
            None => (None, text),
        };
        if let Some(name) = name
            && (name.is_empty()
                || name.len() > 64
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
        {
            return Err(format!(
                "invalid service name {name:?} in --services: 1-64 letters, digits, '-', '_' or '.'"
            ));
        }
        let authority = url
            .strip_prefix("http://")
            .ok_or_else(|| {
                format!("invalid service {url:?} in --services: expected http://host:port")
            })?
            .trim_end_matches('/');
        let valid = !authority.is_empty()
            && !authority.contains(['/', '@', '?', '#', ' '])
            && authority.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
        if !valid {
            return Err(format!(
                "invalid service {url:?} in --services: expected http://host:port"
            ));
        }
        Ok(Self {
            name: name.map(str::to_owned),
            authority: authority.to_owned(),
        })
    }
}

/// A named console token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// Shown as who is signed in; never the secret.
    pub name: String,
    /// The secret.
    pub secret: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({:?}, <hidden>)", self.name)
    }
}

/// Parse `name=token` entries (comments `#` and blank lines skipped). Errors name an entry by
/// its position among the entries and never quote it (a mistyped entry may be a secret, e.g. a
/// base64 token pasted without a name); one secret under two names is refused.
pub fn parse_tokens<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Vec<Token>, String> {
    let mut tokens: Vec<Token> = Vec::new();
    let entries = entries
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'));
    for (index, entry) in entries.enumerate() {
        let position = index + 1;
        let Some((name, secret)) = entry.split_once('=') else {
            return Err(format!(
                "invalid console token entry {position}: expected name=token"
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(format!(
                "invalid console token entry {position}: a name is 1-64 letters, digits, '-', \
                 '_' or '.', then '=', then the token"
            ));
        }
        if !(16..=512).contains(&secret.len()) || !secret.chars().all(|c| c.is_ascii_graphic()) {
            return Err(format!(
                "invalid console token entry {position}: the token is not 16-512 visible ASCII \
                 characters (a bare token needs a name: name=token)"
            ));
        }
        if let Some(earlier) = tokens.iter().position(|t| t.name == name) {
            return Err(format!(
                "console token entries {} and {position} are both named {name:?}",
                earlier + 1
            ));
        }
        if let Some(earlier) = tokens.iter().position(|t| t.secret == secret) {
            return Err(format!(
                "console token entries {} and {position} are the same token",
                earlier + 1
            ));
        }
        tokens.push(Token {
            name: name.to_owned(),
            secret: secret.to_owned(),
        });
    }
    Ok(tokens)
}

/// One `--trusted-proxies` entry: an address (a range of one) or a CIDR range.
pub fn parse_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| {
            format!(
                "invalid --trusted-proxies entry {text:?}: an IP address or a CIDR range (10.0.0.0/16)"
            )
        })
}

/// How many failed sign-ins (a wrong token in the form, or a wrong bearer token) a client
/// address may make within a window before it is refused (429, its tokens not even checked)
/// until the window, counted from its first failure, ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimit {
    /// Failures allowed in one window.
    pub failures: u32,
    /// The window, from an address's first failure.
    pub window: Duration,
}

impl Default for LoginLimit {
    /// Five failures a minute.
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(60),
        }
    }
}

/// Settings after every check.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to listen.
    pub addr: SocketAddr,
    /// The admin endpoints.
    pub targets: Vec<Target>,
    /// Empty: no sign-in (loopback only).
    pub tokens: Vec<Token>,
    /// `Secure` cookies.
    pub secure_cookies: bool,
    /// The orders queue.
    pub queue_url: Option<String>,
    /// The dead-letter queue.
    pub dlq_url: Option<String>,
    /// Between two scrapes.
    pub scrape_interval: Duration,
    /// Between two page refreshes.
    pub refresh_interval: Duration,
    /// History kept.
    pub history: Duration,
    /// Trace link template.
    pub trace_url: Option<String>,
    /// Failed sign-ins allowed per client address (not a command-line setting: tests shorten
    /// the window).
    pub login_limit: LoginLimit,
    /// The proxies whose `X-Forwarded-For` names the client (`--trusted-proxies`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The database.
    pub store: order_store::StoreConfig,
}

/// What an open page waits for an answer beyond the longest the server may take to give one
/// (rendering, the network).
pub const ANSWER_MARGIN: Duration = Duration::from_secs(1);

/// The most an open page waits for the server's answer, however long its database calls may
/// take (a statement timeout of 0 gives calls minutes): a console that stops answering is
/// said to within a minute (longer only for a refresh interval that is longer itself).
pub const MAX_ANSWER_PATIENCE: Duration = Duration::from_secs(60);

impl Settings {
    /// The longest one refresh of a page may take on the server: three of the store's call
    /// limits (statement timeout + 2 s, 7 s by default): the flow's window then its first
    /// page, one after the other (the state counts, the orders in flight, the finished ones
    /// and those stuck, are read side by side with them, each within its own limit), and
    /// one more for the flow's further pages of the log, which it reads only while they fit
    /// in this limit.
    pub fn answer_limit(&self) -> Duration {
        self.store.call_timeout() * 3
    }

    /// How long an open page waits for a refresh before giving it up: the server's
    /// [`Settings::answer_limit`] and [`ANSWER_MARGIN`] (at most [`MAX_ANSWER_PATIENCE`]),
    /// and at least two refresh intervals (rendered into every page as `data-patience-ms`).
    pub fn page_patience(&self) -> Duration {
        (self.answer_limit() + ANSWER_MARGIN)
            .min(MAX_ANSWER_PATIENCE)
            .max(self.refresh_interval * 2)
    }
}

impl ServeArgs {
    /// Check everything clap cannot; the error is one line naming the setting.
    pub fn settings(&self) -> Result<Settings, String> {
        let targets = self
            .services
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| Target::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let mut entries: Vec<String> = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --tokens-file {}: {e}", path.display()))?;
            entries.extend(text.lines().map(str::to_owned));
        }
        let tokens = parse_tokens(entries.iter().map(String::as_str))?;
        if tokens.is_empty() && !self.addr.ip().is_loopback() {
            return Err(format!(
                "refusing to serve on {} without ORDER_CONSOLE_TOKENS: without tokens the console listens on a loopback address only",
                self.addr
            ));
        }
        if let Some(template) = &self.trace_url {
            let scheme_ok = template.starts_with("http://") || template.starts_with("https://");
            if !scheme_ok || !template.contains("{trace_id}") {
                return Err(
                    "invalid --trace-url: an http:// or https:// URL containing {trace_id}"
                        .to_owned(),
                );
            }
        }
        for (flag, url) in [
            ("--orders-queue-url", &self.orders_queue_url),
            ("--orders-dlq-url", &self.orders_dlq_url),
        ] {
            if let Some(url) = url.as_deref().filter(|u| !u.is_empty())
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(format!("invalid {flag}: an http:// or https:// queue URL"));
            }
        }
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(parse_proxy)
            .collect::<Result<Vec<_>, _>>()?;
        let mut store = self.database.store_config("order-console");
        // A console needs few connections; it must never crowd out the services. Six: a Flow
        // refresh reads four things side by side (its window, and the three state counts),
        // and the database scrape's two reads (connections, ping) must not queue behind them,
        // or a slow page would show the console's own database as failing.
        store.pool_size = store.pool_size.min(6);
        // Its sessions are read-only (`default_transaction_read_only`), which a connection
        // that must reach a writable server would take for a standby and refuse: any server
        // that answers will do, a read replica included.
        store.server = order_store::ServerRole::Any;
        Ok(Settings {
            addr: self.addr,
            targets,
            tokens,
            secure_cookies: self.secure_cookies,
            queue_url: self.orders_queue_url.clone().filter(|u| !u.is_empty()),
            dlq_url: self.orders_dlq_url.clone().filter(|u| !u.is_empty()),
            scrape_interval: Duration::from_millis(self.scrape_ms),
            refresh_interval: Duration::from_millis(self.refresh_ms),
            history: Duration::from_secs(self.history_minutes * 60),
            trace_url: self.trace_url.clone(),
            login_limit: LoginLimit::default(),
            trusted_proxies,
            store,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_of_every_subcommand_has_an_environment_variable() {
        use clap::CommandFactory;
        let missing = order_runtime::cli::settings_without_environment(&Cli::command());
        let undocumented = order_runtime::cli::settings_without_help(&Cli::command());
        assert!(
            undocumented.is_empty(),
            "no description in --help: {undocumented:?}"
        );
        assert!(missing.is_empty(), "no environment variable: {missing:?}");
        let not_boolish = order_runtime::cli::booleans_not_boolish(&Cli::command());
        assert!(
            not_boolish.is_empty(),
            "booleans without --flag=false and yes/no/1/0: {not_boolish:?}"
        );
    }

    /// A page waits as long as the server may take (three reads of statement timeout + 2 s,
    /// and a margin), and at least two refreshes.
    #[test]
    fn a_page_waits_as_long_as_the_server_may_take() {
        use clap::Parser;
        let patience = |extra: &[&str]| {
            let mut args = vec![
                "order-console",
                "serve",
                "--database-url",
                "postgres://u@h/d",
            ];
            args.extend_from_slice(extra);
            let Command::Serve(serve) = Cli::try_parse_from(args)
                .map_err(|e| e.to_string())?
                .command
            else {
                return Err("not serve".to_owned());
            };
            serve.settings().map(|s| s.page_patience())
        };
        assert_eq!(
            patience(&["--db-statement-timeout-ms", "5000", "--refresh-ms", "2000"]),
            Ok(Duration::from_secs(22)),
            "3 x (5 + 2) + 1"
        );
        assert_eq!(
            patience(&["--db-statement-timeout-ms", "500", "--refresh-ms", "200"]),
            Ok(Duration::from_millis(8500)),
            "3 x (0.5 + 2) + 1"
        );
        assert_eq!(
            patience(&["--db-statement-timeout-ms", "0", "--refresh-ms", "2000"]),
            Ok(MAX_ANSWER_PATIENCE),
            "no statement timeout: calls of minutes, a page that says so within one"
        );
        assert_eq!(
            patience(&["--db-statement-timeout-ms", "1000", "--refresh-ms", "60000"]),
            Ok(Duration::from_secs(120)),
            "two refreshes"
        );
    }

    #[test]
    fn targets_parse_or_name_the_problem() {
        assert_eq!(
            Target::parse("grpc=http://127.0.0.1:9464/"),
            Ok(Target {
                name: Some("grpc".into()),
                authority: "127.0.0.1:9464".into()
            })
        );
        assert_eq!(
            Target::parse("http://localhost:1").map(|t| t.authority),
            Ok("localhost:1".into())
        );
        for bad in [
            "https://x:1",
            "http://x",
            "http://x:0",
            "http://x:99999",
            "http://u@x:1",
            "http://x:1/path",
            "=http://x:1",
            "bad name=http://x:1",
            "<script>=http://x:1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let tokens = parse_tokens(["ops=0123456789abcdef", "# comment", ""]).unwrap_or_default();
        assert_eq!(tokens.len(), 1);
        assert!(!format!("{tokens:?}").contains("0123456789abcdef"));
        assert!(parse_tokens(["ops=short"]).is_err());
        assert!(parse_tokens(["nokey"]).is_err());
        assert!(parse_tokens(["a=0123456789abcdef", "a=0123456789abcdeg"]).is_err());
        assert!(parse_tokens(["a=0123456789 abcdef"]).is_err());
        // A secret is never quoted back, whatever shape the mistake takes.
        for bad in [
            vec!["Zm9vYmFyYmF6cXV4cXV1eA=="],
            vec!["ops=0123456789abcdef", "c2VjcmV0LXNlY3JldA="],
            vec!["s3cr3tvalue0123456789"],
        ] {
            let err = parse_tokens(bad.iter().copied()).unwrap_err();
            for part in bad
                .iter()
                .flat_map(|e| e.split('='))
                .filter(|p| p.len() > 5)
            {
                assert!(
                    !err.contains(part),
                    "{bad:?}: the error quotes {part:?}: {err}"
                );
            }
        }
        let second = parse_tokens(["ops=0123456789abcdef", "c2VjcmV0LXNlY3JldA="]).unwrap_err();
        assert!(second.contains("entry 2"), "{second}");
        let same = parse_tokens(["a=0123456789abcdef", "b=0123456789abcdef"]).unwrap_err();
        assert!(
            same.contains("entries 1 and 2 are the same token"),
            "{same}"
        );
    }
}
