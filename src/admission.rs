//! Admission control: the CPU pool, the bounded queue in front of it, deadlines, and
//! the byte budget for requests in flight.
//!
//! Owns: the decision "run this now, or say no at once". Hand-written because it is
//! normd's own job: a rejection must cost microseconds and no queue slot, a request
//! whose budget cannot cover its expected queue wait is refused up front, and work
//! whose caller left (deadline passed, client disconnected) never starts.
//! Never: blocks the async I/O threads: a full queue is an answer, not a wait. The only
//! work they run is a small, bounded job while the pool is idle, one per idle turn of
//! the thread (see [`Admission::run`]).

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::pipeline::Stop;
use crate::{sched, telemetry};

/// Weight of the newest sample in the service-time average (1/8).
const EWMA_SHIFT: u32 = 3;

/// Small jobs run inline only while the recent mean service time is below this: a schema
/// or a workload that makes even small inputs slow sends them back to the pool.
const INLINE_MAX_SERVICE: Duration = Duration::from_micros(250);

/// CPU worker count from the cgroup CPU quota (v2 `cpu.max`, v1 CFS files), else the
/// CPUs this process may run on.
pub fn cpu_quota() -> usize {
    let online = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let quota = std::fs::read_to_string("/sys/fs/cgroup/cpu.max")
        .ok()
        .and_then(|s| parse_cpu_max(&s))
        .or_else(|| {
            let q = read_i64("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
                .or_else(|| read_i64("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"))?;
            let p = read_i64("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
                .or_else(|| read_i64("/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"))?;
            quota_cpus(q, p)
        });
    quota.map_or(online, |q| q.min(online)).max(1)
}

fn read_i64(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `cpu.max` is "max 100000" (no quota) or "QUOTA PERIOD".
pub fn parse_cpu_max(text: &str) -> Option<usize> {
    let mut parts = text.split_whitespace();
    let quota = parts.next()?;
    let period: i64 = parts.next()?.parse().ok()?;
    if quota == "max" {
        return None;
    }
    quota_cpus(quota.parse().ok()?, period)
}

/// A fractional quota rounds up: 1.5 CPUs can keep two threads partly busy.
fn quota_cpus(quota: i64, period: i64) -> Option<usize> {
    if quota <= 0 || period <= 0 {
        return None;
    }
    Some(((quota + period - 1) / period).max(1) as usize)
}

/// Why a call was refused or did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Queue full, byte budget spent, or the expected wait exceeds the budget (429).
    Overloaded(&'static str),
    /// The budget was spent before work could start, or while it ran (504).
    DeadlineExceeded,
    /// The work panicked; the worker survives (500).
    Panicked,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool's job queue. Hand-written rather than a channel because of how an idle
/// worker waits: crossbeam's receive spins and then calls `sched_yield` several times
/// before it sleeps, which on a sidecar's shared core hands the CPU around for nothing
/// and burns the pod's CPU quota. Here an idle worker sleeps at once, and a submit makes
/// the wake-up call only when a worker sleeps. The admission cap bounds the queue's
/// length; the lock is never held while a job runs.
///
/// It also counts the jobs running, on workers or inline on an I/O thread, so that never
/// more than `workers` run at once: a worker takes a job only while a core is free.
struct JobQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

struct QueueState {
    /// Jobs by ticket, oldest first.
    jobs: VecDeque<(u64, Job)>,
    next_ticket: u64,
    /// Workers waiting on `ready`.
    sleeping: usize,
    /// Workers started; with none, a job would never run. Also the cap on `running`.
    workers: usize,
    /// Jobs running now, on a worker or inline.
    running: usize,
}

impl JobQueue {
    fn new() -> Self {
        Self {
            state: Mutex::new(QueueState {
                jobs: VecDeque::new(),
                next_ticket: 0,
                sleeping: 0,
                workers: 0,
                running: 0,
            }),
            ready: Condvar::new(),
        }
    }

    /// The lock only guards the queue's own fields, which no panic can leave half-done.
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn worker_started(&self) {
        self.lock().workers += 1;
    }

    /// Queues `job` and returns its ticket, or hands it back when no worker exists to
    /// run it.
    fn push(&self, job: Job) -> Result<u64, Job> {
        let mut state = self.lock();
        if state.workers == 0 {
            return Err(job);
        }
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.jobs.push_back((ticket, job));
        let wake = state.sleeping > 0 && state.running < state.workers;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(ticket)
    }

    /// Takes back a job no worker has started yet (its caller gave up). The queue is at
    /// most `--max-queue` long, so the scan is short. The caller drops the job, outside
    /// the lock.
    fn withdraw(&self, ticket: u64) -> Option<Job> {
        let mut state = self.lock();
        let at = state.jobs.iter().position(|(t, _)| *t == ticket)?;
        state.jobs.remove(at).map(|(_, job)| job)
    }

    /// A worker's next job, sleeping until there is one and a core is free for it. The
    /// job calls `finished` when it ends.
    fn next(&self) -> Job {
        let mut state = self.lock();
        loop {
            if state.running < state.workers {
                if let Some((_, job)) = state.jobs.pop_front() {
                    state.running += 1;
                    return job;
                }
            }
            state.sleeping += 1;
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            state.sleeping -= 1;
        }
    }

    /// A job has ended: its core is free for the next queued one.
    fn finished(&self) {
        let mut state = self.lock();
        state.running -= 1;
        let wake = state.sleeping > 0 && !state.jobs.is_empty();
        drop(state);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Claims a core for a job to run inline, only when the pool is idle: nothing
    /// queued and a core free, so no queued call is overtaken.
    fn claim_idle(self: &Arc<Self>) -> Option<InlineCore> {
        let mut state = self.lock();
        if !state.jobs.is_empty() || state.running >= state.workers {
            return None;
        }
        state.running += 1;
        Some(InlineCore(Arc::clone(self)))
    }

    fn running(&self) -> usize {
        self.lock().running
    }
}

/// A core held by a job running inline; given back (and a waiting job started) on drop.
struct InlineCore(Arc<JobQueue>);

impl Drop for InlineCore {
    fn drop(&mut self) {
        self.0.finished();
    }
}

/// The pool and its queue. One per process, shared by both listeners.
pub struct Admission {
    jobs: Arc<JobQueue>,
    workers: usize,
    max_queue: usize,
    /// Calls admitted and not yet started (including those still reading their body).
    queued: AtomicUsize,
    ewma_service_ns: AtomicU64,
    inflight_bytes: AtomicUsize,
    max_inflight_bytes: usize,
    /// `INLINE_MAX_SERVICE`, except in tests that are not about it.
    inline_max_service: Duration,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("workers", &self.workers)
            .field("queued", &self.queued())
            .field("running", &self.running())
            .finish()
    }
}

impl Admission {
    /// Starts `workers` threads. They live as long as the process (a pool drained at
    /// shutdown would only delay exit).
    pub fn start(workers: usize, max_queue: usize, max_inflight_bytes: usize) -> Arc<Self> {
        Self::start_with(workers, max_queue, max_inflight_bytes, INLINE_MAX_SERVICE)
    }

    fn start_with(
        workers: usize,
        max_queue: usize,
        max_inflight_bytes: usize,
        inline_max_service: Duration,
    ) -> Arc<Self> {
        let jobs = Arc::new(JobQueue::new());
        for i in 0..workers.max(1) {
            let queue = Arc::clone(&jobs);
            let spawned = std::thread::Builder::new()
                .name(format!("normd-worker-{i}"))
                .stack_size(sched::JOB_STACK)
                .spawn(move || loop {
                    queue.next()();
                });
            match spawned {
                Ok(_) => jobs.worker_started(),
                Err(e) => tracing::error!(error = %e, "cannot start worker thread"),
            }
        }
        Arc::new(Self {
            jobs,
            workers: workers.max(1),
            max_queue,
            queued: AtomicUsize::new(0),
            ewma_service_ns: AtomicU64::new(0),
            inflight_bytes: AtomicUsize::new(0),
            max_inflight_bytes,
            inline_max_service,
        })
    }

    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// Jobs running now, on the pool's workers or inline.
    pub fn running(&self) -> usize {
        self.jobs.running()
    }

    /// The in-flight byte budget in force.
    pub fn max_inflight_bytes(&self) -> usize {
        self.max_inflight_bytes
    }

    #[cfg(test)]
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes.load(Ordering::Relaxed)
    }

    /// Recent mean service time of one call.
    pub fn service_time(&self) -> Duration {
        Duration::from_nanos(self.ewma_service_ns.load(Ordering::Relaxed))
    }

    /// Queue wait a call admitted now should expect: the calls ahead of it spread over
    /// the workers, each taking the recent mean service time.
    pub fn expected_wait(&self) -> Duration {
        let ahead = self.queued() + self.running();
        let rounds = ahead
            .saturating_sub(self.workers - 1)
            .div_ceil(self.workers);
        self.service_time() * rounds as u32
    }

    /// Takes a queue slot, or refuses at once. Called before the body is read, so a
    /// refusal never buffers what it refuses. `probe` calls (the self-probe canary) may
    /// exceed the cap by their own slot so an overloaded queue does not read as a wedged
    /// pool.
    pub fn reserve(self: &Arc<Self>, deadline: Instant, probe: bool) -> Result<Slot, Refusal> {
        let now = Instant::now();
        if now >= deadline {
            return Err(Refusal::DeadlineExceeded);
        }
        if now + self.expected_wait() > deadline && !probe {
            return Err(Refusal::Overloaded(
                "the expected queue wait exceeds the remaining budget",
            ));
        }
        let cap = if probe {
            self.max_queue + 2
        } else {
            self.max_queue
        };
        let mut current = self.queued.load(Ordering::Relaxed);
        loop {
            if current >= cap {
                return Err(Refusal::Overloaded("the admission queue is full"));
            }
            match self.queued.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        telemetry::queue_depth(self.queued());
        Ok(Slot {
            admission: Arc::clone(self),
            released: false,
        })
    }

    /// Reserves `n` request bytes against the in-flight byte budget.
    pub fn reserve_bytes(self: &Arc<Self>, n: usize) -> Result<BytesPermit, Refusal> {
        self.add_bytes(n, 0)?;
        Ok(BytesPermit {
            admission: Arc::clone(self),
            bytes: n,
        })
    }

    /// Adds `n` to the bytes in flight, of which the caller already holds `own`. Refused
    /// past the budget, except for a call that is alone: one call may always proceed,
    /// whatever its size (the body and decoded caps bound it), or a large one could
    /// never be served.
    fn add_bytes(&self, n: usize, own: usize) -> Result<(), Refusal> {
        let mut current = self.inflight_bytes.load(Ordering::Relaxed);
        loop {
            if current > own && current + n > self.max_inflight_bytes {
                return Err(Refusal::Overloaded("the in-flight byte budget is spent"));
            }
            match self.inflight_bytes.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => current = actual,
            }
        }
        telemetry::inflight_bytes(current + n);
        Ok(())
    }

    /// Runs `work` under `deadline` on the pool (or inline: see `small`). Resolves to
    /// `DeadlineExceeded` when the deadline passes, whether or not the work is still
    /// running; the work sees that through its [`Budget`] and stops at its next
    /// checkpoint. Dropping the returned future (client gone) cancels queued work the
    /// same way. An inline job, being small, answers at its next checkpoint instead.
    ///
    /// `small`: the caller vouches that the job is small and bounded (a few tens of µs
    /// up to a fraction of a millisecond). Such a job runs inline, on the I/O thread
    /// the request is on, when the pool is idle, recent jobs were quick
    /// (`INLINE_MAX_SERVICE`), and that thread has had nothing else to run since its
    /// last inline job (`sched::inline_turn_open`): the hand-off to a worker and back
    /// costs a large share of a small job's CPU, and what waits behind an inline job on
    /// its thread waits for one small job at most.
    pub async fn run<T, F>(
        &self,
        slot: Slot,
        deadline: Instant,
        small: bool,
        work: F,
    ) -> Result<T, Refusal>
    where
        T: Send + 'static,
        F: FnOnce(&Budget) -> T + Send + 'static,
    {
        let budget = Budget {
            deadline,
            cancelled: Arc::new(AtomicBool::new(false)),
        };
        let enqueued = Instant::now();
        if small && sched::inline_turn_open() && self.service_time() <= self.inline_max_service {
            if let Some(_core) = self.jobs.claim_idle() {
                sched::take_inline_turn();
                telemetry::job_inline();
                return start(slot, enqueued, &budget, work);
            }
        }
        let _cancel_on_drop = CancelOnDrop(Arc::clone(&budget.cancelled));
        let (done_tx, done_rx) = oneshot::channel::<Result<T, Refusal>>();
        let job_budget = budget.clone();
        let queue = Arc::clone(&self.jobs);
        let job: Job = Box::new(move || {
            let result = start(slot, enqueued, &job_budget, work);
            // Its core is free before its caller hears, so the caller's next call finds
            // the pool idle.
            queue.finished();
            let _ = done_tx.send(result);
        });
        let Ok(ticket) = self.jobs.push(job) else {
            return Err(Refusal::Overloaded("the worker pool is gone"));
        };
        // A caller that gives up before its job starts takes the job back out of the
        // queue: its slot (and its body's bytes) are free at once, not when a worker
        // reaches the dead entry.
        let mut withdraw = Withdraw {
            queue: Arc::clone(&self.jobs),
            ticket: Some(ticket),
        };
        match tokio::time::timeout_at(deadline.into(), done_rx).await {
            Ok(Ok(result)) => {
                withdraw.ticket = None;
                result
            }
            // The job was dropped without answering: only if its thread died.
            Ok(Err(_)) => {
                withdraw.ticket = None;
                Err(Refusal::Panicked)
            }
            Err(_) => {
                budget.cancelled.store(true, Ordering::Relaxed);
                withdraw.now(false);
                Err(Refusal::DeadlineExceeded)
            }
        }
    }

    fn record_service(&self, took: Duration) {
        let sample = took.as_nanos().min(u64::MAX as u128) as u64;
        let _ = self
            .ewma_service_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(if old == 0 {
                    sample
                } else {
                    old - (old >> EWMA_SHIFT) + (sample >> EWMA_SHIFT)
                })
            });
    }
}

/// Starts a job, on a worker or inline: it leaves the queue, work whose caller is gone
/// (deadline passed, client left) does not start, and a panic is caught and answered.
fn start<T>(
    slot: Slot,
    enqueued: Instant,
    budget: &Budget,
    work: impl FnOnce(&Budget) -> T,
) -> Result<T, Refusal> {
    let admission = Arc::clone(&slot.admission);
    drop(slot); // leaves the queue: counted as started from here on
    let started = Instant::now();
    telemetry::queue_wait(started - enqueued);
    if budget.should_stop() {
        // Past its deadline the caller already got its 504 (and the timeout set
        // `cancelled` too); before it, only a caller that left cancels the work.
        telemetry::cancelled_before_start(Instant::now() < budget.deadline);
        return Err(Refusal::DeadlineExceeded);
    }
    let result = catch_unwind(AssertUnwindSafe(|| work(budget)));
    admission.record_service(started.elapsed());
    result.map_err(|_| Refusal::Panicked)
}

/// A reserved queue place; released when the work starts or the call gives up.
pub struct Slot {
    admission: Arc<Admission>,
    released: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            self.admission.queued.fetch_sub(1, Ordering::AcqRel);
            telemetry::queue_depth(self.admission.queued());
        }
    }
}

/// Request bytes counted against the in-flight budget until dropped.
pub struct BytesPermit {
    admission: Arc<Admission>,
    bytes: usize,
}

impl BytesPermit {
    /// Grows the reservation (once the decoded size, then the working memory, is
    /// known); refused past the budget unless this call is the only one holding bytes.
    pub fn grow(&mut self, extra: usize) -> Result<(), Refusal> {
        self.admission.add_bytes(extra, self.bytes)?;
        self.bytes += extra;
        Ok(())
    }
}

impl BytesPermit {
    /// Keeps only `bytes` of the reservation (an answer's size, held until the client
    /// has taken it) and releases the rest.
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            let released = self.bytes - bytes;
            let before = self
                .admission
                .inflight_bytes
                .fetch_sub(released, Ordering::AcqRel);
            telemetry::inflight_bytes(before - released);
            self.bytes = bytes;
        }
    }
}

impl Drop for BytesPermit {
    fn drop(&mut self) {
        let before = self
            .admission
            .inflight_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        telemetry::inflight_bytes(before - self.bytes);
    }
}

/// What running work consults: its deadline and whether its caller left.
#[derive(Debug, Clone)]
pub struct Budget {
    deadline: Instant,
    cancelled: Arc<AtomicBool>,
}

impl Stop for Budget {
    fn should_stop(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed) || Instant::now() >= self.deadline
    }
}

/// Takes a caller's job back out of the queue when the caller stops waiting: at its
/// deadline (`now`), or when its future is dropped (the client left).
struct Withdraw {
    queue: Arc<JobQueue>,
    ticket: Option<u64>,
}

impl Withdraw {
    fn now(&mut self, client_left: bool) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        // `None`: a worker has it already; the budget tells it to stop.
        if let Some(job) = self.queue.withdraw(ticket) {
            telemetry::cancelled_before_start(client_left);
            drop(job); // gives back the queue slot and the body's byte permit
        }
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        self.now(true);
    }
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("100000 100000\n"), Some(1));
        assert_eq!(parse_cpu_max("150000 100000"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("garbage"), None);
        assert!(cpu_quota() >= 1);
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn a_full_queue_refuses_at_once_and_frees_on_drop() {
        let adm = Admission::start(1, 2, 1 << 20);
        let a = adm.reserve(far(), false).unwrap();
        let _b = adm.reserve(far(), false).unwrap();
        assert_eq!(
            adm.reserve(far(), false).err(),
            Some(Refusal::Overloaded("the admission queue is full"))
        );
        // The self-probe canary still gets through a full queue.
        let p = adm.reserve(far(), true).unwrap();
        drop(a);
        assert!(
            adm.reserve(far(), false).is_err(),
            "the probe's slot still counts"
        );
        drop(p);
        assert!(adm.reserve(far(), false).is_ok());
    }

    #[test]
    fn an_expired_budget_is_refused_before_queueing() {
        let adm = Admission::start(1, 2, 1 << 20);
        assert_eq!(
            adm.reserve(Instant::now(), false).err(),
            Some(Refusal::DeadlineExceeded)
        );
        assert_eq!(adm.queued(), 0);
    }

    #[test]
    fn byte_budget_admits_one_call_alone_then_refuses() {
        let adm = Admission::start(1, 2, 100);
        let big = adm.reserve_bytes(500).unwrap();
        assert!(adm.reserve_bytes(1).is_err());
        drop(big);
        let mut p = adm.reserve_bytes(60).unwrap();
        assert!(p.grow(30).is_ok());
        assert!(adm.reserve_bytes(20).is_err());
        // Alone, a call grows past the budget (its working memory can exceed it)...
        assert!(p.grow(1_000).is_ok());
        assert_eq!(adm.inflight_bytes(), 1_090);
        drop(p);
        assert_eq!(adm.inflight_bytes(), 0);
        // ...but not while another call holds bytes, however few.
        let mut p = adm.reserve_bytes(60).unwrap();
        let other = adm.reserve_bytes(1).unwrap();
        assert!(p.grow(40).is_err());
        assert!(p.grow(39).is_ok());
        drop(other);
        drop(p);
        assert_eq!(adm.inflight_bytes(), 0);
    }

    #[tokio::test]
    async fn work_runs_off_the_runtime_and_returns() {
        let adm = Admission::start(2, 4, 1 << 20);
        let slot = adm.reserve(far(), false).unwrap();
        let name = adm
            .run(slot, far(), false, |_| {
                std::thread::current().name().map(str::to_owned)
            })
            .await
            .unwrap();
        assert!(name.unwrap().starts_with("normd-worker-"));
        assert_eq!(adm.queued(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_job_runs_exactly_once_across_workers() {
        let adm = Admission::start(3, 512, 1 << 20);
        let runs = Arc::new(AtomicUsize::new(0));
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..400usize {
            let (adm, runs) = (Arc::clone(&adm), Arc::clone(&runs));
            calls.spawn(async move {
                let slot = adm.reserve(far(), false).unwrap();
                adm.run(slot, far(), false, move |_| {
                    runs.fetch_add(1, Ordering::Relaxed);
                    (i, std::thread::current().name().map(str::to_owned))
                })
                .await
            });
        }
        let mut seen = vec![false; 400];
        while let Some(joined) = calls.join_next().await {
            let (i, thread) = joined.unwrap().unwrap();
            assert!(!seen[i], "call {i} answered twice");
            seen[i] = true;
            assert!(thread.unwrap().starts_with("normd-worker-"));
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(runs.load(Ordering::Relaxed), 400);
        assert_eq!(adm.queued(), 0);
    }

    #[test]
    fn a_queue_without_workers_hands_the_job_back() {
        let queue = JobQueue::new();
        assert!(queue.push(Box::new(|| ())).is_err());
        queue.worker_started();
        assert!(queue.push(Box::new(|| ())).is_ok());
        (queue.next())();
    }

    /// An inline job holds one of the pool's cores: with one worker, a queued job waits
    /// until the inline one ends, so never more jobs run than there are workers.
    #[test]
    fn an_inline_job_holds_a_core_the_worker_waits_for() {
        let queue = Arc::new(JobQueue::new());
        queue.worker_started();
        let core = queue.claim_idle().expect("idle pool");
        assert!(queue.claim_idle().is_none(), "the only core is taken");
        let (ran_tx, ran_rx) = std::sync::mpsc::channel();
        queue
            .push(Box::new(move || ran_tx.send(()).unwrap()))
            .map_err(|_| "no worker")
            .unwrap();
        let worker = {
            let queue = Arc::clone(&queue);
            std::thread::spawn(move || (queue.next())())
        };
        // The worker is asleep, the job still queued: it cannot start while the core is
        // held, and a queued job also keeps the next call from running inline.
        while queue.lock().sleeping == 0 {
            std::thread::yield_now();
        }
        assert_eq!(queue.lock().jobs.len(), 1);
        drop(core);
        ran_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the worker ran the job once the core was free");
        worker.join().unwrap();
        assert_eq!(queue.running(), 1, "a bare job does not say it finished");
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    /// A runtime whose threads are I/O threads as `serve` builds them.
    fn io_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-io")
            .on_thread_start(sched::io_thread_started)
            .on_thread_park(sched::io_thread_parked)
            .enable_all()
            .build()
            .unwrap()
    }

    /// Small jobs run where the call is, one per idle turn of the I/O thread: a second
    /// small job before the thread has found itself idle goes to the pool.
    #[test]
    fn small_jobs_run_inline_once_per_idle_turn() {
        let rt = io_runtime();
        // Any recent service time: a loaded machine may stretch these tiny jobs.
        let adm = Admission::start_with(1, 8, 1 << 20, Duration::MAX);
        let run = |adm: Arc<Admission>, small| async move {
            let slot = adm.reserve(far(), false).unwrap();
            adm.run(slot, far(), small, |_| thread_name())
                .await
                .unwrap()
        };
        let names = rt
            .block_on(rt.spawn(async move {
                let mut names = vec![run(Arc::clone(&adm), true).await];
                // No await point between the two: the thread has not been idle.
                names.push(run(Arc::clone(&adm), true).await);
                // Idle on a timer: the thread parks, and its turn opens again.
                tokio::time::sleep(Duration::from_millis(1)).await;
                names.push(run(Arc::clone(&adm), true).await);
                tokio::time::sleep(Duration::from_millis(1)).await;
                names.push(run(Arc::clone(&adm), false).await);
                assert_eq!(adm.running() + adm.queued(), 0);
                names
            }))
            .unwrap();
        assert_eq!(names[0], "test-io");
        assert!(names[1].starts_with("normd-worker-"), "{names:?}");
        assert_eq!(names[2], "test-io");
        assert!(
            names[3].starts_with("normd-worker-"),
            "not small: {names:?}"
        );
    }

    /// Off normd's I/O threads (a plain runtime), nothing runs inline.
    #[tokio::test]
    async fn only_io_threads_run_jobs_inline() {
        let adm = Admission::start_with(1, 4, 1 << 20, Duration::MAX);
        let slot = adm.reserve(far(), false).unwrap();
        let name = adm.run(slot, far(), true, |_| thread_name()).await.unwrap();
        assert!(name.starts_with("normd-worker-"), "{name}");
    }

    /// A small job does not overtake: with the worker busy it queues, and runs on the
    /// worker once it is free.
    #[test]
    fn a_small_job_queues_behind_a_busy_pool() {
        let rt = io_runtime();
        let adm = Admission::start_with(1, 8, 1 << 20, Duration::MAX);
        let name = rt
            .block_on(rt.spawn(async move {
                let (busy, release) = occupy_the_worker(&adm).await;
                let slot = adm.reserve(far(), false).unwrap();
                let mut small = Box::pin(adm.run(slot, far(), true, |_| thread_name()));
                assert!(futures_poll_once(small.as_mut()).await.is_none());
                release.send(()).unwrap();
                busy.await.unwrap().unwrap();
                small.await.unwrap()
            }))
            .unwrap();
        assert!(name.starts_with("normd-worker-"), "{name}");
    }

    /// After slow jobs, small inputs go to the pool too: their size no longer says they
    /// are quick.
    #[test]
    fn slow_recent_jobs_keep_small_ones_on_the_pool() {
        let rt = io_runtime();
        let adm = Admission::start(1, 8, 1 << 20);
        let name = rt
            .block_on(rt.spawn(async move {
                let slot = adm.reserve(far(), false).unwrap();
                let slow = INLINE_MAX_SERVICE * 4;
                adm.run(slot, far(), false, move |_| std::thread::sleep(slow))
                    .await
                    .unwrap();
                assert!(adm.service_time() > INLINE_MAX_SERVICE);
                tokio::time::sleep(Duration::from_millis(1)).await;
                let slot = adm.reserve(far(), false).unwrap();
                adm.run(slot, far(), true, |_| thread_name()).await.unwrap()
            }))
            .unwrap();
        assert!(name.starts_with("normd-worker-"), "{name}");
    }

    #[tokio::test]
    async fn a_panic_is_contained() {
        let adm = Admission::start(1, 4, 1 << 20);
        let slot = adm.reserve(far(), false).unwrap();
        let r: Result<(), _> = adm.run(slot, far(), false, |_| panic!("boom")).await;
        assert_eq!(r, Err(Refusal::Panicked));
        let slot = adm.reserve(far(), false).unwrap();
        assert_eq!(adm.run(slot, far(), false, |_| 7).await, Ok(7));
    }

    /// A call that stops waiting (deadline, or its future dropped because the client
    /// left) while its job is still queued gives its slot back at once, although the
    /// only worker is busy and never reaches the job.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_that_gives_up_while_queued_frees_its_slot_at_once() {
        let adm = Admission::start(1, 1, 1 << 20);
        let (busy, release_tx) = occupy_the_worker(&adm).await;

        // Deadline while queued.
        let deadline = Instant::now() + Duration::from_millis(20);
        let slot = adm.reserve(deadline, false).unwrap();
        assert_eq!(adm.queued(), 1);
        assert_eq!(
            adm.run(slot, deadline, false, |_| ()).await,
            Err(Refusal::DeadlineExceeded)
        );
        assert_eq!(
            adm.queued(),
            0,
            "the slot is back before the worker frees up"
        );

        // The caller leaves while queued.
        let slot = adm.reserve(far(), false).unwrap();
        let waited = tokio::time::timeout(
            Duration::from_millis(20),
            adm.run(slot, far(), false, |_| ()),
        )
        .await;
        assert!(waited.is_err(), "still queued behind the busy worker");
        assert_eq!(adm.queued(), 0);
        assert!(adm.reserve(far(), false).is_ok());

        release_tx.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn the_deadline_answer_does_not_wait_for_the_work() {
        let adm = Admission::start(1, 4, 1 << 20);
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (seen_tx, seen_rx) = std::sync::mpsc::channel::<bool>();
        // Long enough that the idle worker starts the job before it passes, even on a
        // loaded machine (a job whose deadline passes in the queue is skipped unstarted).
        let deadline = Instant::now() + Duration::from_millis(1000);
        let slot = adm.reserve(deadline, false).unwrap();
        // The work blocks until released, so only the deadline can end the call.
        let r = adm
            .run(slot, deadline, false, move |budget| {
                let _ = release_rx.recv();
                let _ = seen_tx.send(budget.should_stop());
            })
            .await;
        assert_eq!(r, Err(Refusal::DeadlineExceeded));
        release_tx.send(()).unwrap();
        // The abandoned work observes that it should stop.
        assert!(seen_rx.recv().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_queued_work_never_starts() {
        let adm = Admission::start(1, 4, 1 << 20);
        // The blocker holds the only worker before the next job is queued (otherwise
        // the worker could take that job first, before it is dropped).
        let (running, release_tx) = occupy_the_worker(&adm).await;
        let started = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&started);
        let slot = adm.reserve(far(), false).unwrap();
        let queued = adm.run(slot, far(), false, move |_| {
            flag.store(true, Ordering::SeqCst)
        });
        // Poll once so the job is enqueued, then drop it: the client went away.
        let mut queued = Box::pin(queued);
        assert!(futures_poll_once(queued.as_mut()).await.is_none());
        drop(queued);
        release_tx.send(()).unwrap();
        running.await.unwrap().unwrap();
        // A third job runs; the dropped one never did.
        let slot = adm.reserve(far(), false).unwrap();
        adm.run(slot, far(), false, |_| ()).await.unwrap();
        assert!(!started.load(Ordering::SeqCst));
    }

    /// Runs a job that holds the pool's only worker until the returned sender is used;
    /// returns once the job has started. Needs a multi-thread runtime.
    async fn occupy_the_worker(
        adm: &Arc<Admission>,
    ) -> (
        tokio::task::JoinHandle<Result<(), Refusal>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let slot = adm.reserve(far(), false).unwrap();
        let adm = Arc::clone(adm);
        let busy = tokio::spawn(async move {
            adm.run(slot, far(), false, move |_| {
                let _ = started_tx.send(());
                let _ = release_rx.recv();
            })
            .await
        });
        tokio::task::spawn_blocking(move || started_rx.recv())
            .await
            .unwrap()
            .unwrap();
        (busy, release_tx)
    }

    async fn futures_poll_once<F: std::future::Future + Unpin>(f: F) -> Option<F::Output> {
        let mut f = f;
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut f).poll(cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
