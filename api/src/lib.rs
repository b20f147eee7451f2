//! onair platform API: the domain of channels, accounts and stream keys, plus its HTTP edge.

pub mod http;
