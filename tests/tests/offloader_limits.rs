//! The offloader's limits against the real binary (issue 11): runner names reach Docker only
//! when they are valid, configured image references (#2); unknown HTTP methods do not create
//! metric labels (#7).

use calls_e2e::offloader::{serial, Offloader, OffloaderSettings, TEST_JOB_IMAGE};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn init_accepts_only_configured_image_references() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("initrefs", OffloaderSettings::default()).await?;
    let client = offloader.register("a").await?;
    // Docker API paths, queries and images nobody configured never reach Docker.
    for runner in [
        "../containers/x/json?",
        "../volumes/v",
        "../containers/x/archive?path=/etc/passwd",
        "calls-test-job:latest/../../info",
        "alpine:latest",
    ] {
        let reply = client
            .post_json("/jobs/init", &json!({ "runners": [runner] }))
            .await?;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{runner}: {}",
            reply.text()
        );
        assert_eq!(reply.error()?.code, "bad_request");
    }
    // A configured image is looked up and reported.
    let reply = client
        .post_json("/jobs/init", &json!({ "runners": [TEST_JOB_IMAGE] }))
        .await?;
    let answer: serde_json::Value = reply.ok_json()?;
    assert_eq!(answer["images"][0]["image"], TEST_JOB_IMAGE);
    assert_eq!(answer["images"][0]["present"], true);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_share_one_metric_label() -> anyhow::Result<()> {
    let _serial = serial().await;
    let offloader = Offloader::start("methods", OffloaderSettings::default()).await?;
    let anonymous = offloader.anonymous();
    for method in ["FOOBAR", "X-INJECTED", "BREW"] {
        let reply = anonymous
            .request(Method::from_bytes(method.as_bytes())?, "/version", None)
            .await?;
        assert!(reply.status.is_client_error(), "{method}: {}", reply.status);
    }
    let metrics = anonymous.get("/metrics").await?.text();
    for method in ["FOOBAR", "X-INJECTED", "BREW"] {
        assert!(
            !metrics.contains(method),
            "{method} became a label:\n{metrics}"
        );
    }
    let other: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("calls_offloader_api_requests_total{method=\"other\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(other, 3.0, "{metrics}");
    Ok(())
}
