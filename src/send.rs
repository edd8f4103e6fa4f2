//! `authswitch send`: sends one ISO 8583 request to a switch and prints the response, so a
//! newcomer (or an operator checking a link) can see an answer without a card network.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use crate::iso8583::{FrameCodec, Message, MessageBuilder, Mti, WireFormat};

/// Largest response frame `send` accepts.
const RESPONSE_LEN_MAX: usize = 64 * 1024;

#[derive(clap::Args, Debug)]
pub struct SendArgs {
    /// Address of the switch's ISO 8583 listener.
    #[arg(long, default_value = "127.0.0.1:8583")]
    pub target: SocketAddr,
    /// `0100` (authorization request) or `0800` (network management echo).
    #[arg(long, default_value = "0100")]
    pub mti: String,
    /// Card number (0100 only).
    #[arg(long)]
    pub pan: Option<String>,
    /// Amount in minor units (0100 only).
    #[arg(long, default_value_t = 1000)]
    pub amount: u64,
    /// ISO 4217 numeric currency (0100 only).
    #[arg(long, default_value_t = 840)]
    pub currency: u16,
    /// Merchant category code (0100 only).
    #[arg(long, default_value_t = 5411)]
    pub mcc: u16,
    /// System trace audit number (default: from the clock, so runs do not repeat each other).
    #[arg(long)]
    pub stan: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("--mti must be 0100 or 0800")]
    Mti,
    #[error("--pan is required for an 0100 and must be 12 to 19 digits")]
    Pan,
    #[error("connection to {addr}: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error("cannot decode the response: {0}")]
    Decode(String),
}

pub fn run(args: SendArgs) -> Result<(), SendError> {
    let format = WireFormat::default();
    let request = build_request(&args, &format)?;
    let io = |source| SendError::Io {
        addr: args.target,
        source,
    };
    let mut stream =
        TcpStream::connect_timeout(&args.target, Duration::from_secs(5)).map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    stream.write_all(&request).map_err(io)?;
    let response = read_response(&mut stream, &format).map_err(io)?;
    let message =
        Message::decode(response, &format).map_err(|e| SendError::Decode(e.to_string()))?;
    print_message(&message);
    Ok(())
}

fn build_request(args: &SendArgs, format: &WireFormat) -> Result<BytesMut, SendError> {
    let now = crate::ledger::shard::unix_now_s();
    let transmission = transmission_time(now);
    let mut builder;
    let pan;
    match args.mti.as_str() {
        "0800" => {
            builder = MessageBuilder::new(Mti::new(800));
            builder.set_text(70, b"301");
        }
        "0100" => {
            pan = args.pan.clone().ok_or(SendError::Pan)?;
            let valid = (12..=19).contains(&pan.len()) && pan.bytes().all(|b| b.is_ascii_digit());
            if !valid {
                return Err(SendError::Pan);
            }
            builder = MessageBuilder::new(Mti::new(100));
            builder.set_text(2, pan.as_bytes());
            builder.set_text(3, b"000000");
            builder.set_number(4, args.amount);
            builder.set_number(18, u64::from(args.mcc));
            builder.set_text(22, b"051");
            builder.set_text(32, b"123456");
            builder.set_text(41, b"TERM0001");
            builder.set_text(42, b"MERCHANT0000001");
            builder.set_number(49, u64::from(args.currency));
        }
        _ => return Err(SendError::Mti),
    }
    builder.set_text(7, &transmission);
    let stan = args
        .stan
        .unwrap_or_else(|| (now.rem_euclid(999_999) + 1) as u32);
    builder.set_number(11, u64::from(stan));
    let codec = FrameCodec::new(format, RESPONSE_LEN_MAX);
    let mut out = BytesMut::new();
    codec
        .write_frame(None, &mut out, |body| {
            builder
                .encode(format, body)
                .map_err(|e| SendError::Encode(e.to_string()))
        })
        .map_err(|e: SendError| e)?;
    Ok(out)
}

impl From<crate::iso8583::FrameError> for SendError {
    fn from(error: crate::iso8583::FrameError) -> Self {
        SendError::Encode(error.to_string())
    }
}

/// DE7 (MMDDhhmmss, UTC) for a unix time.
pub fn transmission_time(now_s: i64) -> [u8; 10] {
    let days = now_s.div_euclid(86_400);
    let secs = now_s.rem_euclid(86_400);
    let (_, month, day) = crate::domain::calendar::civil_from_days(days);
    let text = format!(
        "{month:02}{day:02}{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    text.as_bytes().try_into().expect("ten digits")
}

fn read_response(stream: &mut TcpStream, format: &WireFormat) -> std::io::Result<bytes::Bytes> {
    let mut codec = FrameCodec::new(format, RESPONSE_LEN_MAX);
    let mut buf = BytesMut::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        match codec.decode(&mut buf) {
            Ok(Some(frame)) => return Ok(frame.body),
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.remaining() > RESPONSE_LEN_MAX + 16 {
            return Err(std::io::Error::other("response too long"));
        }
    }
}

fn print_message(message: &Message) {
    println!("MTI {}", message.mti());
    for field in message.fields() {
        if field == 2 {
            if let Some(pan) = message.pan() {
                println!("DE{field:<3} {}", pan.masked());
            }
            continue;
        }
        if field == 35 || field == 45 || field == 52 || field == 55 {
            println!("DE{field:<3} (sensitive, not shown)");
            continue;
        }
        let raw = message.raw(field).unwrap_or_default();
        println!("DE{field:<3} {}", String::from_utf8_lossy(raw));
    }
}
