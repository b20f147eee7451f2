//! HTTP edge of the API crate: types shared by every onair HTTP surface.

pub mod problem;
