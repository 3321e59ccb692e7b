//! The minimal WASI the sandbox links: io, cli stdio/environment/exit, clocks, random, and
//! the filesystem interfaces with no preopened directory (so there is nothing to open: the
//! wasip1 adapter that cargo-component uses imports them even when unused). Sockets are
//! never linked.

use std::time::Duration;

use d402_protocol::{DeterminismClass, Sha256Digest};
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::WasiCli;
use wasmtime_wasi::clocks::WasiClocks;
use wasmtime_wasi::filesystem::WasiFilesystem;
use wasmtime_wasi::p2::bindings as wasi;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiView,
};

use crate::host::HostState;

struct HasTable;
impl HasData for HasTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// Adds the allowed WASI interfaces to `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::WasiCliView as _;
    use wasmtime_wasi::clocks::WasiClocksView as _;
    use wasmtime_wasi::filesystem::WasiFilesystemView as _;
    use wasmtime_wasi::random::WasiRandomView as _;
    wasi::io::error::add_to_linker::<HostState, HasTable>(linker, |s| &mut s.table)?;
    wasi::io::poll::add_to_linker::<HostState, HasTable>(linker, |s| &mut s.table)?;
    wasi::io::streams::add_to_linker::<HostState, HasTable>(linker, |s| &mut s.table)?;
    wasi::cli::environment::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::exit::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::terminal_input::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::terminal_output::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::terminal_stdin::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::terminal_stdout::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::cli::terminal_stderr::add_to_linker::<HostState, WasiCli>(linker, HostState::cli)?;
    wasi::clocks::wall_clock::add_to_linker::<HostState, WasiClocks>(linker, HostState::clocks)?;
    wasi::clocks::monotonic_clock::add_to_linker::<HostState, WasiClocks>(
        linker,
        HostState::clocks,
    )?;
    wasi::random::random::add_to_linker::<HostState, WasiRandom>(linker, |s| s.random())?;
    wasi::random::insecure::add_to_linker::<HostState, WasiRandom>(linker, |s| s.random())?;
    wasi::random::insecure_seed::add_to_linker::<HostState, WasiRandom>(linker, |s| s.random())?;
    // The context has no preopens, so these expose no file or directory.
    wasi::filesystem::types::add_to_linker::<HostState, WasiFilesystem>(
        linker,
        HostState::filesystem,
    )?;
    wasi::filesystem::preopens::add_to_linker::<HostState, WasiFilesystem>(
        linker,
        HostState::filesystem,
    )?;
    Ok(())
}

/// Captured standard output and error of one run.
pub struct CapturedStdio {
    /// Guest stdout (capped).
    pub stdout: MemoryOutputPipe,
    /// Guest stderr (capped).
    pub stderr: MemoryOutputPipe,
}

/// A clock that always reads the same instant.
struct FixedWallClock;
impl HostWallClock for FixedWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

/// A monotonic clock that never advances.
struct FixedMonotonicClock;
impl HostMonotonicClock for FixedMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Builds the WASI context of one run: nothing inherited, stdio captured up to `stdio_cap`
/// bytes each; for (snapshot-)deterministic classes, fixed clocks and randomness seeded from
/// `seed` (the input hash), so the same input always sees the same "entropy".
pub fn context(
    determinism: DeterminismClass,
    seed: Sha256Digest,
    stdio_cap: usize,
) -> (WasiCtx, CapturedStdio) {
    let stdio = CapturedStdio {
        stdout: MemoryOutputPipe::new(stdio_cap),
        stderr: MemoryOutputPipe::new(stdio_cap),
    };
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone());
    if determinism != DeterminismClass::Nondeterministic {
        let seed_bytes = seed.0.to_vec();
        let mut seed_u128 = [0u8; 16];
        seed_u128.copy_from_slice(&seed.0[..16]);
        builder
            .wall_clock(FixedWallClock)
            .monotonic_clock(FixedMonotonicClock)
            .secure_random(Deterministic::new(seed_bytes.clone()))
            .insecure_random(Deterministic::new(seed_bytes))
            .insecure_random_seed(u128::from_le_bytes(seed_u128));
    }
    (builder.build(), stdio)
}

impl WasiView for HostState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
