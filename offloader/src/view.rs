//! The public view of a job: the only path from a stored [`JobRecord`] to anything that leaves
//! the process (API responses, webhooks). Secret `input_data` fields are removed here and only
//! their names are listed (rule: [`calls_protocol::jobs::is_secret_field`]).

use calls_protocol::jobs::{is_secret_field, Job};

use crate::store::JobRecord;

/// The job as clients may see it: secret input fields removed.
pub fn public_job(record: &JobRecord) -> Job {
    let mut input_data = record.input_data.0.clone();
    let mut secret_fields = Vec::new();
    input_data.retain(|key, _| {
        let secret = is_secret_field(key);
        if secret {
            secret_fields.push(key.clone());
        }
        !secret
    });
    Job {
        id: record.id.clone(),
        job_type: record.job_type,
        state: record.state,
        runner: record.runner.clone(),
        container_name: record.container_name(),
        max_duration_sec: record.max_duration_sec,
        input_data,
        secret_fields,
        created_at: record.created_at,
        started_at: record.started_at,
        finished_at: record.finished_at,
        exit_code: record.exit_code,
        failure_reason: record.failure_reason.clone(),
        progress: record.progress.clone(),
        counters: record.counters.clone(),
        start_at: record.created_at,
        stop_at: record.finished_at,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn secret_fields_are_removed_and_named() {
        let record = JobRecord {
            seq: 1,
            input_data: BTreeMap::from([
                ("call_id".to_string(), serde_json::json!("call-1")),
                ("BOT_TOKEN".to_string(), serde_json::json!("s3cr3t-value")),
                ("apiKey".to_string(), serde_json::json!("k3y-value")),
            ])
            .into(),
            job_token_hash: "h".into(),
            ..JobRecord::example("j1")
        };
        let job = public_job(&record);
        assert_eq!(job.input_data.keys().collect::<Vec<_>>(), vec!["call_id"]);
        assert_eq!(job.secret_fields, vec!["BOT_TOKEN", "apiKey"]);
        assert_eq!(job.container_name, "calls-recording-j1");
        let json = serde_json::to_string(&job).expect("serializable");
        assert!(!json.contains("s3cr3t") && !json.contains("k3y-value"));
    }
}
