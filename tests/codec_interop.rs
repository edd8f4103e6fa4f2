//! Interoperability with pyiso8583 (an independent implementation): messages it encodes are
//! decoded by us to the exact values, and messages we encode are decoded by it to the exact
//! values, with binary and hex bitmaps, with and without a secondary bitmap.
//!
//! Python is `$AUTHSWITCH_TEST_PYTHON`, else `.venv/bin/python` at the repository root. If
//! neither can import `iso8583` the test fails (it never skips silently).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use authswitch::iso8583::{
    dictionary, BitmapEncoding, FieldType, Message, MessageBuilder, Mti, WireFormat, FIELD_LEN_MAX,
};
use bytes::{Bytes, BytesMut};
use serde_json::{json, Map, Value};

fn python() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("AUTHSWITCH_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")])
        .collect();
    for candidate in &candidates {
        let ok = Command::new(candidate)
            .args(["-c", "import iso8583"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.clone();
        }
    }
    panic!(
        "interop test needs pyiso8583: none of {candidates:?} can `import iso8583`. \
         Set AUTHSWITCH_TEST_PYTHON to a python with pyiso8583 4.x, or run ./scripts/test \
         which creates .venv"
    );
}

fn run_bridge(command: &str, request: &Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/pyiso.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().expect("python runs");
    assert!(
        output.status.success(),
        "pyiso.py {command} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("pyiso.py answers JSON")
}

/// Test messages as pyiso8583 documents: field number -> value (hex for binary fields).
fn documents() -> Vec<Value> {
    vec![
        json!({"t": "0100", "2": "4111111111111111", "3": "000000", "4": "000000012345",
               "7": "1121233456", "11": "123456", "12": "183456", "13": "1121", "14": "2812",
               "18": "5411", "22": "051", "25": "00", "32": "12345", "37": "432112345678",
               "41": "TERM0001", "42": "MERCHANT0000001",
               "43": "ACME COFFEE ROASTERS     SAN FRANCISCOUS", "49": "840",
               "52": "0123456789ABCDEF", "55": "9F02060000000123459F1A020840"}),
        json!({"t": "0400", "2": "5500000000000004", "3": "000000", "4": "000000005000",
               "7": "1121233500", "11": "000777", "32": "987654", "37": "432112345679",
               "39": "00", "49": "978",
               "90": "010012345611212334560000001234500000000000",
               "95": "000000002500000000002500D00000150C00000000"}),
        json!({"t": "0800", "7": "1121233456", "11": "000001", "70": "301",
               "128": "A1B2C3D4E5F60718"}),
        json!({"t": "0120", "35": "4111111111111111=28121011", "4": "000000000100",
               "11": "424242", "48": "free text, with punctuation: ok!", "54": "0001840C000000010000",
               "102": "ACCOUNT-1", "104": "Coffee and a croissant", "127": "X".repeat(300)}),
    ]
}

fn format_of(bitmap: &str) -> WireFormat {
    let bitmap = if bitmap == "hex" {
        BitmapEncoding::Hex
    } else {
        BitmapEncoding::Binary
    };
    WireFormat {
        bitmap,
        ..WireFormat::default()
    }
}

fn is_binary(field: u8) -> bool {
    dictionary().field(field).map(|s| s.field_type) == Some(FieldType::Binary)
}

fn data_fields(doc: &Map<String, Value>) -> Vec<(u8, String)> {
    let mut fields: Vec<(u8, String)> = doc
        .iter()
        .filter_map(|(k, v)| Some((k.parse::<u8>().ok()?, v.as_str()?.to_string())))
        .filter(|&(f, _)| f >= 2)
        .collect();
    fields.sort();
    fields
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn we_decode_what_pyiso8583_encodes() {
    for bitmap in ["binary", "hex"] {
        let docs = documents();
        let answer = run_bridge("encode", &json!({"bitmap": bitmap, "docs": docs}));
        let encoded = answer["hex"].as_array().unwrap();
        for (doc, wire) in docs.iter().zip(encoded) {
            let doc = doc.as_object().unwrap();
            let body = Bytes::from(unhex(wire.as_str().unwrap()));
            let msg = Message::decode(body, &format_of(bitmap))
                .unwrap_or_else(|e| panic!("{bitmap} {}: {e}", doc["t"]));
            assert_eq!(msg.mti().to_string(), doc["t"].as_str().unwrap());
            let expected = data_fields(doc);
            let fields: Vec<u8> = msg.fields().collect();
            assert_eq!(fields, expected.iter().map(|(f, _)| *f).collect::<Vec<_>>());
            assert_eq!(msg.has(1), fields.iter().any(|&f| f > 64));
            for (field, value) in expected {
                let mut buf = [0u8; FIELD_LEN_MAX];
                let got = msg.value(field, &mut buf).unwrap();
                let got = if is_binary(field) {
                    hex(got)
                } else {
                    String::from_utf8_lossy(got).into()
                };
                assert_eq!(got, value, "{bitmap} {} DE{field}", doc["t"]);
            }
        }
    }
}

#[test]
fn pyiso8583_decodes_what_we_encode() {
    for bitmap in ["binary", "hex"] {
        let docs = documents();
        let mut wires = Vec::new();
        let mut values: Vec<Vec<(u8, Vec<u8>)>> = Vec::new();
        for doc in &docs {
            let doc = doc.as_object().unwrap();
            let fields: Vec<(u8, Vec<u8>)> = data_fields(doc)
                .into_iter()
                .map(|(f, v)| {
                    (
                        f,
                        if is_binary(f) {
                            unhex(&v)
                        } else {
                            v.into_bytes()
                        },
                    )
                })
                .collect();
            values.push(fields);
        }
        for (doc, fields) in docs.iter().zip(&values) {
            let mut builder =
                MessageBuilder::new(Mti::new(doc["t"].as_str().unwrap().parse().unwrap()));
            for (field, value) in fields {
                builder.set_text(*field, value);
            }
            let mut out = BytesMut::new();
            builder.encode(&format_of(bitmap), &mut out).unwrap();
            wires.push(Value::String(hex(&out)));
        }
        let answer = run_bridge("decode", &json!({"bitmap": bitmap, "hex": wires}));
        let decoded = answer["docs"].as_array().unwrap();
        for (doc, got) in docs.iter().zip(decoded) {
            let (doc, got) = (doc.as_object().unwrap(), got.as_object().unwrap());
            assert_eq!(got["t"], doc["t"]);
            assert_eq!(data_fields(got), data_fields(doc), "{bitmap} {}", doc["t"]);
            let secondary = data_fields(doc).iter().any(|&(f, _)| f > 64);
            assert_eq!(got.contains_key("1"), secondary, "{bitmap} {}", doc["t"]);
        }
    }
}
