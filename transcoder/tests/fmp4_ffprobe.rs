//! Decoder check for the fMP4 writer: real H.264, AV1, Opus and AAC streams (tests/fixtures/fmp4_*,
//! made with ffmpeg's libx264, libaom, libopus and aac encoders) are muxed into an init segment
//! plus two `styp`+`moof`+`mdat` fragments, and ffprobe must decode every frame with the right
//! parameters, key frames and timestamps. Each test prints SKIPPED and returns when ffprobe is
//! not installed (`apt-get install ffmpeg`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use bytes::Bytes;
use onair_transcoder::fmp4::{
    Codec, STYP, Sample, Track, TrackFragment, aac_lc_config, init_segment, write_fragment,
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn have_ffprobe(test: &str) -> bool {
    let found = Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED {test}: ffprobe not found (apt-get install ffmpeg)");
    }
    found
}

/// ffprobe's `-of flat` output: `streams.stream.0.codec_name="h264"`, `frames.frame.3.pts=9000`.
struct Probe(BTreeMap<String, String>);

impl Probe {
    fn get(&self, key: &str) -> &str {
        self.0
            .get(key)
            .unwrap_or_else(|| panic!("ffprobe output lacks {key}"))
    }

    fn stream(&self, index: usize, field: &str) -> &str {
        self.get(&format!("streams.stream.{index}.{field}"))
    }

    /// `(key_frame, pts)` of every decoded frame of one stream, in output order.
    fn frames(&self, stream_index: usize) -> Vec<(bool, i64)> {
        self.list("frames.frame", "key_frame", "1", stream_index)
    }

    /// `(key flag, pts)` of every demuxed packet of one stream. ffmpeg re-derives key flags
    /// from the bitstream (parsers for video, every audio packet is key), so this checks demuxed
    /// timestamps; the trun sample flags themselves are checked by the unit tests.
    fn packets(&self, stream_index: usize) -> Vec<(bool, i64)> {
        self.list("packets.packet", "flags", "K_", stream_index)
    }

    fn list(
        &self,
        prefix: &str,
        key: &str,
        key_value: &str,
        stream_index: usize,
    ) -> Vec<(bool, i64)> {
        let mut entries = Vec::new();
        for i in 0.. {
            let field = |f: &str| self.0.get(&format!("{prefix}.{i}.{f}"));
            let Some(stream) = field("stream_index") else {
                break;
            };
            if stream.parse() != Ok(stream_index) {
                continue;
            }
            let is_key = field(key).map(String::as_str) == Some(key_value);
            let pts = field("pts").and_then(|p| p.parse().ok()).expect("pts");
            entries.push((is_key, pts));
        }
        entries
    }
}

/// Writes `file` to disk and probes it, asserting ffprobe reports no error. Packets are probed
/// separately because asking for both puts them in one mixed `packets_and_frames` list.
fn probe(file: &[u8]) -> Probe {
    let mut tmp = tempfile::Builder::new()
        .suffix(".mp4")
        .tempfile()
        .expect("temp file");
    tmp.write_all(file).expect("write temp file");
    let mut map = BTreeMap::new();
    for sections in [&["-show_streams", "-show_frames"][..], &["-show_packets"]] {
        let out = Command::new("ffprobe")
            .args(["-v", "error", "-of", "flat"])
            .args(sections)
            .arg(tmp.path())
            .output()
            .expect("run ffprobe");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "ffprobe: {stderr}"
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        map.extend(
            stdout
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned())),
        );
    }
    Probe(map)
}

/// Init segment, then `STYP` + one fragment per element of `fragments`.
fn mux(tracks: &[Track], fragments: &[Vec<TrackFragment<'_>>]) -> Vec<u8> {
    let mut out = init_segment(tracks);
    for (seq, parts) in fragments.iter().enumerate() {
        out.extend_from_slice(&STYP);
        write_fragment(&mut out, seq as u32 + 1, parts);
    }
    out
}

/// Splits one track's samples into two fragments at `at`, with continuous decode times.
fn halves(track_id: u32, samples: &[Sample], at: usize) -> [TrackFragment<'_>; 2] {
    let (a, b) = samples.split_at(at);
    let second_start = a.iter().map(|s| u64::from(s.duration)).sum();
    [
        TrackFragment {
            track_id,
            base_decode_time: 0,
            samples: a,
        },
        TrackFragment {
            track_id,
            base_decode_time: second_start,
            samples: b,
        },
    ]
}

fn assert_increasing(frames: &[(bool, i64)]) {
    assert!(
        frames.windows(2).all(|w| w[0].1 < w[1].1),
        "pts not increasing: {frames:?}"
    );
}

// ---- H.264: Annex B → AVCC access units ----

struct H264 {
    sps: Vec<u8>,
    pps: Vec<u8>,
    samples: Vec<Sample>,
}

fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i..i + 3] == [0, 0, 1] {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(n, &s)| {
            let end = starts.get(n + 1).map_or(data.len(), |&next| next - 3);
            let mut nal = &data[s..end];
            // A 4-byte start code leaves its leading zero on the previous NAL unit.
            while let [rest @ .., 0] = nal {
                nal = rest;
            }
            nal
        })
        .collect()
}

fn h264_fixture() -> H264 {
    let data = fixture("fmp4_testsrc_320x180_30f.h264");
    let (mut sps, mut pps) = (None, None);
    let mut access_units: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut current_has_vcl = false;
    for nal in annexb_nals(&data) {
        let nal_type = nal[0] & 0x1f;
        let vcl = matches!(nal_type, 1 | 5);
        // first_mb_in_slice == 0 (ue(v) "1") opens a new picture; non-VCL units after a
        // picture open the next access unit (H.264 §7.4.1.2.3).
        let new_au = current_has_vcl
            && if vcl {
                nal[1] & 0x80 != 0
            } else {
                (6..=9).contains(&nal_type)
            };
        if new_au {
            access_units.push(std::mem::take(&mut current));
            current_has_vcl = false;
        }
        current_has_vcl |= vcl;
        match nal_type {
            7 => sps = Some(nal.to_vec()),
            8 => pps = Some(nal.to_vec()),
            9 => {}
            _ => current.push(nal),
        }
    }
    access_units.push(current);
    let samples = access_units
        .iter()
        .map(|au| {
            let mut data = Vec::new();
            for nal in au {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                data.extend_from_slice(nal);
            }
            Sample {
                duration: 3000,
                is_sync: au.iter().any(|n| n[0] & 0x1f == 5),
                composition_offset: 0,
                data: Bytes::from(data),
            }
        })
        .collect();
    H264 {
        sps: sps.expect("SPS"),
        pps: pps.expect("PPS"),
        samples,
    }
}

fn h264_track(h: &H264) -> Track {
    Track {
        id: 1,
        timescale: 90000,
        codec: Codec::H264 {
            sps: h.sps.clone(),
            pps: h.pps.clone(),
            width: 320,
            height: 180,
        },
    }
}

#[test]
fn fmp4_h264_decodes_with_ffprobe() {
    let h = h264_fixture();
    assert_eq!(h.samples.len(), 30);
    assert!(h.samples[0].is_sync && h.samples[15].is_sync);
    let track = h264_track(&h);
    assert_eq!(track.codec.rfc6381(), "avc1.64000d");
    if !have_ffprobe("fmp4_h264_decodes_with_ffprobe") {
        return;
    }
    let [a, b] = halves(1, &h.samples, 15);
    let p = probe(&mux(&[track], &[vec![a], vec![b]]));
    assert_eq!(p.stream(0, "codec_name"), "h264");
    assert_eq!(p.stream(0, "profile"), "High");
    assert_eq!(p.stream(0, "width"), "320");
    assert_eq!(p.stream(0, "height"), "180");
    assert_eq!(p.stream(0, "pix_fmt"), "yuv420p");
    let frames = p.frames(0);
    assert_eq!(frames.len(), 30);
    for (i, &(key, pts)) in frames.iter().enumerate() {
        assert_eq!(key, i.is_multiple_of(15), "key_frame of frame {i}");
        assert_eq!(pts, 3000 * i as i64, "pts of frame {i}");
    }
    assert_eq!(p.packets(0), frames, "packet key flags and pts");
}

// ---- AV1: low-overhead OBU stream → temporal units without temporal delimiters ----

fn av1_fixture() -> (Vec<u8>, Vec<Sample>) {
    let data = fixture("fmp4_testsrc_320x180_30f.obu");
    let mut sequence_header = None;
    let mut units: Vec<(Vec<u8>, bool)> = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let header = data[pos];
        let obu_type = header >> 3 & 0x0f;
        assert!(header & 0x02 != 0, "fixture OBUs carry obu_size");
        let mut at = pos + 1 + usize::from(header & 0x04 != 0);
        let mut size = 0usize;
        for shift in (0..).step_by(7) {
            let b = data[at];
            at += 1;
            size |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
        }
        let obu = &data[pos..at + size];
        let payload = &data[at..at + size];
        pos = at + size;
        match obu_type {
            2 => units.push((Vec::new(), false)), // temporal delimiter: new unit, not stored
            _ => {
                if obu_type == 1 {
                    sequence_header.get_or_insert_with(|| obu.to_vec());
                }
                let unit = units
                    .last_mut()
                    .expect("stream starts with a temporal delimiter");
                unit.0.extend_from_slice(obu);
                // Frame (header) OBU: show_existing_frame = 0 and frame_type = KEY_FRAME.
                if matches!(obu_type, 3 | 6) && payload[0] & 0xe0 == 0 {
                    unit.1 = true;
                }
            }
        }
    }
    let samples = units
        .into_iter()
        .map(|(data, is_sync)| Sample {
            duration: 3000,
            is_sync,
            composition_offset: 0,
            data: Bytes::from(data),
        })
        .collect();
    (sequence_header.expect("sequence header"), samples)
}

#[test]
fn fmp4_av1_decodes_with_ffprobe() {
    let (sequence_header, samples) = av1_fixture();
    assert_eq!(samples.len(), 30);
    let seq = onair_transcoder::depacketize::parse_av1_sequence_header(&sequence_header)
        .expect("parse sequence header");
    assert_eq!((seq.max_frame_width, seq.max_frame_height), (320, 180));
    let track = Track {
        id: 1,
        timescale: 90000,
        codec: Codec::Av1 {
            sequence_header,
            width: 320,
            height: 180,
            config: onair_transcoder::fmp4::Av1Config::from(&seq),
        },
    };
    assert_eq!(track.codec.rfc6381(), "av01.0.00M.08");
    if !have_ffprobe("fmp4_av1_decodes_with_ffprobe") {
        return;
    }
    let [a, b] = halves(1, &samples, 15);
    let p = probe(&mux(&[track], &[vec![a], vec![b]]));
    assert_eq!(p.stream(0, "codec_name"), "av1");
    assert_eq!(p.stream(0, "width"), "320");
    assert_eq!(p.stream(0, "height"), "180");
    let frames = p.frames(0);
    assert_eq!(frames.len(), 30);
    for (i, &(key, pts)) in frames.iter().enumerate() {
        assert_eq!(key, i.is_multiple_of(15), "key_frame of frame {i}");
        assert_eq!(pts, 3000 * i as i64, "pts of frame {i}");
    }
    assert_eq!(p.packets(0), frames, "packet key flags and pts");
}

// ---- Opus: Ogg pages → packets ----

fn ogg_packets(data: &[u8]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        assert_eq!(&data[pos..pos + 4], b"OggS", "page at {pos}");
        let segments = usize::from(data[pos + 26]);
        let lacing = &data[pos + 27..pos + 27 + segments];
        let mut at = pos + 27 + segments;
        for &len in lacing {
            packet.extend_from_slice(&data[at..at + usize::from(len)]);
            at += usize::from(len);
            if len < 255 {
                packets.push(std::mem::take(&mut packet));
            }
        }
        pos = at;
    }
    packets
}

/// Samples at 48 kHz in one Opus packet, from its TOC byte (RFC 6716 §3.1).
fn opus_packet_samples(packet: &[u8]) -> u32 {
    let config = usize::from(packet[0] >> 3);
    let frame = match config {
        0..=11 => [480, 960, 1920, 2880][config % 4],
        12..=15 => [480, 960][config % 2],
        _ => [120, 240, 480, 960][config % 4],
    };
    let frames = match packet[0] & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(packet[1] & 0x3f),
    };
    frame * frames
}

#[test]
fn fmp4_opus_decodes_with_ffprobe() {
    let packets = ogg_packets(&fixture("fmp4_sine_48k_stereo_1s.opus"));
    let head = &packets[0];
    assert_eq!(&head[..8], b"OpusHead");
    let channels = head[9];
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    let input_sample_rate = u32::from_le_bytes(head[12..16].try_into().unwrap());
    let samples: Vec<Sample> = packets[2..]
        .iter()
        .map(|p| Sample {
            duration: opus_packet_samples(p),
            is_sync: true,
            composition_offset: 0,
            data: Bytes::copy_from_slice(p),
        })
        .collect();
    let track = Track {
        id: 1,
        timescale: 48000,
        codec: Codec::Opus {
            channels,
            pre_skip,
            input_sample_rate,
        },
    };
    assert_eq!(track.codec.rfc6381(), "opus");
    if !have_ffprobe("fmp4_opus_decodes_with_ffprobe") {
        return;
    }
    let [a, b] = halves(1, &samples, samples.len() / 2);
    let p = probe(&mux(&[track], &[vec![a], vec![b]]));
    assert_eq!(p.stream(0, "codec_name"), "opus");
    assert_eq!(p.stream(0, "sample_rate"), "48000");
    assert_eq!(p.stream(0, "channels"), "2");
    let frames = p.frames(0);
    assert_eq!(frames.len(), samples.len());
    assert!(
        frames.iter().all(|f| f.0),
        "every Opus frame is a key frame"
    );
    assert_increasing(&frames);
}

// ---- AAC: ADTS → raw frames ----

fn adts_frames(data: &[u8]) -> Vec<Sample> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let h = &data[pos..pos + 7];
        assert!(h[0] == 0xff && h[1] & 0xf0 == 0xf0, "ADTS sync at {pos}");
        assert_eq!(h[2] >> 6, 1, "AAC-LC (profile 1 = AOT 2)");
        assert_eq!(h[2] >> 2 & 0x0f, 3, "48 kHz");
        assert_eq!((h[2] & 1) << 2 | h[3] >> 6, 2, "stereo");
        assert_eq!(h[6] & 3, 0, "one raw data block per ADTS frame");
        let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let len = usize::from(h[3] & 3) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
        frames.push(Sample {
            duration: 1024,
            is_sync: true,
            composition_offset: 0,
            data: Bytes::copy_from_slice(&data[pos + header_len..pos + len]),
        });
        pos += len;
    }
    frames
}

fn aac_track(id: u32) -> Track {
    Track {
        id,
        timescale: 48000,
        codec: Codec::Aac {
            config: aac_lc_config(48000, 2).expect("valid config"),
            channels: 2,
            sample_rate: 48000,
        },
    }
}

#[test]
fn fmp4_aac_decodes_with_ffprobe() {
    let samples = adts_frames(&fixture("fmp4_sine_48k_stereo_1s.aac"));
    let track = aac_track(1);
    assert_eq!(track.codec.rfc6381(), "mp4a.40.2");
    if !have_ffprobe("fmp4_aac_decodes_with_ffprobe") {
        return;
    }
    let [a, b] = halves(1, &samples, samples.len() / 2);
    let p = probe(&mux(&[track], &[vec![a], vec![b]]));
    assert_eq!(p.stream(0, "codec_name"), "aac");
    assert_eq!(p.stream(0, "profile"), "LC");
    assert_eq!(p.stream(0, "sample_rate"), "48000");
    assert_eq!(p.stream(0, "channels"), "2");
    let frames = p.frames(0);
    assert_eq!(frames.len(), samples.len());
    assert_increasing(&frames);
    assert_eq!(frames[0].1, 0);
    assert!(
        p.packets(0).iter().all(|f| f.0),
        "every AAC packet is a sync sample"
    );
}

#[test]
fn fmp4_h264_and_aac_in_one_file_decode_with_ffprobe() {
    let h = h264_fixture();
    let audio = adts_frames(&fixture("fmp4_sine_48k_stereo_1s.aac"));
    if !have_ffprobe("fmp4_h264_and_aac_in_one_file_decode_with_ffprobe") {
        return;
    }
    let [va, vb] = halves(1, &h.samples, 15);
    // 0.5 s of video per fragment ≈ 23.4 AAC frames; a fragment's tracks need not end together.
    let [aa, ab] = halves(2, &audio, 24);
    let p = probe(&mux(
        &[h264_track(&h), aac_track(2)],
        &[vec![va, aa], vec![vb, ab]],
    ));
    assert_eq!(p.stream(0, "codec_name"), "h264");
    assert_eq!(p.stream(1, "codec_name"), "aac");
    let video = p.frames(0);
    assert_eq!(video.len(), 30);
    assert!(video[0].0 && video[15].0);
    assert_increasing(&video);
    assert_eq!(p.packets(0), video, "packet key flags and pts");
    let sound = p.frames(1);
    assert_eq!(sound.len(), audio.len());
    assert_increasing(&sound);
}
