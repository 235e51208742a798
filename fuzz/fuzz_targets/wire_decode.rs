//! Fuzzes the wire protocol's decoder, as a receiver or a worker meets it: the bytes are a
//! stream of frames (a length, a kind, flags, a payload, maybe zstd-compressed). Whatever the
//! bytes, reading never panics and never allocates past the frame limit; every message it
//! accepts encodes again to a frame that decodes to the same message (the decoder cannot
//! invent a field the encoder would not write).
#![no_main]

use georep::proto as codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut stream = data;
    while let Ok(Some(m)) = codec::read_frame(&mut stream) {
        for level in [0, 3] {
            let frame = codec::encode_frame(&m, level);
            let again = codec::decode_frame(&frame[4..]).expect("a frame this encoder wrote decodes");
            assert_eq!(again, m, "a decoded message must survive its own round trip");
        }
    }
    // The same bytes as one frame body, without the length (its kind byte and flags first):
    // every message kind's payload parser, compressed or not.
    let _ = codec::decode_frame(data);
});
