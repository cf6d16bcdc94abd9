//! The facts on the wire, each written once: the routes (with their metric label, feature
//! flag and "is work" bit), header names and content types. A leaf: it imports nothing
//! from the crate, and every other module may import it.

/// A work endpoint: a POST whose body runs through the pipeline on the worker pool, with
/// a feature flag of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Work {
    Norm,
    Normalize,
    Validate,
    Compress,
}

impl Work {
    pub const ALL: [Work; 4] = [Work::Norm, Work::Normalize, Work::Validate, Work::Compress];

    /// The route's name: its path without the slash, its metric label and its flag.
    pub const fn name(self) -> &'static str {
        match self {
            Work::Norm => "norm",
            Work::Normalize => "normalize",
            Work::Validate => "validate",
            Work::Compress => "compress",
        }
    }
}

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Work(Work),
    Livez,
    Readyz,
    Metrics,
    Flags,
    Schemas,
}

/// One route: `path` answers `GET` (info) or `POST` (work) and is labelled `label` in
/// logs and metrics; `observation` routes are also served on `--metrics-listen`.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub path: &'static str,
    pub label: &'static str,
    pub endpoint: Endpoint,
    pub observation: bool,
}

/// Every route normd serves; the routers, labels and flags derive from this table.
pub const ROUTES: [Route; 9] = [
    work(Work::Norm, "/norm"),
    work(Work::Normalize, "/normalize"),
    work(Work::Validate, "/validate"),
    work(Work::Compress, "/compress"),
    info("/livez", "livez", Endpoint::Livez, true),
    info("/readyz", "readyz", Endpoint::Readyz, true),
    info("/metrics", "metrics", Endpoint::Metrics, true),
    info("/flags", "flags", Endpoint::Flags, false),
    info("/schemas", "schemas", Endpoint::Schemas, false),
];

const fn work(w: Work, path: &'static str) -> Route {
    Route {
        path,
        label: w.name(),
        endpoint: Endpoint::Work(w),
        observation: false,
    }
}

const fn info(path: &'static str, label: &'static str, endpoint: Endpoint, obs: bool) -> Route {
    Route {
        path,
        label,
        endpoint,
        observation: obs,
    }
}

/// Label of a path that matches no route.
pub const OTHER_LABEL: &str = "other";

/// The route at `path`, if any.
pub fn route(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.path == path)
}

/// Label for metrics and logs, from the path alone (bounded cardinality).
pub fn route_label(path: &str) -> &'static str {
    route(path).map_or(OTHER_LABEL, |r| r.label)
}

/// The paths whose POSTs run on the worker pool; the connection limit refuses only those.
pub fn is_work_path(path: &str) -> bool {
    route(path).is_some_and(|r| matches!(r.endpoint, Endpoint::Work(_)))
}

/// Header names normd reads or writes (lowercase, as `http` wants them).
pub mod headers {
    pub const DEADLINE_MS: &str = "x-deadline-ms";
    pub const REQUEST_ID: &str = "x-request-id";
    pub const TRACEPARENT: &str = "traceparent";
    pub const ENCODING: &str = "x-normd-encoding";
    pub const INPUT_BYTES: &str = "x-normd-input-bytes";
    pub const CANONICAL_BYTES: &str = "x-normd-canonical-bytes";
    pub const OUTPUT_BYTES: &str = "x-normd-output-bytes";
    pub const SCHEMA: &str = "x-normd-schema";
    pub const DIGEST: &str = "x-normd-digest";
    /// On the 429 given to a connection past the limit: `connections`.
    pub const REFUSED: &str = "x-normd-refused";
    /// Marks the self-probe's own calls (with a per-process secret).
    pub const PROBE: &str = "x-normd-probe";
    /// Test hook: a call carrying it panics on its worker (only with `NORMD_DEBUG_PANIC=1`).
    pub const DEBUG_PANIC: &str = "x-normd-debug-panic";
}

/// Content types normd answers with.
pub mod content_types {
    pub const JSON: &str = "application/json";
    pub const TEXT: &str = "text/plain; charset=utf-8";
    pub const OCTETS: &str = "application/octet-stream";
    pub const PROBLEM: &str = "application/problem+json";
    pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_work_endpoint_has_one_route_named_after_it() {
        for w in Work::ALL {
            let r = route(&format!("/{}", w.name())).expect("route");
            assert_eq!(r.endpoint, Endpoint::Work(w));
            assert_eq!(r.label, w.name());
            assert!(is_work_path(r.path));
        }
        assert_eq!(route_label("/nope"), OTHER_LABEL);
        assert!(!is_work_path("/livez"));
    }
}
