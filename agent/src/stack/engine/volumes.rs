//! The project's named volumes: created when missing (driver, options,
//! Compose labels); an `external: true` volume must exist. They outlive
//! `down` unless `--volumes` is given: they hold the data.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Context as _;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListVolumesOptions, RemoveVolumeOptions};
use bollard::Docker;

use super::connect::describe;
use super::labels;
use crate::stack::model::{Project, Volume};

/// Creates the missing named volumes (a dry run only reports them). Returns
/// one line per volume created (or to be created).
pub(crate) async fn ensure(
    docker: &Docker,
    project: &Project,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let mut report = Vec::new();
    for (key, vol) in &project.volumes {
        match docker.inspect_volume(&vol.name).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                if vol.external {
                    anyhow::bail!(
                        "volume `{key}` is external but the Engine has no volume named {}",
                        vol.name
                    );
                }
                if dry_run {
                    report.push(format!("create volume {}", vol.name));
                    continue;
                }
                create(docker, project, key, vol).await?;
                report.push(format!("created volume {}", vol.name));
            }
            Err(e) => {
                return Err(anyhow::anyhow!(describe(&e)))
                    .with_context(|| format!("inspect volume {}", vol.name))
            }
        }
    }
    Ok(report)
}

async fn create(docker: &Docker, project: &Project, key: &str, vol: &Volume) -> anyhow::Result<()> {
    let mut l: HashMap<String, String> = vol.labels.clone().into_iter().collect();
    l.insert(labels::PROJECT.into(), project.name.clone());
    l.insert(labels::VOLUME.into(), key.to_string());
    docker
        .create_volume(VolumeCreateRequest {
            name: Some(vol.name.clone()),
            driver: Some(vol.driver.clone()),
            driver_opts: Some(vol.driver_opts.clone().into_iter().collect()),
            labels: Some(l),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("create volume {}", vol.name))?;
    tracing::info!(volume = %vol.name, "volume created");
    Ok(())
}

/// Where the Engine keeps the data of the project's volume `key` (a state
/// entry with `volume:`). With `create`, a missing volume is created first,
/// labelled as `up` would, so that `up` adopts it with what was restored.
pub async fn mountpoint(
    docker: &Docker,
    project: &Project,
    key: &str,
    create_missing: bool,
) -> anyhow::Result<PathBuf> {
    let vol = project.volumes.get(key).ok_or_else(|| {
        anyhow::anyhow!(
            "volume `{key}` is not declared in the top-level `volumes:` of {}",
            project.compose_file.display()
        )
    })?;
    for attempt in 0..2 {
        match docker.inspect_volume(&vol.name).await {
            Ok(v) if !v.mountpoint.is_empty() => return Ok(PathBuf::from(v.mountpoint)),
            Ok(_) => anyhow::bail!(
                "volume {} has no mountpoint on this host (driver {}): rehost can only back up local volumes",
                vol.name,
                vol.driver
            ),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) if create_missing && !vol.external && attempt == 0 => {
                create(docker, project, key, vol).await?;
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => anyhow::bail!(
                "the Engine has no volume {} (yet): `rehost up` or `rehost boot` creates it",
                vol.name
            ),
            Err(e) => {
                return Err(anyhow::anyhow!(describe(&e)))
                    .with_context(|| format!("inspect volume {}", vol.name))
            }
        }
    }
    anyhow::bail!("volume {} vanished right after it was created", vol.name)
}

/// Removes every volume labelled with `project` (`down --volumes`).
pub(crate) async fn remove_all(docker: &Docker, project: &str) -> anyhow::Result<Vec<String>> {
    let list = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(labels::project_filter(project)),
        }))
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .context("list the project's volumes")?;
    let mut removed = Vec::new();
    for v in list.volumes.unwrap_or_default() {
        docker
            .remove_volume(&v.name, Some(RemoveVolumeOptions { force: false }))
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .with_context(|| format!("remove volume {}", v.name))?;
        removed.push(v.name);
    }
    Ok(removed)
}
