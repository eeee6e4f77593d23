//! Every reply a receive connector sends, in one place, as named constants. Each enhanced status code is
//! parsed when the program is built: a malformed one, or one whose class is not the first digit of the reply
//! code, fails the build instead of being silently dropped from the reply. Replies whose text is made at run
//! time take their codes from a [`Status`] constant.

use sluice_smtp::{EnhancedCode, Reply};

/// A reply code with its enhanced status code, checked when the program is built; the text comes later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Status {
    code: u16,
    enhanced: Option<EnhancedCode>,
}

impl Status {
    /// `enhanced` is `class.subject.detail` whose class is the first digit of `code`, or `""` for none.
    /// Anything else panics, which in a `const` item fails the build.
    const fn new(code: u16, enhanced: &str) -> Status {
        if enhanced.is_empty() {
            return Status { code, enhanced: None };
        }
        match EnhancedCode::parse_for(code, enhanced) {
            Some(e) => Status { code, enhanced: Some(e) },
            None => panic!("a malformed enhanced status code, or one whose class is not the reply code's"),
        }
    }

    /// The reply with this status and `text`.
    pub(crate) fn text(self, text: impl Into<String>) -> Reply {
        Reply::with_enhanced(self.code, self.enhanced, text)
    }
}

/// A reply known whole when the program is built.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Canned {
    status: Status,
    text: &'static str,
}

impl Canned {
    const fn new(code: u16, enhanced: &str, text: &'static str) -> Canned {
        Canned { status: Status::new(code, enhanced), text }
    }

    pub(crate) fn reply(self) -> Reply {
        self.status.text(self.text)
    }
}

/// Defines the constants, and for the tests a list of them with their parts as written.
macro_rules! replies {
    (
        statuses { $($(#[$sdoc:meta])* $sname:ident = $scode:literal $senhanced:literal;)* }
        canned { $($(#[$doc:meta])* $name:ident = $code:literal $enhanced:literal $text:literal;)* }
    ) => {
        $($(#[$sdoc])* pub(crate) const $sname: Status = Status::new($scode, $senhanced);)*
        $($(#[$doc])* pub(crate) const $name: Canned = Canned::new($code, $enhanced, $text);)*

        #[cfg(test)]
        const STATUSES: &[(&str, Status, u16, &str)] = &[$((stringify!($sname), $sname, $scode, $senhanced)),*];
        #[cfg(test)]
        const CANNED: &[(&str, Canned, u16, &str, &str)] =
            &[$((stringify!($name), $name, $code, $enhanced, $text)),*];
    };
}

replies! {
    statuses {
        /// `220 <hostname> ESMTP sluice`.
        GREETING = 220 "";
        /// The answer to EHLO (our name and the extensions) and HELO (our name).
        HELLO = 250 "";
        /// A BDAT chunk that is not the last: `<size> octets received`.
        CHUNK_RECEIVED = 250 "2.0.0";
        /// The message is durable in the queue database: `Ok: queued as <mid>`.
        QUEUED = 250 "2.0.0";
    }
    canned {
        // The connection.
        /// When a client connects past `max_connections_per_ip`.
        TOO_MANY_FROM_ADDRESS = 421 "4.7.0" "Too many connections from your address";
        /// When a client connects past `max_connections`.
        TOO_MANY_CONNECTIONS = 421 "4.7.0" "Too many connections, try again later";
        /// Past `connection_timeout`.
        CONNECTION_TIME_LIMIT = 421 "4.4.2" "Connection time limit exceeded";
        /// Past `connection_inactivity_timeout` without a byte from the client.
        IDLE_TOO_LONG = 421 "4.4.2" "Idle too long, closing connection";
        SHUTTING_DOWN = 421 "4.3.2" "Service shutting down";
        TALKED_BEFORE_GREETING = 554 "5.5.0" "SMTP synchronization error: talked before the greeting";
        LINE_TOO_LONG = 500 "5.5.2" "Line too long";
        BARE_LF = 500 "5.5.2" "Command lines end with CRLF";
        /// Past `max_errors`.
        TOO_MANY_ERRORS = 421 "4.7.0" "Too many errors, closing connection";

        // Commands without a transaction.
        OK = 250 "2.0.0" "Ok";
        BYE = 221 "2.0.0" "Bye";
        CANNOT_VERIFY = 252 "2.5.0" "Cannot verify the user, but will accept mail";
        NO_EXPN = 502 "5.5.1" "EXPN is not available";
        HELP = 214 "2.0.0" "See RFC 5321";

        // MAIL.
        HELO_FIRST = 503 "5.5.1" "Say EHLO or HELO first";
        MAIL_IN_TRANSACTION = 503 "5.5.1" "A transaction is already in progress; RSET first";
        AUTH_REQUIRED = 530 "5.7.0" "Authentication required";
        NO_BINARYMIME = 555 "5.5.4" "BODY=BINARYMIME is not offered";
        /// At MAIL (its `SIZE`) and at the end of the data.
        TOO_BIG = 552 "5.3.4" "Message size exceeds the fixed maximum message size";
        /// Back pressure, naming the resource at its level.
        BACK_PRESSURE_DISK = 452 "4.3.1" "Insufficient system resources (queue database disk), try again later";
        BACK_PRESSURE_MEMORY = 452 "4.3.1" "Insufficient system resources (memory), try again later";
        BACK_PRESSURE_SUBMISSION = 452 "4.3.1" "Insufficient system resources (submission queue), try again later";
        SENDER_OK = 250 "2.1.0" "Sender ok";

        // RCPT.
        NEED_MAIL = 503 "5.5.1" "Need MAIL before RCPT";
        TOO_MANY_RECIPIENTS = 452 "4.5.3" "Too many recipients";
        BAD_RECIPIENT_SYNTAX = 550 "5.1.3" "Bad recipient address syntax";
        USER_UNKNOWN = 550 "5.1.1" "User unknown";
        RELAY_DENIED = 550 "5.7.1" "Relay access denied";
        RECIPIENT_OK = 250 "2.1.5" "Recipient ok";

        // DATA and BDAT.
        DATA_NEEDS_MAIL = 503 "5.5.1" "Need MAIL and RCPT before DATA";
        DATA_AFTER_BDAT = 503 "5.5.1" "DATA cannot follow BDAT in one transaction";
        NO_RECIPIENTS = 554 "5.5.1" "No valid recipients";
        PIPELINED_AFTER_DATA = 554 "5.5.0" "Improper use of SMTP command pipelining";
        START_DATA = 354 "" "End data with <CR><LF>.<CR><LF>";
        BDAT_NEEDS_MAIL = 503 "5.5.1" "Need MAIL and RCPT before BDAT";
        HEADER_TOO_BIG = 552 "5.3.4" "Message header exceeds the maximum header size";
        TOO_MANY_HOPS = 554 "5.4.6" "Too many hops";
        /// The spool's or the queue database's file system is full.
        DISK_FULL = 452 "4.3.1" "Insufficient system storage, try again later";
        STORAGE_FAILED = 451 "4.3.0" "Temporary storage failure, try again later";
        /// A cluster node could not write the shadow copy and `reject_on_shadow_failure` is on.
        NOT_SHADOWED = 451 "4.4.0" "Shadow copy failed, try again later";

        // STARTTLS.
        TLS_ACTIVE = 503 "5.5.1" "TLS is already active";
        NO_STARTTLS = 502 "5.5.1" "STARTTLS is not offered on this connector";
        READY_FOR_TLS = 220 "2.0.0" "Ready to start TLS";

        // AUTH.
        NO_AUTH = 502 "5.5.1" "AUTH is not offered on this connector";
        EHLO_FIRST = 503 "5.5.1" "Say EHLO first";
        ALREADY_AUTHENTICATED = 503 "5.5.1" "Already authenticated";
        AUTH_IN_TRANSACTION = 503 "5.5.1" "AUTH is not allowed during a mail transaction";
        ENCRYPTION_REQUIRED = 538 "5.7.11" "Encryption required for requested authentication mechanism";
        AUTH_LOCKED_OUT = 454 "4.7.0" "Too many failed authentication attempts, try again later";
        INITIAL_NOT_BASE64 = 501 "5.5.2" "The initial response is not base64";
        UNKNOWN_MECHANISM = 504 "5.5.4" "Unrecognized authentication mechanism; use PLAIN or LOGIN";
        AUTHENTICATED = 235 "2.7.0" "Authentication successful";
        BAD_CREDENTIALS = 535 "5.7.8" "Authentication credentials invalid";
        AUTH_CANCELLED = 501 "5.0.0" "Authentication cancelled";
        RESPONSE_NOT_BASE64 = 501 "5.5.2" "The response is not base64";
        BAD_RESPONSE_LINE = 500 "5.5.2" "Bad authentication response line";
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes on the wire, as the reply was written in the table (`code enhanced text`).
    fn as_written(code: u16, enhanced: &str, text: &str) -> String {
        match enhanced {
            "" => format!("{code} {text}\r\n"),
            _ => format!("{code} {enhanced} {text}\r\n"),
        }
    }

    #[test]
    fn every_canned_reply_renders_as_written() {
        for (name, canned, code, enhanced, text) in CANNED {
            assert_eq!(canned.reply().render(), as_written(*code, enhanced, text), "{name}");
        }
    }

    #[test]
    fn every_status_renders_its_enhanced_code_as_written() {
        for (name, status, code, enhanced) in STATUSES {
            assert_eq!(status.text("text").render(), as_written(*code, enhanced, "text"), "{name}");
        }
    }

    #[test]
    fn canned_replies_are_what_reply_new_made_of_the_same_literals() {
        for (name, canned, code, enhanced, text) in CANNED {
            assert_eq!(canned.reply(), Reply::new(*code, enhanced, *text), "{name}");
        }
    }
}
