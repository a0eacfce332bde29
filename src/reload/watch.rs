//! Watches the plugin directory and reloads once it has been quiet for a moment. A file being
//! written (a plain `cp` over the old plugin included) keeps producing events, so the reload waits
//! until the writer is done; a file caught half-written anyway fails its checks and leaves the
//! running generation serving, and the writer's next event brings another reload.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Reloader;

/// How long the directory must be quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(300);

/// Starts watching `dir`; the returned watcher must be kept alive, and the task stops on `stop`.
pub fn watch_plugins(
    dir: &Path,
    reloader: Arc<Reloader>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> notify::Result<RecommendedWatcher> {
    // Bounded: when it is full a reload is already due, so a lost signal loses nothing.
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let touches_plugin = event.is_ok_and(|event| {
            !event.kind.is_access() && event.paths.iter().any(|path| path.extension().is_some_and(|e| e == "wasm"))
        });
        if touches_plugin {
            let _ = changed.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tasks.spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                change = changes.recv() => if change.is_none() { return },
            }
            // Wait for quiet: every further change restarts the wait.
            loop {
                match tokio::time::timeout(QUIET, changes.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!("plugin directory changed: reloading plugins");
            reloader.reload_plugins().await;
        }
    });
    Ok(watcher)
}
