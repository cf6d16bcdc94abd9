//! Resolving a work call's plan: the profile named in the query (or the defaults), the
//! query's overrides, the schema in force and the media type, into a pipeline [`Plan`].

use std::time::Duration;

use http::HeaderMap;

use super::request::{self, Selection};
use crate::app::AppState;
use crate::error::{Code, Problem};
use crate::pipeline::{self, Encoding, Mode, Plan};
use crate::wire::Work;

/// What the call will run, and under which budget.
pub(super) struct Resolved {
    pub(super) plan: Plan,
    /// The profile's (else the server's) default budget, for a call without X-Deadline-Ms.
    pub(super) deadline: Duration,
    /// The schema validated against, if any.
    pub(super) schema: Option<String>,
}

/// Builds the pipeline plan from the profile, the query overrides and the media type.
pub(super) fn resolve(
    state: &AppState,
    route: Work,
    sel: &Selection,
    headers: &HeaderMap,
) -> Result<Resolved, Problem> {
    let profile = match &sel.profile {
        None => None,
        Some(name) => Some(state.config.profiles.get(name).ok_or_else(|| {
            Problem::unknown_name(
                Code::UnknownProfile,
                "profile",
                name,
                state.config.profiles.keys().cloned().collect(),
            )
        })?),
    };
    if route == Work::Compress && sel.schema.is_some() {
        return Err(Problem::new(
            Code::BadParameter,
            "/compress does not validate: drop ?schema= (use /norm to validate and compress)",
        ));
    }
    let defaults = crate::config::Profile::default();
    let p = profile.unwrap_or(&defaults);

    let encoding = match &sel.encoding {
        None => p.encoding,
        Some(e) => Encoding::parse(e).ok_or_else(|| {
            Problem::unknown_name(
                Code::UnknownEncoding,
                "encoding",
                e,
                Encoding::ALL.iter().map(|e| e.name().to_owned()).collect(),
            )
        })?,
    };
    let level = match &sel.level {
        Some(l) => {
            let (lo, hi) = encoding.level_range();
            let n: i32 = l.trim().parse().map_err(|_| {
                Problem::new(Code::BadParameter, format!("level {l:?} is not an integer"))
            })?;
            if n < lo || n > hi {
                return Err(Problem::new(
                    Code::BadParameter,
                    format!(
                        "level {n} is out of range {lo}..={hi} for {}",
                        encoding.name()
                    ),
                )
                .with("min", lo)
                .with("max", hi));
            }
            n
        }
        // A profile's level belongs to the profile's encoding; a query that changes the
        // encoding gets that encoding's default level.
        None if sel.encoding.is_some() && encoding != p.encoding => encoding.default_level(),
        None => p.level,
    };

    let schema_name = sel.schema.clone().or_else(|| p.schema.clone());
    let schema = match &schema_name {
        None => None,
        Some(name) => {
            let set = state.schemas();
            if set.is_empty() {
                // Nothing is loaded (see /readyz `schemas`): not the caller's mistake, and
                // a reload may fix it, so the app should fall back and retry later.
                return Err(Problem::new(
                    Code::NotReady,
                    format!("schema {name:?} cannot be used: no schemas are loaded; use the in-app path"),
                ));
            }
            Some(set.get(name).ok_or_else(|| {
                Problem::unknown_name(Code::UnknownSchema, "schema", name, set.names())
            })?)
        }
    };

    let mode = if route == Work::Compress {
        Mode::Json // unused: /compress takes any bytes
    } else {
        request::media_mode(headers)?
    };
    if mode == Mode::Text && schema.is_some() {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            "schema validation needs a JSON body (Content-Type: application/json)",
        ));
    }
    if mode == Mode::Text && route == Work::Validate {
        return Err(Problem::new(
            Code::UnsupportedMediaType,
            "/validate takes JSON (Content-Type: application/json)",
        ));
    }

    let plan = Plan {
        mode,
        parse: pipeline::ParseOptions {
            max_depth: state.config.max_depth,
            numbers: p.numbers,
        },
        json_rules: p.json_rules.clone(),
        text_rules: p.text_rules,
        schema,
        encoding,
        level,
        max_errors: state.config.max_errors,
    };
    Ok(Resolved {
        deadline: p.deadline.unwrap_or(state.config.default_deadline),
        schema: plan.schema.as_ref().map(|s| s.name.clone()),
        plan,
    })
}
