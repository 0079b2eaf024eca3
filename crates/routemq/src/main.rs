#![forbid(unsafe_code)]

/// mimalloc instead of the system allocator: allocation and free were a
/// fifth of a worker's instructions per request under glibc malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
