//! The project's networks: created when missing (driver, `internal`, ipam
//! subnets and gateways, Compose labels), never changed once they exist (a
//! network in use cannot be; a differing one is reported), and an
//! `external: true` network must already exist — rehost never creates or
//! removes it.

use std::collections::HashMap;

use anyhow::Context as _;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptions;
use bollard::Docker;

use super::connect::describe;
use super::labels;
use crate::stack::model::{Network, Project};

/// Creates the project's missing networks; in a dry run only reports them.
/// Returns one line per network created (or to be created).
pub(crate) async fn ensure(
    docker: &Docker,
    project: &Project,
    dry_run: bool,
) -> anyhow::Result<Vec<String>> {
    let mut report = Vec::new();
    for (key, net) in &project.networks {
        match docker.inspect_network(&net.name, None).await {
            Ok(found) => {
                if !net.external {
                    let owner = found
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(labels::PROJECT))
                        .cloned();
                    if owner.as_deref() != Some(project.name.as_str()) {
                        tracing::warn!(network = %net.name, "network exists but was not created by project `{}`; using it as it is", project.name);
                    }
                    if found.internal.unwrap_or(false) != net.internal
                        || found.driver.as_deref().is_some_and(|d| d != net.driver)
                    {
                        tracing::warn!(network = %net.name, "network differs from the compose file (driver or internal); remove it (`rehost down`) to recreate it");
                    }
                }
            }
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                if net.external {
                    anyhow::bail!(
                        "network `{key}` is external but the Engine has no network named {} (create it first, e.g. by the project that owns it)",
                        net.name
                    );
                }
                if dry_run {
                    report.push(format!("create network {}", net.name));
                    continue;
                }
                create(docker, project, key, net).await?;
                report.push(format!("created network {}", net.name));
            }
            Err(e) => {
                return Err(anyhow::anyhow!(describe(&e)))
                    .with_context(|| format!("inspect network {}", net.name))
            }
        }
    }
    Ok(report)
}

async fn create(
    docker: &Docker,
    project: &Project,
    key: &str,
    net: &Network,
) -> anyhow::Result<()> {
    let mut l: HashMap<String, String> = net.labels.clone().into_iter().collect();
    l.insert(labels::PROJECT.into(), project.name.clone());
    l.insert(labels::NETWORK.into(), key.to_string());
    let ipam = (!net.subnets.is_empty()).then(|| Ipam {
        driver: Some("default".into()),
        config: Some(
            net.subnets
                .iter()
                .map(|s| IpamConfig {
                    subnet: Some(s.subnet.clone()),
                    gateway: s.gateway.map(|g| g.to_string()),
                    ..Default::default()
                })
                .collect(),
        ),
        options: None,
    });
    docker
        .create_network(NetworkCreateRequest {
            name: net.name.clone(),
            driver: Some(net.driver.clone()),
            internal: Some(net.internal),
            ipam,
            labels: Some(l),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .with_context(|| format!("create network {}", net.name))?;
    tracing::info!(network = %net.name, "network created");
    Ok(())
}

/// Removes every network labelled with `project` (external networks never
/// are). Returns the names removed.
pub(crate) async fn remove_all(docker: &Docker, project: &str) -> anyhow::Result<Vec<String>> {
    let nets = docker
        .list_networks(Some(ListNetworksOptions {
            filters: Some(labels::project_filter(project)),
        }))
        .await
        .map_err(|e| anyhow::anyhow!(describe(&e)))
        .context("list the project's networks")?;
    let mut removed = Vec::new();
    for n in nets {
        let Some(name) = n.name else { continue };
        docker
            .remove_network(&name)
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .with_context(|| format!("remove network {name}"))?;
        removed.push(name);
    }
    Ok(removed)
}
