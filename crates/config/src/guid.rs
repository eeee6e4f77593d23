//! Stable GUIDs for send connectors and mailbox stores.
//!
//! Queues name their next hop by the connector's or store's GUID (04), so a GUID must not change across
//! restarts. When `guid` is not set in the file it is derived from the entry's kind and name:
//!
//! 1. the input is the UTF-8 bytes of `"<kind>:<name>"`, e.g. `"send_connector:Internet"` or
//!    `"mailbox_store:Local Maildir"`;
//! 2. two 64-bit FNV-1a hashes run over it, one from the standard offset basis and one from that basis XOR
//!    `0x9e37_79b9_7f4a_7c15`; each is passed through the SplitMix64 finaliser to spread short names over all
//!    bits;
//! 3. the two words, high then low, form 128 bits whose version nibble is set to 8 (RFC 9562 "custom") and
//!    variant bits to `10`; they are printed in lower-case 8-4-4-4-12 form.
//!
//! This scheme is part of the on-disk contract (queue identities are persisted): do not change it.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
const SECOND_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// What a derived GUID belongs to; part of the hashed input so that a store and a connector with the same
/// name get different GUIDs.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuidKind {
    SendConnector,
    MailboxStore,
}

impl GuidKind {
    fn prefix(self) -> &'static str {
        match self {
            GuidKind::SendConnector => "send_connector",
            GuidKind::MailboxStore => "mailbox_store",
        }
    }
}

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(seed, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME))
}

fn splitmix_finalise(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Derives the GUID of an entry without a configured `guid` (see the module docs for the scheme).
pub(crate) fn derive_guid(kind: GuidKind, name: &str) -> String {
    let input = format!("{}:{name}", kind.prefix());
    let high = splitmix_finalise(fnv1a(FNV_OFFSET, input.as_bytes()));
    let low = splitmix_finalise(fnv1a(FNV_OFFSET ^ SECOND_SEED, input.as_bytes()));
    let mut value = (u128::from(high) << 64) | u128::from(low);
    // Version 8 in bits 76..80, variant 0b10 in bits 62..64.
    value = (value & !(0xf_u128 << 76)) | (0x8_u128 << 76);
    value = (value & !(0b11_u128 << 62)) | (0b10_u128 << 62);
    format_guid(value)
}

fn format_guid(value: u128) -> String {
    let hex = format!("{value:032x}");
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Checks a configured GUID (`8-4-4-4-12` hexadecimal, braces allowed) and returns it in lower case.
pub(crate) fn normalise_guid(text: &str) -> Result<String, String> {
    let bare = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')).unwrap_or(text);
    let groups: Vec<&str> = bare.split('-').collect();
    let lengths = [8, 4, 4, 4, 12];
    let well_formed = groups.len() == lengths.len()
        && groups
            .iter()
            .zip(lengths)
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()));
    if well_formed {
        Ok(bare.to_ascii_lowercase())
    } else {
        Err(format!(
            "invalid GUID {text:?}: expected 32 hexadecimal digits as 8-4-4-4-12, e.g. \"6dcb5a1e-0a88-4fc9-b8f9-634c34b1a123\""
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_guids_are_well_formed() {
        for (kind, name) in [
            (GuidKind::MailboxStore, "Local Maildir"),
            (GuidKind::SendConnector, "Internet"),
            (GuidKind::SendConnector, ""),
        ] {
            let guid = derive_guid(kind, name);
            assert_eq!(normalise_guid(&guid).as_deref(), Ok(guid.as_str()), "{guid}");
            assert_eq!(&guid[14..15], "8", "version nibble of {guid}");
            assert!(matches!(&guid[19..20], "8" | "9" | "a" | "b"), "variant of {guid}");
        }
    }

    #[test]
    fn derived_guids_differ_by_name_and_kind() {
        let a = derive_guid(GuidKind::SendConnector, "Internet");
        let b = derive_guid(GuidKind::SendConnector, "Internet2");
        let c = derive_guid(GuidKind::MailboxStore, "Internet");
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn derived_guids_are_pinned() {
        // Queue identities are persisted: a change here renames queues on every installation.
        assert_eq!(derive_guid(GuidKind::MailboxStore, "Local Maildir"), "7726f8f8-e8ee-8acd-ae68-aaea42614837");
        assert_eq!(derive_guid(GuidKind::SendConnector, "Internet"), "8193eb3a-f9c7-80d8-863d-8461a4249dbf");
    }

    #[test]
    fn configured_guids_are_checked() {
        assert_eq!(
            normalise_guid("6DCB5A1E-0A88-4FC9-B8F9-634C34B1A123").as_deref(),
            Ok("6dcb5a1e-0a88-4fc9-b8f9-634c34b1a123")
        );
        assert_eq!(
            normalise_guid("{6dcb5a1e-0a88-4fc9-b8f9-634c34b1a123}").as_deref(),
            Ok("6dcb5a1e-0a88-4fc9-b8f9-634c34b1a123")
        );
        for text in
            ["", "6dcb5a1e0a884fc9b8f9634c34b1a123", "6dcb5a1e-0a88-4fc9-b8f9-634c34b1a12g", "6dcb5a1e-0a88-4fc9-b8f9"]
        {
            assert!(normalise_guid(text).is_err(), "{text}");
        }
    }
}
