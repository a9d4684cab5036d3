//! Who may look: named console tokens. A person signs in once with a token and gets a session
//! cookie (HttpOnly, SameSite=Strict, random, kept only in memory); a script sends
//! `authorization: Bearer <token>`. Tokens are compared in constant time and never logged.
//! Without tokens (a console on a loopback address) everyone on the machine may look.
//! Failed sign-ins are limited per client address ([`Limiter`]): a guesser gets a few tries a
//! window, then 429 without its token being checked.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{LoginLimit, Token};

/// The session cookie's name.
pub const COOKIE: &str = "order_console_session";
/// How long a session lasts.
pub const SESSION: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once (the oldest are dropped beyond).
const MAX_SESSIONS: usize = 10_000;

/// Most client addresses whose failed sign-ins are remembered at once (beyond, those whose
/// window ended are dropped, then the one whose window started first).
const MAX_CLIENTS: usize = 10_000;

/// The tokens, the live sessions and the failed sign-ins.
#[derive(Debug)]
pub struct Auth {
    tokens: Vec<(String, [u8; 32])>,
    sessions: Mutex<HashMap<[u8; 32], (String, Instant)>>,
    /// Failed sign-ins per client address.
    pub limiter: Limiter,
}

/// Failed sign-ins per client address, bounded in memory (`MAX_CLIENTS` addresses): an
/// address that failed [`LoginLimit::failures`] times within [`LoginLimit::window`] of its
/// first failure is refused until that window ends (every try counts as a failure unless
/// its token was valid). An IPv6 client is its /64 (one host holds a whole /64 and could
/// otherwise take a new address for every try).
#[derive(Debug)]
pub struct Limiter {
    limit: LoginLimit,
    /// Per client: failures, and when the first of this window was.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// The key of a client address: an IPv4 address (an IPv4-mapped one as itself), an IPv6
/// address's /64.
fn client_key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Limiter {
    /// No failures yet.
    pub fn new(limit: LoginLimit) -> Self {
        Self {
            limit,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// `client` tries a token: `Err(wait)` when it may not before `wait` has passed (its
    /// token is not to be checked); else the try is counted as a failure until
    /// [`Limiter::forgive`] or [`Limiter::succeeded`] says otherwise, in the same step as the
    /// check, so that tries sent at once cannot all pass it.
    pub fn attempt(&self, client: IpAddr) -> Result<(), Duration> {
        self.attempt_at(client, Instant::now())
    }

    fn attempt_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let window = self.limit.window;
        let key = client_key(client);
        let mut failures = lock(&self.failures);
        match failures.get_mut(&key) {
            Some((count, first)) if now.saturating_duration_since(*first) < window => {
                if *count >= self.limit.failures {
                    return Err(window - now.saturating_duration_since(*first));
                }
                *count = count.saturating_add(1);
            }
            Some(entry) => *entry = (1, now),
            None => {
                if failures.len() >= MAX_CLIENTS {
                    failures.retain(|_, (_, first)| now.saturating_duration_since(*first) < window);
                }
                if failures.len() >= MAX_CLIENTS
                    && let Some(oldest) = failures
                        .iter()
                        .min_by_key(|(_, (_, first))| *first)
                        .map(|(key, _)| *key)
                {
                    failures.remove(&oldest);
                }
                failures.insert(key, (1, now));
            }
        }
        Ok(())
    }

    /// `client`'s last try was a valid token (a script's bearer token): it does not count.
    pub fn forgive(&self, client: IpAddr) {
        if let Some((count, _)) = lock(&self.failures).get_mut(&client_key(client)) {
            *count = count.saturating_sub(1);
        }
    }

    /// `client` signed in: its failures are forgotten.
    pub fn succeeded(&self, client: IpAddr) {
        lock(&self.failures).remove(&client_key(client));
    }

    /// How many client addresses are remembered.
    pub fn clients(&self) -> usize {
        lock(&self.failures).len()
    }
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the configured tokens (none: open) and the limit of failed sign-ins.
    pub fn new(tokens: &[Token], limit: LoginLimit) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| (t.name.clone(), digest(&t.secret)))
                .collect(),
            sessions: Mutex::new(HashMap::new()),
            limiter: Limiter::new(limit),
        }
    }

    /// Whether sign-in is required.
    pub fn required(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The name of the token `secret` is, checking every token.
    pub fn token_name(&self, secret: &str) -> Option<String> {
        let candidate = digest(secret);
        let mut found = None;
        for (name, expected) in &self.tokens {
            if same(&candidate, expected) && found.is_none() {
                found = Some(name.clone());
            }
        }
        found
    }

    /// Start a session for `name`: the cookie value.
    pub fn start_session(&self, name: String) -> String {
        let id = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut sessions = self.lock();
        let now = Instant::now();
        sessions.retain(|_, (_, expires)| *expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(k, _)| *k)
        {
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&id), (name, now + SESSION));
        id
    }

    /// Who holds session `id`, if it is live.
    pub fn session(&self, id: &str) -> Option<String> {
        let sessions = self.lock();
        sessions
            .get(&digest(id))
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(name, _)| name.clone())
    }

    /// End session `id`.
    pub fn end_session(&self, id: &str) {
        self.lock().remove(&digest(id));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        lock(&self.sessions)
    }
}

/// The session id in a `cookie` header, if any.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|part| part.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The console's own pages (and `/`, which goes to the first): the only places sign-in
/// returns to.
const PAGES: [&str; 7] = [
    "/",
    "/services",
    "/flow",
    "/subscriptions",
    "/queues",
    "/orders",
    "/alarms",
];

/// One of the console's own pages to return to after sign-in (a page of the navigation or an
/// order's page, its id a UUID, with any query); anything else, same-site paths included,
/// becomes `/services`.
pub fn safe_next(next: Option<&str>) -> String {
    let own_page = |path: &str| {
        let page = path.split_once('?').map_or(path, |(page, _)| page);
        PAGES.contains(&page)
            || page
                .strip_prefix("/orders/")
                .is_some_and(|id| uuid::Uuid::parse_str(id).is_ok())
    };
    match next {
        Some(path)
            if path.len() <= 512
                && path.bytes().all(|b| b.is_ascii_graphic())
                && own_page(path) =>
        {
            path.to_owned()
        }
        _ => "/services".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_sessions_and_redirects() {
        let auth = Auth::new(
            &[Token {
                name: "ops".into(),
                secret: "0123456789abcdef".into(),
            }],
            LoginLimit::default(),
        );
        assert!(auth.required());
        assert_eq!(auth.token_name("0123456789abcdef").as_deref(), Some("ops"));
        assert_eq!(auth.token_name("0123456789abcdeF"), None);
        let id = auth.start_session("ops".into());
        assert_eq!(auth.session(&id).as_deref(), Some("ops"));
        assert_eq!(
            session_cookie(&format!("a=b; {COOKIE}={id}")),
            Some(id.as_str())
        );
        assert_eq!(session_cookie(&format!("{COOKIE}=<script>")), None);
        auth.end_session(&id);
        assert_eq!(auth.session(&id), None);
        let order = "/orders/0196a3c4-7f5e-7c1a-9c2b-2f0d4f1e8a10?y=1";
        assert_eq!(safe_next(Some(order)), order);
        assert_eq!(safe_next(Some("/orders?q=1")), "/orders?q=1");
        assert_eq!(safe_next(Some("/")), "/");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "/a b",
            "/logout",
            "/static/console.js",
            "/api/charts/flow",
            "/fragments/flow",
            "/orders/",
            "/orders/a/b",
            "/orders/x",
            // Browsers read `\` as `/` in an http URL: this would land on /logout.
            "/orders/..\\logout",
            "/orders/..\\api\\charts\\flow",
            "/flowers",
            "/services/../logout",
        ] {
            assert_eq!(safe_next(Some(bad)), "/services", "{bad}");
        }
    }

    /// Five failures in the window, then refused until it ends, counted from the first; a
    /// valid bearer token does not count, a sign-in forgets them; an IPv6 client is its /64;
    /// the memory is bounded.
    #[test]
    fn failed_sign_ins_are_limited_and_bounded() {
        let window = Duration::from_secs(60);
        let limiter = Limiter::new(LoginLimit {
            failures: 5,
            window,
        });
        let start = Instant::now();
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        for second in 0..5 {
            let at = start + Duration::from_secs(second);
            assert_eq!(limiter.attempt_at(one, at), Ok(()), "try {second}");
        }
        // Counted as it is checked: a sixth try sent with the others is refused too.
        let at = start + Duration::from_secs(10);
        assert_eq!(limiter.attempt_at(one, at), Err(Duration::from_secs(50)));
        assert_eq!(limiter.attempt_at(two, at), Ok(()));
        // The next window starts at the next try.
        assert_eq!(limiter.attempt_at(one, start + window), Ok(()));
        limiter.succeeded(one);
        limiter.succeeded(two);
        assert_eq!(limiter.clients(), 0);
        // A valid bearer token, however often: no failure.
        for _ in 0..20 {
            assert_eq!(limiter.attempt_at(one, start), Ok(()));
            limiter.forgive(one);
        }

        // One host's /64 is one client; an IPv4-mapped address is the IPv4 one.
        for host in 1..=5u16 {
            let address = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, host));
            assert_eq!(limiter.attempt_at(address, start), Ok(()));
        }
        let same_net: IpAddr = "2001:db8:0:1:ffff::9".parse().unwrap();
        assert!(limiter.attempt_at(same_net, start).is_err());
        let next_net: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        assert_eq!(limiter.attempt_at(next_net, start), Ok(()));
        for _ in 0..5 {
            assert_eq!(limiter.attempt_at(two, start), Ok(()));
        }
        let mapped: IpAddr = "::ffff:192.0.2.2".parse().unwrap();
        assert!(limiter.attempt_at(mapped, start).is_err());

        // Bounded: beyond MAX_CLIENTS the oldest window goes.
        let limiter = Limiter::new(LoginLimit::default());
        let oldest: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.attempt_at(oldest, start), Ok(()));
        }
        let later = start + Duration::from_secs(1);
        for n in 0..MAX_CLIENTS as u32 {
            let address = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(limiter.attempt_at(address, later), Ok(()));
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS);
        assert_eq!(limiter.attempt_at(oldest, later), Ok(()), "forgotten");
        // Windows that ended are dropped first.
        let much_later = start + Duration::from_secs(120);
        assert_eq!(limiter.attempt_at(two, much_later), Ok(()));
        assert_eq!(limiter.clients(), 1);
    }
}
