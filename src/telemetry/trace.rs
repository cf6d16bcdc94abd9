//! Trace context.

/// The trace id of a request: W3C `traceparent`, else `X-Request-Id`, else generated.
pub(crate) fn trace_id(traceparent: Option<&str>, request_id: Option<&str>) -> String {
    if let Some(id) = traceparent.and_then(parse_traceparent) {
        return id.to_owned();
    }
    if let Some(rid) = request_id {
        let rid = rid.trim();
        if !rid.is_empty() && rid.len() <= 128 && rid.bytes().all(|b| b.is_ascii_graphic()) {
            return rid.to_owned();
        }
    }
    format!("{:032x}", fastrand::u128(1..))
}

/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`; an all-zero id is invalid.
fn parse_traceparent(tp: &str) -> Option<&str> {
    let mut parts = tp.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2)
    {
        return None;
    }
    if trace.bytes().all(|b| b == b'0') || parent.bytes().all(|b| b == b'0') {
        return None;
    }
    // Version 00 has exactly these four fields; a later version may append more
    // (W3C Trace Context, versioning: parse what this version knows, ignore the rest).
    if version == "00" && parts.next().is_some() {
        return None;
    }
    Some(trace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_id_prefers_traceparent_then_request_id() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(Some(tp), Some("rid")),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(trace_id(Some("garbage"), Some("rid-1")), "rid-1");
        assert_eq!(
            trace_id(
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
                None
            )
            .len(),
            32
        );
        let generated = trace_id(None, Some("has space"));
        assert_eq!(generated.len(), 32);
        assert!(generated.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    /// W3C Trace Context: version 00 has exactly four fields; later versions may add
    /// fields after the flags, which a version-00 parser ignores.
    #[test]
    fn traceparent_fields_follow_the_version() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let tp = |s: &str| parse_traceparent(s).map(str::to_owned);
        assert_eq!(
            tp(&format!("00-{trace}-00f067aa0ba902b7-01")),
            Some(trace.into())
        );
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7-01-extra")), None);
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7-01-")), None);
        assert_eq!(
            tp(&format!("01-{trace}-00f067aa0ba902b7-01-extra")),
            Some(trace.into())
        );
        assert_eq!(tp(&format!("ff-{trace}-00f067aa0ba902b7-01")), None);
        assert_eq!(
            tp(&format!("00-{}-00f067aa0ba902b7-01", trace.to_uppercase())),
            None
        );
        assert_eq!(tp(&format!("00-{trace}-00f067aa0ba902b7")), None);
    }
}
