//! Construction of str0m `Rtc` instances with our policy: ICE-lite on one shared port, RTP mode,
//! exactly the codecs the signaling layer chose, a DTLS certificate generated once per process.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::bwe::Bitrate;
use str0m::config::DtlsCert;
use str0m::format::{Codec, CodecSpec};
use str0m::media::Pt;
use str0m::net::TcpType;
use str0m::{Candidate, IceCreds, Rtc, RtcConfig};

use crate::av1_dd;

/// One negotiated payload type: what the remote offered and we accept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PayloadChoice {
    /// Payload type number (the offerer's numbering).
    pub pt: u8,
    /// RTX payload type paired with it, if offered.
    pub rtx: Option<u8>,
    /// Codec, clock rate, channels and format parameters.
    pub spec: CodecSpec,
}

/// The codecs a session will use, one per kind: the SFU forwards untouched, so there is no
/// point negotiating codecs it would never send or receive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaPlan {
    /// Audio payload, if any.
    pub audio: Option<PayloadChoice>,
    /// Video payload, if any.
    pub video: Option<PayloadChoice>,
    /// The offer's audio m-line `a=mid`.
    pub audio_mid: Option<String>,
    /// The offer's video m-line `a=mid`.
    pub video_mid: Option<String>,
    /// Simulcast RIDs the offer sends, in offer order (empty: not simulcast).
    pub rids: Vec<String>,
    /// The offer's video accepts FIR but not PLI feedback: request keyframes with FIR.
    pub fir_only: bool,
}

/// Initial bandwidth estimate for viewers before TWCC feedback says otherwise.
pub const INITIAL_VIEWER_ESTIMATE: Bitrate = Bitrate::kbps(1_000);

/// Shared ingredients of every `Rtc` the SFU builds.
pub struct RtcFactory {
    cert: DtlsCert,
    candidates: Vec<Candidate>,
}

impl RtcFactory {
    /// Generates the process DTLS certificate and the host candidates (UDP, and passive ICE-TCP)
    /// for every advertised address on the media port.
    pub fn new(addrs: &[SocketAddr]) -> Result<Self, String> {
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| "could not generate the DTLS certificate".to_string())?;
        let mut candidates = Vec::new();
        for &addr in addrs {
            let udp = Candidate::host(addr, "udp").map_err(|e| e.to_string())?;
            candidates.push(udp);
            let tcp = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Passive)
                .build()
                .map_err(|e| e.to_string())?;
            candidates.push(tcp);
        }
        Ok(Self { cert, candidates })
    }

    /// A new `Rtc` for a publisher (`bwe = None`) or a viewer (`bwe` = its initial estimate)
    /// with `plan`'s codecs and fresh ICE credentials.
    pub fn build(&self, plan: &MediaPlan, bwe: Option<Bitrate>, now: Instant) -> (Rtc, IceCreds) {
        let creds = IceCreds::new();
        let mut cfg: RtcConfig = Rtc::builder()
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(creds.clone())
            .clear_codecs();
        for p in plan.audio.iter().chain(plan.video.iter()) {
            cfg.codec_config().add_config(
                Pt::from(p.pt),
                p.rtx.map(Pt::from),
                p.spec.codec,
                p.spec.clock_rate,
                p.spec.channels,
                p.spec.format,
            );
        }
        // AV1 only: we keep the descriptor's frame numbers continuous for AV1, and forwarding
        // another codec's descriptor unchanged across a layer switch would break receivers.
        if plan.video.is_some_and(|v| v.spec.codec == Codec::Av1) {
            cfg = cfg.set_extension(av1_dd::DD_EXTMAP_ID, av1_dd::extension());
        }
        if let Some(initial) = bwe {
            cfg = cfg.enable_bwe(Some(initial));
        }
        let mut rtc = cfg.build(now);
        for c in &self.candidates {
            rtc.add_local_candidate(c.clone());
        }
        (rtc, creds)
    }

    /// The host candidates every session advertises.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }
}
