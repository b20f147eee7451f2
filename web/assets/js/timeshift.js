// Client-side time shift for a live WebRTC stream: the received stream is recorded
// continuously (MediaRecorder, WebM) into IndexedDB in short self-contained segments, so a
// viewer can pause (the stream keeps arriving and is recorded), resume from the paused moment,
// rewind a few seconds, and jump back to live. Playback of the recording uses Media Source
// Extensions, appending segments in order as they are recorded.

const DB = 'onair-timeshift';
const STORE = 'chunks';
const SEGMENT_MS = 30000; // a new recorder (own WebM header) every 30 s
const CHUNK_MS = 500; // MediaRecorder timeslice: the recording lags live by about this much
const KEEP_MS = 45000; // unpinned history kept for rewinding

function openDb() {
  return new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE, { keyPath: ['seg', 'seq'] });
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

function tx(db, mode, f) {
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    const out = f(t.objectStore(STORE));
    t.oncomplete = () => resolve(out && 'result' in out ? out.result : undefined);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error);
  });
}

export function pickMime() {
  for (const m of ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm']) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(m) && window.MediaSource && MediaSource.isTypeSupported(m)) return m;
  }
  return null;
}

export class TimeShift extends EventTarget {
  constructor() {
    super();
    this.mime = pickMime();
    this.segments = []; // {id, t0, chunks: [{seq, t, size}], done}
    this.nextSeg = Date.now();
    this.pins = new Set(); // wall times that must stay recorded (pause point, playback position)
    this.db = null;
    this.stream = null;
    this.recorder = null;
  }

  get supported() { return !!this.mime && !!window.indexedDB; }

  // The oldest moment that can be replayed (performance.now() time), or null.
  get earliest() {
    const s = this.segments.find((x) => x.chunks.length);
    return s ? s.t0 : null;
  }

  async attach(stream) {
    if (!this.supported || this.stream === stream) return;
    this.detach();
    this.stream = stream;
    if (!this.db) {
      this.db = await openDb();
      // A previous visit's recording is of no use now.
      await tx(this.db, 'readwrite', (st) => st.clear());
    }
    this.startSegment();
    this.rotateTimer = setInterval(() => this.startSegment(), SEGMENT_MS);
  }

  detach() {
    clearInterval(this.rotateTimer);
    if (this.recorder && this.recorder.state !== 'inactive') this.recorder.stop();
    this.recorder = null;
    this.stream = null;
  }

  startSegment() {
    if (!this.stream || !this.stream.getVideoTracks().some((t) => t.readyState === 'live')) return;
    const prev = this.recorder;
    const seg = { id: this.nextSeg++, t0: performance.now(), chunks: [], done: false, bytes: 0 };
    let rec;
    try {
      rec = new MediaRecorder(this.stream, { mimeType: this.mime, videoBitsPerSecond: 2_500_000, audioBitsPerSecond: 96_000 });
    } catch (e) {
      console.warn('time shift unavailable', e);
      return;
    }
    let seq = 0;
    rec.ondataavailable = async (ev) => {
      if (!ev.data || !ev.data.size) return;
      const chunk = { seg: seg.id, seq: seq++, t: performance.now(), blob: ev.data };
      try {
        await tx(this.db, 'readwrite', (st) => st.put(chunk));
      } catch (e) {
        console.warn('time shift: storing a chunk failed', e);
        return;
      }
      seg.chunks.push({ seq: chunk.seq, t: chunk.t, size: ev.data.size });
      seg.bytes += ev.data.size;
      this.dispatchEvent(new CustomEvent('chunk', { detail: seg }));
    };
    rec.onstop = () => { seg.done = true; this.dispatchEvent(new CustomEvent('chunk', { detail: seg })); };
    rec.onstart = () => { seg.t0 = performance.now(); };
    rec.start(CHUNK_MS);
    this.recorder = rec;
    this.segments.push(seg);
    // Stop the previous recorder only once this one runs, so there is no hole between them.
    if (prev && prev.state !== 'inactive') setTimeout(() => prev.state !== 'inactive' && prev.stop(), 50);
    this.prune();
  }

  pin(t) { this.pins.add(t); return () => { this.pins.delete(t); this.prune(); }; }

  async prune() {
    const now = performance.now();
    const oldestPin = Math.min(...this.pins, Infinity);
    const keepFrom = Math.min(now - KEEP_MS, oldestPin);
    // A segment can go once the next one starts before the window we keep.
    while (this.segments.length > 1 && this.segments[1].t0 <= keepFrom && this.segments[0].done) {
      const s = this.segments.shift();
      try {
        await tx(this.db, 'readwrite', (st) => st.delete(IDBKeyRange.bound([s.id, 0], [s.id, Infinity])));
      } catch { /* best effort */ }
    }
  }

  async readChunk(seg, seq) {
    return tx(this.db, 'readonly', (st) => st.get([seg.id, seq])).then((c) => c && c.blob);
  }

  // Bytes recorded and kept (for the UI).
  get bytes() { return this.segments.reduce((a, s) => a + s.bytes, 0); }

  // Plays the recording into `video` starting at wall time `from` (performance.now() time).
  // Returns a controller: {ready, stop(), contentTime() -> wall time of the frame shown}.
  //
  // Media time and wall time are tied by measurement, not by assuming the recording starts
  // when the recorder does: after each appended chunk, the buffered end (media time) is paired
  // with the moment the chunk was recorded. Segments are appended back to back.
  play(video, from) {
    const segIndex = Math.max(0, this.segments.findLastIndex((s) => s.t0 <= from));
    const base = this.segments[segIndex];
    if (!base) throw new Error('nothing recorded yet');
    const ms = new MediaSource();
    const url = URL.createObjectURL(ms);
    const unpin = this.pin(from);
    let stopped = false;
    let cursor = { seg: base, seq: 0 };
    let sb = null;
    let pumping = false;
    const marks = []; // {t: wall time recorded, end: buffered end in media time}
    const onChunk = () => pump();
    // A chunk is handed over some time after its last frame was captured, so each mark's
    // `t - end` overstates the wall time of media 0; the smallest nearby value is the best
    // estimate (nearby: the recorder's clock may drift from ours over minutes).
    const offsetNear = (pick) => {
      const near = marks.filter(pick);
      const use = near.length ? near : marks;
      return use.length ? Math.min(...use.map((x) => x.t - x.end * 1000)) : from;
    };
    const wallToMedia = (w) => (w - offsetNear((x) => Math.abs(x.t - w) < 6000)) / 1000;
    const mediaToWall = (t) => offsetNear((x) => Math.abs(x.end - t) < 6) + t * 1000;
    const ctl = {
      base,
      stop: () => {
        stopped = true;
        this.removeEventListener('chunk', onChunk);
        unpin();
        clearInterval(trim);
        video.removeAttribute('src');
        video.load();
        URL.revokeObjectURL(url);
      },
      contentTime: () => mediaToWall(video.currentTime),
    };
    const appendBlob = async (blob) => {
      const buf = await blob.arrayBuffer();
      if (stopped) return;
      await new Promise((resolve, reject) => {
        sb.addEventListener('updateend', resolve, { once: true });
        sb.addEventListener('error', reject, { once: true });
        sb.appendBuffer(buf);
      });
    };
    const pump = async () => {
      if (pumping || stopped || !sb) return;
      pumping = true;
      try {
        for (;;) {
          const seg = cursor.seg;
          if (cursor.seq < seg.chunks.length) {
            const meta = seg.chunks[cursor.seq];
            const blob = await this.readChunk(seg, meta.seq);
            if (stopped) return;
            if (blob) {
              await appendBlob(blob);
              if (stopped) return;
              const b = sb.buffered;
              if (b.length) marks.push({ t: meta.t, end: b.end(b.length - 1) });
            }
            cursor.seq++;
            continue;
          }
          const next = this.segments[this.segments.indexOf(seg) + 1];
          if (seg.done && next) {
            // Each recorder's WebM starts near 0: continue where the previous one ended.
            const b = sb.buffered;
            if (b.length) sb.timestampOffset = b.end(b.length - 1);
            cursor = { seg: next, seq: 0 };
            continue;
          }
          break;
        }
      } catch (e) {
        if (!stopped) this.dispatchEvent(new CustomEvent('error', { detail: e }));
      } finally {
        pumping = false;
      }
    };
    // Keep the MSE buffer small: drop what is more than 20 s behind the playhead.
    const trim = setInterval(() => {
      if (!sb || sb.updating || stopped) return;
      const end = video.currentTime - 20;
      if (end > 1) { try { sb.remove(0, end); } catch { /* next time */ } }
    }, 5000);
    // Resolves once the element shows the frame at `from` (everything up to now is appended
    // and the seek is done), so the caller can reveal it without a flash of older frames.
    ctl.ready = new Promise((resolve, reject) => {
      ms.addEventListener('sourceopen', async () => {
        try {
          sb = ms.addSourceBuffer(this.mime);
          sb.mode = 'segments';
          this.addEventListener('chunk', onChunk);
          await pump();
          if (stopped) return;
          const start = sb.buffered.length ? sb.buffered.start(0) : 0;
          const seeked = new Promise((r) => video.addEventListener('seeked', r, { once: true }));
          video.currentTime = Math.max(start, wallToMedia(from));
          await seeked;
          resolve();
        } catch (e) {
          reject(e);
        }
      }, { once: true });
    });
    video.srcObject = null;
    video.src = url;
    return ctl;
  }
}
