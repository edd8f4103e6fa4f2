//! The typical 0100 (fields 2,3,4,7,11,12,13,14,18,22,25,32,37,41,42,43,49), shared by the
//! codec bench and the zero-allocation test so both measure the same message.
#![allow(dead_code)]

use authswitch::iso8583::MessageBuilder;

/// Sets the fields of the typical 0100 (in place: a builder is a few KB, moving it costs).
pub fn fill_typical_0100(builder: &mut MessageBuilder<'_>) {
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
}
