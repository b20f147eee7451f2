//! Test input for the decoders: a short ffmpeg test pattern encoded at test time, read back
//! frame by frame from IVF (nothing binary is kept in the repository).

/// The frames of `frames` pictures of ffmpeg's `testsrc2` at `w`x`h`, encoded with
/// `encoder` (the `-c:v ...` arguments and their options) into IVF; `None` when this ffmpeg
/// lacks the encoder.
pub(crate) fn ffmpeg_ivf_frames(
    w: u32,
    h: u32,
    frames: u32,
    encoder: &[&str],
) -> Option<Vec<Vec<u8>>> {
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("a.ivf");
    let ok = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={w}x{h}:rate=30"))
        .args(["-frames:v", &frames.to_string()])
        .args(encoder)
        .args(["-y"])
        .arg(&path)
        .status()
        .ok()?
        .success();
    if !ok {
        return None;
    }
    let ivf = std::fs::read(&path).ok()?;
    let header_len = usize::from(u16::from_le_bytes([*ivf.get(6)?, *ivf.get(7)?]));
    let mut rest = ivf.get(header_len..)?;
    let mut out = Vec::new();
    while rest.len() >= 12 {
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        out.push(rest.get(12..12 + len)?.to_vec());
        rest = &rest[12 + len..];
    }
    Some(out)
}
