//! Compression of canonical output and decoding of compressed request bodies.
//!
//! Owns: the four output encodings (gzip, br, zstd, identity) with their levels, and
//! request `Content-Encoding` decoding under a hard output cap.
//! Never: holds more than [`DECODE_KEEP`] decoded bytes for a body that turns out over
//! the cap (a decompression bomb must not move the sidecar's memory; see [`decode`]),
//! and never compresses in one uninterruptible call: work is fed in chunks and the
//! caller's [`Stop`] is asked between them, so abandoned work stops.
//!
//! Compressor state is kept per worker thread and reset between payloads: for documents of
//! a few KB, building a fresh deflate or zstd context costs as much as the compression
//! itself, while resetting one is nearly free.

use std::cell::RefCell;
use std::io::Read;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush};

use super::Stop;

/// Input is fed to the compressors in slices of this size; the stop check runs between
/// them. 32 KiB keeps the check overhead invisible while bounding the work done after a
/// deadline passes to well under a millisecond at the fastest levels.
const CHUNK: usize = 32 * 1024;

/// Output encodings of `/norm` and `/compress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gzip,
    Br,
    Zstd,
    Identity,
}

impl Encoding {
    pub const ALL: [Encoding; 4] = [Self::Gzip, Self::Br, Self::Zstd, Self::Identity];

    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Br => "br",
            Self::Zstd => "zstd",
            Self::Identity => "identity",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// The level used when neither the profile nor the query names one: each codec's
    /// fastest setting, because normd's budget is latency, not ratio.
    pub fn default_level(self) -> i32 {
        match self {
            Self::Gzip => 1,
            Self::Br => 1,
            Self::Zstd => 1,
            Self::Identity => 0,
        }
    }

    /// Valid levels for this encoding, inclusive.
    pub fn level_range(self) -> (i32, i32) {
        match self {
            Self::Gzip => (0, 9),
            Self::Br => (0, 11),
            // Negative zstd levels are the "fast" modes; 19 is the top non-ultra level.
            Self::Zstd => (-7, 19),
            Self::Identity => (0, 0),
        }
    }
}

/// Compression was abandoned because the caller's [`Stop`] said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Compresses `input` with `encoding` at `level` (already range-checked by the caller).
pub fn compress(
    encoding: Encoding,
    level: i32,
    input: &[u8],
    stop: &dyn Stop,
) -> Result<Vec<u8>, Stopped> {
    match encoding {
        Encoding::Identity => Ok(input.to_vec()),
        Encoding::Gzip => gzip(level, input, stop),
        Encoding::Br => brotli_compress(level, input, stop),
        Encoding::Zstd => zstd_compress(level, input, stop),
    }
}

thread_local! {
    /// One deflate context per worker thread and level in use; see the module doc.
    static GZIP: RefCell<Vec<(i32, Deflate)>> = const { RefCell::new(Vec::new()) };
    static ZSTD: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
}

/// The deflate settings of one gzip level: a 32 KiB window (15, as gzip(1) writes it) and
/// the gzip wrapper (+16).
///
/// memLevel sizes zlib-rs's symbol and pending buffers (7 × 2^(memLevel+6) bytes), and
/// every reset zeroes the symbol buffer. Level 1 (deflate_quick) writes fixed-Huffman
/// blocks straight out and never stores symbols, so it gets small buffers: its bytes are
/// those of memLevel 8 for every input fed in one piece (up to [`CHUNK`], a test pins
/// that); past it a block may end elsewhere (still the same bytes for the same input).
/// Other levels keep zlib's default, 8: there the symbol buffer bounds a block, and
/// smaller blocks compress worse.
fn gzip_config(level: i32) -> DeflateConfig {
    let level = level.clamp(0, 9);
    DeflateConfig {
        level,
        window_bits: 15 + 16,
        mem_level: if level == 1 { GZIP_QUICK_MEM_LEVEL } else { 8 },
        ..DeflateConfig::default()
    }
}

/// memLevel of level 1: a 3 KiB symbol buffer (unused) and a 4 KiB pending buffer.
const GZIP_QUICK_MEM_LEVEL: i32 = 4;

fn gzip(level: i32, input: &[u8], stop: &dyn Stop) -> Result<Vec<u8>, Stopped> {
    GZIP.with(|cell| {
        let mut pool = cell.borrow_mut();
        let idx = match pool.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                pool.push((level, Deflate::new_with_config(gzip_config(level))));
                pool.len() - 1
            }
        };
        let c = &mut pool[idx].1;
        c.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        let result = deflate_into(c, input, &mut out, stop);
        if result.is_err() {
            // Leave the context clean for the next payload on this thread.
            c.reset();
        }
        result.map(|()| out)
    })
}

fn deflate_into(
    c: &mut Deflate,
    input: &[u8],
    out: &mut Vec<u8>,
    stop: &dyn Stop,
) -> Result<(), Stopped> {
    let mut chunks = input.chunks(CHUNK).peekable();
    if input.is_empty() {
        return finish_deflate(c, out);
    }
    while let Some(chunk) = chunks.next() {
        if stop.should_stop() {
            return Err(Stopped);
        }
        let last = chunks.peek().is_none();
        let flush = if last {
            DeflateFlush::Finish
        } else {
            DeflateFlush::NoFlush
        };
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let before_in = c.total_in();
            let status = deflate_step(c, chunk.get(consumed..).unwrap_or_default(), out, flush)?;
            consumed += (c.total_in() - before_in) as usize;
            match status {
                zlib_rs::Status::StreamEnd => return Ok(()),
                _ if !last && consumed == chunk.len() => break,
                _ => continue,
            }
        }
    }
    Ok(())
}

/// One `deflate` call into `out`'s spare capacity. The spare part is zeroed first (the
/// safe API takes an initialized slice; a few KB, next to the compression itself) and
/// cut back to what was written.
fn deflate_step(
    c: &mut Deflate,
    input: &[u8],
    out: &mut Vec<u8>,
    flush: DeflateFlush,
) -> Result<zlib_rs::Status, Stopped> {
    let filled = out.len();
    out.resize(out.capacity(), 0);
    let before_out = c.total_out();
    let status = c.compress(input, out.get_mut(filled..).unwrap_or_default(), flush);
    let written = (c.total_out() - before_out) as usize;
    out.truncate(filled + written);
    status.map_err(|_| Stopped)
}

fn finish_deflate(c: &mut Deflate, out: &mut Vec<u8>) -> Result<(), Stopped> {
    loop {
        out.reserve(64);
        if deflate_step(c, &[], out, DeflateFlush::Finish)? == zlib_rs::Status::StreamEnd {
            return Ok(());
        }
    }
}

fn brotli_compress(level: i32, input: &[u8], stop: &dyn Stop) -> Result<Vec<u8>, Stopped> {
    use std::io::Write;
    let quality = level.clamp(0, 11);
    let params = brotli::enc::BrotliEncoderParams {
        quality,
        // A window no larger than the payload keeps the encoder's allocation small for
        // the few-KB documents normd sees; 10 is brotli's minimum, 22 its default. But
        // at qualities 5-8 brotli-rs has no small-window hashers and falls back, for a
        // window of 2^16 or less, to one with a 32 MiB table, which for a small document
        // costs some 30 times the memory and several times the time of a 2^17 window (the
        // stream is as valid, and about as small).
        lgwin: window_log(input.len()).clamp(brotli_min_window_log(quality), 22) as i32,
        // 64 KiB input blocks (brotli's minimum): the encoder works a block at a time,
        // so this bounds the work between two stop checks even at quality 11.
        lgblock: 16,
        size_hint: input.len(),
        ..Default::default()
    };
    let mut writer = brotli::CompressorWriter::with_params(
        Vec::with_capacity(input.len() / 2 + 64),
        4096,
        &params,
    );
    for chunk in input.chunks(CHUNK) {
        if stop.should_stop() {
            return Err(Stopped);
        }
        // Writing into a Vec cannot fail; an error here would be a brotli bug.
        writer.write_all(chunk).map_err(|_| Stopped)?;
    }
    writer.flush().map_err(|_| Stopped)?;
    Ok(writer.into_inner())
}

/// An upper bound of the bytes one compression of `n` bytes allocates while it runs,
/// its output included. Fitted to measurements of the codec versions in Cargo.lock
/// (brotli 8, zlib-rs 0.6, zstd 1.5.7) on 1 KiB-8 MiB of JSON and of random bytes,
/// every case under its bound by ≥ 8 %. normd charges it to `--max-inflight-bytes`
/// while the call runs, because at some levels it dwarfs the body: brotli 9 holds a
/// 32 MiB table for a document of any size.
pub fn compress_memory(encoding: Encoding, level: i32, n: usize) -> usize {
    const K: usize = 1 << 10;
    const M: usize = 1 << 20;
    match encoding {
        Encoding::Identity => n,
        // The output starts at n/2 and may double twice on incompressible bytes: 3n.
        // zlib-rs's own state (~270 KiB at level 1, ~372 KiB at others) stays with the
        // worker thread.
        Encoding::Gzip => 3 * n + 16 * K,
        Encoding::Br => {
            let quality = level.clamp(0, 11);
            let window = 1usize << window_log(n).clamp(brotli_min_window_log(quality), 22);
            let (fixed, per_window) = match quality {
                0..=1 => (96 * K, 3),
                2..=3 => (640 * K, 2),
                4 => (1536 * K, 5),
                5..=6 => (4 * M, 3),
                7 => (10 * M, 3),
                8 => (19 * M, 3),
                9 => (38 * M, 3),
                _ => (6 * M, 11),
            };
            fixed + 3 * n + per_window * window
        }
        Encoding::Zstd => {
            // Output (sized to compressBound up front) plus the thread's context, which
            // this call may grow to its own (level, size).
            let size = n.max(1).next_power_of_two();
            let context = match level {
                0 | 3..=10 => 128 * K + 20 * size,
                ..=2 => 192 * K + 8 * size,
                _ => 256 * K + 30 * size,
            };
            n + n / 64 + 2 * K + context.min(zstd_context_cap(level))
        }
    }
}

/// The most a zstd context grows to at `level`, whatever the input: the level's largest
/// window and tables (measured at 8 MiB, where every level has reached them), +10 %.
fn zstd_context_cap(level: i32) -> usize {
    const M: usize = 1 << 20;
    let mib_tenths = match level {
        0 | 3 => 40, // 0 is zstd's default level, 3
        ..=1 => 15,
        2 => 25,
        4..=6 => 60,
        7..=8 => 90,
        9 => 170,
        10..=11 => 290,
        12 => 520,
        13 => 430,
        14 => 610,
        15 => 800,
        16 => 430,
        17 => 660,
        18 => 670,
        _ => 1040,
    };
    mib_tenths * M / 10 * 11 / 10
}

/// The smallest window [`brotli_compress`] gives brotli at `quality` (see there).
fn brotli_min_window_log(quality: i32) -> u32 {
    if (5..=8).contains(&quality) {
        17
    } else {
        10
    }
}

fn window_log(len: usize) -> u32 {
    usize::BITS - len.max(1).leading_zeros()
}

fn zstd_compress(level: i32, input: &[u8], stop: &dyn Stop) -> Result<Vec<u8>, Stopped> {
    use zstd::zstd_safe::CCtx;
    ZSTD.with(|cell| {
        let mut slot = cell.borrow_mut();
        let cctx = slot.get_or_insert_with(CCtx::create);
        let result = zstd_stream(cctx, level, input, stop);
        // The context grows to the largest (level, size) the thread has served and zstd
        // keeps it: level 19 on an 8 MiB body leaves ~90 MiB per worker. Past a few MiB
        // it goes; the next such call pays for building it again.
        if cctx.sizeof() > ZSTD_KEEP_BYTES {
            *slot = None;
        }
        result
    })
}

/// Largest zstd context a worker thread keeps between calls: level 3 on a 1 MiB body
/// needs ~2.5 MiB, so normd's usual calls keep theirs.
const ZSTD_KEEP_BYTES: usize = 4 << 20;

fn zstd_stream(
    cctx: &mut zstd::zstd_safe::CCtx<'static>,
    level: i32,
    input: &[u8],
    stop: &dyn Stop,
) -> Result<Vec<u8>, Stopped> {
    use zstd::zstd_safe::{CParameter, InBuffer, OutBuffer, ResetDirective};
    cctx.reset(ResetDirective::SessionOnly)
        .map_err(|_| Stopped)?;
    cctx.set_parameter(CParameter::CompressionLevel(level))
        .map_err(|_| Stopped)?;
    cctx.set_pledged_src_size(Some(input.len() as u64))
        .map_err(|_| Stopped)?;
    let mut out: Vec<u8> = Vec::with_capacity(zstd::zstd_safe::compress_bound(input.len()));
    let mut chunks = input.chunks(CHUNK).peekable();
    let mut first = true;
    while first || chunks.peek().is_some() {
        first = false;
        if stop.should_stop() {
            let _ = cctx.reset(ResetDirective::SessionOnly);
            return Err(Stopped);
        }
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        let mode = if last {
            zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_end
        } else {
            zstd::zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_continue
        };
        let mut inb = InBuffer::around(chunk);
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let pos = out.len();
            let mut outb = OutBuffer::around_pos(&mut out, pos);
            let remaining = cctx
                .compress_stream2(&mut outb, &mut inb, mode)
                .map_err(|_| Stopped)?;
            let done_input = inb.pos() == chunk.len();
            if last {
                if remaining == 0 {
                    break;
                }
            } else if done_input {
                break;
            }
        }
    }
    Ok(out)
}

/// Why a compressed request body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("decoded body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("body is not valid {encoding}: {reason}")]
    Corrupt {
        encoding: &'static str,
        reason: String,
    },
}

/// Request `Content-Encoding`s normd accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    Br,
    Zstd,
}

impl ContentEncoding {
    /// Parses a `Content-Encoding` header value; `None` means unsupported.
    pub fn from_header(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Self::Identity),
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "br" => Some(Self::Br),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Gzip => "gzip",
            Self::Br => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// Decoded bytes the first pass of [`decode`] keeps before it stops keeping them.
///
/// 1 MiB, a fixed amount rather than a multiple of the wire size: the promise is about
/// what a bomb can make normd hold, and a ratio bound would let a 1 MiB body (the default
/// `--max-body-bytes`) hold the whole decoded cap again. 1 MiB is what an uncompressed
/// body at that default already costs, and normd's payloads are a few KB, so a real body
/// almost never decodes past it and pays for one pass only. What it does not bound is
/// the codec's own history window, which the frame chooses (gzip 32 KiB; br and zstd up
/// to several MiB, capped for zstd near `limit` by `window_log_max`).
const DECODE_KEEP: usize = 1 << 20;

/// Decoded bytes are pulled from the decoder in slices of this size; the stop check
/// runs between them, and past [`DECODE_KEEP`] this is all the decoded memory held.
const DECODE_SLICE: usize = 16 * 1024;

/// Decodes `body`, refusing with [`DecodeError::TooLarge`] once it decodes to more than
/// `limit` bytes.
///
/// A body whose decoded size is unknown until the end cannot be sized up front, and
/// growing a buffer towards `limit` is exactly what lets a bomb move memory. So the
/// first pass keeps decoded bytes only up to [`DECODE_KEEP`]; past it, the buffer is
/// freed and decoding goes on into one small slice, only counting. Over `limit` → 413
/// with no more than `DECODE_KEEP` ever held; under it → a second pass decodes again
/// into a buffer of the exact size now known. The trade: bodies that decode to between
/// 1 MiB and `limit` cost their decompression twice in CPU, in exchange for a bomb
/// costing at most 1 MiB (+ the decoder's own window) instead of `limit`.
pub fn decode(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
    stop: &dyn Stop,
) -> Result<Vec<u8>, DecodeError> {
    decode_keeping(encoding, body, limit, DECODE_KEEP, stop, &mut 0)
}

/// What a decoder for `body` will allocate for its own state, known before it allocates
/// anything: gzip's fixed 32 KiB window, the window a brotli stream or each zstd frame
/// declares in its header. The caller charges it to the in-flight byte budget before
/// decoding. A declared window past what [`decode`] accepts is refused here, as corrupt,
/// so no decoder ever allocates for it: large-window brotli (an extension that lets a
/// 2-byte header ask for up to 1 GiB), and zstd windows past the cap that
/// `window_log_max` would enforce anyway. The headers are read by hand because neither
/// decoder crate exposes the declared window before it allocates it.
pub fn decode_memory(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
) -> Result<usize, DecodeError> {
    let corrupt = |reason: String| DecodeError::Corrupt {
        encoding: encoding.name(),
        reason,
    };
    match encoding {
        ContentEncoding::Identity => Ok(0),
        // inflate's state: the 32 KiB window and its tables.
        ContentEncoding::Gzip => Ok(48 << 10),
        ContentEncoding::Br => {
            let log = brotli_window_log(body).map_err(corrupt)?;
            Ok((1usize << log) + BROTLI_DECODER_STATE)
        }
        ContentEncoding::Zstd => {
            let max_log = zstd_max_window_log(limit);
            let mut rest = body;
            let mut largest = 0usize;
            while !rest.is_empty() {
                let window = zstd_frame_window(rest).map_err(corrupt)?;
                if window > 1usize << max_log {
                    return Err(corrupt(format!(
                        "a frame asks for a {window}-byte window; at most 2^{max_log} is accepted"
                    )));
                }
                largest = largest.max(window);
                let size = zstd::zstd_safe::find_frame_compressed_size(rest)
                    .map_err(|code| corrupt(zstd::zstd_safe::get_error_name(code).to_owned()))?;
                rest = rest.get(size..).unwrap_or_default();
            }
            // The decoder holds one frame's window at a time, plus one block.
            Ok(largest + ZSTD_BLOCK)
        }
    }
}

/// brotli's decoder state besides its ring buffer (Huffman tables, block buffers).
const BROTLI_DECODER_STATE: usize = 96 << 10;

/// zstd's largest block, which its decoder buffers beside the window.
const ZSTD_BLOCK: usize = 128 << 10;

/// The window (log2) a brotli stream declares in its first bits (RFC 7932 §9.1: WBITS),
/// or why it is refused. The large-window extension (`0x11` then a 6-bit WBITS of up to
/// 30) is not standard brotli: no ordinary encoder writes it, and its window is what
/// made a 102-byte body hold 1 GiB, so it is refused outright.
fn brotli_window_log(body: &[u8]) -> Result<u32, String> {
    let Some(&first) = body.first() else {
        return Err("empty body".to_owned());
    };
    if first & 1 == 0 {
        return Ok(16);
    }
    let n = u32::from((first >> 1) & 7);
    if n != 0 {
        return Ok(17 + n);
    }
    match (first >> 4) & 7 {
        0 => Ok(17),
        1 => Err(
            "large-window brotli is not accepted (standard brotli windows go up to 16 MiB)"
                .to_owned(),
        ),
        m => Ok(8 + u32::from(m)),
    }
}

/// The window log [`decoder`] lets a zstd frame use: near the output cap, 10..=28.
fn zstd_max_window_log(limit: usize) -> u32 {
    window_log(limit).clamp(10, 27) + 1
}

/// The window a zstd frame's header declares (RFC 8878 §3.1.1.1), bounded by its content
/// size when it gives one (the decoder never buffers more than the frame holds);
/// 0 for a skippable frame.
fn zstd_frame_window(frame: &[u8]) -> Result<usize, String> {
    const MAGIC: u32 = 0xFD2F_B528;
    let magic = frame
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]))
        .ok_or("truncated frame header")?;
    if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
        return Ok(0);
    }
    if magic != MAGIC {
        return Err("unknown frame magic number".to_owned());
    }
    let descriptor = *frame.get(4).ok_or("truncated frame header")?;
    let single_segment = descriptor & 0x20 != 0;
    let fcs_bytes = match descriptor >> 6 {
        0 if single_segment => 1,
        0 => 0,
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let did_bytes = [0, 1, 2, 4][usize::from(descriptor & 3)];
    let mut at = 5;
    let window = if single_segment {
        None
    } else {
        let wd = *frame.get(at).ok_or("truncated frame header")?;
        at += 1;
        let log = 10 + u32::from(wd >> 3);
        let base = 1u64 << log;
        Some(base + (base / 8) * u64::from(wd & 7))
    };
    at += did_bytes;
    let fcs = match frame.get(at..at + fcs_bytes) {
        None => return Err("truncated frame header".to_owned()),
        Some([]) => None,
        Some(b) => {
            let mut v = [0u8; 8];
            v[..b.len()].copy_from_slice(b);
            // The 2-byte form is stored minus 256 (RFC 8878 §3.1.1.4).
            Some(u64::from_le_bytes(v) + if b.len() == 2 { 256 } else { 0 })
        }
    };
    let bytes = match (window, fcs) {
        (Some(w), Some(c)) => w.min(c),
        (Some(w), None) => w,
        (None, Some(c)) => c,
        (None, None) => 0,
    };
    Ok(usize::try_from(bytes).unwrap_or(usize::MAX))
}

/// [`decode`] with its keep threshold as a parameter; `peak` records the most decoded
/// bytes (buffer capacities) held at once, which is what the tests hold to the bound.
fn decode_keeping(
    encoding: ContentEncoding,
    body: &[u8],
    limit: usize,
    keep: usize,
    stop: &dyn Stop,
    peak: &mut usize,
) -> Result<Vec<u8>, DecodeError> {
    if encoding == ContentEncoding::Identity {
        if body.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        return Ok(body.to_vec());
    }
    let keep = keep.min(limit);
    let mut reader = decoder(encoding, body, limit)?;
    let mut slice = vec![0u8; DECODE_SLICE];
    // `None` once the output passed `keep`: from there on only `total` is kept.
    let mut kept = Some(Vec::with_capacity(keep.min(64 * 1024)));
    let mut total = 0usize;
    loop {
        let n = read_slice(&mut reader, &mut slice, encoding, limit, stop)?;
        if n == 0 {
            break;
        }
        total = total.saturating_add(n);
        if total > limit {
            return Err(DecodeError::TooLarge { limit });
        }
        if let Some(out) = kept.as_mut() {
            if total <= keep {
                if out.capacity() < total {
                    // Double, but never past `keep`: Vec's own growth could overshoot it.
                    let target = (out.capacity() * 2).max(total).min(keep);
                    out.reserve_exact(target - out.len());
                }
                out.extend_from_slice(slice.get(..n).unwrap_or_default());
            } else {
                kept = None;
            }
        }
        *peak = (*peak).max(slice.len() + kept.as_ref().map_or(0, Vec::capacity));
    }
    if let Some(out) = kept {
        return Ok(out);
    }
    // Second pass: the size is known and within the cap; decode straight into place.
    drop(slice);
    let mut out = vec![0u8; total];
    *peak = (*peak).max(out.capacity());
    let mut reader = decoder(encoding, body, limit)?;
    let mut filled = 0;
    while filled < total {
        let end = (filled + DECODE_SLICE).min(total);
        let n = read_slice(
            &mut reader,
            out.get_mut(filled..end).unwrap_or_default(),
            encoding,
            limit,
            stop,
        )?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    let trailing = read_slice(&mut reader, &mut [0u8; 1], encoding, limit, stop)?;
    if filled != total || trailing != 0 {
        // Decoding is deterministic; a body that decodes differently twice is not one.
        return Err(DecodeError::Corrupt {
            encoding: encoding.name(),
            reason: "decoded to a different length on the second pass".to_owned(),
        });
    }
    Ok(out)
}

fn decoder<'a>(
    encoding: ContentEncoding,
    body: &'a [u8],
    limit: usize,
) -> Result<Box<dyn Read + 'a>, DecodeError> {
    Ok(match encoding {
        ContentEncoding::Identity => Box::new(body),
        ContentEncoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(body)),
        ContentEncoding::Br => Box::new(WholeBrotli(brotli::Decompressor::new(body, 4096))),
        ContentEncoding::Zstd => {
            let corrupt = |e: std::io::Error| DecodeError::Corrupt {
                encoding: encoding.name(),
                reason: e.to_string(),
            };
            let mut decoder = zstd::stream::read::Decoder::new(body).map_err(corrupt)?;
            // A zstd frame may ask for a window of up to 2 GiB; cap it near our output cap
            // so the decoder's own allocation is bounded too.
            decoder
                .window_log_max(zstd_max_window_log(limit))
                .map_err(corrupt)?;
            Box::new(decoder)
        }
    })
}

/// A brotli reader that refuses bytes after the end of the stream.
///
/// brotli's own reader returns end-of-stream once the first stream is complete and says
/// nothing of what follows it (it complains only on a further read, and only about bytes
/// already in its buffer). A second stream or trailing garbage would then be dropped with
/// a 200, where gzip and zstd refuse it; a body normd cannot decode whole is corrupt.
struct WholeBrotli<'a>(brotli::Decompressor<&'a [u8]>);

impl Read for WholeBrotli<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        if n == 0 && !buf.is_empty() {
            // The further read reports leftovers in brotli's buffer; `get_ref` holds what
            // it has not read from the body yet.
            let more = self.0.read(buf)?;
            if more != 0 || !self.0.get_ref().is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bytes after the end of the brotli stream",
                ));
            }
        }
        Ok(n)
    }
}

/// One read of decoded bytes into `buf`, after asking `stop`; 0 at the end of the stream.
fn read_slice(
    reader: &mut dyn Read,
    buf: &mut [u8],
    encoding: ContentEncoding,
    limit: usize,
    stop: &dyn Stop,
) -> Result<usize, DecodeError> {
    loop {
        if stop.should_stop() {
            // The caller answers with its own deadline error; what we return is unused.
            return Err(DecodeError::TooLarge { limit });
        }
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(DecodeError::Corrupt {
                    encoding: encoding.name(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::NeverStop;
    use std::io::Write;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| b"{\"a\":[1,2,3],\"name\":\"x\"}"[i % 24])
            .collect()
    }

    fn roundtrip(enc: Encoding, level: i32, data: &[u8]) -> Vec<u8> {
        let packed = compress(enc, level, data, &NeverStop).expect("compress");
        let ce = match enc {
            Encoding::Gzip => ContentEncoding::Gzip,
            Encoding::Br => ContentEncoding::Br,
            Encoding::Zstd => ContentEncoding::Zstd,
            Encoding::Identity => ContentEncoding::Identity,
        };
        decode(ce, &packed, 1 << 24, &NeverStop).expect("decode")
    }

    #[test]
    fn every_encoding_and_level_roundtrips_at_many_sizes() {
        for enc in Encoding::ALL {
            let (lo, hi) = enc.level_range();
            for level in [lo, enc.default_level(), hi] {
                for len in [0, 1, 100, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 7] {
                    let data = sample(len);
                    assert_eq!(roundtrip(enc, level, &data), data, "{enc:?} {level} {len}");
                }
            }
        }
    }

    /// The same stream through flate2's zlib-rs gzip stream, which is zlib-rs at zlib's
    /// default memLevel (8), fed as [`deflate_into`] feeds it: where the final block
    /// starts depends on where `Finish` is first passed.
    fn flate2_gzip(level: u32, data: &[u8]) -> Vec<u8> {
        use flate2::{Compress, Compression, FlushCompress, Status};
        let mut c = Compress::new_gzip(Compression::new(level), 15);
        // Fixed-Huffman blocks grow incompressible bytes by up to 1/8.
        let mut out = Vec::with_capacity(2 * data.len() + 1024);
        let chunks: Vec<&[u8]> = data.chunks(CHUNK).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let flush = if i + 1 == chunks.len() {
                FlushCompress::Finish
            } else {
                FlushCompress::None
            };
            let before = c.total_in();
            let status = c.compress_vec(chunk, &mut out, flush).unwrap();
            assert_eq!((c.total_in() - before) as usize, chunk.len());
            if flush == FlushCompress::Finish {
                assert_eq!(status, Status::StreamEnd);
            }
        }
        if data.is_empty() {
            let status = c
                .compress_vec(&[], &mut out, FlushCompress::Finish)
                .unwrap();
            assert_eq!(status, Status::StreamEnd);
        }
        out
    }

    #[test]
    fn gzip_level_1_bytes_do_not_depend_on_its_smaller_buffers() {
        let mut noise = Vec::with_capacity(200_000);
        let mut x: u32 = 11;
        while noise.len() < 200_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            noise.push(if x & 0x100 == 0 {
                b'a' + (x >> 27) as u8
            } else {
                (x >> 16) as u8
            });
        }
        let json = sample(200_000);
        for data in [&json[..], &noise[..]] {
            for len in (0..=CHUNK).step_by(331).chain([CHUNK]) {
                for level in [1, 6] {
                    let ours = compress(Encoding::Gzip, level, &data[..len], &NeverStop).unwrap();
                    assert!(
                        ours == flate2_gzip(level as u32, &data[..len]),
                        "level {level}, {len} bytes"
                    );
                }
            }
            // Longer inputs: the same bytes every time, whatever came before on the thread.
            for len in [CHUNK + 1, 40_000, 200_000] {
                let once = compress(Encoding::Gzip, 1, &data[..len], &NeverStop).unwrap();
                compress(Encoding::Gzip, 1, &data[..1000], &NeverStop).unwrap();
                let again = compress(Encoding::Gzip, 1, &data[..len], &NeverStop).unwrap();
                assert!(once == again, "{len} bytes");
                assert_eq!(roundtrip(Encoding::Gzip, 1, &data[..len]), &data[..len]);
            }
        }
    }

    #[test]
    fn reused_contexts_do_not_leak_state_between_payloads() {
        let a = compress(Encoding::Gzip, 1, b"first payload", &NeverStop).unwrap();
        let b = compress(Encoding::Gzip, 1, b"second", &NeverStop).unwrap();
        let a2 = compress(Encoding::Gzip, 1, b"first payload", &NeverStop).unwrap();
        assert_eq!(a, a2);
        assert_ne!(a, b);
        let z1 = compress(Encoding::Zstd, 3, b"zzz", &NeverStop).unwrap();
        let z2 = compress(Encoding::Zstd, 3, b"zzz", &NeverStop).unwrap();
        assert_eq!(z1, z2);
    }

    struct StopNow;
    impl Stop for StopNow {
        fn should_stop(&self) -> bool {
            true
        }
    }

    #[test]
    fn compression_stops_when_asked() {
        for enc in [Encoding::Gzip, Encoding::Br, Encoding::Zstd] {
            assert_eq!(compress(enc, 1, &sample(100_000), &StopNow), Err(Stopped));
        }
    }

    #[test]
    fn decoding_a_bomb_stops_at_the_cap() {
        let zeros = vec![0u8; 4 << 20];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&zeros).unwrap();
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 10_000);
        let err = decode(ContentEncoding::Gzip, &bomb, 1 << 20, &NeverStop).unwrap_err();
        assert_eq!(err, DecodeError::TooLarge { limit: 1 << 20 });
        let zb = zstd::bulk::compress(&zeros, 3).unwrap();
        assert!(matches!(
            decode(ContentEncoding::Zstd, &zb, 1 << 20, &NeverStop),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    fn zeros_bomb(ce: ContentEncoding, len: usize) -> Vec<u8> {
        let enc = match ce {
            ContentEncoding::Gzip => Encoding::Gzip,
            ContentEncoding::Br => Encoding::Br,
            ContentEncoding::Zstd => Encoding::Zstd,
            ContentEncoding::Identity => Encoding::Identity,
        };
        compress(enc, enc.default_level(), &vec![0u8; len], &NeverStop).expect("compress")
    }

    const CODECS: [ContentEncoding; 3] = [
        ContentEncoding::Gzip,
        ContentEncoding::Br,
        ContentEncoding::Zstd,
    ];

    #[test]
    fn a_bomb_never_holds_more_than_the_keep_threshold() {
        let limit = 8 << 20;
        for ce in CODECS {
            let bomb = zeros_bomb(ce, limit + (1 << 20));
            assert!(bomb.len() < 1 << 20, "{ce:?}: {} bytes", bomb.len());
            let mut peak = 0;
            let err =
                decode_keeping(ce, &bomb, limit, DECODE_KEEP, &NeverStop, &mut peak).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit }, "{ce:?}");
            // The output buffer must not grow by doubling to the whole cap (8 MiB).
            assert!(peak <= DECODE_KEEP + DECODE_SLICE, "{ce:?}: peak {peak}");
            // A smaller threshold is honoured just as exactly.
            let mut peak = 0;
            let keep = 100_000;
            let err = decode_keeping(ce, &bomb, limit, keep, &NeverStop, &mut peak).unwrap_err();
            assert_eq!(err, DecodeError::TooLarge { limit }, "{ce:?}");
            assert!(peak <= keep + DECODE_SLICE, "{ce:?}: peak {peak}");
        }
    }

    #[test]
    fn a_body_just_under_the_cap_decodes_byte_exactly_in_two_passes() {
        let limit = 8 << 20;
        // Text that compresses, but not to nothing, so every codec does real work.
        let mut data = Vec::with_capacity(limit);
        let mut x: u32 = 1;
        while data.len() < limit {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            data.extend_from_slice(
                format!("{{\"n\":{},\"k\":\"v{}\"}},", x >> 16, x % 97).as_bytes(),
            );
        }
        data.truncate(limit);
        for ce in CODECS {
            let enc = match ce {
                ContentEncoding::Gzip => Encoding::Gzip,
                ContentEncoding::Br => Encoding::Br,
                _ => Encoding::Zstd,
            };
            for len in [limit - 1, limit] {
                let body = compress(enc, 1, &data[..len], &NeverStop).expect("compress");
                let mut peak = 0;
                let out = decode_keeping(ce, &body, limit, DECODE_KEEP, &NeverStop, &mut peak)
                    .expect("decode");
                assert!(out == data[..len], "{ce:?} {len}: not byte-exact");
                assert_eq!(out.capacity(), len, "{ce:?}: the second pass sizes exactly");
                assert_eq!(peak, len, "{ce:?}");
            }
            let over = compress(enc, 1, &[&data[..], b"x"].concat(), &NeverStop).expect("compress");
            assert_eq!(
                decode(ce, &over, limit, &NeverStop),
                Err(DecodeError::TooLarge { limit }),
                "{ce:?}"
            );
        }
    }

    /// Says stop after `n` questions.
    struct StopAfter(std::cell::Cell<usize>);
    impl Stop for StopAfter {
        fn should_stop(&self) -> bool {
            let left = self.0.get();
            self.0.set(left.saturating_sub(1));
            left == 0
        }
    }

    #[test]
    fn decoding_stops_when_asked_in_either_pass() {
        let data = sample(3 << 20);
        let body = compress(Encoding::Gzip, 1, &data, &NeverStop).expect("compress");
        let slices = data.len() / DECODE_SLICE;
        // In the first pass, and in the second (after all first-pass questions).
        for n in [3, slices + 10] {
            let stop = StopAfter(std::cell::Cell::new(n));
            assert!(
                decode(ContentEncoding::Gzip, &body, 8 << 20, &stop).is_err(),
                "{n}"
            );
        }
        assert_eq!(
            decode(ContentEncoding::Gzip, &body, 8 << 20, &NeverStop).as_deref(),
            Ok(&data[..])
        );
    }

    #[test]
    fn corrupt_bodies_are_reported() {
        for ce in [
            ContentEncoding::Gzip,
            ContentEncoding::Br,
            ContentEncoding::Zstd,
        ] {
            assert!(
                matches!(
                    decode(ce, b"definitely not compressed", 1 << 20, &NeverStop),
                    Err(DecodeError::Corrupt { .. })
                ),
                "{ce:?}"
            );
        }
    }

    #[test]
    fn bytes_after_the_stream_are_never_dropped() {
        // Incompressible data too, so the stream outgrows brotli's 4 KiB read buffer and
        // the trailing bytes sit in the body it has not read yet, not in its buffer.
        let mut noise = Vec::with_capacity(20_000);
        let mut x: u32 = 7;
        while noise.len() < 20_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            noise.push((x >> 16) as u8);
        }
        for data in [&b"{\"a\":1}"[..], &noise[..]] {
            for (ce, enc) in [
                (ContentEncoding::Gzip, Encoding::Gzip),
                (ContentEncoding::Br, Encoding::Br),
                (ContentEncoding::Zstd, Encoding::Zstd),
            ] {
                let one = compress(enc, 1, data, &NeverStop).expect("compress");
                assert_eq!(decode(ce, &one, 1 << 20, &NeverStop).as_deref(), Ok(data));
                let garbage = [&one[..], b"trailing garbage"].concat();
                assert!(
                    matches!(
                        decode(ce, &garbage, 1 << 20, &NeverStop),
                        Err(DecodeError::Corrupt { .. })
                    ),
                    "{ce:?}, {} bytes",
                    data.len()
                );
                // gzip members and zstd frames concatenate by their formats' rules and
                // decode whole; brotli has no such rule, so a second stream is corrupt.
                let two = [&one[..], &one[..]].concat();
                let decoded = decode(ce, &two, 1 << 20, &NeverStop);
                if ce == ContentEncoding::Br {
                    assert!(matches!(decoded, Err(DecodeError::Corrupt { .. })));
                } else {
                    assert_eq!(decoded, Ok([data, data].concat()), "{ce:?}");
                }
            }
        }
    }

    /// The context size zstd builds for one (level, size), from a fresh context.
    fn zstd_context_for(level: i32, input: &[u8]) -> usize {
        let mut cctx = zstd::zstd_safe::CCtx::create();
        zstd_stream(&mut cctx, level, input, &NeverStop).expect("zstd");
        cctx.sizeof()
    }

    #[test]
    fn zstd_is_charged_its_context_and_a_large_one_is_not_kept() {
        // Incompressible, so the output is as large as it gets.
        let mut data = vec![0u8; 8 << 20];
        let mut x: u32 = 3;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            *b = (x >> 16) as u8;
        }
        // Up to 8 MiB (the default decoded cap), where every level reaches its cap.
        for level in [-5, 1, 3, 9, 19] {
            for n in [1_000, 4_096, 65_536, 1 << 20, 8 << 20] {
                let input = &data[..n];
                let needs = zstd_context_for(level, input) + zstd::zstd_safe::compress_bound(n);
                let charged = compress_memory(Encoding::Zstd, level, n);
                assert!(
                    needs <= charged,
                    "level {level}, {n} B: {needs} > {charged}"
                );
            }
        }
        let kept = || ZSTD.with(|c| c.borrow().as_ref().map(|c| c.sizeof()));
        compress(Encoding::Zstd, 1, &data[..4096], &NeverStop).expect("zstd");
        assert!(kept().is_some_and(|size| size <= ZSTD_KEEP_BYTES));
        // Level 19 on 1 MiB builds ~19 MiB; the worker does not keep it.
        compress(Encoding::Zstd, 19, &data[..1 << 20], &NeverStop).expect("zstd");
        assert_eq!(kept(), None);
        compress(Encoding::Zstd, 1, &data[..4096], &NeverStop).expect("zstd");
        assert!(kept().is_some());
    }

    #[test]
    fn content_encoding_header_parsing() {
        assert_eq!(
            ContentEncoding::from_header(" GZIP "),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(ContentEncoding::from_header("compress"), None);
        assert_eq!(ContentEncoding::from_header("deflate"), None);
    }

    #[test]
    fn a_decoders_window_is_read_from_the_header_and_large_ones_are_refused() {
        let limit = 8 << 20;
        // Large-window brotli: two bytes ask for a 2^30-byte window.
        let mut large = vec![0x11, 0x1e];
        large.extend_from_slice(&[0u8; 100]);
        let e = decode_memory(ContentEncoding::Br, &large, limit).unwrap_err();
        assert!(
            matches!(&e, DecodeError::Corrupt { reason, .. } if reason.contains("large-window")),
            "{e:?}"
        );
        // Standard windows, as our own encoder and others write them.
        for (data_len, quality) in [(100, 1), (4_000, 5), (200_000, 9)] {
            let body = compress(Encoding::Br, quality, &sample(data_len), &NeverStop).unwrap();
            let charged = decode_memory(ContentEncoding::Br, &body, limit).unwrap();
            let log = brotli_window_log(&body).unwrap();
            assert!((10..=24).contains(&log), "{data_len}: 2^{log}");
            assert_eq!(charged, (1 << log) + BROTLI_DECODER_STATE);
        }
        // Every standard WBITS code (RFC 7932 §9.1) reads back as its window.
        for (first, log) in [
            (0x00, 16),
            (0x0f, 24),
            (0x03, 18),
            (0x01, 17),
            (0x21, 10),
            (0x71, 15),
        ] {
            assert_eq!(brotli_window_log(&[first]), Ok(log), "{first:#x}");
        }
        // zstd: a single-segment frame is charged its content size, not 2^N.
        let small = zstd::bulk::compress(&sample(3_000), 3).unwrap();
        let charged = decode_memory(ContentEncoding::Zstd, &small, limit).unwrap();
        assert_eq!(charged, 3_000 + ZSTD_BLOCK);
        // Two frames: the larger one's window.
        let two = [
            small.clone(),
            zstd::bulk::compress(&sample(9_000), 3).unwrap(),
        ]
        .concat();
        assert_eq!(
            decode_memory(ContentEncoding::Zstd, &two, limit).unwrap(),
            9_000 + ZSTD_BLOCK
        );
        assert_eq!(
            decode(ContentEncoding::Zstd, &two, limit, &NeverStop)
                .unwrap()
                .len(),
            12_000
        );
        // A frame header asking for a 2 GiB window (descriptor 0x00: no content size,
        // window byte 0xA8: 2^31) is refused before any decoder sees it.
        let huge = [0x28, 0xb5, 0x2f, 0xfd, 0x00, 0xa8, 0, 0, 0];
        assert!(matches!(
            decode_memory(ContentEncoding::Zstd, &huge, limit),
            Err(DecodeError::Corrupt { .. })
        ));
        // Trailing bytes after the last frame are corrupt here too.
        let trailing = [small.as_slice(), b"xyz"].concat();
        assert!(decode_memory(ContentEncoding::Zstd, &trailing, limit).is_err());
        assert_eq!(
            decode_memory(ContentEncoding::Gzip, b"", limit),
            Ok(48 << 10)
        );
        assert_eq!(decode_memory(ContentEncoding::Identity, b"x", limit), Ok(0));
    }
}
