//! The operator's view of Docker, through the `docker` CLI: the same commands the runbook uses
//! (`docker ps --filter label=...`, `docker inspect`, `docker rm -f`), so the tests check what an
//! operator would see rather than what the offloader believes.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context};

/// One container as `docker ps -a` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    pub id: String,
    pub name: String,
    pub image: String,
    /// `running`, `exited`, `created`...
    pub state: String,
    pub job_id: String,
}

/// Runs the docker CLI; its stdout, or an error with its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(args)
        .output()
        .context("cannot run the docker CLI")?;
    if !output.status.success() {
        bail!(
            "docker {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every container (running or not) carrying `label` (`key=value`).
pub fn containers_with_label(label: &str) -> anyhow::Result<Vec<ContainerRow>> {
    let filter = format!("label={label}");
    let format = "{{.ID}}\t{{.Names}}\t{{.Image}}\t{{.State}}\t{{.Label \"calls.job_id\"}}";
    let text = docker(&[
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        &filter,
        "--format",
        format,
    ])?;
    Ok(text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let mut fields = line.split('\t').map(str::to_owned);
            let mut next = || fields.next().unwrap_or_default();
            ContainerRow {
                id: next(),
                name: next(),
                image: next(),
                state: next(),
                job_id: next(),
            }
        })
        .collect())
}

/// The running containers carrying `label`.
pub fn running_with_label(label: &str) -> anyhow::Result<Vec<ContainerRow>> {
    Ok(containers_with_label(label)?
        .into_iter()
        .filter(|row| row.state == "running")
        .collect())
}

/// `docker inspect -f <format> <name>`; `None` when the container does not exist.
pub fn inspect(name: &str, format: &str) -> Option<String> {
    docker(&["inspect", "-f", format, name])
        .ok()
        .map(|s| s.trim().to_owned())
}

/// The `JOB_TOKEN` the offloader gave a running job (engine mode), read like an operator would.
pub fn job_token(container: &str) -> anyhow::Result<String> {
    let env = inspect(container, "{{range .Config.Env}}{{println .}}{{end}}")
        .ok_or_else(|| anyhow::anyhow!("no container {container}"))?;
    env.lines()
        .find_map(|line| line.strip_prefix("JOB_TOKEN="))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no JOB_TOKEN in {container}"))
}

/// `docker logs <name>` (stdout and stderr together).
pub fn logs(name: &str) -> anyhow::Result<String> {
    let output = Command::new("docker")
        .args(["logs", name])
        .output()
        .context("cannot run the docker CLI")?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

/// Force-removes every container carrying `label`, with its anonymous volumes. Best effort: this
/// runs from `Drop` during a failing test, where a second panic would abort the process.
pub fn remove_with_label(label: &str) {
    let Ok(rows) = containers_with_label(label) else {
        return;
    };
    for row in rows {
        let _ = docker(&["rm", "-f", "-v", &row.id]);
    }
}

/// The address containers on the default bridge reach the host at (`docker0`), 172.17.0.1 unless
/// the engine was configured otherwise.
pub fn bridge_gateway() -> String {
    let from_ip = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "docker0"])
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .skip_while(|word| *word != "inet")
                .nth(1)
                .and_then(|cidr| cidr.split('/').next())
                .map(str::to_owned)
        });
    from_ip.unwrap_or_else(|| "172.17.0.1".to_owned())
}

/// The name of one of the stack's images under test: `calls-<image>:$TAG` (default tag `latest`), the
/// tag images/build.sh builds, so a session can test its own build without replacing the images others
/// on the same engine use.
pub fn image(image: &str) -> String {
    let tag = std::env::var("TAG").unwrap_or_else(|_| "latest".to_owned());
    format!("calls-{image}:{tag}")
}

/// Builds `calls-test-job:$TAG` from the binary cargo built next to the running test (once per
/// process), with images/build.sh, which skips the build when the image is already current.
pub fn ensure_test_job_image(bin_dir: &Path) -> anyhow::Result<()> {
    ensure_image(bin_dir, "test-job")
}

/// Builds `calls-<image>:$TAG` (`image` as images/build.sh names it: `test-job`, `recorder`...)
/// from the binary in `bin_dir` once per process; build.sh skips the build when the image is
/// already current, and says which binary to build first when it is missing.
pub fn ensure_image(bin_dir: &Path, image: &str) -> anyhow::Result<()> {
    static RESULTS: Mutex<BTreeMap<String, Result<(), String>>> = Mutex::new(BTreeMap::new());
    // Held across the build: two tests asking for the same image build it once.
    let mut results = RESULTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let result = results
        .entry(image.to_owned())
        .or_insert_with(|| build_image(bin_dir, image));
    result.clone().map_err(anyhow::Error::msg)
}

/// The whisper models baked into the transcriber image the tests use (`ct2-base`: post-call transcripts
/// run on CTranslate2, as in the image scripts/test.sh builds).
pub const TEST_TRANSCRIBER_MODELS: &str = "ct2-base base tiny.en tiny.en-q8_0";

fn build_image(bin_dir: &Path, image: &str) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../images/build.sh");
    let profile = bin_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_owned();
    let target = bin_dir.parent().unwrap_or(bin_dir);
    // The transcriber image of the tests has tiny.en (and its 8-bit version, which live captions prefer)
    // besides the default model (the live-caption test captions with it), as scripts/test.sh builds it.
    let models =
        std::env::var("TRANSCRIBER_MODELS").unwrap_or_else(|_| TEST_TRANSCRIBER_MODELS.to_owned());
    let output = Command::new("bash")
        .env("TRANSCRIBER_MODELS", models)
        .arg(&script)
        .arg("--target-dir")
        .arg(target)
        .arg("--profile")
        .arg(&profile)
        .arg(image)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "images/build.sh {image} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// `docker kill <name>` (SIGKILL), as an operator or the OOM killer would end a container.
pub fn kill(name: &str) -> anyhow::Result<()> {
    docker(&["kill", name]).map(|_| ())
}
