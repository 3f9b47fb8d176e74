//! The project's containers on the Engine: listing them (by the project
//! label) as the planner sees them, and the create/start/stop/remove calls
//! the plan is carried out with.

use anyhow::Context as _;
use bollard::models::{ContainerSummary, ContainerSummaryStateEnum, NetworkConnectRequest};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RestartContainerOptions,
    StopContainerOptions, UploadToContainerOptions,
};
use bollard::Docker;

use super::connect::describe;
use super::labels;
use super::plan::Observed;
use super::secrets;
use super::spec::ContainerSpec;

// No stop timeout is passed to stop and restart: the Engine then uses the
// container's own `StopTimeout` (the service's `stop_grace_period`), or its
// default of 10 s, Compose's default too. So `down`, which knows only the
// project's name, stops each container with its service's grace period.

/// Every container labelled with `project`, running or not.
pub(crate) async fn list(docker: &Docker, project: &str) -> anyhow::Result<Vec<Observed>> {
    let all = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(labels::project_filter(project)),
            ..Default::default()
        }))
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("list the containers of project `{project}`"))?;
    Ok(all.into_iter().filter_map(observed).collect())
}

fn observed(c: ContainerSummary) -> Option<Observed> {
    let labels = c.labels.unwrap_or_default();
    // One-off containers (`docker compose run`) are not the project's services.
    if labels.get(labels::ONEOFF).is_some_and(|v| v == "True") {
        return None;
    }
    let name = c
        .names
        .and_then(|n| n.into_iter().next())
        .map(|n| n.trim_start_matches('/').to_string())
        .unwrap_or_default();
    Some(Observed {
        id: c.id?,
        name,
        service: labels.get(labels::SERVICE).cloned().unwrap_or_default(),
        number: labels.get(labels::NUMBER).and_then(|n| n.parse().ok()),
        hash: labels.get(labels::CONFIG_HASH).cloned().unwrap_or_default(),
        running: matches!(
            c.state,
            Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING)
        ),
    })
}

/// Creates the container, connects its other networks, starts it; returns its ID.
pub(crate) async fn create_and_start(
    docker: &Docker,
    spec: &ContainerSpec,
) -> anyhow::Result<String> {
    let created = docker
        .create_container(
            Some(CreateContainerOptions {
                name: Some(spec.name.clone()),
                ..Default::default()
            }),
            spec.body.clone(),
        )
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("create container {}", spec.name))?;
    for w in &created.warnings {
        tracing::warn!(container = %spec.name, "{w}");
    }
    // A container left created but unprepared would be started as it is by
    // the next `up` (its config hash matches): remove it on any failure.
    let prepared = async {
        for (net, endpoint) in &spec.extra_networks {
            docker
                .connect_network(
                    net,
                    NetworkConnectRequest {
                        container: created.id.clone(),
                        endpoint_config: Some(endpoint.clone()),
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!(describe(&e)))
                .with_context(|| format!("connect container {} to network {net}", spec.name))?;
        }
        if !spec.copies.is_empty() {
            let tar = secrets::tar(&spec.copies)
                .with_context(|| format!("pack the secrets of container {}", spec.name))?;
            docker
                .upload_to_container(
                    &created.id,
                    Some(UploadToContainerOptions {
                        path: "/".to_string(),
                        ..Default::default()
                    }),
                    bollard::body_full(tar.into()),
                )
                .await
                // The Engine's message names the path, never the content.
                .map_err(|e| anyhow::anyhow!(describe(&e)))
                .with_context(|| {
                    format!("copy secrets and configs into container {}", spec.name)
                })?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = prepared {
        let _ = docker
            .remove_container(
                &created.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        return Err(e);
    }
    start(docker, &created.id, &spec.name).await?;
    Ok(created.id)
}

pub(crate) async fn start(docker: &Docker, id: &str, name: &str) -> anyhow::Result<()> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("start container {name}"))
}

pub(crate) async fn restart(docker: &Docker, id: &str, name: &str) -> anyhow::Result<()> {
    docker
        .restart_container(
            id,
            Some(RestartContainerOptions {
                t: None,
                ..Default::default()
            }),
        )
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("restart container {name}"))
}

pub(crate) async fn stop(docker: &Docker, id: &str, name: &str) -> anyhow::Result<()> {
    match docker
        .stop_container(
            id,
            Some(StopContainerOptions {
                t: None,
                ..Default::default()
            }),
        )
        .await
    {
        // 304: already stopped.
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 304, ..
        }) => Ok(()),
        Err(e) => {
            Err(anyhow::anyhow!(describe(&e))).with_context(|| format!("stop container {name}"))
        }
    }
}

/// Stops (with the grace period) and removes the container; `volumes` also
/// removes its anonymous volumes.
pub(crate) async fn stop_and_remove(
    docker: &Docker,
    id: &str,
    name: &str,
    volumes: bool,
) -> anyhow::Result<()> {
    stop(docker, id, name).await?;
    match docker
        .remove_container(
            id,
            Some(RemoveContainerOptions {
                v: volumes,
                force: true,
                link: false,
            }),
        )
        .await
    {
        Ok(())
        | Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(()),
        Err(e) => {
            Err(anyhow::anyhow!(describe(&e))).with_context(|| format!("remove container {name}"))
        }
    }
}
