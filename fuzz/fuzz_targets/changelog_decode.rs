//! Fuzzes the changelog decoder: whatever the bytes, decoding never panics, and every record
//! it accepts re-encodes to exactly the bytes it was decoded from (a round trip, not just
//! "no crash"), so the decoder can never invent or alter a record.
#![no_main]

use georep::changelog::codec::{self, Tail};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = codec::Header::decode(data);
    let mut records = Vec::new();
    let tail = codec::decode_records(data, |r| records.push(r));
    let mut re = Vec::new();
    for r in &records {
        codec::encode_record(r, &mut re);
    }
    let consumed = match tail {
        Tail::Clean => data.len(),
        Tail::Truncated { offset } | Tail::Corrupt { offset } => offset,
    };
    assert_eq!(&re[..], &data[..consumed], "decoded records must re-encode to the input");

    // The same bytes as one record body behind a valid frame: checksums no longer hide the
    // body parser from the fuzzer.
    if data.len() <= codec::MAX_BODY {
        let mut framed = Vec::with_capacity(data.len() + codec::FRAME_LEN);
        framed.extend_from_slice(&(data.len() as u32).to_le_bytes());
        framed.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        framed.extend_from_slice(data);
        let mut one = Vec::new();
        let tail = codec::decode_records(&framed, |r| one.push(r));
        if tail == Tail::Clean && !data.is_empty() {
            assert_eq!(one.len(), 1);
            let mut re = Vec::new();
            codec::encode_record(&one[0], &mut re);
            assert_eq!(re, framed, "an accepted body must re-encode to itself");
        }
    }
});
