//! Who may look: named console tokens. A person signs in once with a token and gets a session
//! cookie (HttpOnly, SameSite=Strict, random, kept only in memory); a script sends
//! `authorization: Bearer <token>`. Tokens are compared in constant time and never logged.
//! Without tokens (a console on a loopback address) everyone on the machine may look.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::Token;

/// The session cookie's name.
pub const COOKIE: &str = "order_console_session";
/// How long a session lasts.
pub const SESSION: Duration = Duration::from_secs(12 * 3600);
/// Most sessions kept at once (the oldest are dropped beyond).
const MAX_SESSIONS: usize = 10_000;

/// The tokens and the live sessions.
#[derive(Debug)]
pub struct Auth {
    tokens: Vec<(String, [u8; 32])>,
    sessions: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equal without an early exit.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// From the configured tokens (none: open).
    pub fn new(tokens: &[Token]) -> Self {
        Self {
            tokens: tokens
                .iter()
                .map(|t| (t.name.clone(), digest(&t.secret)))
                .collect(),
            sessions: Mutex::new(HashMap::new()),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (String, Instant)>> {
        match self.sessions.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
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
        let auth = Auth::new(&[Token {
            name: "ops".into(),
            secret: "0123456789abcdef".into(),
        }]);
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
}
