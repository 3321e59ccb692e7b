//! `d402 ops pause|resume`: incident mode. While `<state>/PAUSE` exists the node answers new
//! paid tasks with 503 (`incident_mode`); task reads, receipts, settlements and refunds go
//! on. Works on a running node (it reads the file per request).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use d402_store::StateDir;

/// `d402 ops` commands.
#[derive(Subcommand)]
pub enum OpsCommand {
    /// Stop taking new paid tasks (incident mode); reads, receipts, settlements and
    /// refunds continue.
    Pause {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
        /// Why, shown to buyers in the 503.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take new paid tasks again.
    Resume {
        /// Node state directory.
        #[arg(long, env = "D402_STATE", default_value = "state/node")]
        state: PathBuf,
    },
}

/// Runs a `d402 ops` command.
pub fn run(command: OpsCommand) -> anyhow::Result<ExitCode> {
    match command {
        OpsCommand::Pause { state, reason } => {
            let file = StateDir::new(&state).pause_file();
            std::fs::create_dir_all(&state)?;
            std::fs::write(&file, reason.trim())
                .with_context(|| format!("cannot write {}", file.display()))?;
            eprintln!(
                "paused: {} answers new paid tasks with 503 until `d402 ops resume`",
                state.display()
            );
        }
        OpsCommand::Resume { state } => {
            let file = StateDir::new(&state).pause_file();
            match std::fs::remove_file(&file) {
                Ok(()) => eprintln!("resumed: {} takes new paid tasks", state.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("{} was not paused", state.display());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", file.display()));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
