//! xtext (RFC 3461 4), the encoding of the DSN parameters `ENVID=` and `ORCPT=` and of `AUTH=` (RFC 4954): printable
//! ASCII except `+` and `=` as is, anything else as `+` and two hexadecimal digits.
//!
//! Both forms are kept: the decoded one for the DSNs sluice writes, the encoded one, exactly as received, to pass
//! the parameter on to the next hop unchanged.

use std::fmt;

/// An xtext value, with its encoded (wire) and decoded forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XText {
    encoded: String,
    decoded: String,
}

/// Why a value is not acceptable xtext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum XTextError {
    /// Nothing at all.
    #[error("empty value")]
    Empty,
    /// An octet that xtext does not allow unencoded (space, control, `=`, non-ASCII).
    #[error("character not allowed in xtext")]
    Character,
    /// A `+` not followed by two hexadecimal digits.
    #[error("'+' must be followed by two hexadecimal digits")]
    Escape,
    /// The decoded value holds something other than printable ASCII and space. RFC 3461 values (envelope IDs,
    /// addresses) are printable; refusing the rest keeps control characters out of stored envelopes and DSNs.
    #[error("decoded value is not printable ASCII")]
    NotPrintable,
}

impl XText {
    /// Decodes wire xtext. The hexadecimal digits of `+XX` are accepted in either case (RFC 3461 asks senders
    /// for upper case); the encoded form is kept exactly as given.
    pub fn decode(encoded: &str) -> Result<XText, XTextError> {
        if encoded.is_empty() {
            return Err(XTextError::Empty);
        }
        let bytes = encoded.as_bytes();
        let mut decoded = String::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            let value = if b == b'+' {
                let hex = bytes.get(i + 1..i + 3).ok_or(XTextError::Escape)?;
                let (Some(high), Some(low)) = (hex_value(hex[0]), hex_value(hex[1])) else {
                    return Err(XTextError::Escape);
                };
                i += 3;
                high * 16 + low
            } else if is_xchar(b) {
                i += 1;
                b
            } else {
                return Err(XTextError::Character);
            };
            if !(0x20..=0x7e).contains(&value) {
                return Err(XTextError::NotPrintable);
            }
            decoded.push(char::from(value));
        }
        Ok(XText { encoded: encoded.to_string(), decoded })
    }

    /// Encodes printable ASCII (space included) as xtext, with upper-case hexadecimal digits.
    pub fn encode(decoded: &str) -> Result<XText, XTextError> {
        if decoded.is_empty() {
            return Err(XTextError::Empty);
        }
        let mut encoded = String::with_capacity(decoded.len());
        for b in decoded.bytes() {
            if is_xchar(b) {
                encoded.push(char::from(b));
            } else if (0x20..=0x7e).contains(&b) {
                encoded.push_str(&format!("+{b:02X}"));
            } else {
                return Err(XTextError::NotPrintable);
            }
        }
        Ok(XText { encoded, decoded: decoded.to_string() })
    }

    /// The wire form, as received.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// The decoded value.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }
}

/// The encoded (wire) form.
impl fmt::Display for XText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encoded)
    }
}

/// `xchar`: `!` to `~` except `+` and `=`.
fn is_xchar(b: u8) -> bool {
    (33..=126).contains(&b) && b != b'+' && b != b'='
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_and_keeps_the_wire_form() {
        let cases: &[(&str, Result<&str, XTextError>)] = &[
            ("abc", Ok("abc")),
            ("x+2By", Ok("x+y")),
            ("x+2by", Ok("x+y")),
            ("user+40example.com", Ok("user@example.com")),
            ("a+20b", Ok("a b")),
            ("<>", Ok("<>")),
            ("", Err(XTextError::Empty)),
            ("a=b", Err(XTextError::Character)),
            ("a b", Err(XTextError::Character)),
            ("a+2", Err(XTextError::Escape)),
            ("a+zz", Err(XTextError::Escape)),
            ("a+00", Err(XTextError::NotPrintable)),
            ("a+0D+0A", Err(XTextError::NotPrintable)),
            ("a+C3+BC", Err(XTextError::NotPrintable)),
            ("\u{fc}", Err(XTextError::Character)),
        ];
        for (input, want) in cases {
            let got = XText::decode(input);
            assert_eq!(got.as_ref().map(XText::decoded).map_err(|e| *e), *want, "{input:?}");
            if let Ok(x) = got {
                assert_eq!(x.encoded(), *input);
            }
        }
    }

    #[test]
    fn encodes_specials() {
        assert_eq!(XText::encode("a+b=c d").map(|x| x.encoded().to_string()), Ok("a+2Bb+3Dc+20d".to_string()));
        assert_eq!(XText::encode("tab\there"), Err(XTextError::NotPrintable));
        assert_eq!(XText::encode(""), Err(XTextError::Empty));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn decode_of_encode_is_identity(value in "[ -~]{1,40}") {
            let encoded = XText::encode(&value).unwrap();
            prop_assert_eq!(XText::decode(encoded.encoded()), Ok(encoded));
        }
    }
}
