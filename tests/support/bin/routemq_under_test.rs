//! The `routemq` CLI, built inside the test package so integration tests can
//! start real worker processes (and send them real signals).
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
