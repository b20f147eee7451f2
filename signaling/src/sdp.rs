//! SDP policy: read what an offer asks for, decide which codecs a session uses, and bring str0m's
//! answer in line with what WHIP/WHEP clients require (RFC 9725 `rtcp-mux-only`, CRLF).
//!
//! The parse here is deliberately small: str0m does the real negotiation; this only extracts
//! what policy needs (m-line kinds and directions, codecs, RIDs, ICE credentials).

use std::num::NonZeroU32;

use onair_sfu::{MediaPlan, PayloadChoice};
use str0m::format::{Codec, CodecSpec, FormatParams};
use str0m::media::Frequency;

/// Kind of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType {
    /// `m=audio`.
    Audio,
    /// `m=video`.
    Video,
    /// `m=application` (data channels).
    Application,
    /// Anything else.
    Other,
}

/// Direction attribute of an m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `a=sendonly`.
    SendOnly,
    /// `a=recvonly`.
    RecvOnly,
    /// `a=sendrecv` (also the default).
    SendRecv,
    /// `a=inactive`.
    Inactive,
}

/// One offered payload type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    /// Payload type number.
    pub pt: u8,
    /// Encoding name as written (`H264`, `opus`, `rtx`...).
    pub name: String,
    /// Clock rate.
    pub clock: u32,
    /// Audio channels.
    pub channels: Option<u8>,
    /// The `a=fmtp` parameters, if any.
    pub fmtp: String,
    /// The `a=rtcp-fb` values for this payload type (`nack pli`, `ccm fir`...).
    pub feedback: Vec<String>,
}

/// One m-section of an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSection {
    /// Kind.
    pub kind: MediaType,
    /// `a=mid`.
    pub mid: Option<String>,
    /// Direction.
    pub direction: Direction,
    /// Port 0 means rejected/disabled.
    pub port: u16,
    /// Payload types in m-line order.
    pub formats: Vec<Format>,
    /// RIDs with direction `send`, in offer order.
    pub send_rids: Vec<String>,
    /// `a=msid` stream ids.
    pub msid_streams: Vec<String>,
    /// `a=ice-ufrag` of the section (or session).
    pub ice_ufrag: Option<String>,
    /// `a=ice-pwd` of the section (or session).
    pub ice_pwd: Option<String>,
}

/// What an offer asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Offer {
    /// The m-sections in order.
    pub media: Vec<MediaSection>,
}

/// Why an offer is refused (mapped to 400 or 422 by the HTTP layer).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Not SDP at all.
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// SDP we understand but cannot serve (422).
    #[error("{0}")]
    Unacceptable(String),
}

impl Offer {
    /// Parses the parts of an SDP offer that policy looks at.
    pub fn parse(sdp: &str) -> Result<Self, PolicyError> {
        if !sdp.trim_start().starts_with("v=0") {
            return Err(PolicyError::Malformed("an SDP body starts with v=0".into()));
        }
        let mut media: Vec<MediaSection> = Vec::new();
        let mut session_ufrag = None;
        let mut session_pwd = None;
        for raw in sdp.lines() {
            let line = raw.trim_end_matches('\r');
            if let Some(m) = line.strip_prefix("m=") {
                let mut parts = m.split_whitespace();
                let kind = match parts.next() {
                    Some("audio") => MediaType::Audio,
                    Some("video") => MediaType::Video,
                    Some("application") => MediaType::Application,
                    Some(_) => MediaType::Other,
                    None => return Err(PolicyError::Malformed("empty m= line".into())),
                };
                let port = parts
                    .next()
                    .and_then(|p| p.split('/').next())
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| PolicyError::Malformed(format!("bad m= line: {line}")))?;
                let _proto = parts.next();
                let formats = parts
                    .filter_map(|p| p.parse::<u8>().ok())
                    .map(|pt| Format {
                        pt,
                        name: String::new(),
                        clock: 0,
                        channels: None,
                        fmtp: String::new(),
                        feedback: Vec::new(),
                    })
                    .collect();
                media.push(MediaSection {
                    kind,
                    mid: None,
                    direction: Direction::SendRecv,
                    port,
                    formats,
                    send_rids: Vec::new(),
                    msid_streams: Vec::new(),
                    ice_ufrag: None,
                    ice_pwd: None,
                });
                continue;
            }
            let Some(attr) = line.strip_prefix("a=") else {
                continue;
            };
            let (name, value) = attr.split_once(':').unwrap_or((attr, ""));
            let Some(m) = media.last_mut() else {
                match name {
                    "ice-ufrag" => session_ufrag = Some(value.to_string()),
                    "ice-pwd" => session_pwd = Some(value.to_string()),
                    _ => {}
                }
                continue;
            };
            match name {
                "mid" => m.mid = Some(value.to_string()),
                "sendonly" => m.direction = Direction::SendOnly,
                "recvonly" => m.direction = Direction::RecvOnly,
                "sendrecv" => m.direction = Direction::SendRecv,
                "inactive" => m.direction = Direction::Inactive,
                "ice-ufrag" => m.ice_ufrag = Some(value.to_string()),
                "ice-pwd" => m.ice_pwd = Some(value.to_string()),
                "msid" => {
                    if let Some(s) = value.split_whitespace().next() {
                        m.msid_streams.push(s.to_string());
                    }
                }
                "rid" => {
                    let mut it = value.split_whitespace();
                    if let (Some(id), Some("send")) = (it.next(), it.next()) {
                        m.send_rids.push(id.to_string());
                    }
                }
                "rtpmap" => {
                    let (pt, enc) = value.split_once(' ').unwrap_or((value, ""));
                    let Ok(pt) = pt.parse::<u8>() else { continue };
                    let mut e = enc.split('/');
                    if let Some(f) = m.formats.iter_mut().find(|f| f.pt == pt) {
                        f.name = e.next().unwrap_or("").to_string();
                        f.clock = e.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                        f.channels = e.next().and_then(|c| c.parse().ok());
                    }
                }
                "fmtp" => {
                    let (pt, params) = value.split_once(' ').unwrap_or((value, ""));
                    let Ok(pt) = pt.parse::<u8>() else { continue };
                    if let Some(f) = m.formats.iter_mut().find(|f| f.pt == pt) {
                        f.fmtp = params.trim().to_string();
                    }
                }
                "rtcp-fb" => {
                    let (pt, fb) = value.split_once(' ').unwrap_or((value, ""));
                    let Ok(pt) = pt.parse::<u8>() else { continue };
                    if let Some(f) = m.formats.iter_mut().find(|f| f.pt == pt) {
                        f.feedback.push(fb.trim().to_ascii_lowercase());
                    }
                }
                _ => {}
            }
        }
        if media.is_empty() {
            return Err(PolicyError::Malformed("the offer has no m= line".into()));
        }
        for m in &mut media {
            if m.ice_ufrag.is_none() {
                m.ice_ufrag = session_ufrag.clone();
            }
            if m.ice_pwd.is_none() {
                m.ice_pwd = session_pwd.clone();
            }
        }
        Ok(Offer { media })
    }

    /// The first section's ICE credentials (BUNDLE shares one transport).
    pub fn ice_credentials(&self) -> Option<(String, String)> {
        let m = self.media.first()?;
        Some((m.ice_ufrag.clone()?, m.ice_pwd.clone()?))
    }

    /// Whether the offer has a data channel section.
    pub fn has_data_channel(&self) -> bool {
        self.media
            .iter()
            .any(|m| m.kind == MediaType::Application && m.port != 0)
    }

    fn active(&self, kind: MediaType) -> Vec<&MediaSection> {
        self.media
            .iter()
            .filter(|m| m.kind == kind && m.port != 0)
            .collect()
    }
}

/// Video codecs in the order we prefer them when an offer allows a choice (DESIGN §4).
pub const VIDEO_PREFERENCE: [Codec; 4] = [Codec::H264, Codec::Av1, Codec::Vp8, Codec::Vp9];

fn codec_of(name: &str) -> Option<Codec> {
    match name.to_ascii_lowercase().as_str() {
        "h264" => Some(Codec::H264),
        "vp8" => Some(Codec::Vp8),
        "vp9" => Some(Codec::Vp9),
        "av1" | "av1x" => Some(Codec::Av1),
        "opus" => Some(Codec::Opus),
        _ => None,
    }
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

fn choice(section: &MediaSection, f: &Format, codec: Codec) -> Option<PayloadChoice> {
    let clock_rate = Frequency::from_nonzero(NonZeroU32::new(f.clock)?);
    let rtx = section.formats.iter().find_map(|r| {
        (r.name.eq_ignore_ascii_case("rtx")
            && fmtp_param(&r.fmtp, "apt") == Some(&f.pt.to_string()))
        .then_some(r.pt)
    });
    Some(PayloadChoice {
        pt: f.pt,
        rtx,
        spec: CodecSpec {
            codec,
            clock_rate,
            channels: f.channels,
            format: FormatParams::parse_line(&f.fmtp),
        },
    })
}

/// H.264 must use packetization-mode 1 (what every WebRTC stack sends).
fn usable(codec: Codec, f: &Format) -> bool {
    codec != Codec::H264 || fmtp_param(&f.fmtp, "packetization-mode") == Some("1")
}

fn pick_audio(m: &MediaSection) -> Option<PayloadChoice> {
    m.formats
        .iter()
        .find(|f| codec_of(&f.name) == Some(Codec::Opus))
        .and_then(|f| choice(m, f, Codec::Opus))
}

/// The plan for a publisher (WHIP): one audio and one video m-line at most, each sending, with
/// our preferred video codec among those offered.
pub fn publisher_plan(offer: &Offer) -> Result<MediaPlan, PolicyError> {
    let audio = offer.active(MediaType::Audio);
    let video = offer.active(MediaType::Video);
    if audio.len() > 1 || video.len() > 1 {
        return Err(PolicyError::Unacceptable(
            "a WHIP offer carries at most one audio and one video track".into(),
        ));
    }
    if audio.is_empty() && video.is_empty() {
        return Err(PolicyError::Unacceptable(
            "the offer has no audio or video to publish".into(),
        ));
    }
    let streams: std::collections::HashSet<&String> = audio
        .iter()
        .chain(video.iter())
        .flat_map(|m| m.msid_streams.iter())
        .collect();
    if streams.len() > 1 {
        return Err(PolicyError::Unacceptable(
            "a WHIP offer carries one media stream (msid)".into(),
        ));
    }
    for m in audio.iter().chain(video.iter()) {
        if matches!(m.direction, Direction::RecvOnly | Direction::Inactive) {
            return Err(PolicyError::Unacceptable(
                "a WHIP offer must be sendonly or sendrecv".into(),
            ));
        }
    }
    let mut plan = MediaPlan::default();
    if let Some(m) = audio.first() {
        plan.audio =
            Some(pick_audio(m).ok_or_else(|| {
                PolicyError::Unacceptable("no supported audio codec (Opus)".into())
            })?);
        plan.audio_mid = m.mid.clone();
    }
    if let Some(m) = video.first() {
        let best = VIDEO_PREFERENCE.iter().find_map(|want| {
            m.formats
                .iter()
                .filter(|f| codec_of(&f.name) == Some(*want) && usable(*want, f))
                .find_map(|f| choice(m, f, *want))
        });
        plan.video = Some(best.ok_or_else(|| {
            PolicyError::Unacceptable("no supported video codec (H.264, AV1, VP8, VP9)".into())
        })?);
        plan.video_mid = m.mid.clone();
        plan.rids = m.send_rids.clone();
        let fb = m
            .formats
            .iter()
            .find(|f| plan.video.is_some_and(|v| v.pt == f.pt))
            .map(|f| f.feedback.as_slice())
            .unwrap_or_default();
        plan.fir_only = fb.iter().any(|x| x == "ccm fir") && !fb.iter().any(|x| x == "nack pli");
    }
    Ok(plan)
}

/// The plan for a viewer (WHEP): the live stream's codecs, in the viewer's payload numbering.
pub fn viewer_plan(
    offer: &Offer,
    video: Option<&CodecSpec>,
    audio: Option<&CodecSpec>,
) -> Result<MediaPlan, PolicyError> {
    let mut plan = MediaPlan::default();
    for m in offer.media.iter().filter(|m| m.port != 0) {
        let receives = matches!(m.direction, Direction::RecvOnly | Direction::SendRecv);
        match m.kind {
            MediaType::Video if plan.video.is_none() && receives => {
                let Some(spec) = video else { continue };
                let candidates: Vec<&Format> = m
                    .formats
                    .iter()
                    .filter(|f| codec_of(&f.name) == Some(spec.codec) && usable(spec.codec, f))
                    .collect();
                // Same H.264 profile when offered, else any packetization-mode 1 variant:
                // decoders take any profile, and OBS's SDP profile is not its real one anyway.
                let want_profile = spec.format.profile_level_id;
                let f = candidates
                    .iter()
                    .find(|f| {
                        want_profile.is_some()
                            && FormatParams::parse_line(&f.fmtp).profile_level_id == want_profile
                    })
                    .or(candidates.first());
                if let Some(f) = f {
                    plan.video = choice(m, f, spec.codec);
                    plan.video_mid = m.mid.clone();
                }
            }
            MediaType::Audio if plan.audio.is_none() && receives && audio.is_some() => {
                plan.audio = pick_audio(m);
                plan.audio_mid = m.mid.clone();
            }
            _ => {}
        }
    }
    if video.is_some()
        && plan.video.is_none()
        && offer
            .active(MediaType::Video)
            .iter()
            .any(|m| m.direction != Direction::SendOnly)
    {
        return Err(PolicyError::Unacceptable(format!(
            "the live stream is {:?} video, which the offer does not accept",
            video.map(|v| v.codec)
        )));
    }
    if plan.video.is_none() && plan.audio.is_none() {
        return Err(PolicyError::Unacceptable(
            "the offer receives none of the live stream's media".into(),
        ));
    }
    Ok(plan)
}

/// Normalizes an answer for WHIP/WHEP clients: CRLF line endings (OBS splits on them) and
/// `a=rtcp-mux-only` on every bundled RTP m-line (RFC 9725 §4.4.1).
pub fn finish_answer(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.lines() {
        let line = line.trim_end_matches('\r');
        if line == "a=rtcp-mux-only" {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
        if line == "a=rtcp-mux" {
            out.push_str("a=rtcp-mux-only\r\n");
        }
    }
    out
}

/// A parsed `application/trickle-ice-sdpfrag` body (RFC 8840).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IceFragment {
    /// `a=ice-ufrag`, if present.
    pub ufrag: Option<String>,
    /// `a=ice-pwd`, if present.
    pub pwd: Option<String>,
    /// `a=candidate` values (without the `a=` prefix).
    pub candidates: Vec<String>,
    /// `a=end-of-candidates` seen.
    pub end: bool,
}

impl IceFragment {
    /// Parses a fragment; only structural garbage is an error.
    pub fn parse(body: &str) -> Result<Self, PolicyError> {
        let mut f = IceFragment::default();
        let mut any = false;
        for raw in body.lines() {
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let Some((key, rest)) = line.split_once('=') else {
                return Err(PolicyError::Malformed(format!("not an SDP line: {line}")));
            };
            if key.len() != 1 {
                return Err(PolicyError::Malformed(format!("not an SDP line: {line}")));
            }
            any = true;
            if key != "a" {
                continue;
            }
            let (name, value) = rest.split_once(':').unwrap_or((rest, ""));
            match name {
                "ice-ufrag" => f.ufrag = Some(value.to_string()),
                "ice-pwd" => f.pwd = Some(value.to_string()),
                "candidate" => f.candidates.push(format!("candidate:{value}")),
                "end-of-candidates" => f.end = true,
                _ => {}
            }
        }
        if !any {
            return Err(PolicyError::Malformed("empty fragment".into()));
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_gets_rtcp_mux_only_and_crlf() {
        let a = finish_answer("v=0\nm=audio 9 UDP/TLS/RTP/SAVPF 111\na=rtcp-mux\na=mid:0\n");
        assert_eq!(
            a,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtcp-mux\r\na=rtcp-mux-only\r\na=mid:0\r\n"
        );
    }

    #[test]
    fn keyframe_request_kind_follows_the_offered_feedback() {
        let offer = |fb: &str| {
            format!(
                "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n{fb}"
            )
        };
        let plan =
            |fb: &str| publisher_plan(&Offer::parse(&offer(fb)).expect("parses")).expect("plan");
        assert!(plan("a=rtcp-fb:96 ccm fir\r\n").fir_only);
        assert!(!plan("a=rtcp-fb:96 ccm fir\r\na=rtcp-fb:96 nack pli\r\n").fir_only);
        assert!(!plan("a=rtcp-fb:96 nack pli\r\n").fir_only);
        assert!(!plan("").fir_only);
    }

    #[test]
    fn fragment_parsing() {
        let f = IceFragment::parse(
            "a=ice-options:trickle ice2\r\nm=audio 9 RTP/AVP 0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:secret\r\na=candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n",
        )
        .expect("parses");
        assert_eq!(f.ufrag.as_deref(), Some("abcd"));
        assert_eq!(f.candidates.len(), 1);
        assert!(f.end);
        assert!(IceFragment::parse("garbage").is_err());
        assert!(IceFragment::parse("").is_err());
    }
}
