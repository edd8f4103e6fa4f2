//! The WAL record format: how one record is laid out on disk, encoded and checked.
//!
//! This is the only place that knows the byte layout; the writer and recovery go through it.

use thiserror::Error;

/// Bytes before the checksummed part: `len` and `crc32c`.
pub const RECORD_PREFIX_BYTES: usize = 8;
/// Bytes of the checksummed part that are not payload: `lsn` and `kind`.
pub const RECORD_FIXED_BYTES: usize = 9;
/// Smallest and largest `len` a record may carry by default (see [`RecordHeader`]).
pub const RECORD_LEN_MIN: u32 = RECORD_FIXED_BYTES as u32;
pub const RECORD_LEN_MAX_DEFAULT: u32 = 1 << 20;

/// One WAL record on disk, all integers little-endian:
///
/// ```text
/// offset  size  field
///      0     4  len     u32: bytes of lsn + kind + payload, i.e. 9 + payload length.
///                       It does NOT count itself nor the crc field.
///      4     4  crc32c  u32: CRC-32C (Castagnoli) of exactly the `len` bytes that follow,
///                       i.e. of lsn, kind and payload.
///      8     8  lsn     u64: log sequence number, consecutive per shard, starting at 1.
///     16     1  kind    u8: opaque to the WAL, chosen by the ledger.
///     17     n  payload n = len - 9 opaque bytes.
/// ```
///
/// A whole record is `8 + len` bytes. `len` is checked against `record_len_max` before any
/// buffer is sized from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub crc: u32,
    pub lsn: u64,
    pub kind: u8,
}

/// A record read back from a buffer; `payload` borrows from that buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub lsn: u64,
    pub kind: u8,
    pub payload: &'a [u8],
    /// Bytes the whole record takes on disk (prefix + len).
    pub total_bytes: usize,
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RecordError {
    #[error("incomplete record: {have} bytes present, {need} needed")]
    Incomplete { have: usize, need: usize },
    #[error("record length {len} outside [{min}, {max}]")]
    BadLen { len: u32, min: u32, max: u32 },
    #[error("crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
}

/// Bytes a record with `payload_len` payload bytes takes on disk.
pub fn record_bytes(payload_len: usize) -> usize {
    RECORD_PREFIX_BYTES + RECORD_FIXED_BYTES + payload_len
}

/// Appends one record to `out`. Panics only if the payload cannot be described by a u32
/// length, which is a caller bug (payloads are bounded far below that by `record_len_max`).
pub fn encode_record(out: &mut Vec<u8>, lsn: u64, kind: u8, payload: &[u8]) {
    assert!(lsn >= 1, "LSNs start at 1");
    let len = u32::try_from(RECORD_FIXED_BYTES + payload.len()).expect("payload over 4 GiB");
    let start = out.len();
    out.reserve(RECORD_PREFIX_BYTES + len as usize);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]); // crc, filled in below once the body is in place
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + RECORD_PREFIX_BYTES..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Reads the fixed header at the start of `buf` without checking the CRC.
pub fn decode_header(buf: &[u8], record_len_max: u32) -> Result<RecordHeader, RecordError> {
    let need = RECORD_PREFIX_BYTES + RECORD_FIXED_BYTES;
    if buf.len() < RECORD_PREFIX_BYTES {
        return Err(RecordError::Incomplete {
            have: buf.len(),
            need,
        });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes"));
    if !(RECORD_LEN_MIN..=record_len_max).contains(&len) {
        return Err(RecordError::BadLen {
            len,
            min: RECORD_LEN_MIN,
            max: record_len_max,
        });
    }
    if buf.len() < need {
        return Err(RecordError::Incomplete {
            have: buf.len(),
            need,
        });
    }
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let lsn = u64::from_le_bytes(buf[8..16].try_into().expect("8 bytes"));
    Ok(RecordHeader {
        len,
        crc,
        lsn,
        kind: buf[16],
    })
}

/// Decodes and checks the record at the start of `buf`.
pub fn decode_record(buf: &[u8], record_len_max: u32) -> Result<RecordRef<'_>, RecordError> {
    let header = decode_header(buf, record_len_max)?;
    let total = RECORD_PREFIX_BYTES + header.len as usize;
    if buf.len() < total {
        return Err(RecordError::Incomplete {
            have: buf.len(),
            need: total,
        });
    }
    let computed = crc32c::crc32c(&buf[RECORD_PREFIX_BYTES..total]);
    if computed != header.crc {
        return Err(RecordError::BadCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(RecordRef {
        lsn: header.lsn,
        kind: header.kind,
        payload: &buf[RECORD_PREFIX_BYTES + RECORD_FIXED_BYTES..total],
        total_bytes: total,
    })
}

/// Walks the headers of an encoded batch (no CRC work) and returns (first lsn, last lsn,
/// record count). Used by the writer to check a batch before it is written.
pub fn batch_lsn_range(buf: &[u8], record_len_max: u32) -> Result<(u64, u64, u64), RecordError> {
    let mut offset = 0usize;
    let mut first = 0u64;
    let mut last = 0u64;
    let mut count = 0u64;
    // Each iteration consumes at least RECORD_PREFIX_BYTES + RECORD_LEN_MIN bytes, so the loop
    // is bounded by buf.len() / 17.
    while offset < buf.len() {
        let header = decode_header(&buf[offset..], record_len_max)?;
        let total = RECORD_PREFIX_BYTES + header.len as usize;
        if buf.len() - offset < total {
            return Err(RecordError::Incomplete {
                have: buf.len() - offset,
                need: total,
            });
        }
        if count == 0 {
            first = header.lsn;
        }
        last = header.lsn;
        count += 1;
        offset += total;
    }
    Ok((first, last, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_record_bytes() {
        let mut out = Vec::new();
        encode_record(&mut out, 1, 7, b"abc");
        let crc = crc32c::crc32c(&[1, 0, 0, 0, 0, 0, 0, 0, 7, b'a', b'b', b'c']);
        let mut expected = vec![12, 0, 0, 0];
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 7, b'a', b'b', b'c']);
        assert_eq!(out, expected);
        // CRC-32C computed independently (bitwise Castagnoli, reflected poly 0x82F63B78).
        assert_eq!(&out[4..8], &0x553e_456au32.to_le_bytes());
        assert_eq!(out.len(), record_bytes(3));
    }

    #[test]
    fn golden_empty_payload() {
        let mut out = Vec::new();
        encode_record(&mut out, 0x0102_0304_0506_0708, 0xff, b"");
        assert_eq!(&out[0..4], &[9, 0, 0, 0]);
        assert_eq!(&out[8..17], &[8, 7, 6, 5, 4, 3, 2, 1, 0xff]);
        let rec = decode_record(&out, RECORD_LEN_MAX_DEFAULT).unwrap();
        assert_eq!(
            (rec.lsn, rec.kind, rec.payload, rec.total_bytes),
            (0x0102_0304_0506_0708, 0xff, &b""[..], 17)
        );
    }

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let mut out = Vec::new();
        encode_record(&mut out, 42, 3, b"hello wal");
        let rec = decode_record(&out, RECORD_LEN_MAX_DEFAULT).unwrap();
        assert_eq!((rec.lsn, rec.kind, rec.payload), (42, 3, &b"hello wal"[..]));
        for byte in 4..out.len() {
            for bit in 0..8 {
                let mut bad = out.clone();
                bad[byte] ^= 1 << bit;
                let err = decode_record(&bad, RECORD_LEN_MAX_DEFAULT).unwrap_err();
                assert!(
                    matches!(err, RecordError::BadCrc { .. }),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn len_checked_before_use() {
        let mut buf = vec![0u8; 32];
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_record(&buf, 1024),
            Err(RecordError::BadLen {
                len: u32::MAX,
                min: 9,
                max: 1024
            })
        );
        buf[0..4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            decode_record(&buf, 1024),
            Err(RecordError::BadLen {
                len: 8,
                min: 9,
                max: 1024
            })
        );
    }

    #[test]
    fn incomplete_is_reported() {
        let mut out = Vec::new();
        encode_record(&mut out, 5, 1, b"xyz");
        assert_eq!(
            decode_record(&out[..3], 1024),
            Err(RecordError::Incomplete { have: 3, need: 17 })
        );
        assert_eq!(
            decode_record(&out[..19], 1024),
            Err(RecordError::Incomplete { have: 19, need: 20 })
        );
    }

    #[test]
    fn batch_range() {
        let mut out = Vec::new();
        for lsn in 10..15 {
            encode_record(&mut out, lsn, 0, &[lsn as u8; 3]);
        }
        assert_eq!(batch_lsn_range(&out, 1024), Ok((10, 14, 5)));
        assert_eq!(batch_lsn_range(&[], 1024), Ok((0, 0, 0)));
        assert!(matches!(
            batch_lsn_range(&out[..out.len() - 1], 1024),
            Err(RecordError::Incomplete { .. })
        ));
    }
}
