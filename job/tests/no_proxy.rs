//! Issue 21 finding 3: a job's environment comes partly from its client (`input_data`), and an
//! `HTTP_PROXY` there once routed the job token and the artifacts through the client. The job's
//! HTTP client to the offloader ignores every proxy variable. Its own test binary, because it sets
//! process environment variables.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::post;
use axum::Router;
use calls_job::{OffloaderClient, Secret};
use calls_protocol::jobs::JobStatusKind;

#[tokio::test]
async fn proxy_variables_do_not_divert_the_offloader_client() {
    // A "proxy" that counts who connects to it and answers nothing useful.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let proxy_address = proxy.local_addr().expect("address");
    let proxied = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&proxied);
    tokio::spawn(async move {
        while let Ok((socket, _)) = proxy.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    // The offloader's status route.
    let reached = Arc::new(AtomicUsize::new(0));
    let hits = Arc::clone(&reached);
    let app = Router::new().route(
        "/jobs/{id}/status",
        post(move || {
            let hits = Arc::clone(&hits);
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let offloader = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let proxy_url = format!("http://{proxy_address}");
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        std::env::set_var(name, &proxy_url);
    }
    for name in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(name);
    }
    let client = OffloaderClient::from_parts(
        &format!("http://{offloader}"),
        "job-1",
        Secret::new("job-token-value".to_owned()),
    )
    .expect("client");
    client
        .report(JobStatusKind::Started, None, None, &[])
        .await
        .expect("the report reaches the offloader directly");
    assert_eq!(reached.load(Ordering::SeqCst), 1);
    assert_eq!(
        proxied.load(Ordering::SeqCst),
        0,
        "nothing went to the proxy"
    );
}
