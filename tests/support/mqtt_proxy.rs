//! An MQTT-aware TCP proxy for fault injection between a worker and the
//! broker. Mosquitto never resends on a live connection, so the faults a
//! worker meets with EMQX or a flaky network are made here: cut every
//! connection, delay what the broker sends, send a DUP copy of each
//! PUBLISH. It frames packets (fixed header and remaining length) and keeps a
//! journal of deliveries and acks per connection, so a test can check that
//! nothing acknowledged the wrong message.
//!
//! A worker opens two connections: one takes requests, the other
//! (client id `…-replies`) publishes replies. [`MqttProxy::connections`]
//! counts the first kind — the session a request lives on — while faults
//! apply to every connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const CONNECT: u8 = 1;
const PUBLISH: u8 = 3;
const PUBACK: u8 = 4;
const PUBREC: u8 = 5;

/// Which way a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToBroker,
    ToClient,
}

/// One packet the proxy passed (or injected).
#[derive(Debug, Clone)]
pub struct Seen {
    /// The proxied connection, from 1.
    pub connection: u64,
    pub direction: Direction,
    pub kind: u8,
    pub pkid: Option<u16>,
    pub dup: bool,
    pub injected: bool,
    pub at: Instant,
}

#[derive(Default)]
struct Faults {
    /// Broker → client packets wait this long (ms).
    delay_ms: AtomicU64,
    /// Send a DUP copy of every QoS 1/2 PUBLISH this long after it (ms; 0: off).
    duplicate_after_ms: AtomicU64,
    /// Drop the broker's PUBACKs on connections up to this number (0: off),
    /// as a broker that never frees a slot would.
    swallow_pubacks_through: AtomicU64,
    cut: Mutex<CancellationToken>,
    /// Every connection proxied so far.
    opened: AtomicU64,
    /// Those that are not a worker's reply connection.
    request_connections: AtomicU64,
    /// A worker's reply connections.
    reply_connections: AtomicU64,
    journal: Mutex<Vec<Seen>>,
}

pub struct MqttProxy {
    pub port: u16,
    faults: Arc<Faults>,
    stop: CancellationToken,
}

impl Drop for MqttProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

impl MqttProxy {
    /// Proxies to the broker on `broker_port`, on the upstreams' runtime (so
    /// a test blocking its own runtime does not stall the proxy).
    pub async fn start(broker_port: u16) -> MqttProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let listener = listener.into_std().expect("std listener");
        let faults = Arc::new(Faults::default());
        let stop = CancellationToken::new();
        let (accepting, until) = (Arc::clone(&faults), stop.clone());
        crate::upstream::upstreams().spawn(async move {
            let listener = TcpListener::from_std(listener).expect("listener");
            loop {
                let accepted = tokio::select! {
                    _ = until.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let faults = Arc::clone(&accepting);
                tokio::spawn(async move { proxy(client, broker_port, faults).await });
            }
        });
        MqttProxy { port, faults, stop }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Closes every proxied connection now.
    pub fn cut(&self) {
        let mut cut = self.faults.cut.lock().expect("cut lock");
        cut.cancel();
        *cut = CancellationToken::new();
    }

    pub fn delay(&self, delay: Duration) {
        self.faults
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sends a DUP copy of every QoS 1/2 PUBLISH `after` the original
    /// (`None`: stop).
    pub fn duplicate_publishes(&self, after: Option<Duration>) {
        let ms = after.map_or(0, |after| (after.as_millis() as u64).max(1));
        self.faults.duplicate_after_ms.store(ms, Ordering::SeqCst);
    }

    /// Drops every PUBACK the broker sends on the connections made so far
    /// (and, if none is up, on the next one); later connections get theirs.
    pub fn swallow_pubacks_on_current_connection(&self) {
        let current = self.faults.opened.load(Ordering::SeqCst).max(1);
        self.faults
            .swallow_pubacks_through
            .store(current, Ordering::SeqCst);
    }

    /// Connections made so far, a worker's reply connections not counted.
    pub fn connections(&self) -> u64 {
        self.faults.request_connections.load(Ordering::SeqCst)
    }

    /// A worker's reply connections made so far.
    pub fn reply_connections(&self) -> u64 {
        self.faults.reply_connections.load(Ordering::SeqCst)
    }

    pub fn journal(&self) -> Vec<Seen> {
        self.faults.journal.lock().expect("journal lock").clone()
    }

    /// Acks that did not answer a delivery outstanding on their own
    /// connection: an ack for a packet id never delivered there, or already
    /// acked (each PUBLISH, copies included, needs exactly one ack).
    pub fn misdirected_acks(&self) -> Vec<Seen> {
        let mut outstanding = std::collections::HashSet::new();
        let mut wrong = Vec::new();
        for seen in self.journal() {
            let Some(pkid) = seen.pkid else { continue };
            match (seen.direction, seen.kind) {
                (Direction::ToClient, PUBLISH) if !seen.dup => {
                    outstanding.insert((seen.connection, pkid));
                }
                (Direction::ToBroker, PUBACK | PUBREC)
                    if !outstanding.remove(&(seen.connection, pkid)) =>
                {
                    wrong.push(seen);
                }
                _ => {}
            }
        }
        wrong
    }
}

/// One MQTT control packet, whole.
struct Packet {
    bytes: Vec<u8>,
}

impl Packet {
    fn kind(&self) -> u8 {
        self.bytes[0] >> 4
    }

    fn qos(&self) -> u8 {
        (self.bytes[0] >> 1) & 0b11
    }

    fn dup(&self) -> bool {
        self.bytes[0] & 0b1000 != 0
    }

    /// Offset of the variable header.
    fn body(&self) -> usize {
        let mut at = 1;
        while self.bytes[at] & 0x80 != 0 {
            at += 1;
        }
        at + 1
    }

    fn pkid(&self) -> Option<u16> {
        let at = self.body();
        let read = |at: usize| {
            Some(u16::from_be_bytes([
                *self.bytes.get(at)?,
                *self.bytes.get(at + 1)?,
            ]))
        };
        match self.kind() {
            PUBLISH if self.qos() > 0 => {
                let topic = usize::from(read(at)?);
                read(at + 2 + topic)
            }
            PUBACK..=7 => read(at),
            _ => None,
        }
    }

    /// A CONNECT's client id (MQTT 5: protocol name, level, flags, keep
    /// alive, properties, then the id).
    fn client_id(&self) -> Option<String> {
        if self.kind() != CONNECT {
            return None;
        }
        let mut at = self.body() + 2 + 4 + 1 + 1 + 2;
        let mut properties = 0usize;
        for shift in (0..4).map(|i| 7 * i) {
            let byte = *self.bytes.get(at)?;
            at += 1;
            properties |= usize::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                break;
            }
        }
        at += properties;
        let length = usize::from(u16::from_be_bytes([
            *self.bytes.get(at)?,
            *self.bytes.get(at + 1)?,
        ]));
        let id = self.bytes.get(at + 2..at + 2 + length)?;
        String::from_utf8(id.to_vec()).ok()
    }
}

async fn read_packet(stream: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Packet> {
    let mut bytes = vec![stream.read_u8().await.ok()?];
    let mut remaining = 0usize;
    for shift in (0..4).map(|i| 7 * i) {
        let byte = stream.read_u8().await.ok()?;
        bytes.push(byte);
        remaining |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
    }
    let start = bytes.len();
    bytes.resize(start + remaining, 0);
    stream.read_exact(&mut bytes[start..]).await.ok()?;
    Some(Packet { bytes })
}

fn note(faults: &Faults, connection: u64, direction: Direction, packet: &Packet, injected: bool) {
    faults.journal.lock().expect("journal lock").push(Seen {
        connection,
        direction,
        kind: packet.kind(),
        pkid: packet.pkid(),
        dup: packet.dup(),
        injected,
        at: Instant::now(),
    });
}

async fn proxy(client: TcpStream, broker_port: u16, faults: Arc<Faults>) {
    let Ok(broker) = TcpStream::connect(("127.0.0.1", broker_port)).await else {
        return;
    };
    client.set_nodelay(true).ok();
    broker.set_nodelay(true).ok();
    let connection = faults.opened.fetch_add(1, Ordering::SeqCst) + 1;
    let cut = faults.cut.lock().expect("cut lock").clone();
    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    let (to_client, mut outbox) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();

    let upstream = {
        let faults = Arc::clone(&faults);
        async move {
            while let Some(packet) = read_packet(&mut client_read).await {
                let replies_only = packet.client_id().map(|id| id.ends_with("-replies"));
                match replies_only {
                    Some(true) => faults.reply_connections.fetch_add(1, Ordering::SeqCst),
                    Some(false) => faults.request_connections.fetch_add(1, Ordering::SeqCst),
                    None => 0,
                };
                note(&faults, connection, Direction::ToBroker, &packet, false);
                if broker_write.write_all(&packet.bytes).await.is_err() {
                    return;
                }
            }
        }
    };
    let downstream = {
        let faults = Arc::clone(&faults);
        async move {
            while let Some(packet) = read_packet(&mut broker_read).await {
                // Latency, not a throughput cap: each packet is held for the
                // delay from its arrival, in order.
                let due =
                    Instant::now() + Duration::from_millis(faults.delay_ms.load(Ordering::SeqCst));
                note(&faults, connection, Direction::ToClient, &packet, false);
                if packet.kind() == PUBACK
                    && connection <= faults.swallow_pubacks_through.load(Ordering::SeqCst)
                {
                    continue;
                }
                let copy_after = faults.duplicate_after_ms.load(Ordering::SeqCst);
                if packet.kind() == PUBLISH && packet.qos() > 0 && copy_after > 0 {
                    let mut copy = Packet {
                        bytes: packet.bytes.clone(),
                    };
                    copy.bytes[0] |= 0b1000;
                    let (faults, to_client) = (Arc::clone(&faults), to_client.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(copy_after)).await;
                        note(&faults, connection, Direction::ToClient, &copy, true);
                        to_client.send((Instant::now(), copy.bytes)).ok();
                    });
                }
                if to_client.send((due, packet.bytes)).is_err() {
                    return;
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = outbox.recv().await {
            tokio::time::sleep_until(due.into()).await;
            if client_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = upstream => {}
        _ = downstream => {}
        _ = writer => {}
    }
}
