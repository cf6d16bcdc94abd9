//! Reading a work call's request head: the query's selection, the media type, the
//! content coding, the transfer coding, the deadline and the envelope choice. Each
//! malformed or unsupported value is a [`Problem`] naming it.

use std::time::{Duration, Instant};

use http::{header, HeaderMap};

use crate::error::{Code, Problem};
use crate::pipeline::{ContentEncoding, Mode};
use crate::wire::{headers, Work};

/// `Content-Length`, if given and a number.
pub(super) fn declared_length(h: &HeaderMap) -> Option<usize> {
    h.get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
}

/// `?profile=&schema=&encoding=&level=` as given.
#[derive(Debug, Default)]
pub(super) struct Selection {
    pub(super) profile: Option<String>,
    pub(super) schema: Option<String>,
    pub(super) encoding: Option<String>,
    pub(super) level: Option<String>,
}

impl Selection {
    pub(super) fn from_query(query: &str, route: Work) -> Result<Self, Problem> {
        let mut s = Selection::default();
        for (k, v) in form_urlencoded_pairs(query) {
            let slot = match k.as_str() {
                "profile" => &mut s.profile,
                "schema" => &mut s.schema,
                "encoding" => &mut s.encoding,
                "level" => &mut s.level,
                other => {
                    return Err(Problem::new(
                        Code::BadParameter,
                        format!(
                            "unknown query parameter {other:?} on /{} (known: profile, schema, encoding, level)",
                            route.name()
                        ),
                    ))
                }
            };
            // Two values for one name: neither silently wins.
            if slot.is_some() {
                return Err(Problem::new(
                    Code::BadParameter,
                    format!("query parameter {k:?} is given more than once"),
                ));
            }
            *slot = Some(v);
        }
        Ok(s)
    }
}

/// The query string's `name=value` pairs, percent- and `+`-decoded.
pub(super) fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Refuses a `Transfer-Encoding` other than plain `chunked`. hyper frames a body by its
/// last coding and passes the others through unapplied, so `gzip, chunked` would be
/// served as if the gzip coding were not there; normd implements no transfer coding but
/// chunked, and answers 400 (RFC 9112 §6.1 allows 501; 400 keeps the answer in the
/// contract's codes, and either way the client must not retry unchanged).
pub(super) fn transfer_coding(headers: &HeaderMap) -> Result<(), Problem> {
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Problem::new(
            Code::BadParameter,
            "Transfer-Encoding: only `chunked` is supported (use Content-Encoding to send a \
             compressed body)",
        )),
    }
}

/// JSON for `application/json`, `*/*+json` or no Content-Type; text for `text/plain`.
/// A `charset` other than UTF-8 (or its subset US-ASCII) is refused: the body would
/// otherwise be read as UTF-8 and its text changed. An empty `Content-Type:` line names
/// no media type, so it counts as missing (some clients send one for "unset").
pub(super) fn media_mode(headers: &HeaderMap) -> Result<Mode, Problem> {
    let mut lines = headers.get_all(header::CONTENT_TYPE).iter();
    let first = lines.next();
    // Two different Content-Type lines: which one the client meant is a guess; refuse.
    if let Some(other) = lines.find(|v| {
        first.is_some_and(|f| {
            !f.as_bytes()
                .trim_ascii()
                .eq_ignore_ascii_case(v.as_bytes().trim_ascii())
        })
    }) {
        return Err(Problem::new(
            Code::BadParameter,
            format!(
                "Content-Type is given twice with different values ({:?} and {:?})",
                first
                    .map(|f| String::from_utf8_lossy(f.as_bytes()))
                    .unwrap_or_default(),
                String::from_utf8_lossy(other.as_bytes())
            ),
        ));
    }
    let Some(ct) = first.filter(|v| !v.as_bytes().trim_ascii().is_empty()) else {
        return Ok(Mode::Json);
    };
    let text = ct.to_str().unwrap_or("");
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset = parts.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| v.trim().trim_matches('"').to_ascii_lowercase())
    });
    if let Some(cs) = charset.filter(|cs| !matches!(cs.as_str(), "utf-8" | "utf8" | "us-ascii")) {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            format!("charset {cs:?} is not supported (normd reads UTF-8 only)"),
        ));
    }
    if essence == "application/json" || (essence.contains('/') && essence.ends_with("+json")) {
        Ok(Mode::Json)
    } else if essence == "text/plain" {
        Ok(Mode::Text)
    } else {
        Err(Problem::new(
            Code::UnsupportedMediaType,
            format!(
                "Content-Type {text:?} is not supported (use application/json, */*+json or text/plain)"
            ),
        ))
    }
}

/// The request's `Content-Encoding`. Several header lines form one list (RFC 9110 §5.3),
/// so `gzip` and `deflate` on two lines are refused like `gzip, deflate` on one, rather
/// than the first line deciding alone.
pub(super) fn content_encoding(headers: &HeaderMap) -> Result<ContentEncoding, Problem> {
    let mut lines = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(first) = lines.next() else {
        return Ok(ContentEncoding::Identity);
    };
    let mut value = String::from_utf8_lossy(first.as_bytes()).into_owned();
    for more in lines {
        value.push_str(", ");
        value.push_str(&String::from_utf8_lossy(more.as_bytes()));
    }
    ContentEncoding::from_header(&value).ok_or_else(|| {
        Problem::new(
            Code::UnsupportedContentEncoding,
            format!(
                "Content-Encoding {value:?} is not supported (one of gzip, br, zstd, identity; \
                 stacked codings are not)"
            ),
        )
    })
}

/// `X-Deadline-Ms` (relative to receipt), else `default`, capped at `max`.
pub(super) fn deadline(
    h: &HeaderMap,
    default: Duration,
    max: Duration,
    received: Instant,
) -> Result<Instant, Problem> {
    let mut given = h.get_all(headers::DEADLINE_MS).iter();
    let (first, second) = (given.next(), given.next());
    if second.is_some() {
        return Err(Problem::new(
            Code::BadParameter,
            "X-Deadline-Ms is given more than once",
        ));
    }
    let budget = match first {
        None => default,
        Some(v) => {
            let text = v.to_str().unwrap_or("").trim();
            match text.parse::<u64>() {
                // 0 is a well-formed budget that is already spent (the caller's own
                // deadline passed): a 504, not a malformed header.
                Ok(ms) => Duration::from_millis(ms),
                // Digits too many for u64 are still a budget above the cap, not a
                // malformed one: capped like any other large value.
                Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Duration::MAX,
                _ => {
                    return Err(Problem::new(
                        Code::BadParameter,
                        format!(
                        "X-Deadline-Ms {text:?} must be a whole number of milliseconds (0 or more)"
                    ),
                    ))
                }
            }
        }
    };
    Ok(received + budget.min(max))
}

/// `Accept: application/json` (not refused with `q=0`) asks for the JSON envelope.
pub(super) fn wants_envelope(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|m| {
            let mut parts = m.split(';');
            let range = parts.next().unwrap_or("").trim();
            // `q=0` means "not acceptable" (RFC 9110 §12.4.2).
            let refused = parts.any(|p| {
                p.split_once('=').is_some_and(|(k, v)| {
                    k.trim().eq_ignore_ascii_case("q")
                        && v.trim().parse::<f32>().is_ok_and(|q| q == 0.0)
                })
            });
            range.eq_ignore_ascii_case("application/json") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn query_decoding() {
        let pairs = form_urlencoded_pairs("profile=a%20b&level=5&x+y=1&bad=%zz");
        assert_eq!(pairs[0], ("profile".into(), "a b".into()));
        assert_eq!(pairs[1], ("level".into(), "5".into()));
        assert_eq!(pairs[2], ("x y".into(), "1".into()));
        assert_eq!(pairs[3], ("bad".into(), "%zz".into()));
    }

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert_eq!(media_mode(&h).unwrap(), Mode::Json);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/vnd.order+json; charset=utf-8"),
        );
        assert_eq!(media_mode(&h).unwrap(), Mode::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(media_mode(&h).unwrap(), Mode::Text);
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        assert_eq!(media_mode(&h).unwrap_err().code, Code::UnsupportedMediaType);
        // UTF-8 only: another charset would be read as UTF-8 and its text changed.
        for ok in [
            "text/plain; charset=UTF-8",
            "application/json;charset=\"utf-8\"",
            "text/plain; charset=us-ascii",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(media_mode(&h).is_ok(), "{ok}");
        }
        for refused in [
            "text/plain; charset=latin1",
            "application/json; charset=utf-16",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(refused));
            assert_eq!(
                media_mode(&h).unwrap_err().code,
                Code::UnsupportedMediaType,
                "{refused}"
            );
        }
    }

    #[test]
    fn a_query_parameter_given_twice_is_refused() {
        assert!(Selection::from_query("encoding=gzip&level=3", Work::Norm).is_ok());
        let p = Selection::from_query("encoding=gzip&encoding=br", Work::Norm).unwrap_err();
        assert_eq!(p.code, Code::BadParameter);
        assert!(p.detail.contains("encoding"), "{}", p.detail);
    }

    #[test]
    fn accept_json_asks_for_the_envelope() {
        let mut h = HeaderMap::new();
        assert!(!wants_envelope(&h));
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/json;q=0.9"),
        );
        assert!(wants_envelope(&h));
        // q=0: "not acceptable".
        for refused in ["application/json;q=0", "application/json; q=0.0, */*"] {
            h.insert(header::ACCEPT, HeaderValue::from_static(refused));
            assert!(!wants_envelope(&h), "{refused}");
        }
    }
}
