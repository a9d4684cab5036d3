//! Replacing pooled connections after the database server changed.
//!
//! A failover moves the primary to another server. Connections to the old one either break
//! (the pool drops a closed connection at its next checkout) or, worse, stay open to a server
//! that no longer takes writes (a demoted primary, a DNS name that still points at a reader).
//! When one call learns that its server refuses writes (SQLSTATE 25006), is shutting down
//! (57P01, 57P02, 57P03), or did not answer at all within the client-side time limit, every
//! connection of the process opened before that moment is suspect: they were opened to the same
//! server. The same when a new connection meets a writable server on a later timeline than
//! the process wrote on (see the `connect` module): the others may be on the old primary.
//! Each is discarded at its next checkout instead of being used, and the pool opens a
//! new one, which finds the current primary (`target_session_attrs=read-write`, see
//! [`crate::StoreConfig::server`]).
//!
//! The mark is process-wide: the error that reveals it carries no pool. A process with two
//! pools (order-grpc's primary and read-replica pools) reconnects both, which costs a connect
//! per pooled connection and happens only when a server changes or stops answering.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Hook, HookError};

/// The instant the marks below count from.
static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Connections opened before `BASE` + this many nanoseconds are discarded (0: none).
static DISCARD_BEFORE: AtomicU64 = AtomicU64::new(0);
/// When the last warning about it was logged (nanoseconds after `BASE`).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

fn nanos_since_base(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*BASE).as_nanos()).unwrap_or(u64::MAX)
}

/// Why the pooled connections are no longer trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The server refused a write: it is read-only now (a standby, a demoted primary).
    ReadOnly,
    /// The server is shutting down or restarting.
    ShuttingDown,
    /// A call got no answer at all within the client-side limit.
    NoAnswer,
    /// A writable server on a later timeline than those the process wrote to (a failover):
    /// its connections may be on the old primary.
    NewerTimeline,
}

impl Reason {
    const ALL: [Self; 4] = [
        Self::ReadOnly,
        Self::ShuttingDown,
        Self::NoAnswer,
        Self::NewerTimeline,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::ShuttingDown => "shutting_down",
            Self::NoAnswer => "no_answer",
            Self::NewerTimeline => "newer_timeline",
        }
    }
}

/// Put `order_db_server_changes_total` (each reason) and `order_db_connections_replaced_total`
/// on the installed metrics recorder at 0, so that a rate or an alarm over these rare counters
/// has a series before the first change. Call it once the recorder is installed (a service's
/// start).
pub fn register_metrics() {
    metrics::counter!("order_db_connections_replaced_total").increment(0);
    for reason in Reason::ALL {
        metrics::counter!("order_db_server_changes_total", "reason" => reason.as_str())
            .increment(0);
    }
}

/// Every connection opened before now is discarded at its next checkout.
pub(crate) fn discard_connections_opened_before_now(reason: Reason) {
    let now = nanos_since_base(Instant::now()).max(1);
    DISCARD_BEFORE.fetch_max(now, Ordering::Relaxed);
    // A possible failover: the next connection for writing looks at every host again (not
    // for a later timeline met: that was a look, or a connection, that found it already).
    if reason != Reason::NewerTimeline {
        crate::connect::connection_lost();
    }
    metrics::counter!("order_db_server_changes_total", "reason" => reason.as_str()).increment(1);
    // One warning per burst: every call that was in flight reports the same change.
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now.saturating_sub(last) > Duration::from_secs(1).as_nanos() as u64
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            reason = reason.as_str(),
            "the database server changed or stopped answering; replacing pooled connections"
        );
    }
}

/// Whether a connection opened at `opened` must not be used any more.
pub(crate) fn is_stale(opened: Instant) -> bool {
    let before = DISCARD_BEFORE.load(Ordering::Relaxed);
    before != 0 && nanos_since_base(opened) < before
}

/// The pool hook that discards stale connections at checkout (before the pool's own check).
pub(crate) fn pre_recycle_hook() -> Hook {
    // The base must exist before the first connection is opened, or every connection would
    // count as opened at the base.
    LazyLock::force(&BASE);
    Hook::sync_fn(|_, metrics| {
        if is_stale(metrics.created) {
            metrics::counter!("order_db_connections_replaced_total").increment(1);
            Err(HookError::message(
                "opened before the database server changed",
            ))
        } else {
            Ok(())
        }
    })
}

tokio::task_local! {
    /// Where the call being timed (see [`crate::EventStore::timed`]) stands with the pool:
    /// 0 it asked for no connection, 1 it waits for one, 2 + n it got one n nanoseconds after
    /// `BASE`.
    static ACQUIRED: Arc<AtomicU64>;
}

/// Run `call` noting how it stands with the pool (see [`waiting_for_connection`] and the
/// pool's hooks): returns the call and the note to read while it runs.
pub(crate) fn noting_acquisition<F: Future>(
    call: F,
) -> (impl Future<Output = F::Output>, Arc<AtomicU64>) {
    let note = Arc::new(AtomicU64::new(0));
    (ACQUIRED.scope(note.clone(), call), note)
}

/// How a timed call stands with the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pooled {
    /// It asked for no pooled connection (it uses one it was given).
    NotAsked,
    /// It waits for a free connection.
    Waiting,
    /// It got one at this instant.
    Since(Instant),
}

pub(crate) fn pooled(note: &AtomicU64) -> Pooled {
    match note.load(Ordering::Relaxed) {
        0 => Pooled::NotAsked,
        1 => Pooled::Waiting,
        n => Pooled::Since(*BASE + Duration::from_nanos(n - 2)),
    }
}

/// Note that the call being timed is about to wait for a pooled connection.
pub(crate) fn waiting_for_connection() {
    let _ = ACQUIRED.try_with(|note| note.store(1, Ordering::Relaxed));
}

/// The pool hook (after a connection is made or checked for reuse) that notes, for the call
/// being timed, that it has its connection.
pub(crate) fn acquired_hook() -> Hook {
    LazyLock::force(&BASE);
    Hook::sync_fn(|_, _| {
        let _ = ACQUIRED.try_with(|note| {
            note.store(
                nanos_since_base(Instant::now()).saturating_add(2),
                Ordering::Relaxed,
            );
        });
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_change_are_stale_and_later_ones_are_not() {
        LazyLock::force(&BASE);
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        discard_connections_opened_before_now(Reason::ReadOnly);
        std::thread::sleep(Duration::from_millis(2));
        let after = Instant::now();
        assert!(is_stale(before));
        assert!(!is_stale(after));
        // A later change covers the later connection too; the mark never moves back.
        discard_connections_opened_before_now(Reason::NoAnswer);
        assert!(is_stale(after));
        DISCARD_BEFORE.fetch_max(1, Ordering::Relaxed);
        assert!(is_stale(after));
    }
}
