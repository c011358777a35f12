//! The client task's side of prekeys kept at the gateway: publishing its
//! own bundle and one-time prekeys, and fetching a correspondent's when
//! only its short address is known (docs/e2ee.md, "Prekeys kept at the
//! gateway").
//!
//! Publishing: at every new session with the gateway, and after each
//! rotation of the prekeys, the task signs its card with a higher serial
//! and uploads it; whenever the gateway reports fewer than
//! [`ONE_TIME_LOW_MARK`] one-time prekeys left, it makes enough to bring
//! the supply to [`ONE_TIME_TARGET`], saves the book (their secrets) and
//! only then uploads them.
//!
//! Fetching: a message to a short address the book cannot reach yet waits
//! here while the core asks the gateway; the answer is checked by the book
//! ([`SessionBook::learn_published`]) and the waiting messages then go out
//! as if the card had been given, or fail with why.

use std::time::Duration;

use client_core::sessions::{IdentityFingerprint, ShortAddress};
use client_core::{ClientError, FetchFailure};
use tokio::sync::oneshot;

use super::api::{Outgoing, ShellStats};
use super::clock::unix_now;
use super::driver::{Driver, Sender};
use super::link::{GatewayDialer, GatewayLink};
use crate::contacts::Recipient;

/// Below this many one-time prekeys left at the gateway, the client makes more.
pub const ONE_TIME_LOW_MARK: u32 = 25;
/// How many one-time prekeys the client keeps at its gateway.
pub const ONE_TIME_TARGET: u32 = 100;
/// Most messages waiting for a bundle, all short addresses together.
const MAX_WAITING: usize = 256;

/// A message waiting for its recipient's bundle.
pub(crate) struct WaitingSend {
    pub(crate) bytes: Vec<u8>,
    pub(crate) surbs: usize,
    pub(crate) lifetime: Option<Duration>,
    pub(crate) sender: Sender,
    pub(crate) respond: oneshot::Sender<Result<Outgoing, ClientError>>,
}

impl<C: GatewayDialer> Driver<C> {
    /// Whether a message to `to` must wait for a bundle from its gateway:
    /// a short address the book has neither a session nor a card for.
    pub(crate) fn needs_bundle(&self, to: &Recipient) -> Option<ShortAddress> {
        match to {
            Recipient::Short(short) => (!self.book.can_reach(short)).then_some(*short),
            Recipient::Address(_) => None,
        }
    }

    /// Keeps `send` until the bundle of `short` comes from its gateway
    /// (asked for now, unless a fetch is under way).
    pub(crate) fn wait_for_bundle(&mut self, short: ShortAddress, send: WaitingSend) {
        let waiting: usize = self.awaiting_bundle.values().map(Vec::len).sum();
        if waiting >= MAX_WAITING {
            let _ = send
                .respond
                .send(Err(ClientError::TooManyFetches(MAX_WAITING)));
            return;
        }
        // The request goes to that gateway: never outside the client's regions.
        if let Err(e) = self.core.routes().check_route_to(&short.gateway) {
            let _ = send
                .respond
                .send(Err(ClientError::OutsideRegions(e.to_string())));
            return;
        }
        if let Err(e) = self.core.fetch_bundle(short.gateway, short.identity.0) {
            let _ = send.respond.send(Err(e));
            return;
        }
        ShellStats::add(&self.stats.bundle_fetches, 1);
        self.awaiting_bundle.entry(short).or_default().push(send);
    }

    /// A gateway answered for `short`: checks the bundle, keeps it, and
    /// sends what waited for it (or fails it with why).
    pub(crate) fn take_bundle(
        &mut self,
        short: ShortAddress,
        published: &[u8],
        one_time: Option<&[u8]>,
    ) {
        let learned = self
            .book
            .learn_published(unix_now(), &short, published, one_time);
        let waiting = self.awaiting_bundle.remove(&short).unwrap_or_default();
        match learned {
            Ok(address) => {
                let _ = self.save_book();
                tracing::info!("bundle of {short} fetched from its gateway: {address}");
                let now = self.clock.now();
                for send in waiting {
                    let result = self.send(
                        now,
                        &Recipient::Address(address),
                        &send.bytes,
                        send.surbs,
                        send.lifetime,
                        send.sender,
                    );
                    let _ = send.respond.send(result);
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                ShellStats::add(&self.stats.bundles_refused, 1);
                for send in waiting {
                    let _ = send.respond.send(Err(ClientError::BundleRefused {
                        short: short.to_string(),
                        why: e.to_string(),
                    }));
                }
            }
        }
    }

    /// No answer came for `short`: what waited for it fails.
    pub(crate) fn bundle_unavailable(&mut self, short: ShortAddress, reason: FetchFailure) {
        ShellStats::add(&self.stats.bundles_unavailable, 1);
        let waiting = self.awaiting_bundle.remove(&short).unwrap_or_default();
        for send in waiting {
            let _ = send.respond.send(Err(match reason {
                FetchFailure::NoAnswer { attempts } => ClientError::BundleUnavailable {
                    short: short.to_string(),
                    gateway: short.gateway.to_string(),
                    attempts,
                },
                FetchFailure::Unreadable => ClientError::BundleRefused {
                    short: short.to_string(),
                    why: "its gateway's answer did not parse".into(),
                },
                FetchFailure::NoRoute => ClientError::NoRoute(short.gateway.to_base58()),
            }));
        }
    }

    /// The short address a fetch of `fingerprint` at `gateway` was for.
    pub(crate) fn fetched(gateway: protocol::NodeId, fingerprint: [u8; 20]) -> ShortAddress {
        ShortAddress {
            identity: IdentityFingerprint(fingerprint),
            gateway,
        }
    }

    /// Publishes the card when due, and refills the one-time prekeys the
    /// gateway says run low. Nothing is uploaded that the saved book does
    /// not hold.
    pub(crate) async fn tend_prekeys(&mut self) {
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let stock = link.take_prekey_stock();
        let refill = stock
            .filter(|s| s.one_time_left < ONE_TIME_LOW_MARK)
            .map(|s| ONE_TIME_TARGET.saturating_sub(s.one_time_left));
        let publish = self.publish_due || stock.is_some_and(|s| !s.published);
        if !publish && refill.is_none() {
            return;
        }
        let upload = self.book.prekey_upload(
            &mut self.rng,
            self.core.address(),
            publish,
            refill.unwrap_or(0) as usize,
        );
        if self.save_book().is_err() {
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let count = upload.one_time.len();
        match link
            .publish_prekeys(upload.fingerprint, upload.published, upload.one_time)
            .await
        {
            Ok(()) => {
                self.publish_due = false;
                if count > 0 {
                    tracing::debug!("{count} one-time prekeys uploaded to the gateway");
                    ShellStats::add(&self.stats.one_time_prekeys_uploaded, count as u64);
                }
            }
            Err(e) => self.lose_link(e.to_string()),
        }
    }
}
