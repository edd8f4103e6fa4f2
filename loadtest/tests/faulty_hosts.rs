//! The generator against hosts that misbehave after (or during) sign-on: silence must end
//! in timeouts, a closed connection in errors, a refused sign-on in a clear failure. Each
//! host is a thread speaking the default wire format through the authswitch codec.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use authswitch::iso8583::{
    peek_mti_stan, FrameCodec, MessageBuilder, WireFormat, FRAME_LEN_MAX_DEFAULT,
};
use bytes::BytesMut;
use serde_json::Value;
use tokio_util::codec::Decoder;

const BIN: &str = env!("CARGO_BIN_EXE_loadtest");

#[derive(Clone, Copy)]
enum After {
    /// Read and drop every request.
    Silence,
    /// Close the connection after this many requests.
    Close(usize),
    /// Stop reading, keeping the connection open (for at most `DEAF_FOR`): the sender's
    /// writes block once the socket buffers are full.
    Deaf,
}

/// How long a deaf host holds its connection.
const DEAF_FOR: Duration = Duration::from_secs(30);

/// Answers the sign-on with `sign_on_code`, then behaves as `after`.
fn host(sign_on_code: &'static [u8; 2], after: After) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, sign_on_code, after));
        }
    });
    addr
}

fn serve(mut stream: TcpStream, sign_on_code: &[u8; 2], after: After) {
    let format = WireFormat::default();
    let mut codec = FrameCodec::new(&format, FRAME_LEN_MAX_DEFAULT);
    let mut input = BytesMut::new();
    let mut requests = 0;
    let mut signed_on = false;
    let mut chunk = [0u8; 4096];
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&chunk[..n]);
        while let Some(frame) = codec.decode(&mut input).unwrap() {
            if !signed_on {
                signed_on = true;
                let (mti, stan) = peek_mti_stan(&frame.body, &format).unwrap();
                let mut out = BytesMut::new();
                codec
                    .write_frame(None, &mut out, |body| {
                        MessageBuilder::new(mti.response().unwrap())
                            .set_number(11, stan.into())
                            .set_text(39, sign_on_code)
                            .encode(&format, body)
                    })
                    .unwrap();
                stream.write_all(&out).unwrap();
                if let After::Deaf = after {
                    std::thread::sleep(DEAF_FOR);
                    return;
                }
                continue;
            }
            requests += 1;
            if let After::Close(limit) = after {
                if requests >= limit {
                    return;
                }
            }
        }
    }
}

fn run(addr: &str, args: &[&str]) -> (Output, Option<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(BIN)
        .args([
            "run",
            "--target",
            addr,
            "--quiet",
            "--json",
            json.to_str().unwrap(),
        ])
        .args(args)
        .output()
        .unwrap();
    let report = std::fs::read_to_string(&json)
        .ok()
        .map(|text| serde_json::from_str(&text).unwrap());
    (output, report)
}

#[test]
fn silence_ends_in_timeouts_and_the_run_still_stops() {
    let addr = host(b"00", After::Silence);
    let started = Instant::now();
    let args = [
        "--requests",
        "40",
        "--in-flight",
        "8",
        "--connections",
        "2",
        "--timeout-ms",
        "200",
    ];
    let (output, report) = run(&addr, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report.unwrap();
    assert_eq!(report["sent"], 40);
    assert_eq!(report["timeouts"], 40);
    assert_eq!(report["responses"], 0);
    assert_eq!(report["errors"], 0);
    assert_eq!(report["response_codes"], serde_json::json!({}));
    // Five rounds of 8 requests, each waiting out its 200 ms timeout.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(1000), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
}

#[test]
fn a_host_that_stops_reading_ends_in_timeouts_at_the_run_end() {
    // The writer blocks in a write once the socket buffers are full; it gives up when the
    // last answers would be due, and every request sent counts as a timeout.
    let addr = host(b"00", After::Deaf);
    let started = Instant::now();
    let args = [
        "--mode",
        "open",
        "--rate",
        "20000",
        "--connections",
        "1",
        "--duration",
        "2",
        "--timeout-ms",
        "200",
    ];
    let (output, report) = run(&addr, &args);
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    let report = report.unwrap();
    let sent = report["sent"].as_u64().unwrap();
    assert!(sent > 1_000, "{report}");
    assert_eq!(report["timeouts"].as_u64(), Some(sent), "{report}");
    assert_eq!(
        (report["responses"].as_u64(), report["errors"].as_u64()),
        (Some(0), Some(0))
    );
}

#[test]
fn a_closed_connection_turns_pending_requests_into_errors() {
    let addr = host(b"00", After::Close(5));
    let args = [
        "--requests",
        "100",
        "--in-flight",
        "10",
        "--connections",
        "1",
        "--timeout-ms",
        "5000",
    ];
    let (output, report) = run(&addr, &args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report.unwrap();
    let sent = report["sent"].as_u64().unwrap();
    assert!(
        (5..100).contains(&sent),
        "stops sending once the connection is gone: {sent}"
    );
    assert_eq!(report["errors"].as_u64(), Some(sent));
    assert_eq!(report["responses"], 0);
    assert_eq!(report["timeouts"], 0);
}

#[test]
fn a_refused_sign_on_fails_the_run() {
    let addr = host(b"91", After::Silence);
    let (output, report) = run(&addr, &["--requests", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(report.is_none());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("connection 0: sign-on answered with DE39=91"),
        "{stderr}"
    );
}
