//! The built-in antivirus engine: ClamAV hash and extended body signatures, and the EICAR test
//! file.
//!
//! # Signatures
//!
//! Signature files are read by extension:
//!
//! - `.hdb` (and ClamAV's unofficial `.hdu`): lines `md5hex:size:Name`;
//! - `.hsb` (and `.hsu`): lines `sha256hex:size:Name` or `sha1hex:size:Name`;
//! - `.ndb` (and `.ndu`): extended body signatures, described [below](#body-signatures-ndb).
//!
//! The hash kind is told by its length (32, 40 or 64 hex digits) in either hash file type, as
//! ClamAV does. The size is a decimal byte count, or `*` for any size. Up to two trailing numeric
//! functionality-level fields (`:flevel[:max_flevel]`) are accepted and ignored. Blank lines and
//! lines starting with `#` are ignored. A malformed line is a [`SignatureError`] and is skipped;
//! a file of any other type is one [`SignatureError`].
//!
//! Every [`Signatures`] also holds the built-in EICAR test signature, named
//! `Eicar-Test-Signature`: a part whose decoded content starts with the 68-byte [`EICAR`] string
//! and continues with nothing but whitespace (spaces, tabs, CR, LF, ctrl-Z), 128 bytes at most in
//! all, as the EICAR specification allows. So an attachment made with `echo` (which adds a
//! newline) is caught as well as the canonical 68-byte file, whose MD5 signature is built in too.
//!
//! Not supported: logical signatures (`.ldb`), container metadata (`.cdb`), PE section hashes
//! (`.mdb`, `.msb`), YARA rules and every other ClamAV database; a file of such a type is reported
//! as unknown. Archives (zip, rar, 7z, gzip, OLE2 and so on) are not unpacked: signatures see an
//! attachment's bytes as they are, so a virus inside an archive is found only by a signature of
//! the archive itself.
//!
//! ## Body signatures (`.ndb`)
//!
//! A line is `MalwareName:TargetType:Offset:HexSignature[:min_flevel[:max_flevel]]`; the
//! functionality levels are checked to be numbers and otherwise ignored.
//!
//! The hex signature is hex digits (either case) with ClamAV's wildcards: `??` (any byte), `a?`
//! and `?a` (a nibble), `*` (any number of bytes), `{n}`, `{n-}`, `{-n}`, `{n-m}` and `[n-m]`
//! (that many arbitrary bytes; `[n-m]` is taken as `{n-m}`, without ClamAV's rule that one side
//! be a single byte) and `(aa|bbcc|d?)` (alternatives, of equal length or not, of bytes with
//! nibble wildcards). Not supported, each a [`SignatureError`]: negated alternatives `!(..)` and
//! the `(B)` and `(L)` boundary anchors. A signature made only of gaps is an error too.
//!
//! The target type says what content a signature applies to:
//!
//! - 0: every part (the raw message itself is matched by target type 4 signatures only);
//! - 1 (PE): a part starting with `MZ`;
//! - 3 (HTML): a part whose MIME type is `text/html`, or whose content, after an optional UTF-8
//!   byte order mark and ASCII whitespace, starts with `<` and contains `<html` in any case.
//!   ClamAV normalises HTML (case, whitespace, entities, scripts) before matching; sluice does
//!   not, so a signature written against normalised HTML may miss;
//! - 4 (mail): the whole raw message as received, headers and undecoded bodies included, not a
//!   part; a match is reported for `message` and removes the whole body when stripping;
//! - 6 (ELF): a part starting with `\x7fELF`;
//! - 7 (ASCII text): a part with no NUL byte in it (ClamAV's text normalisation is not done);
//! - 10 (PDF): a part starting with `%PDF-`.
//!
//! Other target types (2 OLE2, 5 graphics, 9 Mach-O, 11 Flash, 12 Java, ...) are a
//! [`SignatureError`] naming the type, and the signature is skipped.
//!
//! The offset says where the match starts: `*` (anywhere), `n` (exactly at byte `n`), `EOF-n`
//! (`n` bytes before the end), either of the last two followed by `,m` (starting anywhere in the
//! `m` bytes after that). Offsets relative to a PE entry point or section (`EP+n`, `EP-n`,
//! `Sx+n`, `SL+n`, `SEx`) need PE parsing and are a [`SignatureError`]; the signature is skipped.
//!
//! All body signatures are matched at once: one Aho-Corasick automaton over an anchor (a fixed
//! byte run) of every signature finds the few signatures worth verifying, and verification works
//! only around where their anchors occur. The work per part is bounded linearly in its size; a
//! part that would need more is passed as clean by the body signatures. See `ndb.rs` for the
//! details.
//!
//! # Scanning
//!
//! Every MIME leaf part is transfer-decoded (base64, quoted-printable), nested `message/rfc822`
//! parts included (see [`crate::mime`]), looked up by (hash, size) and matched against the body
//! signatures. A hash kind is computed only when a signature of that kind could match the part's
//! size, so a signature set without SHA-256 entries never computes SHA-256. Then the raw message
//! is matched against the target type 4 body signatures. Input that is not a parseable message is
//! scanned as one part.
//!
//! # Stripping
//!
//! [`Signatures::strip`] replaces each infected part with a short `text/plain` notice, cutting
//! the raw message at the part's byte offsets so that every other byte, the MIME boundary lines
//! included, stays as it was. A part inside a nested message that was itself base64- or
//! quoted-printable-encoded is removed with the whole nested message, since its offsets do not
//! count in the raw message. A target type 4 detection replaces the whole body, and the notice
//! then names every detection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use md5::{Digest, Md5};
use ring::digest;

use crate::SourceFile;
use crate::mime::{self, Decoded, Span};

mod ndb;

use ndb::{BodySignature, BodySignatures, Part};

/// The EICAR anti-virus test file (68 bytes).
pub const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The name of the built-in EICAR detection.
const EICAR_NAME: &str = "Eicar-Test-Signature";

/// The longest file the EICAR specification allows: the string plus trailing whitespace.
const EICAR_MAX_LEN: usize = 128;

/// The built-in hash signature of the canonical 68-byte EICAR file.
const EICAR_HDB: &str = "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature";

/// A compiled set of virus signatures. Cheap to share: put it in an `Arc`.
#[derive(Debug, Clone)]
pub struct Signatures {
    md5: HashTable<16>,
    sha1: HashTable<20>,
    sha256: HashTable<32>,
    body: BodySignatures,
}

/// A virus found in a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The signature's name, e.g. `Eicar-Test-Signature`.
    pub name: String,
    /// Where it was found: the attachment's file name, `part N` (leaf parts counted from 1 in
    /// message order), or `message` for the whole body of a single-part message.
    pub part: String,
}

/// A signature line or file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureError {
    /// The signature file's name.
    pub file: String,
    /// The line number, from 1; 0 when the error is about the whole file.
    pub line: usize,
    /// What is wrong, in one line.
    pub reason: String,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.reason)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.reason)
        }
    }
}

impl std::error::Error for SignatureError {}

/// The signatures of one hash kind, with digests `N` bytes long.
#[derive(Debug, Clone, Default)]
struct HashTable<const N: usize> {
    /// Signatures with a size, by (digest, size).
    sized: HashMap<([u8; N], u64), String>,
    /// Signatures of any size (`*`), by digest.
    any_size: HashMap<[u8; N], String>,
    /// The sizes in `sized`, to skip hashing parts no signature can match.
    sizes: HashSet<u64>,
}

impl<const N: usize> HashTable<N> {
    fn insert(&mut self, hash: [u8; N], size: Option<u64>, name: &str) {
        // The first signature for a hash wins; a repeated line changes nothing.
        match size {
            Some(size) => {
                self.sizes.insert(size);
                self.sized.entry((hash, size)).or_insert_with(|| name.to_owned());
            }
            None => {
                self.any_size.entry(hash).or_insert_with(|| name.to_owned());
            }
        }
    }

    fn len(&self) -> usize {
        self.sized.len() + self.any_size.len()
    }

    /// Whether some signature could match content of `size` bytes.
    fn wants(&self, size: u64) -> bool {
        !self.any_size.is_empty() || self.sizes.contains(&size)
    }

    fn lookup(&self, hash: &[u8; N], size: u64) -> Option<&str> {
        self.sized.get(&(*hash, size)).or_else(|| self.any_size.get(hash)).map(String::as_str)
    }
}

impl Signatures {
    /// The signatures shipped in the binary: EICAR.
    pub fn builtin() -> Signatures {
        let mut signatures = Signatures {
            md5: HashTable::default(),
            sha1: HashTable::default(),
            sha256: HashTable::default(),
            body: BodySignatures::default(),
        };
        // The built-in line is well formed: a unit test proves it.
        let _ = signatures.add_line(EICAR_HDB);
        signatures
    }

    /// Compiles signature files on top of the built-in EICAR signatures. Every well-formed
    /// signature is loaded; each malformed line, and each file of an unknown type, is reported.
    pub fn compile(files: &[SourceFile]) -> (Signatures, Vec<SignatureError>) {
        let mut signatures = Signatures::builtin();
        let mut errors = Vec::new();
        let mut body: Vec<BodySignature> = Vec::new();
        let mut body_file = None;
        for file in files {
            let Some(kind) = file_kind(&file.name) else {
                errors.push(SignatureError {
                    file: file.name.clone(),
                    line: 0,
                    reason: "unknown signature file type".to_owned(),
                });
                continue;
            };
            let text = String::from_utf8_lossy(&file.bytes);
            for (index, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let added = match kind {
                    FileKind::Hash => signatures.add_line(line),
                    FileKind::Body => ndb::parse_line(line).map(|signature| body.push(signature)),
                };
                if let Err(reason) = added {
                    errors.push(SignatureError { file: file.name.clone(), line: index + 1, reason });
                }
            }
            if kind == FileKind::Body {
                body_file.get_or_insert_with(|| file.name.clone());
            }
        }
        let (body, error) = BodySignatures::new(body);
        signatures.body = body;
        if let (Some(reason), Some(file)) = (error, body_file) {
            errors.push(SignatureError { file, line: 0, reason });
        }
        (signatures, errors)
    }

    /// The number of signatures: the hash and body signatures plus the built-in EICAR content
    /// signature.
    pub fn len(&self) -> usize {
        self.md5.len() + self.sha1.len() + self.sha256.len() + self.body.len() + 1
    }

    /// Always false: the built-in EICAR signature is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Scans a raw message; the first detection, in part order.
    pub fn scan(&self, message: &[u8]) -> Option<Detection> {
        self.scan_decoded(&mime::decode(message))
    }

    /// Scans a message already decoded, so that other engines can share the decoding.
    pub fn scan_decoded(&self, decoded: &Decoded<'_>) -> Option<Detection> {
        let in_part = decoded.leaves().into_iter().find_map(|leaf| {
            let name = self.identify(&leaf.bytes, leaf.html)?;
            Some(Detection { name: name.to_owned(), part: leaf.label })
        });
        in_part.or_else(|| self.identify_mail(decoded))
    }

    /// Removes the infected parts of a message: `None` when it is clean, else the rewritten
    /// message and every detection. See the module documentation.
    pub fn strip(&self, message: &[u8]) -> Option<(Vec<u8>, Vec<Detection>)> {
        self.strip_decoded(&mime::decode(message))
    }

    /// [`Signatures::strip`] for a message already decoded.
    pub fn strip_decoded(&self, decoded: &Decoded<'_>) -> Option<(Vec<u8>, Vec<Detection>)> {
        let mut by_span: BTreeMap<Span, Vec<Detection>> = BTreeMap::new();
        let mut detections = Vec::new();
        for leaf in decoded.leaves() {
            if let Some(name) = self.identify(&leaf.bytes, leaf.html) {
                let detection = Detection { name: name.to_owned(), part: leaf.label };
                by_span.entry(leaf.span).or_default().push(detection.clone());
                detections.push(detection);
            }
        }
        if let Some(detection) = self.identify_mail(decoded) {
            by_span.entry(Span::Root).or_default().push(detection.clone());
            detections.push(detection);
        }
        if detections.is_empty() {
            return None;
        }
        Some((rewrite(decoded, &by_span), detections))
    }

    /// The name of the signature a part's `content` matches; `html` says whether its MIME type is
    /// `text/html`.
    fn identify(&self, content: &[u8], html: bool) -> Option<&str> {
        if is_eicar(content) {
            return Some(EICAR_NAME);
        }
        let size = content.len() as u64;
        if self.md5.wants(size) {
            let hash: [u8; 16] = Md5::digest(content).into();
            if let Some(name) = self.md5.lookup(&hash, size) {
                return Some(name);
            }
        }
        if self.sha1.wants(size)
            && let Some(hash) = ring_digest::<20>(&digest::SHA1_FOR_LEGACY_USE_ONLY, content)
            && let Some(name) = self.sha1.lookup(&hash, size)
        {
            return Some(name);
        }
        if self.sha256.wants(size)
            && let Some(hash) = ring_digest::<32>(&digest::SHA256, content)
            && let Some(name) = self.sha256.lookup(&hash, size)
        {
            return Some(name);
        }
        self.body.find_in_part(&Part::new(content, html))
    }

    /// The detection of a target type 4 (mail) body signature in the raw message.
    fn identify_mail(&self, decoded: &Decoded<'_>) -> Option<Detection> {
        let name = self.body.find_in_mail(decoded.raw())?;
        Some(Detection { name: name.to_owned(), part: "message".to_owned() })
    }

    /// Adds one `hash:size:Name[:flevel[:flevel]]` line.
    fn add_line(&mut self, line: &str) -> Result<(), String> {
        let fields: Vec<&str> = line.split(':').collect();
        if !(3..=5).contains(&fields.len()) {
            return Err("expected hash:size:name".to_owned());
        }
        let (hash, size, name) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if name.is_empty() {
            return Err("empty signature name".to_owned());
        }
        if fields[3..].iter().any(|f| f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit())) {
            return Err("functionality level is not a number".to_owned());
        }
        let size = match size {
            "*" => None,
            digits => Some(digits.parse::<u64>().map_err(|_| format!("size {digits:?} is not a number"))?),
        };
        let bytes = decode_hex(hash).ok_or("hash is not hexadecimal")?;
        match bytes.len() {
            16 => self.md5.insert(to_array(&bytes)?, size, name),
            20 => self.sha1.insert(to_array(&bytes)?, size, name),
            32 => self.sha256.insert(to_array(&bytes)?, size, name),
            _ => return Err("hash is not MD5, SHA-1 or SHA-256 (32, 40 or 64 hex digits)".to_owned()),
        }
        Ok(())
    }
}

/// Whether `content` is the EICAR test file, with the trailing whitespace its specification
/// allows.
fn is_eicar(content: &[u8]) -> bool {
    content.len() <= EICAR_MAX_LEN
        && content.starts_with(EICAR)
        && content[EICAR.len()..].iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x1a))
}

/// The kinds of signature file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    /// `.hdb`, `.hsb`, `.hdu`, `.hsu`: hash signatures.
    Hash,
    /// `.ndb`, `.ndu`: extended body signatures.
    Body,
}

/// The kind of a signature file, by its extension; `None` for an unknown one.
fn file_kind(name: &str) -> Option<FileKind> {
    let extension = name.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase());
    match extension.as_deref() {
        Some("hdb" | "hsb" | "hdu" | "hsu") => Some(FileKind::Hash),
        Some("ndb" | "ndu") => Some(FileKind::Body),
        _ => None,
    }
}

fn ring_digest<const N: usize>(algorithm: &'static digest::Algorithm, content: &[u8]) -> Option<[u8; N]> {
    digest::digest(algorithm, content).as_ref().try_into().ok()
}

fn to_array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], String> {
    bytes.try_into().map_err(|_| "hash has the wrong length".to_owned())
}

/// Decodes hexadecimal digits (either case); `None` for odd lengths or other characters.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let high = (pair[0] as char).to_digit(16)?;
            let low = (pair[1] as char).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

/// The raw message with every infected part replaced by a notice.
fn rewrite(decoded: &Decoded<'_>, by_span: &BTreeMap<Span, Vec<Detection>>) -> Vec<u8> {
    let raw = decoded.raw();
    let eol: &[u8] = line_ending(raw);
    if by_span.contains_key(&Span::Root) {
        // The whole body goes: the notice names everything found in it.
        let all: Vec<Detection> = by_span.values().flatten().cloned().collect();
        return rewrite_root(decoded, &notice(&all, eol), eol);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut copied = 0;
    for (span, detections) in by_span {
        let Span::Range(start, end) = *span else { continue };
        if start < copied || end < start || end > raw.len() {
            // Offsets that do not fit the message cannot be cut safely: remove the whole body
            // rather than leave an infected part behind.
            let all: Vec<Detection> = by_span.values().flatten().cloned().collect();
            return rewrite_root(decoded, &notice(&all, eol), eol);
        }
        out.extend_from_slice(&raw[copied..start]);
        // The part ends before the line break that precedes the next boundary, so the
        // replacement does not end with one.
        out.extend_from_slice(&notice_headers(eol));
        out.extend_from_slice(eol);
        out.extend_from_slice(&notice(detections, eol));
        copied = end;
    }
    out.extend_from_slice(&raw[copied..]);
    out
}

/// Replaces the whole body of the message with `text`, and its MIME headers with `text/plain`.
fn rewrite_root(decoded: &Decoded<'_>, text: &[u8], eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(message) = decoded.message() {
        let raw = message.raw_message.as_ref();
        for header in message.headers() {
            let name = header.name.as_str();
            let is_mime = ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]
                .iter()
                .any(|m| m.eq_ignore_ascii_case(name));
            let field = raw.get(header.offset_field as usize..header.offset_end as usize);
            if let (false, Some(field)) = (is_mime, field) {
                out.extend_from_slice(field);
                if !field.ends_with(b"\n") {
                    out.extend_from_slice(eol);
                }
            }
        }
    }
    out.extend_from_slice(&notice_headers(eol));
    out.extend_from_slice(eol);
    out.extend_from_slice(text);
    out.extend_from_slice(eol);
    out
}

/// The MIME header fields of a notice part, each ending with `eol`.
fn notice_headers(eol: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for field in ["Content-Type: text/plain; charset=us-ascii", "Content-Transfer-Encoding: 7bit"] {
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(eol);
    }
    out
}

/// The notice text, one line per detection, without a final line break.
fn notice(detections: &[Detection], eol: &[u8]) -> Vec<u8> {
    let lines: Vec<String> = detections
        .iter()
        .map(|d| format!("The attachment {} was removed: it contained {}.", printable(&d.part), printable(&d.name)))
        .collect();
    lines.join(std::str::from_utf8(eol).unwrap_or("\r\n")).into_bytes()
}

/// `text` with everything but printable ASCII replaced by `?`, for a 7-bit notice.
fn printable(text: &str) -> String {
    text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// The message's line ending: CRLF unless its first line ends with a bare LF.
fn line_ending(raw: &[u8]) -> &'static [u8] {
    match raw.iter().position(|&b| b == b'\n') {
        Some(i) if i == 0 || raw[i - 1] != b'\r' => b"\n",
        _ => b"\r\n",
    }
}

#[cfg(test)]
mod tests;
