//! What [`super::HeadDeadline`] needs to know of HTTP/2 framing (RFC 9113
//! §4.1), read from the bytes that pass: where a header block starts and
//! ends, and the server's first SETTINGS frame, which gains a
//! `SETTINGS_MAX_CONCURRENT_STREAMS`.
//!
//! actix-http builds its `h2` server with default settings and offers no way
//! to set that one (as of 3.20), so it is added on the wire; the server
//! enforces the same number on requests ([`super::StreamSlots`]), since a
//! client that ignores the setting is exactly the one to worry about.

/// The connection preface a client sends first.
const PREFACE_LEN: u8 = 24;
const FRAME_HEADER_LEN: u8 = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// The client's side of a connection, frame by frame. Timed (the head
/// deadline runs) is everything of a request head and every control frame:
/// the preface once begun, a frame header once begun, a non-DATA payload,
/// and a header block from its HEADERS frame to the end of the frame that
/// carries END_HEADERS (CONTINUATION frames included). Untimed: the time
/// between frames, and DATA payloads (bodies are not the head's business).
#[derive(Debug)]
pub(super) struct FrameReader {
    preface_left: u8,
    header: [u8; FRAME_HEADER_LEN as usize],
    header_len: u8,
    payload_left: u32,
    payload_timed: bool,
    in_block: bool,
    /// This frame's payload ends the header block.
    ends_block: bool,
}

/// What one read did to the clock.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Clock {
    /// Nothing is being timed after this read.
    Stop,
    /// A timed stretch began during this read (and has not ended).
    Start,
    /// The stretch timed before this read goes on.
    Run,
}

impl Default for FrameReader {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN as usize],
            header_len: 0,
            payload_left: 0,
            payload_timed: false,
            in_block: false,
            ends_block: false,
        }
    }
}

impl FrameReader {
    fn timed(&self) -> bool {
        (self.preface_left > 0 && self.preface_left < PREFACE_LEN)
            || self.header_len > 0
            || (self.payload_left > 0 && self.payload_timed)
            || self.in_block
    }

    /// Follows the frames in `bytes`, read from the client.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Clock {
        let mut started = false;
        while !bytes.is_empty() {
            let before = self.timed();
            if self.preface_left > 0 {
                let n = bytes.len().min(usize::from(self.preface_left));
                self.preface_left -= n as u8;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = bytes.len().min(self.payload_left as usize);
                self.payload_left -= n as u32;
                bytes = &bytes[n..];
                if self.payload_left == 0 {
                    self.frame_done();
                }
            } else {
                let at = usize::from(self.header_len);
                let n = bytes.len().min(usize::from(FRAME_HEADER_LEN) - at);
                self.header[at..at + n].copy_from_slice(&bytes[..n]);
                self.header_len += n as u8;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_done();
                }
            }
            if !before && self.timed() {
                started = true;
            }
        }
        match (self.timed(), started) {
            (false, _) => Clock::Stop,
            (true, true) => Clock::Start,
            (true, false) => Clock::Run,
        }
    }

    fn header_done(&mut self) {
        let h = self.header;
        self.header_len = 0;
        let (kind, flags) = (h[3], h[4]);
        self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        self.payload_timed = kind != DATA;
        match kind {
            HEADERS if flags & END_HEADERS == 0 => self.in_block = true,
            CONTINUATION if flags & END_HEADERS != 0 => self.ends_block = true,
            _ => {}
        }
        if self.payload_left == 0 {
            self.frame_done();
        }
    }

    fn frame_done(&mut self) {
        if self.ends_block {
            self.in_block = false;
            self.ends_block = false;
        }
    }
}

/// The server's first SETTINGS frame with `SETTINGS_MAX_CONCURRENT_STREAMS`
/// set to `max_streams`, if `written` (the first bytes the server writes)
/// starts with that frame whole: the rewritten frame and how many bytes of
/// `written` it stands for. `None` leaves the bytes alone.
pub(super) fn with_max_streams(written: &[u8], max_streams: u32) -> Option<(Vec<u8>, usize)> {
    let header = written.get(..usize::from(FRAME_HEADER_LEN))?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let is_settings = header[3] == SETTINGS && header[4] & ACK == 0 && header[5..9] == [0; 4];
    if !is_settings || !len.is_multiple_of(6) {
        return None;
    }
    let end = usize::from(FRAME_HEADER_LEN) + len;
    let payload = written.get(usize::from(FRAME_HEADER_LEN)..end)?;
    let mut entries: Vec<u8> = payload
        .chunks_exact(6)
        .filter(|e| u16::from_be_bytes([e[0], e[1]]) != SETTINGS_MAX_CONCURRENT_STREAMS)
        .flatten()
        .copied()
        .collect();
    entries.extend_from_slice(&SETTINGS_MAX_CONCURRENT_STREAMS.to_be_bytes());
    entries.extend_from_slice(&max_streams.to_be_bytes());
    let new_len = (entries.len() as u32).to_be_bytes();
    let mut frame = vec![new_len[1], new_len[2], new_len[3], SETTINGS, 0, 0, 0, 0, 0];
    frame.extend_from_slice(&entries);
    Some((frame, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn a_header_block_is_timed_until_end_headers() {
        let mut r = FrameReader::default();
        assert_eq!(r.feed(PREFACE), Clock::Stop);
        assert_eq!(r.feed(&frame(SETTINGS, 0, 0, &[])), Clock::Stop);
        // HEADERS without END_HEADERS, then CONTINUATIONs one byte at a time.
        assert_eq!(r.feed(&frame(HEADERS, 0, 1, b"ab")), Clock::Start);
        let c = frame(CONTINUATION, 0, 1, b"c");
        for b in &c {
            assert_eq!(r.feed(&[*b]), Clock::Run);
        }
        let last = frame(CONTINUATION, END_HEADERS, 1, b"d");
        assert_eq!(r.feed(&last[..9]), Clock::Run);
        assert_eq!(r.feed(&last[9..]), Clock::Stop);
    }

    #[test]
    fn bodies_and_the_time_between_frames_are_not_timed() {
        let mut r = FrameReader::default();
        r.feed(PREFACE);
        let data = frame(DATA, 0, 1, &[7; 100]);
        assert_eq!(r.feed(&data[..3]), Clock::Start, "a frame header is");
        assert_eq!(r.feed(&data[3..20]), Clock::Stop, "a DATA payload is not");
        assert_eq!(r.feed(&data[20..]), Clock::Stop);
        // A whole head in one read, and a dribbled control frame.
        assert_eq!(r.feed(&frame(HEADERS, END_HEADERS, 3, b"x")), Clock::Stop);
        let ping = frame(0x6, 0, 0, &[0; 8]);
        assert_eq!(r.feed(&ping[..12]), Clock::Start);
        assert_eq!(r.feed(&ping[12..]), Clock::Stop);
        // A stretch that ends and a new one that begins in one read restarts.
        let mut two = frame(0x6, 0, 0, &[0; 8]);
        two.extend_from_slice(&ping[..4]);
        r.feed(&ping[..4]);
        assert_eq!(r.feed(&[&ping[4..], &two[..]].concat()), Clock::Start);
    }

    #[test]
    fn the_first_settings_frame_gains_max_concurrent_streams() {
        // INITIAL_WINDOW_SIZE = 65535, then a WINDOW_UPDATE in the same write.
        let settings = frame(SETTINGS, 0, 0, &[0, 4, 0, 0, 0xff, 0xff]);
        let written = [settings.clone(), frame(0x8, 0, 0, &[0, 0, 1, 0])].concat();
        let (out, took) = with_max_streams(&written, 100).unwrap();
        assert_eq!(took, settings.len());
        assert_eq!(
            out,
            frame(
                SETTINGS,
                0,
                0,
                &[0, 4, 0, 0, 0xff, 0xff, 0, 3, 0, 0, 0, 100]
            )
        );
        // An existing value is replaced, not doubled.
        let (out, _) = with_max_streams(&frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 1, 0]), 7).unwrap();
        assert_eq!(out, frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 7]));
        // Anything else (an ACK, a partial frame, another frame) is left alone.
        assert!(with_max_streams(&frame(SETTINGS, ACK, 0, &[]), 7).is_none());
        assert!(with_max_streams(&settings[..10], 7).is_none());
        assert!(with_max_streams(&frame(0x8, 0, 0, &[0, 0, 1, 0]), 7).is_none());
    }
}
