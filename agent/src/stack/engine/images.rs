//! The image each service runs. A `build:` service's image is tagged
//! `<project>-<service>:<first 16 hex of the context hash>`: when that tag
//! exists the context is unchanged and nothing is built. Otherwise the
//! context is streamed as a tar to the Engine's build API (classic builder,
//! which every Engine speaks), its output logged line by line (no labels are
//! added: the classic builder makes each one a step of its own, a second of
//! a cold build apiece on some storage drivers; the tag names the project and
//! service); a failed
//! build's error carries the output of the step that failed. `image:`, when
//! given too, is tagged onto the result (`pull_policy` does not apply to a
//! built service: its tag is its content hash). A service with only
//! `image:` follows `pull_policy`: `missing` (the default) pulls an image
//! that is not present, `always` pulls on every `up`, `never` refuses a
//! missing image. Pulls use the registry credentials of Docker's
//! `config.json` (see `auth`) and draw one progress line per layer when
//! stderr is a terminal.

use std::collections::HashMap;

use anyhow::Context as _;
use bollard::models::ProgressDetail;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions, TagImageOptions};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::auth;
use super::connect::describe;
use super::context::{self, Chunk};
use crate::stack::model::{Project, PullPolicy, Service};

/// The image a service's containers run.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    /// What the container's `Image` is set to.
    pub reference: String,
    /// `None` in a dry run when the image would be built.
    pub id: Option<String>,
    pub built: bool,
    /// Pulled by this `up` (in a dry run: would be).
    pub pulled: bool,
}

/// A build that the Engine reported as failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "build of service `{service}` failed: {message}\n--- output of the failing step ---\n{output}"
)]
pub struct BuildFailed {
    pub service: String,
    pub message: String,
    pub output: String,
}

/// Lines of a failed step kept for the error (the start of a long output is
/// rarely the reason).
const KEEP_LINES: usize = 60;

pub(crate) async fn ensure(
    docker: &Docker,
    project: &Project,
    service: &Service,
    dry_run: bool,
) -> anyhow::Result<Image> {
    match &service.build {
        Some(build) => {
            let b = build.clone();
            let ctx = tokio::task::spawn_blocking(move || context::scan(&b))
                .await
                .context("build context scan panicked")??;
            let tag = format!("{}:{}", repo(project, service), &ctx.hash[..16]);
            let existing = inspect_id(docker, &tag).await?;
            let (id, built) = match existing {
                Some(id) => (Some(id), false),
                None if dry_run => (None, true),
                None => {
                    build_image(docker, service, ctx, &tag).await?;
                    let id = inspect_id(docker, &tag)
                        .await?
                        .with_context(|| format!("built image {tag} is missing after the build"))?;
                    (Some(id), true)
                }
            };
            if let (Some(name), Some(id), false) = (&service.image, &id, dry_run) {
                if name != &tag && inspect_id(docker, name).await?.as_deref() != Some(id.as_str()) {
                    let (repo, t) = split_tag(name);
                    docker
                        .tag_image(
                            &tag,
                            Some(TagImageOptions {
                                repo: Some(repo.to_string()),
                                tag: Some(t.to_string()),
                            }),
                        )
                        .await
                        .map_err(|e| anyhow::anyhow!(describe(&e)))
                        .with_context(|| format!("tag {tag} as {name}"))?;
                }
            }
            Ok(Image {
                reference: tag,
                id,
                built,
                pulled: false,
            })
        }
        None => {
            let name = service.image.clone().with_context(|| {
                format!("service `{}` has neither image nor build", service.name)
            })?;
            let present = inspect_id(docker, &name).await?;
            let pull_now = match (service.pull_policy, &present) {
                (PullPolicy::Always, _) => true,
                (_, Some(_)) => false,
                (PullPolicy::Never, None) => anyhow::bail!(
                    "image {name} is not present locally, and `pull_policy: never` forbids pulling it"
                ),
                (PullPolicy::Missing | PullPolicy::Build, None) => true,
            };
            let id = if !pull_now || dry_run {
                present
            } else {
                pull(docker, &name).await?;
                inspect_id(docker, &name).await?
            };
            Ok(Image {
                reference: name,
                id,
                built: false,
                pulled: pull_now,
            })
        }
    }
}

/// `<project>-<service>`, lowercased: Docker repository names are.
fn repo(project: &Project, service: &Service) -> String {
    format!("{}-{}", project.name, service.name).to_lowercase()
}

/// `repo[:tag]` → (repo, tag); a `:` inside a registry host's port is not a tag.
fn split_tag(name: &str) -> (&str, &str) {
    match name.rfind(':') {
        Some(i) if !name[i + 1..].contains('/') => (&name[..i], &name[i + 1..]),
        _ => (name, "latest"),
    }
}

/// The image's ID, `None` when the Engine has no such image.
pub(crate) async fn inspect_id(docker: &Docker, name: &str) -> anyhow::Result<Option<String>> {
    match docker.inspect_image(name).await {
        Ok(i) => Ok(i.id),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => {
            Err(anyhow::anyhow!(describe(&e))).with_context(|| format!("inspect image {name}"))
        }
    }
}

async fn pull(docker: &Docker, name: &str) -> anyhow::Result<()> {
    tracing::info!(image = name, "pulling image");
    let config = auth::config_path(&|n| std::env::var(n).ok());
    let credentials = auth::credentials(config.as_deref(), name)?;
    let (repo, tag) = split_tag(name);
    let mut stream = docker.create_image(
        Some(CreateImageOptions {
            from_image: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        }),
        None,
        credentials,
    );
    let stderr = std::io::stderr();
    let mut progress = Progress::new(std::io::IsTerminal::is_terminal(&stderr).then_some(stderr));
    while let Some(item) = stream.next().await {
        let info = item
            .map_err(|e| anyhow::anyhow!(describe(&e)))
            .with_context(|| format!("pull image {name}"))?;
        if let Some(detail) = info.error_detail {
            anyhow::bail!("pull image {name}: {}", detail.message.unwrap_or_default());
        }
        if let (Some(id), Some(status)) = (info.id, info.status) {
            let bar = match info.progress_detail {
                Some(ProgressDetail {
                    current: Some(current),
                    total: Some(total),
                }) if total > 0 => format!("{} / {} MB", current >> 20, total >> 20),
                _ => String::new(),
            };
            progress.update(&id, &status, &bar);
        }
    }
    tracing::info!(image = name, "pulled image");
    Ok(())
}

/// The per-layer lines of a pull: on a terminal each layer has one line,
/// redrawn in place as its status changes (as `docker pull` does);
/// elsewhere each change of a layer's status is one debug event.
struct Progress<W> {
    /// Where the lines are drawn: stderr when it is a terminal, else nothing
    /// (each change is a debug log line instead).
    out: Option<W>,
    layers: Vec<(String, String)>,
    drawn: usize,
}

impl<W: std::io::Write> Progress<W> {
    fn new(out: Option<W>) -> Progress<W> {
        Progress {
            out,
            layers: Vec::new(),
            drawn: 0,
        }
    }

    fn update(&mut self, id: &str, status: &str, bar: &str) {
        let line = format!("{id}: {status} {bar}");
        let line = line.trim_end().to_string();
        match self.layers.iter_mut().find(|(l, _)| l == id) {
            Some((_, old)) if *old == line => return,
            Some((_, old)) => *old = line,
            None => self.layers.push((id.to_string(), line)),
        }
        let Some(out) = self.out.as_mut() else {
            tracing::debug!(layer = id, status, "pull");
            return;
        };
        // Up to the first line drawn, then every line again, each cleared.
        // A failed write to the terminal costs the display, never the pull.
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", self.drawn);
        }
        for (_, line) in &self.layers {
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        self.drawn = self.layers.len();
        let _ = out.flush();
    }
}

async fn build_image(
    docker: &Docker,
    service: &Service,
    ctx: context::Context,
    tag: &str,
) -> anyhow::Result<()> {
    let build = service
        .build
        .as_ref()
        .context("build_image called for a service without build")?;
    tracing::info!(service = %service.name, context = %build.context.display(), tag, "building image");
    let (tx, mut rx) = mpsc::channel::<Chunk>(8);
    let writer = tokio::task::spawn_blocking(move || context::write_tar(&ctx, tx));
    let body = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let shmsize = match build.shm_size {
        None => None,
        Some(n) => Some(i32::try_from(n).with_context(|| {
            format!(
                "service `{}`: build.shm_size {n} is larger than the Engine's build API takes (2 GiB)",
                service.name
            )
        })?),
    };
    let options = BuildImageOptions {
        dockerfile: build.dockerfile.clone(),
        t: Some(tag.to_string()),
        rm: true,
        forcerm: true,
        target: build.target.clone().unwrap_or_default(),
        labels: (!build.labels.is_empty()).then(|| {
            build
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        }),
        networkmode: build.network.clone(),
        extrahosts: build.extra_hosts.first().cloned(),
        shmsize,
        buildargs: (!build.args.is_empty()).then(|| {
            build
                .args
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<HashMap<_, _>>()
        }),
        ..Default::default()
    };
    let mut stream = docker.build_image(options, None, Some(bollard::body_try_stream(body)));
    let mut step: Vec<String> = Vec::new();
    let mut failure: Option<String> = None;
    let mut partial = String::new();
    while let Some(item) = stream.next().await {
        let info = match item {
            Ok(info) => info,
            Err(e) => {
                failure = Some(describe(&e));
                break;
            }
        };
        if let Some(text) = info.stream {
            partial.push_str(&text);
            while let Some(i) = partial.find('\n') {
                let line: String = partial.drain(..=i).collect();
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    continue;
                }
                tracing::info!(service = %service.name, "build: {line}");
                if line.starts_with("Step ") {
                    step.clear();
                }
                step.push(line);
                if step.len() > KEEP_LINES {
                    step.remove(1);
                }
            }
        }
        if let Some(detail) = info.error_detail {
            failure = Some(detail.message.unwrap_or_else(|| "unknown error".into()));
            break;
        }
    }
    if !partial.trim().is_empty() {
        step.push(partial.trim_end().to_string());
    }
    drop(stream);
    let written = writer.await.context("build context writer panicked")?;
    if let Some(message) = failure {
        return Err(BuildFailed {
            service: service.name.clone(),
            message,
            output: step.join("\n"),
        }
        .into());
    }
    written.with_context(|| format!("send the build context of service `{}`", service.name))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_like_docker() {
        assert_eq!(split_tag("web"), ("web", "latest"));
        assert_eq!(split_tag("example/web:1.2"), ("example/web", "1.2"));
        assert_eq!(split_tag("reg:5000/web"), ("reg:5000/web", "latest"));
        assert_eq!(split_tag("reg:5000/web:2"), ("reg:5000/web", "2"));
    }

    /// On a terminal, each layer keeps one line, redrawn in place: the
    /// cursor goes back up over what was drawn and every line is cleared
    /// and written again; an unchanged status draws nothing.
    #[test]
    fn pull_progress_keeps_one_line_per_layer() {
        let mut p = Progress::new(Some(Vec::new()));
        p.update("a1", "Pulling fs layer", "");
        p.update("b2", "Downloading", "1 / 4 MB");
        p.update("b2", "Downloading", "1 / 4 MB");
        p.update("a1", "Pull complete", "");
        let out = String::from_utf8(p.out.take().unwrap()).unwrap();
        assert_eq!(
            out,
            "\x1b[2Ka1: Pulling fs layer\n\
             \x1b[1A\x1b[2Ka1: Pulling fs layer\n\x1b[2Kb2: Downloading 1 / 4 MB\n\
             \x1b[2A\x1b[2Ka1: Pull complete\n\x1b[2Kb2: Downloading 1 / 4 MB\n"
        );
        // Not a terminal: nothing drawn, the state still kept.
        let mut quiet = Progress::<Vec<u8>>::new(None);
        quiet.update("a1", "Pulling fs layer", "");
        assert_eq!(quiet.layers.len(), 1);
        assert!(quiet.out.is_none());
    }
}
