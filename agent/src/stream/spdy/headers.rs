//! SPDY/3 name/value header blocks: the wire layout and its zlib compression.
//!
//! A header block is `u32 count` followed by `count` pairs of
//! `u32 length, name, u32 length, value`; several values of one name are
//! joined with NUL. The block is zlib-compressed with the SPDY/3 dictionary
//! (draft 3, section 2.6.10.1), and each direction of a session keeps ONE
//! compression context for all its frames: the peer's inflater only
//! understands a block if every earlier block went through the same stream.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The largest decompressed header block accepted (a bound against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// Header-block errors.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("header block is truncated")]
    Truncated,
    #[error("header block is larger than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("header block has an empty name")]
    EmptyName,
    #[error("header block names {0:?} twice")]
    Duplicate(String),
    #[error("header {0:?} is not valid UTF-8")]
    NotUtf8(String),
    #[error("header block has trailing bytes after its {0} pairs")]
    Trailing(u32),
    #[error("zlib deflate of a header block failed")]
    Deflate(#[source] flate2::CompressError),
    #[error("zlib inflate of a header block failed")]
    Inflate(#[source] flate2::DecompressError),
    #[error("header block asks for zlib dictionary {0:#x}, not SPDY/3's")]
    WrongDictionary(u32),
}

/// Ordered name/value pairs. Names are kept lowercase, as SPDY requires.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name: value`; a second value for a name is NUL-joined to the first.
    pub fn insert(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => {
                v.push('\0');
                v.push_str(value);
            }
            None => self.0.push((name, value.to_string())),
        }
    }

    /// Builder form of [`Headers::insert`].
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.insert(name, value);
        self
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.split('\0').next())
    }

    /// All pairs, values still NUL-joined.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Serialises the uncompressed block.
    pub fn to_block(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (n, v) in &self.0 {
            out.extend_from_slice(&(n.len() as u32).to_be_bytes());
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block.
    pub fn from_block(mut b: &[u8]) -> Result<Self, HeaderError> {
        let count = take_u32(&mut b)?;
        let mut out = Headers::new();
        for _ in 0..count {
            let name = take_str(&mut b)?;
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            let value = take_str(&mut b)?;
            let name = name.to_ascii_lowercase();
            if out.0.iter().any(|(n, _)| *n == name) {
                return Err(HeaderError::Duplicate(name));
            }
            out.0.push((name, value));
        }
        if !b.is_empty() {
            return Err(HeaderError::Trailing(count));
        }
        Ok(out)
    }
}

fn take_u32(b: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, rest) = b.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *b = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_str(b: &mut &[u8]) -> Result<String, HeaderError> {
    let len = take_u32(b)? as usize;
    if len > b.len() {
        return Err(HeaderError::Truncated);
    }
    let (s, rest) = b.split_at(len);
    *b = rest;
    String::from_utf8(s.to_vec())
        .map_err(|e| HeaderError::NotUtf8(String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// Words the SPDY/3 dictionary lists with a 4-byte length prefix each.
#[rustfmt::skip]
const DICT_WORDS: &[&str] = &[
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
    "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
    "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
    "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
];

/// The dictionary's raw tail (no length prefixes, no trailing NUL).
const DICT_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 zlib dictionary (1423 bytes, adler32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICT_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICT_TAIL.as_bytes());
        d
    })
}

/// The adler32 of [`dictionary`], as a zlib stream names it.
pub const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// One direction's compression context.
pub struct HeaderEncoder {
    z: Compress,
    primed: bool,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderEncoder {
    /// A fresh context (the dictionary is set before the first block).
    pub fn new() -> Self {
        Self {
            z: Compress::new(Compression::default(), true),
            primed: false,
        }
    }

    /// Compresses one block, ending with a sync flush so the peer can decode it now.
    pub fn encode(&mut self, headers: &Headers, out: &mut Vec<u8>) -> Result<(), HeaderError> {
        if !self.primed {
            self.z
                .set_dictionary(dictionary())
                .map_err(HeaderError::Deflate)?;
            self.primed = true;
        }
        let raw = headers.to_block();
        let mut input = &raw[..];
        loop {
            out.reserve(raw.len() / 2 + 64);
            let before = self.z.total_in();
            self.z
                .compress_vec(input, out, FlushCompress::Sync)
                .map_err(HeaderError::Deflate)?;
            input = &input[(self.z.total_in() - before) as usize..];
            // A sync flush is complete when the input is consumed and zlib
            // left spare output room (it fills the buffer while it has more).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(());
            }
        }
    }
}

/// The other direction's decompression context.
pub struct HeaderDecoder {
    z: Decompress,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecoder {
    /// A fresh context.
    pub fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Decompresses and parses one block.
    pub fn decode(&mut self, mut input: &[u8]) -> Result<Headers, HeaderError> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let before = self.z.total_in();
            let res = self
                .z
                .decompress_vec(input, &mut out, FlushDecompress::Sync);
            input = &input[(self.z.total_in() - before) as usize..];
            match res {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.z
                            .set_dictionary(dictionary())
                            .map_err(HeaderError::Inflate)?;
                        continue;
                    }
                    Some(other) => return Err(HeaderError::WrongDictionary(other)),
                    None => return Err(HeaderError::Inflate(e)),
                },
            }
            if out.len() > MAX_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(256));
        }
        Headers::from_block(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_matches_the_spec_size_and_id() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b"utf-,*,enq=0."));
        let mut z = Compress::new(Compression::default(), true);
        // zlib names the dictionary by its adler32; deflate reports it back.
        assert_eq!(z.set_dictionary(d).expect("dictionary"), DICTIONARY_ID);
    }

    #[test]
    fn block_round_trips_through_one_context_per_direction() {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        let blocks = [
            Headers::new().with("streamType", "error"),
            Headers::new()
                .with("streamtype", "stdout")
                .with("port", "80"),
            Headers::new()
                .with("x", "a")
                .with("X", "b")
                .with("requestid", "7"),
            Headers::new(),
        ];
        for h in &blocks {
            let mut wire = Vec::new();
            enc.encode(h, &mut wire).expect("encode");
            assert_eq!(&dec.decode(&wire).expect("decode"), h);
        }
        assert_eq!(blocks[2].get("x"), Some("a"));
        assert_eq!(blocks[0].get("StreamType"), Some("error"));
    }

    #[test]
    fn first_block_names_the_spdy_dictionary() {
        let mut wire = Vec::new();
        HeaderEncoder::new()
            .encode(&Headers::new().with("a", "b"), &mut wire)
            .expect("encode");
        // zlib header with FDICT set, then the dictionary's adler32.
        assert_eq!(wire[1] & 0x20, 0x20);
        assert_eq!(
            u32::from_be_bytes([wire[2], wire[3], wire[4], wire[5]]),
            DICTIONARY_ID
        );
    }

    #[test]
    fn a_block_from_another_context_is_rejected() {
        let mut a = HeaderEncoder::new();
        let mut first = Vec::new();
        a.encode(&Headers::new().with("a", "1"), &mut first)
            .expect("encode");
        let mut second = Vec::new();
        a.encode(&Headers::new().with("b", "2"), &mut second)
            .expect("encode");
        // A decoder that never saw the first block cannot read the second.
        assert!(HeaderDecoder::new().decode(&second).is_err());
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(matches!(
            Headers::from_block(&[0, 0]),
            Err(HeaderError::Truncated)
        ));
        let mut b = 1u32.to_be_bytes().to_vec();
        b.extend_from_slice(&100u32.to_be_bytes());
        assert!(matches!(
            Headers::from_block(&b),
            Err(HeaderError::Truncated)
        ));
        let mut dup = Headers::new().with("a", "1").to_block();
        dup[3] = 2;
        dup.extend_from_slice(&Headers::new().with("a", "2").to_block()[4..]);
        assert!(matches!(
            Headers::from_block(&dup),
            Err(HeaderError::Duplicate(_))
        ));
    }
}
