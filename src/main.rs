//! The `eventyard` binary: everything is in the library's `cli` module.

fn main() -> std::process::ExitCode {
    eventyard::cli::main()
}
