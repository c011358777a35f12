//! A bounds-checked reader for the byte formats of this crate.
//!
//! Every read returns [`SessionError::Truncated`] instead of panicking, so
//! decoders never index received bytes directly.

use crate::SessionError;

/// Reads fields front to back from received bytes.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Starts reading `bytes` from the front.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// The next `len` bytes.
    pub(crate) fn take(
        &mut self,
        len: usize,
        what: &'static str,
    ) -> Result<&'a [u8], SessionError> {
        if self.rest.len() < len {
            return Err(SessionError::Truncated {
                what,
                needed: len - self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub(crate) fn array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], SessionError> {
        let bytes = self.take(N, what)?;
        <[u8; N]>::try_from(bytes).map_err(|_| SessionError::Malformed(what))
    }

    /// One byte.
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, SessionError> {
        Ok(u8::from_be_bytes(self.array::<1>(what)?))
    }

    /// A big-endian `u16`.
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, SessionError> {
        Ok(u16::from_be_bytes(self.array::<2>(what)?))
    }

    /// A big-endian `u32`.
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, SessionError> {
        Ok(u32::from_be_bytes(self.array::<4>(what)?))
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.rest
    }

    /// How many bytes have not been read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Refuses trailing bytes.
    pub(crate) fn finish(self, what: &'static str) -> Result<(), SessionError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(SessionError::Malformed(what))
        }
    }
}
