// Reads the frame stamp the loadtest pattern (loadtest/src/client/pattern.rs) paints into each
// picture: 3 rows of 40 black/white blocks at the top (block edge = width / 40), one bit per
// block, MSB first = sync byte 0xa5, u32 frame index, u64 microseconds since the UNIX epoch,
// CRC-16/CCITT-FALSE over the first 13 bytes (all big-endian). Only the inner half of each block
// is averaged (the encoder's ringing lives at the edges).
//
// A plain script (no modules): load it with page.addScriptTag({ path }) or evaluate its text, then
// window.onairReadStamp(video, canvas, ctx) returns { index, us } or null (too small, no sync
// byte or a bad checksum). ctx should come from canvas.getContext('2d', { willReadFrequently: true }).
(() => {
  const crc16 = (bytes) => {
    let crc = 0xffff;
    for (const b of bytes) {
      crc ^= b << 8;
      for (let i = 0; i < 8; i++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
  };

  window.onairReadStamp = (video, canvas, ctx) => {
    const w = video.videoWidth, h = video.videoHeight;
    const b = Math.floor(w / 40);
    if (b < 4) return null;
    canvas.width = w; canvas.height = b * 3;
    ctx.drawImage(video, 0, 0, w, h, 0, 0, w, h);
    const img = ctx.getImageData(0, 0, w, b * 3).data;
    const bytes = new Uint8Array(15);
    for (let bit = 0; bit < 120; bit++) {
      const col = bit % 40, row = Math.floor(bit / 40);
      const m = Math.floor(b / 4);
      let sum = 0, n = 0;
      for (let y = row * b + m; y < (row + 1) * b - m; y++) {
        for (let x = col * b + m; x < (col + 1) * b - m; x++) {
          const i = (y * w + x) * 4;
          sum += 0.299 * img[i] + 0.587 * img[i + 1] + 0.114 * img[i + 2];
          n++;
        }
      }
      if (sum / n > 128) bytes[bit >> 3] |= 0x80 >> (bit & 7);
    }
    if (bytes[0] !== 0xa5) return null;
    if (crc16(bytes.subarray(0, 13)) !== ((bytes[13] << 8) | bytes[14])) return null;
    const dv = new DataView(bytes.buffer);
    return { index: dv.getUint32(1), us: Number(dv.getBigUint64(5)) };
  };
})();
