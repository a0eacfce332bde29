//! The `eventyard` command line: argument parsing and exit codes. Commands call into the library;
//! logic a test would want lives there, not here.
//!
//! Exit codes: 0 success, 1 the plugin (or the thing checked) failed, 2 bad input or usage.
#![expect(clippy::print_stdout, reason = "the command line prints its results for people")]

mod admin_api;
mod build;
mod dlq;
mod golden;
mod plugin;
mod rollout;
mod sdk;
mod sign;
mod tap;
mod top;

use std::process::ExitCode;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::plugin::PluginRuntime;
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "eventyard", version, about = "A WebAssembly-extensible event router")]
struct Cli {
    /// Log format on stderr (default: the config's `[log] format`, else text).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    /// Log level or filter (default: the config's `[log] level`, else warn; RUST_LOG overrides).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the router.
    Serve {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Parse and validate the config and load every plugin it names; list every error.
    Check {
        /// The config file.
        #[arg(long, short, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Write, build, inspect and test plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Record live events matching a subject pattern into a fixture file for `plugin test`.
    Tap(tap::TapArgs),
    /// Browse and replay the dead letters a running router keeps.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Watch a running router live: routes, sinks, queues, plugins, dead letters, reloads.
    Top(top::TopArgs),
}

const DEFAULT_CONFIG: &str = "config/eventyard.toml";

/// A command's failure: its exit code and what to tell the user.
pub(crate) struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Exit 1: the plugin or the thing checked failed.
    pub(crate) fn plugin(message: impl std::fmt::Display) -> Self {
        Failure { code: 1, message: message.to_string() }
    }

    /// Exit 2: bad input or usage.
    pub(crate) fn input(message: impl std::fmt::Display) -> Self {
        Failure { code: 2, message: message.to_string() }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let log = |config: Option<&Config>| {
        let format = cli.log_format.or(config.map(|c| c.log_format)).unwrap_or_default();
        let level = cli.log_level.clone().or(config.map(|c| c.log_level.clone())).unwrap_or_else(|| "warn".into());
        telemetry::init(format, &level);
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { ref config } => {
                let config = load_config(config)?;
                log(Some(&config));
                crate::server::serve(config).await.map_err(|err| Failure::plugin(format!("{err:#}")))
            }
            Command::Check { ref config } => {
                log(None);
                check(config).await
            }
            Command::Plugin(command) => {
                log(None);
                plugin::run(command).await
            }
            Command::Tap(args) => {
                log(None);
                tap::run(args).await
            }
            Command::Dlq(command) => {
                log(None);
                dlq::run(command).await
            }
            Command::Top(args) => top::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

fn load_config(path: &Path) -> Result<Config, Failure> {
    Config::from_file(path).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("{}: {e}", path.display())).collect();
        Failure::input(format!("invalid config:\n  {}", lines.join("\n  ")))
    })
}

async fn check(path: &Path) -> Result<(), Failure> {
    let config = load_config(path)?;
    let runtime = PluginRuntime::new(config.runtime.clone()).map_err(|err| Failure::plugin(format!("{err:#}")))?;
    let (plugins, mut errors) = crate::reload::plugins::load_plugins(&config, &runtime).await;
    errors.extend(crate::reload::plugins::check_references(&config, |name| plugins.get(name).map(|l| l.plugin.role())));
    for (name, loaded) in &plugins {
        let world = loaded.plugin.meta().info.world.clone().unwrap_or_default();
        println!("ok  plugin {name} ({world})");
    }
    if errors.is_empty() {
        println!("{}: valid, {} plugin(s)", path.display(), plugins.len());
        Ok(())
    } else {
        Err(Failure::plugin(format!("{} problem(s) with plugins:\n  {}", errors.len(), errors.join("\n  "))))
    }
}
