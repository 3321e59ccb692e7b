//! The `d402` command.

fn main() -> std::process::ExitCode {
    d402_cli::main()
}
