//! The sandbox helper as a standalone binary, for the crate's tests and `bench/sandbox.sh`.
//! The `clawden` binary offers the same entry point as `clawden __sandbox-init`.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == clawden_sandbox::HELPER_SUBCOMMAND) {
        std::process::exit(clawden_sandbox::helper_main(&args[2..]));
    }
    eprintln!(
        "usage: {} {} start|exec|run ARGS…",
        args.first().map(|a| a.to_string_lossy()).unwrap_or_default(),
        clawden_sandbox::HELPER_SUBCOMMAND
    );
    std::process::exit(2);
}
