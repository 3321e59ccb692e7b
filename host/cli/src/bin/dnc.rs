//! `dnc`: the legacy name of the `d402` command.

fn main() -> std::process::ExitCode {
    d402_cli::main()
}
