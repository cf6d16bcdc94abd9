//! Strict I-JSON (RFC 7493) parsing into [`serde_json::Value`] and RFC 8785
//! (JSON Canonicalization Scheme) serialization.
//!
//! This module owns two things: deciding whether a request body is JSON we are
//! willing to canonicalize (UTF-8 only, no BOM, no duplicate member names, no
//! lone surrogates, bounded nesting, numbers that survive the trip through an
//! IEEE 754 double according to [`NumberPolicy`]), and writing the one
//! canonical byte sequence for a value.
//!
//! It must never recurse without a depth bound (both the parser and the
//! serializer are iterative, so neither depends on the thread's stack size),
//! never panic on any input bytes, and never do I/O: it works on slices and
//! appends to a caller-supplied `Vec<u8>`.

use std::cmp::Ordering;

use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// 2^53: the largest magnitude up to which every integer is exactly an f64,
/// so integers up to it can be stored and printed without going through f64.
const MAX_SAFE: u64 = 1 << 53;
const MAX_SAFE_DIGITS: &[u8] = b"9007199254740992";

/// How strictly numbers must survive conversion to an IEEE 754 double.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NumberPolicy {
    /// Reject numbers whose decimal value is an integer beyond ±2^53 when
    /// their canonical form denotes a different value (ids or amounts sent
    /// as big integers); accept rounding of fractions, which clients expect
    /// from any double-based JSON stack anyway. A nonzero number that rounds
    /// to zero (`1e-400`) is out of range, refused here and under `Strict`.
    #[default]
    Safe,
    /// Pure RFC 8785: round every number to the nearest double silently.
    Jcs,
    /// Reject any number whose canonical form denotes a different decimal
    /// value than the input.
    Strict,
}

/// Limits applied by [`parse`].
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Maximum nesting of arrays/objects; the top-level container is depth 1.
    pub max_depth: usize,
    pub numbers: NumberPolicy,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            max_depth: 128,
            numbers: NumberPolicy::Safe,
        }
    }
}

/// Why an input was refused. Positions are for humans fixing their payloads:
/// lines and columns are 1-based, columns count characters, pointers follow
/// RFC 6901.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CanonError {
    #[error("input is not valid UTF-8 (first invalid byte at offset {offset})")]
    InvalidUtf8 { offset: usize },
    #[error("lone UTF-16 surrogate escape at line {line}, column {column}")]
    LoneSurrogate { line: usize, column: usize },
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    InvalidJson {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "duplicate member name {} in the object at JSON pointer {}",
        json_quoted(.key),
        json_quoted(.pointer)
    )]
    DuplicateKey { pointer: String, key: String },
    #[error("nesting is deeper than the limit of {limit}")]
    TooDeep { limit: usize },
    #[error(
        "number {input} at JSON pointer {} cannot be canonicalized without changing its value ({})",
        json_quoted(.pointer),
        describe_canonical(.canonical.as_deref())
    )]
    NumberPrecision {
        pointer: String,
        input: String,
        /// What RFC 8785 would write instead; `None` when there is nothing it
        /// could write (beyond the largest double).
        canonical: Option<String>,
    },
}

/// A name or pointer as a JSON string, so the detail shows it as the payload's author
/// would write it (`"a\u0010"`), not in Rust's debug form (`"a\u{10}"`).
fn json_quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

fn describe_canonical(canonical: Option<&str>) -> String {
    match canonical {
        None => "it is outside the range of an IEEE 754 double".to_owned(),
        // Only a nonzero input is ever refused with a canonical 0: it underflowed.
        Some("0") => {
            "it is too small for an IEEE 754 double: RFC 8785 would write it as 0".to_owned()
        }
        Some(c) => format!("RFC 8785 would write it as {c}"),
    }
}

/// Parses `input` as strict I-JSON under `opts`.
///
/// Integers written without fraction or exponent and within ±2^53 are stored
/// as `i64`/`u64`; every other number is stored as the nearest `f64`, so the
/// stored value is always exactly what [`write_canonical`] will print.
///
/// The returned value may be nested up to `opts.max_depth` levels, and
/// serde_json's `Drop`, `Clone` and `PartialEq` for `Value` recurse once per
/// level: callers allowing depths in the thousands on small thread stacks
/// must account for that (this function itself never recurses).
pub fn parse(input: &[u8], opts: &ParseOptions) -> Result<Value, CanonError> {
    let src = std::str::from_utf8(input).map_err(|e| CanonError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let mut parser = Parser {
        src,
        bytes: input,
        pos: 0,
        opts: *opts,
    };
    // The open containers live here rather than on the call stack; on failure
    // they are exactly what is needed to name the failing location.
    let mut stack: Vec<Frame> = Vec::new();
    parser.run(&mut stack).map_err(|fail| {
        let error = fail.into_error(input, &stack, opts.max_depth);
        for frame in stack {
            match frame {
                Frame::Array(items) => items.into_iter().for_each(dismantle),
                Frame::Object(map, _) => map.into_iter().for_each(|(_, v)| dismantle(v)),
            }
        }
        error
    })
}

/// Appends the RFC 8785 canonical form of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    // Iterative so that a deeply nested value built elsewhere (not bounded by
    // our parser's max_depth) cannot overflow the stack.
    let mut stack: Vec<WriteFrame<'_>> = Vec::new();
    let mut next = Some(value);
    loop {
        if let Some(v) = next.take() {
            match v {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Bool(true) => out.extend_from_slice(b"true"),
                Value::Bool(false) => out.extend_from_slice(b"false"),
                Value::Number(n) => write_json_number(n, out),
                Value::String(s) => write_string(s, out),
                Value::Array(items) => {
                    out.push(b'[');
                    stack.push(WriteFrame::Array(items.iter(), true));
                }
                Value::Object(map) => {
                    out.push(b'{');
                    stack.push(WriteFrame::Object(Members::of(map), true));
                }
            }
        }
        let Some(top) = stack.last_mut() else { break };
        match top {
            WriteFrame::Array(iter, first) => match iter.next() {
                Some(item) => {
                    if !std::mem::replace(first, false) {
                        out.push(b',');
                    }
                    next = Some(item);
                }
                None => {
                    out.push(b']');
                    stack.pop();
                }
            },
            WriteFrame::Object(members, first) => match members.next() {
                Some((key, item)) => {
                    if !std::mem::replace(first, false) {
                        out.push(b',');
                    }
                    write_string(key, out);
                    out.push(b':');
                    next = Some(item);
                }
                None => {
                    out.push(b'}');
                    stack.pop();
                }
            },
        }
    }
}

/// Returns the RFC 8785 canonical form of `value`.
pub fn to_canonical_vec(value: &Value) -> Vec<u8> {
    to_canonical_vec_sized(value, 0)
}

/// The same, into a buffer of `size_hint` bytes to start with. Given the source's length:
/// canonical JSON is rarely longer than its source (whitespace goes; only escapes grow),
/// so the buffer is not regrown and copied several times while it fills.
pub fn to_canonical_vec_sized(value: &Value, size_hint: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size_hint);
    write_canonical(value, &mut out);
    out
}

/// Appends `value` formatted as ECMAScript `Number.prototype.toString` does,
/// which is what RFC 8785 prescribes (negative zero prints as `0`).
///
/// NaN and infinities have no JSON form and cannot occur in a
/// `serde_json::Value`; should a caller pass one anyway, `null` is written,
/// as `JSON.stringify` does, so the output stays valid JSON.
pub fn format_number(value: f64, out: &mut Vec<u8>) {
    if !value.is_finite() {
        out.extend_from_slice(b"null");
    } else if value == 0.0 {
        out.push(b'0');
    } else if !write_short_fixed(value, out) {
        let mut buf = ryu_js::Buffer::new();
        out.extend_from_slice(buf.format_finite(value).as_bytes());
    }
}

/// Writes `value` as ECMAScript does when it has at most [`SHORT_FIXED_DIGITS`] digits
/// after the point and is printed without an exponent (prices, rates, coordinates),
/// with a few float operations and integer printing instead of ryu-js's general search.
/// Returns `false`, writing nothing, for every other value.
///
/// The shortest decimal that reads back as `value` has the fewest fraction digits `d`
/// for which some integer `n` has `n / 10^d` rounding to `value`. Below 2^50, `n` can
/// only be `value × 10^d` rounded (the product is off by less than 1/4), and dividing
/// two exact doubles rounds correctly, so `n / 10^d == value` is that test exactly.
fn write_short_fixed(value: f64, out: &mut Vec<u8>) -> bool {
    const POW10: [f64; SHORT_FIXED_DIGITS + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];
    const LIMIT: f64 = (1u64 << 50) as f64;
    let magnitude = value.abs();
    // ECMAScript writes 1e-7 and below with an exponent.
    if !(1e-6..LIMIT).contains(&magnitude) {
        return false;
    }
    for (digits, &scale) in POW10.iter().enumerate() {
        let scaled = magnitude * scale;
        if scaled >= LIMIT {
            return false;
        }
        let n = scaled.round();
        if n / scale != magnitude {
            continue;
        }
        // n < 2^50: exact as an integer.
        let n = n as u64;
        if value < 0.0 {
            out.push(b'-');
        }
        let unit = 10u64.pow(digits as u32);
        write_u64(n / unit, out);
        if digits > 0 {
            out.push(b'.');
            let mut buf = [b'0'; SHORT_FIXED_DIGITS];
            let mut fraction = n % unit;
            for slot in buf.iter_mut().take(digits).rev() {
                *slot = b'0' + (fraction % 10) as u8;
                fraction /= 10;
            }
            out.extend_from_slice(buf.get(..digits).unwrap_or_default());
        }
        return true;
    }
    false
}

/// Most fraction digits [`write_short_fixed`] tries before leaving a value to ryu-js.
const SHORT_FIXED_DIGITS: usize = 7;

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// An open container. Arrays are addressed by the index of the element being
/// parsed (= current length); objects by the member name being parsed.
enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

/// Internal failure, carrying byte offsets; turned into a [`CanonError`] once,
/// on the error path, where line/column and pointers are computed.
enum Fail {
    Syntax {
        offset: usize,
        message: String,
    },
    LoneSurrogate {
        offset: usize,
    },
    TooDeep,
    /// The duplicate is in the innermost open object.
    Duplicate {
        key: String,
    },
    /// The offending number is the value being parsed in the innermost frame.
    Precision {
        input: String,
        canonical: Option<String>,
    },
}

impl Fail {
    fn into_error(self, input: &[u8], stack: &[Frame], limit: usize) -> CanonError {
        match self {
            Fail::Syntax { offset, message } => {
                let (line, column) = line_column(input, offset);
                CanonError::InvalidJson {
                    line,
                    column,
                    message,
                }
            }
            Fail::LoneSurrogate { offset } => {
                let (line, column) = line_column(input, offset);
                CanonError::LoneSurrogate { line, column }
            }
            Fail::TooDeep => CanonError::TooDeep { limit },
            Fail::Duplicate { key } => CanonError::DuplicateKey {
                pointer: pointer(stack.split_last().map_or(&[][..], |(_, rest)| rest)),
                key,
            },
            Fail::Precision { input, canonical } => CanonError::NumberPrecision {
                pointer: pointer(stack),
                input,
                canonical,
            },
        }
    }
}

/// Drops a value without recursion. serde_json's own `Drop` recurses once per
/// nesting level, which can exhaust a small thread stack long before
/// `max_depth` does; values we discard on error paths go through here.
fn dismantle(value: Value) {
    let mut pending = match value {
        Value::Array(items) => items,
        Value::Object(map) => map.into_iter().map(|(_, v)| v).collect(),
        _ => return,
    };
    while let Some(v) = pending.pop() {
        match v {
            Value::Array(items) => pending.extend(items),
            Value::Object(map) => pending.extend(map.into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

fn syntax(offset: usize, message: impl Into<String>) -> Fail {
    Fail::Syntax {
        offset,
        message: message.into(),
    }
}

/// Describes what was found at an error position, for messages.
fn found(src: &str, offset: usize) -> String {
    match src.get(offset..).and_then(|rest| rest.chars().next()) {
        Some(c) => format!("found {c:?}"),
        None => "found end of input".to_owned(),
    }
}

fn line_column(input: &[u8], offset: usize) -> (usize, usize) {
    let before = input.get(..offset).unwrap_or(input);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    // Count characters, not bytes: every byte that is not a UTF-8
    // continuation byte starts a character.
    let column = before
        .get(line_start..)
        .unwrap_or_default()
        .iter()
        .filter(|&&b| b & 0xC0 != 0x80)
        .count()
        + 1;
    (line, column)
}

fn pointer(frames: &[Frame]) -> String {
    let mut out = String::new();
    for frame in frames {
        out.push('/');
        match frame {
            Frame::Array(items) => out.push_str(&items.len().to_string()),
            Frame::Object(_, key) => {
                for c in key.chars() {
                    match c {
                        '~' => out.push_str("~0"),
                        '/' => out.push_str("~1"),
                        _ => out.push(c),
                    }
                }
            }
        }
    }
    out
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    opts: ParseOptions,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expected(&self, at: usize, what: &str) -> Fail {
        syntax(at, format!("expected {what}, {}", found(self.src, at)))
    }

    /// Slices the source between two offsets that the caller found at ASCII
    /// bytes (hence char boundaries); `get` keeps that assumption panic-free.
    fn slice(&self, start: usize, end: usize) -> Result<&str, Fail> {
        self.src
            .get(start..end)
            .ok_or_else(|| syntax(start, "internal error: not a character boundary"))
    }

    /// Parses the single top-level value and everything nested in it.
    ///
    /// Containers are pushed on `stack` when opened and popped when closed,
    /// so nesting costs heap, not call stack.
    fn run(&mut self, stack: &mut Vec<Frame>) -> Result<Value, Fail> {
        if self.bytes.starts_with("\u{FEFF}".as_bytes()) {
            return Err(syntax(0, "byte order mark is not allowed (RFC 8259 §8.1)"));
        }
        'value: loop {
            self.skip_ws();
            let mut value = match self.peek() {
                Some(b'[') => {
                    self.enter(stack.len())?;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                        Value::Array(Vec::new())
                    } else {
                        stack.push(Frame::Array(Vec::new()));
                        continue 'value;
                    }
                }
                Some(b'{') => {
                    self.enter(stack.len())?;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                        Value::Object(Map::new())
                    } else {
                        let key = self.member_name()?;
                        stack.push(Frame::Object(Map::new(), key));
                        continue 'value;
                    }
                }
                Some(b'"') => Value::String(self.string()?),
                Some(b't') => self.literal("true", Value::Bool(true))?,
                Some(b'f') => self.literal("false", Value::Bool(false))?,
                Some(b'n') => self.literal("null", Value::Null)?,
                Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
                _ => return Err(self.expected(self.pos, "a JSON value")),
            };
            // A value is complete: attach it to its container, closing as
            // many containers as the input closes.
            loop {
                self.skip_ws();
                let Some(top) = stack.last_mut() else {
                    if self.pos < self.bytes.len() {
                        dismantle(value);
                        return Err(self.expected(self.pos, "end of input after the JSON value"));
                    }
                    return Ok(value);
                };
                match top {
                    Frame::Array(items) => {
                        items.push(value);
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                continue 'value;
                            }
                            Some(b']') => {
                                self.pos += 1;
                                value = Value::Array(std::mem::take(items));
                                stack.pop();
                            }
                            _ => {
                                return Err(
                                    self.expected(self.pos, "',' or ']' after an array element")
                                )
                            }
                        }
                    }
                    Frame::Object(map, key) => {
                        match map.entry(std::mem::take(key)) {
                            Entry::Vacant(slot) => {
                                slot.insert(value);
                            }
                            Entry::Occupied(slot) => {
                                dismantle(value);
                                return Err(Fail::Duplicate {
                                    key: slot.key().clone(),
                                });
                            }
                        }
                        match self.peek() {
                            Some(b',') => {
                                self.pos += 1;
                                self.skip_ws();
                                *key = self.member_name()?;
                                continue 'value;
                            }
                            Some(b'}') => {
                                self.pos += 1;
                                value = Value::Object(std::mem::take(map));
                                stack.pop();
                            }
                            _ => {
                                return Err(
                                    self.expected(self.pos, "',' or '}' after an object member")
                                )
                            }
                        }
                    }
                }
            }
        }
    }

    /// Consumes an opening bracket after checking that one more level of
    /// nesting is allowed; `open` is the number of containers already open.
    fn enter(&mut self, open: usize) -> Result<(), Fail> {
        if open >= self.opts.max_depth {
            return Err(Fail::TooDeep);
        }
        self.pos += 1;
        Ok(())
    }

    /// Parses `"name"` followed by `:`; the caller has skipped whitespace.
    fn member_name(&mut self) -> Result<String, Fail> {
        if self.peek() != Some(b'"') {
            return Err(self.expected(self.pos, "a member name in double quotes"));
        }
        let key = self.string()?;
        self.skip_ws();
        if self.peek() != Some(b':') {
            return Err(self.expected(self.pos, "':' after a member name"));
        }
        self.pos += 1;
        Ok(key)
    }

    fn literal(&mut self, word: &str, value: Value) -> Result<Value, Fail> {
        let end = self.pos + word.len();
        if self.bytes.get(self.pos..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(value)
        } else {
            Err(syntax(
                self.pos,
                format!("invalid literal, expected {word:?}"),
            ))
        }
    }

    /// Parses a string; `self.pos` is at the opening quote.
    fn string(&mut self) -> Result<String, Fail> {
        let start = self.pos + 1;
        let mut i = start + plain_run(self.bytes.get(start..).unwrap_or_default());
        // Most strings have no escapes: copy them in one go.
        match self.bytes.get(i) {
            Some(b'"') => {
                let s = self.slice(start, i)?.to_owned();
                self.pos = i + 1;
                return Ok(s);
            }
            Some(b'\\') => {}
            Some(&b) => return Err(control_char(i, b)),
            None => return Err(syntax(i, "unterminated string")),
        }
        let mut out = String::with_capacity(i - start + 16);
        out.push_str(self.slice(start, i)?);
        loop {
            match self.bytes.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    i = self.escape(i, &mut out)?;
                    let run = i;
                    i += plain_run(self.bytes.get(i..).unwrap_or_default());
                    out.push_str(self.slice(run, i)?);
                }
                Some(&b) => return Err(control_char(i, b)),
                None => return Err(syntax(i, "unterminated string")),
            }
        }
    }

    /// Decodes the escape starting at the backslash at `at`, returning the
    /// offset just past it.
    fn escape(&self, at: usize, out: &mut String) -> Result<usize, Fail> {
        let c = match self.bytes.get(at + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(at, out),
            None => return Err(syntax(at + 1, "unterminated string")),
            Some(_) => {
                return Err(syntax(
                    at,
                    format!("invalid escape sequence, {}", found(self.src, at + 1)),
                ))
            }
        };
        out.push(c);
        Ok(at + 2)
    }

    fn unicode_escape(&self, at: usize, out: &mut String) -> Result<usize, Fail> {
        let unit = self.hex4(at)?;
        let (c, end) = match unit {
            0xD800..=0xDBFF => {
                // Only a `\uDC00`-`\uDFFF` escape right after completes it.
                let second = at + 6;
                if self.bytes.get(second..second + 2) != Some(b"\\u") {
                    return Err(Fail::LoneSurrogate { offset: at });
                }
                let low = self.hex4(second)?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err(Fail::LoneSurrogate { offset: at });
                }
                let cp = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                (char::from_u32(cp), second + 6)
            }
            0xDC00..=0xDFFF => return Err(Fail::LoneSurrogate { offset: at }),
            _ => (char::from_u32(u32::from(unit)), at + 6),
        };
        let c = c.ok_or_else(|| syntax(at, "invalid \\u escape"))?;
        out.push(c);
        Ok(end)
    }

    /// Reads the four hex digits of the `\u` escape whose backslash is at `at`.
    fn hex4(&self, at: usize) -> Result<u16, Fail> {
        let mut unit: u16 = 0;
        for k in 0..4 {
            let digit = match self.bytes.get(at + 2 + k) {
                Some(&b @ b'0'..=b'9') => b - b'0',
                Some(&b @ b'a'..=b'f') => b - b'a' + 10,
                Some(&b @ b'A'..=b'F') => b - b'A' + 10,
                _ => {
                    return Err(syntax(
                        at + 2 + k,
                        format!(
                            "invalid \\u escape, expected 4 hex digits, {}",
                            found(self.src, at + 2 + k)
                        ),
                    ))
                }
            };
            unit = (unit << 4) | u16::from(digit);
        }
        Ok(unit)
    }

    /// Parses a number (RFC 8259 grammar) and applies the number policy.
    fn number(&mut self) -> Result<Number, Fail> {
        let b = self.bytes;
        let start = self.pos;
        let mut i = start;
        let negative = b.get(i) == Some(&b'-');
        if negative {
            i += 1;
        }
        let is_digit = |i: usize| matches!(b.get(i), Some(b'0'..=b'9'));
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                if is_digit(i) {
                    return Err(syntax(i, "leading zeros are not allowed in numbers"));
                }
            }
            Some(b'1'..=b'9') => {
                while is_digit(i) {
                    i += 1;
                }
            }
            _ => return Err(self.expected(i, "a digit")),
        }
        let mut integer_form = true;
        if b.get(i) == Some(&b'.') {
            integer_form = false;
            i += 1;
            if !is_digit(i) {
                return Err(self.expected(i, "a digit after the decimal point"));
            }
            while is_digit(i) {
                i += 1;
            }
        }
        let mut long_exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            integer_form = false;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !is_digit(i) {
                return Err(self.expected(i, "a digit in the exponent"));
            }
            while b.get(i) == Some(&b'0') {
                i += 1;
            }
            let significant = i;
            while is_digit(i) {
                i += 1;
            }
            long_exponent = i - significant > 5;
        }
        self.pos = i;
        let text = self.slice(start, i)?;

        // Integers within ±2^53 are exact both as i64/u64 and as f64, so they
        // need no policy check and print identically either way.
        if integer_form {
            let exact = if negative {
                text.parse::<i64>()
                    .ok()
                    .filter(|v| v.unsigned_abs() <= MAX_SAFE)
                    .map(Number::from)
            } else {
                text.parse::<u64>()
                    .ok()
                    .filter(|v| *v <= MAX_SAFE)
                    .map(Number::from)
            };
            if let Some(n) = exact {
                return Ok(n);
            }
        }

        let f = if long_exponent {
            parse_f64_long_exponent(text)
        } else {
            text.parse().ok()
        }
        .ok_or_else(|| syntax(start, "number cannot be parsed"))?;
        if !f.is_finite() {
            return Err(Fail::Precision {
                input: text.to_owned(),
                canonical: None,
            });
        }
        // A nonzero literal that rounds to 0 (`1e-400`) is out of range, like
        // `1e400` is: only pure JCS rounds it silently. Literals that are zero
        // (`0e-400`, `0.000`) have no nonzero mantissa digit and pass.
        if f == 0.0 && self.opts.numbers != NumberPolicy::Jcs && has_nonzero_mantissa(text) {
            return Err(Fail::Precision {
                input: text.to_owned(),
                canonical: Some("0".to_owned()),
            });
        }
        let check = match self.opts.numbers {
            NumberPolicy::Jcs => false,
            // Rounding is monotonic and 2^53 is a double, so a decimal
            // integer above 2^53 can never round below it: smaller doubles
            // skip the decimal comparison entirely.
            NumberPolicy::Safe => {
                f.abs() >= MAX_SAFE as f64 && Decimal::new(text).is_integer_above_max_safe()
            }
            NumberPolicy::Strict => true,
        };
        if check {
            let mut canonical = Vec::with_capacity(32);
            format_number(f, &mut canonical);
            let canonical = String::from_utf8(canonical).unwrap_or_default();
            if Decimal::new(text) != Decimal::new(&canonical) {
                return Err(Fail::Precision {
                    input: text.to_owned(),
                    canonical: Some(canonical),
                });
            }
        }
        Number::from_f64(f).ok_or_else(|| syntax(start, "number is not finite"))
    }
}

/// Whether a number literal's mantissa (what precedes any exponent) has a
/// digit other than 0, i.e. whether it denotes a value other than zero.
fn has_nonzero_mantissa(text: &str) -> bool {
    text.bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .any(|b| matches!(b, b'1'..=b'9'))
}

/// `str::parse::<f64>` stops accumulating explicit exponents beyond about
/// 655360 without regard to the mantissa's length, so `1<700000 zeros>e-700000`
/// would read as infinity instead of 1. Rewrite such numbers with their true
/// decimal magnitude (a small exponent) before parsing.
fn parse_f64_long_exponent(text: &str) -> Option<f64> {
    let d = Decimal::new(text);
    let sign = if d.negative { -1.0 } else { 1.0 };
    // The value is 0.<digits> × 10^magnitude; doubles span about 1e-324 to
    // 1e309, so anything further out is zero or infinite outright.
    let magnitude = (d.digits.len() as i64).saturating_add(d.exponent);
    if d.digits.is_empty() || magnitude < -400 {
        return Some(sign * 0.0);
    }
    if magnitude > 400 {
        return Some(sign * f64::INFINITY);
    }
    let mut short = String::with_capacity(d.digits.len() + 16);
    if d.negative {
        short.push('-');
    }
    short.push_str("0.");
    short.push_str(std::str::from_utf8(&d.digits).ok()?);
    short.push('e');
    short.push_str(&magnitude.to_string());
    short.parse().ok()
}

fn control_char(offset: usize, b: u8) -> Fail {
    syntax(
        offset,
        format!("unescaped control character U+{b:04X} in string"),
    )
}

/// A decimal number normalised so that equal values compare equal:
/// `digits × 10^exponent` with no leading or trailing zeros in `digits`;
/// zero has no digits and is never negative.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exponent: i64,
}

impl Decimal {
    /// Accepts the RFC 8259 number grammar (which covers ECMAScript's
    /// `1e+21` output too). Exponents saturate: any value that large has
    /// already been turned away as out of range, or is zero.
    fn new(text: &str) -> Decimal {
        let bytes = text.as_bytes();
        let negative = bytes.first() == Some(&b'-');
        let mut digits = Vec::with_capacity(bytes.len());
        let mut fraction_digits: i64 = 0;
        let mut in_fraction = false;
        let mut rest: &[u8] = &[];
        for (k, &b) in bytes.iter().enumerate() {
            match b {
                b'0'..=b'9' => {
                    // Leading zeros carry no value.
                    if !(digits.is_empty() && b == b'0') {
                        digits.push(b);
                    }
                    if in_fraction {
                        fraction_digits += 1;
                    }
                }
                b'.' => in_fraction = true,
                b'e' | b'E' => {
                    rest = bytes.get(k + 1..).unwrap_or_default();
                    break;
                }
                _ => {}
            }
        }
        let mut exp: i64 = 0;
        let mut exp_negative = false;
        for &b in rest {
            match b {
                b'-' => exp_negative = true,
                b'0'..=b'9' => {
                    exp = exp
                        .saturating_mul(10)
                        .saturating_add(i64::from(b - b'0'))
                        .min(i64::MAX / 4);
                }
                _ => {}
            }
        }
        if exp_negative {
            exp = -exp;
        }
        let mut exponent = exp.saturating_sub(fraction_digits);
        while digits.last() == Some(&b'0') {
            digits.pop();
            exponent = exponent.saturating_add(1);
        }
        if digits.is_empty() {
            return Decimal {
                negative: false,
                digits,
                exponent: 0,
            };
        }
        Decimal {
            negative,
            digits,
            exponent,
        }
    }

    fn is_integer_above_max_safe(&self) -> bool {
        if self.digits.is_empty() || self.exponent < 0 {
            return false;
        }
        let magnitude = (self.digits.len() as i64).saturating_add(self.exponent);
        let limit = MAX_SAFE_DIGITS.len() as i64;
        match magnitude.cmp(&limit) {
            Ordering::Greater => true,
            Ordering::Less => false,
            // Same number of digits: padding `digits` with zeros can only
            // make it smaller, so a strictly greater prefix decides.
            Ordering::Equal => MAX_SAFE_DIGITS
                .get(..self.digits.len())
                .is_some_and(|prefix| self.digits.as_slice() > prefix),
        }
    }
}

// ---------------------------------------------------------------------------
// Serializer
// ---------------------------------------------------------------------------

enum WriteFrame<'a> {
    /// Remaining elements, and whether the next one is the first.
    Array(std::slice::Iter<'a, Value>, bool),
    /// Remaining members, and whether the next one is the first.
    Object(Members<'a>, bool),
}

/// An object's members in RFC 8785 order.
enum Members<'a> {
    /// The map already iterates in that order.
    InOrder(serde_json::map::Iter<'a>),
    /// Re-sorted by UTF-16 code units.
    Resorted(std::vec::IntoIter<(&'a String, &'a Value)>),
}

impl<'a> Members<'a> {
    fn of(map: &'a Map<String, Value>) -> Self {
        // serde_json's BTreeMap iterates in code point order, which matches
        // UTF-16 order unless names mix U+E000..=U+FFFF with supplementary
        // characters. Checking costs no allocation; re-sorting costs one.
        // (Checking rather than assuming also keeps this correct should
        // serde_json's `preserve_order` feature ever get enabled.)
        let keys = map.keys();
        let in_order = keys
            .clone()
            .zip(keys.skip(1))
            .all(|(a, b)| cmp_utf16(a, b) == Ordering::Less);
        if in_order {
            Members::InOrder(map.iter())
        } else {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| cmp_utf16(a.0, b.0));
            Members::Resorted(members.into_iter())
        }
    }
}

impl<'a> Iterator for Members<'a> {
    type Item = (&'a String, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Members::InOrder(iter) => iter.next(),
            Members::Resorted(iter) => iter.next(),
        }
    }
}

/// Orders strings by their UTF-16 code units, as RFC 8785 §3.2.3 requires.
///
/// UTF-8 byte order equals code point order, which differs from UTF-16 order
/// only when a character in U+E000..=U+FFFF meets a supplementary one (whose
/// surrogates sort below U+E000). So compare bytes, and only at the first
/// difference decode the two characters and compare their UTF-16 keys.
fn cmp_utf16(a: &str, b: &str) -> Ordering {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let common = ab.iter().zip(bb).take_while(|(x, y)| x == y).count();
    let (Some(&x), Some(&y)) = (ab.get(common), bb.get(common)) else {
        return ab.len().cmp(&bb.len());
    };
    // Lead bytes below 0xEE belong to characters below U+E000, where byte
    // order is already right.
    if x < 0xEE && y < 0xEE {
        return x.cmp(&y);
    }
    // The differing characters start at the same offset in both strings,
    // because everything before `common` is identical.
    let mut start = common;
    while start > 0 && !a.is_char_boundary(start) {
        start -= 1;
    }
    let ca = a.get(start..).and_then(|s| s.chars().next());
    let cb = b.get(start..).and_then(|s| s.chars().next());
    match (ca, cb) {
        (Some(ca), Some(cb)) => utf16_key(ca).cmp(&utf16_key(cb)),
        _ => x.cmp(&y),
    }
}

/// Maps a character to a number that orders like its UTF-16 encoding:
/// U+E000..=U+FFFF move above all supplementary characters.
fn utf16_key(c: char) -> u32 {
    let cp = u32::from(c);
    if (0xE000..=0xFFFF).contains(&cp) {
        cp + 0x20_0000
    } else {
        cp
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s.as_bytes();
    loop {
        let run = plain_run(rest);
        out.extend_from_slice(rest.get(..run).unwrap_or_default());
        let Some((&b, after)) = rest.get(run..).and_then(<[u8]>::split_first) else {
            break;
        };
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x09 => b"\\t",
            0x0A => b"\\n",
            0x0C => b"\\f",
            0x0D => b"\\r",
            _ => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xF)],
            ],
        };
        out.extend_from_slice(escape);
        rest = after;
    }
    out.push(b'"');
}

/// Whether a byte cannot stand for itself inside a JSON string: the bytes the parser
/// stops at and the writer escapes.
fn is_special(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// How many leading bytes of `bytes` are not [`is_special`]: eight bytes per step (one
/// SWAR test per word instead of three compares per byte), then byte by byte.
fn plain_run(bytes: &[u8]) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    for chunk in bytes.chunks_exact(8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(word);
        let quote = v ^ (ONES * u64::from(b'"'));
        let backslash = v ^ (ONES * u64::from(b'\\'));
        // Each term sets a byte's high bit where that byte is below 0x20, is '"', is
        // '\\'; borrows only run upward from a true hit, so the lowest set bit is exact.
        let hits =
            (v.wrapping_sub(ONES * 0x20) | quote.wrapping_sub(ONES) | backslash.wrapping_sub(ONES))
                & !v
                & HIGH;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    let tail = bytes.get(i..).unwrap_or_default();
    i + tail
        .iter()
        .position(|&b| is_special(b))
        .unwrap_or(tail.len())
}

fn write_json_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        if u <= MAX_SAFE {
            return write_u64(u, out);
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_SAFE {
            out.push(b'-');
            return write_u64(i.unsigned_abs(), out);
        }
    }
    // Larger integers are written as the double they round to, because that
    // is what every JCS implementation will read them as.
    match n.as_f64() {
        Some(f) => format_number(f, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_u64(mut v: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn opts(numbers: NumberPolicy) -> ParseOptions {
        ParseOptions {
            numbers,
            ..ParseOptions::default()
        }
    }

    fn jcs(input: &str) -> Result<Value, CanonError> {
        parse(input.as_bytes(), &opts(NumberPolicy::Jcs))
    }

    fn canon_str(value: &Value) -> String {
        String::from_utf8(to_canonical_vec(value)).unwrap()
    }

    fn fmt(f: f64) -> String {
        let mut out = Vec::new();
        format_number(f, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn syntax_at(input: &str) -> (usize, usize) {
        match parse(input.as_bytes(), &ParseOptions::default()) {
            Err(CanonError::InvalidJson { line, column, .. }) => (line, column),
            other => panic!("{input:?}: expected InvalidJson, got {other:?}"),
        }
    }

    fn precision(input: &str, policy: NumberPolicy) -> Option<(String, Option<String>)> {
        match parse(input.as_bytes(), &opts(policy)) {
            Ok(_) => None,
            Err(CanonError::NumberPrecision {
                pointer, canonical, ..
            }) => Some((pointer, canonical)),
            Err(e) => panic!("{input:?}: unexpected error {e:?}"),
        }
    }

    // --- RFC 8785 known answers -------------------------------------------

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let vectors: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, expected) in vectors {
            let f = f64::from_bits(bits);
            assert_eq!(fmt(f), expected, "bits {bits:#018x}");
            // The same number inside a Value must serialize identically.
            let value = Value::Number(Number::from_f64(f).unwrap());
            assert_eq!(canon_str(&value), expected, "bits {bits:#018x}");
            // And the text must read back to the same double (zero sign aside).
            let back = jcs(expected).unwrap().as_f64().unwrap();
            assert!(back == f, "bits {bits:#018x} read back as {back}");
        }
    }

    #[test]
    fn ecmascript_number_edges() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1"),
            (-1.0, "-1"),
            (0.5, "0.5"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (1.5e300, "1.5e+300"),
            (-1.5e-300, "-1.5e-300"),
            (123456789.0, "123456789"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for &(f, expected) in cases {
            assert_eq!(fmt(f), expected, "{f:e}");
        }
        assert_eq!(fmt(-0.0), "0");
        assert_eq!(fmt(f64::NAN), "null");
        assert_eq!(fmt(f64::INFINITY), "null");
        assert_eq!(fmt(f64::NEG_INFINITY), "null");
    }

    #[test]
    fn integers_in_values() {
        let cases: &[(Value, &str)] = &[
            (json!(0), "0"),
            (json!(-1), "-1"),
            (json!(9007199254740992u64), "9007199254740992"),
            (json!(-9007199254740992i64), "-9007199254740992"),
            // Beyond 2^53, written as the double they round to.
            (json!(9007199254740993u64), "9007199254740992"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(i64::MIN), "-9223372036854776000"),
            (json!(1e21), "1e+21"),
        ];
        for (value, expected) in cases {
            assert_eq!(canon_str(value), *expected);
        }
    }

    #[test]
    fn rfc8785_sorting_example() {
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis",
            "\u0435": "Cyrillic Small Letter Ie"
        }"#;
        let value = jcs(input).unwrap();
        let out = canon_str(&value);
        assert_eq!(
            out,
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
             \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\
             \"\u{435}\":\"Cyrillic Small Letter Ie\",\"\u{20ac}\":\"Euro Sign\",\
             \"\u{1f600}\":\"Emoji: Grinning Face\",\
             \"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
    }

    #[test]
    fn rfc8785_serialization_example() {
        let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
        let value = jcs(input).unwrap();
        assert_eq!(
            canon_str(&value),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        // The default policy accepts it too: nothing here is a big integer.
        assert!(parse(input.as_bytes(), &ParseOptions::default()).is_ok());
    }

    #[test]
    fn escapes_every_control_character() {
        let all: String = (0u8..0x20).map(char::from).collect();
        let out = canon_str(&Value::String(all));
        let expected = concat!(
            r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007"#,
            r#"\b\t\n\u000b\f\r\u000e\u000f"#,
            r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017"#,
            r#"\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#
        );
        assert_eq!(out, expected);
        let others = "\"\\/\u{7f}\u{2028}\u{2029}é\u{1f600}";
        assert_eq!(
            canon_str(&Value::String(others.to_owned())),
            "\"\\\"\\\\/\u{7f}\u{2028}\u{2029}é\u{1f600}\""
        );
        // Round trip through the parser.
        let text = canon_str(&Value::String((0u8..0x80).map(char::from).collect()));
        assert_eq!(
            jcs(&text).unwrap(),
            Value::String((0u8..0x80).map(char::from).collect())
        );
    }

    #[test]
    fn non_bmp_member_names_sort_by_utf16() {
        // Code point order would put U+E000 and U+FFFF before U+10000; UTF-16
        // order puts the surrogate pairs (0xD800..) first.
        let value = json!({
            "\u{e000}": 1,
            "\u{ffff}": 2,
            "\u{10000}": 3,
            "\u{10ffff}": 4,
            "\u{d7ff}": 5,
            "a\u{1f600}": 6,
            "a\u{fffd}": 7,
            "a": 8,
        });
        assert_eq!(
            canon_str(&value),
            "{\"a\":8,\"a\u{1f600}\":6,\"a\u{fffd}\":7,\"\u{d7ff}\":5,\"\u{10000}\":3,\
             \"\u{10ffff}\":4,\"\u{e000}\":1,\"\u{ffff}\":2}"
        );
        assert_eq!(cmp_utf16("\u{e000}", "\u{10000}"), Ordering::Greater);
        assert_eq!(cmp_utf16("ab", "abc"), Ordering::Less);
        assert_eq!(cmp_utf16("", ""), Ordering::Equal);
    }

    #[test]
    fn whitespace_free_nested_output() {
        let value =
            jcs(" { \"b\" : [ 1 , { } , [ ] , \"x\" ] ,\r\n\t\"a\" : { \"z\" : null } } ").unwrap();
        assert_eq!(canon_str(&value), r#"{"a":{"z":null},"b":[1,{},[],"x"]}"#);
        let mut out = b"prefix:".to_vec();
        write_canonical(&value, &mut out);
        assert!(out.starts_with(b"prefix:{\"a\""));
    }

    // --- Parser acceptance --------------------------------------------------

    #[test]
    fn accepts_valid_json() {
        let cases: &[(&str, Value)] = &[
            ("null", Value::Null),
            ("true", json!(true)),
            (" false ", json!(false)),
            ("0", json!(0)),
            ("-0", json!(0)),
            ("-12", json!(-12)),
            ("1.5", json!(1.5)),
            ("1e2", json!(100.0)),
            ("1E+2", json!(100.0)),
            ("1e-2", json!(0.01)),
            ("0.0", json!(0.0)),
            ("\"\"", json!("")),
            (r#""\"\\\/\b\f\n\r\t""#, json!("\"\\/\u{8}\u{c}\n\r\t")),
            (r#""\u00e9\u00C9\ud83d\ude00""#, json!("éÉ\u{1f600}")),
            ("\"é😀\"", json!("é😀")),
            ("[]", json!([])),
            ("{}", json!({})),
            ("[[[]]]", json!([[[]]])),
            (
                r#"{"a":{"b":[1,"2",null]}}"#,
                json!({"a":{"b":[1,"2",null]}}),
            ),
            ("\t\n\r [1]\t\n\r ", json!([1])),
        ];
        for (input, expected) in cases {
            assert_eq!(&jcs(input).unwrap(), expected, "{input:?}");
        }
    }

    #[test]
    fn integers_stored_exactly_only_up_to_2_pow_53() {
        let v = jcs("9007199254740992").unwrap();
        assert_eq!(v.as_u64(), Some(9007199254740992));
        let v = jcs("-9007199254740992").unwrap();
        assert_eq!(v.as_i64(), Some(-9007199254740992));
        // Beyond 2^53 the stored value is the double JCS would print.
        let v = jcs("9007199254740993").unwrap();
        assert!(v.is_f64());
        assert_eq!(v.as_f64(), Some(9007199254740992.0));
        let v = jcs("18446744073709551616").unwrap();
        assert_eq!(canon_str(&v), "18446744073709552000");
        // Integer-valued but not in integer form: stays a double.
        assert!(jcs("1.0").unwrap().is_f64());
        assert_eq!(canon_str(&jcs("1.0").unwrap()), "1");
        assert_eq!(canon_str(&jcs("-0.0").unwrap()), "0");
        assert_eq!(canon_str(&jcs("-0").unwrap()), "0");
    }

    #[test]
    fn rejects_invalid_syntax() {
        let cases = [
            "",
            " ",
            "\u{feff}{}",
            "{",
            "[",
            "[1",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\" 1}",
            "{a:1}",
            "{'a':1}",
            "{\"a\":1,}",
            "{\"a\":1 \"b\":2}",
            "[1 2]",
            "01",
            "-01",
            "+1",
            ".5",
            "1.",
            "1.e5",
            "1e",
            "1e+",
            "-",
            "0x10",
            "NaN",
            "Infinity",
            "-Infinity",
            "tru",
            "nul",
            "True",
            "\"abc",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\u12G4\"",
            "\"\\\"",
            "\"a\u{1}b\"",
            "\"tab\there\"",
            "\"\u{1f}\"",
            "1 2",
            "{} []",
            "nullx",
            "[1]]",
            "\u{a0}1",
            "\u{b}1",
            "\u{c}1",
            "[1,\u{2028}2]",
        ];
        for input in cases {
            let result = parse(input.as_bytes(), &opts(NumberPolicy::Jcs));
            assert!(
                matches!(result, Err(CanonError::InvalidJson { .. })),
                "{input:?} gave {result:?}"
            );
        }
    }

    // --- Error variants and positions --------------------------------------

    #[test]
    fn invalid_json_positions() {
        assert_eq!(syntax_at(r#"{"a":1,}"#), (1, 8));
        assert_eq!(syntax_at(""), (1, 1));
        assert_eq!(syntax_at("\u{feff}{}"), (1, 1));
        assert_eq!(syntax_at("[1 2]"), (1, 4));
        assert_eq!(syntax_at("01"), (1, 2));
        assert_eq!(syntax_at("1."), (1, 3));
        assert_eq!(syntax_at("{}x"), (1, 3));
        assert_eq!(syntax_at("{\n  \"a\": 1,\n  \"b\" 2\n}"), (3, 7));
        assert_eq!(syntax_at("[\r\n1,\r\n@]"), (3, 1));
        // Columns count characters, not bytes.
        assert_eq!(syntax_at("[\"é😀\", x]"), (1, 8));
        assert_eq!(syntax_at("{\"k\":\"v\u{1}\"}"), (1, 8));
        assert_eq!(syntax_at("\"abc"), (1, 5));
        assert_eq!(syntax_at("\"\\q\""), (1, 2));
        assert_eq!(syntax_at("\"\\u00G0\""), (1, 6));
    }

    #[test]
    fn invalid_json_messages_are_readable() {
        let err = parse(br#"{"a":1,}"#, &ParseOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid JSON at line 1, column 8: expected a member name in double quotes, found '}'"
        );
        let err = parse(b"[1 2]", &ParseOptions::default()).unwrap_err();
        assert!(err.to_string().contains("expected ',' or ']'"), "{err}");
        let err = parse(b"", &ParseOptions::default()).unwrap_err();
        assert!(err.to_string().contains("end of input"), "{err}");
    }

    #[test]
    fn invalid_utf8() {
        let cases: &[(&[u8], usize)] = &[
            (b"\xff", 0),
            (b"\"abc\xff\"", 4),
            (b"[\"\xc3\"]", 2),
            (b"\"\xed\xa0\x80\"", 1), // an encoded surrogate is not UTF-8
            (b"{\"\xc3\xa9\":\"\xe2\x82\"}", 7),
        ];
        for &(input, offset) in cases {
            assert_eq!(
                parse(input, &ParseOptions::default()),
                Err(CanonError::InvalidUtf8 { offset }),
                "{input:?}"
            );
        }
    }

    #[test]
    fn lone_surrogates() {
        let cases: &[(&str, usize, usize)] = &[
            (r#""\ud800""#, 1, 2),
            (r#""\udc00""#, 1, 2),
            (r#""\uDBFF""#, 1, 2),
            (r#""ab\ud800x""#, 1, 4),
            (r#""\ud800\u0041""#, 1, 2),
            (r#""\ud800\ud800""#, 1, 2),
            (r#""\ud83d\ude00\ude00""#, 1, 14),
            ("{\n \"k\": \"\\udfff\"}", 2, 8),
            ("{\"\\ud800\":1}", 1, 3),
        ];
        for &(input, line, column) in cases {
            assert_eq!(
                parse(input.as_bytes(), &ParseOptions::default()),
                Err(CanonError::LoneSurrogate { line, column }),
                "{input:?}"
            );
        }
        // A broken second escape is a syntax error, not a lone surrogate.
        assert!(matches!(
            jcs(r#""\ud800\u00""#),
            Err(CanonError::InvalidJson { .. })
        ));
    }

    #[test]
    fn duplicate_keys() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"k":1,"k":2}"#, "", "k"),
            (r#"{"x":{"k":1,"k":2}}"#, "/x", "k"),
            (r#"[0,{"a":1,"b":2,"a":3}]"#, "/1", "a"),
            (r#"{"a/b":[{"c~d":{"e":1,"e":1}}]}"#, "/a~1b/0/c~0d", "e"),
            (r#"{"":{"z":1,"z":2}}"#, "/", "z"),
            // Compared after unescaping.
            (r#"{"é":1,"\u00e9":2}"#, "", "é"),
            (r#"{"a":[],"\u0061":{}}"#, "", "a"),
        ];
        for &(input, pointer, key) in cases {
            assert_eq!(
                jcs(input),
                Err(CanonError::DuplicateKey {
                    pointer: pointer.to_owned(),
                    key: key.to_owned()
                }),
                "{input:?}"
            );
        }
        let err = jcs(r#"{"x":{"k":1,"k":2}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"duplicate member name "k" in the object at JSON pointer "/x""#
        );
        // Names and pointers are quoted as JSON strings, control characters escaped.
        let err = jcs(r#"{"\u0010":{"k\"":1,"k\"":2}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"duplicate member name "k\"" in the object at JSON pointer "/\u0010""#
        );
        // Same name in different objects is fine; so are names differing only
        // in normalization form.
        assert!(jcs(r#"{"a":{"a":1},"b":{"a":2}}"#).is_ok());
        assert!(jcs("{\"\u{e9}\":1,\"e\u{301}\":2}").is_ok());
    }

    #[test]
    fn too_deep() {
        let limit = |n: usize| ParseOptions {
            max_depth: n,
            numbers: NumberPolicy::Safe,
        };
        assert!(parse(b"[[]]", &limit(2)).is_ok());
        assert_eq!(
            parse(b"[[[]]]", &limit(2)),
            Err(CanonError::TooDeep { limit: 2 })
        );
        assert_eq!(
            parse(br#"{"a":{"b":{}}}"#, &limit(2)),
            Err(CanonError::TooDeep { limit: 2 })
        );
        assert!(parse(br#"{"a":{"b":1}}"#, &limit(2)).is_ok());
        assert!(parse(b"1", &limit(0)).is_ok());
        assert_eq!(
            parse(b"[]", &limit(0)),
            Err(CanonError::TooDeep { limit: 0 })
        );
        let at = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(parse(at(128).as_bytes(), &ParseOptions::default()).is_ok());
        assert_eq!(
            parse(at(129).as_bytes(), &ParseOptions::default()),
            Err(CanonError::TooDeep { limit: 128 })
        );
        // Unclosed: the depth check fires before the missing brackets matter.
        let open = "[".repeat(100_000);
        assert_eq!(
            parse(open.as_bytes(), &ParseOptions::default()),
            Err(CanonError::TooDeep { limit: 128 })
        );
        let open = "{\"a\":".repeat(100_000);
        assert_eq!(
            parse(open.as_bytes(), &ParseOptions::default()),
            Err(CanonError::TooDeep { limit: 128 })
        );
        assert_eq!(
            CanonError::TooDeep { limit: 128 }.to_string(),
            "nesting is deeper than the limit of 128"
        );
    }

    #[test]
    fn depth_10_000_on_a_2_mib_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                let n = 10_000;
                let opts = ParseOptions {
                    max_depth: n,
                    numbers: NumberPolicy::Strict,
                };
                let mut text = String::new();
                for _ in 0..n / 2 {
                    text.push_str("{\"k\":[");
                }
                text.push_str("1.5");
                for _ in 0..n / 2 {
                    text.push_str("]}");
                }
                let value = parse(text.as_bytes(), &opts).unwrap();
                assert_eq!(to_canonical_vec(&value), text.as_bytes());
                // serde_json's recursive Drop would overflow here in debug builds.
                dismantle(value);

                let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
                let value = parse(arrays.as_bytes(), &opts).unwrap();
                assert_eq!(to_canonical_vec(&value), arrays.as_bytes());
                // serde_json's recursive Drop would overflow here in debug builds.
                dismantle(value);

                let deeper = format!("{}{}", "[".repeat(n + 1), "]".repeat(n + 1));
                assert_eq!(
                    parse(deeper.as_bytes(), &opts),
                    Err(CanonError::TooDeep { limit: n })
                );
                // Error paths that discard deep values must not overflow either.
                // (Objects: their drop glue needs the most stack per level.)
                let deep = format!("{}1{}", "{\"b\":".repeat(n - 1), "}".repeat(n - 1));
                for bad in [
                    format!("[{deep}] x"),
                    format!("[{deep},"),
                    format!("{{\"a\":{deep},"),
                    format!("{{\"a\":1,\"a\":{deep}}}"),
                    format!("{{\"a\":{deep},\"a\":1}}"),
                ] {
                    assert!(parse(bad.as_bytes(), &opts).is_err());
                }
                // Errors deep inside report full pointers without recursion.
                let bad = format!("{}9007199254740993{}", "[".repeat(n), "]".repeat(n));
                let err = parse(bad.as_bytes(), &opts).unwrap_err();
                assert!(
                    matches!(&err, CanonError::NumberPrecision { pointer, .. } if pointer.len() == 2 * n)
                );
            })
            .unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn number_precision_pointers() {
        assert_eq!(
            precision(r#"{"a":[1,{"b":9007199254740993}]}"#, NumberPolicy::Safe),
            Some(("/a/1/b".to_owned(), Some("9007199254740992".to_owned())))
        );
        assert_eq!(
            precision("9007199254740993", NumberPolicy::Safe),
            Some((String::new(), Some("9007199254740992".to_owned())))
        );
        assert_eq!(
            precision(r#"{"x/y":{"~":[0,0,1e400]}}"#, NumberPolicy::Jcs),
            Some(("/x~1y/~0/2".to_owned(), None))
        );
        let err = parse(b"[1e400]", &ParseOptions::default()).unwrap_err();
        assert_eq!(
            err,
            CanonError::NumberPrecision {
                pointer: "/0".to_owned(),
                input: "1e400".to_owned(),
                canonical: None
            }
        );
        assert_eq!(
            err.to_string(),
            r#"number 1e400 at JSON pointer "/0" cannot be canonicalized without changing its value (it is outside the range of an IEEE 754 double)"#
        );
        let err = parse(b"[9007199254740993]", &ParseOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"number 9007199254740993 at JSON pointer "/0" cannot be canonicalized without changing its value (RFC 8785 would write it as 9007199254740992)"#
        );
    }

    #[test]
    fn number_policies() {
        use NumberPolicy::{Jcs, Safe, Strict};
        // (input, rejected under Safe, Jcs, Strict)
        let cases: &[(&str, bool, bool, bool)] = &[
            ("0", false, false, false),
            ("-0", false, false, false),
            ("-0.0", false, false, false),
            ("0e-999999999999999999999", false, false, false),
            ("1.0", false, false, false),
            ("4.50", false, false, false),
            ("1E30", false, false, false),
            ("1e+30", false, false, false),
            ("10e29", false, false, false),
            ("1.5e300", false, false, false),
            ("9007199254740992", false, false, false),
            ("-9007199254740992", false, false, false),
            ("9007199254740992.0", false, false, false),
            ("9007199254740993", true, false, true),
            ("-9007199254740993", true, false, true),
            ("9007199254740993.0", true, false, true),
            ("90071992547409930e-1", true, false, true),
            ("9007199254740994", false, false, false),
            ("9007199254740995", true, false, true),
            ("18446744073709551615", true, false, true),
            // 2^64 and 2^68 are exact doubles, yet JCS prints them with
            // trailing zeros (a different decimal value), so they are refused.
            ("18446744073709551616", true, false, true),
            ("18446744073709552000", false, false, false),
            ("123456789012345678901234567890", true, false, true),
            ("295147905179352830000", false, false, false),
            ("295147905179352825856", true, false, true),
            ("12345678901234567890.5", false, false, true),
            ("9007199254740992.5", false, false, true),
            ("0.30000000000000000001", false, false, true),
            ("0.1", false, false, false),
            ("333333333.33333329", false, false, true),
            // Underflow to zero is out of range except under pure JCS.
            ("1e-400", true, false, true),
            ("-1e-400", true, false, true),
            ("0e-400", false, false, false),
            ("-0e-400", false, false, false),
            ("0.000", false, false, false),
            ("0.000e-999", false, false, false),
            ("5e-324", false, false, false),
            ("2e-324", true, false, true),
            // Rounds to the smallest subnormal, not to zero: a fraction's rounding.
            ("3e-324", false, false, true),
            ("1e400", true, true, true),
            ("-1e400", true, true, true),
            ("1.7976931348623157e308", false, false, false),
            ("1.7976931348623159e308", true, true, true),
        ];
        for &(input, safe, jcs_rej, strict) in cases {
            for (policy, expected) in [(Safe, safe), (Jcs, jcs_rej), (Strict, strict)] {
                assert_eq!(
                    precision(input, policy).is_some(),
                    expected,
                    "{input} under {policy:?}"
                );
            }
        }
        assert_eq!(
            precision("0.30000000000000000001", Strict),
            Some((String::new(), Some("0.3".to_owned())))
        );
        assert_eq!(
            precision("[1e-400]", Strict),
            Some(("/0".to_owned(), Some("0".to_owned())))
        );
        // Values that pass are stored as the rounded double.
        assert_eq!(jcs("1e-400").unwrap().as_f64(), Some(0.0));
        assert_eq!(
            canon_str(&parse(b"0.30000000000000000001", &ParseOptions::default()).unwrap()),
            "0.3"
        );
    }

    #[test]
    fn underflow_to_zero_is_out_of_range_except_under_jcs() {
        use NumberPolicy::{Safe, Strict};
        let long = format!("0.{}1", "0".repeat(400));
        for input in [
            "1e-400",
            "-1e-400",
            "2e-324",
            "1e-1000000",
            "[1e-400]",
            &long,
        ] {
            for policy in [Safe, Strict] {
                let (_, canonical) = precision(input, policy)
                    .unwrap_or_else(|| panic!("{input} under {policy:?} passed"));
                assert_eq!(canonical.as_deref(), Some("0"), "{input} under {policy:?}");
            }
            let value = jcs(input).unwrap();
            assert_eq!(canon_str(&value).trim_matches(['[', ']']), "0", "{input}");
        }
        let err = parse(b"[1e-400]", &ParseOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"number 1e-400 at JSON pointer "/0" cannot be canonicalized without changing its value (it is too small for an IEEE 754 double: RFC 8785 would write it as 0)"#
        );
        // Literals that are zero are zero under every policy, whatever their exponent.
        for input in ["0", "-0", "0e-400", "-0.0e-400", "0.000", "0E+400"] {
            for policy in POLICIES {
                let value = parse(input.as_bytes(), &opts(policy)).unwrap();
                assert_eq!(canon_str(&value), "0", "{input} under {policy:?}");
            }
        }
    }

    #[test]
    fn number_policy_deserializes_lowercase() {
        #[derive(serde::Deserialize)]
        struct Config {
            numbers: NumberPolicy,
        }
        for (text, policy) in [
            ("safe", NumberPolicy::Safe),
            ("jcs", NumberPolicy::Jcs),
            ("strict", NumberPolicy::Strict),
        ] {
            let json = format!(r#"{{"numbers":"{text}"}}"#);
            let config: Config = serde_json::from_str(&json).unwrap();
            assert_eq!(config.numbers, policy);
        }
        assert!(serde_json::from_str::<Config>(r#"{"numbers":"Safe"}"#).is_err());
        assert_eq!(NumberPolicy::default(), NumberPolicy::Safe);
        let defaults = ParseOptions::default();
        assert_eq!(defaults.max_depth, 128);
        assert_eq!(defaults.numbers, NumberPolicy::Safe);
    }

    #[test]
    fn long_exponents_compensated_by_long_mantissas() {
        // std's f64 parser saturates the explicit exponent near 655360.
        let n = 700_000;
        let zeros = "0".repeat(n);
        for policy in POLICIES {
            let big = format!("1{zeros}e-{n}");
            assert_eq!(
                parse(big.as_bytes(), &opts(policy)).unwrap().as_f64(),
                Some(1.0)
            );
            let small = format!("-0.{zeros}15e{}", n + 1);
            assert_eq!(
                parse(small.as_bytes(), &opts(policy)).unwrap().as_f64(),
                Some(-1.5)
            );
        }
        assert_eq!(
            precision("1e1000000", NumberPolicy::Jcs),
            Some((String::new(), None))
        );
        assert_eq!(
            precision("-1e+0001000000", NumberPolicy::Jcs),
            Some((String::new(), None))
        );
        assert_eq!(jcs("1e-1000000").unwrap().as_f64(), Some(0.0));
        assert_eq!(jcs("0e1000000").unwrap().as_f64(), Some(0.0));
        assert_eq!(jcs("1.5e0000000000001").unwrap().as_f64(), Some(15.0));
        assert_eq!(
            precision("1e-1000000", NumberPolicy::Strict),
            Some((String::new(), Some("0".to_owned())))
        );
    }

    #[test]
    fn decimal_normalisation() {
        let d = |s: &str| Decimal::new(s);
        assert_eq!(d("4.50"), d("45e-1"));
        assert_eq!(d("-0"), d("0.000e10"));
        assert_eq!(d("1E30"), d("1e+30"));
        assert_eq!(d("100"), d("1e2"));
        assert_ne!(d("1"), d("-1"));
        assert_ne!(d("0.3"), d("0.30000000000000000001"));
        assert!(d("9007199254740993").is_integer_above_max_safe());
        assert!(d("9007199254741000").is_integer_above_max_safe());
        assert!(d("900719925474100e1").is_integer_above_max_safe());
        assert!(!d("900719925474099e1").is_integer_above_max_safe());
        assert!(!d("9007199254740992").is_integer_above_max_safe());
        assert!(!d("9007199254740993.5").is_integer_above_max_safe());
        assert!(d("-1e17").is_integer_above_max_safe());
        assert!(!d("0").is_integer_above_max_safe());
    }

    // --- Property tests -----------------------------------------------------

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9~/ ]{0,6}",
            prop::collection::vec(any::<char>(), 0..8).prop_map(String::from_iter),
            // Characters whose UTF-8 and UTF-16 orders disagree.
            prop::collection::vec(
                prop_oneof![
                    Just('a'),
                    Just('\u{e000}'),
                    Just('\u{ffff}'),
                    Just('\u{10000}'),
                    Just('\u{1f600}'),
                    Just('\u{7f}'),
                    Just('\u{1f}'),
                ],
                0..4
            )
            .prop_map(String::from_iter),
        ]
    }

    fn arb_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<u64>().prop_map(f64::from_bits),
            any::<f64>(),
            any::<i64>().prop_map(|i| i as f64),
            (any::<i32>(), -30i32..30).prop_map(|(m, e)| f64::from(m) * 10f64.powi(e)),
        ]
        .prop_filter("finite", |f| f.is_finite())
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            arb_f64().prop_map(|f| Value::Number(Number::from_f64(f).unwrap())),
            arb_string().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((arb_string(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Structural equality with numbers compared as the doubles JCS sees,
    /// within a relative `tolerance`.
    fn same_value(a: &Value, b: &Value, tolerance: f64) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                x == y || (x - y).abs() <= x.abs().max(y.abs()) * tolerance
            }
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q, tolerance))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y)
                        .all(|((k1, v1), (k2, v2))| k1 == k2 && same_value(v1, v2, tolerance))
            }
            _ => a == b,
        }
    }

    fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
        for &(at, kind, byte) in edits {
            let at = if bytes.is_empty() {
                0
            } else {
                at % bytes.len()
            };
            match kind % 4 {
                0 if !bytes.is_empty() => {
                    bytes[at] = byte;
                }
                1 => bytes.insert(at, byte),
                2 if !bytes.is_empty() => {
                    bytes.remove(at);
                }
                _ => {
                    let special = b"{}[],:\"\\u0e.-+ \n";
                    bytes.insert(at, special[byte as usize % special.len()]);
                }
            }
        }
        bytes
    }

    const POLICIES: [NumberPolicy; 3] =
        [NumberPolicy::Safe, NumberPolicy::Jcs, NumberPolicy::Strict];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn canonicalization_is_idempotent(value in arb_value()) {
            let once = to_canonical_vec(&value);
            let reparsed = parse(&once, &opts(NumberPolicy::Jcs)).unwrap();
            prop_assert_eq!(to_canonical_vec(&reparsed), once.clone());
            // Canonical output is itself exact, so even Strict accepts it.
            let strict = parse(&once, &opts(NumberPolicy::Strict)).unwrap();
            prop_assert_eq!(to_canonical_vec(&strict), once);
        }

        #[test]
        fn canonical_form_parses_back_to_the_value(value in arb_value()) {
            let text = to_canonical_vec(&value);
            let back = parse(&text, &opts(NumberPolicy::Jcs)).unwrap();
            prop_assert!(same_value(&value, &back, 0.0), "{:?} vs {:?}", value, back);
            // serde_json reads the same JSON. Without its float_roundtrip
            // feature its float parsing may be off by an ulp, hence the
            // tolerance.
            let theirs: Value = serde_json::from_slice(&text).unwrap();
            prop_assert!(same_value(&theirs, &back, 1e-15), "{:?} vs {:?}", theirs, back);
        }

        #[test]
        fn format_number_round_trips(f in arb_f64()) {
            let mut text = Vec::new();
            format_number(f, &mut text);
            let s = std::str::from_utf8(&text).unwrap();
            let expected = if f == 0.0 { 0.0 } else { f };
            prop_assert_eq!(s.parse::<f64>().unwrap().to_bits(), expected.to_bits());
            for policy in POLICIES {
                let parsed = parse(&text, &opts(policy)).unwrap();
                prop_assert_eq!(parsed.as_f64().unwrap().to_bits(), expected.to_bits());
            }
        }

        #[test]
        fn utf16_order_matches_encode_utf16(a in arb_string(), b in arb_string()) {
            prop_assert_eq!(cmp_utf16(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }

        #[test]
        fn parse_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            for policy in POLICIES {
                let _ = parse(&bytes, &opts(policy));
            }
        }

        #[test]
        fn parse_never_panics_on_mutated_json(
            value in arb_value(),
            edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
        ) {
            let bytes = mutate(to_canonical_vec(&value), &edits);
            for policy in POLICIES {
                let ours = parse(&bytes, &opts(policy));
                let theirs = serde_json::from_slice::<Value>(&bytes);
                // Whatever we accept is JSON to serde_json too; whatever
                // serde_json accepts we accept unless we have a stricter rule.
                if ours.is_ok() {
                    prop_assert!(theirs.is_ok(), "{:?}", String::from_utf8_lossy(&bytes));
                }
                if theirs.is_ok() && policy == NumberPolicy::Jcs {
                    prop_assert!(
                        matches!(ours, Ok(_) | Err(CanonError::DuplicateKey { .. })),
                        "{:?}: {:?}", String::from_utf8_lossy(&bytes), ours
                    );
                }
                if let Err(e) = ours {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    /// ryu-js's answer, which [`write_short_fixed`] must reproduce whenever it answers.
    fn ryu(f: f64) -> String {
        ryu_js::Buffer::new().format_finite(f).to_owned()
    }

    fn short_fixed(f: f64) -> Option<String> {
        let mut out = Vec::new();
        write_short_fixed(f, &mut out).then(|| String::from_utf8(out).unwrap())
    }

    #[test]
    fn short_fixed_formatting_matches_ryu_js() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut candidates: Vec<f64> = vec![
            1e-6,
            -1e-6,
            1e-7,
            0.1 + 0.2,
            (1u64 << 50) as f64,
            ((1u64 << 50) - 1) as f64,
            (1u64 << 50) as f64 - 0.5,
            123456789.0,
            1424953923781206.2,
            333333333.3333332,
            f64::MIN_POSITIVE,
            f64::MAX,
        ];
        for _ in 0..100_000 {
            let r = next();
            // Arbitrary doubles: almost never short, must be left alone or match.
            candidates.push(f64::from_bits(r));
            // Decimals with 0-9 fraction digits across magnitudes, and their neighbours.
            let digits = (r % 10) as i32;
            let int = (next() >> (next() % 64)) as f64;
            let d = int / 10f64.powi(digits);
            let up = f64::from_bits(d.to_bits() + 1);
            let down = f64::from_bits(d.to_bits().saturating_sub(1));
            candidates.extend([d, -d, up, down, d * 1e-6, d * 1e-3]);
        }
        let mut answered = 0;
        for f in candidates {
            if !f.is_finite() || f == 0.0 {
                continue;
            }
            if let Some(ours) = short_fixed(f) {
                answered += 1;
                assert_eq!(ours, ryu(f), "bits {:#018x}", f.to_bits());
            }
        }
        assert!(answered > 100_000, "fast path answered only {answered}");
        // Every cent price up to 10,000.00, as payloads carry them.
        for cents in 1..1_000_000u64 {
            let f = cents as f64 / 100.0;
            assert_eq!(short_fixed(f), Some(ryu(f)), "{cents}");
        }
    }

    #[test]
    fn plain_run_stops_at_the_first_special_byte() {
        for len in 0..24 {
            for at in 0..=len {
                for special in (0u8..=255).filter(|&b| is_special(b)) {
                    for fill in [b'a', 0x7f, 0x80, 0xa2, 0xdc, 0xff, b' '] {
                        let mut bytes = vec![fill; len];
                        if at < len {
                            bytes[at] = special;
                        }
                        // Bytes after the first special one do not matter.
                        if at + 1 < len {
                            bytes[at + 1] = 0;
                        }
                        assert_eq!(plain_run(&bytes), at, "{bytes:?}");
                    }
                }
            }
        }
        for b in 0u8..=255 {
            let bytes = [b; 9];
            let want = if is_special(b) { 0 } else { 9 };
            assert_eq!(plain_run(&bytes), want, "{b:#x}");
        }
    }
}
