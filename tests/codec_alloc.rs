//! Proves decode (and the typed views, and encoding into a buffer with room) allocate
//! nothing, with a counting global allocator.

mod codec_common;

use codec_common::fill_typical_0100;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use authswitch::iso8583::{Message, MessageBuilder, Mti, WireFormat};
use bytes::{Bytes, BytesMut};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts calls on the current thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// The typical 0100 of the bench: fields 2,3,4,7,11,12,13,14,18,22,25,32,37,41,42,43,49.
fn typical_0100(format: &WireFormat) -> Bytes {
    let mut builder = MessageBuilder::new(Mti::new(100));
    fill_typical_0100(&mut builder);
    let mut out = BytesMut::new();
    builder.encode(format, &mut out).unwrap();
    out.freeze()
}

#[test]
fn decode_views_and_encode_allocate_nothing() {
    let format = WireFormat::default();
    let wire = typical_0100(&format);
    // Warm up the dictionary's one-time parse.
    let _ = Message::decode(wire.clone(), &format).unwrap();
    let mut out = BytesMut::with_capacity(1024);

    let before = allocations();
    let msg = Message::decode(wire.clone(), &format).unwrap();
    let pan = msg.pan().unwrap();
    let amount = msg.amount_transaction();
    let acceptor = msg.card_acceptor().unwrap();
    let (stan, mcc, expiry) = (msg.stan(), msg.mcc(), msg.expiry());
    let mut response = MessageBuilder::new(msg.mti().response().unwrap());
    for field in [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
        response.copy_from(&msg, field);
    }
    response.set_text(38, b"A1B2C3").set_text(39, b"00");
    response.encode(&format, &mut out).unwrap();
    let after = allocations();

    assert_eq!(
        after - before,
        0,
        "decode, views and encode must not allocate"
    );
    assert_eq!(pan.last4(), *b"1111");
    assert_eq!(amount, Some(12345));
    assert_eq!(acceptor.country, Some(*b"US"));
    assert_eq!((stan, mcc), (Some(123456), Some(5411)));
    assert!(expiry.is_some());
    assert_eq!(&out[..4], b"0110");
}
