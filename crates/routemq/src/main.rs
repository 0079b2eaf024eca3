#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    routemq::cli::main()
}
