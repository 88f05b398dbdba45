//! nginx in front (docs/deploy.md, "B. nginx in front"): the nginx configuration printed in the
//! docs, with this test's ports, address and certificate files put in place of the examples, runs
//! in a real nginx that terminates TLS in front of a plain-HTTP SFU on loopback. The page loads
//! through it, `/metrics` answers only the machine itself, and a call connects through it: two
//! participants join over `wss://` via nginx, media straight to the SFU, and one hears the other.
//! Skipped with a message without `nginx` (failing instead under CI).
mod common;
#[path = "tls/mod.rs"]
mod tls;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use calls_participant::{audio, Participant, Role, TrackKind};
use common::*;
use tls::*;

/// The fenced nginx block after the marker in docs/deploy.md.
fn documented_config() -> String {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md"))
            .expect("docs/deploy.md reads");
    let after = doc
        .split_once("<!-- nginx-config: tested by sfu/tests/tls_nginx.rs -->")
        .expect("docs/deploy.md keeps the tested-config marker")
        .1;
    let block = after
        .split_once("```nginx\n")
        .expect("an nginx block follows the marker")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// Replaces `from` with `to` everywhere, insisting that the docs still say `from`.
fn substitute(config: &str, from: &str, to: &str) -> String {
    assert!(
        config.contains(from),
        "docs/deploy.md's nginx config no longer has {from:?}"
    );
    config.replace(from, to)
}

struct Nginx(Child);

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn nginx_or_skip(test: &str) -> Option<PathBuf> {
    let found = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file());
    if found.is_none() {
        let ci = std::env::var("CI").unwrap_or_default();
        assert!(
            ci.is_empty() || ci == "0" || ci.eq_ignore_ascii_case("false"),
            "{test}: no nginx under CI (scripts/install-deps.sh installs it)"
        );
        eprintln!("SKIPPED {test}: no nginx (apt-get install nginx)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_documented_nginx_config_terminates_tls_in_front_of_the_sfu() {
    let Some(nginx) =
        nginx_or_skip("the_documented_nginx_config_terminates_tls_in_front_of_the_sfu")
    else {
        return;
    };
    let certs = Certs::new(&["calls.example.com", "offloader.example.com", "127.0.0.1"]);
    let sfu = start_sfu().await; // plain HTTP on 127.0.0.1, as behind a proxy
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let unused = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dir = certs.dir.path();
    let mut site = documented_config();
    site = substitute(
        &site,
        "listen 443 ssl;",
        &format!("listen 127.0.0.1:{port} ssl;"),
    );
    site = substitute(&site, "listen [::]:443 ssl;", "");
    site = substitute(
        &site,
        "server 127.0.0.1:8045;",
        &format!("server {};", sfu.http_addr),
    );
    site = substitute(
        &site,
        "server 127.0.0.1:4545;",
        &format!("server 127.0.0.1:{unused};"),
    );
    site = substitute(
        &site,
        "/etc/letsencrypt/live/calls.example.com/",
        &format!("{}/", dir.display()),
    );
    // What a distribution's nginx.conf gives a site: here paths inside the test's directory, and
    // one process (no master), so that killing it at the end leaves no worker behind.
    let d = dir.display();
    let conf = format!(
        "master_process off;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log {d}/access.log;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n{site}\n}}\n"
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let test = Command::new(&nginx)
        .arg("-t")
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
    let _nginx = Nginx(
        Command::new(&nginx)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts"),
    );
    let base = format!("https://127.0.0.1:{port}");
    let http = https_client(&certs.ca.cert);
    let mut page = None;
    for _ in 0..50 {
        if let Ok(response) = http.get(format!("{base}/")).send().await {
            page = Some(response);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let page = page.expect("nginx answers");
    assert!(page.status().is_success(), "{}", page.status());
    assert!(page.text().await.unwrap().contains("<html"));
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(
        metrics.text().await.unwrap().contains("sfu_"),
        "loopback may read /metrics"
    );

    // A call through nginx: signalling over wss via the proxy, media straight to the SFU.
    let tmp = tempfile::tempdir().unwrap();
    let words = speech(
        tmp.path(),
        "alice",
        "This call goes through the reverse proxy.",
    );
    let ws = format!("wss://127.0.0.1:{port}/ws");
    let join = |name: &'static str| {
        let ws = ws.clone();
        let options = trusting(&certs.ca.cert);
        async move {
            let mut me = Participant::join(&ws, &token("nginx", name, Role::Participant), options)
                .await
                .expect("join through nginx");
            me.wait_connected(Duration::from_secs(10))
                .await
                .expect("media connects");
            me
        }
    };
    let alice = join("Alice").await;
    let mut bob = join("Bob").await;
    let sending = alice.send_voice(with_lead_in(&words, Duration::from_millis(500)));
    let track = wait_track(&mut bob, alice.session_id(), TrackKind::Voice).await;
    let length = Duration::from_secs_f64(words.len() as f64 / 48_000.0);
    let heard = track
        .record_voice(length + Duration::from_secs(2), Duration::from_secs(3))
        .await
        .unwrap();
    sending.await.unwrap().unwrap();
    let score = audio::similarity(&words, &heard);
    println!("bob heard alice through nginx: similarity {score:.3}");
    assert!(score >= 0.8, "similarity {score}");
    alice.leave().await.unwrap();
    bob.leave().await.unwrap();
    // nginx logs a WebSocket when it closes: both went through the proxy.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = std::fs::read_to_string(dir.join("access.log")).unwrap_or_default();
    assert!(
        log.matches("GET /ws HTTP/1.1\" 101").count() >= 2,
        "nginx access log:\n{log}"
    );
    sfu.shutdown().await;
}
