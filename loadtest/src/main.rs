//! `loadtest`: card-network simulator and load generator for authswitch.
//!
//! `loadtest run` drives a switch over ISO 8583 (closed or open loop) and reports latency,
//! throughput and response codes; `loadtest echo-host` is the trivial host that shows what
//! framing and loopback alone cost. See `cli` for the flags.

mod admin;
mod cli;
mod clock;
mod conn;
mod echo_host;
mod merchant;
mod mix;
mod pacer;
mod plot;
mod portfolio;
mod run;
mod stan;
mod stats;
mod template;
mod verify;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, EchoArgs, RunArgs};

/// Exit status when the run completed but `--verify` found mismatches.
const EXIT_VERIFY_FAILED: u8 = 2;

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.min(64))
            .enable_all()
            .build()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run_command(&args),
        Command::EchoHost(args) => echo_command(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_command(args: &RunArgs) -> Result<ExitCode, String> {
    let cfg = args.validate().map_err(|e| e.to_string())?;
    let rt = runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    let report = rt.block_on(run::run(cfg)).map_err(|e| e.to_string())?;
    print!("{}", stats::render_table(&report));
    let verified = report.verify.as_ref().is_none_or(|v| v.ok);
    Ok(if verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VERIFY_FAILED)
    })
}

fn echo_command(args: &EchoArgs) -> Result<ExitCode, String> {
    let rt = runtime(args.threads).map_err(|e| format!("tokio runtime: {e}"))?;
    let format = args.wire.format();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .map_err(|e| format!("listen on {}: {e}", args.listen))?;
        let bound = listener.local_addr().map_err(|e| e.to_string())?;
        // First line of stdout: the bound address, for scripts and tests.
        println!("{bound}");
        let _ = std::io::stdout().flush();
        echo_host::serve(listener, format)
            .await
            .map_err(|e| format!("accept: {e}"))
    })?;
    Ok(ExitCode::SUCCESS)
}
