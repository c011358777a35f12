#![doc = include_str!("../README.md")]
// A check's panics are its findings: asserting is what this crate is for.
#![allow(clippy::panic, clippy::expect_used)]

pub mod authorities;
pub mod client;
pub mod documents;
pub mod fixtures;
pub mod input;
pub mod nodes;
pub mod reassembly;
pub mod seeds;
pub mod streams;
pub mod wire;

/// A fuzz target: its name (as `cargo fuzz list` shows it) and its check.
pub struct Target {
    /// The name of the target, of its seed folder and of its file in `fuzz/fuzz_targets/`.
    pub name: &'static str,
    /// What the target asserts about one input.
    pub check: fn(&[u8]),
    /// The decoder it exercises, for the docs.
    pub decoder: &'static str,
}

/// Every target, one per decoder of outside input.
pub const TARGETS: &[Target] = &[
    Target {
        name: "frame",
        check: wire::frame,
        decoder: "protocol::frame::Frame::decode",
    },
    Target {
        name: "sealed_content",
        check: wire::sealed_content,
        decoder: "protocol::frame::SealedContent::decode",
    },
    Target {
        name: "sealed_body",
        check: wire::sealed_body,
        decoder: "protocol::frame::ForwardFrame::open (protocol::seal::open)",
    },
    Target {
        name: "envelope",
        check: wire::envelope,
        decoder: "client_core::Envelope::decode",
    },
    Target {
        name: "link_client_messages",
        check: wire::link_client_messages,
        decoder: "protocol::link::LinkDecoder<ClientMessage> (what a gateway reads)",
    },
    Target {
        name: "link_gateway_messages",
        check: wire::link_gateway_messages,
        decoder: "protocol::link::LinkDecoder<GatewayMessage> (what a client reads)",
    },
    Target {
        name: "fragment_reassembly",
        check: reassembly::fragment_reassembly,
        decoder: "protocol::fragment::Fragment::decode and Reassembler::insert",
    },
    Target {
        name: "mixer_mix",
        check: nodes::mixer_mix,
        decoder: "mixnode_core::Mixer::handle_packet, role Mix",
    },
    Target {
        name: "mixer_exit",
        check: nodes::mixer_exit,
        decoder: "mixnode_core::Mixer::handle_packet, role Exit",
    },
    Target {
        name: "gateway_session",
        check: nodes::gateway_session,
        decoder: "gateway_core::GatewayCore::handle_client_bytes",
    },
    Target {
        name: "gateway_final_hop",
        check: nodes::gateway_final_hop,
        decoder: "gateway_core::GatewayCore::handle_deliveries",
    },
    Target {
        name: "client_delivery",
        check: client::client_delivery,
        decoder: "client_core::ClientCore::handle_delivery",
    },
    Target {
        name: "session_book_open",
        check: client::session_book_open,
        decoder: "client_core::sessions::SessionBook::open",
    },
    Target {
        name: "e2ee_session",
        check: client::e2ee_session,
        decoder: "e2ee::Session::decrypt, InitialInfo::parse, MessageTag::of",
    },
    Target {
        name: "prekey_bundle",
        check: client::prekey_bundle,
        decoder: "e2ee::PrekeyBundle::decode",
    },
    Target {
        name: "address_card",
        check: client::address_card,
        decoder: "client_core::sessions::AddressCard and protocol::ClientAddress from text",
    },
    Target {
        name: "node_descriptor",
        check: documents::node_descriptor,
        decoder: "topology::descriptor::SignedDescriptor::from_json and verify",
    },
    Target {
        name: "topology_document",
        check: documents::topology_document,
        decoder: "topology::document::SignedTopology::from_json and verify",
    },
    Target {
        name: "directory_post",
        check: documents::directory_post,
        decoder: "the body of POST /v1/descriptors into directory::registry::Registry::accept",
    },
    Target {
        name: "node_config",
        check: documents::node_config,
        decoder: "nodeshell::config::parse (a node's config.toml)",
    },
    Target {
        name: "audit_log",
        check: documents::audit_log,
        decoder: "audit::verify (an audit log, as `<binary> audit verify` and every start read it)",
    },
    Target {
        name: "directory_config",
        check: documents::directory_config,
        decoder: "directory::config::DirectoryConfig::parse",
    },
    Target {
        name: "gateway_config",
        check: documents::gateway_config,
        decoder: "nodeshell::config::parse with gateway::config::GatewaySections (a gateway's config.toml)",
    },
    Target {
        name: "client_settings",
        check: documents::client_settings,
        decoder: "client::shell::StoredSettings::parse (a client's client.toml)",
    },
    Target {
        name: "authority_votes",
        check: authorities::authority_votes,
        decoder: "topology::vote::SignedVote and RoundSignature from JSON (POST /v1/votes, /v1/signatures) into VotingRound",
    },
    Target {
        name: "stream_message",
        check: streams::stream_message,
        decoder: "stream_core::StreamMessage::decode",
    },
    Target {
        name: "stream_segments",
        check: streams::stream_segments,
        decoder: "stream_core::Stream::handle_segment (and the stream's timers, reads, writes, sends)",
    },
    Target {
        name: "socks5_handshake",
        check: streams::socks5_handshake,
        decoder: "client::streams::socks5::parse_greeting and parse_request",
    },
];

/// The check of the target called `name`.
pub fn check_of(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|t| t.name == name).map(|t| t.check)
}
