//! Command line of the load generator: `loadtest run ...` and `loadtest echo-host ...`.
//!
//! Parsing only; `RunArgs::validate` turns the flags into a checked `RunConfig` so that every
//! limit is enforced before a socket is opened.

use std::path::PathBuf;
use std::time::Duration;

use authswitch::iso8583::{BitmapEncoding, Charset, LengthHeader, WireFormat};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::mix::{Mix, MixError};

/// Connections one run may open.
pub const CONNECTIONS_MAX: u32 = 256;
/// Requests outstanding at once in closed loop, over all connections.
pub const IN_FLIGHT_MAX: u32 = 100_000;
/// Open-loop rate ceiling, requests per second.
pub const RATE_MAX: u64 = 10_000_000;
/// Cards one run may provision or load.
pub const CARDS_MAX: u32 = 10_000_000;
/// Accounts one run may provision.
pub const ACCOUNTS_MAX: u32 = 1_000_000;
/// Longest per-request timeout.
pub const TIMEOUT_MS_MAX: u64 = 600_000;
/// Longest run.
pub const DURATION_S_MAX: f64 = 86_400.0;
/// Run length when neither `--duration` nor `--requests` is given.
pub const DURATION_S_DEFAULT: f64 = 10.0;
/// Largest funding per account (minor units): keeps sums of many accounts inside i64.
pub const FUND_MINOR_MAX: i64 = 1_000_000_000_000;

#[derive(Parser, Debug)]
#[command(
    name = "loadtest",
    about = "Card-network simulator and load generator for authswitch"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Drive a switch (or an echo host) with ISO 8583 traffic and report latency.
    Run(Box<RunArgs>),
    /// Answer every request with DE39=00, copying DE11: the limit of loopback and framing.
    EchoHost(EchoArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HeaderArg {
    Binary2,
    Binary4,
    Ascii2,
    Ascii4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BitmapArg {
    Binary,
    Hex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CharsetArg {
    Ascii,
    Bcd,
    Ebcdic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// A fixed number of requests outstanding, sent as fast as answers come back.
    Closed,
    /// A fixed send schedule; latency counts from the intended send time.
    Open,
}

/// Wire format flags, the same as the switch's listener options.
#[derive(Args, Clone, Debug)]
pub struct WireArgs {
    #[arg(long, value_enum, default_value = "binary2")]
    pub header: HeaderArg,
    /// A 5-byte TPDU follows the length header.
    #[arg(long)]
    pub tpdu: bool,
    #[arg(long, value_enum, default_value = "binary")]
    pub bitmap: BitmapArg,
    #[arg(long, value_enum, default_value = "ascii")]
    pub charset: CharsetArg,
}

impl WireArgs {
    pub fn format(&self) -> WireFormat {
        WireFormat {
            header: match self.header {
                HeaderArg::Binary2 => LengthHeader::Binary2,
                HeaderArg::Binary4 => LengthHeader::Binary4,
                HeaderArg::Ascii2 => LengthHeader::Ascii2,
                HeaderArg::Ascii4 => LengthHeader::Ascii4,
            },
            tpdu: self.tpdu,
            bitmap: match self.bitmap {
                BitmapArg::Binary => BitmapEncoding::Binary,
                BitmapArg::Hex => BitmapEncoding::Hex,
            },
            charset: match self.charset {
                CharsetArg::Ascii => Charset::Ascii,
                CharsetArg::Bcd => Charset::Bcd,
                CharsetArg::Ebcdic => Charset::Ebcdic,
            },
        }
    }
}

#[derive(Args, Debug)]
pub struct EchoArgs {
    /// Address to listen on; port 0 picks one. The bound address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub listen: String,
    /// Tokio worker threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    #[command(flatten)]
    pub wire: WireArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// ISO 8583 address of the switch (or echo host).
    #[arg(long)]
    pub target: String,
    /// Admin API address (`host:port` or `http://host:port`), for provisioning and --verify.
    #[arg(long)]
    pub admin: Option<String>,
    /// Bearer token of the admin API.
    #[arg(long, default_value = "")]
    pub admin_token: String,
    #[arg(long, value_enum, default_value = "closed")]
    pub mode: Mode,
    /// Open loop: requests per second over all connections.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Open loop: pacing period in microseconds; each connection sends what is due by the
    /// next tick. 1000 is tokio's own timer resolution.
    #[arg(long, default_value_t = 100)]
    pub tick_us: u64,
    /// Closed loop: requests outstanding over all connections.
    #[arg(long, default_value_t = 64)]
    pub in_flight: u32,
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Stop sending after this many seconds (default 10 when --requests is absent too).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after sending this many requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// A request unanswered after this long counts as a timeout.
    #[arg(long, default_value_t = 2000)]
    pub timeout_ms: u64,
    /// Cards to provision (or synthesize without --admin).
    #[arg(long, default_value_t = 1000)]
    pub cards: u32,
    /// Accounts to provision; cards are spread over them round robin.
    #[arg(long, default_value_t = 100)]
    pub accounts: u32,
    /// Funding of each provisioned account, minor units.
    #[arg(long, default_value_t = 100_000_000)]
    pub fund_minor: i64,
    /// Message mix, weights per kind.
    #[arg(
        long,
        default_value = "auth=80,incremental=5,reversal=8,advice=5,echo=2"
    )]
    pub mix: String,
    /// Portfolio file (`PAN[,YYMM[,account id]]` per line): read if it exists, else written
    /// after provisioning.
    #[arg(long)]
    pub cards_file: Option<PathBuf>,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the latency histogram as SVG here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Check balances through the admin API against the responses seen.
    #[arg(long)]
    pub verify: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Tokio worker threads (1 = a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub wire: WireArgs,
}

/// Validated run parameters.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub target: String,
    pub admin: Option<String>,
    pub admin_token: String,
    pub mode: Mode,
    pub rate_per_s: u64,
    pub tick: Duration,
    pub in_flight: u32,
    pub connections: u32,
    pub duration: Duration,
    pub requests_max: Option<u64>,
    pub timeout: Duration,
    pub cards: u32,
    pub accounts: u32,
    pub fund_minor: i64,
    pub mix: Mix,
    pub cards_file: Option<PathBuf>,
    pub json: Option<PathBuf>,
    pub plot: Option<PathBuf>,
    pub verify: bool,
    pub seed: u64,
    pub quiet: bool,
    pub wire: WireFormat,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("--{flag} must be between {min} and {max}")]
    OutOfRange {
        flag: &'static str,
        min: u64,
        max: u64,
    },
    #[error("--duration must be more than 0 and at most {max_s} seconds")]
    BadDuration { max_s: f64 },
    #[error("--mix: {0}")]
    Mix(#[from] MixError),
    #[error("--verify needs --admin")]
    VerifyWithoutAdmin,
    #[error("--in-flight ({in_flight}) must be at least --connections ({connections})")]
    InFlightBelowConnections { in_flight: u32, connections: u32 },
}

fn range(flag: &'static str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange { flag, min, max })
    }
}

impl RunArgs {
    pub fn validate(&self) -> Result<RunConfig, ConfigError> {
        range(
            "connections",
            self.connections.into(),
            1,
            CONNECTIONS_MAX.into(),
        )?;
        range("in-flight", self.in_flight.into(), 1, IN_FLIGHT_MAX.into())?;
        range("rate", self.rate, 1, RATE_MAX)?;
        range("tick-us", self.tick_us, 10, 1000)?;
        range("timeout-ms", self.timeout_ms, 1, TIMEOUT_MS_MAX)?;
        range("cards", self.cards.into(), 1, CARDS_MAX.into())?;
        range("accounts", self.accounts.into(), 1, ACCOUNTS_MAX.into())?;
        // A negative amount maps above the maximum and is refused like one.
        let fund_minor = u64::try_from(self.fund_minor).unwrap_or(u64::MAX);
        range("fund-minor", fund_minor, 0, FUND_MINOR_MAX as u64)?;
        range("requests", self.requests.unwrap_or(1), 1, u64::MAX / 2)?;
        if self.mode == Mode::Closed && self.in_flight < self.connections {
            return Err(ConfigError::InFlightBelowConnections {
                in_flight: self.in_flight,
                connections: self.connections,
            });
        }
        if self.verify && self.admin.is_none() {
            return Err(ConfigError::VerifyWithoutAdmin);
        }
        let duration_s = match (self.duration, self.requests) {
            (Some(s), _) => s,
            (None, Some(_)) => DURATION_S_MAX,
            (None, None) => DURATION_S_DEFAULT,
        };
        if !(duration_s > 0.0 && duration_s <= DURATION_S_MAX) {
            return Err(ConfigError::BadDuration {
                max_s: DURATION_S_MAX,
            });
        }
        Ok(RunConfig {
            target: self.target.clone(),
            admin: self.admin.clone(),
            admin_token: self.admin_token.clone(),
            mode: self.mode,
            rate_per_s: self.rate,
            tick: Duration::from_micros(self.tick_us),
            in_flight: self.in_flight,
            connections: self.connections,
            duration: Duration::from_secs_f64(duration_s),
            requests_max: self.requests,
            timeout: Duration::from_millis(self.timeout_ms),
            cards: self.cards,
            accounts: self.accounts,
            fund_minor: self.fund_minor,
            mix: self.mix.parse()?,
            cards_file: self.cards_file.clone(),
            json: self.json.clone(),
            plot: self.plot.clone(),
            verify: self.verify,
            seed: self.seed,
            quiet: self.quiet,
            wire: self.wire.format(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut all = vec!["loadtest", "run", "--target", "127.0.0.1:1"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Run(run) => *run,
            Command::EchoHost(_) => panic!("parsed as echo-host"),
        }
    }

    #[test]
    fn defaults_validate_to_a_ten_second_closed_loop() {
        let cfg = parse(&[]).validate().unwrap();
        assert_eq!(cfg.mode, Mode::Closed);
        assert_eq!(cfg.duration, Duration::from_secs(10));
        assert_eq!(cfg.in_flight, 64);
        assert_eq!(cfg.connections, 4);
        assert_eq!(cfg.wire, WireFormat::default());
        assert_eq!(cfg.requests_max, None);
    }

    #[test]
    fn limits_are_enforced() {
        let err = parse(&["--connections", "0"]).validate().unwrap_err();
        assert_eq!(
            err,
            ConfigError::OutOfRange {
                flag: "connections",
                min: 1,
                max: 256
            }
        );
        let err = parse(&["--in-flight", "2", "--connections", "3"]).validate();
        assert_eq!(
            err.unwrap_err(),
            ConfigError::InFlightBelowConnections {
                in_flight: 2,
                connections: 3
            }
        );
        assert_eq!(
            parse(&["--fund-minor=-1"]).validate().unwrap_err(),
            ConfigError::OutOfRange {
                flag: "fund-minor",
                min: 0,
                max: FUND_MINOR_MAX as u64
            }
        );
        assert_eq!(
            parse(&["--verify"]).validate().unwrap_err(),
            ConfigError::VerifyWithoutAdmin
        );
        assert!(matches!(
            parse(&["--duration", "0"]).validate().unwrap_err(),
            ConfigError::BadDuration { .. }
        ));
    }

    #[test]
    fn wire_flags_map_to_the_codec_format() {
        let args = parse(&[
            "--header",
            "ascii4",
            "--tpdu",
            "--bitmap",
            "hex",
            "--charset",
            "ebcdic",
        ]);
        let format = args.validate().unwrap().wire;
        assert_eq!(format.header, LengthHeader::Ascii4);
        assert!(format.tpdu);
        assert_eq!(format.bitmap, BitmapEncoding::Hex);
        assert_eq!(format.charset, Charset::Ebcdic);
    }
}
