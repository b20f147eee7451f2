//! onair load-test harness and WebRTC test clients.
//!
//! - [`client`]: webrtc-rs WHIP publisher and WHEP viewer with a self-describing test pattern.
//! - [`shaper`]: a bandwidth-limiting UDP proxy for simulating slow viewers.

pub mod client;
pub mod shaper;
