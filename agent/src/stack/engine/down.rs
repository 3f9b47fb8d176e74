//! `down`: stop and remove everything labelled with the project — its
//! containers, then its networks; its named volumes (and the containers'
//! anonymous ones) only with `--volumes`, since they hold the data. External
//! networks and volumes carry no project label and are never touched.
//!
//! Also the two calls a backup uses to quiesce services (`stop:` on a state
//! entry): [`stop_services`] and [`start_services`].

use anyhow::Context as _;
use bollard::Docker;

use super::{containers, labels, networks, volumes};

#[derive(Clone, Copy, Debug, Default)]
pub struct DownOptions {
    pub dry_run: bool,
    pub volumes: bool,
}

/// Returns one line per object removed (or, in a dry run, to be removed).
pub async fn down(
    docker: &Docker,
    project: &str,
    opts: DownOptions,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let mut found = containers::list(docker, project).await?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    if !opts.dry_run {
        // In parallel: each may take its whole stop grace period.
        let removals = found
            .iter()
            .map(|c| containers::stop_and_remove(docker, &c.id, &c.name, opts.volumes));
        for r in futures::future::join_all(removals).await {
            r?;
        }
    }
    for c in &found {
        lines.push(format!("remove container {}", c.name));
    }
    if opts.dry_run {
        for n in list_names(docker, project, "networks").await? {
            lines.push(format!("remove network {n}"));
        }
        if opts.volumes {
            for v in list_names(docker, project, "volumes").await? {
                lines.push(format!("remove volume {v}"));
            }
        }
        return Ok(lines);
    }
    for n in networks::remove_all(docker, project).await? {
        lines.push(format!("remove network {n}"));
    }
    if opts.volumes {
        for v in volumes::remove_all(docker, project).await? {
            lines.push(format!("remove volume {v}"));
        }
    }
    Ok(lines)
}

async fn list_names(docker: &Docker, project: &str, what: &str) -> anyhow::Result<Vec<String>> {
    let filters = Some(labels::project_filter(project));
    let names = if what == "networks" {
        docker
            .list_networks(Some(bollard::query_parameters::ListNetworksOptions {
                filters,
            }))
            .await
            .map(|l| l.into_iter().filter_map(|n| n.name).collect())
    } else {
        docker
            .list_volumes(Some(bollard::query_parameters::ListVolumesOptions {
                filters,
            }))
            .await
            .map(|l| {
                l.volumes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| v.name)
                    .collect()
            })
    };
    names
        .map_err(|e| anyhow::anyhow!(super::connect::describe(&e)))
        .with_context(|| format!("list the project's {what}"))
}

/// Stops the running containers of `services` (all their replicas) and
/// returns their IDs, for [`start_services`] to start again. An unknown
/// service is an error before anything is stopped.
pub async fn stop_services(
    docker: &Docker,
    project: &str,
    services: &[String],
) -> anyhow::Result<Vec<String>> {
    let all = containers::list(docker, project).await?;
    for s in services {
        if !all.iter().any(|c| &c.service == s) {
            anyhow::bail!("project `{project}` has no container of service `{s}` to stop");
        }
    }
    let mut stopped = Vec::new();
    let targets: Vec<_> = all
        .iter()
        .filter(|c| c.running && services.contains(&c.service))
        .collect();
    let stops = targets.iter().map(|c| {
        tracing::info!(container = %c.name, "stopping for the backup");
        containers::stop(docker, &c.id, &c.name)
    });
    let results = futures::future::join_all(stops).await;
    let mut first_err = None;
    for (c, r) in targets.iter().zip(results) {
        match r {
            Ok(()) => stopped.push(c.id.clone()),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        // Leave nothing stopped behind a failed stop: the backup will not run.
        start_services(docker, &stopped).await?;
        return Err(e);
    }
    Ok(stopped)
}

/// Starts the containers [`stop_services`] stopped; tries every one and
/// reports the first failure.
pub async fn start_services(docker: &Docker, ids: &[String]) -> anyhow::Result<()> {
    let mut first_err = None;
    for id in ids {
        if let Err(e) = containers::start(docker, id, id).await {
            tracing::error!(container = %id, "could not start again: {e:#}");
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}
