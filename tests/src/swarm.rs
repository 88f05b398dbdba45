//! Docker Swarm for the tests, through the `docker` CLI like an operator: a single-node swarm on
//! the test machine's engine ([`SwarmSession`]), and a job's workload (container in engine mode,
//! service in swarm mode) seen the same way in both modes ([`Mode`], [`workloads_with_label`],
//! [`workload_state`], [`workload_logs`]), so one test body checks both backends.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::docker;
use crate::docker::docker as cli;

/// Which backend a test offloader runs jobs with (`docker.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Engine,
    Swarm,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Engine => "engine",
            Mode::Swarm => "swarm",
        }
    }
}

/// The engine's swarm state: `active`, `inactive`, `pending`...
pub fn local_node_state() -> anyhow::Result<String> {
    Ok(cli(&["info", "--format", "{{.Swarm.LocalNodeState}}"])?
        .trim()
        .to_owned())
}

/// A single-node swarm on this engine for as long as the value lives. Test processes that use
/// the swarm take turns (see [`SwarmLock`]), the swarm is initialised when the engine is not in
/// one, and left again on drop only if this session initialised it: an engine that was a swarm
/// manager before stays one, an engine that was not is not left in swarm mode.
pub struct SwarmSession {
    initialised_here: bool,
    _lock: SwarmLock,
}

/// A machine-wide lock between test processes: an abstract Unix socket name can be bound by one
/// socket at a time, and the kernel releases it when the process ends, even on a crash.
struct SwarmLock {
    _listener: UnixListener,
}

impl SwarmLock {
    fn acquire(timeout: Duration) -> anyhow::Result<SwarmLock> {
        let name = SocketAddr::from_abstract_name(b"calls-e2e-swarm-lock")
            .context("an abstract socket name")?;
        let deadline = Instant::now() + timeout;
        loop {
            match UnixListener::bind_addr(&name) {
                Ok(listener) => {
                    return Ok(SwarmLock {
                        _listener: listener,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    if Instant::now() >= deadline {
                        bail!("another test process held the swarm for {timeout:?}");
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e).context("cannot bind the swarm lock socket"),
            }
        }
    }
}

impl SwarmSession {
    pub fn join() -> anyhow::Result<SwarmSession> {
        let lock = SwarmLock::acquire(Duration::from_secs(600))?;
        let initialised_here = match local_node_state()?.as_str() {
            "active" => false,
            "inactive" => {
                // Loopback: a one-node swarm needs no address other machines can reach, and
                // the engine may have several interfaces (which makes a bare init fail).
                cli(&["swarm", "init", "--advertise-addr", "127.0.0.1"])?;
                true
            }
            other => bail!("the engine's swarm state is {other:?}; expected active or inactive"),
        };
        Ok(SwarmSession {
            initialised_here,
            _lock: lock,
        })
    }
}

impl Drop for SwarmSession {
    fn drop(&mut self) {
        if self.initialised_here {
            if let Err(error) = cli(&["swarm", "leave", "--force"]) {
                eprintln!("warning: could not leave the test swarm: {error:#}");
            }
            // `swarm init` made this network; without the swarm nothing uses it.
            let _ = cli(&["network", "rm", "docker_gwbridge"]);
        }
    }
}

/// A job's container (engine mode) or service (swarm mode) as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadRow {
    /// Container or service name (`calls-<type>-<id>` for the service).
    pub name: String,
    pub job_id: String,
    /// Container state (`running`, `exited`, ...) or the state of the service's newest task
    /// (`running`, `complete`, `failed`, ...).
    pub state: String,
}

/// The state of a service's newest task, `None` when the service does not exist.
pub fn service_task_state(name: &str) -> Option<String> {
    let tasks = cli(&["service", "ps", "-q", "--no-trunc", name]).ok()?;
    // `docker service ps` lists the newest task first.
    let Some(task) = tasks.lines().find(|l| !l.trim().is_empty()) else {
        return Some("new".to_owned());
    };
    cli(&["inspect", "--format", "{{.Status.State}}", task.trim()])
        .ok()
        .map(|s| s.trim().to_owned())
}

/// Every service carrying `label` (`key=value`).
pub fn services_with_label(label: &str) -> anyhow::Result<Vec<WorkloadRow>> {
    let filter = format!("label={label}");
    let text = cli(&[
        "service",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}}",
    ])?;
    let mut rows = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let job_id = cli(&[
            "service",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"calls.job_id\"}}",
            name,
        ])
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
        let Some(state) = service_task_state(name) else {
            continue; // removed meanwhile
        };
        rows.push(WorkloadRow {
            name: name.to_owned(),
            job_id,
            state,
        });
    }
    Ok(rows)
}

/// The job workloads carrying `label` in `mode`.
pub fn workloads_with_label(mode: Mode, label: &str) -> anyhow::Result<Vec<WorkloadRow>> {
    match mode {
        Mode::Engine => Ok(docker::containers_with_label(label)?
            .into_iter()
            .map(|row| WorkloadRow {
                name: row.name,
                job_id: row.job_id,
                state: row.state,
            })
            .collect()),
        Mode::Swarm => services_with_label(label),
    }
}

/// The state of the workload `name` (see [`WorkloadRow::state`]); `None` when it is gone.
pub fn workload_state(mode: Mode, name: &str) -> Option<String> {
    match mode {
        Mode::Engine => docker::inspect(name, "{{.State.Status}}"),
        Mode::Swarm => service_task_state(name),
    }
}

/// Whether the workload ended the way a failed job's does (`exited` / `failed`).
pub fn is_failed_state(mode: Mode, state: &str) -> bool {
    match mode {
        Mode::Engine => state == "exited",
        Mode::Swarm => state == "failed",
    }
}

/// What `docker logs` (engine) or `docker service logs` (swarm) prints for the workload.
pub fn workload_logs(mode: Mode, name: &str) -> anyhow::Result<String> {
    match mode {
        Mode::Engine => docker::logs(name),
        Mode::Swarm => {
            let output = Command::new("docker")
                .args(["service", "logs", "--raw", name])
                .output()
                .context("cannot run the docker CLI")?;
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            Ok(text)
        }
    }
}

/// Removes every service and secret carrying `label`. Best effort (runs from `Drop`).
pub fn remove_services_with_label(label: &str) {
    let filter = format!("label={label}");
    for kind in ["service", "secret"] {
        let Ok(ids) = cli(&[kind, "ls", "-q", "--filter", &filter]) else {
            continue;
        };
        for id in ids.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let _ = cli(&[kind, "rm", id]);
        }
    }
}

/// `docker inspect` of the container of a service's newest task, with `format`.
pub fn task_container_inspect(service: &str, format: &str) -> Option<String> {
    let tasks = cli(&["service", "ps", "-q", "--no-trunc", service]).ok()?;
    let task = tasks
        .lines()
        .find(|l| !l.trim().is_empty())?
        .trim()
        .to_owned();
    let container = cli(&[
        "inspect",
        "--format",
        "{{.Status.ContainerStatus.ContainerID}}",
        &task,
    ])
    .ok()?;
    docker::inspect(container.trim(), format)
}

/// `docker service inspect` of a service as JSON text.
pub fn service_inspect(service: &str) -> Option<String> {
    cli(&["service", "inspect", service]).ok()
}

/// Defines, for each `async fn name(mode: Mode) -> anyhow::Result<()>` listed, the tests
/// `name::engine` and `name::swarm`: the same body against both backends.
#[macro_export]
macro_rules! in_both_modes {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread")]
                async fn engine() -> anyhow::Result<()> {
                    super::$name($crate::swarm::Mode::Engine).await
                }

                #[tokio::test(flavor = "multi_thread")]
                async fn swarm() -> anyhow::Result<()> {
                    super::$name($crate::swarm::Mode::Swarm).await
                }
            }
        )*
    };
}
