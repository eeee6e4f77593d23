//! SMTP as data: commands, replies, DATA framing and address syntax. Pure: no I/O, no async, so that it can
//! be fuzzed and tested exhaustively. The server and the client both use it.

mod address;
mod command;
mod data;
mod line;
mod reply;

pub use address::{Address, ReversePath};
pub use command::{Command, CommandError, MailParams, RcptParams, parse_command};
pub use data::{BareNewlines, DataDecoder, DataStatus, DataViolation, dot_stuff};
pub use line::{LineStatus, find_line};
pub use reply::{EnhancedCode, Reply, ReplyError, parse_ehlo_keywords, parse_reply};
