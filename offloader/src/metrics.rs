//! Every Prometheus metric of the offloader, in one registry per instance (tests run several
//! offloaders in one process). Gauges of jobs by type and state and the queue length are read
//! from the store at scrape time, so they are right after a restart too.

use calls_protocol::jobs::{JobState, JobType};
use prometheus::{
    CounterVec, Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::store::Store;

mod job_series;
pub use job_series::JobHistograms;

pub struct Metrics {
    registry: Registry,
    jobs: IntGaugeVec,
    queue_length: IntGauge,
    pub job_duration: HistogramVec,
    pub container_start_latency: HistogramVec,
    pub queue_wait: HistogramVec,
    pub api_requests: IntCounterVec,
    pub webhook_failures: IntCounterVec,
    pub job_reported: CounterVec,
    /// Counters of `calls_protocol::job_metrics::JOB_SERIES`, by reported name.
    job_series_counters: Vec<(&'static str, CounterVec)>,
    /// Histograms of `calls_protocol::job_metrics::JOB_SERIES`.
    pub job_histograms: JobHistograms,
    pub auth_key_checks: IntCounterVec,
    pub connections_refused: prometheus::IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let jobs = IntGaugeVec::new(
            Opts::new(
                "calls_offloader_jobs",
                "jobs in the store by type and state",
            ),
            &["type", "state"],
        )
        .expect("static metric definition is valid");
        let queue_length = IntGauge::new(
            "calls_offloader_queue_length",
            "jobs waiting in the queue for a free slot",
        )
        .expect("static metric definition is valid");
        let job_duration = HistogramVec::new(
            HistogramOpts::new(
                "calls_offloader_job_duration_seconds",
                "run time of finished jobs (start to end) by type and final state",
            )
            .buckets(vec![
                1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
            ]),
            &["type", "state"],
        )
        .expect("static metric definition is valid");
        let container_start_latency = HistogramVec::new(
            HistogramOpts::new(
                "calls_offloader_container_start_latency_seconds",
                "time to create and start a job's container",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0]),
            &["type"],
        )
        .expect("static metric definition is valid");
        let queue_wait = HistogramVec::new(
            HistogramOpts::new(
                "calls_offloader_queue_wait_seconds",
                "time from job creation to its container running",
            )
            .buckets(vec![0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0]),
            &["type"],
        )
        .expect("static metric definition is valid");
        let api_requests = IntCounterVec::new(
            Opts::new(
                "calls_offloader_api_requests_total",
                "API requests by route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("static metric definition is valid");
        let webhook_failures = IntCounterVec::new(
            Opts::new(
                "calls_offloader_webhook_failures_total",
                "failed webhook attempts; gave_up=true when all retries failed",
            ),
            &["gave_up"],
        )
        .expect("static metric definition is valid");
        let job_reported = CounterVec::new(
            Opts::new(
                "calls_offloader_job_reported_total",
                "counters reported by jobs through the status API, summed over jobs",
            ),
            &["type", "name"],
        )
        .expect("static metric definition is valid");
        let auth_key_checks = IntCounterVec::new(
            Opts::new(
                "calls_offloader_auth_key_checks_total",
                "client key checks (Basic auth, /login) by outcome: cached (no argon2), verified, rejected, rate_limited (refused before argon2)",
            ),
            &["outcome"],
        )
        .expect("static metric definition is valid");
        let connections_refused = prometheus::IntCounter::new(
            "calls_offloader_api_connections_refused_total",
            "connections closed on accept because api.max_connections were open",
        )
        .expect("static metric definition is valid");
        let job_series_counters = job_series::counters();
        let job_histograms = JobHistograms::new();
        for (_, counter) in &job_series_counters {
            registry
                .register(Box::new(counter.clone()))
                .expect("each metric name is registered once");
        }
        registry
            .register(Box::new(job_histograms.clone()))
            .expect("each metric name is registered once");
        for collector in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(queue_length.clone()),
            Box::new(job_duration.clone()),
            Box::new(container_start_latency.clone()),
            Box::new(queue_wait.clone()),
            Box::new(api_requests.clone()),
            Box::new(webhook_failures.clone()),
            Box::new(job_reported.clone()),
            Box::new(auth_key_checks.clone()),
            Box::new(connections_refused.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric name is registered once");
        }
        Metrics {
            registry,
            jobs,
            queue_length,
            job_duration,
            container_start_latency,
            queue_wait,
            api_requests,
            webhook_failures,
            job_reported,
            job_series_counters,
            job_histograms,
            auth_key_checks,
            connections_refused,
        }
    }

    /// A job reported a counter that grew by `increase` (maybe 0): the generic series grows, and the named
    /// one when it is a job series (exported from its first report on, at 0 if nothing happened yet).
    pub fn job_counter_reported(&self, job_type: JobType, name: &str, increase: f64) {
        if increase > 0.0 {
            self.job_reported
                .with_label_values(&[job_type.as_str(), name])
                .inc_by(increase);
        }
        if let Some((_, counter)) = self.job_series_counters.iter().find(|(n, _)| *n == name) {
            let counter = counter.with_label_values(&[job_type.as_str()]);
            if increase > 0.0 {
                counter.inc_by(increase);
            }
        }
    }

    /// Refreshes the store-derived gauges and renders the text exposition format.
    pub fn render(&self, store: &Store) -> crate::error::Result<String> {
        let counts = store.counts()?;
        for job_type in JobType::ALL {
            for state in JobState::ALL {
                let n = counts
                    .iter()
                    .find(|(t, s, _)| *t == job_type && *s == state)
                    .map_or(0, |(_, _, n)| *n);
                self.jobs
                    .with_label_values(&[job_type.as_str(), state.as_str()])
                    .set(n);
            }
        }
        let queued: i64 = counts
            .iter()
            .filter(|(_, s, _)| *s == JobState::Queued)
            .map(|(_, _, n)| n)
            .sum();
        self.queue_length.set(queued);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .map_err(|e| crate::error::Error::Internal(format!("metrics encoding: {e}")))?;
        String::from_utf8(out)
            .map_err(|e| crate::error::Error::Internal(format!("metrics encoding: {e}")))
    }
}
