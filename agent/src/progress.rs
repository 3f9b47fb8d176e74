//! Progress bars on stderr for `backup`, `restore`, `verify` and `pull` run
//! from a terminal: bytes, files, rate, and an ETA once the job knows its
//! totals. Nothing is drawn when stderr is not a terminal, under `-q`, or
//! with `--log-format json` (a log collector wants lines, not redraws).
//!
//! The jobs only add to counters ([`rehost_jobs::progress::Progress`]); a
//! ticker thread per bar reads them ten times a second and draws, so the data
//! path never waits on a terminal. Log lines go through [`LogWriter`], which
//! lifts the bars while a line is written, so the two never mix on a line.

use std::io::{self, IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use rehost_jobs::progress::{Progress, Snapshot};

use crate::cli::{GlobalArgs, LogFormat};
use crate::output::{bytes, count};

/// How often a bar reads its counters.
const TICK: Duration = Duration::from_millis(100);

/// The bars' owner, set once at start when bars are drawn at all.
static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Decides, once, whether this run draws progress bars.
pub fn init(args: &GlobalArgs) {
    if wanted(args.quiet, args.log_format, io::stderr().is_terminal()) {
        let _ = BARS.set(MultiProgress::new());
    }
}

fn wanted(quiet: u8, format: LogFormat, terminal: bool) -> bool {
    quiet == 0 && matches!(format, LogFormat::Text) && terminal
}

/// The counters to hand a job and the bar that shows them; `None` when no
/// bars are drawn. Call [`Shown::finish`] with the job's outcome.
pub fn show(job: &str, target: &str) -> Option<Shown> {
    let bars = BARS.get()?;
    let counters = Arc::new(Progress::new());
    let bar = bars.add(ProgressBar::no_length());
    bar.set_style(counting_style());
    bar.set_prefix(format!("{job} {target}"));
    let (stop, stopped) = mpsc::channel::<()>();
    let (c, b) = (Arc::clone(&counters), bar.clone());
    // Without a thread (the system refused one) the bar stays as it is;
    // the job runs the same.
    let ticker = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || {
            let mut known = false;
            loop {
                update(&b, &c.snapshot(), &mut known);
                match stopped.recv_timeout(TICK) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
            }
        })
        .ok();
    Some(Shown {
        counters,
        bar,
        started: Instant::now(),
        stop: Some(stop),
        ticker,
    })
}

/// One job's bar, drawn while it runs.
pub struct Shown {
    counters: Arc<Progress>,
    bar: ProgressBar,
    started: Instant,
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Shown {
    pub fn counters(&self) -> Arc<Progress> {
        Arc::clone(&self.counters)
    }

    /// Replaces the bar with one line saying what the job did (nothing when
    /// it moved nothing: an unchanged backup, a skipped restore).
    pub fn finish(mut self, ok: bool) {
        self.stop_ticker();
        self.bar.finish_and_clear();
        let s = self.counters.snapshot();
        if s.bytes == 0 && s.files == 0 {
            return;
        }
        let line = summary(
            &self.bar.prefix(),
            &s,
            self.started.elapsed().as_secs_f64(),
            ok,
        );
        if let Some(bars) = BARS.get() {
            // Printed above the bars, where a redraw never erases it.
            let _ = bars.println(line);
        }
    }

    fn stop_ticker(&mut self) {
        self.stop.take();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Shown {
    /// A job abandoned without [`Shown::finish`] (its future was dropped):
    /// the bar goes away with it.
    fn drop(&mut self) {
        self.stop_ticker();
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

fn counting_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner} {prefix:.bold}  {binary_bytes}  {msg}  {binary_bytes_per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn total_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:.bold} [{wide_bar}] {binary_bytes}/{binary_total_bytes}  {msg}  \
         {binary_bytes_per_sec}  ETA {eta}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// Shows `s` on `bar`; `known` remembers whether the bar has its totals yet.
fn update(bar: &ProgressBar, s: &Snapshot, known: &mut bool) {
    match s.totals {
        Some((total_bytes, total_files)) => {
            if !*known {
                bar.set_style(total_style());
                *known = true;
            }
            bar.set_length(total_bytes);
            // Parts of an encrypted object share an age chunk at their
            // border, so what is fetched can pass the total a little.
            bar.set_position(s.bytes.min(total_bytes));
            bar.set_message(format!(
                "{}/{} files",
                s.files.min(total_files),
                total_files
            ));
        }
        None => {
            bar.set_position(s.bytes);
            bar.set_message(count(s.files, "file"));
            bar.tick();
        }
    }
}

/// `backup acme: done, 12.0 MiB, 3 files in 1.2 s (10.0 MiB/s)`, or
/// `… failed after …`.
fn summary(prefix: &str, s: &Snapshot, secs: f64, ok: bool) -> String {
    let moved = match s.totals {
        Some((total, _)) => s.bytes.min(total),
        None => s.bytes,
    };
    let files = count(s.files, "file");
    if ok {
        let rate = if secs > 0.0 {
            format!(" ({}/s)", bytes((moved as f64 / secs) as u64))
        } else {
            String::new()
        };
        format!(
            "{prefix}: done, {}, {files} in {secs:.1} s{rate}",
            bytes(moved)
        )
    } else {
        format!(
            "{prefix}: failed after {}, {files}, {secs:.1} s",
            bytes(moved)
        )
    }
}

/// Where log lines go: stderr, with the bars lifted while a line is written
/// (one `write` per event: the formatter hands over whole lines).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match BARS.get() {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf).map(|()| buf.len())),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_only_on_a_terminal_with_text_logs_and_no_quiet() {
        assert!(wanted(0, LogFormat::Text, true));
        assert!(!wanted(0, LogFormat::Text, false));
        assert!(!wanted(1, LogFormat::Text, true));
        assert!(!wanted(0, LogFormat::Json, true));
    }

    #[test]
    fn the_summary_says_what_moved() {
        let s = Snapshot {
            bytes: 3 * 1024 * 1024 + 10,
            files: 3,
            totals: Some((3 * 1024 * 1024, 3)),
        };
        assert_eq!(
            summary("restore acme", &s, 2.0, true),
            "restore acme: done, 3.0 MiB, 3 files in 2.0 s (1.5 MiB/s)"
        );
        let s = Snapshot {
            bytes: 512,
            files: 1,
            totals: None,
        };
        assert_eq!(
            summary("backup prom", &s, 0.3, false),
            "backup prom: failed after 512 B, 1 file, 0.3 s"
        );
    }

    #[test]
    fn a_bar_gets_its_totals_when_the_job_knows_them() {
        let bar = ProgressBar::hidden();
        let mut known = false;
        update(
            &bar,
            &Snapshot {
                bytes: 100,
                files: 2,
                totals: None,
            },
            &mut known,
        );
        assert!(!known);
        assert_eq!(bar.position(), 100);
        assert_eq!(bar.message(), "2 files");
        update(
            &bar,
            &Snapshot {
                bytes: 700,
                files: 5,
                totals: Some((600, 4)),
            },
            &mut known,
        );
        assert!(known);
        assert_eq!(bar.length(), Some(600));
        assert_eq!(bar.position(), 600);
        assert_eq!(bar.message(), "4/4 files");
    }
}
