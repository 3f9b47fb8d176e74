//! The delivery rules against a receiver on loopback: which events go where,
//! retries, the timeout, and that nothing fails the caller.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// How the receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    Status(u16),
    /// Read the request, never answer.
    Hang,
}

/// What the receiver got: the request line's target and the body.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver answering each request with the next of `answers` (the last
/// one repeated).
async fn receiver(answers: Vec<Answer>) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let answer = answers[n.min(answers.len() - 1)];
            n += 1;
            let log = Arc::clone(&log);
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (target, body) = loop {
                    let read = socket.read(&mut buf).await.unwrap_or(0);
                    if read == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..read]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        let target = head.split(' ').nth(1).unwrap_or("").to_string();
                        break (target, body.to_string());
                    }
                };
                log.lock().unwrap().push((target, body));
                match answer {
                    Answer::Status(status) => {
                        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                        let _ = socket.write_all(reply.as_bytes()).await;
                    }
                    Answer::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                }
            });
        }
    });
    (port, seen)
}

fn config(notify: &str, metrics: Option<&Path>) -> Config {
    let metrics = metrics
        .map(|d| format!("metrics:\n  textfile_dir: {}\n", d.display()))
        .unwrap_or_default();
    let text = format!(
        "host: web-1\nstorage:\n  url: file:///tmp/rehost-unused\nstate:\n  acme:\n    path: /srv/acme\n  site:\n    path: /srv/site\n{metrics}notify:\n{notify}"
    );
    crate::config::parse(Path::new("/etc/rehost/rehost.yaml"), &text, &|_| None).unwrap()
}

fn targets(seen: &Seen) -> Vec<String> {
    seen.lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.clone())
        .collect()
}

#[tokio::test]
async fn events_go_only_where_on_and_jobs_say() {
    let (port, seen) = receiver(vec![Answer::Status(200)]).await;
    let n = Notifier::new(
        &config(
            &format!(
                "  - url: http://127.0.0.1:{port}/all\n    on: [start, success, failure]\n\
                 \x20 - url: http://127.0.0.1:{port}/failures-of-acme\n    on: [failure]\n    jobs: [\"backup:acme\"]\n\
                 \x20 - url: http://127.0.0.1:{port}/pulls\n    jobs: [pull]\n"
            ),
            None,
        ),
        false,
    );
    n.started("backup", "acme").await;
    n.finished(
        "backup",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Err("boom".into()),
    )
    .await;
    n.finished(
        "backup",
        "site",
        SystemTime::now(),
        Duration::from_secs(1),
        Err("boom".into()),
    )
    .await;
    n.finished(
        "verify",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Ok(3),
    )
    .await;
    let mut got = targets(&seen);
    got.sort();
    assert_eq!(got, ["/all", "/all", "/all", "/all", "/failures-of-acme"]);
}

#[tokio::test]
async fn a_failing_receiver_is_retried_a_bounded_number_of_times() {
    let (port, seen) = receiver(vec![Answer::Status(500)]).await;
    let dir = tempfile::tempdir().unwrap();
    let n = Notifier::new(
        &config(
            &format!("  - url: http://127.0.0.1:{port}/SECRET\n    name: hook\n    retries: 1\n"),
            Some(dir.path()),
        ),
        false,
    );
    n.finished(
        "backup",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Ok(3),
    )
    .await;
    assert_eq!(targets(&seen), ["/SECRET", "/SECRET"]);
    let text = std::fs::read_to_string(dir.path().join("rehost-notify-hook.prom")).unwrap();
    let status = rehost_jobs::metrics::parse(&text);
    assert_eq!(status.len(), 1);
    assert!(!status[0].last_ok);
    assert_eq!(status[0].failures, 1.0);

    // 503 then 200: delivered at the second attempt, recorded as a success.
    let (port, seen) = receiver(vec![Answer::Status(503), Answer::Status(204)]).await;
    let n = Notifier::new(
        &config(
            &format!("  - url: http://127.0.0.1:{port}/x\n    name: hook\n    retries: 3\n"),
            Some(dir.path()),
        ),
        false,
    );
    n.finished(
        "backup",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Ok(3),
    )
    .await;
    assert_eq!(targets(&seen).len(), 2);
    let text = std::fs::read_to_string(dir.path().join("rehost-notify-hook.prom")).unwrap();
    let status = rehost_jobs::metrics::parse(&text);
    assert!(status[0].last_ok);
    assert_eq!(status[0].failures, 1.0, "the earlier failure is kept");
}

#[tokio::test]
async fn a_refusal_is_not_retried() {
    let (port, seen) = receiver(vec![Answer::Status(404)]).await;
    let n = Notifier::new(
        &config(
            &format!("  - url: http://127.0.0.1:{port}/x\n    retries: 5\n"),
            None,
        ),
        false,
    );
    n.finished(
        "backup",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Ok(3),
    )
    .await;
    assert_eq!(targets(&seen).len(), 1);
}

#[tokio::test]
async fn a_hanging_receiver_is_abandoned_at_the_timeout() {
    let (port, seen) = receiver(vec![Answer::Hang]).await;
    let n = Notifier::new(
        &config(
            &format!("  - url: http://127.0.0.1:{port}/x\n    timeout: 200ms\n    retries: 0\n"),
            None,
        ),
        false,
    );
    // The bound is generous: it only tells an abandoned attempt from a hang.
    tokio::time::timeout(
        Duration::from_secs(30),
        n.finished(
            "backup",
            "acme",
            SystemTime::now(),
            Duration::from_secs(1),
            Ok(3),
        ),
    )
    .await
    .expect("the delivery was not abandoned");
    assert_eq!(targets(&seen).len(), 1, "the receiver got the request");
}

#[tokio::test]
async fn nothing_is_sent_in_a_dry_run() {
    let (port, seen) = receiver(vec![Answer::Status(200)]).await;
    let n = Notifier::new(
        &config(&format!("  - url: http://127.0.0.1:{port}/x\n"), None),
        true,
    );
    n.finished(
        "backup",
        "acme",
        SystemTime::now(),
        Duration::from_secs(1),
        Ok(3),
    )
    .await;
    assert!(targets(&seen).is_empty());
}

#[test]
fn backoff_doubles_up_to_ten_seconds() {
    let waits: Vec<u64> = (1..=6).map(|n| backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 10, 10]);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
}
