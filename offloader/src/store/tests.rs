//! Store tests: transitions only from the states they are valid from, atomic queue admission,
//! and what survives reopening the database (the crash-safety foundation).

use super::*;

#[test]
fn transitions_only_happen_from_valid_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .insert_job(&JobRecord::example("j"), 2, 10, 10, usize::MAX)
        .expect("insert");
    assert!(
        !store.mark_running("j", 5).expect("store"),
        "queued cannot jump to running"
    );
    assert!(store.mark_starting("j", "hash").expect("store"));
    assert!(
        !store.mark_starting("j", "other").expect("store"),
        "only once"
    );
    assert!(store.mark_running("j", 5).expect("store"));
    assert!(store
        .mark_stopping("j", StopReason::MaxDuration)
        .expect("store"));
    assert!(
        !store.mark_stopping("j", StopReason::User).expect("store"),
        "first reason wins"
    );
    assert!(store
        .finish("j", JobState::Failed, Some(137), Some("max"), 9)
        .expect("store"));
    assert!(
        !store
            .finish("j", JobState::Succeeded, Some(0), None, 10)
            .expect("store"),
        "final is final"
    );
    assert!(!store.requeue("j").expect("store"));
    let job = store.job("j").expect("store").expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        (job.started_at, job.finished_at, job.exit_code),
        (Some(5), Some(9), Some(137))
    );
    assert_eq!(job.stop_reason, Some(StopReason::MaxDuration));
    assert_eq!(job.job_token_hash, "hash");
}

#[test]
fn admission_counts_free_slots_and_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // 1 slot + queue of 1: two jobs fit, the third is refused.
    store
        .insert_job(&JobRecord::example("a"), 1, 1, 1, usize::MAX)
        .expect("first");
    store
        .insert_job(&JobRecord::example("b"), 1, 1, 1, usize::MAX)
        .expect("second");
    let err = store
        .insert_job(&JobRecord::example("c"), 1, 1, 1, usize::MAX)
        .expect_err("full");
    assert!(matches!(err, Error::QueueFull(_)), "{err}");
    assert!(store.job("c").expect("store").is_none(), "nothing stored");
    // Starting `a` takes the slot: still only one waiting place.
    store.mark_starting("a", "h").expect("store");
    assert!(store
        .insert_job(&JobRecord::example("c"), 1, 1, 1, usize::MAX)
        .is_err());
    store
        .finish("a", JobState::Succeeded, Some(0), None, 3)
        .expect("store");
    store
        .insert_job(&JobRecord::example("c"), 1, 1, 1, usize::MAX)
        .expect("slot freed");
    let queued: Vec<String> = store
        .jobs_in(&[JobState::Queued])
        .expect("store")
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(queued, vec!["b", "c"], "FIFO by insertion");
}

#[test]
fn everything_survives_reopening_and_the_instance_id_is_stable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let instance = {
        let store = Store::open(dir.path()).expect("open");
        store
            .insert_job(&JobRecord::example("j"), 2, 10, 10, usize::MAX)
            .expect("insert");
        store.mark_starting("j", "h").expect("store");
        store.instance.clone()
    };
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.instance, instance);
    assert_eq!(instance.len(), 12);
    let job = store.job("j").expect("store").expect("job");
    assert_eq!(job.state, JobState::Starting);
    assert_eq!(
        job.input_data["bot_token"],
        serde_json::json!("s"),
        "secrets kept for re-queue"
    );
    let other = tempfile::tempdir().expect("tempdir");
    assert_ne!(Store::open(other.path()).expect("open").instance, instance);
}

#[test]
fn stores_from_before_owner_uids_are_migrated_without_handing_out_orphans() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // The schema as the offloader wrote it before jobs were owned by a registration uid.
        let conn = Connection::open(dir.path().join("offloader.db")).expect("open");
        conn.execute_batch(
            "CREATE TABLE clients (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL, webhook_url TEXT,
                 webhook_secret TEXT, created_at INTEGER NOT NULL);
             CREATE TABLE tokens (hash TEXT PRIMARY KEY, client_id TEXT NOT NULL,
                 expires_at INTEGER NOT NULL);
             CREATE TABLE jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 client_id TEXT NOT NULL, job_type TEXT NOT NULL, state TEXT NOT NULL,
                 runner TEXT NOT NULL, max_duration_sec INTEGER NOT NULL, input_data TEXT NOT NULL,
                 job_token_hash TEXT NOT NULL, created_at INTEGER NOT NULL, started_at INTEGER,
                 finished_at INTEGER, exit_code INTEGER, failure_reason TEXT, stop_reason TEXT,
                 reported_error TEXT, progress TEXT, counters TEXT NOT NULL DEFAULT '{}',
                 container_removed INTEGER NOT NULL DEFAULT 0, work_done INTEGER NOT NULL DEFAULT 0);
             INSERT INTO clients VALUES ('alive', 'hash', NULL, NULL, 1);
             INSERT INTO tokens VALUES ('tokhash', 'alive', 9999999999999);
             INSERT INTO tokens VALUES ('orphantok', 'gone', 9999999999999);
             INSERT INTO jobs (id, client_id, job_type, state, runner, max_duration_sec, input_data,
                 job_token_hash, created_at)
                 VALUES ('j-alive', 'alive', 'recording', 'succeeded', 'img:1', 60, '{}', '', 1),
                        ('j-orphan', 'gone', 'recording', 'failed', 'img:1', 60, '{}', '', 1);",
        )
        .expect("old schema");
    }
    for _ in 0..2 {
        // Opening twice: the migration is idempotent.
        let store = Store::open(dir.path()).expect("migrates");
        let alive = store.client("alive").expect("store").expect("client kept");
        assert_eq!(alive.uid.len(), 32, "{alive:?}");
        let jobs = store.client_jobs(&alive.uid, None).expect("store");
        assert_eq!(
            jobs.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            vec!["j-alive"]
        );
        assert_eq!(
            store.token_client("tokhash", 0).expect("store"),
            Some(("alive".to_string(), alive.uid.clone()))
        );
        assert_eq!(store.token_client("orphantok", 0).expect("store"), None);
        // The orphan keeps no owner: nobody, not even an empty owner, can reach it.
        let orphan = store
            .job("j-orphan")
            .expect("store")
            .expect("kept for retention");
        assert_eq!(orphan.owner, "");
        assert!(store.client_jobs("", None).expect("store").is_empty());
        assert!(store.client_job("j-orphan", "").is_err());
    }
}

#[test]
fn one_client_cannot_fill_the_whole_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let of = |id: &str, owner: &str| JobRecord {
        owner: owner.into(),
        ..JobRecord::example(id)
    };
    // No free slot (0 concurrent), queue of 4, 2 places per client.
    store
        .insert_job(&of("a1", "a"), 0, 4, 2, usize::MAX)
        .expect("a1");
    store
        .insert_job(&of("a2", "a"), 0, 4, 2, usize::MAX)
        .expect("a2");
    let err = store
        .insert_job(&of("a3", "a"), 0, 4, 2, usize::MAX)
        .expect_err("share used");
    assert!(err.to_string().contains("jobs.client_queue_share"), "{err}");
    store
        .insert_job(&of("b1", "b"), 0, 4, 2, usize::MAX)
        .expect("another client still fits");
}
