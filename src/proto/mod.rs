//! The wire protocol between a sync worker and a receiver: messages, their encoding and
//! framing (see `docs/wire-protocol.md`). Pure codec: no I/O, no async runtime; the transport
//! (a child's stdin/stdout, an SSH channel) only moves the frames.
//!
//! Must never: trust a length or a count from the wire without a bound, or panic on any input.

mod codec;
mod msg;

pub use codec::{
    DecodeError, FRAME_MAGIC, MAX_FRAME, decode_entries, decode_frame, encode_entries, encode_frame, entry_len,
    read_frame, write_frame,
};
pub use msg::{
    DirListing, EntryOp, Failure, FileSums, Inline, Join, ListEntry, MAX_TAIL_LINES, MIN_PROTOCOL_VERSION, MetaOp, Msg,
    PROTOCOL_VERSION, ROLLING_MAX, RemoteVolume, SumsAsk, XattrSet,
};
