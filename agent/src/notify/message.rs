//! What is sent for an event: the webhook's JSON document, or the
//! healthchecks.io ping (which URL, and the text it stores with the ping).
//! Pure functions of the event, so every field is tested here.
//!
//! The webhook document is a stable schema (`schema: 1`): fields are only
//! ever added under it; a change of meaning or a removal would be `schema: 2`.
//! The README documents every field.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::config::{NotifyEvent, NotifyKind, NotifyTarget};
use crate::output::bytes;

use super::NotifyUrl;

/// The webhook document's `schema`.
pub(crate) const SCHEMA: u32 = 1;
/// Longest error text sent: a chain of contexts is a few hundred bytes, but a
/// server's answer quoted in it could be anything.
pub(crate) const MAX_ERROR: usize = 4096;

/// An event of one run.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    /// `backup`, `pull`, `restore`, `verify`, `prune` or `boot`.
    pub job: String,
    /// The entry's name; empty for `boot`.
    pub target: String,
    pub event: NotifyEvent,
    /// When the run started (`start`) or ended.
    pub time: DateTime<Utc>,
    /// Zero for `start`.
    pub duration: Duration,
    /// Bytes the run moved; zero for `start` and `failure`.
    pub bytes: u64,
    /// The error, for `failure` only.
    pub error: Option<String>,
}

/// One HTTP request to make.
#[derive(Debug)]
pub(crate) struct Request {
    pub url: NotifyUrl,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[derive(Serialize)]
struct Document<'a> {
    schema: u32,
    host: &'a str,
    job: &'a str,
    target: &'a str,
    status: &'static str,
    time: String,
    duration: f64,
    bytes: u64,
    error: Option<&'a str>,
}

/// The request that tells `target` about `event` of a run on `host`.
pub(crate) fn request(target: &NotifyTarget, host: &str, event: &Event) -> Result<Request, String> {
    match target.kind {
        NotifyKind::Webhook => Ok(Request {
            url: target.url.clone(),
            content_type: "application/json",
            body: webhook_body(host, event)?,
        }),
        NotifyKind::Healthchecks => Ok(Request {
            url: match event.event {
                NotifyEvent::Start => target.url.with_path_suffix("start"),
                NotifyEvent::Success => target.url.clone(),
                NotifyEvent::Failure => target.url.with_path_suffix("fail"),
            },
            content_type: "text/plain; charset=utf-8",
            body: healthchecks_body(host, event).into_bytes(),
        }),
    }
}

fn webhook_body(host: &str, event: &Event) -> Result<Vec<u8>, String> {
    let document = Document {
        schema: SCHEMA,
        host,
        job: &event.job,
        target: &event.target,
        status: event.event.as_str(),
        time: event.time.to_rfc3339_opts(SecondsFormat::Secs, true),
        // Milliseconds are plenty, and 12.345 reads better than 12.345678901.
        duration: event.duration.as_millis() as f64 / 1000.0,
        bytes: event.bytes,
        error: event.error.as_deref().map(truncated),
    };
    serde_json::to_vec(&document).map_err(|e| format!("cannot encode the document: {e}"))
}

/// One line (or, for a failure, the error after it) that healthchecks.io
/// keeps with the ping and shows in the check's log.
fn healthchecks_body(host: &str, event: &Event) -> String {
    let run = if event.target.is_empty() {
        event.job.clone()
    } else {
        format!("{} {}", event.job, event.target)
    };
    let seconds = event.duration.as_millis() as f64 / 1000.0;
    match event.event {
        NotifyEvent::Start => format!("rehost {host}: {run} started\n"),
        NotifyEvent::Success => format!(
            "rehost {host}: {run} succeeded in {seconds:.1}s ({})\n",
            bytes(event.bytes)
        ),
        NotifyEvent::Failure => format!(
            "rehost {host}: {run} failed after {seconds:.1}s: {}\n",
            truncated(event.error.as_deref().unwrap_or("unknown error"))
        ),
    }
}

/// `text` cut to at most [`MAX_ERROR`] bytes, at a character boundary.
fn truncated(text: &str) -> &str {
    if text.len() <= MAX_ERROR {
        return text;
    }
    let mut end = MAX_ERROR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DEFAULT_NOTIFY_RETRIES, DEFAULT_NOTIFY_TIMEOUT};

    fn target(kind: NotifyKind, url: &str) -> NotifyTarget {
        NotifyTarget {
            name: "0".into(),
            url: NotifyUrl::parse(url).unwrap(),
            kind,
            on: vec![
                NotifyEvent::Start,
                NotifyEvent::Success,
                NotifyEvent::Failure,
            ],
            jobs: Vec::new(),
            timeout: DEFAULT_NOTIFY_TIMEOUT,
            retries: DEFAULT_NOTIFY_RETRIES,
        }
    }

    fn event(event: NotifyEvent, error: Option<&str>) -> Event {
        Event {
            job: "backup".into(),
            target: "acme".into(),
            event,
            time: DateTime::parse_from_rfc3339("2026-11-23T10:15:03.5Z")
                .unwrap()
                .with_timezone(&Utc),
            duration: Duration::from_micros(12_345_678),
            bytes: 1536,
            error: error.map(str::to_string),
        }
    }

    #[test]
    fn the_webhook_document_has_every_field() {
        let t = target(NotifyKind::Webhook, "https://hooks.example.com/T/SECRET");
        let r = request(&t, "web-1", &event(NotifyEvent::Success, None)).unwrap();
        assert_eq!(r.url.request_target(), "/T/SECRET");
        assert_eq!(r.content_type, "application/json");
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({
                "schema": 1,
                "host": "web-1",
                "job": "backup",
                "target": "acme",
                "status": "success",
                "time": "2026-11-23T10:15:03Z",
                "duration": 12.345,
                "bytes": 1536,
                "error": null,
            })
        );
        // The fields come in the documented order.
        let text = String::from_utf8(r.body).unwrap();
        assert!(
            text.starts_with("{\"schema\":1,\"host\":\"web-1\",\"job\":"),
            "{text}"
        );

        let r = request(&t, "web-1", &event(NotifyEvent::Failure, Some("disk full"))).unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc["status"], "failure");
        assert_eq!(doc["error"], "disk full");
    }

    #[test]
    fn healthchecks_pings_the_url_its_start_and_its_fail() {
        let t = target(
            NotifyKind::Healthchecks,
            "https://hc-ping.com/uuid?create=1",
        );
        let path = |e: NotifyEvent| {
            request(&t, "web-1", &event(e, Some("boom")))
                .unwrap()
                .url
                .request_target()
        };
        assert_eq!(path(NotifyEvent::Start), "/uuid/start?create=1");
        assert_eq!(path(NotifyEvent::Success), "/uuid?create=1");
        assert_eq!(path(NotifyEvent::Failure), "/uuid/fail?create=1");

        let body = |e: NotifyEvent| {
            String::from_utf8(request(&t, "web-1", &event(e, Some("boom"))).unwrap().body).unwrap()
        };
        assert_eq!(
            body(NotifyEvent::Start),
            "rehost web-1: backup acme started\n"
        );
        assert_eq!(
            body(NotifyEvent::Success),
            "rehost web-1: backup acme succeeded in 12.3s (1.5 KiB)\n"
        );
        assert_eq!(
            body(NotifyEvent::Failure),
            "rehost web-1: backup acme failed after 12.3s: boom\n"
        );
        let mut boot = event(NotifyEvent::Start, None);
        boot.job = "boot".into();
        boot.target = String::new();
        let r = request(&t, "web-1", &boot).unwrap();
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            "rehost web-1: boot started\n"
        );
    }

    #[test]
    fn long_errors_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ERROR);
        let cut = truncated(&long);
        assert!(cut.len() <= MAX_ERROR && cut.len() >= MAX_ERROR - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(truncated("short"), "short");
    }
}
