//! TLS fixtures: a certificate authority made per test (rcgen), and a
//! Mosquitto and a redis-server that accept only TLS clients with a
//! certificate from it and a password.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::{free_port, wait_for_port, Process};

/// A certificate and its key, written as PEM files.
pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A test certificate authority writing its files into `dir`.
pub struct Authority {
    pub ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Authority {
    pub fn new(dir: &Path, name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let ca = dir.join(format!("{name}.pem"));
        std::fs::write(&ca, cert.pem()).expect("write ca");
        Authority {
            ca,
            issuer: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self, name: &str) -> Pem {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        self.issue(name, CertificateParams::new(names).expect("server params"))
    }

    /// A client certificate; `expired` makes one valid only in 2020.
    pub fn client(&self, name: &str, expired: bool) -> Pem {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2020, 12, 31);
        }
        self.issue(name, params)
    }

    fn issue(&self, name: &str, mut params: CertificateParams) -> Pem {
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let pem = Pem {
            cert: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&pem.cert, cert.pem()).expect("write cert");
        std::fs::write(&pem.key, key.serialize_pem()).expect("write key");
        pem
    }
}

/// Mosquitto configuration lines for two more listeners that take only TLS
/// clients with a certificate from `ca`, and the users of `password_file`:
/// MQTT over TLS on `tls_port`, MQTT over secure WebSocket on `wss_port`
/// (the plain listener stays open to anonymous test clients).
pub fn mosquitto_tls_listeners(
    tls_port: u16,
    wss_port: u16,
    ca: &Path,
    server: &Pem,
    password_file: &Path,
) -> String {
    let tls = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        ca.display(),
        server.cert.display(),
        server.key.display(),
    );
    format!(
        "allow_anonymous true\npassword_file {}\nlistener {tls_port} 127.0.0.1\n{tls}listener {wss_port} 127.0.0.1\nprotocol websockets\n{tls}",
        password_file.display(),
    )
}

/// A redis-server on a TLS port only, requiring client certificates from
/// `ca` and `password`.
pub struct TlsRedis {
    pub port: u16,
    _process: Process,
}

impl TlsRedis {
    pub fn start(dir: &Path, ca: &Path, server: &Pem, password: &str) -> TlsRedis {
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .arg("--tls-cert-file")
            .arg(&server.cert)
            .arg("--tls-key-file")
            .arg(&server.key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "yes", "--requirepass", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let process = Process { child };
        wait_for_port(port, "redis-server (tls)");
        TlsRedis {
            port,
            _process: process,
        }
    }

    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}
