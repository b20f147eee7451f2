//! Just enough STUN parsing to route a datagram to its peer before any `Rtc` sees it.

/// The local (server) ICE ufrag named by a STUN binding request's USERNAME (`server:client`).
pub fn server_ufrag(buf: &[u8]) -> Option<&str> {
    const HEADER: usize = 20;
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    if buf.len() < HEADER || buf[0] & 0xc0 != 0 || buf[4..8] != MAGIC {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let body = buf.get(HEADER..HEADER + len)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[i], body[i + 1]]);
        let alen = u16::from_be_bytes([body[i + 2], body[i + 3]]) as usize;
        let value = body.get(i + 4..i + 4 + alen)?;
        if typ == USERNAME {
            let s = std::str::from_utf8(value).ok()?;
            return s.split(':').next();
        }
        i += 4 + alen.div_ceil(4) * 4;
    }
    None
}

/// Whether the datagram is STUN (RFC 7983 demultiplexing: first byte 0..=3).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.first().is_some_and(|b| *b < 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // A PRIORITY attribute first, then USERNAME with padding.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn finds_server_ufrag() {
        assert_eq!(server_ufrag(&binding("srv1:cli")), Some("srv1"));
        assert_eq!(server_ufrag(&binding("abcde:x")), Some("abcde"));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(server_ufrag(&[]), None);
        assert_eq!(server_ufrag(&[0u8; 19]), None);
        let mut m = binding("a:b");
        m[4] = 0;
        assert_eq!(server_ufrag(&m), None);
        let mut m = binding("a:b");
        m.truncate(26); // attribute cut short
        assert_eq!(server_ufrag(&m), None);
        assert!(is_stun(&binding("a:b")));
        assert!(!is_stun(&[0x80, 0x60]));
    }
}
