//! The cheap refusals of a work call, before anything is read or queued: the endpoint's
//! feature flag, the shutdown, memory pressure. The self-probe's calls skip them.

use crate::app::AppState;
use crate::error::{Code, Problem};
use crate::wire::Work;

pub(super) fn check(state: &AppState, work: Work) -> Result<(), Problem> {
    if !state.flags.get(work.name()).enabled {
        return Err(Problem::new(
            Code::Disabled,
            format!(
                "/{} is disabled by its feature flag; use the in-app path",
                work.name()
            ),
        ));
    }
    if state.health.stopping() {
        return Err(Problem::new(
            Code::Draining,
            "normd is shutting down; use the in-app path",
        ));
    }
    if state.health.memory.shedding() {
        return Err(Problem::new(
            Code::MemoryPressure,
            format!(
                "memory usage {} bytes is above the shed watermark; use the in-app path",
                state.health.memory.usage()
            ),
        ));
    }
    Ok(())
}
