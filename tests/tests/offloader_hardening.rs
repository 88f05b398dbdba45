//! The offloader's second hardening round (issue 21) against the real binary and real job
//! containers: slow readers are cut off and connections capped per address (finding 2), stored
//! input is capped and listings paginated (4), wrong keys lock out only their own (client id,
//! address) pair (5), job counters come from a fixed list (6), concurrent uploads store exactly
//! the artifact quota (9), login tokens rotate (10), NAT64 and Teredo webhooks are refused (11),
//! unregistering removes a client's jobs and containers (13), containers get no swap and clients
//! a share of the run slots (14), and the compose services run locked down (15).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use calls_e2e::docker;
use calls_e2e::offloader::{serial, test_job, Auth, Client, Offloader, OffloaderSettings};
use calls_protocol::env::pairs as env;
use calls_protocol::jobs::{Job, JobList, JobState};
use reqwest::{Method, StatusCode};
use serde_json::json;

fn host_port(offloader: &Offloader) -> String {
    offloader
        .base_url()
        .trim_start_matches("http://")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_readers_are_cut_off_and_connections_capped_per_address() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = serial().await;
    let settings = OffloaderSettings {
        extra_env: env(&[
            ("OFFLOADER_API_WRITE_TIMEOUT", "2s"),
            ("OFFLOADER_API_MAX_CONNECTIONS_PER_ADDRESS", "3"),
        ]),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("slowread", settings).await?;
    let address: std::net::SocketAddr = host_port(&offloader).parse()?;

    // 300 pipelined requests for the 25 KB OpenAPI document through a 4 KB receive window,
    // then nothing read for 6 s: the server must give up on the connection instead of keeping
    // it and ~7 MB of answers queued for it.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut reader = socket.connect(address).await?;
    let one = format!("GET /openapi.json HTTP/1.1\r\nHost: {address}\r\n\r\n");
    reader.write_all(one.repeat(300).as_bytes()).await?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let read_all = async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read_all)
        .await
        .map_err(|_| anyhow::anyhow!("the stalled connection was still open after 36 s"))?;
    let answers = String::from_utf8_lossy(&received)
        .matches("HTTP/1.1 200")
        .count();
    assert!(
        answers < 300,
        "the server kept answering a reader that stalled ({answers} answers)"
    );

    // Three connections from one address fill its share; a fourth is closed unanswered,
    // while a client from another address is still served.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(tokio::net::TcpStream::connect(address).await?);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut fourth = tokio::net::TcpStream::connect(address).await?;
    let _ = fourth
        .write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fourth.read_to_end(&mut answer)).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    let elsewhere = client_from(&offloader, "127.0.0.1".parse()?, Auth::None, "")?;
    assert_eq!(elsewhere.get("/version").await?.status, StatusCode::OK);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        offloader
            .metric("calls_offloader_api_connections_refused_total")
            .await?
            >= 1.0
    );
    Ok(())
}

/// A client of `offloader` whose connections come from `local` (a second source address on
/// this host: the API listens on the bridge address, reachable from loopback too).
fn client_from(
    offloader: &Offloader,
    local: IpAddr,
    auth: Auth,
    client_id: &str,
) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .local_address(local)
        .timeout(Duration::from_secs(30))
        .build()?;
    Ok(Client::new(
        http,
        offloader.base_url(),
        auth,
        client_id.to_owned(),
        Arc::new(Mutex::new(Vec::new())),
    ))
}

#[tokio::test(flavor = "multi_thread")]
async fn input_is_capped_listings_paginated_and_stored_jobs_capped() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 1,
        extra_env: env(&[("OFFLOADER_JOBS_MAX_JOBS_PER_CLIENT", "5")]),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("pages", settings).await?;
    let client = offloader.register("pager").await?;

    // 20 KB of input_data: over the 16 KB default, refused, nothing stored.
    let big = test_job("exit0", &[("notes", json!("x".repeat(20 * 1024)))]);
    let reply = client.post_json("/jobs", &big).await?;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.text()
    );
    assert!(
        reply.text().contains("jobs.max_input_bytes"),
        "{}",
        reply.text()
    );
    assert!(client.jobs().await?.is_empty());

    let mut ids = Vec::new();
    for i in 0..5 {
        let spec = test_job("exit0", &[("index", json!(i))]);
        ids.push(client.create_job(&spec).await?.id);
    }
    let sixth = client.post_json("/jobs", &test_job("exit0", &[])).await?;
    assert_eq!(
        sixth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        sixth.text()
    );
    assert!(
        sixth.text().contains("jobs.max_jobs_per_client"),
        "{}",
        sixth.text()
    );

    // Pages of two, oldest first, each naming the next; the whole list without paging.
    let mut paged = Vec::new();
    let mut path = "/jobs?limit=2".to_owned();
    loop {
        let page: JobList = client.get(&path).await?.ok_json()?;
        assert!(page.jobs.len() <= 2);
        paged.extend(page.jobs.into_iter().map(|j| j.id));
        match page.next_cursor {
            Some(cursor) => path = format!("/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, ids);
    let whole = client.get("/jobs").await?;
    let body: serde_json::Value = whole.ok_json()?;
    assert!(body.get("next_cursor").is_none(), "{body}");
    assert_eq!(body["jobs"].as_array().map(Vec::len), Some(5));
    for bad in ["/jobs?limit=0", "/jobs?limit=100000", "/jobs?cursor=abc"] {
        assert_eq!(
            client.get(bad).await?.status,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
    // Deleting a finished job makes room again.
    let done = client.wait_final(&ids[0], Duration::from_secs(60)).await?;
    let deleted = client
        .request(Method::DELETE, &format!("/jobs/{}", done.id), None)
        .await?;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    client.create_job(&test_job("exit0", &[])).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_keys_lock_out_only_their_own_client_id_and_address() -> anyhow::Result<()> {
    let _serial = serial().await;
    // No cache: every check is a real one, as after a restart.
    let settings = OffloaderSettings {
        extra_env: env(&[
            ("OFFLOADER_API_AUTH_FAILURE_LIMIT", "3"),
            ("OFFLOADER_API_KEY_CACHE_TTL", "0s"),
        ]),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("lockout", settings).await?;
    let victim = offloader.register_basic("victim").await?;
    let neighbour = offloader.register_basic("neighbour").await?;
    let Auth::Basic { auth_key, .. } = victim.auth.clone() else {
        anyhow::bail!("register_basic gives a Basic client");
    };
    let Auth::Basic {
        auth_key: neighbour_key,
        ..
    } = neighbour.auth.clone()
    else {
        anyhow::bail!("register_basic gives a Basic client");
    };

    // The attacker guesses the victim's key from loopback until it is refused.
    let attacker = client_from(
        &offloader,
        "127.0.0.1".parse()?,
        Auth::Basic {
            client_id: victim.client_id.clone(),
            auth_key: "wrong-key-wrong-key-wrong-key-wrong".into(),
        },
        &victim.client_id,
    )?;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(attacker.get("/jobs").await?.status);
    }
    assert_eq!(
        statuses[3..],
        [StatusCode::TOO_MANY_REQUESTS, StatusCode::TOO_MANY_REQUESTS],
        "{statuses:?}"
    );
    // The victim, from its own address, is not locked out, on Basic auth nor on /login.
    assert_eq!(victim.get("/jobs").await?.status, StatusCode::OK);
    let login = offloader
        .anonymous()
        .post_json(
            "/login",
            &json!({"clientID": victim.client_id, "authKey": auth_key}),
        )
        .await?;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    // Another client behind the attacker's address is not locked out either.
    let behind_same_nat = client_from(
        &offloader,
        "127.0.0.1".parse()?,
        Auth::Basic {
            client_id: neighbour.client_id.clone(),
            auth_key: neighbour_key,
        },
        &neighbour.client_id,
    )?;
    assert_eq!(behind_same_nat.get("/jobs").await?.status, StatusCode::OK);
    // The attacker's own pair stays refused.
    assert_eq!(
        attacker.get("/jobs").await?.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    Ok(())
}

/// Waits until `job` runs; its container's job token as a bearer client.
async fn running_job_token(
    offloader: &Offloader,
    client: &Client,
    job: &Job,
) -> anyhow::Result<(Job, Client)> {
    let job = client
        .wait_for(&job.id, Duration::from_secs(60), "running", |j| {
            j.state == JobState::Running
        })
        .await?;
    let token = docker::job_token(&job.container_name)?;
    Ok((job, offloader.bearer(&token)))
}

#[tokio::test(flavor = "multi_thread")]
async fn job_counters_come_from_a_fixed_list() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("counters", OffloaderSettings::default()).await?;
    let client = offloader.register("counting").await?;
    let created = client
        .create_job(&test_job("sleep", &[("sleep_seconds", json!(60))]))
        .await?;
    let (job, as_job) = running_job_token(&offloader, &client, &created).await?;
    let path = format!("/jobs/{}/status", job.id);
    let made_up = as_job
        .post_json(
            &path,
            &json!({"status": "progress", "counters": {"made_up_counter_1": 1}}),
        )
        .await?;
    assert_eq!(
        made_up.status,
        StatusCode::BAD_REQUEST,
        "{}",
        made_up.text()
    );
    assert!(
        made_up.text().contains("made_up_counter_1"),
        "{}",
        made_up.text()
    );
    let known = as_job
        .post_json(
            &path,
            &json!({"status": "progress", "counters": {"seconds_recorded": 2}}),
        )
        .await?;
    assert_eq!(known.status, StatusCode::NO_CONTENT, "{}", known.text());
    let metrics = offloader.anonymous().get("/metrics").await?.text();
    assert!(!metrics.contains("made_up_counter"), "{metrics}");
    assert!(metrics.contains("name=\"seconds_recorded\""), "{metrics}");
    let seen = client.job(&job.id).await?;
    assert!(!seen.counters.contains_key("made_up_counter_1"), "{seen:?}");
    client.stop(&job.id).await?;
    Ok(())
}

/// 40 uploads of `size` bytes under distinct names, all at once; how many were stored.
async fn upload_forty(as_job: &Client, job_id: &str, size: usize) -> anyhow::Result<usize> {
    let uploads: Vec<_> = (0..40)
        .map(|i| {
            let as_job = as_job.clone();
            let path = format!("/jobs/{job_id}/artifacts/part-{i}.bin");
            tokio::spawn(async move {
                as_job
                    .request(Method::PUT, &path, Some(vec![9u8; size]))
                    .await
            })
        })
        .collect();
    let mut stored = 0;
    for upload in uploads {
        let reply = upload.await??;
        match reply.status {
            StatusCode::CREATED => stored += 1,
            StatusCode::CONFLICT | StatusCode::PAYLOAD_TOO_LARGE => {}
            other => anyhow::bail!("unexpected {other}: {}", reply.text()),
        }
    }
    Ok(stored)
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_uploads_store_exactly_the_artifact_quota() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        extra_env: env(&[
            ("OFFLOADER_JOBS_MAX_ARTIFACTS_PER_JOB", "32"),
            ("OFFLOADER_JOBS_MAX_JOB_ARTIFACT_BYTES", "655360"),
        ]),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("uploadrace", settings).await?;
    let client = offloader.register("uploader").await?;
    let spec = test_job("sleep", &[("sleep_seconds", json!(90))]);
    let (by_count, by_count_token) =
        running_job_token(&offloader, &client, &client.create_job(&spec).await?).await?;
    let (by_size, by_size_token) =
        running_job_token(&offloader, &client, &client.create_job(&spec).await?).await?;

    // The count binds: 40 × 1 KB against 32 artifacts.
    assert_eq!(upload_forty(&by_count_token, &by_count.id, 1024).await?, 32);
    // The size binds: 40 × 64 KB against 640 KB.
    assert_eq!(
        upload_forty(&by_size_token, &by_size.id, 64 * 1024).await?,
        10
    );
    for (job, count, total) in [(&by_count, 32, 32 * 1024), (&by_size, 10, 640 * 1024)] {
        let listed: serde_json::Value = client
            .get(&format!("/jobs/{}/artifacts", job.id))
            .await?
            .ok_json()?;
        let sizes: Vec<u64> = listed["artifacts"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x["size"].as_u64()).collect())
            .unwrap_or_default();
        assert_eq!(sizes.len(), count, "{listed}");
        assert_eq!(sizes.iter().sum::<u64>(), total, "{listed}");
        client.stop(&job.id).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_rotate_tokens_beyond_the_per_client_cap() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        extra_env: env(&[("OFFLOADER_API_MAX_TOKENS_PER_CLIENT", "3")]),
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("tokens", settings).await?;
    let basic = offloader.register_basic("rotating").await?;
    let mut tokens = Vec::new();
    for _ in 0..6 {
        let reply = basic.request(Method::POST, "/login", None).await?;
        let body: serde_json::Value = reply.ok_json()?;
        let token = body["token"]
            .as_str()
            .or_else(|| body["bearerToken"].as_str())
            .ok_or_else(|| anyhow::anyhow!("no token in {body}"))?;
        tokens.push(token.to_owned());
    }
    for (i, token) in tokens.iter().enumerate() {
        let status = offloader.bearer(token).get("/jobs").await?.status;
        let expected = if i < 3 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(status, expected, "token {i}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_to_nat64_and_teredo_addresses_are_refused() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("nat64", OffloaderSettings::default()).await?;
    let client = offloader.register("hooks").await?;
    for host in [
        "[64:ff9b:1::a00:1]",
        "[64:ff9b:1:7f00:1::]",
        "[2001:0:4136:e378:8000:63bf:80ff:fffe]",
        "[2001::1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",
    ] {
        let body = json!({"url": format!("http://{host}/hook"), "secret": "0123456789abcdef0123"});
        let reply = client
            .request(Method::PUT, "/webhook", Some(serde_json::to_vec(&body)?))
            .await?;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{host}: {}",
            reply.text()
        );
    }
    // A public address embedded in the well-known NAT64 prefix is fine.
    let body = json!({"url": "http://[64:ff9b::101:101]/hook", "secret": "0123456789abcdef0123"});
    let reply = client
        .request(Method::PUT, "/webhook", Some(serde_json::to_vec(&body)?))
        .await?;
    assert!(reply.status.is_success(), "{}", reply.text());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unregistering_removes_the_clients_jobs_containers_and_files() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 2,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("unregister", settings).await?;
    let client = offloader.register("leaving").await?;
    let label = Offloader::label_of(&client);
    // A failed job (its container kept for the retention period), a running one, a queued one.
    let failed = client.create_job(&test_job("exit1", &[])).await?;
    let failed = client
        .wait_final(&failed.id, Duration::from_secs(60))
        .await?;
    assert_eq!(failed.state, JobState::Failed);
    let spec = test_job("sleep", &[("sleep_seconds", json!(120))]);
    let running = client.create_job(&spec).await?;
    client
        .wait_for(&running.id, Duration::from_secs(60), "running", |j| {
            j.state == JobState::Running
        })
        .await?;
    client.create_job(&spec).await?;
    client.create_job(&spec).await?;
    assert!(!docker::containers_with_label(&label)?.is_empty());

    let reply = offloader
        .admin()
        .post_json("/unregister", &json!({"clientID": client.client_id}))
        .await?;
    assert!(reply.status.is_success(), "{}", reply.text());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = docker::containers_with_label(&label)?;
        if left.is_empty() {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "containers left 60 s after unregistering: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing of the client's jobs stays on disk either (logs, artifacts).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let jobs_dir = offloader.data_dir().join("store").join("jobs");
    loop {
        let left: Vec<_> = std::fs::read_dir(&jobs_dir)
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "job files left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_get_no_swap_and_clients_a_share_of_the_run_slots() -> anyhow::Result<()> {
    let _serial = serial().await;
    let settings = OffloaderSettings {
        max_concurrent: 2,
        ..OffloaderSettings::default()
    };
    let offloader = Offloader::start("share", settings).await?;
    let greedy = offloader.register("greedy").await?;
    let modest = offloader.register("modest").await?;
    let sleep = |seconds: u64| test_job("sleep", &[("sleep_seconds", json!(seconds))]);
    let first = greedy.create_job(&sleep(4)).await?;
    let long = greedy.create_job(&sleep(120)).await?;
    for job in [&first, &long] {
        greedy
            .wait_for(&job.id, Duration::from_secs(60), "running", |j| {
                j.state == JobState::Running
            })
            .await?;
    }
    let memory = docker::inspect(&long.container_name, "{{.HostConfig.Memory}}");
    let swap = docker::inspect(&long.container_name, "{{.HostConfig.MemorySwap}}");
    assert_eq!(memory, Some((256u64 << 20).to_string()));
    assert_eq!(swap, memory, "memory + swap equals memory: no swap");

    // Greedy's third job is older than modest's, but greedy already holds its share (1 of 2):
    // the slot its first job frees goes to modest.
    let third = greedy.create_job(&sleep(1)).await?;
    let other = modest.create_job(&sleep(1)).await?;
    let other = modest
        .wait_final(&other.id, Duration::from_secs(60))
        .await?;
    let third = greedy
        .wait_final(&third.id, Duration::from_secs(60))
        .await?;
    let (Some(other_start), Some(third_start)) = (other.started_at, third.started_at) else {
        anyhow::bail!("both ran: {other:?} {third:?}");
    };
    assert!(
        other_start < third_start,
        "modest's job started at {other_start}, greedy's third at {third_start}"
    );
    greedy.stop(&long.id).await?;
    Ok(())
}

#[test]
fn compose_services_run_read_only_without_capabilities_or_privilege_gain() -> anyhow::Result<()> {
    let compose = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker-compose.yml"),
    )?;
    let services = compose
        .split("\nservices:\n")
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no services section"))?;
    let services = services.split("\nvolumes:").next().unwrap_or(services);
    // Service blocks: a line `  name:` and the more indented lines under it.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in services.lines() {
        let is_head = line.starts_with("  ") && !line.starts_with("   ") && line.ends_with(':');
        if is_head {
            blocks.push((line.trim().trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, body)) = blocks.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut checked = 0;
    for (name, block) in &blocks {
        for needed in [
            "read_only: true",
            "cap_drop:\n      - ALL",
            "no-new-privileges:true",
        ] {
            assert!(
                block.contains(needed),
                "service {name} lacks {needed:?}:\n{block}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "{services}");
    Ok(())
}
