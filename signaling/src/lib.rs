//! WHIP and WHEP signaling.
