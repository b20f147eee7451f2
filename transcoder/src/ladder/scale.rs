//! Area-average (box filter) downscaling of I420 pictures in pure Rust.
//!
//! Separable and row based: for each output row the contributing source rows are summed with
//! fixed-point weights into one `u32` accumulator row (a straight multiply-add over the row that
//! the compiler vectorises), then each output pixel sums a fixed number of taps from that row.
//! The filter plans are computed once per size pair, so scaling a picture allocates nothing.
//!
//! Every weight set sums to exactly [`ONE`], so flat areas stay flat and a 2:1 scale is the exact
//! rounded mean of each 2x2 block.

use super::Picture;

/// Fixed-point unit of one filter's weights (8 bits per direction keeps 255 * ONE * ONE in u32).
const ONE: u32 = 256;
const SHIFT: u32 = 16;

/// The output size of a rung of height `height` for a `src_w` x `src_h` source: same aspect ratio,
/// both dimensions even (I420 and most H.264 decoders want that) and at least 2.
pub fn rung_size(src_w: u32, src_h: u32, height: u32) -> (u32, u32) {
    let h = (height & !1).max(2);
    if src_h == 0 {
        return (2, h);
    }
    // Rounded to the nearest even width: 1280x720 -> 854x480, 640x360, 426x240.
    let exact = u64::from(src_w) * u64::from(h);
    let w = ((exact + u64::from(src_h)) / (2 * u64::from(src_h))) * 2;
    (u32::try_from(w).unwrap_or(u32::MAX).max(2), h)
}

/// The taps of one direction: for output `i`, source indices `first[i] .. first[i] + taps` with
/// weights `weights[i * taps ..][..taps]` (unused taps have weight 0 and a clamped index).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    taps: usize,
    first: Vec<usize>,
    weights: Vec<u32>,
}

impl Filter {
    /// Area-average weights from `src` samples to `dst` samples (either may be larger).
    fn new(src: usize, dst: usize) -> Self {
        let (src, dst) = (src.max(1), dst.max(1));
        // In units of 1/dst of a source pixel, output i spans [i*src, (i+1)*src) and source j
        // spans [j*dst, (j+1)*dst): integer overlaps, no float drift.
        let taps = src.div_ceil(dst) + 1;
        let mut first = Vec::with_capacity(dst);
        let mut weights = vec![0; dst * taps];
        for i in 0..dst {
            let (lo, hi) = (i * src, (i + 1) * src);
            let j0 = lo / dst;
            first.push(j0);
            // Cumulative rounding makes the weights of one output sum to exactly ONE.
            let mut covered = 0u64;
            let mut given = 0u32;
            for t in 0..taps {
                let j = j0 + t;
                let overlap = hi.min((j + 1) * dst).saturating_sub(lo.max(j * dst));
                if j >= src || overlap == 0 {
                    continue;
                }
                covered += overlap as u64;
                let upto = ((covered * u64::from(ONE) * 2 + src as u64) / (2 * src as u64)) as u32;
                weights[i * taps + t] = upto - given;
                given = upto;
            }
        }
        Filter {
            taps,
            first,
            weights,
        }
    }
}

/// One plane's plan: horizontal and vertical filters.
#[derive(Debug, Clone)]
struct PlanePlan {
    src: (usize, usize),
    dst: (usize, usize),
    horizontal: Filter,
    vertical: Filter,
}

impl PlanePlan {
    fn new(src: (usize, usize), dst: (usize, usize)) -> Self {
        Self {
            src,
            dst,
            horizontal: Filter::new(src.0, dst.0),
            vertical: Filter::new(src.1, dst.1),
        }
    }

    /// Scales one plane; `acc` is scratch of at least `src.0` entries.
    fn run(
        &self,
        src: &[u8],
        src_stride: usize,
        dst: &mut [u8],
        dst_stride: usize,
        acc: &mut [u32],
    ) {
        let (sw, sh) = self.src;
        let (dw, dh) = self.dst;
        let (ht, vt) = (self.horizontal.taps, self.vertical.taps);
        // Taps past the right edge read the zero tail of the accumulator (their weight is 0).
        let acc = &mut acc[..sw + ht];
        let hweights = &self.horizontal.weights[..dw * ht];
        let hfirst = &self.horizontal.first[..dw];
        // Plain `while` loops over re-sliced buffers: LLVM drops the bounds checks and
        // vectorises the vertical pass in release, and debug builds (tests) avoid a function
        // call per pixel that iterator adapters cost at opt-level 0.
        let mut oy = 0;
        while oy < dh {
            acc.fill(0);
            let y0 = self.vertical.first[oy];
            let vw = &self.vertical.weights[oy * vt..(oy + 1) * vt];
            let mut t = 0;
            while t < vt {
                let w = vw[t];
                if w != 0 && y0 + t < sh {
                    let row = &src[(y0 + t) * src_stride..][..sw];
                    let a = &mut acc[..sw];
                    let mut x = 0;
                    while x < sw {
                        a[x] += w * row[x] as u32;
                        x += 1;
                    }
                }
                t += 1;
            }
            let out = &mut dst[oy * dst_stride..][..dw];
            let mut ox = 0;
            while ox < dw {
                let x0 = hfirst[ox];
                let taps = &acc[x0..x0 + ht];
                let w = &hweights[ox * ht..ox * ht + ht];
                let mut sum = 0u32;
                let mut k = 0;
                while k < ht {
                    sum += taps[k] * w[k];
                    k += 1;
                }
                out[ox] = ((sum + (1 << (SHIFT - 1))) >> SHIFT) as u8;
                ox += 1;
            }
            oy += 1;
        }
    }
}

/// Scales I420 pictures of one size to another; reuse it for every frame of a rung.
#[derive(Debug, Clone)]
pub struct Scaler {
    luma: PlanePlan,
    chroma: PlanePlan,
    acc: Vec<u32>,
}

impl Scaler {
    /// A scaler from `src` to `dst` (width, height); all dimensions even and non-zero.
    pub fn new(src: (u32, u32), dst: (u32, u32)) -> Self {
        let s = (src.0 as usize, src.1 as usize);
        let d = (dst.0 as usize, dst.1 as usize);
        let half = |(w, h): (usize, usize)| (w.div_ceil(2), h.div_ceil(2));
        Self {
            luma: PlanePlan::new(s, d),
            chroma: PlanePlan::new(half(s), half(d)),
            acc: vec![0; s.0 + s.0.div_ceil(d.0.max(1)) + 2],
        }
    }

    /// The (width, height) this scaler reads.
    pub fn source_size(&self) -> (u32, u32) {
        (self.luma.src.0 as u32, self.luma.src.1 as u32)
    }

    /// Scales `src` (which must have the source size) into `dst`, resizing `dst` as needed.
    pub fn scale(&mut self, src: &Picture, dst: &mut Picture) {
        let (dw, dh) = self.luma.dst;
        if (src.width, src.height) != self.source_size() {
            // The source changed size mid-stream: keep the rung's size, refit the filters.
            *self = Scaler::new((src.width, src.height), (dw as u32, dh as u32));
        }
        if !src.is_consistent() {
            return;
        }
        dst.reset(dw as u32, dh as u32);
        for p in 0..3 {
            let plan = if p == 0 { &self.luma } else { &self.chroma };
            let stride = dst.strides[p];
            plan.run(
                &src.planes[p],
                src.strides[p],
                &mut dst.planes[p],
                stride,
                &mut self.acc,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32, luma: impl Fn(u32, u32) -> u8, chroma: u8) -> Picture {
        let mut p = Picture::default();
        p.reset(w, h);
        for y in 0..h {
            for x in 0..w {
                p.planes[0][(y * w + x) as usize] = luma(x, y);
            }
        }
        p.planes[1].fill(chroma);
        p.planes[2].fill(chroma);
        p
    }

    #[test]
    fn rung_sizes_keep_aspect_and_are_even() {
        assert_eq!(rung_size(1280, 720, 480), (854, 480));
        assert_eq!(rung_size(1280, 720, 360), (640, 360));
        assert_eq!(rung_size(1280, 720, 240), (426, 240));
        assert_eq!(rung_size(640, 360, 180), (320, 180));
        assert_eq!(rung_size(1920, 1080, 720), (1280, 720));
        // Portrait and odd requests: still even.
        assert_eq!(rung_size(720, 1280, 480), (270, 480));
        assert_eq!(rung_size(1280, 720, 241), (426, 240));
        for h in [144u32, 180, 240, 360, 480, 540, 720] {
            let (w, hh) = rung_size(1366, 768, h);
            assert_eq!((w % 2, hh % 2), (0, 0), "{w}x{hh}");
        }
    }

    #[test]
    fn weights_sum_to_one_everywhere() {
        for (src, dst) in [
            (1280, 854),
            (720, 480),
            (640, 426),
            (7, 3),
            (3, 7),
            (10, 10),
        ] {
            let f = Filter::new(src, dst);
            for (i, w) in f.weights.chunks_exact(f.taps).enumerate() {
                assert_eq!(w.iter().sum::<u32>(), ONE, "{src}->{dst} output {i}");
                assert!(f.first[i] < src, "{src}->{dst}");
            }
        }
    }

    #[test]
    fn halving_averages_each_two_by_two_block() {
        // 4x4 luma with distinct values; each output is the rounded mean of its 2x2 block.
        let src = picture(4, 4, |x, y| (y * 4 + x) as u8 * 10, 100);
        let mut scaler = Scaler::new((4, 4), (2, 2));
        let mut dst = Picture::default();
        scaler.scale(&src, &mut dst);
        // (0+10+40+50)/4 = 25, (20+30+60+70)/4 = 45, (80+90+120+130)/4 = 105, 125.
        assert_eq!(dst.planes[0], vec![25, 45, 105, 125]);
        assert_eq!(dst.planes[1], vec![100]);
        assert_eq!(dst.planes[2], vec![100]);
        assert_eq!((dst.width, dst.height), (2, 2));
    }

    #[test]
    fn three_to_two_weights_by_covered_area() {
        // One row 3 -> 2: output 0 covers source 0 fully and half of source 1.
        let src = picture(6, 2, |x, _| [0u8, 90, 180, 0, 90, 180][x as usize], 128);
        let mut scaler = Scaler::new((6, 2), (4, 2));
        let mut dst = Picture::default();
        scaler.scale(&src, &mut dst);
        // Output x=0 spans source [0, 1.5): (0*1 + 90*0.5)/1.5 = 30; x=1 spans [1.5, 3):
        // (90*0.5 + 180)/1.5 = 150; the pattern repeats.
        assert_eq!(&dst.planes[0][..4], &[30, 150, 30, 150]);
        assert_eq!(&dst.planes[0][4..], &[30, 150, 30, 150]);
    }

    #[test]
    fn flat_pictures_stay_flat_at_any_ratio() {
        let src = picture(1280, 720, |_, _| 77, 200);
        for h in [480, 360, 240, 180] {
            let (w, hh) = rung_size(1280, 720, h);
            let mut scaler = Scaler::new((1280, 720), (w, hh));
            let mut dst = Picture::default();
            scaler.scale(&src, &mut dst);
            assert!(dst.planes[0].iter().all(|&p| p == 77), "{h}");
            assert!(dst.planes[1].iter().all(|&p| p == 200), "{h}");
            assert_eq!(dst.planes[0].len(), (w * hh) as usize);
            assert_eq!(dst.planes[1].len(), (w / 2 * hh / 2) as usize);
        }
    }

    #[test]
    fn strided_sources_are_read_row_by_row() {
        let mut src = picture(4, 2, |x, _| x as u8 * 20, 50);
        // Widen the luma stride to 6 with garbage in the padding.
        let mut padded = Vec::new();
        for row in src.planes[0].chunks(4) {
            padded.extend_from_slice(row);
            padded.extend_from_slice(&[255, 255]);
        }
        src.planes[0] = padded;
        src.strides[0] = 6;
        let mut scaler = Scaler::new((4, 2), (2, 2));
        let mut dst = Picture::default();
        scaler.scale(&src, &mut dst);
        assert_eq!(dst.planes[0], vec![10, 50, 10, 50]);
    }
}
