//! Files a job leaves in the data directory: `jobs/<id>/logs.txt` (the container's final logs,
//! written before the container may be removed) and `jobs/<id>/artifacts/<name>` (uploads,
//! written to a temporary name and renamed only once complete and within the size limit).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

pub fn job_dir(data_dir: &Path, job_id: &str) -> PathBuf {
    data_dir.join("jobs").join(job_id)
}

pub fn logs_path(data_dir: &Path, job_id: &str) -> PathBuf {
    job_dir(data_dir, job_id).join("logs.txt")
}

pub fn artifact_path(data_dir: &Path, job_id: &str, name: &str) -> PathBuf {
    job_dir(data_dir, job_id).join("artifacts").join(name)
}

/// Writes the final logs durably (temp file, fsync, rename).
pub async fn persist_logs(data_dir: &Path, job_id: &str, logs: &[u8]) -> Result<()> {
    let path = logs_path(data_dir, job_id);
    let dir = path.parent().expect("logs path has a job directory parent");
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join("logs.txt.part");
    let mut file = tokio::fs::File::create(&tmp).await?;
    file.write_all(logs).await?;
    file.sync_all().await?;
    tokio::fs::rename(&tmp, &path).await?;
    Ok(())
}

/// Removes everything a job stored on disk.
pub async fn remove_job_files(data_dir: &Path, job_id: &str) -> Result<()> {
    match tokio::fs::remove_dir_all(job_dir(data_dir, job_id)).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// Artifact names are plain file names: 1–128 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn validate_artifact_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "invalid artifact name {name:?}: use 1-128 of A-Z a-z 0-9 . _ - (not starting with '.')"
        )))
    }
}

/// Streams an upload to its artifact path, hashing as it goes. Over `limit` bytes the partial
/// file is deleted and the upload refused with 413. Returns (size, sha256 hex).
pub async fn store_artifact<S, E>(
    data_dir: &Path,
    job_id: &str,
    name: &str,
    mut body: S,
    limit: u64,
) -> Result<(u64, String)>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let path = artifact_path(data_dir, job_id, name);
    let dir = path.parent().expect("artifact path has a directory parent");
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(".{name}.part"));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let outcome: Result<()> = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| Error::BadRequest(format!("upload interrupted: {e}")))?;
            size += chunk.len() as u64;
            if size > limit {
                return Err(Error::PayloadTooLarge(format!(
                    "artifact larger than the {limit} byte limit (jobs.max_artifact_bytes, or what is left of the job's jobs.max_job_artifact_bytes)"
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.sync_all().await?;
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(error);
    }
    tokio::fs::rename(&tmp, &path).await?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// A parsed `Range: bytes=...` header for a file of `size` bytes: inclusive (start, end).
/// `Ok(None)` means serve the whole file (no header, or a form we do not support, which RFC 9110
/// allows us to ignore); an unsatisfiable range is a 416.
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    let unsatisfiable = || {
        Error::RangeNotSatisfiable(format!(
            "range {spec:?} is outside the {size} byte artifact"
        ))
    };
    let (start, end) = match (start.trim(), end.trim()) {
        ("", "") => return Ok(None),
        ("", suffix) => {
            let Ok(n) = suffix.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, end) => {
            let Ok(start) = start.parse::<u64>() else {
                return Ok(None);
            };
            let end = if end.is_empty() {
                size.saturating_sub(1)
            } else {
                let Ok(end) = end.parse::<u64>() else {
                    return Ok(None);
                };
                if end < start {
                    return Ok(None);
                }
                end.min(size.saturating_sub(1))
            };
            if start >= size {
                return Err(unsatisfiable());
            }
            (start, end)
        }
    };
    Ok(Some((start, end)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10).expect("ok"), None);
        assert_eq!(
            parse_range(Some("bytes=0-3"), 10).expect("ok"),
            Some((0, 3))
        );
        assert_eq!(parse_range(Some("bytes=5-"), 10).expect("ok"), Some((5, 9)));
        assert_eq!(parse_range(Some("bytes=-4"), 10).expect("ok"), Some((6, 9)));
        assert_eq!(
            parse_range(Some("bytes=8-100"), 10).expect("ok"),
            Some((8, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=-100"), 10).expect("ok"),
            Some((0, 9))
        );
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10).expect("ok"), None);
        assert_eq!(parse_range(Some("items=0-1"), 10).expect("ok"), None);
        assert!(parse_range(Some("bytes=10-"), 10).is_err());
        assert!(parse_range(Some("bytes=-0"), 10).is_err());
    }

    #[test]
    fn artifact_names_cannot_escape_the_job_directory() {
        for ok in ["recording.mp4", "transcript.en.vtt", "a-b_c"] {
            assert!(validate_artifact_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "..", "../x", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(validate_artifact_name(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn uploads_over_the_limit_leave_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chunks = || {
            futures::stream::iter(vec![
                Ok::<_, std::io::Error>(Bytes::from_static(b"hello ")),
                Ok(Bytes::from_static(b"world")),
            ])
        };
        let (size, sha) = store_artifact(dir.path(), "j", "a.txt", chunks(), 100)
            .await
            .expect("stored");
        assert_eq!(size, 11);
        assert_eq!(sha, hex::encode(Sha256::digest(b"hello world")));
        let err = store_artifact(dir.path(), "j", "b.txt", chunks(), 8)
            .await
            .expect_err("over limit");
        assert!(matches!(err, Error::PayloadTooLarge(_)));
        let names: Vec<_> = std::fs::read_dir(dir.path().join("jobs/j/artifacts"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec!["a.txt"]);
    }
}
