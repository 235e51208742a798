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
});
