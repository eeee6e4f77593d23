//! SMTP as data: command lines, commands and their parameters, addresses, replies, DATA and BDAT framing.
//!
//! Pure: no I/O, no async, no clock, so that every part can be tested exhaustively (split at every byte) and
//! fuzzed. The receiving session and the SMTP client both build on it:
//!
//! - receive: [`find_line`] cuts a command line out of the input buffer, [`parse_command`] turns it into a
//!   [`Command`] or a [`CommandError`] whose [`CommandError::reply`] is the answer; after `354`,
//!   [`DataDecoder`] finds the end of data (only `<CRLF>.<CRLF>`: no SMTP smuggling) and undoes dot-stuffing;
//!   [`BdatDecoder`] does the same checks for BDAT chunks;
//! - send: [`Command::render`], [`dot_stuff()`] / [`DotStuffer`], and [`parse_reply`] / [`parse_ehlo_keywords`]
//!   to read the server.
//!
//! Every outcome is a [`Reply`]; errors map to one in a single place each.

mod address;
mod bdat;
mod command;
mod data;
mod dot_stuff;
mod headers;
mod line;
mod params;
mod printable;
mod reply;
mod xtext;

pub use address::{
    Address, AddressError, AddressRole, MAX_DOMAIN, MAX_LABEL, MAX_LOCAL_PART, MAX_PATH, ReversePath,
    parse_forward_path, parse_reverse_path, safe_local_part, validate_domain,
};
pub use bdat::BdatDecoder;
pub use command::{Command, CommandError, parse_command};
pub use data::{BareNewlines, DataDecoder, DataStatus, DataViolation};
pub use dot_stuff::{DotStuffer, dot_stuff};
pub use headers::HeaderScanner;
pub use line::{LineStatus, discard_line, find_line};
pub use params::{BodyType, MAX_ENVID, MAX_ORCPT, MailParams, Notify, Orcpt, RcptParams, Ret};
pub use printable::printable;
pub use reply::{EnhancedCode, MAX_REPLY_LINE, MAX_REPLY_LINES, Reply, ReplyError, parse_ehlo_keywords, parse_reply};
pub use xtext::{XText, XTextError};
