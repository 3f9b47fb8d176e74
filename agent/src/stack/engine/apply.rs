//! `up`: make the Engine run the project. Networks and volumes first, then
//! the images (built only when a context changed), then the plan (see
//! [`super::plan`]) carried out service by service in dependency order: before
//! a service is touched, the services it depends on are waited for
//! (`service_healthy`, `service_completed_successfully`). At the end every
//! container with a healthcheck must be healthy within the timeout.
//!
//! A dry run builds nothing and changes nothing: it reports the networks,
//! volumes and images that would be made and the plan.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use bollard::Docker;
use tokio::time::Instant;

use super::health::{self, Want};
use super::images::{self, Image};
use super::plan::{self, Action, Desired, Plan};
use super::secrets::{self, Material};
use super::spec::{config_hash, container_name, container_spec};
use super::{containers, networks, volumes};
use crate::stack::model::{Condition, Project};

#[derive(Clone, Debug)]
pub struct UpOptions {
    pub dry_run: bool,
    /// How long `up` waits for health (and for completions) in all.
    pub wait_timeout: Duration,
}

/// What `up` did (or, in a dry run, would do): one line each.
#[derive(Clone, Debug, Default)]
pub struct UpReport {
    pub lines: Vec<String>,
    pub plan: Plan,
}

impl UpReport {
    /// Number of container actions that changed something.
    pub fn changes(&self) -> usize {
        self.plan.changes()
    }
}

pub async fn up(docker: &Docker, project: &Project, opts: &UpOptions) -> anyhow::Result<UpReport> {
    let mut report = UpReport::default();
    report
        .lines
        .extend(networks::ensure(docker, project, opts.dry_run).await?);
    report
        .lines
        .extend(volumes::ensure(docker, project, opts.dry_run).await?);

    let mut images: HashMap<String, Image> = HashMap::new();
    for s in project.services.values() {
        let image = images::ensure(docker, project, s, opts.dry_run)
            .await
            .with_context(|| format!("image of service `{}`", s.name))?;
        if image.pulled {
            report.lines.push(if opts.dry_run {
                format!("pull    {}", image.reference)
            } else {
                format!("pulled  {}", image.reference)
            });
        }
        if image.built {
            report.lines.push(if opts.dry_run {
                format!("build   {} (context changed)", image.reference)
            } else {
                format!("built   {}", image.reference)
            });
        }
        images.insert(s.name.clone(), image);
    }

    // Secrets and configs are read once: their digests go into the hash,
    // their content into the containers created below.
    let mut material: HashMap<String, Material> = HashMap::new();
    for s in project.services.values() {
        if s.secrets.is_empty() {
            continue;
        }
        let (p, svc) = (project.clone(), s.clone());
        let m = tokio::task::spawn_blocking(move || secrets::material(&p, &svc))
            .await
            .context("reading secrets panicked")??;
        material.insert(s.name.clone(), m);
    }
    let no_material = Material::default();
    let material_of = |name: &str| material.get(name).unwrap_or(&no_material);

    let mut desired = Vec::new();
    for s in project.services.values() {
        let image = &images[&s.name];
        let mut depends_on: Vec<String> = s
            .depends_on
            .keys()
            .chain(s.links.iter().map(|(l, _)| l))
            .filter(|d| project.services.contains_key(*d))
            .cloned()
            .collect();
        depends_on.dedup();
        desired.push(Desired {
            service: s.name.clone(),
            replicas: s.replicas,
            hash: image
                .id
                .as_ref()
                .map(|id| config_hash(project, s, id, material_of(&s.name))),
            depends_on,
            network_of: match &s.network_mode {
                Some(crate::stack::model::NetworkMode::Service(n)) => Some(n.clone()),
                _ => None,
            },
        });
    }
    let observed = containers::list(docker, &project.name).await?;
    let plan = plan::plan(&project.name, &desired, &observed)?;
    report
        .lines
        .extend(plan.actions.iter().map(|a| a.to_string()));
    report.plan = plan.clone();
    if opts.dry_run {
        return Ok(report);
    }

    let deadline = Instant::now() + opts.wait_timeout;
    let wait = |service: String, name: String, want: Want| async move {
        health::wait(docker, &service, &name, want, deadline, opts.wait_timeout).await
    };

    // Orphans and surplus replicas go first (in parallel: each may take its
    // stop grace period), freeing their names, ports and addresses.
    let removals = plan.actions.iter().filter_map(|a| match a {
        Action::Remove { old, reason } => {
            tracing::info!(container = %old.name, reason, "removing container");
            Some(containers::stop_and_remove(
                docker, &old.id, &old.name, false,
            ))
        }
        _ => None,
    });
    for r in futures::future::join_all(removals).await {
        r?;
    }

    for service_name in &plan.order {
        let Some(service) = project.services.get(service_name) else {
            continue;
        };
        let actions: Vec<&Action> = plan
            .actions
            .iter()
            .filter(|a| a.service() == service_name && !matches!(a, Action::Remove { .. }))
            .collect();
        if !actions.iter().any(|a| a.is_change()) {
            continue;
        }
        for (dep, d) in &service.depends_on {
            if !project.services.contains_key(dep) {
                continue;
            }
            let want = match d.condition {
                Condition::Started => continue,
                Condition::Healthy => Want::Healthy,
                Condition::CompletedSuccessfully => Want::Completed,
            };
            let replicas = project.services.get(dep).map(|s| s.replicas).unwrap_or(0);
            for n in 1..=replicas {
                tracing::info!(service = %service_name, dependency = %dep, "waiting for dependency ({want:?})");
                wait(dep.clone(), container_name(project, dep, n), want)
                    .await
                    .with_context(|| format!("service `{service_name}` depends on `{dep}`"))?;
            }
        }
        let image = &images[service_name];
        let secrets = material_of(service_name);
        let hash = image
            .id
            .as_ref()
            .map(|id| config_hash(project, service, id, secrets))
            .unwrap_or_default();
        for action in actions {
            match action {
                Action::Create { number, .. } | Action::Recreate { number, .. } => {
                    if let Action::Recreate { old, reason, .. } = action {
                        tracing::info!(container = %old.name, reason, "recreating container");
                        containers::stop_and_remove(docker, &old.id, &old.name, false).await?;
                    }
                    let spec =
                        container_spec(project, service, *number, &image.reference, &hash, secrets)
                            .map_err(anyhow::Error::msg)?;
                    containers::create_and_start(docker, &spec).await?;
                    tracing::info!(container = %spec.name, "container started");
                }
                Action::Start { id, number, .. } => {
                    containers::start(docker, id, &container_name(project, service_name, *number))
                        .await?
                }
                Action::Restart {
                    id, number, reason, ..
                } => {
                    let name = container_name(project, service_name, *number);
                    tracing::info!(container = %name, reason, "restarting container");
                    containers::restart(docker, id, &name).await?
                }
                Action::Keep { .. } | Action::Remove { .. } => {}
            }
        }
    }

    // Every container with a healthcheck must come up healthy.
    for service_name in &plan.order {
        let Some(service) = project.services.get(service_name) else {
            continue;
        };
        for n in 1..=service.replicas {
            wait(
                service_name.clone(),
                container_name(project, service_name, n),
                Want::HealthyIfChecked,
            )
            .await?;
        }
    }
    Ok(report)
}
