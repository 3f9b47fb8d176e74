//! Clean-up that must run even when the future that needed it was dropped
//! (a job attempt abandoned at shutdown): `stop:` services started again.
//!
//! Invariant: every task spawned here is awaited, bounded, by [`wait`] before
//! `rehost run` exits; nothing is leaked past the process's last log line.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use tokio_util::task::TaskTracker;

static TASKS: LazyLock<TaskTracker> = LazyLock::new(TaskTracker::new);

/// Runs `fut` on the current runtime, tracked for [`wait`].
pub(crate) fn spawn(what: &'static str, fut: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            TASKS.spawn_on(fut, &runtime);
        }
        Err(_) => tracing::error!("cannot {what}: no async runtime left"),
    }
}

/// Waits up to `bound` for every clean-up spawned so far.
pub(crate) async fn wait(bound: Duration) {
    TASKS.close();
    if tokio::time::timeout(bound, TASKS.wait()).await.is_err() {
        tracing::error!(
            pending = TASKS.len(),
            "clean-up still going at exit (see the errors above)"
        );
    }
    TASKS.reopen();
}
