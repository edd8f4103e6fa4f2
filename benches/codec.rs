//! Criterion benches of the codec hot path: decode and encode of a typical 0100 (17 fields:
//! 2,3,4,7,11,12,13,14,18,22,25,32,37,41,42,43,49), and the 0110 response built by echoing.
//! Run: `cargo bench --bench codec`.
//!
//! Each bench runs twice: with wall time (criterion's default) and with the thread's CPU
//! time (`CLOCK_THREAD_CPUTIME_ID`), because on a shared machine a bench thread gets
//! a fraction of a core and wall time counts the waiting too.

#[path = "../tests/codec_common/mod.rs"]
mod codec_common;

use codec_common::fill_typical_0100;
use std::hint::black_box;

use authswitch::iso8583::{Message, MessageBuilder, Mti, WireFormat};
use bytes::{Bytes, BytesMut};
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, Criterion};

/// CPU time of the current thread (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it does not
/// count the time the thread waits for a core.
struct ThreadCpuTime {
    /// Supplies the nanosecond formatter.
    wall: WallTime,
}

fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; the clock id is a constant Linux supports.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.wall.formatter()
    }
}

fn wire(format: &WireFormat) -> Bytes {
    let mut out = BytesMut::new();
    let mut builder = MessageBuilder::new(Mti::new(100));
    fill_typical_0100(&mut builder);
    builder.encode(format, &mut out).expect("valid message");
    out.freeze()
}

fn bench_codec<M: Measurement + 'static>(c: &mut Criterion<M>, label: &str) {
    let format = WireFormat::default();
    let body = wire(&format);
    c.bench_function(&format!("decode_0100/{label}"), |b| {
        b.iter(|| Message::decode(black_box(body.clone()), &format).expect("valid"))
    });
    // What a connection does with each request: the message goes to a shard thread boxed.
    c.bench_function(&format!("decode_then_box_0100/{label}"), |b| {
        b.iter(|| Box::new(Message::decode(black_box(body.clone()), &format).expect("valid")))
    });
    c.bench_function(&format!("decode_boxed_0100/{label}"), |b| {
        b.iter(|| Message::decode_boxed(black_box(body.clone()), &format).expect("valid"))
    });
    let mut out = BytesMut::with_capacity(1024);
    c.bench_function(&format!("encode_0100/{label}"), |b| {
        b.iter(|| {
            out.clear();
            let mut builder = MessageBuilder::new(Mti::new(100));
            fill_typical_0100(&mut builder);
            builder.encode(black_box(&format), &mut out).expect("valid");
            black_box(out.len())
        })
    });
    let request = Message::decode(body.clone(), &format).expect("valid");
    c.bench_function(&format!("encode_0110_echo/{label}"), |b| {
        b.iter(|| {
            out.clear();
            let mut response = MessageBuilder::new(Mti::new(110));
            for field in [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
                response.copy_from(black_box(&request), field);
            }
            response.set_text(38, b"A1B2C3").set_text(39, b"00");
            response.encode(&format, &mut out).expect("valid");
            black_box(out.len())
        })
    });
}

fn wall_time(c: &mut Criterion) {
    bench_codec(c, "wall");
}

fn cpu_time(c: &mut Criterion<ThreadCpuTime>) {
    bench_codec(c, "thread_cpu");
}

criterion_group!(wall, wall_time);
criterion_group! {
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime { wall: WallTime });
    targets = cpu_time
}
criterion_main!(wall, cpu);
