//! The MongoDB wire protocol, as far as the proxy needs it: frames (a 16-byte
//! little-endian header `messageLength, requestID, responseTo, opCode`), and
//! for `OP_MSG` the flag bits and the body section.

use std::io;

use bson::{Document, RawDocument};
use tokio::io::{AsyncRead, AsyncReadExt};

/// `OP_MSG`, the only op code of current drivers.
pub(crate) const OP_MSG: i32 = 2013;
const HEADER: usize = 16;
/// Larger than any message a server accepts (48 MB).
const MAX_MESSAGE: usize = 48 * 1024 * 1024;
const CHECKSUM_PRESENT: u32 = 1;
const MORE_TO_COME: u32 = 1 << 1;
const EXHAUST_ALLOWED: u32 = 1 << 16;

/// One whole message, header included.
#[derive(Debug, Clone)]
pub(crate) struct Frame(Vec<u8>);

fn le_i32(bytes: &[u8], at: usize) -> i32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    i32::from_le_bytes(b)
}

impl Frame {
    pub(crate) fn request_id(&self) -> i32 {
        le_i32(&self.0, 4)
    }

    pub(crate) fn set_request_id(&mut self, id: i32) {
        self.0[4..8].copy_from_slice(&id.to_le_bytes());
    }

    pub(crate) fn response_to(&self) -> i32 {
        le_i32(&self.0, 8)
    }

    pub(crate) fn set_response_to(&mut self, id: i32) {
        self.0[8..12].copy_from_slice(&id.to_le_bytes());
    }

    fn op_code(&self) -> i32 {
        le_i32(&self.0, 12)
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The `OP_MSG` flag bits (`None` for other op codes).
    fn flags(&self) -> Option<u32> {
        (self.op_code() == OP_MSG && self.0.len() >= HEADER + 4)
            .then(|| le_i32(&self.0, HEADER) as u32)
    }

    /// Whether the sender expects no reply (`OP_MSG` flag `moreToCome`).
    pub(crate) fn more_to_come(&self) -> bool {
        self.flags().is_some_and(|f| f & MORE_TO_COME != 0)
    }

    /// The byte range of the body (kind 0) section's document.
    fn body_range(&self) -> Option<(usize, usize)> {
        let flags = self.flags()?;
        let end = self.0.len() - if flags & CHECKSUM_PRESENT != 0 { 4 } else { 0 };
        let mut at = HEADER + 4;
        while at + 5 <= end {
            let kind = self.0[at];
            let len = usize::try_from(le_i32(&self.0, at + 1)).ok()?;
            if len < 5 || at + 1 + len > end {
                return None;
            }
            if kind == 0 {
                return Some((at + 1, at + 1 + len));
            }
            at += 1 + len;
        }
        None
    }

    /// The body document (raw).
    fn raw_body(&self) -> Option<&RawDocument> {
        let (start, end) = self.body_range()?;
        RawDocument::from_bytes(&self.0[start..end]).ok()
    }

    /// The body document.
    pub(crate) fn body(&self) -> Option<Document> {
        Document::try_from(self.raw_body()?).ok()
    }

    /// The command name: the body's first key.
    pub(crate) fn command_name(&self) -> Option<String> {
        let (key, _) = self.raw_body()?.iter().next()?.ok()?;
        Some(key.to_owned())
    }

    /// Whether this is a `hello` (or legacy `isMaster`) command.
    pub(crate) fn is_hello(&self) -> bool {
        self.command_name().is_some_and(|n| is_hello_name(&n))
    }

    /// This message with another body, without checksum and with the given
    /// flag bits cleared; other sections are kept.
    fn with_body(&self, body: &Document, clear_flags: u32) -> Option<Frame> {
        let flags = self.flags()?;
        let (start, end) = self.body_range()?;
        let checksum = if flags & CHECKSUM_PRESENT != 0 { 4 } else { 0 };
        let mut doc = Vec::new();
        body.to_writer(&mut doc).ok()?;
        let mut out = Vec::with_capacity(self.0.len() + doc.len());
        out.extend_from_slice(&self.0[..HEADER]);
        out.extend_from_slice(&(flags & !(clear_flags | CHECKSUM_PRESENT)).to_le_bytes());
        out.extend_from_slice(&self.0[HEADER + 4..start]);
        out.extend_from_slice(&doc);
        out.extend_from_slice(&self.0[end..self.0.len() - checksum]);
        let len = i32::try_from(out.len()).ok()?;
        out[0..4].copy_from_slice(&len.to_le_bytes());
        Some(Frame(out))
    }

    /// Clear the flag `exhaustAllowed` (the proxy answers one request with one
    /// reply), dropping a checksum, which would no longer match.
    pub(crate) fn without_exhaust(self) -> Frame {
        match self.flags() {
            Some(f) if f & EXHAUST_ALLOWED != 0 => match self.body() {
                Some(body) => self.with_body(&body, EXHAUST_ALLOWED).unwrap_or(self),
                None => self,
            },
            _ => self,
        }
    }

    /// This message without the key `key` in its body, if the body has it.
    pub(crate) fn without_key(self, key: &str) -> Frame {
        match self.body() {
            Some(mut body) if body.contains_key(key) => {
                body.remove(key);
                self.with_body(&body, 0).unwrap_or(self)
            }
            _ => self,
        }
    }
}

/// Whether `name` is `hello` or a spelling of legacy `isMaster`.
pub(crate) fn is_hello_name(name: &str) -> bool {
    name == "hello" || name.eq_ignore_ascii_case("ismaster")
}

/// An `OP_MSG` reply carrying `doc`.
pub(crate) fn op_msg(request_id: i32, response_to: i32, doc: &Document) -> io::Result<Frame> {
    let mut body = Vec::new();
    doc.to_writer(&mut body).map_err(io::Error::other)?;
    let len = HEADER + 4 + 1 + body.len();
    let len32 = i32::try_from(len).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&len32.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&OP_MSG.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&body);
    Ok(Frame(out))
}

/// Read one message; `Ok(None)` on end of stream before its first byte.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let total = usize::try_from(i32::from_le_bytes(len)).unwrap_or(0);
    if !(HEADER..=MAX_MESSAGE).contains(&total) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad message length {total}"),
        ));
    }
    let mut buf = vec![0u8; total];
    buf[..4].copy_from_slice(&len);
    r.read_exact(&mut buf[4..]).await?;
    Ok(Some(Frame(buf)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn op_msg_round_trip_and_rewrites() {
        let frame = op_msg(
            7,
            3,
            &doc! { "hello": 1, "client": { "a": 1 }, "$db": "admin" },
        )
        .expect("a frame");
        assert_eq!(frame.request_id(), 7);
        assert_eq!(frame.response_to(), 3);
        assert_eq!(frame.command_name().as_deref(), Some("hello"));
        assert!(frame.is_hello());
        assert!(!frame.more_to_come());
        let stripped = frame.clone().without_key("client");
        assert_eq!(stripped.body(), Some(doc! { "hello": 1, "$db": "admin" }));
        assert_eq!(le_i32(stripped.bytes(), 0) as usize, stripped.bytes().len());
        assert_eq!(stripped.request_id(), 7);
        // Absent key: unchanged.
        let same = stripped.clone().without_key("client");
        assert_eq!(same.bytes(), stripped.bytes());
    }

    #[tokio::test]
    async fn read_frame_rejects_bad_lengths() {
        let mut bytes: &[u8] = &[3, 0, 0, 0, 0, 0, 0, 0];
        assert!(read_frame(&mut bytes).await.is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty).await.expect("clean end").is_none());
    }
}
