//! The prekey service: uploads from the gateway's own clients, on their
//! authenticated link, and bundle requests from anyone, through the mixnet.
//!
//! A request is a forward packet whose final hop is this gateway and whose
//! destination is [`PREKEY_SERVICE_DESTINATION`](protocol::address::PREKEY_SERVICE_DESTINATION); its frame
//! ([`BundleRequestFrame`]) names a fingerprint and carries the asker's
//! SURBs. The answer ([`BundleAnswer`]: the bundle and one one-time prekey,
//! which leaves the store, committed, before the answer is built) is cut
//! into reply fragments, one per SURB, and sent back the way SURB-acks go.
//! The gateway learns that someone asked for that fingerprint, never who:
//! the SURBs start at the asker's gateway. A request it cannot answer is
//! dropped and counted, with no answer (the asker times out).

use protocol::format::PacketFormat;
use protocol::fragment::{MessageId, fragment_message};
use protocol::frame::{BundleRequestFrame, FRAGMENT_CAPACITY, Frame};
use protocol::link::{GatewayMessage, LinkMessage};
use protocol::packet::Delivery;
use protocol::prekeys::BundleAnswer;
use sha2::Digest;

use super::{GatewayAction, GatewayCore, SessionId};
use crate::mailbox::{ClientKey, MailboxStore};
use crate::prekeys::{
    Fingerprint, PrekeyTake, PublishOutcome, one_time_size_ok, published_size_ok,
};
use crate::stats::{PrekeyRequestOutcome, PrekeyUploadKind, PrekeyUploadOutcome};

impl<S: MailboxStore, F: PacketFormat> GatewayCore<S, F> {
    /// `client` publishes its bundle under `fingerprint` (counted by outcome).
    pub(super) fn publish_bundle(
        &mut self,
        client: &ClientKey,
        fingerprint: &Fingerprint,
        published: &[u8],
    ) -> PrekeyUploadOutcome {
        let outcome = if !published_size_ok(published) {
            PrekeyUploadOutcome::BadSize
        } else {
            match self.prekeys.publish(client, fingerprint, published) {
                Ok(PublishOutcome::Published) => PrekeyUploadOutcome::Stored,
                Ok(PublishOutcome::FingerprintTaken) => PrekeyUploadOutcome::FingerprintTaken,
                Err(_) => PrekeyUploadOutcome::StoreFailed,
            }
        };
        self.stats
            .prekey_uploads(PrekeyUploadKind::Published, outcome, 1);
        self.update_prekey_gauge();
        outcome
    }

    /// `client` uploads one-time prekeys: those of a size the gateway keeps
    /// go to the store in one commit; each key is counted by outcome.
    pub(super) fn add_one_time_prekeys(&mut self, client: &ClientKey, keys: &[(u32, Vec<u8>)]) {
        let count = |outcome, n: usize| {
            self.stats
                .prekey_uploads(PrekeyUploadKind::OneTime, outcome, n as u64);
        };
        let (good, bad): (Vec<_>, Vec<_>) = keys.iter().partition(|(_, key)| one_time_size_ok(key));
        count(PrekeyUploadOutcome::BadSize, bad.len());
        if good.is_empty() {
            return;
        }
        let good: Vec<(u32, Vec<u8>)> = good.into_iter().cloned().collect();
        match self.prekeys.add_one_time(client, &good) {
            Ok(added) => {
                count(PrekeyUploadOutcome::Stored, added.stored as usize);
                count(PrekeyUploadOutcome::Duplicate, added.duplicate as usize);
                count(PrekeyUploadOutcome::Full, added.full as usize);
            }
            Err(_) => count(PrekeyUploadOutcome::StoreFailed, good.len()),
        }
    }

    /// Tells `client`'s session what is kept of its prekeys (nothing is sent
    /// if the store cannot say).
    pub(super) fn send_prekey_stock(
        &self,
        session: SessionId,
        client: &ClientKey,
        actions: &mut Vec<GatewayAction>,
    ) {
        if let Ok((published, one_time_left)) = self.prekeys.stock(client) {
            actions.push(GatewayAction::Send {
                session,
                bytes: GatewayMessage::PrekeyStock {
                    published,
                    one_time_left,
                }
                .encode(),
            });
        }
    }

    /// Deletes `client`'s prekeys (it is no longer served here).
    pub(super) fn forget_prekeys(&mut self, client: &ClientKey) {
        let _ = self.prekeys.remove_client(client);
        self.update_prekey_gauge();
    }

    pub(super) fn update_prekey_gauge(&self) {
        if let Ok(n) = self.prekeys.published_count() {
            self.stats.set_published_bundles(n);
        }
    }

    /// A final-hop packet to the prekey service's address: answers it
    /// through its SURBs (into `actions`) or drops it; counted either way.
    pub(super) fn bundle_request(
        &mut self,
        delivery: Delivery,
        actions: &mut Vec<GatewayAction>,
    ) -> PrekeyRequestOutcome {
        let outcome = self.answer(delivery, actions);
        self.stats.prekey_request(outcome);
        outcome
    }

    fn answer(
        &mut self,
        delivery: Delivery,
        actions: &mut Vec<GatewayAction>,
    ) -> PrekeyRequestOutcome {
        if !delivery.surb_id.is_forward() {
            return PrekeyRequestOutcome::Malformed;
        }
        let request = match self
            .format
            .open_forward_payload(&delivery.payload)
            .and_then(|f| Frame::decode(&f))
        {
            Ok(Frame::BundleRequest(request)) => request,
            _ => return PrekeyRequestOutcome::Malformed,
        };
        let room = request.surbs.len().saturating_mul(FRAGMENT_CAPACITY);
        let answer = match self.prekeys.take(&request.fingerprint, room) {
            Ok(PrekeyTake::Answer(answer)) => answer,
            Ok(PrekeyTake::Unknown) => return PrekeyRequestOutcome::Unknown,
            Ok(PrekeyTake::DoesNotFit) => return PrekeyRequestOutcome::TooFewSurbs,
            Err(_) => return PrekeyRequestOutcome::StoreFailed,
        };
        let Some(packets) = self.answer_packets(&request, &answer) else {
            return PrekeyRequestOutcome::Malformed;
        };
        actions.extend(packets);
        if answer.one_time.is_some() {
            PrekeyRequestOutcome::Served
        } else {
            PrekeyRequestOutcome::ServedWithoutOneTime
        }
    }

    /// The answer cut into reply fragments, each sent through the next SURB;
    /// `None` if it needs more SURBs than given or one cannot be used.
    fn answer_packets(
        &self,
        request: &BundleRequestFrame,
        answer: &BundleAnswer,
    ) -> Option<Vec<GatewayAction>> {
        let fragments = fragment_message(answer_id(request), &answer.encode()).ok()?;
        if fragments.len() > request.surbs.len() {
            return None;
        }
        fragments
            .into_iter()
            .zip(&request.surbs)
            .map(|(fragment, surb)| {
                let frame = Frame::Reply {
                    surb_ack: None,
                    lifetime: None,
                    fragment,
                };
                frame
                    .encode()
                    .and_then(|frame| self.format.use_surb(surb, &frame))
                    .ok()
                    .map(GatewayAction::Forward)
            })
            .collect()
    }
}

/// The answer's message id: a hash of the request's first SURB, which its
/// asker drew at random and which serves once, so the id is as fresh as a
/// random one and tells nothing more (the core holds no RNG of its own).
fn answer_id(request: &BundleRequestFrame) -> MessageId {
    let mut hash = sha2::Sha256::new();
    hash.update(b"mixnet-gateway/v1 bundle answer id\0");
    if let Some(surb) = request.surbs.first() {
        hash.update(&surb.0);
    }
    let digest: [u8; 32] = hash.finalize().into();
    MessageId(digest.first_chunk::<16>().copied().unwrap_or_default())
}
