//! The `swarm` backend: one service per job on the Docker Swarm the offloader's engine manages,
//! in `replicated-job` mode with one task and no restart, named `calls-<type>-<id>` and labelled
//! like a job container. The task gets the job's CPU and memory limits as task resources, lands
//! on a node that meets `docker.swarm_constraints`, and receives its secrets (`JOB_TOKEN` and the
//! secret `input_data` fields) as per-job Docker secrets, files under `/run/secrets/`, so that
//! neither `docker inspect` nor `docker service inspect` shows them.
//!
//! Swarm has no "signal this task" call, and removing or updating a job service removes its
//! task together with the exit code and the log. So a stop goes, when the task runs on this
//! engine's own node, straight to its container (SIGTERM, grace, SIGKILL: the task then ends
//! `failed` or `complete` with its exit code, the log stays); on another node the log so far is
//! read and kept, the service is removed, and Swarm stops the container with the service's stop
//! grace period (SIGTERM, grace, SIGKILL), after which the exit code and the later log lines are
//! gone (see docs/offloader.md, "Swarm mode").

mod follow;
pub mod spec;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use bollard::models::{
    SecretSpec, ServiceSpec, ServiceSpecMode, Task, TaskSpec, TaskSpecContainerSpec,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    InspectServiceOptions, ListNodesOptions, ListSecretsOptions, ListServicesOptions,
    ListTasksOptions,
};
use bollard::Docker;
use bytes::Bytes;
use calls_protocol::job_env;
use calls_protocol::jobs::NodeImages;
use futures::stream::BoxStream;
use futures::StreamExt;

use self::follow::FollowState;
pub use self::spec::{is_placed, is_terminal, service_spec, SecretFile};
use self::spec::{newest, placement, task_container, task_error, task_exit_code, task_state};
use super::engine::{self, FOLLOW_TIMEOUT};
use super::{
    is_status, job_inputs, job_labels, parse_docker_time, CreateError, JobBackend, APP_LABEL,
    INSTANCE_LABEL,
};
use crate::config::{Config, DockerMode};
use crate::error::{Error, Result};
use crate::scheduler::{ContainerStatus, ObservedContainer};
use crate::store::JobRecord;

/// The label tying a per-job secret to its service, so `remove` finds it.
pub const WORKLOAD_LABEL: &str = "calls.workload";

/// The `app` label of the short-lived image probe services (not job workloads: the reconciler
/// never sees them).
const PROBE_APP: &str = "calls-offloader-image-probe";

/// How often task states are polled while waiting for a start or an exit.
const POLL: Duration = Duration::from_millis(250);

/// The swarm backend: the manager engine's connection, the settings, this offloader's instance
/// and the swarm node id of the engine itself.
pub struct SwarmBackend {
    docker: Docker,
    config: Arc<Config>,
    instance: String,
    local_node: String,
    /// Logs read just before a service was removed to stop its task on another node, until
    /// the job's finalisation takes them.
    saved_logs: Mutex<HashMap<String, Vec<u8>>>,
}

impl SwarmBackend {
    /// Checks that the engine is a swarm manager and learns its node id.
    pub async fn connect(
        docker: Docker,
        config: Arc<Config>,
        instance: String,
    ) -> Result<SwarmBackend> {
        let swarm = docker.info().await?.swarm.unwrap_or_default();
        if swarm.control_available != Some(true) {
            let state = swarm
                .local_node_state
                .map(|s| s.to_string())
                .unwrap_or_default();
            return Err(Error::Config(format!(
                "docker.mode = \"swarm\" needs an engine that is a swarm manager (its swarm state is {state:?}; run `docker swarm init` or point DOCKER_HOST at a manager)"
            )));
        }
        Ok(SwarmBackend {
            docker,
            config,
            instance,
            local_node: swarm.node_id.unwrap_or_default(),
            saved_logs: Mutex::default(),
        })
    }

    /// The service's newest task (the one of the current job iteration), `None` when the
    /// service does not exist; `Some(None)` while it has no task yet.
    async fn latest_task(&self, name: &str) -> Result<Option<Option<Task>>> {
        match self
            .docker
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let options = ListTasksOptions {
            filters: Some(HashMap::from([(
                "service".to_string(),
                vec![name.to_string()],
            )])),
        };
        let tasks = self.docker.list_tasks(Some(options)).await?;
        Ok(Some(newest(tasks)))
    }

    /// The container id of a task running on this engine's own node.
    fn local_container(&self, task: &Task) -> Option<String> {
        (task.node_id.as_deref() == Some(self.local_node.as_str()) && !self.local_node.is_empty())
            .then(|| task_container(task))
            .flatten()
    }

    /// Whether the task's container was OOM-killed: asked of the engine when the container is
    /// on this node, else read from the task's error text.
    async fn oom_killed(&self, task: &Task) -> bool {
        if let Some(container) = self.local_container(task) {
            if let Ok(inspect) = self.docker.inspect_container(&container, None).await {
                return inspect.state.and_then(|s| s.oom_killed).unwrap_or(false);
            }
        }
        task_error(task).to_ascii_lowercase().contains("oom")
    }

    async fn remove_secrets(&self, name: &str) -> Result<()> {
        let options = ListSecretsOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![format!("{WORKLOAD_LABEL}={name}")],
            )])),
        };
        for secret in self.docker.list_secrets(Some(options)).await? {
            let Some(id) = secret.id else { continue };
            match self.docker.delete_secret(&id).await {
                Ok(()) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Runs a `global-job` probe service for `image` (a command that does not exist, so the
    /// image's code never runs) and returns, per node that took a task, whether the image was
    /// there: a missing image rejects the task with "No such image".
    async fn probe_image(&self, image: &str) -> Result<Vec<(String, bool)>> {
        let name = format!(
            "calls-image-probe-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let spec = ServiceSpec {
            name: Some(name.clone()),
            labels: Some(HashMap::from([
                (APP_LABEL.0.to_string(), PROBE_APP.to_string()),
                (INSTANCE_LABEL.to_string(), self.instance.clone()),
            ])),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.to_string()),
                    command: Some(vec!["/calls-offloader-image-probe".to_string()]),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                placement: placement(&self.config),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                global_job: Some(HashMap::new()),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.docker.create_service(spec, None).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            let options = ListTasksOptions {
                filters: Some(HashMap::from([("service".to_string(), vec![name.clone()])])),
            };
            let tasks = self.docker.list_tasks(Some(options)).await?;
            // One answer per node, from its first ended task: a multi-node swarm may start
            // further probe tasks on a node after the first failed, which add nothing.
            let mut per_node: Vec<(String, Option<bool>)> = Vec::new();
            for task in &tasks {
                let node = task.node_id.clone().unwrap_or_default();
                let verdict = is_terminal(task_state(task))
                    .then(|| !task_error(task).contains("No such image"));
                match per_node.iter_mut().find(|(n, _)| *n == node) {
                    Some((_, known)) => *known = known.or(verdict),
                    None => per_node.push((node, verdict)),
                }
            }
            let settled = !per_node.is_empty() && per_node.iter().all(|(_, v)| v.is_some());
            if settled || Instant::now() >= deadline {
                break per_node
                    .into_iter()
                    .map(|(node, verdict)| (node, verdict.unwrap_or(false)))
                    .collect::<Vec<_>>();
            }
            tokio::time::sleep(POLL).await;
        };
        if let Err(error) = self.docker.delete_service(&name).await {
            tracing::warn!(service = name, %error, "could not remove the image probe");
        }
        Ok(answer)
    }
}

#[async_trait]
impl JobBackend for SwarmBackend {
    async fn create(&self, job: &JobRecord, job_token: &str) -> Result<(), CreateError> {
        let name = job.container_name();
        // A leftover of the same name (a crash between create and persist) goes first.
        self.remove(&name).await?;
        let inputs = job_inputs(job, &self.config, job_token);
        let mut labels = job_labels(job, &self.instance);
        labels.insert(WORKLOAD_LABEL.to_string(), name.clone());
        let mut secrets = Vec::new();
        for (index, (variable, value)) in inputs.secrets.iter().enumerate() {
            let file = job_env::secret_file_name(variable);
            // Numbered rather than named after the input: Docker limits secret names to 64
            // characters, and the workload name already takes up to 51.
            let secret_name = format!("{name}-secret{index}");
            let spec = SecretSpec {
                name: Some(secret_name.clone()),
                labels: Some(labels.clone()),
                data: Some(base64::engine::general_purpose::STANDARD.encode(value)),
                ..Default::default()
            };
            match self.docker.create_secret(spec).await {
                Ok(created) => secrets.push(SecretFile {
                    id: created.id,
                    name: secret_name,
                    file,
                }),
                Err(e) => {
                    self.remove_secrets(&name).await?;
                    return Err(e.into());
                }
            }
        }
        let spec = service_spec(&self.config, &self.instance, job, &inputs.env, &secrets);
        if let Err(e) = self.docker.create_service(spec, None).await {
            self.remove_secrets(&name).await?;
            return Err(e.into());
        }
        Ok(())
    }

    /// The service starts its task by itself: wait until a node runs it (or it already ended).
    async fn start(&self, name: &str) -> Result<(), CreateError> {
        let deadline = Instant::now() + self.config.docker.swarm_start_timeout;
        loop {
            let task = match self.latest_task(name).await? {
                None => {
                    return Err(CreateError::Other(Error::Unavailable(
                        "the job's service vanished before its task started".into(),
                    )))
                }
                Some(task) => task,
            };
            if let Some(task) = &task {
                let error = task_error(task);
                match task_state(task) {
                    TaskState::REJECTED if error.contains("No such image") => {
                        return Err(CreateError::ImageMissing)
                    }
                    TaskState::REJECTED => {
                        return Err(CreateError::Other(Error::Unavailable(format!(
                            "the swarm rejected the job's task: {error}"
                        ))))
                    }
                    TaskState::FAILED if task_exit_code(task).is_none() => {
                        return Err(CreateError::Other(Error::Unavailable(format!(
                            "the job's task failed to start: {error}"
                        ))))
                    }
                    state if state == TaskState::RUNNING || is_terminal(state) => return Ok(()),
                    _ => {}
                }
            }
            if Instant::now() >= deadline {
                let why = task
                    .as_ref()
                    .map(|t| {
                        let status = t.status.clone().unwrap_or_default();
                        format!(
                            "{} {}",
                            status.message.unwrap_or_default(),
                            status.err.unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                self.remove(name).await?;
                return Err(CreateError::Other(Error::Unavailable(format!(
                    "no swarm node started the job's task within docker.swarm_start_timeout ({}): {}",
                    humantime::format_duration(self.config.docker.swarm_start_timeout),
                    why.trim()
                ))));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn status(&self, name: &str) -> Result<Option<ContainerStatus>> {
        let Some(task) = self.latest_task(name).await? else {
            return Ok(None);
        };
        let Some(task) = task else {
            return Ok(Some(ContainerStatus::Created));
        };
        let state = task_state(&task);
        Ok(Some(if !is_terminal(state) {
            if is_placed(state) {
                ContainerStatus::Running
            } else {
                ContainerStatus::Created
            }
        } else {
            ContainerStatus::Exited {
                exit_code: task_exit_code(&task).unwrap_or(-1),
                oom_killed: self.oom_killed(&task).await,
            }
        }))
    }

    async fn finished_at(&self, name: &str) -> Result<Option<i64>> {
        let Some(Some(task)) = self.latest_task(name).await? else {
            return Ok(None);
        };
        if !is_terminal(task_state(&task)) {
            return Ok(None);
        }
        Ok(task
            .status
            .and_then(|s| s.timestamp)
            .and_then(|t| parse_docker_time(&t)))
    }

    async fn wait_exit(&self, name: &str) -> Result<Option<ContainerStatus>> {
        loop {
            match self.status(name).await? {
                Some(ContainerStatus::Running | ContainerStatus::Created) => {
                    tokio::time::sleep(POLL).await
                }
                other => return Ok(other),
            }
        }
    }

    async fn stop(&self, name: &str, grace: Duration) -> Result<()> {
        let Some(Some(task)) = self.latest_task(name).await? else {
            return Ok(());
        };
        if is_terminal(task_state(&task)) {
            return Ok(());
        }
        match self.local_container(&task) {
            Some(container) => engine::stop_container(&self.docker, &container, grace).await,
            None => {
                // Swarm stops the container itself: the spec's stop signal, then SIGKILL after
                // its stop grace period (jobs.stop_grace_period). The log goes with the
                // service, so what it holds so far is kept for the job's finalisation.
                tracing::info!(
                    service = name,
                    node = task.node_id.as_deref().unwrap_or(""),
                    "job runs on another node: removing its service to stop it"
                );
                match super::collect_logs(self, name, self.config.jobs.max_log_bytes).await {
                    Ok(log) => {
                        let mut saved = self.saved_logs.lock().unwrap_or_else(|p| p.into_inner());
                        saved.insert(name.to_string(), log);
                    }
                    Err(error) => {
                        tracing::warn!(service = name, %error, "could not read the log before the stop")
                    }
                }
                self.remove(name).await
            }
        }
    }

    async fn remove(&self, name: &str) -> Result<()> {
        match self.docker.delete_service(name).await {
            Ok(()) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
        self.remove_secrets(name).await
    }

    fn logs(&self, name: &str, follow: bool) -> BoxStream<'static, Result<Bytes>> {
        let docker = if follow {
            self.docker.clone().with_timeout(FOLLOW_TIMEOUT)
        } else {
            self.docker.clone()
        };
        let stream = docker
            .service_logs(name, Some(engine::whole_log(follow)))
            .map(|item| item.map(|out| out.into_bytes()).map_err(Error::from))
            .boxed();
        if !follow {
            return engine::owning_client(docker, stream);
        }
        // A followed service log stays open after the task ended (the service still exists),
        // so the stream ends here once the task is over and the last lines have come.
        let state = FollowState {
            docker,
            name: name.to_string(),
            stream,
            task_ended: false,
        };
        futures::stream::unfold(state, |mut state| async move {
            let item = state.next().await?;
            Some((item, state))
        })
        .boxed()
    }

    fn take_saved_log(&self, name: &str) -> Option<Vec<u8>> {
        let mut saved = self.saved_logs.lock().unwrap_or_else(|p| p.into_inner());
        saved.remove(name)
    }

    async fn list_jobs(&self) -> Result<Vec<ObservedContainer>> {
        let options = ListServicesOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![
                    format!("{}={}", APP_LABEL.0, APP_LABEL.1),
                    format!("{INSTANCE_LABEL}={}", self.instance),
                ],
            )])),
            ..Default::default()
        };
        let mut out = Vec::new();
        for service in self.docker.list_services(Some(options)).await? {
            let spec = service.spec.unwrap_or_default();
            let Some(name) = spec.name else { continue };
            let Some(status) = self.status(&name).await? else {
                continue; // removed between list and inspect
            };
            out.push(ObservedContainer {
                job_id: spec.labels.and_then(|l| l.get("calls.job_id").cloned()),
                container_id: name,
                status,
            });
        }
        Ok(out)
    }

    async fn images(&self, images: &[String]) -> Result<Vec<NodeImages>> {
        let hostnames: HashMap<String, String> = self
            .docker
            .list_nodes(None::<ListNodesOptions>)
            .await?
            .into_iter()
            .filter_map(|node| {
                let host = node
                    .description
                    .and_then(|d| d.hostname)
                    .unwrap_or_default();
                node.id.map(|id| (id, host))
            })
            .collect();
        let probes =
            futures::future::try_join_all(images.iter().map(|image| self.probe_image(image)))
                .await?;
        let mut nodes: Vec<NodeImages> = Vec::new();
        for (image, answers) in images.iter().zip(probes) {
            for (node_id, present) in answers {
                let index = match nodes.iter().position(|n| n.node_id == node_id) {
                    Some(index) => index,
                    None => {
                        nodes.push(NodeImages {
                            node: hostnames.get(&node_id).cloned().unwrap_or_default(),
                            node_id: node_id.clone(),
                            present: Vec::new(),
                            missing: Vec::new(),
                        });
                        nodes.len() - 1
                    }
                };
                let entry = &mut nodes[index];
                if present {
                    entry.present.push(image.clone());
                } else {
                    entry.missing.push(image.clone());
                }
            }
        }
        // A node that never got one image's probe task lacks an answer for it: count it missing.
        for node in &mut nodes {
            for image in images {
                if !node.present.contains(image) && !node.missing.contains(image) {
                    node.missing.push(image.clone());
                }
            }
        }
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    fn mode(&self) -> DockerMode {
        DockerMode::Swarm
    }

    fn docker(&self) -> &Docker {
        &self.docker
    }
}
