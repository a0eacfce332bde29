//! The `eventyard` command line: argument parsing and exit codes. Commands call into the library;
//! logic a test would want lives there, not here.
//!
//! Exit codes: 0 success, 1 the plugin (or the thing checked) failed, 2 bad input or usage.
#![expect(clippy::print_stdout, reason = "the command line prints its results for people")]

mod plugin;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(name = "eventyard", version, about = "A WebAssembly-extensible event router")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Log level (or set RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write, build, inspect and test plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
}

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
    telemetry::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Plugin(command) => plugin::run(command).await,
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
