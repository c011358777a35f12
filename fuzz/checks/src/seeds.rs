//! The seed corpora, made by the project's own code: real frames, packets,
//! link messages, handshakes, descriptors and topologies, built from the
//! fixed keys of [`crate::fixtures`], so that the same code makes the same
//! seeds.

use std::path::Path;
use std::time::Duration;

use client_core::sessions::SessionBook;
use client_core::{Envelope, EnvelopeKind};
use directory::{DirectoryConfig, Registry};
use mixnode_core::{Action, MixerRole};
use protocol::Epoch;
use protocol::fragment::{Fragment, FragmentId, MessageId, fragment_message};
use protocol::frame::{ForwardFrame, Frame, RecallFrame, SealedContent};
use protocol::link::auth::prove;
use protocol::link::{ClientMessage, CloseReason, GatewayMessage, LinkMessage};
use protocol::packet::SPHINX_PAYLOAD_SIZE;
use protocol::packet::{RouteHop, SURB_ID_SIZE, build_packet};
use protocol::prekeys::FINGERPRINT_SIZE;
use protocol::recall::RecallSecret;
use protocol::surb::{Surb, SurbId, build_surb};
use rand_chacha::ChaCha20Rng;
use topology::descriptor::{EpochKey, NodeDescriptor, Role, SignedDescriptor};
use topology::params::NetworkParams;

use crate::fixtures::{self, CLIENT_KEY, GATEWAY_NODE, MIXER_NODE};
use crate::input::push_record;
use crate::{authorities, client, documents, streams};

/// One seed: its target, its file name, its bytes.
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// Its file name in `fuzz/seeds/<target>/`.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

struct Seeds(Vec<Seed>);

impl Seeds {
    fn add(&mut self, target: &'static str, name: &str, bytes: Vec<u8>) {
        self.0.push(Seed {
            target,
            name: name.to_string(),
            bytes,
        });
    }
}

fn prefixed(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend_from_slice(rest);
    out
}

/// A SURB back to the fixture client through nodes 2, 3 and the gateway.
fn surb(rng: &mut ChaCha20Rng) -> Surb {
    let route = [
        fixtures::hop(2),
        fixtures::hop(3),
        fixtures::hop(GATEWAY_NODE),
    ];
    let client = fixtures::sphinx_key(CLIENT_KEY).public().to_bytes();
    let destination = protocol::ClientAddress {
        client_key: client,
        gateway: fixtures::gateway_id(),
    }
    .destination();
    build_surb(rng, &route, &[Duration::from_millis(5); 3], destination)
        .expect("SURB")
        .0
}

/// A Sphinx packet over `route` to `destination` (a client key or a node id).
fn packet(
    rng: &mut ChaCha20Rng,
    route: &[RouteHop],
    destination: [u8; 32],
    frame: &Frame,
) -> Vec<u8> {
    let delays = vec![Duration::from_millis(20); route.len()];
    let frame = frame.encode().expect("frame");
    let destination = protocol::keys::NodeId(destination).to_destination();
    build_packet(rng, route, &delays, destination, [0; SURB_ID_SIZE], &frame)
        .expect("packet")
        .bytes
}

fn message_fragments(rng: &mut ChaCha20Rng, len: usize) -> Vec<Fragment> {
    let envelope = Envelope {
        kind: EnvelopeKind::Message,
        reply_surbs: vec![surb(rng)],
        content: (0..len).map(|i| (i % 251) as u8).collect(),
    };
    fragment_message(MessageId::random(rng), &envelope.encode()).expect("fragments")
}

fn data(fragment: Fragment, lifetime: Option<u32>) -> SealedContent {
    SealedContent::Data { lifetime, fragment }
}

fn wire(seeds: &mut Seeds, rng: &mut ChaCha20Rng) {
    let client = fixtures::sphinx_key(CLIENT_KEY);
    let fragments = message_fragments(rng, 2_000);
    let contents = [
        data(fragments.first().cloned().expect("a fragment"), Some(3_600)),
        data(fragments.last().cloned().expect("a fragment"), None),
        SealedContent::LoopCover { id: [7; 16] },
        SealedContent::DropCover,
    ];
    for (i, content) in contents.iter().enumerate() {
        let plaintext = content.encode().expect("content");
        seeds.add(
            "sealed_content",
            &format!("content-{i}"),
            plaintext.to_vec(),
        );
        seeds.add(
            "sealed_body",
            &format!("plaintext-{i}"),
            prefixed(1 + i as u8, &plaintext),
        );
        let frame = ForwardFrame::seal(content, &client.public(), surb(rng).0, rng).expect("seal");
        seeds.add(
            "sealed_body",
            &format!("sealed-{i}"),
            prefixed(0, &frame.delivery_payload()),
        );
        if i.is_multiple_of(2) {
            let bytes = Frame::Forward(frame).encode().expect("frame");
            seeds.add("frame", &format!("forward-{i}"), bytes);
        }
    }
    let reply = Frame::Reply {
        surb_ack: Some(surb(rng).0),
        lifetime: Some(60),
        fragment: fragments.first().cloned().expect("a fragment"),
    };
    seeds.add("frame", "reply", reply.encode().expect("frame"));
    let bare = Frame::Reply {
        surb_ack: None,
        lifetime: None,
        fragment: fragments.last().cloned().expect("a fragment"),
    };
    seeds.add("frame", "reply-bare", bare.encode().expect("frame"));
    seeds.add("frame", "ack", Frame::Ack.encode().expect("frame"));
    seeds.add(
        "frame",
        "recall",
        recall_frame(rng, &RecallSecret([3; 32]), 2),
    );
    seeds.add(
        "frame",
        "node-loop",
        Frame::NodeLoop.encode().expect("frame"),
    );

    let message = Envelope {
        kind: EnvelopeKind::Message,
        reply_surbs: vec![surb(rng), surb(rng)],
        content: b"hello".to_vec(),
    };
    seeds.add("envelope", "message", prefixed(2, &message.encode()));
    let answer = Envelope {
        kind: EnvelopeKind::Reply {
            in_reply_to: MessageId([3; 16]),
        },
        reply_surbs: Vec::new(),
        content: b"hi".to_vec(),
    };
    seeds.add("envelope", "reply", prefixed(0, &answer.encode()));

    let gateway = fixtures::gateway_id();
    let ephemeral = fixtures::sphinx_key(20).public().to_bytes();
    let mut client_stream = Vec::new();
    ClientMessage::Authenticate {
        client_key: client.public().to_bytes(),
        proof: prove(client.secret(), &gateway, &ephemeral),
    }
    .encode_into(&mut client_stream);
    let first_hop = fixtures::hop(MIXER_NODE);
    let route = [
        first_hop,
        fixtures::hop(2),
        fixtures::hop(3),
        fixtures::hop(GATEWAY_NODE),
    ];
    let packet_bytes = packet(rng, &route, client.public().to_bytes(), &Frame::Ack);
    ClientMessage::SendPacket {
        first_hop: first_hop.id,
        packet: packet_bytes
            .into_boxed_slice()
            .try_into()
            .expect("one size"),
    }
    .encode_into(&mut client_stream);
    ClientMessage::AckDelivery { mailbox_id: 3 }.encode_into(&mut client_stream);
    ClientMessage::PublishBundle {
        fingerprint: [9; FINGERPRINT_SIZE],
        published: vec![4; 40],
    }
    .encode_into(&mut client_stream);
    ClientMessage::AddOneTimePrekeys {
        keys: vec![(1, vec![5; 30]), (2, vec![6; 30])],
    }
    .encode_into(&mut client_stream);
    seeds.add(
        "link_client_messages",
        "session",
        prefixed(200, &client_stream),
    );
    seeds.add(
        "link_client_messages",
        "session-bytewise",
        prefixed(1, &client_stream),
    );

    let mut gateway_stream = Vec::new();
    GatewayMessage::Challenge { gateway, ephemeral }.encode_into(&mut gateway_stream);
    GatewayMessage::Welcome.encode_into(&mut gateway_stream);
    GatewayMessage::Deliver {
        mailbox_id: 1,
        surb_id: SurbId([0; SURB_ID_SIZE]),
        payload: vec![5; 100],
    }
    .encode_into(&mut gateway_stream);
    GatewayMessage::PrekeyStock {
        published: true,
        one_time_left: 2,
    }
    .encode_into(&mut gateway_stream);
    GatewayMessage::Close {
        reason: CloseReason::Replaced,
    }
    .encode_into(&mut gateway_stream);
    seeds.add(
        "link_gateway_messages",
        "session",
        prefixed(255, &gateway_stream),
    );
    seeds.add(
        "link_gateway_messages",
        "session-bytewise",
        prefixed(3, &gateway_stream),
    );
}

fn reassembly(seeds: &mut Seeds, rng: &mut ChaCha20Rng) {
    let fragments = message_fragments(rng, 3_500);
    let mut steps = Vec::new();
    for i in [2usize, 0, 2, 1] {
        steps.push(0);
        let mut bytes = Vec::new();
        fragments
            .get(i)
            .expect("three fragments")
            .encode_into(&mut bytes);
        push_record(&mut steps, &bytes);
    }
    steps.extend_from_slice(&[1, 20]);
    let single = Fragment {
        id: FragmentId {
            message: MessageId([1; 16]),
            index: 0,
        },
        count: 1,
        data: b"short".to_vec(),
    };
    let mut bytes = Vec::new();
    single.encode_into(&mut bytes);
    steps.push(0);
    push_record(&mut steps, &bytes);
    seeds.add("fragment_reassembly", "shuffled", steps);

    // A partial message left to expire.
    let mut steps = Vec::new();
    let mut bytes = Vec::new();
    fragments
        .first()
        .expect("a fragment")
        .encode_into(&mut bytes);
    steps.push(0);
    push_record(&mut steps, &bytes);
    steps.extend_from_slice(&[1, 5, 1, 5]);
    seeds.add("fragment_reassembly", "expired", steps);
}

/// Real packets for the mixer's node: one to forward, one that ends there
/// (a delivery for the exit role), and its own loop coming home.
fn mixers(seeds: &mut Seeds, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let client = fixtures::sphinx_key(CLIENT_KEY).public().to_bytes();
    let me = fixtures::hop(MIXER_NODE);
    let route = [
        me,
        fixtures::hop(2),
        fixtures::hop(3),
        fixtures::hop(GATEWAY_NODE),
    ];
    let forward = packet(rng, &route, client, &Frame::NodeLoop);
    let content = data(message_fragments(rng, 10).remove(0), Some(600));
    let sealed = ForwardFrame::seal(
        &content,
        &fixtures::sphinx_key(CLIENT_KEY).public(),
        surb(rng).0,
        rng,
    )
    .expect("seal");
    let last = packet(rng, &[me], client, &Frame::Forward(sealed));
    let own = packet(rng, &[me], *me.id.as_bytes(), &Frame::NodeLoop);
    for target in ["mixer_mix", "mixer_exit"] {
        seeds.add(target, "forward", forward.clone());
        seeds.add(target, "final", last.clone());
        seeds.add(target, "own-loop", own.clone());
    }
    let exit = fixtures::mixer(MixerRole::Exit);
    match exit.handle_packet(protocol::time::Timestamp::ZERO, &last) {
        Ok(Action::Deliver(d)) => d.payload,
        other => panic!("the exit mixer delivers its final hop: {other:?}"),
    }
}

fn gateways(seeds: &mut Seeds, rng: &mut ChaCha20Rng, payload: &[u8]) {
    let client = fixtures::sphinx_key(CLIENT_KEY);
    let first_hop = fixtures::hop(MIXER_NODE);
    let route = [
        first_hop,
        fixtures::hop(2),
        fixtures::hop(3),
        fixtures::hop(GATEWAY_NODE),
    ];
    let mut send = Vec::new();
    ClientMessage::SendPacket {
        first_hop: first_hop.id,
        packet: packet(rng, &route, client.public().to_bytes(), &Frame::Ack)
            .into_boxed_slice()
            .try_into()
            .expect("one size"),
    }
    .encode_into(&mut send);
    let mut acks = Vec::new();
    for id in 1..=3 {
        ClientMessage::AckDelivery { mailbox_id: id }.encode_into(&mut acks);
    }
    let mut steps = vec![3];
    for record in [&send, &acks, &send] {
        steps.push(10);
        push_record(&mut steps, record);
    }
    seeds.add("gateway_session", "authenticated", steps);
    let mut steps = vec![2];
    let wrong = ClientMessage::Authenticate {
        client_key: client.public().to_bytes(),
        proof: [0; 32],
    }
    .encode();
    steps.push(0);
    push_record(&mut steps, &wrong);
    seeds.add("gateway_session", "wrong-proof", steps);
    let mut steps = vec![0];
    steps.push(0);
    push_record(&mut steps, &send);
    seeds.add("gateway_session", "unauthenticated-send", steps);

    // Final hops: mail for the client, drop cover, a reply under a SURB id.
    let mut steps = vec![2];
    for (destination, surb) in [(0u8, false), (1, false), (0, true)] {
        steps.push(destination);
        steps.push(u8::from(surb));
        if surb {
            steps.extend_from_slice(&[9; SURB_ID_SIZE]);
        }
        push_record(&mut steps, payload);
    }
    seeds.add("gateway_final_hop", "mail-cover-reply", steps);

    // A tagged fragment for the client, its recall, and a recall of no fragment.
    let secret = RecallSecret([5; 32]);
    let mut tagged = ForwardFrame::seal(
        &data(message_fragments(rng, 10).remove(0), None),
        &client.public(),
        surb(rng).0,
        rng,
    )
    .expect("seal");
    tagged.recall_tag = secret.tag(0);
    let tagged = Frame::Forward(tagged).encode().expect("frame");
    let mut steps = vec![2];
    for frame in [
        tagged,
        recall_frame(rng, &secret, 1),
        recall_frame(rng, &secret, 0),
    ] {
        steps.extend_from_slice(&[0, 0]);
        let payload = protocol::sphinx::encode_payload(&frame, SPHINX_PAYLOAD_SIZE)
            .expect("a frame fits a payload");
        push_record(&mut steps, &payload);
    }
    seeds.add("gateway_final_hop", "mail-then-recall", steps);
}

/// A recall frame for the fixture client, of `fragments` under `secret`.
fn recall_frame(rng: &mut ChaCha20Rng, secret: &RecallSecret, fragments: u16) -> Vec<u8> {
    let notice = ForwardFrame::seal(
        &SealedContent::DropCover,
        &fixtures::sphinx_key(CLIENT_KEY).public(),
        surb(rng).0,
        rng,
    )
    .expect("seal");
    Frame::Recall(RecallFrame {
        secret: secret.clone(),
        fragments,
        surb_ack: notice.surb_ack,
        sealed: notice.sealed,
    })
    .encode()
    .expect("frame")
}

fn clients(seeds: &mut Seeds, rng: &mut ChaCha20Rng) {
    let mut steps = Vec::new();
    let fragments = message_fragments(rng, 2_500);
    for fragment in fragments.iter().rev().chain(fragments.first()) {
        steps.push(0);
        push_record(
            &mut steps,
            &data(fragment.clone(), Some(60)).encode().expect("content"),
        );
    }
    for content in [
        SealedContent::LoopCover { id: [1; 16] },
        SealedContent::DropCover,
    ] {
        steps.push(0);
        push_record(&mut steps, &content.encode().expect("content"));
    }
    steps.extend_from_slice(&[3, 200]);
    seeds.add("client_delivery", "message-and-cover", steps);

    let conversation = client::conversation();
    for (i, message) in conversation.messages.iter().enumerate() {
        seeds.add(
            "session_book_open",
            &format!("message-{i}"),
            message.clone(),
        );
    }
    let sessions = client::sessions();
    for (i, message) in sessions.messages.iter().enumerate() {
        seeds.add("e2ee_session", &format!("message-{i}"), message.clone());
    }
    seeds.add("prekey_bundle", "bundle", sessions.bundle.encode());
    let book = SessionBook::generate(rng);
    let card = book.card(client::alice_address());
    seeds.add("address_card", "card", card.to_string().into_bytes());
    // Version 2: with a signed expiry.
    let rotating = SessionBook::generate_at(
        &mut crate::fixtures::rng(12),
        client::NOW,
        &client_core::sessions::RotationSchedule::DEFAULT,
    );
    let expiring = rotating.card(client::alice_address());
    seeds.add("prekey_bundle", "bundle-v2", expiring.bundle.encode());
    seeds.add("address_card", "card-v2", expiring.to_string().into_bytes());
    seeds.add(
        "address_card",
        "address",
        client::alice_address().to_string().into_bytes(),
    );
}

/// The descriptor of fixture node `n`: mixes, and a gateway for node 4.
fn descriptor(n: u8) -> NodeDescriptor {
    NodeDescriptor {
        id: fixtures::identity(n).node_id(),
        role: if n == GATEWAY_NODE {
            Role::Gateway
        } else {
            Role::Mix
        },
        address: ([127, 0, 0, n], 1789).into(),
        client_address: (n == GATEWAY_NODE).then(|| ([127, 0, 0, n], 1790).into()),
        sphinx_keys: vec![
            EpochKey {
                epoch: Epoch(0),
                key: fixtures::sphinx_key(n).public(),
            },
            EpochKey {
                epoch: Epoch(1),
                key: fixtures::sphinx_key(n + 100).public(),
            },
        ],
        region: n.is_multiple_of(2).then(|| "eu".to_string()),
        metrics_url: (n == 1).then(|| "http://127.0.0.1:9100/metrics".to_string()),
        issued_at: 1_700_000_000 + u64::from(n),
    }
}

fn documents(seeds: &mut Seeds) {
    let signed: Vec<SignedDescriptor> = (1..=documents::SIGNERS)
        .map(|n| descriptor(n).sign(&fixtures::identity(n)).expect("sign"))
        .collect();
    if let Some(first) = signed.first() {
        seeds.add(
            "node_descriptor",
            "envelope",
            prefixed(0, first.to_json().as_bytes()),
        );
    }
    // Mode 1 signs with fixture node 2.
    let body = serde_json::to_string(&descriptor(2)).expect("json");
    seeds.add("node_descriptor", "body", prefixed(1, body.as_bytes()));

    let mut steps = Vec::new();
    for (i, s) in signed.iter().enumerate() {
        steps.push(u8::try_from(i % 2).unwrap_or(0));
        steps.push(0x80);
        push_record(&mut steps, s.to_json().as_bytes());
    }
    // A body signed in the check (by node 3), then an older one.
    steps.extend_from_slice(&[1, 2]);
    push_record(
        &mut steps,
        serde_json::to_string(&descriptor(3))
            .expect("json")
            .as_bytes(),
    );
    seeds.add("directory_post", "eight-nodes", steps);

    let mut registry = Registry::new(16, 2);
    for s in signed.iter().take(7) {
        registry.accept(s.clone(), Epoch(0)).expect("accepted");
    }
    let topology = registry.build(Epoch(0), 1, &NetworkParams::default(), None);
    let signed_topology = topology
        .sign(&fixtures::identity(documents::DIRECTORY_NODE))
        .expect("sign");
    seeds.add(
        "topology_document",
        "envelope",
        prefixed(0, signed_topology.to_json().as_bytes()),
    );
    let body = serde_json::to_string(&topology).expect("json");
    seeds.add("topology_document", "body", prefixed(1, body.as_bytes()));

    let dir = Path::new("/var/lib/mixnode");
    let common = nodeshell::config::Template::example(dir);
    let mix = format!(
        "{}\n{}\n{}",
        common.node("the replay journal and the topology cache"),
        common.directory_and_metrics(),
        common.processing("mixing")
    );
    seeds.add("node_config", "mixnode", mix.into_bytes());
    seeds.add(
        "directory_config",
        "example",
        DirectoryConfig::example(1_700_000_000).into_bytes(),
    );
    seeds.add("audit_log", "run", audit_log());
}

/// A node's audit log of one run: key created, start, config, a rotation, stop.
fn audit_log() -> Vec<u8> {
    let fingerprint = audit::KeyFingerprint::of_public_key(&[7; 32]);
    let events = [
        audit::AuditEvent::KeyCreated {
            key: audit::KeyKind::Identity,
            fingerprint: fingerprint.clone(),
        },
        audit::AuditEvent::Start {
            binary: "mixnode".into(),
            version: "0.1.0".into(),
            identity: fingerprint.clone(),
        },
        audit::AuditEvent::config_loaded(Path::new("/var/lib/mixnode/config.toml"), b"[node]"),
        audit::AuditEvent::KeyRotated {
            key: audit::KeyKind::Sphinx,
            epoch: 1,
            fingerprint,
        },
        audit::AuditEvent::Stop,
    ];
    let mut log = Vec::new();
    let mut prev = audit::chain::GENESIS_PREV;
    for (seq, event) in (0u64..).zip(&events) {
        let at = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq);
        let line = audit::chain::encode(seq, at, event, &prev).expect("encode");
        prev = audit::chain::line_hash(line.as_bytes());
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
    }
    log
}

/// What the fixture gateway's exit mixer hands its core for a real packet
/// of mail to the fixture client: the payload of a final-hop delivery.
pub fn mail_payload(rng: &mut ChaCha20Rng) -> Vec<u8> {
    let client = fixtures::sphinx_key(CLIENT_KEY);
    let content = data(message_fragments(rng, 10).remove(0), None);
    let sealed = ForwardFrame::seal(&content, &client.public(), surb(rng).0, rng).expect("seal");
    let me = fixtures::hop(MIXER_NODE);
    let last = packet(
        rng,
        &[me],
        client.public().to_bytes(),
        &Frame::Forward(sealed),
    );
    match fixtures::mixer(MixerRole::Exit).handle_packet(protocol::time::Timestamp::ZERO, &last) {
        Ok(Action::Deliver(d)) => d.payload,
        other => panic!("the exit mixer delivers its final hop: {other:?}"),
    }
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let mut seeds = Seeds(Vec::new());
    let mut rng = fixtures::rng(2024);
    wire(&mut seeds, &mut rng);
    reassembly(&mut seeds, &mut rng);
    let payload = mixers(&mut seeds, &mut rng);
    gateways(&mut seeds, &mut rng, &payload);
    clients(&mut seeds, &mut rng);
    documents(&mut seeds);
    configs(&mut seeds);
    votes(&mut seeds);
    stream_seeds(&mut seeds);
    seeds.0
}

/// The gateway's config as `gateway init` writes it, and the client's
/// settings as `mixnet-client init` writes them (one directory, and
/// several authorities with a passphrase).
fn configs(seeds: &mut Seeds) {
    let dir = Path::new("/var/lib/gateway");
    let node = nodeshell::cli::InitArgs {
        dir: dir.to_path_buf(),
        listen: ([127, 0, 0, 1], 1789).into(),
        metrics: ([127, 0, 0, 1], 9100).into(),
        directory: "http://127.0.0.1:8080".into(),
        directory_key: fixtures::identity(documents::DIRECTORY_NODE)
            .node_id()
            .to_base58(),
        authorities: Vec::new(),
        authority_threshold: None,
    };
    let args = gateway::config::GatewayInit::new(node, ([127, 0, 0, 1], 1790).into());
    seeds.add(
        "gateway_config",
        "template",
        gateway::config::template(&args, dir).into_bytes(),
    );

    let folder = documents::client_folder();
    let single = ::client::shell::StoredSettings {
        directory_url: "http://127.0.0.1:8080".into(),
        directory_key: fixtures::identity(documents::DIRECTORY_NODE)
            .node_id()
            .to_base58(),
        authorities: Vec::new(),
        authority_threshold: None,
        gateway: fixtures::gateway_id().to_base58(),
        state_sealing: ::client::shell::StateSealing::KeyFile,
        route_regions: Vec::new(),
        mailbox_region: None,
        prekey_rotation_secs: None,
        prekey_grace_secs: None,
    };
    let several = ::client::shell::StoredSettings {
        authorities: authorities::authority_set().authorities,
        authority_threshold: Some(2),
        state_sealing: ::client::shell::StateSealing::Passphrase,
        route_regions: Vec::new(),
        mailbox_region: None,
        ..single.clone()
    };
    for (name, settings) in [("single", single), ("authorities", several)] {
        let text = settings.to_toml(&folder).expect("settings");
        seeds.add("client_settings", name, text.into_bytes());
    }
}

/// A round at the first fixture authority: the two others' votes (one as
/// posted, one as a body signed in the check), the close, then their
/// signatures (one made in the check over the consensus, one as posted).
fn votes(seeds: &mut Seeds) {
    use authorities::op;
    let set = authorities::authority_set();
    let keys: Vec<_> = authorities::AUTHORITIES
        .iter()
        .map(|n| fixtures::identity(*n))
        .collect();
    let signed: Vec<_> = authorities::AUTHORITIES
        .iter()
        .zip(&keys)
        .map(|(n, key)| authorities::vote_of(*n).sign(key).expect("signs"))
        .collect();
    // The third authority's own round, to get its signature over the consensus.
    let (Some(third_key), Some(third)) = (keys.get(2), authorities::AUTHORITIES.get(2)) else {
        return;
    };
    let mut round =
        topology::VotingRound::open(set, authorities::vote_of(*third), third_key).expect("opens");
    for vote in &signed {
        round.receive_vote(vote);
    }
    let third_signature = round.close(third_key).expect("a consensus");

    let mut steps = Vec::new();
    // Authority 6's vote as posted.
    steps.extend_from_slice(&[op::VOTE_ENVELOPE, 0, 0]);
    push_record(
        &mut steps,
        signed.get(1).expect("three votes").to_json().as_bytes(),
    );
    // Authority 7's vote body, signed in the check by 4 + 3.
    steps.extend_from_slice(&[op::VOTE_BODY, 1, 3]);
    let body = serde_json::to_string(&authorities::vote_of(*third)).expect("json");
    push_record(&mut steps, body.as_bytes());
    steps.push(op::CLOSE);
    // Authority 6 signs the consensus in the check; 7's signature as posted.
    steps.extend_from_slice(&[op::SIGN, 2, 0]);
    push_record(&mut steps, &[]);
    steps.push(op::SIGNATURE);
    push_record(&mut steps, third_signature.to_json().as_bytes());
    seeds.add("authority_votes", "round", steps);

    // A vote for another round, then a signature before the close (held).
    let mut steps = Vec::new();
    let mut late = authorities::vote_of(6);
    late.round.serial += 1;
    steps.extend_from_slice(&[op::VOTE_BODY, 1, 2]);
    push_record(
        &mut steps,
        serde_json::to_string(&late).expect("json").as_bytes(),
    );
    steps.push(op::SIGNATURE);
    push_record(&mut steps, third_signature.to_json().as_bytes());
    seeds.add("authority_votes", "early", steps);
}

/// Stream messages and segments as a real opener and acceptor make them,
/// and SOCKS5 handshakes as clients send them.
fn stream_seeds(seeds: &mut Seeds) {
    use stream_core::{SegmentOutcome, Stream, StreamMessage, SurbReport, Target};
    use streams::op;
    let now = protocol::Timestamp::from_millis(1_000);
    let config = streams::stream_config();
    let mut opener = Stream::open(
        streams::STREAM,
        streams::stream_target(),
        config.clone(),
        now,
    );
    let syn = opener.poll_segment(now, 100).expect("a SYN");
    let mut acceptor = Stream::accept_syn(&syn, config.clone(), now).expect("accepted");
    acceptor.accept();
    let syn_ack = acceptor.poll_segment(now, 100).expect("a SYN-ACK");
    assert_eq!(
        opener.handle_segment(now, &syn_ack),
        SegmentOutcome::Accepted
    );
    opener.write(&[7; 150]).expect("writes");
    let data = opener.poll_segment(now, 100).expect("data");
    opener.close();
    let rest = opener.poll_segment(now, 100).expect("the rest and the FIN");
    let mut reset = Stream::open(streams::STREAM, streams::stream_target(), config, now);
    reset.reset(stream_core::ResetReason::ConnectionRefused);
    let rst = reset.poll_segment(now, 100).expect("a RST");
    let mut v4 = syn.clone();
    v4.target = Some(Target::Ip(([192, 0, 2, 1], 443).into()));
    let mut v6 = syn.clone();
    v6.target = Some(Target::Ip((std::net::Ipv6Addr::LOCALHOST, 8080).into()));
    let messages = [
        ("syn", None, vec![syn.clone()]),
        ("syn-v4", None, vec![v4]),
        ("syn-v6", None, vec![v6]),
        (
            "syn-ack",
            Some(SurbReport {
                received: 19,
                left: 18,
            }),
            vec![syn_ack.clone()],
        ),
        ("data-fin", None, vec![data, rest]),
        ("rst", None, vec![rst]),
    ];
    for (name, surbs, segments) in messages {
        let bytes = StreamMessage { surbs, segments }.encode();
        seeds.add("stream_message", name, bytes);
    }

    // The opener's side: its SYN goes, the SYN-ACK and data come, in order
    // and not, it reads, writes, closes, the peer's FIN comes, time passes.
    let model = |flags: u8, seq: u16, ack: u16, window: u16, len: u8| {
        let mut out = vec![op::SEGMENT, flags, 0];
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&ack.to_be_bytes());
        out.extend_from_slice(&window.to_be_bytes());
        out.push(len);
        out
    };
    use stream_core::frame::{FLAG_ACK, FLAG_FIN, FLAG_SYN};
    let mut steps = vec![0, op::SEND, 100];
    steps.extend(model(FLAG_SYN | FLAG_ACK, 0, 1, 3_000, 0));
    steps.extend_from_slice(&[op::WRITE, 30, op::SEND, 100]);
    steps.extend(model(FLAG_ACK, 61, 1, 3_000, 60));
    steps.extend(model(FLAG_ACK, 1, 200, 3_000, 60));
    steps.extend(model(FLAG_ACK, 1, 241, 3_000, 80));
    steps.extend_from_slice(&[op::READ, 10, op::CLOSE, op::SEND, 100]);
    steps.extend(model(FLAG_ACK | FLAG_FIN, 121, 242, 3_000, 0));
    steps.extend_from_slice(&[op::WAIT, 20, op::SEND, 100, op::READ, 20]);
    seeds.add("stream_segments", "opener", steps);

    // The acceptor's side: it accepts, a raw message with data comes, it
    // answers, the peer goes silent, retransmissions, then a reset.
    let mut steps = vec![1, op::ACCEPT, op::SEND, 50, op::WRITE, 40, op::SEND, 90];
    let mut first = syn_ack;
    first.stream = streams::STREAM;
    first.flags = FLAG_ACK;
    first.seq = 1;
    first.ack = 1;
    first.data = vec![1; 20];
    let raw = StreamMessage {
        surbs: None,
        segments: vec![first],
    }
    .encode();
    steps.push(op::RAW);
    push_record(&mut steps, &raw);
    steps.extend_from_slice(&[op::READ, 4, op::WAIT, 60, op::SEND, 100, op::WAIT, 200]);
    steps.extend_from_slice(&[op::SEND, 100, op::RESET, 5, op::SEND, 100]);
    steps.extend(model(FLAG_ACK, 1, 1, 3_000, 10));
    seeds.add("stream_segments", "acceptor", steps);

    // SOCKS5: a name, an IPv4 and an IPv6 address with data after them,
    // cut in chunks of 1, 3 and 64 bytes; a refused command.
    let greeting = [5u8, 2, 2, 0];
    let mut name = vec![5, 1, 0, 3, 11];
    name.extend_from_slice(b"example.org");
    name.extend_from_slice(&443u16.to_be_bytes());
    let v4 = [5u8, 1, 0, 1, 192, 0, 2, 1, 0, 80];
    let mut v6 = vec![5, 1, 0, 4];
    v6.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    v6.extend_from_slice(&8080u16.to_be_bytes());
    let bind = [5u8, 2, 0, 1, 127, 0, 0, 1, 0, 80];
    for (name, chunk, request) in [
        ("name", 1u8, &name[..]),
        ("ipv4", 3, &v4[..]),
        ("ipv6", 64, &v6[..]),
        ("bind", 5, &bind[..]),
    ] {
        let mut bytes = vec![chunk];
        bytes.extend_from_slice(&greeting);
        bytes.extend_from_slice(request);
        bytes.extend_from_slice(b"GET / HTTP/1.0\r\n\r\n");
        seeds.add("socks5_handshake", name, bytes);
    }
}
