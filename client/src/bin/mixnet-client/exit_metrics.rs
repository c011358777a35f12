//! The exit's `/metrics` (`mixnet-client exit --metrics ADDR`): what an
//! operator watches (streams asked for, refused by reason, open, bytes
//! carried, SURB shortages), in the Prometheus text format of the nodes'
//! endpoints. Only totals: no target, no opener, no stream, so a scrape
//! tells nobody who connected where.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use client::streams::{ExitStats, StreamShellStats};
use nodeshell::metrics::{Observe, catch_up, counter, drop_family, gauge, to_i64};
use prometheus_client::registry::Registry;

/// The exit's registry, and what each scrape copies into it.
pub fn exit_registry(exit: Arc<ExitStats>, streams: Arc<StreamShellStats>) -> (Registry, Observe) {
    let mut r = Registry::default();
    let requests = counter(&mut r, "exit_stream_requests", "Streams openers asked for");
    let connected = counter(
        &mut r,
        "exit_streams_connected",
        "Streams whose TCP connection was made",
    );
    let refused = drop_family(
        &mut r,
        "exit_streams_refused",
        "Streams refused, by reason (policy: not allowed; connect: resolving or connecting failed; full: too many open)",
        ["policy", "connect", "full"],
    );
    let idle = counter(
        &mut r,
        "exit_streams_idle_closed",
        "Streams closed for being idle",
    );
    let capped = counter(
        &mut r,
        "exit_streams_cap_reached",
        "Streams reset at max_bytes_per_stream",
    );
    let failed = counter(
        &mut r,
        "exit_streams_failed",
        "Streams that ended reset or timed out",
    );
    let bytes = counter(&mut r, "exit_bytes", "Bytes carried, both directions");
    let open = gauge(
        &mut r,
        "exit_streams_open",
        "Streams connected and not over",
    );
    let sent = counter(
        &mut r,
        "exit_stream_messages_sent",
        "Stream messages sent (replies through SURBs)",
    );
    let segments = counter(&mut r, "exit_segments_received", "Stream segments taken");
    let dropped = drop_family(
        &mut r,
        "exit_stream_dropped",
        "Messages or segments dropped, by reason",
        ["malformed", "unknown_stream", "ended_stream", "send_error"],
    );
    let waits = counter(
        &mut r,
        "exit_surb_waits",
        "Times a stream had bytes to send and no reply SURB",
    );
    let discarded = counter(
        &mut r,
        "exit_surbs_discarded",
        "Reply SURBs dropped beyond the per-stream cap",
    );
    let get = |c: &AtomicU64| c.load(Relaxed);
    let reason = |name: &'static str| nodeshell::metrics::DropLabels { reason: name };
    let observe: Observe = Box::new(move || {
        catch_up(&requests, get(&exit.requests));
        catch_up(&connected, get(&exit.connected));
        catch_up(
            &refused.get_or_create(&reason("policy")),
            get(&exit.refused_by_policy),
        );
        catch_up(
            &refused.get_or_create(&reason("connect")),
            get(&exit.connect_failed),
        );
        catch_up(
            &refused.get_or_create(&reason("full")),
            get(&streams.streams_refused_full),
        );
        catch_up(&idle, get(&exit.idle_closed));
        catch_up(&capped, get(&exit.cap_reached));
        catch_up(&failed, get(&streams.streams_failed));
        catch_up(&bytes, get(&exit.bytes));
        open.set(to_i64(get(&exit.open)));
        catch_up(&sent, get(&streams.messages_sent));
        catch_up(&segments, get(&streams.segments_received));
        catch_up(
            &dropped.get_or_create(&reason("malformed")),
            get(&streams.malformed_messages),
        );
        catch_up(
            &dropped.get_or_create(&reason("unknown_stream")),
            get(&streams.unknown_stream),
        );
        catch_up(
            &dropped.get_or_create(&reason("ended_stream")),
            get(&streams.ended_stream),
        );
        catch_up(
            &dropped.get_or_create(&reason("send_error")),
            get(&streams.send_errors),
        );
        catch_up(&waits, get(&streams.waits_for_surbs));
        catch_up(&discarded, get(&streams.surbs_discarded));
    });
    (r, observe)
}
