//! Text a node, the directory or a client reads: signed descriptors and
//! topologies, the directory's POST bodies, config and settings files.

use std::path::Path;

use client::shell::{DataFolder, StoredSettings};
use directory::{DirectoryConfig, Registry};
use gateway::config::GatewaySections;
use nodeshell::config::RoleSections;
use protocol::Epoch;
use serde::Deserialize;
use topology::descriptor::{NodeDescriptor, SignedDescriptor};
use topology::document::{SignedTopology, Topology};
use topology::envelope::{DESCRIPTOR_DOMAIN, SignedEnvelope};

use crate::fixtures;
use crate::input::{Input, MAX_STEPS};

/// The fixture directory's identity (fixture node 5).
pub const DIRECTORY_NODE: u8 = 5;
/// Fixture nodes whose descriptors the checks sign: 1 to this.
pub const SIGNERS: u8 = 8;

/// `SignedDescriptor::from_json` then `verify`. First byte 0: the rest is
/// an envelope as posted; otherwise the rest is a descriptor body, signed
/// here by fixture node `1 + byte % 8` (so the fuzzer works on what only a
/// node could sign). Checked: an envelope re-encodes to one that reads the
/// same; a descriptor that verifies is named by its signer, keeps its
/// shape, and survives being signed again.
pub fn node_descriptor(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let Ok(text) = std::str::from_utf8(input.rest()) else {
        return;
    };
    let (signed, signer) = if mode == 0 {
        let Ok(signed) = SignedDescriptor::from_json(text) else {
            return;
        };
        let again = SignedDescriptor::from_json(&signed.to_json());
        assert_eq!(again.as_ref(), Ok(&signed), "envelope round trip");
        (signed, None)
    } else {
        let key = fixtures::identity(1 + mode % SIGNERS);
        let envelope = SignedEnvelope::seal(DESCRIPTOR_DOMAIN, text.to_string(), &key);
        (SignedDescriptor(envelope), Some(key))
    };
    let Ok(descriptor) = signed.verify() else {
        return;
    };
    if let Some(key) = signer {
        assert_eq!(descriptor.id, key.node_id(), "only the node it names signs");
        let resigned = descriptor.sign(&key).expect("its own node signs");
        assert_eq!(resigned.verify().as_ref(), Ok(&descriptor), "signs again");
    }
    assert!(descriptor.check_shape().is_ok());
    let json = serde_json::to_string(&descriptor).expect("serializes");
    let back: NodeDescriptor = serde_json::from_str(&json).expect("reads its own JSON");
    assert_eq!(back, descriptor, "value round trip");
}

/// `SignedTopology::from_json` then `verify` with the pinned directory key.
/// First byte 0: the rest is an envelope as served; otherwise the rest is a
/// topology body, signed here by the fixture directory. Checked: only the
/// pinned key's documents verify; a verified topology keeps its shape once
/// signed and read again.
pub fn topology_document(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let Ok(text) = std::str::from_utf8(input.rest()) else {
        return;
    };
    let key = fixtures::identity(DIRECTORY_NODE);
    let pinned = topology::AuthoritySet::single(key.node_id(), "");
    let signed = if mode == 0 {
        let Ok(signed) = SignedTopology::from_json(text) else {
            return;
        };
        let again = SignedTopology::from_json(&signed.to_json());
        assert_eq!(again.as_ref(), Ok(&signed), "envelope round trip");
        signed
    } else {
        let mut signed = SignedTopology::unsigned(text.to_string());
        signed.add_signature(topology::AuthoritySignature::sign(text, &key));
        signed
    };
    let other =
        topology::AuthoritySet::single(fixtures::identity(DIRECTORY_NODE + 1).node_id(), "");
    let Ok(topology) = signed.verify(&pinned) else {
        return;
    };
    assert!(
        signed.verify(&other).is_err(),
        "another key verifies nothing"
    );
    let resigned = topology.sign(&key).expect("signs");
    let reread: Topology = resigned
        .verify(&pinned)
        .expect("a verified topology verifies again");
    assert!(reread.check_shape().is_ok());
    assert_eq!(reread.layers.len(), topology.layers.len());
    assert_eq!(reread.gateways.len(), topology.gateways.len());
}

/// Most nodes the check's registry holds.
pub const REGISTRY_NODES: usize = 4;

/// Bodies of `POST /v1/descriptors`, as the handler reads them: UTF-8, an
/// envelope, then `Registry::accept`. Records of `epoch, signer, body`: a
/// signer byte below 0x80 signs the body here as a descriptor of fixture
/// node `1 + signer % 8`; otherwise the body is the envelope as posted.
/// Checked: a refused post changes nothing; the registry never holds more
/// than its bound; an accepted descriptor is the one held for its node.
pub fn directory_post(data: &[u8]) {
    let mut registry = Registry::new(REGISTRY_NODES, 2);
    let mut input = Input::new(data);
    // Each step costs public-key operations: a bounded number keeps a run fast.
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let epoch = Epoch(u64::from(input.u8() % 8));
        let signer = input.u8();
        let Ok(text) = std::str::from_utf8(input.record()) else {
            continue;
        };
        let signed = if signer < 0x80 {
            let key = fixtures::identity(1 + signer % SIGNERS);
            SignedDescriptor(SignedEnvelope::seal(
                DESCRIPTOR_DOMAIN,
                text.to_string(),
                &key,
            ))
        } else {
            let Ok(signed) = SignedDescriptor::from_json(text) else {
                continue;
            };
            signed
        };
        let before: Vec<_> = (1..=SIGNERS)
            .map(|n| {
                registry
                    .get(&fixtures::identity(n).node_id())
                    .map(|r| r.descriptor.clone())
            })
            .collect();
        let len = registry.len();
        match registry.accept(signed, epoch) {
            Ok(registration) => {
                let descriptor = registration.descriptor.clone();
                let held = registry.get(&descriptor.id).map(|r| &r.descriptor);
                assert_eq!(held, Some(&descriptor));
            }
            Err(_) => {
                let after: Vec<_> = (1..=SIGNERS)
                    .map(|n| {
                        registry
                            .get(&fixtures::identity(n).node_id())
                            .map(|r| r.descriptor.clone())
                    })
                    .collect();
                // A full registry may forget absent nodes before it refuses.
                if registry.len() == len {
                    assert_eq!(after, before, "refused: nothing changes");
                }
            }
        }
        assert!(registry.len() <= REGISTRY_NODES, "bounded");
    }
}

/// A role with no sections of its own, processing under `[mixing]`: the
/// mix node's file.
#[derive(Debug, Deserialize)]
pub struct MixFile {}

impl RoleSections for MixFile {
    const PROCESSING: &'static str = "mixing";
    const SECTIONS: &'static [&'static str] = &[];
}

/// `nodeshell::config::parse`: never panics, and a refusal is one line that
/// names the file.
pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = nodeshell::config::parse::<MixFile>(Path::new("config.toml"), text) {
        let message = format!("{e:#}");
        assert!(message.starts_with("config.toml"), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
}

/// `audit::verify` (what `<binary> audit verify` and every start read):
/// never panics; a log it accepts has one record per line and ends with a
/// newline; a refusal names a line of the input, in one line of text.
pub fn audit_log(data: &[u8]) {
    let lines = data.iter().filter(|b| **b == b'\n').count();
    let lines = u64::try_from(lines).unwrap_or(u64::MAX);
    match audit::verify(data) {
        Ok(verified) => {
            assert_eq!(verified.records, lines);
            assert!(data.last().is_none_or(|b| *b == b'\n'));
            assert_eq!(verified.kinds.values().sum::<u64>(), lines);
        }
        Err(audit::VerifyError::Broken(broken)) => {
            assert!(broken.line >= 1 && broken.line <= lines.saturating_add(1));
            let message = broken.to_string();
            assert!(!message.contains('\n'), "one line: {message}");
        }
        Err(audit::VerifyError::Read { reason }) => panic!("reading memory failed: {reason}"),
    }
}

/// `DirectoryConfig::parse`: never panics, and a refusal is one line.
pub fn directory_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(message) = DirectoryConfig::parse(text) {
        assert!(!message.contains('\n'), "one line: {message}");
    }
}

/// The gateway's `config.toml`: `nodeshell::config::parse` with the
/// gateway's own sections (`[clients]`, `[mailbox]`). Checked: a refusal is
/// one line that names the file; an accepted file has the bounds the
/// gateway relies on (sessions, queue, retention above zero) and gives
/// limits it can run with.
pub fn gateway_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match nodeshell::config::parse::<GatewaySections>(Path::new("gateway.toml"), text) {
        Err(e) => {
            let message = format!("{e:#}");
            assert!(message.starts_with("gateway.toml"), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        Ok(file) => {
            let role = &file.role;
            assert!(role.clients.max_sessions > 0);
            assert!(role.clients.session_queue > 0);
            assert!(role.mailbox.retention_secs > 0);
            let limits = role.clients.source_limits();
            for throttle in [limits.sessions, limits.registrations] {
                assert!(throttle.rate.is_finite() && throttle.rate >= 0.0);
                assert!(throttle.burst.is_finite() && throttle.burst >= 0.0);
            }
            let _ = role.clients.registration_expiry();
            let _ = role.mailbox.mailbox_config();
        }
    }
}

/// The client's folder the settings check reads from (never touched: the
/// text is given).
pub fn client_folder() -> DataFolder {
    DataFolder::new("/var/lib/mixnet-client")
}

/// The client's `client.toml`: `StoredSettings::parse`. Checked: a refusal
/// names the file and is one line; accepted settings are written back as
/// the client writes them, and read again to the same value.
pub fn client_settings(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let folder = client_folder();
    match StoredSettings::parse(&folder, text) {
        Err(e) => {
            let message = e.to_string();
            let path = folder.settings_path();
            assert!(message.starts_with(&*path.to_string_lossy()), "{message}");
            assert!(!message.contains('\n'), "one line: {message}");
        }
        Ok(settings) => {
            let written = settings.to_toml(&folder).expect("settings write");
            let again = StoredSettings::parse(&folder, &written).expect("reads what it wrote");
            assert_eq!(again, settings, "round trip");
            assert!(settings.authority_set(&folder).is_ok());
            assert!(settings.gateway(&folder).is_ok());
        }
    }
}
