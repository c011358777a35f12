//! What a forward frame's sealed body holds, and the coarse lifetime the
//! gateway reads beside it.
//!
//! Plaintext layout (big endian), always [`SEALED_PLAINTEXT_SIZE`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | kind ([`SealedContentKind`]) |
//! | 1 | flags: bit 1 = lifetime present, other bits zero |
//! | 4 | lifetime in seconds (zero when absent) |
//! | 2 | body length |
//! | n | body: the fragment (data), the loop's 16-byte id (loop cover), nothing (drop cover) |
//! | rest | zero padding |
//!
//! Only the recipient reads it: the exact lifetime is enforced by the
//! recipient's client; its gateway only sees the [`LifetimeBucket`].

use std::time::Duration;

use crate::error::ProtocolError;
use crate::fragment::Fragment;
use crate::seal::SEALED_PLAINTEXT_SIZE;

/// Bytes of the sealed content's header: kind, flags, lifetime, body length.
pub(crate) const CONTENT_HEADER_SIZE: usize = 1 + 1 + 4 + 2;

const FLAG_LIFETIME: u8 = 2;

/// What a sealed body holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SealedContentKind {
    /// A fragment of a message.
    Data = 1,
    /// The client's loop cover, back at its own mailbox.
    LoopCover = 3,
    /// Drop cover (sealed to nobody's key; its gateway discards it).
    DropCover = 4,
}

/// The plaintext of a forward frame's sealed body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SealedContent {
    /// A fragment of a message.
    Data {
        /// Seconds the message may be kept, counted from its arrival at the
        /// recipient's gateway (`None`: no limit set by the sender).
        lifetime: Option<u32>,
        /// The fragment.
        fragment: Fragment,
    },
    /// Loop cover, with the id its sender recognizes it by when it comes back.
    LoopCover {
        /// Chosen at random by the sender.
        id: [u8; 16],
    },
    /// Drop cover.
    DropCover,
}

impl SealedContent {
    /// The kind of this content.
    pub fn kind(&self) -> SealedContentKind {
        match self {
            SealedContent::Data { .. } => SealedContentKind::Data,
            SealedContent::LoopCover { .. } => SealedContentKind::LoopCover,
            SealedContent::DropCover => SealedContentKind::DropCover,
        }
    }

    /// The sender's lifetime, if it set one.
    pub fn lifetime(&self) -> Option<u32> {
        match self {
            SealedContent::Data { lifetime, .. } => *lifetime,
            SealedContent::LoopCover { .. } | SealedContent::DropCover => None,
        }
    }

    /// Encodes to exactly [`SEALED_PLAINTEXT_SIZE`] bytes.
    pub fn encode(&self) -> Result<[u8; SEALED_PLAINTEXT_SIZE], ProtocolError> {
        let mut body = Vec::new();
        match self {
            SealedContent::Data { fragment, .. } => fragment.encode_into(&mut body),
            SealedContent::LoopCover { id } => body.extend_from_slice(id),
            SealedContent::DropCover => {}
        }
        if body.len() > SEALED_PLAINTEXT_SIZE - CONTENT_HEADER_SIZE {
            return Err(ProtocolError::BadFrame(format!(
                "sealed body of {} bytes does not fit",
                body.len()
            )));
        }
        let lifetime = self.lifetime();
        let mut out = [0u8; SEALED_PLAINTEXT_SIZE];
        let mut header = Vec::with_capacity(CONTENT_HEADER_SIZE);
        header.push(self.kind() as u8);
        header.push(if lifetime.is_some() { FLAG_LIFETIME } else { 0 });
        header.extend_from_slice(&lifetime.unwrap_or(0).to_be_bytes());
        header.extend_from_slice(&(body.len() as u16).to_be_bytes());
        header.extend_from_slice(&body);
        if let Some(dst) = out.get_mut(..header.len()) {
            dst.copy_from_slice(&header);
        }
        Ok(out)
    }

    /// Decodes the plaintext of a sealed body.
    pub fn decode(bytes: &[u8]) -> Result<SealedContent, ProtocolError> {
        let bad = |what: &str| ProtocolError::BadFrame(format!("sealed content: {what}"));
        if bytes.len() != SEALED_PLAINTEXT_SIZE {
            return Err(bad("wrong size"));
        }
        let (header, rest) = bytes
            .split_first_chunk::<CONTENT_HEADER_SIZE>()
            .ok_or_else(|| bad("truncated"))?;
        let [kind, flags, l0, l1, l2, l3, n0, n1] = *header;
        if flags & !FLAG_LIFETIME != 0 {
            return Err(bad("unknown flags"));
        }
        let lifetime = (flags & FLAG_LIFETIME != 0).then(|| u32::from_be_bytes([l0, l1, l2, l3]));
        if lifetime.is_none() && [l0, l1, l2, l3] != [0; 4] {
            return Err(bad("a lifetime without its flag"));
        }
        let len = usize::from(u16::from_be_bytes([n0, n1]));
        let body = rest.get(..len).ok_or_else(|| bad("body too long"))?;
        if lifetime.is_some() && kind != SealedContentKind::Data as u8 {
            return Err(bad("cover with a lifetime"));
        }
        match kind {
            k if k == SealedContentKind::Data as u8 => Ok(SealedContent::Data {
                lifetime,
                fragment: Fragment::decode(body)?,
            }),
            k if k == SealedContentKind::LoopCover as u8 => Ok(SealedContent::LoopCover {
                id: body
                    .try_into()
                    .map_err(|_| bad("loop id of the wrong length"))?,
            }),
            k if k == SealedContentKind::DropCover as u8 && body.is_empty() => {
                Ok(SealedContent::DropCover)
            }
            _ => Err(bad("unknown kind or a body where none belongs")),
        }
    }
}

/// How long the recipient's gateway may keep a forward frame's body: the
/// sender's lifetime rounded up to a coarse bucket, so that the exact value
/// (which could tag a conversation) stays sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum LifetimeBucket {
    /// No lifetime set (or longer than the longest bucket): the gateway's own retention.
    Unset = 0,
    /// At most one hour.
    Hour = 1,
    /// At most six hours.
    SixHours = 2,
    /// At most one day.
    Day = 3,
    /// At most one week.
    Week = 4,
    /// At most thirty days.
    Month = 5,
}

impl LifetimeBucket {
    const ALL: [LifetimeBucket; 5] = [
        LifetimeBucket::Hour,
        LifetimeBucket::SixHours,
        LifetimeBucket::Day,
        LifetimeBucket::Week,
        LifetimeBucket::Month,
    ];

    /// The smallest bucket that keeps a message of `lifetime` seconds at least that long.
    pub fn covering(lifetime: Option<u32>) -> Self {
        let Some(secs) = lifetime else {
            return LifetimeBucket::Unset;
        };
        LifetimeBucket::ALL
            .into_iter()
            .find(|b| b.duration().is_some_and(|d| d.as_secs() >= u64::from(secs)))
            .unwrap_or(LifetimeBucket::Unset)
    }

    /// How long the bucket lets the gateway keep a message (`None`: its own retention).
    pub fn duration(self) -> Option<Duration> {
        const HOUR: u64 = 3_600;
        let secs = match self {
            LifetimeBucket::Unset => return None,
            LifetimeBucket::Hour => HOUR,
            LifetimeBucket::SixHours => 6 * HOUR,
            LifetimeBucket::Day => 24 * HOUR,
            LifetimeBucket::Week => 7 * 24 * HOUR,
            LifetimeBucket::Month => 30 * 24 * HOUR,
        };
        Some(Duration::from_secs(secs))
    }

    pub(crate) fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(LifetimeBucket::Unset),
            _ => LifetimeBucket::ALL.into_iter().find(|x| *x as u8 == b),
        }
    }
}
