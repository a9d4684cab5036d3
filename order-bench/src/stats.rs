//! Latency samples and rates.

use std::time::Duration;

/// Latencies of one measured run, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    pub fn record(&mut self, elapsed: Duration) {
        self.micros
            .push(elapsed.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub fn count(&self) -> usize {
        self.micros.len()
    }

    /// The `q` quantile (0.0-1.0) in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        self.micros.sort_unstable();
        let index = ((self.micros.len() as f64 - 1.0) * q).round() as usize;
        self.micros[index.min(self.micros.len() - 1)] as f64 / 1000.0
    }
}

/// A finished run: how many operations in how long, and their latencies.
#[derive(Debug, Clone)]
pub struct Run {
    pub samples: Samples,
    pub elapsed: Duration,
    pub errors: usize,
    /// CPU seconds every PostgreSQL process used during the run (0 where not measured).
    pub pg_cpu: f64,
    /// CPU seconds the bench's own process used during the run (0 where not measured).
    pub own_cpu: f64,
    /// The machine's idle and total CPU ticks during the run (0 where not measured).
    pub machine: (u64, u64),
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.samples.count() as f64 / self.elapsed.as_secs_f64()
    }

    /// PostgreSQL CPU per operation, in microseconds.
    pub fn pg_micros(&self) -> f64 {
        self.pg_cpu / self.samples.count().max(1) as f64 * 1e6
    }

    /// The share of the machine's CPU time that was idle during the run, in percent.
    pub fn idle_percent(&self) -> f64 {
        self.machine.0 as f64 / self.machine.1.max(1) as f64 * 100.0
    }

    /// The bench process's own CPU per operation, in microseconds.
    pub fn own_micros(&self) -> f64 {
        self.own_cpu / self.samples.count().max(1) as f64 * 1e6
    }
}
