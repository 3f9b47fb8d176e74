//! Connecting to the Docker Engine: `DOCKER_HOST` (a `unix://` socket) or
//! `/var/run/docker.sock`, a ping bounded in time, and the API version
//! negotiated down to the Engine's, so an older Engine (Debian's 20.10
//! speaks 1.41) is driven with requests it understands.

use std::time::Duration;

use bollard::Docker;

/// Request timeout of ordinary calls; builds and health waits bound
/// themselves.
const REQUEST_TIMEOUT_SECS: u64 = 600;
/// How long the first ping may take before the Engine counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The Engine could not be reached or refused us (exit code 3, like an
/// unreachable store).
#[derive(Debug, thiserror::Error)]
#[error(
    "Docker Engine not reachable at {host}: {reason} (is dockerd running? is the user in the docker group?)"
)]
pub struct Unreachable {
    pub host: String,
    pub reason: String,
}

/// Connects to the Engine named by `DOCKER_HOST` (or the default socket) and
/// checks that it answers.
pub async fn connect() -> Result<Docker, Unreachable> {
    let host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.to_string());
    connect_to(&host).await
}

pub async fn connect_to(host: &str) -> Result<Docker, Unreachable> {
    let fail = |reason: String| Unreachable {
        host: host.to_string(),
        reason,
    };
    let path = host.strip_prefix("unix://").ok_or_else(|| {
        fail("only unix:// sockets are supported (DOCKER_HOST=unix:///path/to/docker.sock)".into())
    })?;
    if path.is_empty() {
        return Err(fail("the socket path is empty".into()));
    }
    match std::fs::metadata(path) {
        Ok(_) => {}
        Err(e) => return Err(fail(format!("{path}: {e}"))),
    }
    let docker =
        Docker::connect_with_unix(host, REQUEST_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
            .map_err(|e| fail(e.to_string()))?;
    let negotiated = tokio::time::timeout(PING_TIMEOUT, async {
        docker.ping().await?;
        docker.negotiate_version().await
    })
    .await
    .map_err(|_| fail(format!("no answer within {}s", PING_TIMEOUT.as_secs())))?
    .map_err(|e| fail(describe(&e)))?;
    Ok(negotiated)
}

/// The useful part of a bollard error (its Display of hyper errors is just
/// "error trying to connect").
pub(crate) fn describe(e: &bollard::errors::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_socket_is_unreachable_with_a_hint() {
        let e = connect_to("unix:///nonexistent/docker.sock")
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("Docker Engine not reachable at unix:///nonexistent/docker.sock"),
            "{msg}"
        );
        assert!(msg.contains("is dockerd running?"), "{msg}");
    }

    #[tokio::test]
    async fn a_socket_nobody_listens_on_is_unreachable() {
        let d = tempfile::tempdir().unwrap();
        let sock = d.path().join("dead.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let e = connect_to(&format!("unix://{}", sock.display()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("not reachable"), "{e}");
    }

    #[tokio::test]
    async fn tcp_hosts_are_refused_clearly() {
        let e = connect_to("tcp://127.0.0.1:2375").await.unwrap_err();
        assert!(e.to_string().contains("only unix:// sockets"), "{e}");
    }
}
