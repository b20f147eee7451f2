//! onair's LL-HLS fallback for devices without WebRTC (DESIGN §2): RTP depacketizers, CMAF fMP4
//! packaging and LL-HLS playlists as sans-IO building blocks, and the shell that taps the SFU
//! in-process and serves the result over HTTP.

pub mod audio;
pub mod avsync;
mod bits;
pub mod config;
pub mod depacketize;
pub mod fmp4;
pub mod http;
pub mod ladder;
pub mod live;
pub mod metrics;
pub mod playlist;
pub mod rendition;
pub mod retention;
pub mod signing;
pub mod storage;
pub mod viewers;

pub use config::{EncoderSpeed, HlsConfig, LadderConfig};
pub use live::Hls;
