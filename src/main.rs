//! The `eventyard` binary: everything is in the library's `cli` module.

// glibc's allocator trims and regrows the heap around large payload buffers; with mimalloc the
// 64 KiB passthrough benchmark runs about 5x faster (see benches/passthrough.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    eventyard::cli::main()
}
