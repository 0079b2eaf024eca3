//! The MQTT runtime: connects to the broker, joins the shared subscriptions
//! derived from the route table, feeds requests to the gateway pipeline and
//! publishes its replies.

mod chunked;
mod dispatch;
mod event_loop;
mod memory;
mod message;
mod outflow;
mod reload;
mod replies;
mod reply_loop;
mod session;
mod worker;

pub use reload::ConfigSource;
#[cfg(test)]
pub(crate) use worker::mqtt_options;
pub use worker::run_worker;
