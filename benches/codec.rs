//! Criterion benches of the codec hot path: decode and encode of a typical 0100 (17 fields:
//! 2,3,4,7,11,12,13,14,18,22,25,32,37,41,42,43,49), and the 0110 response built by echoing.
//! Run: `cargo bench --bench codec`.

use std::hint::black_box;

use authswitch::iso8583::{Message, MessageBuilder, Mti, WireFormat};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};

fn typical_0100<'a>() -> MessageBuilder<'a> {
    let mut builder = MessageBuilder::new(Mti::new(100));
    builder
        .set_text(2, b"4111111111111111")
        .set_text(3, b"000000")
        .set_number(4, 12345)
        .set_text(7, b"1121233456")
        .set_number(11, 123456)
        .set_text(12, b"183456")
        .set_text(13, b"1121")
        .set_text(14, b"2812")
        .set_number(18, 5411)
        .set_text(22, b"051")
        .set_text(25, b"00")
        .set_text(32, b"12345")
        .set_text(37, b"432112345678")
        .set_text(41, b"TERM0001")
        .set_text(42, b"MERCHANT0000001")
        .set_text(43, b"ACME COFFEE ROASTERS     SAN FRANCISCOUS")
        .set_number(49, 840);
    builder
}

fn wire(format: &WireFormat) -> Bytes {
    let mut out = BytesMut::new();
    typical_0100()
        .encode(format, &mut out)
        .expect("valid message");
    out.freeze()
}

fn bench_codec(c: &mut Criterion) {
    let format = WireFormat::default();
    let body = wire(&format);
    c.bench_function("decode_0100", |b| {
        b.iter(|| Message::decode(black_box(body.clone()), &format).expect("valid"))
    });
    let mut out = BytesMut::with_capacity(1024);
    c.bench_function("encode_0100", |b| {
        b.iter(|| {
            out.clear();
            typical_0100()
                .encode(black_box(&format), &mut out)
                .expect("valid");
            black_box(out.len())
        })
    });
    let request = Message::decode(body.clone(), &format).expect("valid");
    c.bench_function("encode_0110_echo", |b| {
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

criterion_group!(benches, bench_codec);
criterion_main!(benches);
