//! End to end through a loopback connection: the real `authswitch` binary (started by the
//! test harness on ephemeral ports), one ISO 8583 client. Shows what a request costs beyond the
//! pure decision: framing, the connection tasks, the shard queue, the WAL (fsync=always and,
//! for comparison of the CPU path, fsync=none) and loopback TCP.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use authswitch::iso8583::{MessageBuilder, Mti};
use common::{auth_0100, Client, Switch};

const PAN: &str = "4242424242424242";
const PIPELINE: u64 = 64;

/// A unique (DE11, DE7) per request so no request is a retransmission of another.
fn auth(n: u64) -> MessageBuilder<'static> {
    let mut b = auth_0100(PAN, 1, (n % 1_000_000) as u32);
    let time: &'static str =
        Box::leak(format!("11{:08}", n / 1_000_000 % 100_000_000).into_boxed_str());
    b.set_text(7, time.as_bytes());
    b
}

fn bench_switch(c: &mut Criterion, name: &str, config: &str) {
    let switch = Switch::start(config);
    switch.provision(999_999_999_999, PAN);
    let mut client: Client = switch.client();
    let mut n: u64 = 0;
    let mut group = c.benchmark_group(format!("e2e_{name}"));
    group.sample_size(20);
    group.bench_function("0800_echo_roundtrip", |b| {
        b.iter(|| {
            n += 1;
            let mut m = MessageBuilder::new(Mti::new(800));
            m.set_number(11, n % 1_000_000).set_text(70, b"301");
            client.call(&m)
        })
    });
    group.bench_function("0100_roundtrip", |b| {
        b.iter(|| {
            n += 1;
            client.call(&auth(n))
        })
    });
    group.throughput(Throughput::Elements(PIPELINE));
    group.bench_function("0100_pipelined_64", |b| {
        b.iter(|| {
            for _ in 0..PIPELINE {
                n += 1;
                client.send(&auth(n));
            }
            for _ in 0..PIPELINE {
                client.recv();
            }
        })
    });
    group.finish();
}

fn e2e(c: &mut Criterion) {
    bench_switch(c, "fsync_always", "");
    bench_switch(c, "fsync_none", "[wal]\nfsync = \"none\"\n");
}

criterion_group!(benches, e2e);
criterion_main!(benches);
