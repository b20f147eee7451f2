//! The multivariant playlist of a ladder: audio renditions as `EXT-X-MEDIA` groups and video
//! variants as `EXT-X-STREAM-INF` (rfc8216bis §4.4.6).
//!
//! Audio codecs live in separate groups (e.g. `aac` and `opus`) and a video rendition is listed
//! once per group: a variant's `CODECS` must name every codec of its audio group (§6.2.4), so
//! mixing Opus into the AAC group would make TVs without Opus reject the whole variant.

use std::fmt::Write;

use super::clean;

/// One audio rendition (`EXT-X-MEDIA:TYPE=AUDIO`) with its own media playlist.
#[derive(Clone, Debug, PartialEq)]
pub struct AudioRendition {
    /// `GROUP-ID`; variants refer to it with [`VideoVariant::audio_group`].
    pub group_id: String,
    /// `NAME`, shown to viewers; unique within the group.
    pub name: String,
    /// `LANGUAGE` (RFC 5646 tag), if known.
    pub language: Option<String>,
    /// `CHANNELS`, the number of audio channels.
    pub channels: u32,
    /// RFC 6381 codec of the rendition, e.g. `mp4a.40.2` or `opus`.
    pub codecs: String,
    /// `DEFAULT=YES` (at most one per group); implies `AUTOSELECT=YES`.
    pub default: bool,
    /// `AUTOSELECT=YES`.
    pub autoselect: bool,
    /// Peak segment bitrate in bits/s, added to the variants' `BANDWIDTH`.
    pub peak_bandwidth: u64,
    /// Average bitrate in bits/s, added to the variants' `AVERAGE-BANDWIDTH`.
    pub average_bandwidth: Option<u64>,
    /// Media playlist URI, relative to the multivariant playlist.
    pub uri: String,
}

/// One video variant (`EXT-X-STREAM-INF`).
#[derive(Clone, Debug, PartialEq)]
pub struct VideoVariant {
    /// Media playlist URI, relative to the multivariant playlist.
    pub uri: String,
    /// RFC 6381 codec(s) of the video alone, e.g. `avc1.64001f`; audio codecs are added from
    /// the group.
    pub codecs: String,
    /// Peak segment bitrate of the video alone, in bits/s.
    pub peak_bandwidth: u64,
    /// Average bitrate of the video alone, in bits/s.
    pub average_bandwidth: Option<u64>,
    /// `RESOLUTION` as (width, height).
    pub resolution: Option<(u32, u32)>,
    /// `FRAME-RATE`, printed with 3 decimals.
    pub frame_rate: Option<f64>,
    /// `AUDIO` group the variant plays with, if any.
    pub audio_group: Option<String>,
}

/// A ladder to render as a multivariant playlist; order matters, since players start with the
/// first variant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MultivariantPlaylist {
    /// Audio renditions, in `EXT-X-MEDIA` order.
    pub audio: Vec<AudioRendition>,
    /// Video variants, in `EXT-X-STREAM-INF` order.
    pub variants: Vec<VideoVariant>,
}

/// A ladder description that would produce an invalid multivariant playlist.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MultivariantError {
    /// A variant names an audio group with no rendition.
    #[error("audio group {0:?} has no rendition")]
    UnknownAudioGroup(String),
    /// A group has more than one `DEFAULT=YES` member (§4.4.6.1.1).
    #[error("audio group {0:?} has more than one default rendition")]
    SeveralDefaults(String),
    /// There is nothing to play.
    #[error("the ladder has no variant")]
    NoVariants,
}

impl MultivariantPlaylist {
    /// The playlist text, with `uri_suffix` (e.g. `?token=…`) appended to every URI.
    pub fn render(&self, uri_suffix: &str) -> Result<String, MultivariantError> {
        if self.variants.is_empty() {
            return Err(MultivariantError::NoVariants);
        }
        for (i, a) in self.audio.iter().enumerate() {
            let earlier_default = self.audio[..i]
                .iter()
                .any(|b| b.default && b.group_id == a.group_id);
            if a.default && earlier_default {
                return Err(MultivariantError::SeveralDefaults(a.group_id.clone()));
            }
        }
        let suffix = clean(uri_suffix);
        let mut out = String::with_capacity(256 * (self.audio.len() + self.variants.len()));
        out.push_str("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");

        for a in &self.audio {
            let _ = write!(
                out,
                "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\"",
                clean(&a.group_id),
                clean(&a.name)
            );
            if let Some(lang) = &a.language {
                let _ = write!(out, ",LANGUAGE=\"{}\"", clean(lang));
            }
            if a.default {
                out.push_str(",DEFAULT=YES");
            }
            // DEFAULT=YES requires AUTOSELECT=YES (§4.4.6.1).
            if a.autoselect || a.default {
                out.push_str(",AUTOSELECT=YES");
            }
            let _ = writeln!(
                out,
                ",CHANNELS=\"{}\",URI=\"{}{suffix}\"",
                a.channels,
                clean(&a.uri)
            );
        }

        for v in &self.variants {
            let group: Vec<&AudioRendition> = match &v.audio_group {
                Some(g) => {
                    let members: Vec<_> = self.audio.iter().filter(|a| &a.group_id == g).collect();
                    if members.is_empty() {
                        return Err(MultivariantError::UnknownAudioGroup(g.clone()));
                    }
                    members
                }
                None => Vec::new(),
            };
            // BANDWIDTH is the peak of the heaviest playable combination (§4.4.6.2).
            let peak = v.peak_bandwidth + group.iter().map(|a| a.peak_bandwidth).max().unwrap_or(0);
            let average = v.average_bandwidth.and_then(|video| {
                group
                    .iter()
                    .map(|a| a.average_bandwidth)
                    .try_fold(0, |max, a| a.map(|a| a.max(max)))
                    .map(|audio| video + audio)
            });
            let mut codecs: Vec<&str> = Vec::new();
            for c in std::iter::once(v.codecs.as_str())
                .chain(group.iter().map(|a| a.codecs.as_str()))
                .flat_map(|list| list.split(','))
                .map(str::trim)
                .filter(|c| !c.is_empty())
            {
                if !codecs.contains(&c) {
                    codecs.push(c);
                }
            }

            let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={peak}");
            if let Some(average) = average {
                let _ = write!(out, ",AVERAGE-BANDWIDTH={average}");
            }
            let _ = write!(out, ",CODECS=\"{}\"", clean(&codecs.join(",")));
            if let Some((w, h)) = v.resolution {
                let _ = write!(out, ",RESOLUTION={w}x{h}");
            }
            if let Some(fps) = v.frame_rate {
                let _ = write!(out, ",FRAME-RATE={fps:.3}");
            }
            if let Some(g) = &v.audio_group {
                let _ = write!(out, ",AUDIO=\"{}\"", clean(g));
            }
            // Without it, some players assume captions may be present in the video.
            out.push_str(",CLOSED-CAPTIONS=NONE\n");
            let _ = writeln!(out, "{}{suffix}", clean(&v.uri));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(group: &str, codecs: &str, peak: u64, average: u64) -> AudioRendition {
        AudioRendition {
            group_id: group.into(),
            name: "English".into(),
            language: Some("en".into()),
            channels: 2,
            codecs: codecs.into(),
            default: true,
            autoselect: true,
            peak_bandwidth: peak,
            average_bandwidth: Some(average),
            uri: format!("audio_{group}/index.m3u8"),
        }
    }

    fn video(name: &str, codecs: &str, group: &str, peak: u64, average: u64) -> VideoVariant {
        let (w, h) = if name == "720p" {
            (1280, 720)
        } else {
            (640, 360)
        };
        VideoVariant {
            uri: format!("{name}/index.m3u8"),
            codecs: codecs.into(),
            peak_bandwidth: peak,
            average_bandwidth: Some(average),
            resolution: Some((w, h)),
            frame_rate: Some(30.0),
            audio_group: Some(group.into()),
        }
    }

    fn ladder() -> MultivariantPlaylist {
        MultivariantPlaylist {
            audio: vec![
                audio("aac", "mp4a.40.2", 130_000, 128_000),
                audio("opus", "opus", 100_000, 96_000),
            ],
            variants: vec![
                video("720p", "avc1.64001f", "aac", 2_500_000, 2_000_000),
                video("360p", "avc1.42e01e", "aac", 800_000, 600_000),
                video("720p", "avc1.64001f", "opus", 2_500_000, 2_000_000),
                video("360p", "avc1.42e01e", "opus", 800_000, 600_000),
            ],
        }
    }

    #[test]
    fn playlist_multivariant_exact_text() {
        let text = ladder().render("?token=abc").unwrap();
        let expected = [
            "#EXTM3U",
            "#EXT-X-INDEPENDENT-SEGMENTS",
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio_aac/index.m3u8?token=abc\"",
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"opus\",NAME=\"English\",LANGUAGE=\"en\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\",URI=\"audio_opus/index.m3u8?token=abc\"",
            "#EXT-X-STREAM-INF:BANDWIDTH=2630000,AVERAGE-BANDWIDTH=2128000,CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"aac\",CLOSED-CAPTIONS=NONE",
            "720p/index.m3u8?token=abc",
            "#EXT-X-STREAM-INF:BANDWIDTH=930000,AVERAGE-BANDWIDTH=728000,CODECS=\"avc1.42e01e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"aac\",CLOSED-CAPTIONS=NONE",
            "360p/index.m3u8?token=abc",
            "#EXT-X-STREAM-INF:BANDWIDTH=2600000,AVERAGE-BANDWIDTH=2096000,CODECS=\"avc1.64001f,opus\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"opus\",CLOSED-CAPTIONS=NONE",
            "720p/index.m3u8?token=abc",
            "#EXT-X-STREAM-INF:BANDWIDTH=900000,AVERAGE-BANDWIDTH=696000,CODECS=\"avc1.42e01e,opus\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"opus\",CLOSED-CAPTIONS=NONE",
            "360p/index.m3u8?token=abc",
        ];
        let lines: Vec<&str> = text.lines().collect();
        for (i, (a, e)) in lines.iter().zip(expected.iter()).enumerate() {
            assert_eq!(a, e, "line {} differs in:\n{text}", i + 1);
        }
        assert_eq!(lines.len(), expected.len(), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn playlist_multivariant_without_audio_group_or_extras() {
        let pl = MultivariantPlaylist {
            audio: vec![],
            variants: vec![VideoVariant {
                uri: "source/index.m3u8".into(),
                codecs: "avc1.640028,mp4a.40.2".into(),
                peak_bandwidth: 4_000_000,
                average_bandwidth: None,
                resolution: None,
                frame_rate: Some(29.97),
                audio_group: None,
            }],
        };
        assert_eq!(
            pl.render("").unwrap(),
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=4000000,CODECS=\"avc1.640028,mp4a.40.2\",FRAME-RATE=29.970,CLOSED-CAPTIONS=NONE\n\
             source/index.m3u8\n"
        );
    }

    #[test]
    fn playlist_multivariant_group_codecs_and_bandwidth_cover_every_member() {
        let mut pl = ladder();
        let mut second = audio("aac", "mp4a.40.5", 200_000, 64_000);
        second.default = false;
        second.autoselect = false;
        second.name = "Commentary".into();
        second.language = None;
        pl.audio.push(second);
        let text = pl.render("").unwrap();
        assert!(text.contains(
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"Commentary\",CHANNELS=\"2\",URI=\"audio_aac/index.m3u8\"\n"
        ));
        assert!(text.contains(
            "#EXT-X-STREAM-INF:BANDWIDTH=2700000,AVERAGE-BANDWIDTH=2128000,CODECS=\"avc1.64001f,mp4a.40.2,mp4a.40.5\","
        ));
    }

    #[test]
    fn playlist_multivariant_rejects_invalid_ladders() {
        assert_eq!(
            MultivariantPlaylist::default().render(""),
            Err(MultivariantError::NoVariants)
        );
        let mut pl = ladder();
        pl.variants[0].audio_group = Some("ac3".into());
        assert_eq!(
            pl.render(""),
            Err(MultivariantError::UnknownAudioGroup("ac3".into()))
        );
        let mut pl = ladder();
        pl.audio.push(audio("aac", "mp4a.40.2", 1, 1));
        assert_eq!(
            pl.render(""),
            Err(MultivariantError::SeveralDefaults("aac".into()))
        );
    }

    #[test]
    fn playlist_multivariant_sanitizes_names() {
        let mut pl = ladder();
        pl.audio[0].name = "Eng\"lish\n#EXT-X-ENDLIST".into();
        let text = pl.render("").unwrap();
        assert!(text.contains("NAME=\"English#EXT-X-ENDLIST\""));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("#EXT-X-ENDLIST"))
                .count(),
            0
        );
    }
}
