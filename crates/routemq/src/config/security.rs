//! Transport security of the worker's own connections (`[mqtt]`,
//! `[redis]`): TLS files and credentials. Passwords come from the
//! environment or a file, never from the configuration file itself;
//! credentials inside a URL still work, for local use, with a warning.

use std::path::Path;

use routemq_gateway::tls::TlsFiles;

use super::middleware::Secrets;
use super::raw::RawTls;

/// A section's user and the settings naming its password.
pub struct RawCredentials {
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<String>,
}

/// The setting names of one section, as errors and `check-config` print them.
pub struct Section {
    pub name: &'static str,
    pub password_env: &'static str,
    pub password_file: &'static str,
}

pub const MQTT: Section = Section {
    name: "mqtt",
    password_env: "mqtt.password_env",
    password_file: "mqtt.password_file",
};

pub const REDIS: Section = Section {
    name: "redis",
    password_env: "redis.password_env",
    password_file: "redis.password_file",
};

/// The user and password a section configures, if any. A password without
/// a user is allowed (Redis `requirepass`).
pub fn credentials(
    section: &Section,
    raw: RawCredentials,
    secrets: &mut Secrets<'_>,
    config_dir: &Path,
) -> Result<(Option<String>, Option<String>), String> {
    let password = secrets
        .one_of(
            (section.password_env, raw.password_env),
            (section.password_file, raw.password_file),
            config_dir,
        )
        .map_err(|message| format!("{}: {message}", section.name))?
        // A file's trailing newline is not part of the password.
        .map(|password| password.trim_end_matches(['\r', '\n']).to_string());
    if raw.username.as_deref() == Some("") {
        return Err(format!("{}.username may not be empty", section.name));
    }
    Ok((raw.username, password))
}

/// The TLS files of `[SECTION.tls]`; `tls_url` says whether the URL asks
/// for TLS (then the system's roots are trusted when no CA is given).
pub fn tls_files(
    section: &Section,
    raw: Option<RawTls>,
    tls_url: bool,
    config_dir: &Path,
) -> Result<Option<TlsFiles>, String> {
    let name = section.name;
    let Some(raw) = raw else {
        return Ok(tls_url.then(TlsFiles::default));
    };
    if !tls_url {
        return Err(format!(
            "[{name}.tls] needs a TLS URL ({})",
            match name {
                "mqtt" => "mqtts:// or wss://",
                _ => "rediss:// or rediss-cluster://",
            }
        ));
    }
    let client_auth = match (raw.cert_file, raw.key_file) {
        (Some(cert), Some(key)) => Some((config_dir.join(cert), config_dir.join(key))),
        (None, None) => None,
        _ => return Err(format!("{name}.tls: set cert_file and key_file together")),
    };
    Ok(Some(TlsFiles {
        ca_file: raw.ca_file.map(|file| config_dir.join(file)),
        client_auth,
    }))
}

/// The warning for credentials written inside a URL.
pub fn credentials_in_url(name: &str) -> String {
    format!(
        "{name}: credentials inside the URL end up in files and process listings; \
         use {name}.username with {name}.password_env or {name}.password_file"
    )
}
