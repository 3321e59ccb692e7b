//! `d402-agent`: the buyer's reference client.

fn main() -> std::process::ExitCode {
    d402_agent::main()
}
