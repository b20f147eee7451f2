//! VP8 payload-descriptor continuity (RFC 7741 §4.2): when a viewer's source changes (simulcast
//! switch, new publisher) PictureID and TL0PICIDX must keep counting from where the viewer was,
//! or its decoder sees a jump and asks for keyframes or drops frames. Sans-IO.

/// The descriptor fields we rewrite, as read from a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Fields {
    /// PictureID and whether it is the 15-bit form.
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX.
    pub tl0: Option<u8>,
}

impl Vp8Fields {
    /// Reads PictureID and TL0PICIDX from a VP8 payload descriptor.
    pub fn parse(p: &[u8]) -> Option<Self> {
        let b0 = *p.first()?;
        let mut f = Vp8Fields::default();
        if b0 & 0x80 == 0 {
            return Some(f);
        }
        let x = *p.get(1)?;
        let mut i = 2;
        if x & 0x80 != 0 {
            let m = *p.get(i)?;
            if m & 0x80 != 0 {
                let lo = *p.get(i + 1)?;
                f.picture_id = Some(((((m & 0x7f) as u16) << 8) | lo as u16, true));
                i += 2;
            } else {
                f.picture_id = Some((m as u16, false));
                i += 1;
            }
        }
        if x & 0x40 != 0 {
            f.tl0 = Some(*p.get(i)?);
        }
        Some(f)
    }
}

/// Rewritten values for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp8Rewrite {
    /// New PictureID (same width as the packet's).
    pub picture_id: Option<u16>,
    /// New TL0PICIDX.
    pub tl0: Option<u8>,
}

/// Keeps one viewer's PictureID/TL0PICIDX sequence continuous across source changes.
#[derive(Debug, Default)]
pub struct Vp8Munger {
    pid_off: u16,
    tl0_off: u8,
    last_pid: Option<u16>,
    last_tl0: Option<u8>,
}

fn modulus(fifteen: bool) -> u16 {
    if fifteen { 1 << 15 } else { 1 << 7 }
}

impl Vp8Munger {
    /// Starts a new source at `f` (a keyframe): its first picture follows our last one.
    pub fn switch_source(&mut self, f: &Vp8Fields) {
        if let (Some((pid, wide)), Some(last)) = (f.picture_id, self.last_pid) {
            let m = modulus(wide);
            self.pid_off = (last.wrapping_add(1) % m).wrapping_sub(pid).wrapping_add(m) % m;
        }
        if let (Some(t), Some(last)) = (f.tl0, self.last_tl0) {
            self.tl0_off = last.wrapping_add(1).wrapping_sub(t);
        }
    }

    /// The rewritten fields of a packet of the current source.
    pub fn rewrite(&mut self, f: &Vp8Fields) -> Vp8Rewrite {
        let picture_id = f.picture_id.map(|(pid, wide)| {
            let m = modulus(wide);
            (pid.wrapping_add(self.pid_off)) % m
        });
        let tl0 = f.tl0.map(|t| t.wrapping_add(self.tl0_off));
        if picture_id.is_some() {
            self.last_pid = picture_id;
        }
        if tl0.is_some() {
            self.last_tl0 = tl0;
        }
        Vp8Rewrite { picture_id, tl0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(pid: u16, tl0: u8) -> Vec<u8> {
        vec![0x90, 0xc0, 0x80 | (pid >> 8) as u8, pid as u8, tl0, 0x00]
    }

    #[test]
    fn parses_fields() {
        assert_eq!(
            Vp8Fields::parse(&desc(300, 7)),
            Some(Vp8Fields {
                picture_id: Some((300, true)),
                tl0: Some(7)
            })
        );
        assert_eq!(
            Vp8Fields::parse(&[0x90, 0x80, 0x05, 0x00]),
            Some(Vp8Fields {
                picture_id: Some((5, false)),
                tl0: None
            })
        );
        assert_eq!(Vp8Fields::parse(&[0x10, 0x00]), Some(Vp8Fields::default()));
        assert_eq!(Vp8Fields::parse(&[0x90]), None);
        assert_eq!(Vp8Fields::parse(&[0x90, 0xc0, 0x80]), None);
    }

    #[test]
    fn continuous_across_switch_and_wrap() {
        let mut m = Vp8Munger::default();
        let a = Vp8Fields::parse(&desc(32_766, 250)).expect("parse");
        m.switch_source(&a);
        assert_eq!(
            m.rewrite(&a),
            Vp8Rewrite {
                picture_id: Some(32_766),
                tl0: Some(250)
            }
        );
        let a2 = Vp8Fields::parse(&desc(32_767, 251)).expect("parse");
        assert_eq!(m.rewrite(&a2).picture_id, Some(32_767));
        // New layer with unrelated counters: continues at 0 (15-bit wrap) and 252.
        let b = Vp8Fields::parse(&desc(1000, 3)).expect("parse");
        m.switch_source(&b);
        assert_eq!(
            m.rewrite(&b),
            Vp8Rewrite {
                picture_id: Some(0),
                tl0: Some(252)
            }
        );
        let b2 = Vp8Fields::parse(&desc(1001, 4)).expect("parse");
        assert_eq!(
            m.rewrite(&b2),
            Vp8Rewrite {
                picture_id: Some(1),
                tl0: Some(253)
            }
        );
        // 7-bit ids wrap at 128.
        let mut m = Vp8Munger::default();
        let c = Vp8Fields {
            picture_id: Some((127, false)),
            tl0: None,
        };
        m.switch_source(&c);
        assert_eq!(m.rewrite(&c).picture_id, Some(127));
        let d = Vp8Fields {
            picture_id: Some((40, false)),
            tl0: None,
        };
        m.switch_source(&d);
        assert_eq!(m.rewrite(&d).picture_id, Some(0));
    }
}
