//! `[[receive_connectors]]` and `[[send_connectors]]`.

use std::collections::BTreeMap;

use super::{Table, check_name, check_unique};
use crate::address::AddressSpace;
use crate::error::ConfigError;
use crate::guid::{GuidKind, derive_guid, normalise_guid};
use crate::net::{HostPort, IpNet, SMTP_PORT};
use crate::paths::PathBase;
use crate::raw::{RawReceiveConnector, RawReceiveTls, RawSendConnector};
use crate::types::{
    AuthMode, BareNewlines, ReceiveConnector, ReceiveTls, SendAuth, SendConnector, SendTls, TlsMode, User,
};

/// The relay networks of a receive connector that does not set them: loopback only, so that no default
/// configuration is an open relay.
pub(crate) const DEFAULT_RELAY_NETWORKS: [&str; 2] = ["127.0.0.0/8", "::1/128"];

/// RFC 5321 4.5.3.1.4: a command line is at least 512 octets.
const MIN_COMMAND_LINE: u32 = 512;

/// The receive connectors of the file, or the built-in one ("Default" on 127.0.0.1:2525) when the file has
/// none.
pub(super) fn receive_connectors(
    raw: Option<Vec<RawReceiveConnector>>,
    paths: &PathBase,
) -> Result<Vec<ReceiveConnector>, ConfigError> {
    let raw = raw.unwrap_or_else(|| vec![RawReceiveConnector::default()]);
    let connectors = raw
        .into_iter()
        .enumerate()
        .map(|(index, raw)| receive_connector(&Table::entry("receive_connectors", index), raw, paths))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique("receive_connectors", "name", connectors.iter().map(|c| c.name.as_str()))?;
    let mut listeners = BTreeMap::new();
    for (index, connector) in connectors.iter().enumerate() {
        if let Some(first) = listeners.insert(connector.listen, index) {
            return Err(ConfigError::invalid(
                format!("receive_connectors[{index}].listen"),
                format!("{} is already the listen address of receive_connectors[{first}]", connector.listen),
            ));
        }
    }
    Ok(connectors)
}

fn receive_connector(
    table: &Table,
    raw: RawReceiveConnector,
    paths: &PathBase,
) -> Result<ReceiveConnector, ConfigError> {
    let name = raw.name.unwrap_or_else(|| "Default".to_owned());
    check_name(table, &name)?;
    let relay_networks = raw
        .relay_networks
        .unwrap_or_else(|| DEFAULT_RELAY_NETWORKS.map(str::to_owned).to_vec())
        .iter()
        .map(|text| text.parse::<IpNet>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| table.err("relay_networks", why))?;
    let tls = match raw.tls {
        None => ReceiveTls::Off,
        Some(RawReceiveTls::Mode(mode)) => match mode.as_str() {
            "off" => ReceiveTls::Off,
            "self-signed" => ReceiveTls::SelfSigned,
            _ => {
                return Err(table.err(
                    "tls",
                    format!("{mode:?} is not one of \"off\", \"self-signed\" or {{ cert = \"...\", key = \"...\" }}"),
                ));
            }
        },
        Some(RawReceiveTls::Files(files)) => ReceiveTls::Files(table.tls_files("tls", files, paths)?),
    };
    let tls_mode = table.keyword("tls_mode", raw.tls_mode, TlsMode::Starttls)?;
    if tls_mode == TlsMode::Implicit && tls == ReceiveTls::Off {
        return Err(table.err("tls_mode", "\"implicit\" needs tls = \"self-signed\" or a certificate"));
    }
    let auth = table.keyword("auth", raw.auth, AuthMode::Off)?;
    let users = raw
        .users
        .unwrap_or_default()
        .into_iter()
        .map(|user| User { name: user.name, password_hash: user.password_hash })
        .collect::<Vec<_>>();
    for user in &users {
        if user.name.is_empty() || user.password_hash.is_empty() {
            return Err(table.err("users", "every user needs a non-empty name and password_hash"));
        }
        if !user.password_hash.starts_with("$argon2") {
            return Err(table.err(
                "users",
                format!(
                    "the password_hash of {} is not an argon2 PHC string ($argon2id$...); make one with \
                     `sluice hash-password`",
                    user.name
                ),
            ));
        }
    }
    check_unique(&table.key("users"), "name", users.iter().map(|u| u.name.as_str()))?;
    if auth == AuthMode::Required && users.is_empty() {
        return Err(table.err("auth", "\"required\" needs at least one entry in users"));
    }

    Ok(ReceiveConnector {
        name,
        listen: table.socket_addr("listen", raw.listen, "127.0.0.1:2525")?,
        relay_networks,
        max_message_size: table.nonzero_size("max_message_size", raw.max_message_size, "35MB")?,
        max_header_size: table.nonzero_size("max_header_size", raw.max_header_size, "1MB")?,
        max_recipients: table.at_least_one("max_recipients", raw.max_recipients, 200)?,
        max_command_line: table.in_range("max_command_line", raw.max_command_line, 2048, MIN_COMMAND_LINE, u32::MAX)?,
        max_connections: table.at_least_one("max_connections", raw.max_connections, 1000)?,
        max_connections_per_ip: table.at_least_one("max_connections_per_ip", raw.max_connections_per_ip, 50)?,
        max_errors: table.at_least_one("max_errors", raw.max_errors, 10)?,
        max_hop_count: table.at_least_one("max_hop_count", raw.max_hop_count, 50)?,
        connection_timeout: table.nonzero_duration("connection_timeout", raw.connection_timeout, "10m")?,
        connection_inactivity_timeout: table.nonzero_duration(
            "connection_inactivity_timeout",
            raw.connection_inactivity_timeout,
            "5m",
        )?,
        greet_pause: table.duration("greet_pause", raw.greet_pause, "0s")?,
        bare_newlines: table.keyword("bare_newlines", raw.bare_newlines, BareNewlines::Reject)?,
        tls,
        tls_mode,
        auth,
        users,
        auth_failures_per_minute: raw.auth_failures_per_minute.unwrap_or(5),
    })
}

/// The send connectors of the file (none built in). An address space may belong to one connector only, so
/// that routing never depends on the order of entries.
pub(super) fn send_connectors(raw: Vec<RawSendConnector>) -> Result<Vec<SendConnector>, ConfigError> {
    let connectors = raw
        .into_iter()
        .enumerate()
        .map(|(index, raw)| send_connector(&Table::entry("send_connectors", index), raw))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique("send_connectors", "name", connectors.iter().map(|c| c.name.as_str()))?;
    let mut owners: BTreeMap<&AddressSpace, usize> = BTreeMap::new();
    for (index, connector) in connectors.iter().enumerate() {
        for space in &connector.address_spaces {
            if let Some(first) = owners.insert(space, index) {
                return Err(ConfigError::invalid(
                    format!("send_connectors[{index}].address_spaces"),
                    format!("\"{space}\" is already routed by send_connectors[{first}]"),
                ));
            }
        }
    }
    Ok(connectors)
}

fn send_connector(table: &Table, raw: RawSendConnector) -> Result<SendConnector, ConfigError> {
    let name = raw.name.ok_or_else(|| table.err("name", "every send connector needs a name"))?;
    check_name(table, &name)?;
    let address_spaces = raw
        .address_spaces
        .unwrap_or_default()
        .iter()
        .map(|text| text.parse::<AddressSpace>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| table.err("address_spaces", why))?;
    if address_spaces.is_empty() {
        return Err(table.err("address_spaces", "list at least one domain, \"*.domain\" or \"*\""));
    }
    for (index, space) in address_spaces.iter().enumerate() {
        if address_spaces[..index].contains(space) {
            return Err(table.err("address_spaces", format!("\"{space}\" is listed twice")));
        }
    }
    let smart_hosts = raw
        .smart_hosts
        .unwrap_or_default()
        .iter()
        .map(|text| HostPort::parse(text, SMTP_PORT))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| table.err("smart_hosts", why))?;
    let auth = raw.auth.map(|auth| SendAuth { user: auth.user, password: auth.password });
    if auth.as_ref().is_some_and(|auth| auth.user.is_empty()) {
        return Err(table.err("auth.user", "the user name is empty"));
    }
    let tls = table.keyword("tls", raw.tls, SendTls::Opportunistic)?;
    if auth.is_some() && smart_hosts.is_empty() {
        return Err(table.err("auth", "credentials are for smart hosts: set smart_hosts, or remove auth"));
    }
    // Credentials go only over TLS: with it off, every attempt would fail.
    if auth.is_some() && tls == SendTls::Off {
        return Err(
            table.err("auth", "credentials are sent only over TLS: set tls to \"required\" or \"opportunistic\"")
        );
    }
    let guid = match raw.guid {
        Some(guid) => normalise_guid(&guid).map_err(|why| table.err("guid", why))?,
        None => derive_guid(GuidKind::SendConnector, &name),
    };
    Ok(SendConnector {
        name,
        address_spaces,
        smart_hosts,
        port: match raw.port {
            Some(0) => return Err(table.err("port", "0 is not a port")),
            port => port.unwrap_or(SMTP_PORT),
        },
        tls,
        auth,
        max_messages_per_connection: table.at_least_one(
            "max_messages_per_connection",
            raw.max_messages_per_connection,
            100,
        )?,
        guid,
    })
}
