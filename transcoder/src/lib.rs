//! onair's LL-HLS fallback for devices without WebRTC (DESIGN §2): RTP depacketizers, CMAF fMP4
//! packaging and LL-HLS playlists as sans-IO building blocks, and the shell that taps the SFU
//! in-process and serves the result over HTTP.

mod bits;
pub mod depacketize;
pub mod fmp4;
pub mod http;
pub mod live;
pub mod playlist;
pub mod rendition;

pub use live::Hls;
