//! The clock of every periodic task (registry refresh, probes, flushes,
//! lease and membership renewals): one tick per period, a late tick not
//! made up, until stopped. One place for what each loop would otherwise
//! spell out (an interval, its missed-tick policy, a select on the stop).

use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub struct Every {
    interval: Interval,
    stop: CancellationToken,
}

impl Every {
    /// Ticks at once, then every `period`, until `stop` fires.
    pub fn new(period: Duration, stop: CancellationToken) -> Every {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Every { interval, stop }
    }

    /// Never stopped: for tasks that end by themselves when what they
    /// serve is dropped.
    pub fn until_dropped(period: Duration) -> Every {
        Every::new(period, CancellationToken::new())
    }

    /// Waits for the next tick; `false` once stopped.
    pub async fn tick(&mut self) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}
