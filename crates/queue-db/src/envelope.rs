//! A message's envelope, packed: every string in one buffer, so that a queued message's envelope costs
//! three allocations whatever it holds (B4 in docs/benchmarks.md: ≤ 512 B resident per queued message).
//! [`EnvelopeParts`] is the same envelope with owned fields, to build one or change one.

/// One envelope recipient with its RFC 3461 parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub address: String,
    /// `NOTIFY=` as given, upper-case (e.g. `SUCCESS,FAILURE`).
    pub notify: Option<String>,
    /// `ORCPT=` as given (`rfc822;user@example.com`).
    pub orcpt: Option<String>,
}

/// A recipient of a packed [`Envelope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientRef<'a> {
    pub address: &'a str,
    pub notify: Option<&'a str>,
    pub orcpt: Option<&'a str>,
}

impl RecipientRef<'_> {
    pub fn to_owned(&self) -> Recipient {
        Recipient {
            address: self.address.to_owned(),
            notify: self.notify.map(str::to_owned),
            orcpt: self.orcpt.map(str::to_owned),
        }
    }
}

/// The envelope of a message, as received, with owned fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvelopeParts {
    /// The reverse path; empty for the null sender.
    pub from: String,
    pub recipients: Vec<Recipient>,
    /// `RET=` (`FULL` or `HDRS`).
    pub ret: Option<String>,
    /// `ENVID=` (decoded).
    pub env_id: Option<String>,
    /// The message needs SMTPUTF8 from the next hop.
    pub smtputf8: bool,
    /// The body was declared `BODY=8BITMIME`.
    pub body_8bit: bool,
    /// `SMTP:<connector>`, `Pickup`, `Replay`, `DSN` or `Resubmit`.
    pub source_name: String,
    /// The client's IP address, empty when not received over SMTP.
    pub source_ip: String,
    /// Wall-clock time of receipt, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// The `Message-ID:` header, if any.
    pub internet_message_id: Option<String>,
    /// The `Subject:` header, if any (for listings).
    pub subject: Option<String>,
    /// From the `Importance:`, `Priority:` or `X-Priority:` header.
    pub priority: Priority,
    /// Sent by a client of this organization (authenticated, or in `relay_networks`) or made by this server,
    /// rather than received from outside: Get-Message's `directionality` Originating, else Incoming.
    pub originating: bool,
}

/// A message's priority, as its headers give it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Priority {
    #[default]
    Normal,
    High,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Normal => "Normal",
            Priority::High => "High",
            Priority::Low => "Low",
        }
    }

    /// Two bits, 0 for Normal (what every envelope stored before priorities were kept reads as).
    pub(crate) fn bits(self) -> u8 {
        match self {
            Priority::Normal => 0,
            Priority::High => 1,
            Priority::Low => 2,
        }
    }

    pub(crate) fn from_bits(bits: u8) -> Priority {
        match bits & 3 {
            1 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Normal,
        }
    }

    /// The priority a header gives: `Importance: high|low`, `Priority: urgent|non-urgent`, or `X-Priority:`
    /// 1–2 (High) and 4–5 (Low). `name` is matched without regard to case; `None` when the header says
    /// nothing about priority.
    pub fn from_header(name: &str, value: &str) -> Option<Priority> {
        let value = value.trim();
        let word = |w: &str| value.eq_ignore_ascii_case(w);
        if name.eq_ignore_ascii_case("importance") {
            if word("high") {
                return Some(Priority::High);
            }
            if word("low") {
                return Some(Priority::Low);
            }
            return word("normal").then_some(Priority::Normal);
        }
        if name.eq_ignore_ascii_case("priority") {
            if word("urgent") {
                return Some(Priority::High);
            }
            if word("non-urgent") {
                return Some(Priority::Low);
            }
            return word("normal").then_some(Priority::Normal);
        }
        if name.eq_ignore_ascii_case("x-priority") {
            return match value.bytes().next() {
                Some(b'1' | b'2') => Some(Priority::High),
                Some(b'3') => Some(Priority::Normal),
                Some(b'4' | b'5') => Some(Priority::Low),
                _ => None,
            };
        }
        None
    }
}

/// The strings before the recipients', in this order in an envelope's data.
const FROM: usize = 0;
const RET: usize = 1;
const ENV_ID: usize = 2;
const SOURCE_NAME: usize = 3;
const SOURCE_IP: usize = 4;
const MESSAGE_ID: usize = 5;
const SUBJECT: usize = 6;
const FIXED: usize = 7;
/// Set in an end offset when the optional string is present (tells `None` from `Some("")`).
const PRESENT: u32 = 1 << 31;
/// The same in a u16 offset, used while the strings hold less than 32 KB (nearly always).
const NARROW_PRESENT: u16 = 1 << 15;
const NARROW_MAX: usize = (NARROW_PRESENT - 1) as usize;

/// The envelope of a message, as received; see [`EnvelopeParts`] for what each field means.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Envelope {
    /// One allocation: the end offset of each string (little-endian, u16 or, when `wide`, u32, with the top
    /// bit set for a present one), then every string back to back: the fixed ones, then each recipient's
    /// address, `NOTIFY=` and `ORCPT=`.
    data: Box<[u8]>,
    /// How many strings `data` holds.
    strings: u32,
    /// The offsets are u32 (the strings hold 32 KB or more).
    wide: bool,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// The priority's [`Priority::bits`], and [`ORIGINATING`] (one byte: the envelope stays 32 bytes).
    traits: u8,
    pub received_at_ms: i64,
}

/// Set in [`Envelope::traits`] for an originating message.
const ORIGINATING: u8 = 1 << 2;

/// Builds the packed form string by string.
struct Packer {
    text: String,
    ends: Vec<u32>,
}

impl Packer {
    fn with_recipients(n: usize) -> Packer {
        Packer { text: String::new(), ends: Vec::with_capacity(FIXED + 3 * n) }
    }

    fn push(&mut self, s: Option<&str>) {
        self.text.push_str(s.unwrap_or(""));
        // Envelopes are far below 2 GB (the message size limit caps them).
        let end = u32::try_from(self.text.len()).unwrap_or(PRESENT - 1).min(PRESENT - 1);
        self.ends.push(end | if s.is_some() { PRESENT } else { 0 });
    }

    fn finish(self, p: &EnvelopeParts) -> Envelope {
        let wide = self.text.len() > NARROW_MAX;
        let mut data = Vec::with_capacity(if wide { 4 } else { 2 } * self.ends.len() + self.text.len());
        for end in &self.ends {
            if wide {
                data.extend_from_slice(&end.to_le_bytes());
            } else {
                let narrow = (end & !PRESENT) as u16 | if end & PRESENT != 0 { NARROW_PRESENT } else { 0 };
                data.extend_from_slice(&narrow.to_le_bytes());
            }
        }
        data.extend_from_slice(self.text.as_bytes());
        Envelope {
            data: data.into_boxed_slice(),
            strings: self.ends.len() as u32,
            wide,
            smtputf8: p.smtputf8,
            body_8bit: p.body_8bit,
            traits: p.priority.bits() | if p.originating { ORIGINATING } else { 0 },
            received_at_ms: p.received_at_ms,
        }
    }
}

impl Envelope {
    /// Bytes per offset.
    fn width(&self) -> usize {
        if self.wide { 4 } else { 2 }
    }

    /// The `i`-th end offset, with [`PRESENT`] set for a present string.
    fn end(&self, i: usize) -> Option<u32> {
        let at = self.width() * i;
        if self.wide {
            return Some(u32::from_le_bytes(self.data.get(at..at + 4)?.try_into().ok()?));
        }
        let narrow = u16::from_le_bytes(self.data.get(at..at + 2)?.try_into().ok()?);
        Some(u32::from(narrow & !NARROW_PRESENT) | if narrow & NARROW_PRESENT != 0 { PRESENT } else { 0 })
    }

    /// The `i`-th string, `None` when absent or out of range.
    fn get(&self, i: usize) -> Option<&str> {
        if i >= self.strings as usize {
            return None;
        }
        let end = self.end(i)?;
        if end & PRESENT == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.end(i - 1)? & !PRESENT };
        let text = self.width() * self.strings as usize;
        // Packed from `&str`s at string boundaries, so this never fails.
        std::str::from_utf8(self.data.get(text + start as usize..text + (end & !PRESENT) as usize)?).ok()
    }

    /// The reverse path; empty for the null sender.
    pub fn from_address(&self) -> &str {
        self.get(FROM).unwrap_or("")
    }

    /// `RET=` (`FULL` or `HDRS`).
    pub fn ret(&self) -> Option<&str> {
        self.get(RET)
    }

    /// `ENVID=` (decoded).
    pub fn env_id(&self) -> Option<&str> {
        self.get(ENV_ID)
    }

    /// `SMTP:<connector>`, `Pickup`, `Replay`, `DSN` or `Resubmit`.
    pub fn source_name(&self) -> &str {
        self.get(SOURCE_NAME).unwrap_or("")
    }

    /// The client's IP address, empty when not received over SMTP.
    pub fn source_ip(&self) -> &str {
        self.get(SOURCE_IP).unwrap_or("")
    }

    /// The `Message-ID:` header, if any.
    pub fn internet_message_id(&self) -> Option<&str> {
        self.get(MESSAGE_ID)
    }

    /// The `Subject:` header, if any.
    pub fn subject(&self) -> Option<&str> {
        self.get(SUBJECT)
    }

    pub fn priority(&self) -> Priority {
        Priority::from_bits(self.traits)
    }

    /// Sent by a client of this organization or made by this server ([`EnvelopeParts::originating`]).
    pub fn originating(&self) -> bool {
        self.traits & ORIGINATING != 0
    }

    pub fn recipient_count(&self) -> usize {
        (self.strings as usize).saturating_sub(FIXED) / 3
    }

    /// The `i`-th recipient, as received.
    pub fn recipient(&self, i: usize) -> Option<RecipientRef<'_>> {
        let at = FIXED + 3 * i;
        Some(RecipientRef { address: self.get(at)?, notify: self.get(at + 1), orcpt: self.get(at + 2) })
    }

    /// The recipients, in the order received.
    pub fn recipients(&self) -> impl ExactSizeIterator<Item = RecipientRef<'_>> + Clone + '_ {
        (0..self.recipient_count())
            .map(|i| self.recipient(i).unwrap_or(RecipientRef { address: "", notify: None, orcpt: None }))
    }

    /// The envelope with owned fields, to change it.
    pub fn to_parts(&self) -> EnvelopeParts {
        EnvelopeParts {
            from: self.from_address().to_owned(),
            recipients: self.recipients().map(|r| r.to_owned()).collect(),
            ret: self.ret().map(str::to_owned),
            env_id: self.env_id().map(str::to_owned),
            smtputf8: self.smtputf8,
            body_8bit: self.body_8bit,
            source_name: self.source_name().to_owned(),
            source_ip: self.source_ip().to_owned(),
            received_at_ms: self.received_at_ms,
            internet_message_id: self.internet_message_id().map(str::to_owned),
            subject: self.subject().map(str::to_owned),
            priority: self.priority(),
            originating: self.originating(),
        }
    }
}

impl From<&EnvelopeParts> for Envelope {
    fn from(p: &EnvelopeParts) -> Envelope {
        let mut k = Packer::with_recipients(p.recipients.len());
        k.push(Some(&p.from));
        k.push(p.ret.as_deref());
        k.push(p.env_id.as_deref());
        k.push(Some(&p.source_name));
        k.push(Some(&p.source_ip));
        k.push(p.internet_message_id.as_deref());
        k.push(p.subject.as_deref());
        for r in &p.recipients {
            k.push(Some(&r.address));
            k.push(r.notify.as_deref());
            k.push(r.orcpt.as_deref());
        }
        k.finish(p)
    }
}

impl From<EnvelopeParts> for Envelope {
    fn from(p: EnvelopeParts) -> Envelope {
        Envelope::from(&p)
    }
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_parts().fmt(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An envelope with every field set, some of them empty (shared with the record tests).
    pub(crate) fn sample() -> EnvelopeParts {
        EnvelopeParts {
            from: String::new(),
            recipients: vec![
                Recipient { address: "c@d.test".into(), notify: Some("NEVER".into()), orcpt: None },
                Recipient { address: "ü@ö.test".into(), notify: None, orcpt: Some("rfc822;x@y".into()) },
            ],
            ret: Some("HDRS".into()),
            env_id: None,
            smtputf8: true,
            body_8bit: true,
            source_name: "SMTP:Default".into(),
            source_ip: "::1".into(),
            received_at_ms: -3,
            internet_message_id: Some("<x@y>".into()),
            subject: Some(String::new()),
            priority: Priority::Low,
            originating: true,
        }
    }

    #[test]
    fn packing_keeps_every_field_and_tells_absent_from_empty() {
        let parts = sample();
        let env = Envelope::from(&parts);
        assert_eq!(env.to_parts(), parts);
        assert_eq!(env.recipient_count(), 2);
        assert_eq!(env.recipient(1).unwrap().address, "ü@ö.test");
        assert_eq!(env.recipient(2), None);
        assert_eq!(env.subject(), Some(""));
        assert_eq!(env.env_id(), None);
        assert_eq!(Envelope::from(EnvelopeParts::default()).to_parts(), EnvelopeParts::default());
    }

    #[test]
    fn large_envelopes_use_wide_offsets() {
        let recipients: Vec<Recipient> = (0..2000)
            .map(|i| Recipient { address: format!("user{i}@example.test"), notify: None, orcpt: Some(String::new()) })
            .collect();
        let parts = EnvelopeParts { from: "a@b.test".into(), recipients, ..EnvelopeParts::default() };
        let env = Envelope::from(&parts);
        assert!(env.wide);
        assert_eq!(env.to_parts(), parts);
        assert_eq!(env.recipient(1999).unwrap().address, "user1999@example.test");
        assert_eq!(env.recipient(5).unwrap().orcpt, Some(""));
        let small = Envelope::from(EnvelopeParts { from: "a@b.test".into(), ..EnvelopeParts::default() });
        assert!(!small.wide);
    }
}
