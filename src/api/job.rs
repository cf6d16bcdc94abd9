//! What a work call runs on the pool: decode the body, charge what the work will hold to
//! the in-flight budget, run the pipeline. Runs on a worker thread, or inline on the
//! call's I/O thread when admission finds it small and the pool idle.

use std::borrow::Cow;

use bytes::Bytes;

use crate::admission::{Budget, BytesPermit};
use crate::error::Problem;
use crate::pipeline::{self, ContentEncoding, Plan};
use crate::wire::Work;

/// A work call's input, moved to the worker.
pub(super) struct Job {
    pub(super) work: Work,
    pub(super) raw: Bytes,
    pub(super) content_encoding: ContentEncoding,
    pub(super) plan: Plan,
    pub(super) max_decoded: usize,
    /// Test hook (`NORMD_DEBUG_PANIC=1` and the header): panic on the worker.
    pub(super) panic: bool,
}

/// A work call's result, by route.
pub(super) enum Done {
    Norm(pipeline::NormOutput),
    Normalize(pipeline::Normalized),
    Validate(Vec<pipeline::Violation>),
    Compress(Vec<u8>),
}

impl Job {
    /// Runs the job; `permit` (the body's bytes) grows by what decoding and the work
    /// hold, and comes back with the result so a large answer can stay charged.
    pub(super) fn run(
        self,
        budget: &Budget,
        mut permit: BytesPermit,
    ) -> Result<(Done, BytesPermit), Problem> {
        let Job {
            work,
            raw,
            content_encoding,
            plan,
            max_decoded,
            panic,
        } = self;
        if panic {
            panic!("panic requested by x-normd-debug-panic");
        }
        let decoded: Cow<[u8]> = if content_encoding == ContentEncoding::Identity {
            Cow::Borrowed(raw.as_ref())
        } else {
            // The decoder's window is charged before the decoder allocates it.
            let window = pipeline::decode_memory(&raw, content_encoding, max_decoded)?;
            permit.grow(window)?;
            let d = pipeline::decode(&raw, content_encoding, max_decoded, budget)?;
            permit.grow(d.len())?;
            Cow::Owned(d)
        };
        // What the work itself will allocate (a parse tree, a codec's tables) is charged
        // before it runs, so that memory stays within the budget however the calls in
        // flight are shaped; alone, a call still runs.
        let (input, plan) = (decoded.as_ref(), &plan);
        let mut charge = |bytes| permit.grow(bytes);
        let done = match work {
            Work::Norm => {
                charge(pipeline::norm_memory(input, plan))?;
                Done::Norm(pipeline::norm(input, plan, budget)?)
            }
            Work::Normalize => {
                charge(pipeline::normalize_memory(input, plan))?;
                Done::Normalize(pipeline::normalize(input, plan, budget)?)
            }
            Work::Validate => {
                charge(pipeline::check_memory(input, plan))?;
                Done::Validate(pipeline::check(input, plan, budget)?)
            }
            Work::Compress => {
                charge(pipeline::compress_memory(input, plan))?;
                Done::Compress(pipeline::compress(input, plan, budget)?)
            }
        };
        Ok((done, permit))
    }
}
