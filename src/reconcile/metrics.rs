//! Prometheus metrics of the reconciler: reconciles, errors by reason, queue depth, and the
//! latency from a wake-up (someone else's commit) to the reconciler's first commit for it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::state::path::ObjectKey;

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The reconciler's metrics.
#[derive(Debug, Default)]
pub struct ReconcileMetrics {
    /// Reconciles finished.
    pub reconciles: AtomicU64,
    /// Objects waiting in the queue.
    pub queue_depth: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
    woken: Mutex<HashMap<ObjectKey, Instant>>,
    latency: Mutex<Histogram>,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl ReconcileMetrics {
    /// Counts a failed reconcile.
    pub fn error(&self, reason: &str) {
        if let Ok(mut e) = self.errors.lock() {
            *e.entry(reason.to_string()).or_default() += 1;
        }
    }

    /// Notes that `key` was woken by someone else's change now (the first wake counts).
    pub fn woken(&self, key: &ObjectKey) {
        if let Ok(mut w) = self.woken.lock() {
            w.entry(key.clone()).or_insert_with(Instant::now);
        }
    }

    /// Notes that the reconciler committed for `key`; observes the wake→commit latency.
    pub fn committed(&self, key: &ObjectKey) {
        let started = self.woken.lock().ok().and_then(|mut w| w.remove(key));
        if let (Some(t), Ok(mut h)) = (started, self.latency.lock()) {
            let secs = t.elapsed().as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        header(
            &mut out,
            "gaffer_reconciles_total",
            "counter",
            "Reconciles finished.",
        );
        let _ = writeln!(
            out,
            "gaffer_reconciles_total {}",
            self.reconciles.load(Ordering::Relaxed)
        );
        header(
            &mut out,
            "gaffer_reconcile_errors_total",
            "counter",
            "Failed reconciles, by reason.",
        );
        if let Ok(e) = self.errors.lock() {
            for (reason, n) in e.iter() {
                let _ = writeln!(
                    out,
                    "gaffer_reconcile_errors_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        header(
            &mut out,
            "gaffer_queue_depth",
            "gauge",
            "Objects waiting to be reconciled.",
        );
        let _ = writeln!(
            out,
            "gaffer_queue_depth {}",
            self.queue_depth.load(Ordering::Relaxed)
        );
        let name = "gaffer_wake_to_commit_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "From someone else's commit waking an object to the reconciler's first commit for it.",
        );
        if let Ok(h) = self.latency.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.count);
        }
        out
    }
}

/// Writes the `# HELP` and `# TYPE` lines of a Prometheus metric.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_errors_and_latency() {
        let m = ReconcileMetrics::default();
        m.reconciles.fetch_add(3, Ordering::Relaxed);
        m.error("agent");
        m.error("agent");
        m.error("store");
        let key = ObjectKey::Settings;
        m.woken(&key);
        m.committed(&key);
        m.committed(&key); // a second commit without a new wake is not observed
        let text = m.render();
        assert!(text.contains("gaffer_reconciles_total 3"), "{text}");
        assert!(
            text.contains("gaffer_reconcile_errors_total{reason=\"agent\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gaffer_reconcile_errors_total{reason=\"store\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gaffer_wake_to_commit_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("gaffer_wake_to_commit_seconds_bucket{le=\"+Inf\"} 1"),
            "{text}"
        );
    }
}
