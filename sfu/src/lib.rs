//! onair media plane.
