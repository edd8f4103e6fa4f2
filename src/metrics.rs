//! Metrics: the Prometheus exporter, every metric name, and pre-registered handles for the hot
//! path.
//!
//! Names are prefixed `authswitch_`, durations are in seconds. Labels are small closed sets
//! (MTI, DE39, decline reason, shard, currency, reject reason): never a PAN, card id or account
//! id. The hot path uses handles resolved once here, so recording a request is a few atomic
//! operations and never a label lookup.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, Counter, Gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS_TOTAL: &str = "authswitch_requests_total";
pub const DECLINES_TOTAL: &str = "authswitch_declines_total";
pub const REQUEST_SECONDS: &str = "authswitch_request_duration_seconds";
pub const DECISION_SECONDS: &str = "authswitch_decision_duration_seconds";
pub const DECIDED_REQUEST_SECONDS: &str = "authswitch_decided_request_duration_seconds";
pub const QUEUE_WAIT_SECONDS: &str = "authswitch_queue_wait_duration_seconds";
pub const RECEIVE_WAIT_SECONDS: &str = "authswitch_receive_wait_duration_seconds";
pub const SHARD_QUEUE_DEPTH: &str = "authswitch_shard_queue_depth";
pub const AUTHORIZATIONS_KEPT: &str = "authswitch_authorizations_kept";
pub const AUTHORIZATIONS_KEPT_MAX: &str = "authswitch_authorizations_kept_max";
pub const SHARD_OVERLOADED_TOTAL: &str = "authswitch_shard_overloaded_total";
pub const DEADLINE_MISSED_TOTAL: &str = "authswitch_deadline_missed_total";
pub const QUEUE_SHED_TOTAL: &str = "authswitch_queue_shed_total";
pub const DOOR_SHED_TOTAL: &str = "authswitch_door_shed_total";
pub const BACKLOG_SHED_TOTAL: &str = "authswitch_backlog_shed_total";
pub const CAP_SHED_TOTAL: &str = "authswitch_cap_shed_total";
pub const CONNECTIONS_OPEN: &str = "authswitch_connections_open";
pub const CONNECTIONS_TOTAL: &str = "authswitch_connections_total";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "authswitch_connections_refused_total";
pub const FRAMES_REJECTED_TOTAL: &str = "authswitch_frames_rejected_total";
pub const BALANCE_HELD_MINOR: &str = "authswitch_balance_held_minor";
pub const BALANCE_AVAILABLE_MINOR: &str = "authswitch_balance_available_minor";
pub const READY: &str = "authswitch_ready";
pub const ADMIN_REQUESTS_TOTAL: &str = "authswitch_admin_requests_total";

/// Request MTIs with their own label value; anything else is counted as `other`.
pub const MTI_LABELS: [&str; 10] = [
    "0100", "0101", "0120", "0121", "0200", "0201", "0400", "0420", "0800", "other",
];
/// DE39 values with their own label value; anything else is counted as `other`.
pub const DE39_LABELS: [&str; 17] = [
    "00", "10", "12", "13", "14", "30", "41", "43", "51", "54", "57", "61", "62", "91", "94", "96",
    "other",
];

/// Why a frame or connection was turned away; each one is a label of `FRAMES_REJECTED_TOTAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    TooLong,
    ZeroLength,
    Malformed,
    Undecodable,
    SlowSender,
    IdleTimeout,
    UnknownMti,
    /// The peer did not take its responses within `write_timeout_ms` and was cut.
    SlowReader,
}

impl Reject {
    pub const ALL: [Reject; 8] = [
        Reject::TooLong,
        Reject::ZeroLength,
        Reject::Malformed,
        Reject::Undecodable,
        Reject::SlowSender,
        Reject::IdleTimeout,
        Reject::UnknownMti,
        Reject::SlowReader,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::TooLong => "too_long",
            Reject::ZeroLength => "zero_length",
            Reject::Malformed => "malformed",
            Reject::Undecodable => "undecodable",
            Reject::SlowSender => "slow_sender",
            Reject::IdleTimeout => "idle_timeout",
            Reject::UnknownMti => "unknown_mti",
            Reject::SlowReader => "slow_reader",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds (`_seconds` histograms).
const LATENCY_BUCKETS_S: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

/// A latency histogram recorded on every request: fixed buckets of atomic counters.
///
/// The exporter's own histograms keep every sample in a shared lock-free list until a scrape
/// or upkeep drains it, which costs an allocation now and then and several contended atomic
/// operations per sample: measured at about 9 % of an I/O thread's time and 7 % of a shard's
/// when both per-request durations went through it. Here a sample is two relaxed additions
/// and a search of 14 bounds; the text is rendered at scrape time beside the exporter's.
///
/// The counters are striped: each thread adds to the stripe of its own (`STRIPES`, taken in
/// turn at a thread's first sample), two cache lines no other thread of the hot path writes,
/// so the I/O and shard threads on different cores do not pass the lines back and forth.
/// A scrape sums the stripes. (2026-12-07: with two more histograms on one shared set of
/// counters, the closed loop lost 2-3 %.)
pub struct LatencyHistogram {
    name: &'static str,
    bounds_ns: [u64; LATENCY_BUCKETS_S.len()],
    stripes: Box<[Stripe; STRIPES]>,
}

/// Stripes per histogram: more than the hot path's threads on a small machine (I/O threads
/// and shard threads); beyond that, threads share stripes, which stays correct.
const STRIPES: usize = 8;

/// One thread's counters: per bucket (not cumulative), the last one for samples above every
/// bound, then the sum. 16 words, two cache lines of their own.
#[repr(align(128))]
struct Stripe {
    counts: [AtomicU64; LATENCY_BUCKETS_S.len() + 1],
    sum_ns: AtomicU64,
}

/// The stripe this thread records into.
fn stripe_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    INDEX.with(|i| *i)
}

impl LatencyHistogram {
    fn new(name: &'static str) -> Self {
        LatencyHistogram {
            name,
            bounds_ns: LATENCY_BUCKETS_S.map(|s| (s * 1e9).round() as u64),
            stripes: Box::new(std::array::from_fn(|_| Stripe {
                counts: std::array::from_fn(|_| AtomicU64::new(0)),
                sum_ns: AtomicU64::new(0),
            })),
        }
    }

    pub fn record(&self, elapsed: Duration) {
        self.record_n(elapsed, 1);
    }

    /// Records `n` samples of the same duration.
    pub fn record_n(&self, elapsed: Duration, n: u64) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = self.bounds_ns.partition_point(|&bound| bound < ns);
        let stripe = &self.stripes[stripe_index()];
        stripe.counts[bucket].fetch_add(n, Ordering::Relaxed);
        stripe
            .sum_ns
            .fetch_add(ns.wrapping_mul(n), Ordering::Relaxed);
    }

    /// Samples in bucket `i` (not cumulative), over every stripe.
    fn count(&self, i: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.counts[i].load(Ordering::Relaxed))
            .sum()
    }

    /// Appends the Prometheus text of this histogram (cumulative buckets, sum, count).
    fn render(&self, out: &mut String) {
        let name = self.name;
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, bound) in LATENCY_BUCKETS_S.iter().enumerate() {
            cumulative += self.count(i);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.count(LATENCY_BUCKETS_S.len());
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_ns: u64 = self
            .stripes
            .iter()
            .map(|s| s.sum_ns.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add);
        let sum_s = sum_ns as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum_s}");
        let _ = writeln!(out, "{name}_count {cumulative}");
        out.push('\n');
    }
}

/// Pre-resolved handles for everything recorded per request.
pub struct Handles {
    requests: Vec<Counter>,
    request_seconds: LatencyHistogram,
    pub decision_seconds: LatencyHistogram,
    /// Arrival to answer of the network requests a shard decided (none answered 91 by the
    /// overload policy, at the door or in the queue): the latency of the requests served.
    pub decided_request_seconds: LatencyHistogram,
    /// A network request's wait from its frame's read to its shard taking it.
    pub queue_wait_seconds: LatencyHistogram,
    /// Per network request: how long before the read that completed its frame the read's
    /// last bytes arrived (the kernel's receive timestamp, `server::rxstamp`), at least the
    /// wait in the socket's receive queue, which no other duration sees. Linux only.
    pub receive_wait_seconds: LatencyHistogram,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub connections_refused: Counter,
    pub door_shed: Counter,
    pub backlog_shed: Counter,
    /// Answered 91 at the door past the connection's overload cap (`server::overload`).
    pub cap_shed: Counter,
    rejects: Vec<Counter>,
}

impl Handles {
    fn register() -> Handles {
        let mut requests = Vec::with_capacity(MTI_LABELS.len() * DE39_LABELS.len());
        for mti in MTI_LABELS {
            for de39 in DE39_LABELS {
                requests.push(counter!(REQUESTS_TOTAL, "mti" => mti, "de39" => de39));
            }
        }
        let rejects = Reject::ALL
            .iter()
            .map(|r| counter!(FRAMES_REJECTED_TOTAL, "reason" => r.label()));
        Handles {
            requests,
            request_seconds: LatencyHistogram::new(REQUEST_SECONDS),
            decision_seconds: LatencyHistogram::new(DECISION_SECONDS),
            queue_wait_seconds: LatencyHistogram::new(QUEUE_WAIT_SECONDS),
            receive_wait_seconds: LatencyHistogram::new(RECEIVE_WAIT_SECONDS),
            decided_request_seconds: LatencyHistogram::new(DECIDED_REQUEST_SECONDS),
            connections_open: gauge!(CONNECTIONS_OPEN),
            connections_total: counter!(CONNECTIONS_TOTAL),
            connections_refused: counter!(CONNECTIONS_REFUSED_TOTAL),
            door_shed: counter!(DOOR_SHED_TOTAL),
            backlog_shed: counter!(BACKLOG_SHED_TOTAL),
            cap_shed: counter!(CAP_SHED_TOTAL),
            rejects: rejects.collect(),
        }
    }

    /// Counts one answered request by its MTI and DE39, with its end-to-end duration.
    pub fn request(&self, mti: u16, de39: [u8; 2], elapsed: Duration) {
        let row = mti_index(mti) * DE39_LABELS.len();
        self.requests[row + de39_index(de39)].increment(1);
        self.request_seconds.record(elapsed);
    }

    pub fn reject(&self, reason: Reject) {
        self.rejects[reason as usize].increment(1);
    }
}

fn mti_index(mti: u16) -> usize {
    match mti {
        100 => 0,
        101 => 1,
        120 => 2,
        121 => 3,
        200 => 4,
        201 => 5,
        400 => 6,
        420 => 7,
        800 => 8,
        _ => 9,
    }
}

fn de39_index(de39: [u8; 2]) -> usize {
    let last = DE39_LABELS.len() - 1;
    DE39_LABELS[..last]
        .iter()
        .position(|l| l.as_bytes() == de39)
        .unwrap_or(last)
}

static EXPORTER: OnceLock<PrometheusHandle> = OnceLock::new();
static HANDLES: OnceLock<Handles> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install() -> &'static PrometheusHandle {
    EXPORTER.get_or_init(|| {
        let batch_buckets = [
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS_S)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_records".into()), &batch_buckets)
            })
            .expect("static bucket lists are non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // A second recorder in one process (tests) keeps the first: only `install` sets one.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The hot-path handles (installs the recorder first if needed).
pub fn handles() -> &'static Handles {
    install();
    HANDLES.get_or_init(Handles::register)
}

/// Renders the Prometheus text exposition: the exporter's metrics, then the per-request
/// latency histograms.
pub fn render() -> String {
    let mut text = install().render();
    let h = handles();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    h.request_seconds.render(&mut text);
    h.decision_seconds.render(&mut text);
    h.queue_wait_seconds.render(&mut text);
    h.receive_wait_seconds.render(&mut text);
    h.decided_request_seconds.render(&mut text);
    text
}

/// Counts one decline by its reason (a closed set of names). Declines are the minority of
/// requests, so the label lookup is paid only there.
pub fn decline(reason: &'static str) {
    counter!(DECLINES_TOTAL, "reason" => reason).increment(1);
}

/// Drains histogram samples into their buckets; called periodically so memory stays bounded
/// between scrapes.
pub fn upkeep() {
    install().run_upkeep();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_indices_cover_every_label() {
        assert_eq!(mti_index(100), 0);
        assert_eq!(mti_index(201), 5);
        assert_eq!(mti_index(800), 8);
        assert_eq!(mti_index(9999), MTI_LABELS.len() - 1);
        assert_eq!(de39_index(*b"00"), 0);
        assert_eq!(de39_index(*b"96"), 15);
        assert_eq!(de39_index(*b"Z9"), DE39_LABELS.len() - 1);
        for (i, r) in Reject::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }

    #[test]
    fn counters_render_with_labels() {
        let h = handles();
        h.request(100, *b"51", Duration::from_micros(200));
        h.reject(Reject::ZeroLength);
        let text = render();
        assert!(
            text.contains("authswitch_requests_total{mti=\"0100\",de39=\"51\"}"),
            "{text}"
        );
        assert!(text.contains("authswitch_frames_rejected_total{reason=\"zero_length\"}"));
    }

    #[test]
    fn latency_histogram_buckets_sum_and_count() {
        let h = LatencyHistogram::new("t_seconds");
        h.record(Duration::from_nanos(25_000)); // on the first bound: counted in it
        h.record(Duration::from_nanos(25_001));
        h.record(Duration::from_micros(700));
        h.record(Duration::from_secs(3)); // above every bound
        let mut text = String::new();
        h.render(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "# TYPE t_seconds histogram");
        assert_eq!(lines[1], "t_seconds_bucket{le=\"0.000025\"} 1");
        assert_eq!(lines[2], "t_seconds_bucket{le=\"0.00005\"} 2");
        assert_eq!(lines[5], "t_seconds_bucket{le=\"0.0005\"} 2");
        assert_eq!(lines[6], "t_seconds_bucket{le=\"0.001\"} 3");
        assert_eq!(lines[14], "t_seconds_bucket{le=\"1\"} 3");
        assert_eq!(lines[15], "t_seconds_bucket{le=\"+Inf\"} 4");
        assert_eq!(lines[16], "t_seconds_sum 3.000750001");
        assert_eq!(lines[17], "t_seconds_count 4");
    }

    #[test]
    fn latency_histogram_sums_the_stripes_of_every_thread() {
        let h = LatencyHistogram::new("t_seconds");
        // More threads than stripes, so some share one.
        std::thread::scope(|scope| {
            for t in 0..(2 * STRIPES as u64 + 3) {
                let h = &h;
                scope.spawn(move || {
                    for _ in 0..1_000 {
                        h.record(Duration::from_nanos(10_000 + t));
                    }
                    h.record(Duration::from_millis(3));
                });
            }
        });
        let threads = 2 * STRIPES as u64 + 3;
        let mut text = String::new();
        h.render(&mut text);
        let lines: Vec<&str> = text.lines().collect();
        let under_25_us = 1_000 * threads;
        assert_eq!(
            lines[1],
            format!("t_seconds_bucket{{le=\"0.000025\"}} {under_25_us}")
        );
        let total = under_25_us + threads;
        assert_eq!(
            lines[8],
            format!("t_seconds_bucket{{le=\"0.005\"}} {total}")
        );
        assert_eq!(
            lines[15],
            format!("t_seconds_bucket{{le=\"+Inf\"}} {total}")
        );
        let sum_ns: u64 = (0..threads).map(|t| 1_000 * (10_000 + t) + 3_000_000).sum();
        assert_eq!(lines[16], format!("t_seconds_sum {}", sum_ns as f64 / 1e9));
        assert_eq!(lines[17], format!("t_seconds_count {total}"));
    }
}
