//! Watches the plugin directory and the config file, and reloads once they have been quiet for a
//! moment. A file being written (a plain `cp` over the old plugin included) keeps producing events,
//! so the reload waits until the writer is done; a file caught half-written anyway fails its checks
//! and leaves the running generation serving, and the writer's next event brings another reload.
//! The config file is watched through its directory, since editors replace files by renaming.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Reloader;

/// How long the watched files must be quiet before a reload.
pub const QUIET: Duration = Duration::from_millis(300);

/// Starts watching `plugin_dir` (its `*.wasm` files and their `*.wasm.sig` signatures) and `config_file`, either of them optional;
/// the returned watcher must be kept alive, and the task stops on `stop`.
pub fn watch(
    plugin_dir: Option<&Path>,
    config_file: Option<&Path>,
    reloader: Arc<Reloader>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> notify::Result<RecommendedWatcher> {
    let plugin_dir = plugin_dir.map(std::fs::canonicalize).transpose()?;
    let config_file = match config_file {
        Some(file) => {
            let dir = file.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = file.file_name().ok_or_else(|| notify::Error::generic("the config path names no file"))?;
            Some(std::fs::canonicalize(dir)?.join(name))
        }
        None => None,
    };
    let relevant = {
        let (plugin_dir, config_file) = (plugin_dir.clone(), config_file.clone());
        move |path: &PathBuf| {
            // A component, or its detached signature (`<file>.wasm.sig`).
            let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
            let plugin = plugin_dir.as_deref().is_some_and(|dir| {
                path.parent() == Some(dir) && (name.ends_with(".wasm") || name.ends_with(".wasm.sig"))
            });
            plugin || config_file.as_ref() == Some(path)
        }
    };
    // Bounded: when it is full a reload is already due, so a lost signal loses nothing.
    let (changed, mut changes) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|event| !event.kind.is_access() && event.paths.iter().any(&relevant)) {
            let _ = changed.try_send(());
        }
    })?;
    let mut dirs: Vec<PathBuf> =
        plugin_dir.into_iter().chain(config_file.and_then(|f| f.parent().map(Path::to_owned))).collect();
    dirs.dedup();
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
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
            tracing::info!("plugin directory or config file changed: reloading");
            reloader.reload().await;
        }
    });
    Ok(watcher)
}
