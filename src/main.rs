//! The `authswitch` command: `serve`, the WAL tools, and `send` (one test message).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use authswitch::config::{Config, Overrides};

#[derive(Parser)]
#[command(
    name = "authswitch",
    version,
    about = "Issuer-side ISO 8583 authorization switch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the switch.
    Serve {
        /// TOML configuration file (every key has a default; see authswitch.example.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// ISO 8583 listen address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// Create a demo account, cardholder and funded cards, and print how to use them.
        #[arg(long)]
        demo: bool,
    },
    /// Operator tools for the write-ahead log.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Send one ISO 8583 message to a switch and print the response (PAN masked).
    Send(authswitch::send::SendArgs),
    /// Measure how long the disk makes a request wait for the WAL (write + fdatasync per
    /// group commit, one stream per shard), before running a switch on it.
    DiskCheck {
        /// TOML configuration file: the data directory and shard count to check.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Directory to write in (default: the configuration's data directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Records per second offered, over all streams.
        #[arg(long, default_value_t = 50_000)]
        rate: u64,
        /// Streams (default: the configuration's shard count).
        #[arg(long)]
        streams: Option<u16>,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = authswitch::wal::diskcheck::RECORD_BYTES_DEFAULT)]
        record_bytes: u32,
        /// Also write the report as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum WalCommand {
    /// Check every segment and snapshot of a data directory (or one shard's directory).
    Verify { dir: PathBuf },
    /// Print every record (LSN, kind, command) of a data directory or shard directory.
    Dump { dir: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            data_dir,
            listen,
            admin_listen,
            metrics_listen,
            demo,
        } => {
            let overrides = Overrides {
                data_dir,
                listen,
                admin_listen,
                metrics_listen,
            };
            let config = match Config::load(config.as_deref(), &overrides) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("authswitch: {error}");
                    return ExitCode::from(2);
                }
            };
            authswitch::app::init_tracing(&config.log);
            match authswitch::app::serve_blocking(config, demo) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "authswitch stopped");
                    eprintln!("authswitch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Wal { command } => {
            let result = match command {
                WalCommand::Verify { dir } => authswitch::app::wal_verify(&dir),
                WalCommand::Dump { dir } => authswitch::app::wal_dump(&dir),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("authswitch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::DiskCheck {
            config,
            dir,
            rate,
            streams,
            duration,
            record_bytes,
            json,
        } => {
            let config = match Config::load(config.as_deref(), &Overrides::default()) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("authswitch: {error}");
                    return ExitCode::from(2);
                }
            };
            let Ok(duration) = std::time::Duration::try_from_secs_f64(duration) else {
                eprintln!("authswitch: duration must be a positive number of seconds");
                return ExitCode::from(2);
            };
            let params = authswitch::wal::diskcheck::DiskCheckParams {
                dir: dir.unwrap_or_else(|| config.data_dir.clone()),
                rate,
                streams: streams.unwrap_or(config.shard_count() as u16),
                duration,
                record_bytes,
            };
            match authswitch::app::disk_check(&params, json.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("authswitch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Send(args) => match authswitch::send::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("authswitch: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
