use rumqttc::v5::mqttbytes::v5::Publish;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, MqttOptions};

use super::{Acked, Arrival, Session};

fn delivery(pkid: u16, dup: bool) -> Publish {
    let mut publish = Publish::new("api/x", QoS::AtLeastOnce, "", None);
    publish.pkid = pkid;
    publish.dup = dup;
    publish
}

fn session() -> (Session, rumqttc::v5::EventLoop) {
    let (client, event_loop) = AsyncClient::new(MqttOptions::new("t", "127.0.0.1", 1), 8);
    (Session::new(client), event_loop)
}

#[test]
fn a_copy_of_a_delivery_does_not_run_again() {
    let (session, _loop) = session();
    let first = session.connected();
    assert_eq!(session.arrival(&delivery(7, false), first), Arrival::New);
    assert_eq!(
        session.arrival(&delivery(7, true), first),
        Arrival::Duplicate
    );
    // The broker reuses the id for a new message once it has our ack.
    assert_eq!(session.arrival(&delivery(7, false), first), Arrival::New);
    // A copy of a message this connection never saw runs (resumed session).
    assert_eq!(session.arrival(&delivery(8, true), first), Arrival::New);
    let second = session.connected();
    assert_eq!(session.arrival(&delivery(7, true), second), Arrival::New);
}

#[test]
fn acks_never_reach_a_later_connection() {
    let (session, _loop) = session();
    let first = session.connected();
    assert_eq!(session.ack(&delivery(1, false), first), Acked::Queued);
    session.lost();
    assert_eq!(session.ack(&delivery(2, false), first), Acked::Stale);
    let second = session.connected();
    assert_eq!(session.ack(&delivery(3, false), first), Acked::Stale);
    assert_eq!(session.ack(&delivery(4, false), second), Acked::Queued);
}
