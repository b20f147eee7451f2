//! Synthetic test video: a moving pattern with a frame index and a send timestamp painted into
//! the picture, so a receiver can measure glass-to-glass latency and detect lost, repeated or
//! reordered frames after a real encode / network / decode round trip.
//!
//! Layout: the top [`DATA_ROWS`] rows of square blocks, [`BLOCKS_PER_ROW`] blocks per row, each
//! block one bit (black = 0, white = 1). The block size is `width / BLOCKS_PER_ROW`, so the code
//! scales with the picture and a 1/3-size simulcast layer still carries it (320 px wide -> 8 px
//! blocks). The 120 bits hold a sync byte, the 32-bit index, the 64-bit timestamp and a CRC-16.

use std::time::{SystemTime, UNIX_EPOCH};

/// Number of data blocks across the picture; the block size is `width / BLOCKS_PER_ROW`.
pub const BLOCKS_PER_ROW: u32 = 40;
/// Number of block rows at the top of the picture that carry data.
pub const DATA_ROWS: u32 = 3;
/// Smallest supported frame size (a 1/4-size 720p layer).
pub const MIN_WIDTH: u32 = 320;
/// Smallest supported frame height.
pub const MIN_HEIGHT: u32 = 180;

const SYNC: u8 = 0xA5;
const PAYLOAD_BYTES: usize = 15; // sync + 4 index + 8 timestamp + 2 crc = 120 bits = 3 x 40
const LUMA_BLACK: u8 = 16;
const LUMA_WHITE: u8 = 235;
const LUMA_THRESHOLD: u32 = (LUMA_BLACK as u32 + LUMA_WHITE as u32) / 2;

/// What a frame carries: its index and the wall-clock time it was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameStamp {
    /// Frame counter, shared by all simulcast layers of one tick.
    pub index: u32,
    /// Microseconds since the UNIX epoch when the frame was generated.
    pub timestamp_us: u64,
}

/// Microseconds since the UNIX epoch (wall clock), the unit of [`FrameStamp::timestamp_us`].
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Block edge in pixels for a frame of this width.
pub fn block_size(width: u32) -> u32 {
    width / BLOCKS_PER_ROW
}

/// An I420 (YUV 4:2:0 planar) frame in one contiguous buffer.
#[derive(Clone)]
pub struct YuvFrame {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

impl YuvFrame {
    /// A black frame; width and height must be even.
    pub fn new(width: u32, height: u32) -> Self {
        let luma = (width * height) as usize;
        let mut data = vec![LUMA_BLACK; luma + luma / 2];
        data[luma..].fill(128);
        Self {
            width,
            height,
            data,
        }
    }

    /// Frame width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Frame height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    fn luma_len(&self) -> usize {
        (self.width * self.height) as usize
    }

    /// The luma plane (stride = width).
    pub fn y_plane(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let luma = self.luma_len();
        let (y, uv) = self.data.split_at_mut(luma);
        let (u, v) = uv.split_at_mut(luma / 4);
        (y, u, v)
    }
}

impl openh264::formats::YUVSource for YuvFrame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width as usize, self.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let w = self.width as usize;
        (w, w / 2, w / 2)
    }

    fn y(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    fn u(&self) -> &[u8] {
        let luma = self.luma_len();
        &self.data[luma..luma + luma / 4]
    }

    fn v(&self) -> &[u8] {
        let luma = self.luma_len();
        &self.data[luma + luma / 4..]
    }
}

/// Paints test frames of one size.
pub struct PatternGenerator {
    frame: YuvFrame,
    /// The static part (gradient, chroma, black data area), copied in before each frame.
    background: YuvFrame,
}

impl PatternGenerator {
    /// A generator for `width` x `height` frames (even, at least 320x180).
    pub fn new(width: u32, height: u32) -> anyhow::Result<Self> {
        anyhow::ensure!(
            width >= MIN_WIDTH && height >= MIN_HEIGHT,
            "pattern needs at least {MIN_WIDTH}x{MIN_HEIGHT}, got {width}x{height}"
        );
        anyhow::ensure!(
            width.is_multiple_of(2) && height.is_multiple_of(2),
            "I420 needs even dimensions, got {width}x{height}"
        );
        let mut background = YuvFrame::new(width, height);
        let (w, h) = (width as usize, height as usize);
        let data_h = (block_size(width) * DATA_ROWS) as usize;
        let (y_plane, u_plane, v_plane) = background.planes_mut();
        for row in data_h..h {
            for (x, px) in y_plane[row * w..(row + 1) * w].iter_mut().enumerate() {
                *px = (40 + x * 150 / w + (row * 20 / h)) as u8;
            }
        }
        // Chroma stays neutral under the data blocks: only luma is read back.
        for row in data_h.div_ceil(2)..h / 2 {
            u_plane[row * w / 2..(row + 1) * w / 2].fill((64 + row * 2 * 128 / h) as u8);
            for (x, px) in v_plane[row * w / 2..(row + 1) * w / 2]
                .iter_mut()
                .enumerate()
            {
                *px = (96 + x * 2 * 64 / w) as u8;
            }
        }
        Ok(Self {
            frame: background.clone(),
            background,
        })
    }

    /// Paints the frame for `stamp` and returns it (the buffer is reused between calls).
    pub fn render(&mut self, stamp: FrameStamp) -> &YuvFrame {
        let (w, h) = (self.frame.width as usize, self.frame.height as usize);
        let b = block_size(self.frame.width) as usize;
        let data_h = b * DATA_ROWS as usize;
        self.frame.data.copy_from_slice(&self.background.data);
        // The bar moves 1/160 of the width per frame: visible motion at every layer size, so
        // P-frames carry real motion, not only noise.
        let step = (w / 160).max(1);
        let bar_w = (w / 32).max(8);
        let bar_x = (stamp.index as usize * step) % w;
        let (y_plane, _, _) = self.frame.planes_mut();
        for row in data_h..h {
            let line = &mut y_plane[row * w..(row + 1) * w];
            line[bar_x..(bar_x + bar_w).min(w)].fill(220);
            if bar_x + bar_w > w {
                line[..bar_x + bar_w - w].fill(220);
            }
        }

        // Fresh noise every frame in the lower half: incompressible detail, so the encoder's
        // rate control has to spend its target bitrate instead of coasting at a few kbit/s.
        // Eight pixels per step (keep the top two bits, randomize the rest): cheap even in
        // debug builds.
        let mut rng =
            XorShift((u64::from(stamp.index) << 1 | 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        for chunk in y_plane[(h / 2).max(data_h) * w..].chunks_exact_mut(8) {
            let mut px = [0u8; 8];
            px.copy_from_slice(chunk);
            let v = u64::from_le_bytes(px);
            let noisy = (v & 0xC0C0_C0C0_C0C0_C0C0) | (rng.next() & 0x3F3F_3F3F_3F3F_3F3F);
            chunk.copy_from_slice(&noisy.to_le_bytes());
        }

        let payload = encode_payload(stamp);
        for bit in 0..PAYLOAD_BYTES * 8 {
            if payload[bit / 8] & (0x80 >> (bit % 8)) == 0 {
                continue;
            }
            let (col, row) = (bit % BLOCKS_PER_ROW as usize, bit / BLOCKS_PER_ROW as usize);
            for y in row * b..(row + 1) * b {
                y_plane[y * w + col * b..y * w + (col + 1) * b].fill(LUMA_WHITE);
            }
        }
        &self.frame
    }
}

/// Cheap PRNG for the noise band (no need for quality, only speed and determinism).
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn encode_payload(stamp: FrameStamp) -> [u8; PAYLOAD_BYTES] {
    let mut out = [0u8; PAYLOAD_BYTES];
    out[0] = SYNC;
    out[1..5].copy_from_slice(&stamp.index.to_be_bytes());
    out[5..13].copy_from_slice(&stamp.timestamp_us.to_be_bytes());
    let crc = crc16(&out[..13]);
    out[13..15].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Reads the stamp back from a decoded luma plane; `None` if the frame is too small or the
/// sync byte or checksum do not match (a damaged or foreign frame).
pub fn extract(y: &[u8], stride: usize, width: usize, height: usize) -> Option<FrameStamp> {
    let b = width / BLOCKS_PER_ROW as usize;
    if b < 4 || height < b * DATA_ROWS as usize || stride < width {
        return None;
    }
    // Average only the inner half of each block: the edges are where the encoder's blocking
    // and ringing live, especially when block edges do not fall on the 16 px macroblock grid.
    let margin = b / 4;
    let mut payload = [0u8; PAYLOAD_BYTES];
    for bit in 0..PAYLOAD_BYTES * 8 {
        let (col, row) = (bit % BLOCKS_PER_ROW as usize, bit / BLOCKS_PER_ROW as usize);
        let (x0, y0) = (col * b + margin, row * b + margin);
        let (x1, y1) = ((col + 1) * b - margin, (row + 1) * b - margin);
        let mut sum = 0u32;
        let mut n = 0u32;
        for yy in y0..y1 {
            let line = y.get(yy * stride + x0..yy * stride + x1)?;
            sum += line.iter().map(|&p| p as u32).sum::<u32>();
            n += line.len() as u32;
        }
        if n > 0 && sum / n > LUMA_THRESHOLD {
            payload[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    if payload[0] != SYNC {
        return None;
    }
    let crc = u16::from_be_bytes([payload[13], payload[14]]);
    if crc != crc16(&payload[..13]) {
        return None;
    }
    let index = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&payload[5..13]);
    Some(FrameStamp {
        index,
        timestamp_us: u64::from_be_bytes(ts),
    })
}

/// CRC-16/CCITT-FALSE: enough to tell a clean read from a damaged one.
fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip_without_codec() {
        for (w, h) in [(1280, 720), (426, 240), (320, 180)] {
            let mut generator = PatternGenerator::new(w, h).expect("size is valid");
            let stamp = FrameStamp {
                index: 0xDEAD_BEEF,
                timestamp_us: 1_700_000_000_123_456,
            };
            let frame = generator.render(stamp);
            let got = extract(frame.y_plane(), w as usize, w as usize, h as usize);
            assert_eq!(got, Some(stamp), "{w}x{h}");
        }
    }

    #[test]
    fn rejects_a_blank_frame() {
        let frame = YuvFrame::new(640, 360);
        assert_eq!(extract(frame.y_plane(), 640, 640, 360), None);
    }

    #[test]
    fn rejects_small_or_odd_sizes() {
        assert!(PatternGenerator::new(160, 90).is_err());
        assert!(PatternGenerator::new(321, 180).is_err());
    }
}
