//! `sluice sendmail`'s command line, read as sendmail reads it (getopt style: `-fADDR` or `-f ADDR`, flags
//! clustered as `-ti`, options after recipients, `--` ending them), with the flags of Postfix's sendmail(1)
//! that do nothing here accepted and ignored.

use std::path::PathBuf;

/// What `sluice sendmail` is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Read a message on standard input and submit it (`-bm`, the default).
    #[default]
    Submit,
    /// Speak SMTP on standard input and output (`-bs`).
    Smtp,
    /// List the queue (`-bp`, as `sluice mailq`).
    ListQueue,
    /// Print the help text (`--help`).
    Help,
}

/// The command line, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    pub mode: Mode,
    /// `--config FILE` or `-C FILE`.
    pub config: Option<PathBuf>,
    /// `-f ADDR` or `-r ADDR`: the envelope sender, as given.
    pub from: Option<String>,
    /// `-F NAME`: the full name of a generated `From:`.
    pub full_name: Option<String>,
    /// `-t`: recipients from `To:`, `Cc:` and `Bcc:` too.
    pub extract_recipients: bool,
    /// `-i` or `-oi`: a line with a lone `.` does not end the message.
    pub ignore_dots: bool,
    /// The arguments that are not options.
    pub recipients: Vec<String>,
}

/// Flags that take a value, in the next argument or attached (`-fADDR`).
const WITH_VALUE: &str = "ABCFLNORVXbfhopr";
/// Flags without a value that do something here (`-i`, `-t`) or nothing (the rest, as in Postfix).
const WITHOUT_VALUE: &str = "GUimntvx";

/// Parses the arguments after `sendmail`; the error is the usage message.
pub fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--" => {
                o.recipients.extend(args.by_ref().cloned());
                break;
            }
            "--help" => o.mode = Mode::Help,
            "--config" => o.config = Some(args.next().ok_or("--config needs a file")?.into()),
            long if long.starts_with("--config=") => o.config = Some(long["--config=".len()..].into()),
            long if long.starts_with("--") => return Err(format!("unknown option {long}")),
            "-" => return Err("unexpected argument -".to_owned()),
            flags if flags.starts_with('-') => {
                for (i, flag) in flags[1..].char_indices() {
                    if WITHOUT_VALUE.contains(flag) {
                        match flag {
                            'i' => o.ignore_dots = true,
                            't' => o.extract_recipients = true,
                            _ => {}
                        }
                        continue;
                    }
                    if !WITH_VALUE.contains(flag) {
                        return Err(format!("unknown or unsupported option -{flag}"));
                    }
                    let attached = &flags[1 + i + flag.len_utf8()..];
                    let value = if attached.is_empty() {
                        args.next().ok_or_else(|| format!("option -{flag} needs a value"))?.clone()
                    } else {
                        attached.to_owned()
                    };
                    option(&mut o, flag, value)?;
                    break;
                }
            }
            _ => o.recipients.push(arg.clone()),
        }
    }
    Ok(o)
}

/// Applies one flag with its value.
fn option(o: &mut Options, flag: char, value: String) -> Result<(), String> {
    match flag {
        'b' => {
            o.mode = match value.as_str() {
                "m" => Mode::Submit,
                "s" => Mode::Smtp,
                "p" => Mode::ListQueue,
                other => return Err(format!("-b{other} is not supported (only -bm, -bs and -bp)")),
            }
        }
        'C' => o.config = Some(value.into()),
        'f' | 'r' => o.from = Some(value),
        'F' => o.full_name = Some(value),
        // Sendmail options (`-oi`, `-odi`, `-oem`, `-om`, ...): only `i` means something here.
        'o' if value == "i" => o.ignore_dots = true,
        // -A, -B body type, -h hop count, -L label, -N DSN notify, -O option, -R DSN return, -V envelope ID,
        // -X log file, -p protocol, and the other -o options: accepted and ignored.
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn sendmail_command_lines_are_read_as_sendmail_reads_them() {
        let cases: &[(&str, Options)] = &[
            ("a@x.test", Options { recipients: vec!["a@x.test".into()], ..Options::default() }),
            ("-t", Options { extract_recipients: true, ..Options::default() }),
            ("-ti", Options { extract_recipients: true, ignore_dots: true, ..Options::default() }),
            ("-oi -t", Options { extract_recipients: true, ignore_dots: true, ..Options::default() }),
            ("-i a@x.test", Options { ignore_dots: true, recipients: vec!["a@x.test".into()], ..Options::default() }),
            ("-fme@x.test", Options { from: Some("me@x.test".into()), ..Options::default() }),
            ("-f me@x.test", Options { from: Some("me@x.test".into()), ..Options::default() }),
            ("-r me@x.test", Options { from: Some("me@x.test".into()), ..Options::default() }),
            ("-F Cron", Options { full_name: Some("Cron".into()), ..Options::default() }),
            (
                "-tf me@x.test",
                Options { extract_recipients: true, from: Some("me@x.test".into()), ..Options::default() },
            ),
            ("-bs", Options { mode: Mode::Smtp, ..Options::default() }),
            ("-b s", Options { mode: Mode::Smtp, ..Options::default() }),
            ("-bp", Options { mode: Mode::ListQueue, ..Options::default() }),
            ("-bm", Options::default()),
            ("--help", Options { mode: Mode::Help, ..Options::default() }),
            ("-C /etc/s.toml", Options { config: Some("/etc/s.toml".into()), ..Options::default() }),
            ("--config /etc/s.toml", Options { config: Some("/etc/s.toml".into()), ..Options::default() }),
            ("--config=/etc/s.toml", Options { config: Some("/etc/s.toml".into()), ..Options::default() }),
            (
                "a@x.test -odi -oem -oee -om -v -B8BITMIME -Nnever -R hdrs -X /log -h 5 -L x -V id -U -n -m b@x.test",
                Options { recipients: vec!["a@x.test".into(), "b@x.test".into()], ..Options::default() },
            ),
            ("-- -weird@x.test", Options { recipients: vec!["-weird@x.test".into()], ..Options::default() }),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(&args(line)).as_ref(), Ok(expected), "{line}");
        }
        // A value with spaces is one argument, as the shell passes it.
        let o = parse(&["-F".into(), "Cron Daemon".into(), "-t".into()]).unwrap();
        assert_eq!(o.full_name.as_deref(), Some("Cron Daemon"));
        assert!(o.extract_recipients);
    }

    #[test]
    fn bad_command_lines_are_usage_errors() {
        for line in ["-f", "-q", "-bd", "-bv", "-I", "-Z", "--verbose", "--config", "-", "-t -F"] {
            assert!(parse(&args(line)).is_err(), "{line}");
        }
    }
}
