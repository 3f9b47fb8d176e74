//! node_exporter textfile metrics: one file per (job, target) in the textfile
//! directory, written to a temporary name and renamed, so node_exporter never
//! reads half a file. The previous file is read back first: a failed run keeps
//! the last success timestamp and bumps the failure counter, and a run that
//! failed is never reported as a success.
//!
//! The textfile directory may be writable by other users (and `boot` records
//! as root), so it is opened once as a [`Dir`] and everything happens relative
//! to it: the previous file is read `O_NOFOLLOW`, the new one is an
//! `O_EXCL|O_NOFOLLOW` temporary renamed over the name (a symlink there is
//! replaced, never written through).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::safefs::Dir;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const LAST_SUCCESS: &str = "rehost_job_last_success_timestamp_seconds";
pub const LAST_ATTEMPT: &str = "rehost_job_last_attempt_timestamp_seconds";
pub const LAST_DURATION: &str = "rehost_job_last_duration_seconds";
pub const LAST_STATUS: &str = "rehost_job_last_status";
pub const FAILURES: &str = "rehost_job_failures_total";
pub const LAST_BYTES: &str = "rehost_job_last_bytes";

const HELP: [(&str, &str, &str); 6] = [
    (
        LAST_SUCCESS,
        "gauge",
        "Unix time of the job's last success (0: never).",
    ),
    (
        LAST_ATTEMPT,
        "gauge",
        "Unix time the job's last run started.",
    ),
    (
        LAST_DURATION,
        "gauge",
        "Duration of the job's last run in seconds.",
    ),
    (
        LAST_STATUS,
        "gauge",
        "1 if the job's last run succeeded, 0 if it failed.",
    ),
    (
        FAILURES,
        "counter",
        "Failed runs of the job since its metrics file was created.",
    ),
    (
        LAST_BYTES,
        "gauge",
        "Bytes transferred by the job's last run.",
    ),
];

/// One finished run.
#[derive(Clone, Copy, Debug)]
pub struct Run {
    pub started: SystemTime,
    pub duration: Duration,
    pub ok: bool,
    pub bytes: u64,
}

/// The state of one job as its metrics file records it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobStatus {
    pub job: String,
    pub target: String,
    pub last_success: f64,
    pub last_attempt: f64,
    pub last_duration: f64,
    pub last_ok: bool,
    pub failures: f64,
    pub last_bytes: f64,
}

/// `rehost-<job>-<target>.prom`
pub fn file_name(job: &str, target: &str) -> String {
    format!("rehost-{job}-{target}.prom")
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Records `run` of `job` on `target` in `dir`, returning the new status.
pub fn record(dir: &Path, job: &str, target: &str, run: &Run) -> io::Result<JobStatus> {
    let name = file_name(job, target);
    let dir = Dir::open_or_create(dir, 0o755)?;
    let previous = read_previous(&dir, &name)?
        .and_then(|text| {
            parse(&text)
                .into_iter()
                .find(|s| s.job == job && s.target == target)
        })
        .unwrap_or_default();
    let status = JobStatus {
        job: job.to_string(),
        target: target.to_string(),
        last_success: if run.ok {
            unix(run.started + run.duration)
        } else {
            previous.last_success
        },
        last_attempt: unix(run.started),
        last_duration: run.duration.as_secs_f64(),
        last_ok: run.ok,
        failures: previous.failures + if run.ok { 0.0 } else { 1.0 },
        last_bytes: run.bytes as f64,
    };
    // 0644: node_exporter usually runs as another user.
    dir.write_atomic(name.as_ref(), render(&status).as_bytes(), 0o644)?;
    Ok(status)
}

/// The current content of the metrics file `name`, if it is a regular file.
/// Anything else there (a symlink someone planted) counts as no previous
/// run: it is replaced by the next write, never followed.
pub(crate) fn read_previous(dir: &Dir, name: &str) -> io::Result<Option<String>> {
    let f = match dir.open_file(Path::new(name)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e)
            if e.kind() == io::ErrorKind::InvalidInput
                || e.raw_os_error() == Some(nix::libc::ELOOP) =>
        {
            tracing::warn!(path = %dir.path().join(name).display(), error = %e, "metrics file is not a regular file; replacing it");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    // A metrics file is a few KiB; a bigger one is not ours to read whole.
    f.take(MAX_PREVIOUS_BYTES).read_to_string(&mut text)?;
    Ok(Some(text))
}

const MAX_PREVIOUS_BYTES: u64 = 1 << 20;

/// A label value in the exposition format.
pub fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

/// The `# HELP` and `# TYPE` lines that open the family `name`.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The exposition text of one job.
pub fn render(s: &JobStatus) -> String {
    let labels = format!(
        "{{job=\"{}\",target=\"{}\"}}",
        escape(&s.job),
        escape(&s.target)
    );
    let values = [
        s.last_success,
        s.last_attempt,
        s.last_duration,
        if s.last_ok { 1.0 } else { 0.0 },
        s.failures,
        s.last_bytes,
    ];
    let mut out = String::new();
    for ((name, kind, help), value) in HELP.iter().zip(values) {
        family(&mut out, name, kind, help);
        let _ = writeln!(out, "{name}{labels} {value}");
    }
    out
}

/// Reads back what [`render`] wrote (ignoring anything else).
pub fn parse(text: &str) -> Vec<JobStatus> {
    let mut by_key: BTreeMap<(String, String), JobStatus> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let Some((name, labels)) = series.split_once('{') else {
            continue;
        };
        let labels = labels.trim_end_matches('}');
        let (mut job, mut target) = (None, None);
        for pair in split_labels(labels) {
            match pair {
                ("job", v) => job = Some(v),
                ("target", v) => target = Some(v),
                _ => {}
            }
        }
        let (Some(job), Some(target)) = (job, target) else {
            continue;
        };
        let s = by_key
            .entry((job.clone(), target.clone()))
            .or_insert_with(|| JobStatus {
                job,
                target,
                ..Default::default()
            });
        match name {
            LAST_SUCCESS => s.last_success = value,
            LAST_ATTEMPT => s.last_attempt = value,
            LAST_DURATION => s.last_duration = value,
            LAST_STATUS => s.last_ok = value == 1.0,
            FAILURES => s.failures = value,
            LAST_BYTES => s.last_bytes = value,
            _ => {}
        }
    }
    by_key.into_values().collect()
}

/// Splits `a="x",b="y"` honouring escapes, and unescapes the values.
fn split_labels(s: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').trim(), value));
        rest = &after[end..];
    }
    out
}

/// Every job status found in `dir` (files named `rehost-*.prom`).
pub fn read_dir(dir: &Path) -> io::Result<Vec<(PathBuf, JobStatus)>> {
    let mut out = Vec::new();
    let dir = Dir::open(dir)?;
    for name in dir.entries()? {
        let name = name.to_string_lossy().into_owned();
        if !(name.starts_with("rehost-") && name.ends_with(".prom")) {
            continue;
        }
        let path = dir.path().join(&name);
        // Not followed if someone made it a symlink: skipped, with a warning.
        let Some(text) = read_previous(&dir, &name)? else {
            continue;
        };
        for s in parse(&text) {
            out.push((path.clone(), s));
        }
    }
    out.sort_by(|a, b| (&a.1.job, &a.1.target).cmp(&(&b.1.job, &b.1.target)));
    Ok(out)
}

/// `rehost-generation.prom`: whether this machine still runs the newest
/// generation of its host (see `rehost_jobs::generation`).
pub const GENERATION_FILE: &str = "rehost-generation.prom";
pub const GENERATION_SUPERSEDED: &str = "rehost_generation_superseded";

/// Records whether a newer generation of `host` took over from this machine
/// (1: it no longer backs up or prunes).
pub fn record_generation(dir: &Path, host: &str, superseded: bool) -> io::Result<()> {
    let host = host.replace('\\', "\\\\").replace('"', "\\\"");
    let text = format!(
        "# HELP {GENERATION_SUPERSEDED} 1 when a newer `rehost boot` of the host on another \
         machine took over: this machine no longer backs up or prunes.\n\
         # TYPE {GENERATION_SUPERSEDED} gauge\n\
         {GENERATION_SUPERSEDED}{{host=\"{host}\"}} {}\n",
        u8::from(superseded)
    );
    crate::fsutil::write_atomic(&dir.join(GENERATION_FILE), text.as_bytes(), 0o644)
}

/// `rehost-boot.prom`: the boot sequence's own metrics. Not a job (it has no
/// schedule, and `status` must not call it stale), so its metric names differ.
pub const BOOT_FILE: &str = "rehost-boot.prom";
pub const BOOT_LAST_SUCCESS: &str = "rehost_boot_last_success_timestamp_seconds";

/// Records one boot: its outcome, total duration and the duration of each
/// step that ran (`docker`, `restore`, `up`…). Like [`record`], a failure
/// keeps the last success.
pub fn record_boot(dir: &Path, run: &Run, steps: &[(&str, Duration)]) -> io::Result<()> {
    let dir = Dir::open_or_create(dir, 0o755)?;
    let previous = read_previous(&dir, BOOT_FILE)?
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix(BOOT_LAST_SUCCESS)?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        })
        .unwrap_or(0.0);
    let last_success = if run.ok {
        unix(run.started + run.duration)
    } else {
        previous
    };
    let mut out = String::new();
    let gauges = [
        (
            BOOT_LAST_SUCCESS,
            "Unix time of the last successful `rehost boot` (0: never).",
            last_success,
        ),
        (
            "rehost_boot_last_attempt_timestamp_seconds",
            "Unix time the last `rehost boot` started.",
            unix(run.started),
        ),
        (
            "rehost_boot_last_duration_seconds",
            "Duration of the last `rehost boot` in seconds.",
            run.duration.as_secs_f64(),
        ),
        (
            "rehost_boot_last_status",
            "1 if the last `rehost boot` succeeded, 0 if it failed.",
            if run.ok { 1.0 } else { 0.0 },
        ),
    ];
    for (name, help, value) in gauges {
        family(&mut out, name, "gauge", help);
        let _ = writeln!(out, "{name} {value}");
    }
    if !steps.is_empty() {
        let name = "rehost_boot_step_duration_seconds";
        family(
            &mut out,
            name,
            "gauge",
            "Duration of each step of the last `rehost boot`.",
        );
        for (step, d) in steps {
            let _ = writeln!(
                out,
                "{name}{{step=\"{}\"}} {}",
                escape(step),
                d.as_secs_f64()
            );
        }
    }
    dir.write_atomic(BOOT_FILE.as_ref(), out.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn run(at: u64, ok: bool, bytes: u64) -> Run {
        Run {
            started: UNIX_EPOCH + Duration::from_secs(at),
            duration: Duration::from_millis(1500),
            ok,
            bytes,
        }
    }

    #[test]
    fn boot_failure_keeps_last_success() {
        let dir = tempfile::tempdir().unwrap();
        let steps = [
            ("restore", Duration::from_millis(250)),
            ("up", Duration::from_secs(2)),
        ];
        record_boot(dir.path(), &run(1000, true, 0), &steps).unwrap();
        record_boot(dir.path(), &run(2000, false, 0), &steps[..1]).unwrap();
        let text = fs::read_to_string(dir.path().join(BOOT_FILE)).unwrap();
        assert!(
            text.contains("rehost_boot_last_success_timestamp_seconds 1001.5\n"),
            "{text}"
        );
        assert!(
            text.contains("rehost_boot_last_attempt_timestamp_seconds 2000\n"),
            "{text}"
        );
        assert!(text.contains("rehost_boot_last_status 0\n"), "{text}");
        assert!(
            text.contains("rehost_boot_step_duration_seconds{step=\"restore\"} 0.25\n"),
            "{text}"
        );
        assert!(!text.contains("step=\"up\""), "{text}");
        // A boot file is not a job: status must not list it.
        assert!(read_dir(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn failure_keeps_last_success_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let s = record(dir.path(), "backup", "acme", &run(1000, true, 42)).unwrap();
        assert_eq!(s.last_success, 1001.5);
        let s = record(dir.path(), "backup", "acme", &run(2000, false, 7)).unwrap();
        assert_eq!(s.last_success, 1001.5);
        assert_eq!(s.last_attempt, 2000.0);
        assert!(!s.last_ok);
        assert_eq!(s.failures, 1.0);
        let s = record(dir.path(), "backup", "acme", &run(3000, false, 0)).unwrap();
        assert_eq!(s.failures, 2.0);
        let s = record(dir.path(), "backup", "acme", &run(4000, true, 9)).unwrap();
        assert_eq!((s.last_success, s.failures, s.last_ok), (4001.5, 2.0, true));
        let text = fs::read_to_string(dir.path().join("rehost-backup-acme.prom")).unwrap();
        assert!(text.contains(
            r#"rehost_job_last_success_timestamp_seconds{job="backup",target="acme"} 4001.5"#
        ));
        assert!(text.contains("# TYPE rehost_job_failures_total counter"));
        let all = read_dir(dir.path()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1, s);
    }

    #[test]
    fn a_never_successful_job_reports_zero() {
        let dir = tempfile::tempdir().unwrap();
        let s = record(dir.path(), "verify", "data", &run(10, false, 0)).unwrap();
        assert_eq!(s.last_success, 0.0);
        assert_eq!(s.failures, 1.0);
    }

    #[test]
    fn labels_are_escaped_and_read_back() {
        let s = JobStatus {
            job: "pull".into(),
            target: "we\"ird\\name".into(),
            last_ok: true,
            ..Default::default()
        };
        assert_eq!(parse(&render(&s)), vec![s]);
    }
}
