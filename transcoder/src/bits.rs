//! Bit-level readers shared by the H.264 and AV1 header parsers. Every read returns `None` past
//! the end instead of panicking.

/// MSB-first bit reader.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(crate) fn flag(&mut self) -> Option<bool> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// `n` bits (at most 32) as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Option<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.flag()?);
        }
        u32::try_from(v).ok()
    }

    pub(crate) fn skip(&mut self, n: u32) -> Option<()> {
        let pos = self.pos.checked_add(usize::try_from(n).ok()?)?;
        if pos > self.data.len() * 8 {
            return None;
        }
        self.pos = pos;
        Some(())
    }

    /// H.264 ue(v): unsigned Exp-Golomb.
    pub(crate) fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while !self.flag()? {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }

    /// H.264 se(v): signed Exp-Golomb.
    pub(crate) fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }

    /// AV1 uvlc().
    pub(crate) fn uvlc(&mut self) -> Option<u32> {
        let mut zeros = 0u32;
        while !self.flag()? {
            zeros += 1;
        }
        if zeros >= 32 {
            return Some(u32::MAX);
        }
        let rest = u64::from(self.bits(zeros)?);
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    }
}

/// AV1 leb128(): returns the value and the number of bytes it took.
pub(crate) fn read_leb128(data: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, &byte) in data.iter().take(8).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // The AV1 spec caps leb128 values at 2^32 - 1.
            let value = u32::try_from(value).ok()?;
            return Some((usize::try_from(value).ok()?, i + 1));
        }
    }
    None
}

/// Appends `value` as leb128 in as few bytes as possible.
pub(crate) fn write_leb128(out: &mut Vec<u8>, mut value: usize) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Removes H.264 emulation-prevention bytes (`00 00 03` -> `00 00`) to get the RBSP.
pub(crate) fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0, 1, 2, 3; then se of 4 = -2.
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data);
        assert_eq!(r.ue(), Some(0));
        assert_eq!(r.ue(), Some(1));
        assert_eq!(r.ue(), Some(2));
        assert_eq!(r.ue(), Some(3));
        assert_eq!(r.se(), Some(-2));
        assert_eq!(BitReader::new(&[0, 0, 0, 0, 0]).ue(), None);
    }

    #[test]
    fn leb128_round_trip() {
        for v in [0usize, 1, 127, 128, 300, 16_383, 16_384, 1 << 28] {
            let mut buf = Vec::new();
            write_leb128(&mut buf, v);
            assert_eq!(read_leb128(&buf), Some((v, buf.len())));
        }
        assert_eq!(read_leb128(&[0x80; 9]), None);
        assert_eq!(read_leb128(&[0x80]), None);
    }

    #[test]
    fn rbsp_unescape() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }
}
