//! Counters and the latency histogram of one connection, their merge, and the final report
//! (JSON through serde, text table for the terminal).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use authswitch::iso8583::WireFormat;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::Mode;
use crate::mix::{Kind, KIND_COUNT};
use crate::verify::VerifyReport;

/// Largest latency the histogram resolves; longer ones are recorded as this.
pub const LATENCY_US_MAX: u64 = 600_000_000;
/// Distinct DE39 values counted one by one; the rest fall under `OTHER_CODE`.
pub const RESPONSE_CODES_MAX: usize = 64;
/// Bucket of response codes beyond `RESPONSE_CODES_MAX`, and of responses without DE39.
pub const OTHER_CODE: [u8; 2] = *b"??";

/// What one connection saw.
#[derive(Clone, Debug)]
pub struct ConnStats {
    pub latency_us: Histogram<u64>,
    /// Latency of the responses that were served: every DE39 but 91 and 96 (shed or refused
    /// by the switch without a decision).
    pub served_latency_us: Histogram<u64>,
    /// How long answers waited in loadtest's receive queue before it read them (at least):
    /// empty when the kernel does not stamp reads (`authswitch::server::rxstamp`).
    pub read_lag_us: Histogram<u64>,
    pub sent: u64,
    pub responses: u64,
    /// Undecodable responses, wrong response MTIs, requests lost with the connection.
    pub errors: u64,
    pub timeouts: u64,
    /// Responses that came after their request timed out, or with an unknown STAN.
    pub late: u64,
    /// Open loop: scheduled requests not sent because too many were pending.
    pub dropped: u64,
    pub sent_by_kind: [u64; KIND_COUNT],
    codes: Vec<([u8; 2], u64)>,
}

fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("static histogram bounds are valid")
}

/// Records `latency_us` within the histogram's range (zero as 1 µs, beyond it as the max).
fn record_clamped(h: &mut Histogram<u64>, latency_us: u64) {
    h.saturating_record(latency_us.clamp(1, LATENCY_US_MAX));
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            latency_us: latency_histogram(),
            served_latency_us: latency_histogram(),
            read_lag_us: latency_histogram(),
            sent: 0,
            responses: 0,
            errors: 0,
            timeouts: 0,
            late: 0,
            dropped: 0,
            sent_by_kind: [0; KIND_COUNT],
            codes: Vec::with_capacity(8),
        }
    }
}

impl ConnStats {
    pub fn record_latency_us(&mut self, latency_us: u64) {
        record_clamped(&mut self.latency_us, latency_us);
    }

    /// Records one response's latency, and as served unless DE39 says it was not decided.
    pub fn record_response(&mut self, latency_us: u64, code: [u8; 2]) {
        self.record_latency_us(latency_us);
        if code != *b"91" && code != *b"96" {
            record_clamped(&mut self.served_latency_us, latency_us);
        }
    }

    /// Records how long one answer waited to be read (0 as 1 µs).
    pub fn record_read_lag_us(&mut self, lag_us: u64) {
        record_clamped(&mut self.read_lag_us, lag_us);
    }

    pub fn count_code(&mut self, code: [u8; 2], count: u64) {
        if let Some(entry) = self.codes.iter_mut().find(|(c, _)| *c == code) {
            entry.1 += count;
        } else if self.codes.len() < RESPONSE_CODES_MAX - 1 || code == OTHER_CODE {
            // The last slot is kept for OTHER_CODE, so the table never exceeds the limit.
            self.codes.push((code, count));
        } else {
            self.count_code(OTHER_CODE, count);
        }
    }

    pub fn codes(&self) -> &[([u8; 2], u64)] {
        &self.codes
    }

    pub fn merge(&mut self, other: &ConnStats) {
        self.latency_us
            .add(&other.latency_us)
            .expect("histograms share bounds");
        self.served_latency_us
            .add(&other.served_latency_us)
            .expect("histograms share bounds");
        self.read_lag_us
            .add(&other.read_lag_us)
            .expect("histograms share bounds");
        self.sent += other.sent;
        self.responses += other.responses;
        self.errors += other.errors;
        self.timeouts += other.timeouts;
        self.late += other.late;
        self.dropped += other.dropped;
        for (mine, theirs) in self.sent_by_kind.iter_mut().zip(other.sent_by_kind) {
            *mine += theirs;
        }
        for &(code, count) in &other.codes {
            self.count_code(code, count);
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

/// The run's outcome, written as JSON with `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub mode: Mode,
    /// Open loop: target rate per second; closed loop: null.
    pub rate: Option<u64>,
    /// Closed loop: requests outstanding; open loop: null.
    pub in_flight: Option<u32>,
    pub connections: u32,
    pub duration_s: f64,
    pub sent: u64,
    pub responses: u64,
    pub errors: u64,
    pub timeouts: u64,
    pub late: u64,
    pub dropped: u64,
    pub throughput_per_s: f64,
    /// Open loop measures from the intended send time (coordinated omission corrected).
    pub latency_us: LatencySummary,
    /// The same, of the responses served (DE39 other than 91 and 96).
    pub served_latency_us: LatencySummary,
    /// Part of the latency that is loadtest's own: how long answers waited in its receive
    /// queues before it read them, from the kernel's receive timestamps (at least that long;
    /// null where the kernel does not stamp reads). Large figures here mean the run measured
    /// loadtest as much as the target.
    pub read_lag_us: Option<LatencySummary>,
    pub response_codes: BTreeMap<String, u64>,
    pub sent_by_kind: BTreeMap<&'static str, u64>,
    pub mix: String,
    pub seed: u64,
    pub wire: WireFormat,
    pub verify: Option<VerifyReport>,
}

pub fn summarize(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

pub fn codes_map(stats: &ConnStats) -> BTreeMap<String, u64> {
    stats
        .codes()
        .iter()
        .map(|(c, n)| (String::from_utf8_lossy(c).into_owned(), *n))
        .collect()
}

pub fn kinds_map(stats: &ConnStats) -> BTreeMap<&'static str, u64> {
    Kind::ALL
        .iter()
        .map(|k| (k.name(), stats.sent_by_kind[k.index()]))
        .collect()
}

/// The report as a text table for the terminal.
pub fn render_table(r: &Report) -> String {
    let mut s = String::new();
    let load = match r.mode {
        Mode::Closed => format!("closed loop, {} in flight", r.in_flight.unwrap_or(0)),
        Mode::Open => format!("open loop, {} req/s target", r.rate.unwrap_or(0)),
    };
    let _ = writeln!(s, "mode          {load}, {} connections", r.connections);
    let w = &r.wire;
    let _ = writeln!(
        s,
        "wire          header {:?}, tpdu {}, bitmap {:?}, charset {:?}",
        w.header, w.tpdu, w.bitmap, w.charset
    );
    let _ = writeln!(s, "duration      {:.3} s", r.duration_s);
    let _ = writeln!(s, "sent          {}", r.sent);
    let _ = writeln!(s, "responses     {}", r.responses);
    let _ = writeln!(
        s,
        "errors        {}   timeouts {}   late {}   dropped {}",
        r.errors, r.timeouts, r.late, r.dropped
    );
    let _ = writeln!(s, "throughput    {:.1} responses/s", r.throughput_per_s);
    let l = &r.latency_us;
    let _ = writeln!(
        s,
        "latency (us)  min      p50      p90      p99    p99.9      max"
    );
    let _ = writeln!(
        s,
        "              {:<8} {:<8} {:<8} {:<8} {:<8} {}",
        l.min, l.p50, l.p90, l.p99, l.p999, l.max
    );
    let v = &r.served_latency_us;
    if v != l {
        let _ = writeln!(
            s,
            "  served      {:<8} {:<8} {:<8} {:<8} {:<8} {}",
            v.min, v.p50, v.p90, v.p99, v.p999, v.max
        );
    }
    if let Some(g) = &r.read_lag_us {
        let _ = writeln!(
            s,
            "  read lag    {:<8} {:<8} {:<8} {:<8} {:<8} {}",
            g.min, g.p50, g.p90, g.p99, g.p999, g.max
        );
    }
    let codes: Vec<String> = r
        .response_codes
        .iter()
        .map(|(c, n)| format!("{c}={n}"))
        .collect();
    let _ = writeln!(s, "DE39          {}", codes.join(" "));
    let kinds: Vec<String> = r
        .sent_by_kind
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    let _ = writeln!(s, "sent by kind  {}", kinds.join(" "));
    if let Some(v) = &r.verify {
        let _ = writeln!(
            s,
            "verify        {} ({} accounts checked, {} skipped, {} mismatches)",
            if v.ok { "OK" } else { "FAILED" },
            v.accounts_checked,
            v.accounts_skipped,
            v.mismatches.len()
        );
        for m in &v.mismatches {
            let _ = writeln!(
                s,
                "  {} {:?}: expected {} got {}",
                m.account, m.kind, m.expected_minor, m.actual_minor
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shed_responses_are_not_served_latency() {
        let mut s = ConnStats::default();
        s.record_response(100, *b"00");
        s.record_response(200, *b"51");
        s.record_response(5_000, *b"91");
        s.record_response(7_000, *b"96");
        assert_eq!(s.latency_us.len(), 4);
        assert_eq!(s.served_latency_us.len(), 2);
        assert_eq!(s.served_latency_us.max(), 200);
        let mut total = ConnStats::default();
        total.merge(&s);
        assert_eq!(total.served_latency_us.len(), 2);
    }

    #[test]
    fn merge_adds_counts_codes_and_histograms() {
        let mut a = ConnStats {
            sent: 3,
            responses: 3,
            ..ConnStats::default()
        };
        a.count_code(*b"00", 2);
        a.count_code(*b"51", 1);
        a.record_latency_us(100);
        let mut b = ConnStats {
            sent: 1,
            timeouts: 1,
            ..ConnStats::default()
        };
        b.count_code(*b"00", 5);
        b.record_latency_us(0);
        a.merge(&b);
        assert_eq!((a.sent, a.responses, a.timeouts), (4, 3, 1));
        assert_eq!(a.codes(), [(*b"00", 7), (*b"51", 1)]);
        assert_eq!(a.latency_us.len(), 2);
        assert_eq!(a.latency_us.min(), 1, "zero is recorded as 1 us");
        let map = codes_map(&a);
        assert_eq!(map.get("00"), Some(&7));
    }

    #[test]
    fn codes_beyond_the_limit_fold_into_other() {
        let mut s = ConnStats::default();
        for i in 0..RESPONSE_CODES_MAX as u8 + 3 {
            s.count_code([b'A' + i / 10, b'0' + i % 10], 1);
        }
        assert_eq!(s.codes().len(), RESPONSE_CODES_MAX);
        let other = s.codes().iter().find(|(c, _)| *c == OTHER_CODE).unwrap();
        // 63 codes have their own slot; the 4 beyond share OTHER_CODE.
        assert_eq!(other.1, 4);
    }

    #[test]
    fn summary_reads_quantiles() {
        let mut s = ConnStats::default();
        for us in 1..=1000 {
            s.record_latency_us(us);
        }
        let l = summarize(&s.latency_us);
        assert_eq!((l.min, l.p50, l.p90, l.max), (1, 500, 900, 1000));
        assert_eq!(l.p99, 990);
        assert_eq!(l.p999, 999);
        assert_eq!(
            summarize(&ConnStats::default().latency_us),
            LatencySummary::default()
        );
    }
}
