//! One HTTP/1.1 POST to a notification URL, over TLS for `https://`: connect,
//! handshake, send, read the answer's status line. The answer's body is not
//! read: only its status matters. The caller bounds the whole exchange in
//! time; nothing here waits without the caller's bound.
//!
//! TLS is rustls with the AWS SDK's crypto provider (aws-lc-rs) and the same
//! trust roots as the S3 client: the system's store through
//! `rustls-native-certs`, which honours `SSL_CERT_FILE` and `SSL_CERT_DIR`.
//!
//! Invariant: no error message holds the URL's path or query (hyper's, io's
//! and rustls' errors never name the request target; ours name at most the
//! host, which the caller adds).

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::NotifyUrl;

const AGENT: &str = concat!("rehost/", env!("CARGO_PKG_VERSION"));

/// The TLS client settings of every https:// notification: built once, at the
/// first one (reading the trust roots costs a few milliseconds).
pub(crate) fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("reading the system's CA certificates: {e}");
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err("no CA certificate found on this host (the system's store, or SSL_CERT_FILE / SSL_CERT_DIR): https:// notifications cannot be checked".to_string());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// POSTs `body` to `url` and returns the answer's status code. `tls` must be
/// given for an https:// URL.
pub(crate) async fn post(
    url: &NotifyUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    content_type: &'static str,
    body: Bytes,
) -> Result<u16, String> {
    let tcp = TcpStream::connect((url.host(), url.port()))
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    // One small request: do not wait to fill a segment.
    let _ = tcp.set_nodelay(true);
    if !url.tls() {
        return exchange(tcp, url, content_type, body).await;
    }
    let config = tls.ok_or("no TLS settings for an https:// URL")?;
    let name = ServerName::try_from(url.host().to_string())
        .map_err(|_| "the host is not a valid TLS server name".to_string())?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    exchange(stream, url, content_type, body).await
}

async fn exchange<S>(
    io: S,
    url: &NotifyUrl,
    content_type: &'static str,
    body: Bytes,
) -> Result<u16, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let request = Request::post(url.request_target())
        .header(HOST, url.authority())
        .header(USER_AGENT, AGENT)
        .header(CONTENT_TYPE, content_type)
        // Also for an empty body, which hyper would send without one: some
        // servers answer a POST without a length with 411.
        .header(CONTENT_LENGTH, body.len())
        .header(CONNECTION, "close")
        .body(Full::new(body))
        .map_err(|e| format!("cannot build the request: {e}"))?;
    // The connection is driven here, not in a spawned task: it ends with
    // this future, whatever bounds it.
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(request));
    let ended = tokio::select! {
        response = &mut response => {
            return response.map(|r| r.status().as_u16()).map_err(|e| format!("HTTP: {e}"))
        }
        ended = &mut conn => ended,
    };
    // The connection ended (`Connection: close`) in the same poll that read
    // the answer, or without one: either way the answer is settled now.
    match (response.await, ended) {
        (Ok(r), _) => Ok(r.status().as_u16()),
        (Err(_), Err(e)) => Err(format!("HTTP: {e}")),
        (Err(e), Ok(())) => Err(format!(
            "the server closed the connection without answering ({e})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A server that reads one request (head and `Content-Length` body) and
    /// answers `answer`; returns what it read.
    async fn serve_once(answer: &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the client closed early");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .unwrap_or_else(|| panic!("no content-length in {head:?}"))
                        .parse()
                        .unwrap();
                    if body.len() >= length {
                        break;
                    }
                }
            }
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8(seen).unwrap()
        });
        (port, server)
    }

    #[tokio::test]
    async fn posts_the_body_with_host_type_and_agent() {
        let (port, server) = serve_once("HTTP/1.1 204 No Content\r\n\r\n").await;
        let url = NotifyUrl::parse(&format!("http://127.0.0.1:{port}/ping/abc?x=1")).unwrap();
        let status = post(
            &url,
            None,
            "application/json",
            Bytes::from_static(b"{\"a\":1}"),
        )
        .await
        .unwrap();
        assert_eq!(status, 204);
        let seen = server.await.unwrap();
        assert!(
            seen.starts_with("POST /ping/abc?x=1 HTTP/1.1\r\n"),
            "{seen}"
        );
        assert!(
            seen.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{seen}"
        );
        assert!(
            seen.contains("content-type: application/json\r\n"),
            "{seen}"
        );
        assert!(seen.contains("user-agent: rehost/"), "{seen}");
        assert!(seen.ends_with("\r\n\r\n{\"a\":1}"), "{seen}");
    }

    #[tokio::test]
    async fn an_error_status_is_returned_and_a_refusal_is_an_error() {
        let (port, server) = serve_once("HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n").await;
        let url = NotifyUrl::parse(&format!("http://127.0.0.1:{port}/SECRET")).unwrap();
        assert_eq!(post(&url, None, "text/plain", Bytes::new()).await, Ok(500));
        server.await.unwrap();

        // Nothing listens there any more.
        let err = post(&url, None, "text/plain", Bytes::new())
            .await
            .unwrap_err();
        assert!(err.starts_with("cannot connect"), "{err}");
        assert!(!err.contains("SECRET"), "{err}");
    }

    #[tokio::test]
    async fn a_server_closing_without_an_answer_is_an_error() {
        let (port, server) = serve_once("").await;
        let url = NotifyUrl::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let err = post(&url, None, "text/plain", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(err.contains("closed"), "{err}");
        server.await.unwrap();
    }
}
