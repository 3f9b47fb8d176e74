//! The one call rehost makes to Prometheus: `POST
//! /api/v1/admin/tsdb/snapshot`, over plain HTTP/1.1 (hyper, which the AWS SDK
//! already brings) to the `api:` of the entry, normally on loopback. Every step
//! is bounded in time. The URL never carries credentials (the configuration
//! refuses them), so it can be named in errors.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use crate::error::{Error, Result};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A snapshot hard-links the blocks and writes the head block: seconds, but
/// minutes for a large head on a slow disk.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
/// The answer is a few dozen bytes of JSON.
const MAX_RESPONSE: usize = 64 * 1024;

/// `http://host:port[/prefix]` split into what a request needs.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    authority: String,
    /// `--web.route-prefix`, without a trailing `/` (empty for none).
    prefix: String,
}

fn endpoint(api: &str) -> Result<Endpoint> {
    let bad = |detail: &str| Error::Prometheus {
        api: api.to_string(),
        detail: detail.to_string(),
    };
    let rest = api
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected an http:// URL (the admin API is reached without TLS)"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') || path.contains(['?', '#']) {
        return Err(bad("expected http://host[:port][/route-prefix]"));
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok(Endpoint {
        authority,
        prefix: path.trim_end_matches('/').to_string(),
    })
}

#[derive(Deserialize)]
struct Reply {
    status: String,
    #[serde(default)]
    data: Option<SnapshotData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct SnapshotData {
    name: String,
}

/// Asks Prometheus for a snapshot (head block included) and returns its name:
/// a directory under `<data dir>/snapshots/`.
pub async fn snapshot(api: &str) -> Result<String> {
    let ep = endpoint(api)?;
    let fail = |detail: String| Error::Prometheus {
        api: api.to_string(),
        detail,
    };
    let stream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::TcpStream::connect(&ep.authority),
    )
    .await
    .map_err(|_| fail(format!("no connection within {CONNECT_TIMEOUT:?}")))?
    .map_err(|e| {
        fail(format!(
            "cannot connect ({e}); is Prometheus running there?"
        ))
    })?;
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
        let driver = tokio::spawn(conn);
        let request = Request::post(format!("{}/api/v1/admin/tsdb/snapshot", ep.prefix))
            .header(hyper::header::HOST, &ep.authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(format!("build the request: {e}")))?;
        let result = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail(format!("snapshot request: {e}")))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| fail(format!("read the answer: {e}")))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        }
        .await;
        driver.abort();
        result
    };
    let (status, body) = tokio::time::timeout(SNAPSHOT_TIMEOUT, exchange)
        .await
        .map_err(|_| fail(format!("no snapshot within {SNAPSHOT_TIMEOUT:?}")))??;
    interpret(status, &body).map_err(fail)
}

/// The snapshot's name from Prometheus' answer, or what went wrong in words
/// an operator can act on.
fn interpret(status: StatusCode, body: &[u8]) -> Result<String, String> {
    let reply: Option<Reply> = serde_json::from_slice(body).ok();
    let error = reply.as_ref().and_then(|r| r.error.clone());
    if error
        .as_deref()
        .is_some_and(|e| e.contains("admin APIs disabled"))
    {
        return Err(
            "the admin API is disabled: start Prometheus with --web.enable-admin-api \
             (rehost needs it for POST /api/v1/admin/tsdb/snapshot)"
                .to_string(),
        );
    }
    match reply {
        Some(Reply {
            status: s,
            data: Some(SnapshotData { name }),
            ..
        }) if status.is_success() && s == "success" => {
            if name.is_empty()
                || name.len() > 128
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "unexpected snapshot name {:?}",
                    name.escape_debug().to_string()
                ));
            }
            Ok(name)
        }
        _ => {
            let shown = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            Err(match error {
                Some(e) => format!("snapshot failed with HTTP {status}: {e}"),
                None if status == StatusCode::NOT_FOUND => format!(
                    "HTTP 404 for /api/v1/admin/tsdb/snapshot: is `api` Prometheus' URL \
                     (with its --web.route-prefix)? The answer was: {shown}"
                ),
                None => format!("snapshot failed with HTTP {status}: {shown}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("http://127.0.0.1:9090").unwrap(),
            Endpoint {
                authority: "127.0.0.1:9090".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            endpoint("http://prometheus/prom/").unwrap(),
            Endpoint {
                authority: "prometheus:80".into(),
                prefix: "/prom".into()
            }
        );
        assert_eq!(
            endpoint("http://[::1]:9090").unwrap().authority,
            "[::1]:9090"
        );
        for bad in [
            "https://x:9090",
            "x:9090",
            "http://",
            "http://a@b:1",
            "http://x/?q",
        ] {
            assert!(endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers() {
        let ok = br#"{"status":"success","data":{"name":"20261123T101500Z-5c7a1f0d3e2b4a69"}}"#;
        assert_eq!(
            interpret(StatusCode::OK, ok).unwrap(),
            "20261123T101500Z-5c7a1f0d3e2b4a69"
        );
        let disabled =
            br#"{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}"#;
        let err = interpret(StatusCode::SERVICE_UNAVAILABLE, disabled).unwrap_err();
        assert!(err.contains("--web.enable-admin-api"), "{err}");
        let evil = br#"{"status":"success","data":{"name":"../../etc"}}"#;
        assert!(interpret(StatusCode::OK, evil).is_err());
        let err = interpret(StatusCode::NOT_FOUND, b"404 page not found").unwrap_err();
        assert!(err.contains("route-prefix"), "{err}");
        let err = interpret(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"status":"error","error":"disk full"}"#,
        )
        .unwrap_err();
        assert!(err.contains("disk full"), "{err}");
    }
}
