//! The `barrage` binary: everything lives in `barrage::cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    barrage::cli::main()
}
