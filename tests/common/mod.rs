//! Test harness: starts the real `authswitch` binary on ephemeral ports with its own data
//! directory, and talks to it over real TCP (ISO 8583) and HTTP (admin API, metrics).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde_json::Value;
use tokio_util::codec::Decoder;

use authswitch::iso8583::{FrameCodec, Message, MessageBuilder, Mti, WireFormat};

pub const TOKEN: &str = "test-token-0123456789";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running switch process.
pub struct Switch {
    child: Option<Child>,
    pub iso: SocketAddr,
    pub admin: SocketAddr,
    pub metrics: SocketAddr,
    pub data_dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Switch {
    /// Starts a switch on a fresh data directory; `extra` is appended to the TOML config.
    pub fn start(extra: &str) -> Switch {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut switch = Switch::start_on(&data_dir, extra);
        switch._dir = Some(dir);
        switch
    }

    /// Starts a switch on `data_dir` (kept after the switch stops).
    pub fn start_on(data_dir: &Path, extra: &str) -> Switch {
        std::fs::create_dir_all(data_dir).unwrap();
        let config_path = data_dir.with_extension("toml");
        let config = config_file(data_dir, extra);
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_authswitch"))
            .args(["serve", "--config"])
            .arg(&config_path)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .env("AUTHSWITCH_ADMIN_TOKEN", TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start authswitch");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line.clone());
                sink.lock().unwrap().push(line);
            }
        });
        let (mut iso, mut admin, mut metrics) = (None, None, None);
        let deadline = Instant::now() + START_TIMEOUT;
        while iso.is_none() || admin.is_none() || metrics.is_none() {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("switch did not start; log: {:?}", log.lock().unwrap()));
            if !line.contains("listening") {
                continue;
            }
            let addr = line
                .rsplit("addr=")
                .next()
                .and_then(|a| a.trim().parse().ok());
            if line.contains("\"ISO 8583\"") {
                iso = addr;
            } else if line.contains("admin") {
                admin = addr;
            } else if line.contains("metrics") {
                metrics = addr;
            }
        }
        let switch = Switch {
            child: Some(child),
            iso: iso.unwrap(),
            admin: admin.unwrap(),
            metrics: metrics.unwrap(),
            data_dir: data_dir.to_path_buf(),
            log,
            _dir: None,
        };
        switch.wait_ready();
        switch
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok((200, _)) = http(self.metrics, "GET", "/readyz", None, None) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("switch not ready; log: {:?}", self.log.lock().unwrap());
    }

    /// SIGTERM, then waits for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(&child, "TERM");
        wait_with_timeout(&mut child, Duration::from_secs(30))
    }

    /// SIGKILL (a crash), then reaps the process.
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The process id of the running switch.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Resident memory of the switch process in KiB (VmRSS from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// The value of one metric series (`name{labels}` exactly as rendered), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text(), series)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// An admin API call with the test token; returns (status, JSON body).
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, text) = http(self.admin, method, path, body.as_deref(), Some(TOKEN))
            .expect("admin API reachable");
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// An admin call that must succeed; returns the body.
    pub fn api_ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, json) = self.api(method, path, body);
        assert_eq!(status, 200, "{method} {path}: {json}");
        json
    }

    pub fn metrics_text(&self) -> String {
        http(self.metrics, "GET", "/metrics", None, None)
            .expect("metrics reachable")
            .1
    }

    pub fn client(&self) -> Client {
        Client::connect(self.iso)
    }

    /// Creates a USD account funded with `funds` and a cardholder named `name`; returns
    /// (account id, cardholder id).
    pub fn account_and_holder(&self, funds: i64, name: &str) -> (String, String) {
        let account = self.api_ok(
            "POST",
            "/v1/accounts",
            Some(serde_json::json!({"currency": "usd"})),
        );
        let account = account["id"].as_str().unwrap().to_string();
        if funds > 0 {
            self.api_ok(
                "POST",
                &format!("/v1/accounts/{account}/fundings"),
                Some(serde_json::json!({"amount": funds})),
            );
        }
        let holder = self.api_ok(
            "POST",
            "/v1/cardholders",
            Some(serde_json::json!({"account": account, "name": name})),
        );
        (account, holder["id"].as_str().unwrap().to_string())
    }

    /// Creates a USD account funded with `funds`, a cardholder, and one card with `number`;
    /// returns (account id, cardholder id, card id).
    pub fn provision(&self, funds: i64, number: &str) -> (String, String, String) {
        let (account, holder) = self.account_and_holder(funds, "Test Holder");
        let card = self.add_card(&holder, number, serde_json::json!({}));
        (account, holder, card)
    }

    /// Adds a card with `number` to a cardholder; `extra` fields are merged into the body.
    pub fn add_card(&self, holder: &str, number: &str, extra: Value) -> String {
        let mut body = serde_json::json!({"cardholder": holder, "number": number,
                                          "exp_month": 12, "exp_year": 2099});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let card = self.api_ok("POST", "/v1/cards", Some(body));
        card["id"].as_str().unwrap().to_string()
    }

    /// Adds a card with a number the switch generates; returns (card id, number).
    pub fn add_generated_card(&self, holder: &str, extra: Value) -> (String, String) {
        let mut body = serde_json::json!({"cardholder": holder, "exp_month": 12, "exp_year": 2099});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        let card = self.api_ok("POST", "/v1/cards", Some(body));
        (
            card["id"].as_str().unwrap().to_string(),
            card["number"].as_str().unwrap().to_string(),
        )
    }

    /// (available, held, spent) of an account.
    pub fn balance(&self, account: &str) -> (i64, i64, i64) {
        let a = self.api_ok("GET", &format!("/v1/accounts/{account}"), None);
        let b = &a["balance"];
        (
            b["available"].as_i64().unwrap(),
            b["held"].as_i64().unwrap(),
            b["spent"].as_i64().unwrap(),
        )
    }
}

impl Drop for Switch {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `authswitch serve` on `data_dir` with `extra` config and `args` (no `--listen` flags
/// are added besides ephemeral ports), with the test token only when `with_token`; waits up to
/// `timeout` for it to exit on its own. Returns (exit status, stderr), or None (after killing
/// it) when it was still running: for starts that must be refused.
/// Segment size of test switches: small, so tests rotate segments and each start's spare
/// segment is quick to zero-fill.
pub const TEST_SEGMENT_BYTES: u64 = 1 << 20;

/// The config file of a test switch: `extra` plus a 1 MiB `[wal] segment_bytes_max`.
fn config_file(data_dir: &Path, extra: &str) -> String {
    let segment = format!("segment_bytes_max = {TEST_SEGMENT_BYTES}\n");
    let extra = if extra.contains("[wal]\n") {
        extra.replacen("[wal]\n", &format!("[wal]\n{segment}"), 1)
    } else {
        format!("{extra}\n[wal]\n{segment}")
    };
    format!(
        "data_dir = {:?}\nlog = \"info\"\n{extra}\n",
        data_dir.display().to_string()
    )
}

pub fn serve_until_exit(
    data_dir: &Path,
    extra: &str,
    args: &[&str],
    with_token: bool,
    timeout: Duration,
) -> Option<(ExitStatus, String)> {
    std::fs::create_dir_all(data_dir).unwrap();
    let config_path = data_dir.with_extension("toml");
    let config = config_file(data_dir, extra);
    std::fs::write(&config_path, config).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_authswitch"));
    command
        .args(["serve", "--config"])
        .arg(&config_path)
        .args(["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("AUTHSWITCH_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if with_token {
        command.env("AUTHSWITCH_ADMIN_TOKEN", TOKEN);
    }
    let mut child = command.spawn().expect("start authswitch");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap();
    status.map(|s| (s, text))
}

/// Runs `authswitch wal verify <dir>`; returns (success, stdout + stderr).
pub fn wal_verify(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_authswitch"))
        .args(["wal", "verify"])
        .arg(dir)
        .output()
        .expect("run authswitch wal verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status();
    assert!(
        status.map(|s| s.success()).unwrap_or(false),
        "kill -{name} failed"
    );
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("switch did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of the series `series` (`name{labels}`) in a Prometheus text page, 0 when absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A minimal HTTP/1.1 client (Connection: close); returns (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A blocking ISO 8583 client with the default wire format.
pub struct Client {
    pub stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
    pub format: WireFormat,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).expect("connect")
    }

    /// Connects, or returns the error (the switch is down or refusing).
    pub fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let format = WireFormat::default();
        Ok(Client {
            stream,
            codec: FrameCodec::new(&format, 64 * 1024),
            buf: BytesMut::new(),
            format,
        })
    }

    /// Encodes and sends one message without waiting.
    pub fn send(&mut self, builder: &MessageBuilder<'_>) {
        let frame = self.encode(builder);
        self.stream.write_all(&frame).unwrap();
    }

    /// The framed bytes of one message, as `send` would write them.
    pub fn encode(&mut self, builder: &MessageBuilder<'_>) -> Vec<u8> {
        let mut out = BytesMut::new();
        let format = self.format;
        self.codec
            .write_frame(None, &mut out, |body| {
                builder.encode(&format, body).map_err(|e| panic!("{e}"))
            })
            .map_err(|e: authswitch::iso8583::FrameError| e)
            .unwrap();
        out.to_vec()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads the next response frame.
    pub fn recv(&mut self) -> Message {
        self.try_recv().expect("a response")
    }

    /// The next response, or None when the connection closed.
    pub fn try_recv(&mut self) -> Option<Message> {
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).expect("valid frame") {
                return Some(Message::decode(frame.body, &self.format).expect("valid response"));
            }
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends and waits for the response.
    pub fn call(&mut self, builder: &MessageBuilder<'_>) -> Message {
        self.send(builder);
        self.recv()
    }
}

/// An 0100 purchase for `pan` of `amount` minor units (USD), with the given STAN.
pub fn auth_0100(pan: &str, amount: u64, stan: u32) -> MessageBuilder<'_> {
    purchase(Mti::new(100), pan, amount, stan)
}

/// A purchase-shaped request (0100, 0101, 0120, 0200, ...) with the fields of `auth_0100`.
pub fn purchase(mti: Mti, pan: &str, amount: u64, stan: u32) -> MessageBuilder<'_> {
    let mut b = MessageBuilder::new(mti);
    b.set_text(2, pan.as_bytes())
        .set_text(3, b"000000")
        .set_number(4, amount)
        .set_text(7, b"1121120000")
        .set_number(11, u64::from(stan))
        .set_text(22, b"051")
        .set_text(32, b"123456")
        .set_number(18, 5411)
        .set_text(41, b"TERM0001")
        .set_text(42, b"MERCHANT0000001")
        .set_number(49, 840);
    b
}

/// DE39 of a response as text.
pub fn de39(message: &Message) -> String {
    String::from_utf8_lossy(message.raw(39).expect("DE39 present")).to_string()
}

/// A field of a response as text.
pub fn field(message: &Message, n: u8) -> Option<String> {
    message
        .raw(n)
        .map(|v| String::from_utf8_lossy(v).to_string())
}

/// xorshift64*: a seeded, dependency-free generator, so a failing randomized test replays
/// exactly from the seed it prints.
#[derive(Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every file below `dir`, appended to `out`.
pub fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}
