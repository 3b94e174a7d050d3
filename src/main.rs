//! The `gaffer` binary: everything lives in the library; this only runs the CLI.

fn main() -> std::process::ExitCode {
    gaffer::cli::run()
}
