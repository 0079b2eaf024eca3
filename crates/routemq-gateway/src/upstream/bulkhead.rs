//! Bulkheads: each upstream service gets at most its own share of a worker,
//! and within it requests wait their turn instead of being refused because
//! they arrived together.
//!
//! Per service, a call runs when fewer than the service's adaptive limit
//! ([`AdaptiveLimit`]) are in flight; otherwise it waits in the service's
//! queue, callers served in turn ([`FairQueue`]). A request is refused
//! (`503 service_overloaded`, with `retry-after`) only when a bound is
//! reached:
//! * `queue_timeout` — or the request's own deadline, less the service's
//!   recent latency, so a request handed a slot still has time for its
//!   call — passes before a slot frees (`reason="queue_timeout"`);
//! * the service already holds its share of the worker (`max_held`, calls
//!   in flight plus waiting) and has not shown it can drain one more within
//!   that time: a hanging service holds no more than its share, so the rest
//!   of the worker keeps serving the others (`reason="queue_full"`).
//!
//! A service that is answering may queue beyond its share when its
//! measured latency says the request would still run within the wait
//! budget: a burst to a healthy service is served, not refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use super::concurrency::AdaptiveLimit;
use super::fair_queue::{Caller, FairQueue};
use crate::{ErrorKind, GatewayError};

/// How the bulkheads of one worker behave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLimits {
    /// The adaptive limit's ceiling for every service not in `per_service`.
    pub default_max_in_flight: usize,
    pub per_service: HashMap<String, usize>,
    /// The adaptive limit's floor.
    pub min_in_flight: usize,
    /// Where each service's limit starts.
    pub initial_in_flight: usize,
    /// Calls in flight plus waiting one service may hold before it must
    /// show it can drain them.
    pub max_held: usize,
    /// The longest a request waits for a slot.
    pub queue_timeout: Duration,
}

impl ServiceLimits {
    /// No bulkheads: every service may use the whole worker.
    pub fn unlimited() -> ServiceLimits {
        ServiceLimits {
            default_max_in_flight: usize::MAX >> 4,
            per_service: HashMap::new(),
            min_in_flight: usize::MAX >> 4,
            initial_in_flight: usize::MAX >> 4,
            max_held: usize::MAX >> 4,
            queue_timeout: Duration::from_secs(1),
        }
    }

    fn ceiling(&self, service: &str) -> usize {
        self.per_service
            .get(service)
            .copied()
            .unwrap_or(self.default_max_in_flight)
            .max(1)
    }
}

/// Why a request was refused at the bulkhead: the `reason` label of
/// `routemq_service_overloaded_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    QueueFull,
    QueueTimeout,
}

/// Every `reason` of a bulkhead refusal.
pub const BULKHEAD_REFUSALS: [&str; 2] = ["queue_full", "queue_timeout"];

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
        }
    }
}

/// How long a service whose latency is not yet known may hold more than
/// its share on trust — a cold burst to a healthy service proves itself
/// within it, a hanging one is refused after it: an eighth of the queue
/// timeout (250 ms by default), within 100 ms..1 s, short enough that a
/// cold hanging service holds the rest of the intake only briefly, once.
/// Twice that is the shortest silence that counts as not draining for a
/// service whose latency is known, so a busy machine's scheduling gaps are
/// not taken for a hang.
fn proof_grace(queue_timeout: Duration) -> Duration {
    (queue_timeout / 8).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// One service's bulkhead.
struct Gate {
    service: String,
    state: Mutex<GateState>,
    max_held: usize,
    /// See [`proof_grace`].
    grace: Duration,
    metrics: GateMetrics,
}

struct GateState {
    limit: AdaptiveLimit,
    in_flight: usize,
    /// The last completion, or when calls started after none were in
    /// flight: a busy service that has not answered for long is not draining.
    progress: Instant,
    queue: FairQueue<oneshot::Sender<()>>,
    next_id: u64,
}

/// The service's gauges and histogram, made once.
struct GateMetrics {
    limit: metrics::Gauge,
    in_flight: metrics::Gauge,
    queued: metrics::Gauge,
    wait: metrics::Histogram,
}

/// A slot of a service's bulkhead, held for the duration of one call.
pub struct Slot {
    gate: Arc<Gate>,
    granted: Instant,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(Some(self.granted.elapsed()));
    }
}

impl Gate {
    fn new(service: &str, limits: &ServiceLimits) -> Gate {
        let ceiling = limits.ceiling(service);
        let labels = [("service", service.to_string())];
        let gate = Gate {
            service: service.to_string(),
            state: Mutex::new(GateState {
                limit: AdaptiveLimit::new(limits.initial_in_flight, limits.min_in_flight, ceiling),
                in_flight: 0,
                progress: Instant::now(),
                queue: FairQueue::default(),
                next_id: 0,
            }),
            max_held: limits.max_held.max(1),
            grace: proof_grace(limits.queue_timeout),
            metrics: GateMetrics {
                limit: metrics::gauge!("routemq_service_concurrency_limit", &labels),
                in_flight: metrics::gauge!("routemq_service_in_flight", &labels),
                queued: metrics::gauge!("routemq_service_queued", &labels),
                wait: metrics::histogram!("routemq_service_queue_wait_seconds", &labels),
            },
        };
        gate.publish(&gate.state.lock());
        gate
    }

    fn publish(&self, state: &GateState) {
        self.metrics.limit.set(state.limit.current() as f64);
        self.metrics.in_flight.set(state.in_flight as f64);
        self.metrics.queued.set(state.queue.len() as f64);
    }

    /// A slot now, a place in the queue, or a refusal, for a request that
    /// may wait at most `queue_timeout` and needs its answer within
    /// `deadline`.
    fn try_enter(&self, caller: Caller, queue_timeout: Duration, deadline: Duration) -> Entry {
        let mut state = self.state.lock();
        if state.in_flight < state.limit.current() && state.queue.is_empty() {
            if state.in_flight == 0 {
                state.progress = Instant::now();
            }
            state.in_flight += 1;
            self.publish(&state);
            return Entry::Now;
        }
        let latency = state
            .limit
            .recent()
            .map_or(Duration::ZERO, Duration::from_secs_f64);
        let budget = queue_timeout.min(deadline.saturating_sub(latency));
        let held = state.in_flight + state.queue.len();
        let on_trial = held >= self.max_held;
        if on_trial && !self.may_prove(&state, budget) {
            return Entry::Refused(Refusal::QueueFull, budget);
        }
        let (granted, wait) = oneshot::channel();
        state.next_id += 1;
        let id = state.next_id;
        state.queue.push(caller, id, granted);
        self.publish(&state);
        Entry::Queued {
            id,
            wait,
            on_trial,
            budget,
        }
    }

    /// Whether one more queued request would get a slot within `budget`,
    /// judged from the service's measured latency (the queue ahead of it
    /// drains `limit` calls per baseline latency) and its progress (a busy
    /// service silent for four times its latency, and for at least twice
    /// its grace, is not draining). `None` while its latency is unknown.
    fn drains_in(&self, state: &GateState, budget: Duration) -> Option<bool> {
        let latency = state.limit.baseline()?;
        let silent = state.progress.elapsed().as_secs_f64();
        let floor = 2.0 * self.grace.as_secs_f64();
        if state.in_flight > 0 && silent > (4.0 * latency).max(floor) {
            return Some(false);
        }
        let limit = state.limit.current().max(1) as f64;
        let rounds = ((state.queue.len() + 1) as f64 / limit).ceil();
        Some(rounds * latency < budget.as_secs_f64())
    }

    /// Whether a request beyond the service's share may wait on trial: the
    /// service drains in time, or — its latency unknown — it has been busy
    /// for less than its grace (a cold service is trusted once, not anew
    /// with every request that finds it still silent).
    fn may_prove(&self, state: &GateState, budget: Duration) -> bool {
        match self.drains_in(state, budget) {
            Some(drains) => drains,
            None => state.progress.elapsed() < self.grace,
        }
    }

    /// A request queued beyond the service's share, once its grace has
    /// passed: may it keep waiting?
    fn still_drains(&self, budget: Duration) -> bool {
        let state = self.state.lock();
        self.drains_in(&state, budget) == Some(true)
    }

    /// A queued request gave up: out of the queue, unless a slot was already
    /// handed to it (then it returns that slot).
    fn give_up(&self, caller: Caller, id: u64) -> bool {
        let mut state = self.state.lock();
        let removed = state.queue.remove(caller, id).is_some();
        self.publish(&state);
        removed
    }

    /// A call finished after `took` (`None`: a slot handed over but never
    /// used): it goes to the next caller in turn.
    fn release(&self, took: Option<Duration>) {
        let mut state = self.state.lock();
        state.in_flight -= 1;
        state.progress = Instant::now();
        let in_use = state.in_flight + state.queue.len() + 1;
        if let Some(took) = took {
            state.limit.sample(took.as_secs_f64(), in_use);
        }
        while state.in_flight < state.limit.current() {
            let Some(waiter) = state.queue.pop() else {
                break;
            };
            // A waiter that gave up in the meantime does not take the slot.
            if waiter.send(()).is_ok() {
                state.in_flight += 1;
            }
        }
        self.publish(&state);
    }
}

enum Entry {
    Now,
    Queued {
        id: u64,
        wait: oneshot::Receiver<()>,
        /// Queued beyond the service's share: it stays only if the service
        /// shows within its grace ([`proof_grace`]) that it drains in time.
        on_trial: bool,
        /// How long it may wait.
        budget: Duration,
    },
    Refused(Refusal, Duration),
}

/// The per-service bulkheads of one worker, made on a service's first call.
pub struct Bulkheads {
    limits: ServiceLimits,
    gates: RwLock<HashMap<String, Arc<Gate>>>,
}

impl Bulkheads {
    pub fn new(limits: ServiceLimits) -> Bulkheads {
        Bulkheads {
            limits,
            gates: RwLock::default(),
        }
    }

    /// A slot of `service`'s bulkhead for `caller`, waiting at most
    /// `queue_timeout` and never past `deadline` (what the caller still
    /// waits for its answer).
    pub async fn enter(
        &self,
        service: &str,
        caller: Caller,
        deadline: Duration,
    ) -> Result<Slot, GatewayError> {
        let gate = self.gate(service);
        let queued_at = Instant::now();
        let slot = |gate: Arc<Gate>| Slot {
            gate,
            granted: Instant::now(),
        };
        let (id, mut wait, on_trial, budget) =
            match gate.try_enter(caller, self.limits.queue_timeout, deadline) {
                Entry::Now => {
                    gate.metrics.wait.record(0.0);
                    return Ok(slot(gate));
                }
                Entry::Refused(refusal, budget) => return Err(refused(&gate, refusal, budget)),
                Entry::Queued {
                    id,
                    wait,
                    on_trial,
                    budget,
                } => (id, wait, on_trial, budget),
            };
        // Leaves the queue if this future is dropped while waiting.
        let mut waiting = Waiting {
            gate: &gate,
            caller,
            id,
            done: false,
        };
        let give_up_at = tokio::time::Instant::from_std(queued_at + budget);
        let mut outcome = Err(Refusal::QueueTimeout);
        if on_trial && gate.grace < budget {
            let proof_at = tokio::time::Instant::from_std(queued_at + gate.grace);
            match tokio::time::timeout_at(proof_at, &mut wait).await {
                Ok(granted) => outcome = granted.map_err(|_| Refusal::QueueTimeout),
                Err(_) if !gate.still_drains(budget) => outcome = Err(Refusal::QueueFull),
                Err(_) => {}
            }
            if outcome.is_ok() || outcome == Err(Refusal::QueueFull) {
                return finish(&gate, caller, id, outcome, queued_at, budget, &mut waiting);
            }
        }
        // Borrowed, not moved: the receiver must outlive `finish`, so a slot
        // handed over just as the wait ended is received, not lost.
        if let Ok(granted) = tokio::time::timeout_at(give_up_at, &mut wait).await {
            outcome = granted.map_err(|_| Refusal::QueueTimeout);
        }
        let slot = finish(&gate, caller, id, outcome, queued_at, budget, &mut waiting);
        drop(wait);
        slot
    }

    fn gate(&self, service: &str) -> Arc<Gate> {
        if let Some(gate) = self.gates.read().get(service) {
            return Arc::clone(gate);
        }
        let mut gates = self.gates.write();
        Arc::clone(
            gates
                .entry(service.to_string())
                .or_insert_with(|| Arc::new(Gate::new(service, &self.limits))),
        )
    }
}

/// The end of a wait: the slot, or — unless it was handed over just as the
/// wait ended — the refusal.
fn finish(
    gate: &Arc<Gate>,
    caller: Caller,
    id: u64,
    outcome: Result<(), Refusal>,
    queued_at: Instant,
    budget: Duration,
    waiting: &mut Waiting<'_>,
) -> Result<Slot, GatewayError> {
    waiting.done = true;
    gate.metrics.wait.record(queued_at.elapsed().as_secs_f64());
    let slot = || Slot {
        gate: Arc::clone(gate),
        granted: Instant::now(),
    };
    match outcome {
        Ok(()) => Ok(slot()),
        Err(refusal) if gate.give_up(caller, id) => Err(refused(gate, refusal, budget)),
        Err(_) => Ok(slot()),
    }
}

/// A place in a queue, given up if the request stops waiting.
struct Waiting<'g> {
    gate: &'g Arc<Gate>,
    caller: Caller,
    id: u64,
    done: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.done && !self.gate.give_up(self.caller, self.id) {
            // Granted, but nobody will use it.
            self.gate.release(None);
        }
    }
}

fn refused(gate: &Gate, refusal: Refusal, budget: Duration) -> GatewayError {
    if crate::observe::metrics_enabled() {
        metrics::counter!(
            "routemq_service_overloaded_total",
            "service" => gate.service.clone(),
            "reason" => refusal.as_str()
        )
        .increment(1);
    }
    let message = match refusal {
        Refusal::QueueFull => format!(
            "`{}` holds its share of this worker and is not draining fast enough",
            gate.service
        ),
        Refusal::QueueTimeout => format!("no slot for `{}` freed within {budget:?}", gate.service),
    };
    GatewayError::new(ErrorKind::ServiceOverloaded, message).with_property("retry-after", "1")
}

#[cfg(test)]
mod tests;
