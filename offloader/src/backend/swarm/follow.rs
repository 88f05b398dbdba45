//! A followed service log that ends with its task: Docker keeps a service's log stream open
//! after the task ended (the service still exists), so the stream checks the task and stops once
//! it is over and the last lines have come.

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{InspectServiceOptions, ListTasksOptions};
use bollard::Docker;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

use super::spec::{is_terminal, newest, task_state};
use super::POLL;
use crate::backend::is_status;
use crate::error::Result;

/// A followed service log and whether its task has ended.
pub(super) struct FollowState {
    pub(super) docker: Docker,
    pub(super) name: String,
    pub(super) stream: BoxStream<'static, Result<Bytes>>,
    pub(super) task_ended: bool,
}

/// How long a followed log waits for more lines once the task ended.
const FOLLOW_DRAIN: Duration = Duration::from_secs(1);

impl FollowState {
    pub(super) async fn next(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.task_ended {
                return match tokio::time::timeout(FOLLOW_DRAIN, self.stream.next()).await {
                    Ok(Some(Ok(bytes))) => Some(Ok(bytes)),
                    _ => None,
                };
            }
            tokio::select! {
                item = self.stream.next() => match item {
                    Some(Ok(bytes)) => return Some(Ok(bytes)),
                    // The service was removed under the stream: the job ended.
                    Some(Err(_)) if task_ended(&self.docker, &self.name).await => return None,
                    other => return other,
                },
                _ = tokio::time::sleep(POLL * 2) => {
                    self.task_ended = task_ended(&self.docker, &self.name).await;
                }
            }
        }
    }
}

/// Whether the service is gone or its newest task will not run any more (an API error counts
/// as "not known to have ended").
async fn task_ended(docker: &Docker, name: &str) -> bool {
    let options = ListTasksOptions {
        filters: Some(HashMap::from([(
            "service".to_string(),
            vec![name.to_string()],
        )])),
    };
    match docker
        .inspect_service(name, None::<InspectServiceOptions>)
        .await
    {
        Err(e) if is_status(&e, 404) => return true,
        Err(_) => return false,
        Ok(_) => {}
    }
    match docker.list_tasks(Some(options)).await {
        Ok(tasks) => newest(tasks).is_some_and(|t| is_terminal(task_state(&t))),
        Err(_) => false,
    }
}
