//! Waiting for containers: healthy (for `condition: service_healthy` and at
//! the end of `up`), or exited with code 0 (for
//! `service_completed_successfully`). Every wait polls the Engine at a fixed
//! interval until a deadline, so it is bounded in time and in requests; an
//! unhealthy or exited container fails at once, with the container's last
//! health check output in the error.

use std::time::Duration;

use anyhow::Context as _;
use bollard::models::{ContainerStateStatusEnum, HealthStatusEnum};
use bollard::Docker;
use tokio::time::Instant;

use super::connect::describe;

const POLL: Duration = Duration::from_millis(200);

/// A service that did not become healthy (or did not complete) as required.
#[derive(Debug, thiserror::Error)]
#[error("service `{service}` {problem} (container {container}){}", last_log.as_ref().map(|l| format!("; last health check: {l}")).unwrap_or_default())]
pub struct NotReady {
    pub service: String,
    pub container: String,
    pub problem: String,
    pub last_log: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// Healthy; a container without a healthcheck is an error.
    Healthy,
    /// Healthy if it has a healthcheck, running otherwise.
    HealthyIfChecked,
    /// Exited with code 0.
    Completed,
}

/// Waits until the container `name` of `service` is as wanted, or `deadline`.
pub(crate) async fn wait(
    docker: &Docker,
    service: &str,
    name: &str,
    want: Want,
    deadline: Instant,
    timeout: Duration,
) -> anyhow::Result<()> {
    let not_ready = |problem: String, last_log: Option<String>| NotReady {
        service: service.to_string(),
        container: name.to_string(),
        problem,
        last_log,
    };
    loop {
        let info = docker
            .inspect_container(name, None)
            .await
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .with_context(|| format!("inspect container {name}"))?;
        let state = info.state.unwrap_or_default();
        let health = state.health.clone();
        let last_log = health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|l| l.last())
            .map(|r| {
                format!(
                    "exit code {}: {}",
                    r.exit_code.unwrap_or(-1),
                    r.output.as_deref().unwrap_or("").trim()
                )
            });
        let status = state.status.unwrap_or(ContainerStateStatusEnum::EMPTY);
        let exited = matches!(
            status,
            ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD
        );
        let exit_code = state.exit_code.unwrap_or(0);
        match want {
            Want::Completed => {
                if exited {
                    if exit_code == 0 {
                        return Ok(());
                    }
                    return Err(not_ready(
                        format!("did not complete successfully: exited with code {exit_code}"),
                        None,
                    )
                    .into());
                }
            }
            Want::Healthy | Want::HealthyIfChecked => {
                let hstatus = health.as_ref().and_then(|h| h.status);
                let checked = !matches!(
                    hstatus,
                    None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY)
                );
                // Without a healthcheck there is nothing to wait for (a
                // one-shot service may well have exited already).
                if want == Want::HealthyIfChecked && !checked {
                    return Ok(());
                }
                if exited {
                    return Err(not_ready(
                        format!("exited with code {exit_code} instead of becoming healthy"),
                        last_log,
                    )
                    .into());
                }
                match hstatus {
                    Some(HealthStatusEnum::HEALTHY) => return Ok(()),
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        return Err(not_ready("is unhealthy".to_string(), last_log).into())
                    }
                    Some(HealthStatusEnum::STARTING) => {}
                    None | Some(HealthStatusEnum::NONE) | Some(HealthStatusEnum::EMPTY) => {
                        return Err(not_ready(
                            "has no healthcheck, but a service depends on it with condition: service_healthy"
                                .to_string(),
                            None,
                        )
                        .into());
                    }
                }
                if Instant::now() >= deadline {
                    return Err(not_ready(
                        format!(
                            "is not healthy after {} (status {})",
                            humantime::format_duration(timeout),
                            hstatus
                                .map(|s| s.to_string())
                                .unwrap_or_else(|| status.to_string())
                        ),
                        last_log,
                    )
                    .into());
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        }
        if Instant::now() >= deadline {
            return Err(not_ready(
                format!(
                    "has not completed after {} (status {status})",
                    humantime::format_duration(timeout)
                ),
                None,
            )
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}
