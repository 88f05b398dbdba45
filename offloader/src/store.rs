//! The durable store: one SQLite database (WAL mode, `synchronous=FULL`) in the data directory
//! holding clients, bearer tokens (hashed), jobs and artifact metadata. Every job state change is
//! a conditional `UPDATE ... WHERE state IN (...)`, so a transition only happens from the states
//! it is valid from, and it is on disk before the runner acts on it.
//!
//! **Invariant:** a job belongs to the client *registration* that created it, by the client's
//! internal `uid` (random, made at registration), not by its client id: a client id that is
//! unregistered and registered again is a new owner and sees none of the old jobs, logs or
//! artifacts. Stores written before `uid` existed are migrated in place when opened.
//!
//! **Invariant:** `input_data` is stored whole (secrets included) because a re-queued job needs
//! it again; only `Job::from_record` decides what leaves the process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use calls_protocol::jobs::{is_secret_field, JobState, JobType, WebhookConfig};
use calls_protocol::secret::Secret;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::{Error, Result};

mod accounts;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    id TEXT PRIMARY KEY,
    uid TEXT NOT NULL DEFAULT '',
    key_hash TEXT NOT NULL,
    webhook_url TEXT,
    webhook_secret TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    client_uid TEXT NOT NULL DEFAULT '',
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    client_id TEXT NOT NULL,
    owner_uid TEXT NOT NULL DEFAULT '',
    job_type TEXT NOT NULL,
    state TEXT NOT NULL,
    runner TEXT NOT NULL,
    max_duration_sec INTEGER NOT NULL,
    input_data TEXT NOT NULL,
    job_token_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    exit_code INTEGER,
    failure_reason TEXT,
    stop_reason TEXT,
    reported_error TEXT,
    progress TEXT,
    counters TEXT NOT NULL DEFAULT '{}',
    container_removed INTEGER NOT NULL DEFAULT 0,
    work_done INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
CREATE TABLE IF NOT EXISTS artifacts (
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
);
";

/// Why a job was asked to stop; decides its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// `POST /jobs/{id}/stop`: ends `cancelled` (or `succeeded` on exit 0).
    User,
    /// The max duration passed: ends `failed` with "max duration exceeded".
    MaxDuration,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::User => "user",
            StopReason::MaxDuration => "max_duration",
        }
    }

    fn parse(text: &str) -> Option<StopReason> {
        match text {
            "user" => Some(StopReason::User),
            "max_duration" => Some(StopReason::MaxDuration),
            _ => None,
        }
    }
}

/// A registered API client.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    pub id: String,
    /// Internal, random, made at registration: what owns jobs and tokens.
    pub uid: String,
    pub key_hash: String,
    pub webhook: Option<WebhookConfig>,
}

/// A job's `input_data` as stored: every key, secret values included (a re-queued job needs
/// them). Its `Debug` prints each secret field's value as a [`Secret`] does (`[redacted]`), so a
/// logged record shows which inputs a job has but none of their secrets.
#[derive(Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct JobInputs(pub BTreeMap<String, serde_json::Value>);

impl From<BTreeMap<String, serde_json::Value>> for JobInputs {
    fn from(inputs: BTreeMap<String, serde_json::Value>) -> JobInputs {
        JobInputs(inputs)
    }
}

impl std::ops::Deref for JobInputs {
    type Target = BTreeMap<String, serde_json::Value>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for JobInputs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<'a> IntoIterator for &'a JobInputs {
    type Item = (&'a String, &'a serde_json::Value);
    type IntoIter = std::collections::btree_map::Iter<'a, String, serde_json::Value>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl std::fmt::Debug for JobInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = Secret::default();
        f.debug_map()
            .entries(self.0.iter().map(|(key, value)| {
                let shown: &dyn std::fmt::Debug = if is_secret_field(key) {
                    &redacted
                } else {
                    value
                };
                (key, shown)
            }))
            .finish()
    }
}

/// A job as stored, secrets included.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub seq: i64,
    pub id: String,
    /// The client id at submission (labels, logs); ownership is `owner`.
    pub client_id: String,
    /// The `uid` of the client registration that owns the job.
    pub owner: String,
    pub job_type: JobType,
    pub state: JobState,
    pub runner: String,
    pub max_duration_sec: u64,
    pub input_data: JobInputs,
    pub job_token_hash: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub exit_code: Option<i64>,
    pub failure_reason: Option<String>,
    pub stop_reason: Option<StopReason>,
    pub reported_error: Option<String>,
    pub progress: Option<String>,
    pub counters: BTreeMap<String, f64>,
    pub container_removed: bool,
    /// The job reported `finished`.
    pub work_done: bool,
}

impl JobRecord {
    /// A job as a client submits it: queued, created now, with no inputs, token, start or report
    /// yet (the one place these fields start out).
    pub fn queued(
        id: &str,
        client_id: &str,
        owner: &str,
        job_type: JobType,
        runner: &str,
    ) -> JobRecord {
        JobRecord {
            seq: 0,
            id: id.to_owned(),
            client_id: client_id.to_owned(),
            owner: owner.to_owned(),
            job_type,
            state: JobState::Queued,
            runner: runner.to_owned(),
            max_duration_sec: 0,
            input_data: JobInputs::default(),
            job_token_hash: String::new(),
            created_at: crate::now_ms(),
            started_at: None,
            finished_at: None,
            exit_code: None,
            failure_reason: None,
            stop_reason: None,
            reported_error: None,
            progress: None,
            counters: BTreeMap::new(),
            container_removed: false,
            work_done: false,
        }
    }

    /// A recording job `id` of client `c` running `img:1` with a secret input, created at 1 ms:
    /// the record the store, backend and view tests start from.
    #[cfg(test)]
    pub(crate) fn example(id: &str) -> JobRecord {
        JobRecord {
            max_duration_sec: 60,
            input_data: BTreeMap::from([("bot_token".to_string(), serde_json::json!("s"))]).into(),
            created_at: 1,
            ..JobRecord::queued(id, "c", "owner-uid", JobType::Recording, "img:1")
        }
    }

    /// `calls-<type>-<id>`.
    pub fn container_name(&self) -> String {
        container_name(self.job_type, &self.id)
    }
}

/// The container name of a job, also what operators grep for.
pub fn container_name(job_type: JobType, id: &str) -> String {
    format!("calls-{job_type}-{id}")
}

const JOB_COLUMNS: &str =
    "seq, id, client_id, job_type, state, runner, max_duration_sec, input_data, \
    job_token_hash, created_at, started_at, finished_at, exit_code, failure_reason, stop_reason, \
    reported_error, progress, counters, container_removed, work_done, owner_uid";

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<JobRecord> {
    let bad = |i: usize, what: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, what.into())
    };
    let job_type: String = row.get(3)?;
    let state: String = row.get(4)?;
    let input: String = row.get(7)?;
    let stop: Option<String> = row.get(14)?;
    let counters: String = row.get(17)?;
    Ok(JobRecord {
        seq: row.get(0)?,
        id: row.get(1)?,
        client_id: row.get(2)?,
        job_type: JobType::parse(&job_type).ok_or_else(|| bad(3, job_type))?,
        state: JobState::parse(&state).ok_or_else(|| bad(4, state))?,
        runner: row.get(5)?,
        max_duration_sec: row.get::<_, i64>(6)?.max(0) as u64,
        input_data: serde_json::from_str(&input).map_err(|e| bad(7, e.to_string()))?,
        job_token_hash: row.get(8)?,
        created_at: row.get(9)?,
        started_at: row.get(10)?,
        finished_at: row.get(11)?,
        exit_code: row.get(12)?,
        failure_reason: row.get(13)?,
        stop_reason: stop.as_deref().and_then(StopReason::parse),
        reported_error: row.get(15)?,
        progress: row.get(16)?,
        counters: serde_json::from_str(&counters).map_err(|e| bad(17, e.to_string()))?,
        container_removed: row.get::<_, i64>(18)? != 0,
        work_done: row.get::<_, i64>(19)? != 0,
        owner: row.get(20)?,
    })
}

fn placeholders(states: &[JobState]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

pub const ACTIVE: [JobState; 3] = [JobState::Starting, JobState::Running, JobState::Stopping];
pub const FINAL: [JobState; 3] = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];

/// The SQLite store. Calls are short and synchronous; the mutex serialises them.
pub struct Store {
    conn: Mutex<Connection>,
    /// Random id made when the database was created; labels this store's containers.
    pub instance: String,
}

impl Store {
    /// Opens (creating if needed) `<data_dir>/offloader.db`.
    pub fn open(data_dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(data_dir)?;
        restrict_permissions(data_dir, 0o700);
        let path = data_dir.join("offloader.db");
        let conn = Connection::open(&path)?;
        restrict_permissions(&path, 0o600);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('instance', ?1)",
            params![uuid::Uuid::new_v4().simple().to_string()[..12].to_string()],
        )?;
        let instance =
            conn.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |row| {
                row.get(0)
            })?;
        Ok(Store {
            conn: Mutex::new(conn),
            instance,
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (statements are
        // atomic), so a poisoned lock is still safe to use.
        self.conn
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Inserts a queued job unless the queue is full, its owner already holds
    /// `max_queue_per_client` of the queued places, or already has `max_jobs_per_client` jobs
    /// stored (in any state). Admission is atomic with the counts, so two
    /// concurrent submissions cannot both take the last place.
    pub fn insert_job(
        &self,
        job: &JobRecord,
        max_concurrent: usize,
        max_queue: usize,
        max_queue_per_client: usize,
        max_jobs_per_client: usize,
    ) -> Result<()> {
        blocking(|| {
            let mut conn = self.conn();
            let tx = conn.transaction()?;
            let count = |states: &[JobState]| -> rusqlite::Result<i64> {
                tx.query_row(
                    &format!(
                        "SELECT COUNT(*) FROM jobs WHERE state IN ({})",
                        placeholders(states)
                    ),
                    [],
                    |row| row.get(0),
                )
            };
            let queued = count(&[JobState::Queued])? as usize;
            let active = count(&ACTIVE)? as usize;
            let free_slots = max_concurrent.saturating_sub(active);
            if queued >= max_queue + free_slots {
                return Err(Error::QueueFull(format!(
                    "job queue is full ({queued} jobs waiting, {active} running); retry later"
                )));
            }
            let owned = |condition: &str| -> rusqlite::Result<i64> {
                tx.query_row(
                    &format!("SELECT COUNT(*) FROM jobs WHERE owner_uid = ?1{condition}"),
                    params![job.owner],
                    |row| row.get(0),
                )
            };
            let mine = owned(" AND state = 'queued'")?;
            if mine as usize >= max_queue_per_client + free_slots {
                return Err(Error::QueueFull(format!(
                    "this client already has {mine} jobs waiting, its share of the queue (jobs.client_queue_share); retry later"
                )));
            }
            let stored = owned("")?;
            if stored as usize >= max_jobs_per_client {
                return Err(Error::QueueFull(format!(
                    "this client already has {stored} stored jobs, its limit (jobs.max_jobs_per_client); delete finished ones (DELETE /jobs/{{id}})"
                )));
            }
            tx.execute(
                "INSERT INTO jobs (id, client_id, owner_uid, job_type, state, runner, max_duration_sec, \
                 input_data, job_token_hash, created_at) VALUES (?1, ?2, ?10, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    job.id,
                    job.client_id,
                    job.job_type.as_str(),
                    job.state.as_str(),
                    job.runner,
                    job.max_duration_sec as i64,
                    serde_json::to_string(&job.input_data).expect("a JSON map always serializes"),
                    job.job_token_hash,
                    job.created_at,
                    job.owner,
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        blocking(|| {
            Ok(self
                .conn()
                .query_row(
                    &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
                    params![id],
                    job_from_row,
                )
                .optional()?)
        })
    }

    /// The job if it exists and belongs to the client registration `owner` (its uid);
    /// otherwise 404 (never "forbidden", so that a client cannot probe other clients' job ids).
    pub fn client_job(&self, id: &str, owner: &str) -> Result<JobRecord> {
        blocking(|| match self.job(id)? {
            Some(job) if !owner.is_empty() && job.owner == owner => Ok(job),
            _ => Err(Error::job_not_found()),
        })
    }

    /// The jobs of the client registration `owner`, oldest first.
    pub fn client_jobs(&self, owner: &str, state: Option<JobState>) -> Result<Vec<JobRecord>> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE owner_uid = ?1 AND owner_uid != '' \
                 AND (?2 IS NULL OR state = ?2) ORDER BY seq"
            ))?;
            let rows = stmt.query_map(params![owner, state.map(JobState::as_str)], job_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// One page of [`Store::client_jobs`]: at most `limit` jobs after the one with sequence
    /// number `after` (the cursor), and whether more follow.
    pub fn client_jobs_page(
        &self,
        owner: &str,
        state: Option<JobState>,
        after: i64,
        limit: usize,
    ) -> Result<(Vec<JobRecord>, bool)> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE owner_uid = ?1 AND owner_uid != '' \
                 AND (?2 IS NULL OR state = ?2) AND seq > ?3 ORDER BY seq LIMIT ?4"
            ))?;
            let rows = stmt.query_map(
                params![owner, state.map(JobState::as_str), after, limit as i64 + 1],
                job_from_row,
            )?;
            let mut jobs: Vec<JobRecord> = rows.collect::<rusqlite::Result<_>>()?;
            let more = jobs.len() > limit;
            jobs.truncate(limit);
            Ok((jobs, more))
        })
    }

    /// Jobs in any of `states`, oldest first (FIFO order for `queued`).
    pub fn jobs_in(&self, states: &[JobState]) -> Result<Vec<JobRecord>> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({}) ORDER BY seq",
                placeholders(states)
            ))?;
            let rows = stmt.query_map([], job_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// `queued → starting`, with the hash of the job token the container will receive.
    pub fn mark_starting(&self, id: &str, job_token_hash: &str) -> Result<bool> {
        blocking(|| {
            Ok(self.conn().execute(
                "UPDATE jobs SET state = 'starting', job_token_hash = ?2 WHERE id = ?1 AND state = 'queued'",
                params![id, job_token_hash],
            )? > 0)
        })
    }

    /// Back to `queued` (a start that never happened); the old job token stops working.
    pub fn requeue(&self, id: &str) -> Result<bool> {
        blocking(|| {
            Ok(self.conn().execute(
                "UPDATE jobs SET state = 'queued', job_token_hash = '', started_at = NULL \
                 WHERE id = ?1 AND state IN ('queued', 'starting', 'running')",
                params![id],
            )? > 0)
        })
    }

    /// `starting → running` with its start time.
    pub fn mark_running(&self, id: &str, started_at: i64) -> Result<bool> {
        blocking(|| {
            Ok(self.conn().execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?2) \
                 WHERE id = ?1 AND state = 'starting'",
                params![id, started_at],
            )? > 0)
        })
    }

    /// `starting | running → stopping`, remembering why.
    pub fn mark_stopping(&self, id: &str, reason: StopReason) -> Result<bool> {
        blocking(|| {
            Ok(self.conn().execute(
                "UPDATE jobs SET state = 'stopping', stop_reason = ?2 \
                 WHERE id = ?1 AND state IN ('starting', 'running')",
                params![id, reason.as_str()],
            )? > 0)
        })
    }

    /// Any non-final state → `state` (final), with exit code and reason.
    pub fn finish(
        &self,
        id: &str,
        state: JobState,
        exit_code: Option<i64>,
        reason: Option<&str>,
        now: i64,
    ) -> Result<bool> {
        blocking(|| {
            debug_assert!(state.is_final());
            Ok(self.conn().execute(
                "UPDATE jobs SET state = ?2, exit_code = ?3, failure_reason = ?4, finished_at = ?5 \
                 WHERE id = ?1 AND state IN ('queued', 'starting', 'running', 'stopping')",
                params![id, state.as_str(), exit_code, reason, now],
            )? > 0)
        })
    }

    pub fn set_container_removed(&self, id: &str) -> Result<()> {
        blocking(|| {
            self.conn().execute(
                "UPDATE jobs SET container_removed = 1 WHERE id = ?1",
                params![id],
            )?;
            Ok(())
        })
    }

    /// Records what a job reported about itself.
    pub fn record_status(
        &self,
        id: &str,
        progress: Option<&str>,
        error: Option<&str>,
        counters: &BTreeMap<String, f64>,
        work_done: bool,
    ) -> Result<()> {
        blocking(|| {
            self.conn().execute(
                "UPDATE jobs SET progress = COALESCE(?2, progress), reported_error = COALESCE(?3, reported_error), \
                 counters = ?4, work_done = MAX(work_done, ?5) WHERE id = ?1",
                params![
                    id,
                    progress,
                    error,
                    serde_json::to_string(counters).expect("a map of numbers always serializes"),
                    work_done as i64
                ],
            )?;
            Ok(())
        })
    }

    pub fn delete_job(&self, id: &str) -> Result<()> {
        blocking(|| {
            let conn = self.conn();
            conn.execute("DELETE FROM artifacts WHERE job_id = ?1", params![id])?;
            conn.execute("DELETE FROM jobs WHERE id = ?1", params![id])?;
            Ok(())
        })
    }

    /// Job counts per (type, state), for the metrics gauges.
    pub fn counts(&self) -> Result<Vec<(JobType, JobState, i64)>> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT job_type, state, COUNT(*) FROM jobs GROUP BY job_type, state")?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (t, s, n) = row?;
                if let (Some(t), Some(s)) = (JobType::parse(&t), JobState::parse(&s)) {
                    out.push((t, s, n));
                }
            }
            Ok(out)
        })
    }

    /// Final jobs whose owner is no registered client (unregistered while they ran), for the
    /// sweeper.
    pub fn orphaned_final_jobs(&self) -> Result<Vec<JobRecord>> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({}) \
                 AND owner_uid NOT IN (SELECT uid FROM clients) ORDER BY seq",
                placeholders(&FINAL)
            ))?;
            let rows = stmt.query_map([], job_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    /// Final jobs that finished before `before`, for the retention sweeper.
    pub fn final_jobs_finished_before(&self, before: i64) -> Result<Vec<JobRecord>> {
        blocking(|| {
            let conn = self.conn();
            let mut stmt = conn.prepare(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE state IN ({}) AND finished_at < ?1 ORDER BY seq",
                placeholders(&FINAL)
            ))?;
            let rows = stmt.query_map(params![before], job_from_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }
}

fn columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info({table})"))?;
    let names = stmt.query_map([], |row| row.get::<_, String>(1))?;
    names.collect()
}

/// Brings a store written by an older offloader up to the current schema, in one transaction:
/// clients get a random `uid`; each job and token is given to the uid of the client registered
/// under its client id now. Jobs whose client is gone get no owner (`''`), which no client
/// matches: a later registration of that id cannot see them. Idempotent.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    // Runs `sql` (which adds `column` to `table`, and fills it) when the table lacks that column.
    let add_column = |table: &str, column: &str, sql: &str| -> rusqlite::Result<()> {
        if !columns(conn, table)?.iter().any(|c| c == column) {
            conn.execute_batch(sql)?;
        }
        Ok(())
    };
    let result = (|| {
        add_column(
            "clients",
            "uid",
            "ALTER TABLE clients ADD COLUMN uid TEXT NOT NULL DEFAULT ''",
        )?;
        conn.execute(
            "UPDATE clients SET uid = lower(hex(randomblob(16))) WHERE uid = ''",
            [],
        )?;
        // Rows that name their client by id get its uid too.
        for (table, column) in [("jobs", "owner_uid"), ("tokens", "client_uid")] {
            add_column(
                table,
                column,
                &format!(
                    "ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT '';
                     UPDATE {table} SET {column} = COALESCE(
                         (SELECT uid FROM clients WHERE clients.id = {table}.client_id), '');"
                ),
            )?;
        }
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS clients_by_uid ON clients(uid);
             CREATE INDEX IF NOT EXISTS jobs_by_owner ON jobs(owner_uid, state, seq);",
        )
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(error) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Runs a store call (SQLite with `synchronous=FULL`: an fsync per write) without stalling the
/// async worker it was called from: on the multi-threaded runtime the worker hands its other
/// tasks to another thread for the duration (`block_in_place`). Unlike `spawn_blocking`, the
/// call keeps borrowing its arguments, so every method stays a plain synchronous function that
/// tests can call directly. Elsewhere (a current-thread runtime in tests, a plain thread) it
/// just runs.
pub(crate) fn blocking<T>(call: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(call)
        }
        _ => call(),
    }
}

fn restrict_permissions(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), %error, "could not restrict permissions");
    }
}

#[cfg(test)]
mod tests;
