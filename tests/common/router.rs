//! A real `eventyard serve` process for end-to-end tests: started on a config written to a temp
//! dir with HTTP on port 0, its address read from its JSON log, stopped with SIGTERM (or killed on
//! drop). Every wait has a deadline.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Where the router's stdout (the stdout sink's lines) goes, in its temp dir.
const STDOUT_FILE: &str = "stdout.log";

/// The `[admin]` section of test configs that call the admin endpoints, and its bearer token.
pub const ADMIN: &str = "\n[admin]\ntokens = [\"admin-secret\"]\n";
pub const ADMIN_TOKEN: &str = "admin-secret";

/// A router config for swapping handlers under load: plugin `stage` from the watched directory
/// `plugins`, with `stage_config` as its config (TOML key/values, or nothing), on route `all` from
/// subject `numbers` to file sink `files` under the router's directory; with the admin credential.
pub fn stage_config(plugins: &Path, stage_config: &str) -> String {
    format!(
        r#"
[plugins]
dir = "{}"
watch = true
[plugin.stage]
world = "handler"
config = {{ {stage_config} }}
[http]
listen = "127.0.0.1:0"
[[route]]
name = "all"
subject = "numbers"
handlers = ["stage"]
sinks = ["files"]
[sinks.files]
kind = "file"
root = "{{dir}}/files"
"#,
        plugins.display()
    ) + ADMIN
}

/// [`stage_config`], the plugin directory watched only when `watch`, with reload reports going to
/// file sink `reload-log` (where [`RouterProcess::published_reports`] reads them) and `extra`
/// appended.
pub fn reporting_config(plugins: &Path, watch: bool, stage_config: &str, extra: &str) -> String {
    let watched = self::stage_config(plugins, stage_config).replacen("watch = true", &format!("watch = {watch}"), 1);
    format!(
        "{watched}\n[[route]]\nname = \"reloads\"\nsubject = \"$SYS.EVENTYARD.RELOAD\"\nsinks = [\"reload-log\"]\n\
         [sinks.reload-log]\nkind = \"file\"\nroot = \"{{dir}}/reloads\"\n{extra}"
    )
}

/// How long a router may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running router process.
pub struct RouterProcess {
    child: Option<Child>,
    pub http: SocketAddr,
    /// The NATS gateway's address, when the config has a `[service]` section.
    pub nats: Option<SocketAddr>,
    /// The address of each `[service.listeners.NAME]`, by name.
    pub listeners: std::collections::BTreeMap<String, SocketAddr>,
    /// Log lines (JSON) the router printed so far, collected by a reader thread.
    logs: mpsc::Receiver<String>,
    seen: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl RouterProcess {
    /// Writes `config` (with `{dir}` replaced by the temp dir) and starts `eventyard serve` on it.
    pub fn start(config: &str) -> RouterProcess {
        RouterProcess::start_with_plugins(config, &[])
    }

    /// As [`start`](Self::start), with first-party plugins built and copied into `{dir}/plugins`
    /// first: each `(crate, plugin)` as the plugin named `plugin` (file `plugin` with `-` as `_`).
    pub fn start_with_plugins(config: &str, plugins: &[(&str, &str)]) -> RouterProcess {
        RouterProcess::spawn(Path::new(env!("CARGO_BIN_EXE_eventyard")), config, plugins, &[])
    }

    /// As [`start`](Self::start), with these environment variables set for the router.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> RouterProcess {
        RouterProcess::spawn(Path::new(env!("CARGO_BIN_EXE_eventyard")), config, &[], env)
    }

    /// As [`start`](Self::start), running another `eventyard` binary (for benchmarks that compare
    /// two builds side by side).
    pub fn start_binary(binary: &Path, config: &str) -> RouterProcess {
        RouterProcess::spawn(binary, config, &[], &[])
    }

    /// Starts the router on `config` without waiting for it to run (to kill it while it starts);
    /// its addresses are unknown.
    pub fn launch(config: &str) -> RouterProcess {
        RouterProcess::launch_binary(Path::new(env!("CARGO_BIN_EXE_eventyard")), config, &[], &[])
    }

    fn spawn(binary: &Path, config: &str, plugins: &[(&str, &str)], env: &[(&str, &str)]) -> RouterProcess {
        let mut router = RouterProcess::launch_binary(binary, config, plugins, env);
        let line = router.wait_for_log("eventyard running", START_TIMEOUT);
        let json: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
        router.http =
            json["fields"]["http_addr"].as_str().and_then(|a| a.parse().ok()).expect("the log names http_addr");
        router.nats = json["fields"]["nats_addr"].as_str().and_then(|a| a.parse().ok());
        let listeners = json["fields"]["nats_listeners"].as_str().unwrap_or_default().split_whitespace();
        router.listeners = listeners
            .filter_map(|listener| listener.split_once('='))
            .map(|(name, addr)| (name.to_owned(), addr.parse().expect("a listener's address")))
            .collect();
        router
    }

    fn launch_binary(binary: &Path, config: &str, plugins: &[(&str, &str)], env: &[(&str, &str)]) -> RouterProcess {
        let dir = super::tempdir();
        let plugin_dir = dir.path().join("plugins");
        std::fs::create_dir_all(&plugin_dir).expect("the plugin directory is made");
        for (krate, name) in plugins {
            let file = plugin_dir.join(format!("{}.wasm", name.replace('-', "_")));
            std::fs::copy(super::plugin(krate), file).expect("the plugin is copied");
        }
        let config = config.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("eventyard.toml");
        std::fs::write(&path, config).expect("config is written");
        let stdout = std::fs::File::create(dir.path().join(STDOUT_FILE)).expect("the stdout file is made");
        let mut child = Command::new(binary)
            .args(["serve", "--log-format", "json", "--log-level", "info", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .env(eventyard::plugin::CACHE_DIR_ENV, super::artifact_cache())
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("eventyard starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (send, logs) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        RouterProcess {
            child: Some(child),
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            nats: None,
            listeners: Default::default(),
            logs,
            seen: Vec::new(),
            dir,
        }
    }

    /// Waits for a log line containing `needle`; panics with every line seen when it does not come.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.logs.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {needle:?} within {timeout:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Whether a log line seen so far (by [`wait_for_log`](Self::wait_for_log)) contains `needle`.
    pub fn has_logged(&self, needle: &str) -> bool {
        self.seen.iter().any(|line| line.contains(needle))
    }

    /// As [`has_logged`](Self::has_logged), counting what the router has printed up to now.
    pub fn has_logged_now(&mut self, needle: &str) -> bool {
        while let Ok(line) = self.logs.try_recv() {
            self.seen.push(line);
        }
        self.has_logged(needle)
    }

    /// The router's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the router is running").id()
    }

    /// `nats://host:port` of the gateway.
    pub fn nats_url(&self) -> String {
        format!("nats://{}", self.nats.expect("the config turns the gateway on"))
    }

    /// POSTs `event` as a structured CloudEvent on `subject`; returns the HTTP status.
    pub async fn post_event(&self, subject: &str, event: &serde_json::Value) -> u16 {
        reqwest::Client::new()
            .post(self.url(&format!("/v1/events/{subject}")))
            .header("content-type", "application/cloudevents+json")
            .body(event.to_string())
            .send()
            .await
            .expect("the router answers")
            .status()
            .as_u16()
    }

    /// The value of `series` (a metric name with its labels, as `/metrics` prints it).
    pub async fn metric(&self, series: &str) -> u64 {
        let metrics = reqwest::get(self.url("/metrics"))
            .await
            .and_then(reqwest::Response::error_for_status)
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in the metrics"))
    }

    /// Calls the admin endpoint `path` (`POST` for reload, `GET` otherwise) with the admin token
    /// of [`ADMIN`].
    pub async fn admin(&self, path: &str) -> reqwest::Response {
        let client = reqwest::Client::new();
        let request = if path.ends_with("/reload") { client.post(self.url(path)) } else { client.get(self.url(path)) };
        request.bearer_auth(ADMIN_TOKEN).send().await.expect("the admin API answers")
    }

    /// Waits until the admin API's entry for plugin `name` satisfies `serving` (a new version took
    /// over, say); `what` names that in the timeout message.
    pub async fn wait_for_plugin(&self, name: &str, what: &str, serving: impl Fn(&serde_json::Value) -> bool) {
        super::eventually_async(what, Duration::from_secs(60), || async {
            let listed: serde_json::Value = self.admin("/v1/admin/plugins").await.json().await.ok()?;
            let plugins = listed["plugins"].as_array()?;
            plugins.iter().find(|plugin| plugin["name"] == name).filter(|plugin| serving(plugin)).map(|_| ())
        })
        .await;
    }

    /// Rewrites the router's config file (`{dir}` in `config` is its temp dir).
    pub fn rewrite_config(&self, config: &str) {
        let config = config.replace("{dir}", &self.dir.path().display().to_string());
        std::fs::write(self.path("eventyard.toml"), config).expect("config is written");
    }

    /// Reloads through the admin API; the reports it answers, read as the typed reports they are.
    pub async fn reload(&self) -> Vec<eventyard::reload::ReloadReport> {
        let response = self.admin("/v1/admin/reload").await;
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("reload answers JSON");
        serde_json::from_value(body["reports"].clone()).expect("reload reports")
    }

    /// The reports published on `$SYS.EVENTYARD.RELOAD` so far, with a [`reporting_config`].
    pub fn published_reports(&self) -> Vec<eventyard::reload::ReloadReport> {
        json_lines_under(&self.path("reloads"))
            .into_iter()
            .map(|(_, event)| serde_json::from_value(event["data"].clone()).expect("a reload report"))
            .collect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Sends SIGTERM and waits for the process to exit; returns its exit code.
    pub async fn terminate(&mut self, timeout: Duration) -> i32 {
        let mut child = self.child.take().expect("the router is running");
        let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("the router's status can be read") {
                while let Ok(line) = self.logs.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(line);
                }
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the router did not exit within {timeout:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process with SIGKILL, as a crash would: nothing is drained or acknowledged.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the router is running");
        child.kill().expect("SIGKILL is sent");
        child.wait().expect("the router is reaped");
    }

    /// Runs `eventyard serve` on `config` (with `{dir}` replaced), expecting it to refuse to start;
    /// returns what it printed on stderr. Panics if it starts instead.
    pub fn start_failure(config: &str) -> String {
        let dir = super::tempdir();
        let path = dir.path().join("eventyard.toml");
        std::fs::write(&path, config.replace("{dir}", &dir.path().display().to_string())).expect("config is written");
        let output = Command::new(env!("CARGO_BIN_EXE_eventyard"))
            .args(["serve", "--log-level", "info", "--config"])
            .arg(&path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("eventyard runs");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!output.status.success(), "the router started, but should not have:\n{stderr}");
        stderr
    }

    /// The complete lines the router has written to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path(STDOUT_FILE)).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(str::to_owned).collect()
    }

    /// Every log line the router has written so far (those still in the pipe get 100 ms to come).
    pub fn logs(&mut self) -> &[String] {
        while let Ok(line) = self.logs.recv_timeout(Duration::from_millis(100)) {
            self.seen.push(line);
        }
        &self.seen
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    super::eventually_async(what, timeout, || std::future::ready(check())).await
}

/// Every complete JSON line of every file under `root`, keyed by path relative to `root`.
/// A line the sink is still writing (no newline yet) is left for the next look.
pub fn json_lines_under(root: &Path) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                let relative = path.strip_prefix(root).unwrap_or(&path).display().to_string();
                let complete = text.rfind('\n').map_or("", |end| &text[..end]);
                for line in complete.lines().filter(|l| !l.is_empty()) {
                    out.push((relative.clone(), serde_json::from_str(line).expect("sink lines are JSON")));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
