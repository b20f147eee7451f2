//! The VP8 source decoder: libvpx (Debian's libvpx-dev, through `env-libvpx-sys`) over the
//! depacketizer's whole VP8 frames.
//!
//! All FFI lives in this file. libvpx's VP8 decoder only ever outputs 8-bit I420; anything
//! else is refused with an error rather than reinterpreted.

use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::{c_int, c_uint};
use std::ptr;

use vpx_sys as vpx;

use super::{DecodeError, Picture, SourceFrame, VideoDecoder};
use crate::depacketize::vp8_keyframe_size;

/// Largest key frame accepted, in luma samples (4K): VP8's 14-bit sizes would otherwise let one
/// garbage key frame make libvpx allocate hundreds of megabytes.
const MAX_PIXELS: u32 = 4096 * 2304;

/// libvpx decoding VP8 frames.
pub struct Vp8Decoder {
    /// Boxed so the context keeps one address for its whole life.
    ctx: Box<vpx::vpx_codec_ctx_t>,
    /// A key frame has been accepted; inter frames before it are refused.
    started: bool,
}

// SAFETY: the codec context is owned by this value alone and libvpx keeps no thread-local
// state for it; moving it to another thread between calls is what libvpx's own tools do.
unsafe impl Send for Vp8Decoder {}

impl Vp8Decoder {
    /// A new single-threaded decoder.
    pub fn new() -> Result<Self, DecodeError> {
        // SAFETY: an all-zero context is the documented "uninitialised" state that
        // `vpx_codec_dec_init_ver` expects (its `err` field is 0 = VPX_CODEC_OK).
        let mut ctx: Box<vpx::vpx_codec_ctx_t> =
            Box::new(unsafe { MaybeUninit::zeroed().assume_init() });
        let cfg = vpx::vpx_codec_dec_cfg_t {
            threads: 1,
            w: 0,
            h: 0,
        };
        // SAFETY: valid pointers to a context and a config that outlive the call; the ABI
        // version is the one the bindings were generated for (checked by libvpx).
        let err = unsafe {
            vpx::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx::vpx_codec_vp8_dx(),
                &cfg,
                0,
                vpx::VPX_DECODER_ABI_VERSION as c_int,
            )
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            return Err(DecodeError::Codec(format!(
                "libvpx: cannot open the VP8 decoder ({err:?})"
            )));
        }
        Ok(Self {
            ctx,
            started: false,
        })
    }

    fn error(&mut self) -> DecodeError {
        // SAFETY: the context is initialised; libvpx returns static or context-owned strings
        // that stay valid until the next call on this context.
        let text = unsafe {
            let msg = vpx::vpx_codec_error(&mut *self.ctx);
            let detail = vpx::vpx_codec_error_detail(&mut *self.ctx);
            let mut s = if msg.is_null() {
                String::from("unknown error")
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            };
            if !detail.is_null() {
                s.push_str(": ");
                s.push_str(&CStr::from_ptr(detail).to_string_lossy());
            }
            s
        };
        DecodeError::Codec(format!("libvpx: {text}"))
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once here.
        unsafe {
            vpx::vpx_codec_destroy(&mut *self.ctx);
        }
    }
}

impl VideoDecoder for Vp8Decoder {
    fn decode(&mut self, frame: &SourceFrame<'_>, out: &mut Picture) -> Result<bool, DecodeError> {
        let data = frame.data;
        // Frame tag (RFC 6386 §9.1): bit 0 clear = key frame.
        let Some(&tag) = data.first() else {
            return Err(DecodeError::Malformed("empty VP8 frame"));
        };
        if tag & 0x01 == 0 {
            let Some((w, h)) = vp8_keyframe_size(data) else {
                return Err(DecodeError::Malformed(
                    "VP8 key frame without a valid header",
                ));
            };
            if w == 0 || h == 0 || u32::from(w) * u32::from(h) > MAX_PIXELS {
                return Err(DecodeError::Malformed("VP8 key frame size out of range"));
            }
        } else if !self.started {
            return Err(DecodeError::Malformed(
                "VP8 inter frame before any key frame",
            ));
        }
        let len = c_uint::try_from(data.len())
            .map_err(|_| DecodeError::Malformed("VP8 frame too large"))?;
        // SAFETY: `data` is valid for `len` bytes for the duration of the call; libvpx copies
        // what it keeps.
        let err = unsafe {
            vpx::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0)
        };
        if err != vpx::vpx_codec_err_t::VPX_CODEC_OK {
            self.started = false;
            return Err(self.error());
        }
        let mut corrupted: c_int = 0;
        // SAFETY: VP8D_GET_FRAME_CORRUPTED takes an `int *`, valid for the call.
        let err = unsafe {
            vpx::vpx_codec_control_(
                &mut *self.ctx,
                vpx::vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        if err == vpx::vpx_codec_err_t::VPX_CODEC_OK && corrupted != 0 {
            self.started = false;
            return Err(DecodeError::Codec("libvpx: frame decoded corrupted".into()));
        }
        self.started = true;
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        let mut wrote = false;
        loop {
            // SAFETY: the iterator protocol of vpx_codec_get_frame; the image stays valid until
            // the next decode call on this context, and is only read before that.
            let img = unsafe { vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if img.is_null() {
                break;
            }
            // SAFETY: non-null image from libvpx, read-only here.
            unsafe { copy_image(&*img, out)? };
            wrote = true;
        }
        Ok(wrote)
    }
}

/// Copies a libvpx 8-bit I420 image into `out` (cropped to an even size).
///
/// # Safety
/// `img` must be an image returned by libvpx that is still valid.
unsafe fn copy_image(img: &vpx::vpx_image_t, out: &mut Picture) -> Result<(), DecodeError> {
    // Read the format as an integer: an unexpected value must not be materialised as the
    // bindings' Rust enum.
    // SAFETY: `fmt` is a C enum, stored as a 32-bit int.
    let fmt = unsafe { ptr::read(ptr::addr_of!(img.fmt).cast::<i32>()) };
    if fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 as i32
        || img.x_chroma_shift != 1
        || img.y_chroma_shift != 1
        || img.bit_depth != 8
    {
        return Err(DecodeError::Codec(format!(
            "libvpx: output is not 8-bit I420 (format {fmt}, depth {})",
            img.bit_depth
        )));
    }
    let (w, h) = (img.d_w & !1, img.d_h & !1);
    if w == 0 || h == 0 {
        return Err(DecodeError::Malformed("picture smaller than 2x2"));
    }
    out.reset(w, h);
    let (w, h) = (w as usize, h as usize);
    for (p, (pw, ph)) in [(w, h), (w / 2, h / 2), (w / 2, h / 2)]
        .into_iter()
        .enumerate()
    {
        let stride = usize::try_from(img.stride[p])
            .map_err(|_| DecodeError::Malformed("negative plane stride"))?;
        let src = img.planes[p];
        if src.is_null() || stride < pw {
            return Err(DecodeError::Malformed(
                "decoder plane smaller than its size",
            ));
        }
        for (y, row) in out.planes[p].chunks_exact_mut(pw).take(ph).enumerate() {
            // SAFETY: libvpx planes hold `d_h` (chroma: half, rounded up) rows of `stride`
            // bytes, and `y < ph`, `pw <= stride`.
            let line = unsafe { std::slice::from_raw_parts(src.add(y * stride), pw) };
            row.copy_from_slice(line);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::depacketize::{Depacketizer, Output, RtpIn, Vp8Depacketizer};

    #[test]
    fn garbage_never_panics() {
        let mut d = Vp8Decoder::new().expect("libvpx");
        let mut out = Picture::default();
        let mut seed = 0x0bad_cafe_dead_beefu64;
        for i in 0..500u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 300) as usize;
            let mut data: Vec<u8> = (0..len)
                .map(|k| (seed >> (k % 56)) as u8 ^ (k as u8).wrapping_mul(31))
                .collect();
            // Half of them look like small key frames, to get past the header checks.
            if i % 2 == 0 && data.len() > 10 {
                data[0] &= !0x01;
                data[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
                data[6..10].copy_from_slice(&[64, 0, 48, 0]);
            }
            let frame = SourceFrame {
                dts: i,
                keyframe: i % 2 == 0,
                data: &data,
            };
            if let Ok(true) = d.decode(&frame, &mut out) {
                assert!(out.is_consistent());
            }
        }
        // A huge claimed size is refused before libvpx sees it.
        let mut huge = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0xff, 0x3f, 0xff, 0x3f];
        huge.extend_from_slice(&[0; 32]);
        let frame = SourceFrame {
            dts: 0,
            keyframe: true,
            data: &huge,
        };
        assert!(d.decode(&frame, &mut out).is_err());
    }

    /// A real stream through the depacketizer and the decoder (needs ffmpeg with libvpx,
    /// which scripts/test installs; skipped with a note otherwise).
    #[test]
    fn decodes_an_ffmpeg_stream_through_the_depacketizer() {
        let Some(frames) = super::super::test_clip::ffmpeg_ivf_frames(
            176,
            144,
            10,
            &[
                "-c:v",
                "libvpx",
                "-deadline",
                "realtime",
                "-cpu-used",
                "8",
                "-g",
                "30",
                "-auto-alt-ref",
                "0",
            ],
        ) else {
            eprintln!("no ffmpeg VP8 encoder; skipping");
            return;
        };
        let mut depack = Vp8Depacketizer::new();
        let mut dec = Vp8Decoder::new().expect("libvpx");
        let mut out = Picture::default();
        let mut decoded = 0;
        let mut seq = 0u16;
        for (i, frame) in frames.iter().enumerate() {
            // Split each frame in two packets: S=1 on the first, plain descriptor on the next.
            let half = frame.len() / 2;
            for (k, part) in [&frame[..half], &frame[half..]].into_iter().enumerate() {
                let mut payload = vec![if k == 0 { 0x10 } else { 0x00 }];
                payload.extend_from_slice(part);
                for o in depack.push(&RtpIn {
                    seq,
                    timestamp: i as u32 * 3000,
                    marker: k == 1,
                    payload: &payload,
                }) {
                    let Output::Frame(f) = o else { continue };
                    let sf = SourceFrame {
                        dts: u64::from(f.timestamp),
                        keyframe: f.keyframe,
                        data: &f.data,
                    };
                    if dec.decode(&sf, &mut out).expect("decodes") {
                        decoded += 1;
                        assert_eq!((out.width, out.height), (176, 144));
                        assert!(out.is_consistent());
                    }
                }
                seq += 1;
            }
        }
        assert_eq!(decoded, frames.len());
        let (min, max) = out.planes[0]
            .iter()
            .fold((255u8, 0u8), |(a, b), &v| (a.min(v), b.max(v)));
        assert!(max - min > 50, "luma {min}..{max}");
    }
}
