//! onair load-test harness and WebRTC test clients.
