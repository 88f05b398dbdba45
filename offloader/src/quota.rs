//! Artifact quotas reserved before an upload streams. A job may store `jobs.max_artifacts_per_job`
//! artifacts of `jobs.max_job_artifact_bytes` in all; checking the stored ones and then writing
//! would let concurrent uploads all pass the check (40 at once stored 39 with a limit of 32). So
//! the check and a reservation happen under one lock: an upload counts against the job's count
//! and size from the moment it is admitted until its record is stored (or it fails), and the
//! next upload's check sees it.
//!
//! An upload reserves its declared `Content-Length`, or, without one, all the room the job has
//! left (so two undeclared uploads of one job cannot overcommit the size quota either).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use calls_protocol::jobs::ArtifactInfo;

use crate::error::{Error, Result};

/// The limits one job's artifacts live under.
#[derive(Debug, Clone, Copy)]
pub struct ArtifactLimits {
    pub max_count: usize,
    pub max_total_bytes: u64,
    pub max_one_bytes: u64,
}

/// One upload in flight.
#[derive(Debug, Clone)]
struct InFlight {
    name: String,
    bytes: u64,
}

/// Uploads in flight per job.
#[derive(Default)]
pub struct UploadQuota {
    in_flight: Mutex<HashMap<String, Vec<InFlight>>>,
}

/// An admitted upload: streams at most `limit` bytes; its reservation ends on drop.
pub struct Reservation {
    quota: Arc<UploadQuota>,
    job_id: String,
    name: String,
    /// The most bytes this upload may write.
    pub limit: u64,
}

impl UploadQuota {
    /// Admits an upload of `name` to `job_id`, or says which limit it would break: 409 over the
    /// count (or the same name already uploading), 413 over the size. `stored` reads the job's
    /// stored artifacts; it is called under the lock, so that an upload finishing meanwhile is
    /// seen either as stored or as in flight, never as neither. `declared` is the upload's
    /// `Content-Length`.
    pub fn reserve(
        self: &Arc<Self>,
        job_id: &str,
        name: &str,
        stored: impl FnOnce() -> Result<Vec<ArtifactInfo>>,
        declared: Option<u64>,
        limits: ArtifactLimits,
    ) -> Result<Reservation> {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let stored = stored()?;
        let uploading = in_flight.entry(job_id.to_string()).or_default();
        if uploading.iter().any(|u| u.name == name) {
            return Err(Error::Conflict(format!(
                "artifact {name:?} is already being uploaded"
            )));
        }
        // An upload under an existing name replaces it: the old one does not count. An upload
        // that has just stored its record but not yet given back its reservation is counted
        // once: by its reservation, or by the stored size where that is larger (a replacement
        // that fails leaves the old artifact).
        let others = stored
            .iter()
            .filter(|a| a.name != name && !uploading.iter().any(|u| u.name == a.name));
        let count = others.clone().count() + uploading.len();
        if count >= limits.max_count {
            return Err(Error::Conflict(format!(
                "the job already stored or is uploading {count} artifacts, its limit (jobs.max_artifacts_per_job)"
            )));
        }
        let stored_size = |n: &str| {
            stored
                .iter()
                .find(|a| a.name == n && a.name != name)
                .map_or(0, |a| a.size)
        };
        let used = others.map(|a| a.size).sum::<u64>()
            + uploading
                .iter()
                .map(|u| u.bytes.max(stored_size(&u.name)))
                .sum::<u64>();
        let room = limits.max_total_bytes.saturating_sub(used);
        let limit = limits.max_one_bytes.min(room);
        if declared.is_some_and(|n| n > limit) || limit == 0 {
            return Err(Error::PayloadTooLarge(format!(
                "artifact larger than the {limit} byte limit (jobs.max_artifact_bytes, or what is left of the job's jobs.max_job_artifact_bytes)"
            )));
        }
        let bytes = declared.unwrap_or(limit);
        uploading.push(InFlight {
            name: name.to_string(),
            bytes,
        });
        Ok(Reservation {
            quota: self.clone(),
            job_id: job_id.to_string(),
            name: name.to_string(),
            limit: bytes,
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_flight = self
            .quota
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(uploading) = in_flight.get_mut(&self.job_id) {
            uploading.retain(|u| u.name != self.name);
            if uploading.is_empty() {
                in_flight.remove(&self.job_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ArtifactLimits = ArtifactLimits {
        max_count: 2,
        max_total_bytes: 1000,
        max_one_bytes: 800,
    };

    fn stored(name: &str, size: u64) -> ArtifactInfo {
        ArtifactInfo {
            name: name.into(),
            size,
            sha256: String::new(),
            created_at: 0,
        }
    }

    #[test]
    fn uploads_in_flight_count_against_the_quota_until_dropped() {
        let quota = Arc::new(UploadQuota::default());
        let a = quota
            .reserve("j", "a", || Ok(Vec::new()), Some(600), LIMITS)
            .expect("a");
        assert_eq!(a.limit, 600);
        // The size left is 400, whatever the per-artifact limit says.
        let b = quota
            .reserve("j", "b", || Ok(Vec::new()), None, LIMITS)
            .expect("b");
        assert_eq!(b.limit, 400);
        let third = quota.reserve("j", "c", || Ok(Vec::new()), Some(1), LIMITS);
        assert!(matches!(third, Err(Error::Conflict(_))));
        // Another job is not affected.
        assert!(quota
            .reserve("k", "c", || Ok(Vec::new()), Some(1), LIMITS)
            .is_ok());
        drop(b);
        assert!(matches!(
            quota.reserve("j", "c", || Ok(Vec::new()), Some(401), LIMITS),
            Err(Error::PayloadTooLarge(_))
        ));
        drop(a);
        assert!(quota
            .reserve("j", "c", || Ok(Vec::new()), Some(800), LIMITS)
            .is_ok());
    }

    #[test]
    fn the_same_name_twice_at_once_is_refused_and_replacing_does_not_count() {
        let quota = Arc::new(UploadQuota::default());
        let first = quota
            .reserve("j", "a", || Ok(Vec::new()), Some(1), LIMITS)
            .expect("a");
        assert!(matches!(
            quota.reserve("j", "a", || Ok(Vec::new()), Some(1), LIMITS),
            Err(Error::Conflict(_))
        ));
        drop(first);
        let both = [stored("a", 500), stored("b", 400)];
        assert!(quota
            .reserve("j", "a", || Ok(both.to_vec()), Some(600), LIMITS)
            .is_ok());
        assert!(matches!(
            quota.reserve("j", "c", || Ok(both.to_vec()), Some(1), LIMITS),
            Err(Error::Conflict(_))
        ));
    }
}
