//! The series jobs report that the offloader exports under their own names
//! ([`calls_protocol::job_metrics::JOB_SERIES`]): counters as `CounterVec`s, histograms through a small
//! collector, since a job reports whole histograms (bucket counts and sum) rather than single observations.
//!
//! Jobs report absolute values for themselves; what is exported grows by the increase since the job's
//! previous report, kept in memory per job. After an offloader restart the first report of a running job
//! adds all of it again, which is right: the exported totals restarted from zero with the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use calls_protocol::job_metrics::{SeriesKind, JOB_SERIES};
use calls_protocol::jobs::{HistogramReport, JobType};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{CounterVec, Opts};

/// The exported name of a job series.
pub fn exported_name(series: &str) -> String {
    format!("calls_offloader_jobs_{series}")
}

/// Counters of [`JOB_SERIES`], labelled by job type.
pub fn counters() -> Vec<(&'static str, CounterVec)> {
    JOB_SERIES
        .iter()
        .filter(|series| series.kind == SeriesKind::Counter)
        .map(|series| {
            let counter = CounterVec::new(
                Opts::new(exported_name(series.name), series.help),
                &["type"],
            )
            .expect("static metric definition is valid");
            (series.name, counter)
        })
        .collect()
}

#[derive(Debug, Default)]
struct Totals {
    /// (series, job type) → bucket counts and sum over every job.
    exported: BTreeMap<(&'static str, JobType), HistogramReport>,
    /// job id → series → the job's last report.
    last: HashMap<String, BTreeMap<String, HistogramReport>>,
}

/// The histograms of [`JOB_SERIES`], summed over jobs, labelled by job type. Clones share their totals
/// (one clone is registered, another records).
#[derive(Clone)]
pub struct JobHistograms {
    descs: Vec<Desc>,
    totals: Arc<Mutex<Totals>>,
}

impl Default for JobHistograms {
    fn default() -> Self {
        Self::new()
    }
}

impl JobHistograms {
    pub fn new() -> Self {
        let descs = JOB_SERIES
            .iter()
            .filter(|series| matches!(series.kind, SeriesKind::Histogram(_)))
            .map(|series| {
                Desc::new(
                    exported_name(series.name),
                    series.help.to_owned(),
                    vec!["type".to_owned()],
                    HashMap::new(),
                )
                .expect("static metric definition is valid")
            })
            .collect();
        JobHistograms {
            descs,
            totals: Arc::new(Mutex::new(Totals::default())),
        }
    }

    /// Adds the increase of `job_id`'s histograms since its previous report. The reports were validated
    /// (known series, one count per bucket). A report that went down (a restarted job process) counts from
    /// zero again.
    pub fn record(
        &self,
        job_id: &str,
        job_type: JobType,
        reports: &BTreeMap<String, HistogramReport>,
    ) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let Totals { exported, last } = &mut *totals;
        let previous = last.entry(job_id.to_owned()).or_default();
        for (name, report) in reports {
            let Some(series) = JOB_SERIES.iter().find(|series| series.name == name) else {
                continue;
            };
            let before = previous.get(name);
            let restarted = before.is_some_and(|before| {
                before.sum > report.sum
                    || before.counts.iter().zip(&report.counts).any(|(b, r)| b > r)
            });
            let total =
                exported
                    .entry((series.name, job_type))
                    .or_insert_with(|| HistogramReport {
                        counts: vec![0; report.counts.len()],
                        sum: 0.0,
                    });
            for (index, count) in report.counts.iter().enumerate() {
                let seen = match before {
                    Some(before) if !restarted => before.counts.get(index).copied().unwrap_or(0),
                    _ => 0,
                };
                if let Some(slot) = total.counts.get_mut(index) {
                    *slot += count - seen;
                }
            }
            total.sum += match before {
                Some(before) if !restarted => report.sum - before.sum,
                _ => report.sum,
            };
            previous.insert(name.clone(), report.clone());
        }
    }

    /// Forgets a job's last reports (it ended; nothing more will come).
    pub fn forget(&self, job_id: &str) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        totals.last.remove(job_id);
    }
}

impl Collector for JobHistograms {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        let mut families = Vec::new();
        for series in JOB_SERIES {
            let SeriesKind::Histogram(bounds) = series.kind else {
                continue;
            };
            let mut metrics = Vec::new();
            for ((name, job_type), total) in &totals.exported {
                if *name != series.name {
                    continue;
                }
                let mut label = proto::LabelPair::default();
                label.set_name("type".to_owned());
                label.set_value(job_type.as_str().to_owned());
                let mut histogram = proto::Histogram::default();
                let mut cumulative = 0;
                let mut buckets = Vec::with_capacity(bounds.len());
                for (bound, count) in bounds.iter().zip(&total.counts) {
                    cumulative += count;
                    let mut bucket = proto::Bucket::default();
                    bucket.set_upper_bound(*bound);
                    bucket.set_cumulative_count(cumulative);
                    buckets.push(bucket);
                }
                histogram.set_bucket(buckets);
                histogram.set_sample_count(total.counts.iter().sum());
                histogram.set_sample_sum(total.sum);
                let mut metric = proto::Metric::default();
                metric.set_label(vec![label]);
                metric.set_histogram(histogram);
                metrics.push(metric);
            }
            if metrics.is_empty() {
                continue;
            }
            let mut family = MetricFamily::default();
            family.set_name(exported_name(series.name));
            family.set_help(series.help.to_owned());
            family.set_field_type(MetricType::HISTOGRAM);
            family.set_metric(metrics);
            families.push(family);
        }
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calls_protocol::job_metrics::NEW_AUDIO_LEN_MS;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn report(counts: &[u64], sum: f64) -> BTreeMap<String, HistogramReport> {
        BTreeMap::from([(
            NEW_AUDIO_LEN_MS.to_owned(),
            HistogramReport {
                counts: counts.to_vec(),
                sum,
            },
        )])
    }

    #[test]
    fn job_histograms_export_the_increase_over_jobs_by_type() {
        let histograms = JobHistograms::new();
        let registry = Registry::new();
        registry
            .register(Box::new(histograms.clone()))
            .expect("registers");
        // Two reports of one job (absolute) and one of another.
        histograms.record(
            "a",
            JobType::Transcribing,
            &report(&[1, 0, 0, 0, 0, 0, 0, 0], 200.0),
        );
        histograms.record(
            "a",
            JobType::Transcribing,
            &report(&[2, 1, 0, 0, 0, 0, 0, 0], 800.0),
        );
        histograms.record(
            "b",
            JobType::Transcribing,
            &report(&[0, 0, 1, 0, 0, 0, 0, 1], 9000.0),
        );
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .expect("encodes");
        let text = String::from_utf8(out).expect("utf-8");
        let name = exported_name(NEW_AUDIO_LEN_MS);
        for line in [
            format!("{name}_bucket{{type=\"transcribing\",le=\"250\"}} 2"),
            format!("{name}_bucket{{type=\"transcribing\",le=\"500\"}} 3"),
            format!("{name}_bucket{{type=\"transcribing\",le=\"1000\"}} 4"),
            format!("{name}_bucket{{type=\"transcribing\",le=\"+Inf\"}} 5"),
            format!("{name}_sum{{type=\"transcribing\"}} 9800"),
            format!("{name}_count{{type=\"transcribing\"}} 5"),
        ] {
            assert!(text.contains(&line), "{line} missing in:\n{text}");
        }
        // A job that restarted reports less than before: counted from zero, never negative.
        histograms.forget("a");
        histograms.record(
            "b",
            JobType::Transcribing,
            &report(&[1, 0, 0, 0, 0, 0, 0, 0], 100.0),
        );
        let families = histograms.collect();
        let total = families[0].get_metric()[0].get_histogram();
        assert_eq!(total.get_sample_count(), 6);
    }
}
