//! Broker URLs, for the client and the gateway's configuration alike.

use rumqttc::Transport;

use crate::ClientError;

/// How a broker URL reaches the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerTransport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

/// A broker address: `mqtt://`, `tcp://` (1883), `mqtts://`, `ssl://`,
/// `tls://` (8883), `ws://` (80) and `wss://` (443), with optional
/// `user:password@`. The one parser of MQTT URLs, shared with the gateway's
/// configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// The host, or for WebSocket the whole URL without credentials (rumqttc's convention).
    pub host: String,
    pub port: u16,
    pub transport: BrokerTransport,
    pub credentials: Option<(String, String)>,
}

impl BrokerUrl {
    pub fn parse(raw: &str) -> Result<BrokerUrl, ClientError> {
        let invalid = || ClientError::Url(raw.to_string());
        let url = url::Url::parse(raw).map_err(|_| invalid())?;
        let host = url.host_str().ok_or_else(invalid)?.to_string();
        let (default_port, transport) = match url.scheme() {
            "mqtt" | "tcp" => (1883, BrokerTransport::Tcp),
            "mqtts" | "ssl" | "tls" => (8883, BrokerTransport::Tls),
            "ws" => (80, BrokerTransport::Ws),
            "wss" => (443, BrokerTransport::Wss),
            _ => return Err(invalid()),
        };
        let port = url.port().unwrap_or(default_port);
        let credentials = (!url.username().is_empty()).then(|| {
            (
                url.username().to_string(),
                url.password().unwrap_or_default().to_string(),
            )
        });
        let host = match transport {
            BrokerTransport::Ws | BrokerTransport::Wss => {
                let mut ws = url.clone();
                ws.set_username("").ok();
                ws.set_password(None).ok();
                ws.to_string()
            }
            BrokerTransport::Tcp | BrokerTransport::Tls => host,
        };
        Ok(BrokerUrl {
            host,
            port,
            transport,
            credentials,
        })
    }

    pub(crate) fn rumqttc_transport(&self) -> Transport {
        match self.transport {
            BrokerTransport::Tcp => Transport::Tcp,
            BrokerTransport::Tls => Transport::tls_with_default_config(),
            BrokerTransport::Ws => Transport::Ws,
            BrokerTransport::Wss => Transport::wss_with_default_config(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BrokerUrl;

    type Parsed = (String, u16, Option<(String, String)>);

    fn parsed(url: &str) -> Option<Parsed> {
        BrokerUrl::parse(url)
            .ok()
            .map(|broker| (broker.host, broker.port, broker.credentials))
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            parsed("mqtt://127.0.0.1:1884"),
            Some(("127.0.0.1".into(), 1884, None))
        );
        assert_eq!(parsed("tcp://broker"), Some(("broker".into(), 1883, None)));
        assert_eq!(
            parsed("mqtts://bench:secret@broker"),
            Some((
                "broker".into(),
                8883,
                Some(("bench".into(), "secret".into()))
            ))
        );
        assert_eq!(
            parsed("ws://broker:8083/mqtt"),
            Some(("ws://broker:8083/mqtt".into(), 8083, None))
        );
        assert!(parsed("http://x").is_none());
        assert!(parsed("mqtt://x:notaport").is_none());
    }
}
