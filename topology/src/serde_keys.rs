//! Serde forms used in documents: keys as base58 text, durations with their
//! unit in the field name. JSON numbers for 32-byte keys would be unreadable
//! and four times larger.

/// A [`protocol::NodeId`] as base58 text.
pub(crate) mod node_id {
    use protocol::NodeId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_base58())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let text = String::deserialize(d)?;
        NodeId::from_base58(&text).map_err(D::Error::custom)
    }
}

/// A list of [`protocol::NodeId`]s as base58 text.
pub mod node_id_list {
    use protocol::NodeId;
    use serde::{Deserialize, Deserializer, de::Error};

    /// Reads a list of base58 node ids.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NodeId>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|text| {
                NodeId::from_base58(text).map_err(|e| D::Error::custom(format!("`{text}`: {e}")))
            })
            .collect()
    }
}

/// An X25519 public key as base58 text.
pub(crate) mod sphinx_key {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};
    use x25519_dalek::PublicKey;

    pub(crate) fn serialize<S: Serializer>(key: &PublicKey, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&bs58::encode(key.as_bytes()).into_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = bs58::decode(text.trim())
            .into_vec()
            .map_err(D::Error::custom)?;
        let bytes = <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| D::Error::custom("a Sphinx key is 32 bytes"))?;
        Ok(PublicKey::from(bytes))
    }
}

/// A [`std::time::Duration`] as whole milliseconds.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// A [`std::time::Duration`] as whole seconds.
pub(crate) mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}

/// Lists of [`protocol::NodeId`]s (e.g. mix layers) as lists of base58 text.
pub(crate) mod node_id_layers {
    use protocol::NodeId;
    use serde::{Deserialize, Deserializer, Serializer, de::Error, ser::SerializeSeq};

    pub(crate) fn serialize<S: Serializer>(
        layers: &[Vec<NodeId>],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(layers.len()))?;
        for layer in layers {
            let text: Vec<String> = layer.iter().map(NodeId::to_base58).collect();
            seq.serialize_element(&text)?;
        }
        seq.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<Vec<NodeId>>, D::Error> {
        Vec::<Vec<String>>::deserialize(d)?
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|text| NodeId::from_base58(text).map_err(D::Error::custom))
                    .collect()
            })
            .collect()
    }
}
