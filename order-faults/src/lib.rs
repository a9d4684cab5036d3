//! Fault injection for the order ledger: the real services (`order-grpc`, `order-projector`,
//! `order-worker`) as child processes on a PostgreSQL cluster and an SQS emulator of their own
//! ([`stack`]), a steady load of orders retried with the same command ids ([`load`]), faults
//! ([`scenarios`]), and an audit of every acknowledged command ([`audit`]): nothing lost,
//! nothing applied twice, no event skipped, every order settled.
//!
//! The `order-faults` binary runs the scenarios many times and prints the figures
//! (`scripts/faults`); order-e2e's tests run each once. The `order-restore-drill` binary
//! rehearses a point-in-time restore of the log end to end ([`drill`], `scripts/restore-drill`).

pub mod audit;
pub mod drill;
pub mod load;
pub mod scenarios;
pub mod stack;

/// Run `work` until it ends or the process gets SIGINT (Ctrl-C) or SIGTERM. On a signal the
/// work is dropped, and with it its clusters, emulators and services (their `Drop` stops
/// them), and the answer is an error; without this the signal would end the process at once,
/// and the PostgreSQL clusters, which run in sessions of their own, would be left running.
/// Call it from `main`, so that the runtime, dropped when `main` returns, drops the tasks
/// the work spawned too.
pub async fn until_signal<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        result = work => result,
        _ = terminate.recv() => anyhow::bail!("stopped by SIGTERM: what it started is stopped"),
        _ = interrupt.recv() => anyhow::bail!("stopped by SIGINT: what it started is stopped"),
    }
}
