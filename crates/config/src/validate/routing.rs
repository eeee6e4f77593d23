//! `[[mailbox_stores]]` and `[[accepted_domains]]`: where local mail goes.

use std::collections::BTreeMap;

use super::{Table, check_name, check_unique};
use crate::address::{check_local_part, normalise_address, normalise_domain};
use crate::error::ConfigError;
use crate::guid::{GuidKind, derive_guid, normalise_guid};
use crate::net::{HostPort, LMTP_PORT};
use crate::paths::PathBase;
use crate::raw::{RawAcceptedDomain, RawMailboxStore};
use crate::types::{AcceptedDomain, MailboxStore, MailboxStoreKind, MaildirTemplate, SendConnector};

/// The name of the built-in mailbox store, and the default `mailbox_store` of an accepted domain.
const DEFAULT_STORE: &str = "Local Maildir";

/// The built-in Maildir template, also used by a store that names neither `maildir` nor `lmtp`.
const DEFAULT_MAILDIR: &str = "{data_dir}/mail/{domain}/{local}";

/// The placeholders a Maildir template keeps for delivery time.
const MAILDIR_PLACEHOLDERS: [&str; 2] = ["{domain}", "{local}"];

/// The mailbox stores of the file, or the built-in "Local Maildir" when the file has none.
pub(super) fn mailbox_stores(
    raw: Option<Vec<RawMailboxStore>>,
    paths: &PathBase,
) -> Result<Vec<MailboxStore>, ConfigError> {
    let raw = raw.unwrap_or_else(|| vec![RawMailboxStore::default()]);
    let stores = raw
        .into_iter()
        .enumerate()
        .map(|(index, raw)| mailbox_store(&Table::entry("mailbox_stores", index), raw, paths))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique("mailbox_stores", "name", stores.iter().map(|s| s.name.as_str()))?;
    Ok(stores)
}

fn mailbox_store(table: &Table, raw: RawMailboxStore, paths: &PathBase) -> Result<MailboxStore, ConfigError> {
    let name = raw.name.unwrap_or_else(|| DEFAULT_STORE.to_owned());
    check_name(table, &name)?;
    let kind = match (raw.maildir, raw.lmtp) {
        (Some(_), Some(_)) => {
            return Err(table.err("lmtp", "a mailbox store has either maildir or lmtp, not both"));
        }
        (maildir, None) => {
            let template = maildir.as_deref().unwrap_or(DEFAULT_MAILDIR);
            let template =
                paths.resolve_template(template, &MAILDIR_PLACEHOLDERS).map_err(|why| table.err("maildir", why))?;
            MailboxStoreKind::Maildir(MaildirTemplate::new(template))
        }
        (None, Some(lmtp)) => {
            MailboxStoreKind::Lmtp(HostPort::parse(&lmtp, LMTP_PORT).map_err(|why| table.err("lmtp", why))?)
        }
    };
    let guid = match raw.guid {
        Some(guid) => normalise_guid(&guid).map_err(|why| table.err("guid", why))?,
        None => derive_guid(GuidKind::MailboxStore, &name),
    };
    Ok(MailboxStore { name, kind, guid })
}

/// A GUID names one next hop; two entries sharing one (copied config) would merge their queues.
pub(super) fn check_guids_unique(stores: &[MailboxStore], connectors: &[SendConnector]) -> Result<(), ConfigError> {
    let mut seen = BTreeMap::new();
    let entries =
        stores.iter().enumerate().map(|(index, store)| (format!("mailbox_stores[{index}]"), &store.guid)).chain(
            connectors
                .iter()
                .enumerate()
                .map(|(index, connector)| (format!("send_connectors[{index}]"), &connector.guid)),
        );
    for (entry, guid) in entries {
        if let Some(first) = seen.insert(guid, entry.clone()) {
            return Err(ConfigError::invalid(
                format!("{entry}.guid"),
                format!("{guid} is already the guid of {first}"),
            ));
        }
    }
    Ok(())
}

/// The accepted domains of the file, or the built-in `localhost` when the file has none.
pub(super) fn accepted_domains(
    raw: Option<Vec<RawAcceptedDomain>>,
    stores: &[MailboxStore],
) -> Result<Vec<AcceptedDomain>, ConfigError> {
    let raw = raw.unwrap_or_else(|| vec![RawAcceptedDomain::default()]);
    let domains = raw
        .into_iter()
        .enumerate()
        .map(|(index, raw)| accepted_domain(&Table::entry("accepted_domains", index), raw, stores))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique("accepted_domains", "domain", domains.iter().map(|d| d.domain.as_str()))?;
    Ok(domains)
}

fn accepted_domain(
    table: &Table,
    raw: RawAcceptedDomain,
    stores: &[MailboxStore],
) -> Result<AcceptedDomain, ConfigError> {
    let domain = raw.domain.as_deref().unwrap_or("localhost");
    let domain = normalise_domain(domain).map_err(|why| table.err("domain", why))?;
    let mailbox_store = raw.mailbox_store.unwrap_or_else(|| DEFAULT_STORE.to_owned());
    if !stores.iter().any(|store| store.name == mailbox_store) {
        let names: Vec<String> = stores.iter().map(|store| format!("{:?}", store.name)).collect();
        let known = if names.is_empty() {
            "there are no mailbox stores".to_owned()
        } else {
            format!("the mailbox stores are {}", names.join(", "))
        };
        return Err(table.err(
            "mailbox_store",
            format!("there is no mailbox store named {mailbox_store:?} ({known}); note that [[mailbox_stores]] in a file replaces the built-in \"{DEFAULT_STORE}\""),
        ));
    }
    if let Some(mailboxes) = &raw.mailboxes {
        for local in mailboxes {
            check_local_part(local).map_err(|why| table.err("mailboxes", why))?;
        }
    }
    let mut aliases = BTreeMap::new();
    for (local, targets) in raw.aliases.unwrap_or_default() {
        check_local_part(&local).map_err(|why| table.err("aliases", why))?;
        if targets.is_empty() {
            return Err(table.err("aliases", format!("alias {local:?} expands to nothing")));
        }
        let targets = targets
            .iter()
            .map(|target| normalise_address(target))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| table.err("aliases", format!("alias {local:?}: {why}")))?;
        aliases.insert(local, targets);
    }
    let recipient_delimiter = recipient_delimiter(table, raw.recipient_delimiter.as_deref().unwrap_or("+"))?;
    let catch_all = raw.catch_all.unwrap_or(false);
    Ok(AcceptedDomain { domain, mailbox_store, mailboxes: raw.mailboxes, catch_all, aliases, recipient_delimiter })
}

/// `""` turns `+tag` handling off; otherwise one punctuation character that cannot start a mailbox name.
fn recipient_delimiter(table: &Table, text: &str) -> Result<Option<char>, ConfigError> {
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (None, _) => Ok(None),
        (Some(c), None) if c.is_ascii_punctuation() && !matches!(c, '.' | '@' | '"' | '\\') => Ok(Some(c)),
        _ => Err(table.err(
            "recipient_delimiter",
            format!(
                "{text:?} is not a delimiter: use one punctuation character such as \"+\" or \"-\", or \"\" for none"
            ),
        )),
    }
}
