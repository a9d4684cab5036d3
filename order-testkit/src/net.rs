//! Local TCP ports for servers that tests and benchmarks start as child processes.
//!
//! The usual trick, binding port 0 and letting the port go, hands out a port from the kernel's
//! ephemeral range: the very range every outgoing connection on the machine (a test's
//! PostgreSQL or SQS client, say) takes its local port from. Between the release and the
//! child's own `bind`, such a connection can take the port, and the child fails with "Address
//! already in use". [`free_port`] picks below that range instead, where only explicit binds
//! go, at random so that concurrent test processes do not pick the same port, and never twice
//! in one process.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Mutex;

/// The lowest port handed out: above the well-known and most registered service ports.
const LOWEST: u16 = 15_000;

/// Ports this process has handed out already (a server may not have bound its port yet).
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A port on 127.0.0.1 that nothing listens on now, outside the kernel's ephemeral port range
/// (so no outgoing connection takes it before the server it is meant for binds it), and not
/// handed out before by this process.
///
/// # Errors
///
/// When no port in the range can be bound (after trying every one of them).
///
/// # Example
///
/// ```
/// let port = order_testkit::net::free_port().expect("a free port");
/// let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bound");
/// assert_eq!(listener.local_addr().expect("an address").port(), port);
/// ```
pub fn free_port() -> std::io::Result<u16> {
    let (low, high) = candidates();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    pick(low, high, handed_out.get_or_insert_with(HashSet::new))
}

/// A port in `low..=high`, tried from a random start, that is not in `handed_out` and binds
/// now; added to `handed_out`.
fn pick(low: u16, high: u16, handed_out: &mut HashSet<u16>) -> std::io::Result<u16> {
    let span = u64::from(high - low) + 1;
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for step in 0..span {
        let offset = (start % span + step) % span;
        let Ok(port) = u16::try_from(u64::from(low) + offset) else {
            continue;
        };
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no free port on 127.0.0.1 between {low} and {high}"),
    ))
}

/// [`free_port`] as an address on 127.0.0.1.
///
/// # Errors
///
/// As [`free_port`].
pub fn free_addr() -> std::io::Result<SocketAddr> {
    Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?)))
}

/// The ports to choose from: below the ephemeral range (Linux: from
/// `/proc/sys/net/ipv4/ip_local_port_range`), or above it if it starts too low.
fn candidates() -> (u16, u16) {
    let (ephemeral_low, ephemeral_high) =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|text| {
                let mut fields = text.split_whitespace().map(str::parse::<u16>);
                match (fields.next(), fields.next()) {
                    (Some(Ok(low)), Some(Ok(high))) => Some((low, high)),
                    _ => None,
                }
            })
            // Linux's default; other systems' (49152-65535) lie above it.
            .unwrap_or((32_768, 60_999));
    if ephemeral_low > LOWEST + 1_000 {
        (LOWEST, ephemeral_low - 1)
    } else {
        (ephemeral_high.saturating_add(1).min(65_000), 65_535)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_bindable_and_never_handed_out_twice() {
        let (low, high) = candidates();
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let port = free_port().expect("a free port");
            assert!((low..=high).contains(&port), "{port} outside {low}-{high}");
            assert!(seen.insert(port), "{port} handed out twice");
        }
        let ephemeral =
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").expect("Linux");
        let mut fields = ephemeral
            .split_whitespace()
            .map(|f| f.parse::<u16>().expect("a port"));
        let (e_low, e_high) = (fields.next().expect("low"), fields.next().expect("high"));
        assert!(seen.iter().all(|p| !(e_low..=e_high).contains(p)));
        // What an outgoing connection gets lies in the ephemeral range: the two never meet.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bound");
        let out =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connected");
        let local = out.local_addr().expect("addr").port();
        assert!((e_low..=e_high).contains(&local));
    }

    #[test]
    fn a_port_something_listens_on_is_skipped() {
        // Three neighbouring free ports; something listens on two of them.
        let (low, mut held, listener) = (0..100)
            .find_map(|_| {
                let low = free_port().ok()?;
                let mut bound = (low..low + 3)
                    .map(|port| TcpListener::bind((Ipv4Addr::LOCALHOST, port)).ok())
                    .collect::<Option<Vec<_>>>()?;
                let last = bound.pop()?;
                Some((low, bound, last))
            })
            .expect("three neighbouring free ports");
        assert_eq!(held.len(), 2);
        let free_one = low + 2;
        drop(listener);
        for _ in 0..50 {
            let mut handed_out = HashSet::new();
            assert_eq!(
                pick(low, low + 2, &mut handed_out).expect("one free"),
                free_one
            );
        }
        // Handed out once, it is not handed out again; nothing else is free.
        let mut handed_out = HashSet::from([free_one]);
        let err = pick(low, low + 2, &mut handed_out).expect_err("none left");
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        held.clear();
    }
}
