//! Client addresses.
//!
//! A client is reached through its gateway: the address names the client's
//! Sphinx public key (the final-hop destination its gateway sees) and the
//! gateway's [`NodeId`]. Its text form, `<client key>@<gateway id>` in base58,
//! is what users paste into `send --to`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sphinx_packet::route::DestinationAddressBytes;

use crate::error::ProtocolError;
use crate::keys::{NodeId, decode_32};

/// The final-hop destination of drop cover: a gateway acknowledges a packet
/// to it and discards it. All zero is a low-order point, so no client key is
/// ever equal to it.
pub const DROP_DESTINATION: [u8; 32] = [0; 32];

/// Final-hop destination of a request to the gateway's own prekey service
/// ([`crate::prekeys`]). Not the canonical encoding of any X25519 point, so
/// no client key is ever equal to it.
pub const PREKEY_SERVICE_DESTINATION: [u8; 32] = [0xFF; 32];

/// Where a client can be reached: its Sphinx key and its gateway.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientAddress {
    /// The client's X25519 Sphinx public key.
    pub client_key: [u8; 32],
    /// The gateway that keeps the client's mailbox.
    pub gateway: NodeId,
}

impl ClientAddress {
    /// The final-hop destination for packets to this client.
    pub fn destination(&self) -> DestinationAddressBytes {
        DestinationAddressBytes::from_bytes(self.client_key)
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}",
            bs58::encode(self.client_key).into_string(),
            self.gateway
        )
    }
}

impl fmt::Debug for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientAddress({self})")
    }
}

impl FromStr for ClientAddress {
    type Err = ProtocolError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (client, gateway) = text
            .trim()
            .split_once('@')
            .ok_or_else(|| ProtocolError::BadAddress("missing `@`".into()))?;
        let client_key =
            decode_32(client).map_err(|e| ProtocolError::BadAddress(format!("client key: {e}")))?;
        let gateway = NodeId(
            decode_32(gateway).map_err(|e| ProtocolError::BadAddress(format!("gateway: {e}")))?,
        );
        Ok(ClientAddress {
            client_key,
            gateway,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn text_form_round_trips(client in any::<[u8; 32]>(), gw in any::<[u8; 32]>()) {
            let a = ClientAddress { client_key: client, gateway: NodeId(gw) };
            prop_assert_eq!(a.to_string().parse::<ClientAddress>(), Ok(a));
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(text in ".{0,120}") {
            let _ = text.parse::<ClientAddress>();
        }
    }

    #[test]
    fn rejects_missing_separator_and_short_keys() {
        assert!("abc".parse::<ClientAddress>().is_err());
        assert!("abc@def".parse::<ClientAddress>().is_err());
    }
}
