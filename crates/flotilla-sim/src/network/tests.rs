use super::*;
use crate::{MessageId, Purpose, Seed, millis, secs};
use proptest::prelude::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A message of `bytes` from `src` to `dst`, sent at time zero.
pub(super) fn env(src: u32, dst: u32, bytes: u64) -> Envelope {
    let (src, dst) = (NodeId(src), NodeId(dst));
    Envelope {
        id: MessageId { src, seq: 0 },
        src,
        dst,
        sent_at: SimTime::ZERO,
        bytes,
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    Seed(seed).stream(NodeId(0), Purpose::NETWORK)
}

#[test]
fn fixed_links_add_latency_and_transmission() {
    let link = LinkSpec {
        up_bytes_per_sec: 1e6,
        down_bytes_per_sec: 2e6,
        ..LinkSpec::latency(millis(10))
    };
    let mut model = NetworkModel::new(link);
    let route = |m: &mut NetworkModel, e| m.route(&e, SimTime::ZERO, &mut rng(1));
    // 10 ms + 10 ms latency, 1e5 bytes at min(1e6 up, 2e6 down) = 100 ms.
    assert_eq!(route(&mut model, env(0, 1, 100_000)), Ok(millis(120)));
    model.set_pair_link(NodeId(0), NodeId(1), LinkSpec::latency(millis(3)));
    assert_eq!(route(&mut model, env(0, 1, 100_000)), Ok(millis(3)));
    assert_eq!(
        route(&mut model, env(1, 0, 0)),
        Ok(millis(20)),
        "pair links are directional"
    );
}

#[test]
fn access_links_combine_sender_up_and_receiver_down() {
    let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
    let phone = LinkSpec {
        up_bytes_per_sec: 1e5,
        down_bytes_per_sec: 1e6,
        ..LinkSpec::latency(millis(50))
    };
    model.set_node_link(NodeId(7), phone.clone());
    let mut route = |e| model.route(&e, SimTime::ZERO, &mut rng(1));
    // Phone uploads 1e5 bytes at 1e5 bytes/s: 1 s + 51 ms.
    assert_eq!(route(env(7, 0, 100_000)), Ok(millis(1_051)));
    // Server to phone: limited by the phone's downlink, 100 ms + 51 ms.
    assert_eq!(route(env(0, 7, 100_000)), Ok(millis(151)));
    // Nodes without their own link (even past the highest set one) use the default.
    assert_eq!(route(env(3, 1_000_000, 0)), Ok(millis(2)));
    assert_eq!(model.node_link(NodeId(7)), &phone);
}

#[test]
fn repeated_links_are_stored_once() {
    let mut model = NetworkModel::new(LinkSpec::preset("datacenter").unwrap());
    let wifi = LinkSpec::preset("wifi").unwrap();
    let cell = LinkSpec::preset("cellular-4g").unwrap();
    for i in 0..10_000 {
        let link = if i % 2 == 0 { &wifi } else { &cell };
        model.set_node_link(NodeId(i), link.clone());
    }
    model.set_node_link(NodeId(10_000), LinkSpec::preset("datacenter").unwrap());
    assert_eq!(model.links.len(), 3);
    assert_eq!(model.node_link(NodeId(9_999)), &cell);
}

#[test]
fn rules_run_in_order_and_the_first_non_pass_wins() {
    let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    model.rule(move |_: &Envelope, _: SimTime| {
        counter.fetch_add(1, Ordering::Relaxed);
        Verdict::Pass
    });
    model.rule(|e: &Envelope, _: SimTime| match e.dst {
        NodeId(9) => Verdict::Drop(DropReason::Custom("blackhole".into())),
        _ => Verdict::Pass,
    });
    model.rule(|e: &Envelope, _: SimTime| match e.dst {
        NodeId(8) => Verdict::Deliver(millis(42)),
        _ => Verdict::Pass,
    });
    model.rule(|_: &Envelope, _: SimTime| Verdict::Drop(DropReason::Loss));
    assert_eq!(model.rule_count(), 4);
    let mut route = |e| model.route(&e, SimTime::ZERO, &mut rng(1));
    let blackhole = DropReason::Custom("blackhole".into());
    assert_eq!(route(env(0, 9, 1)), Err(blackhole));
    assert_eq!(route(env(0, 8, 1)), Ok(millis(42)));
    assert_eq!(route(env(0, 1, 1)), Err(DropReason::Loss));
    assert_eq!(
        seen.load(Ordering::Relaxed),
        3,
        "earlier rules see every message"
    );
}

/// A rule with state and its own draws, as a struct.
#[derive(Debug)]
struct DropEveryOther(bool);

impl Rule for DropEveryOther {
    fn verdict(&mut self, _: &Envelope, _: SimTime, _: &mut ChaCha8Rng) -> Verdict {
        self.0 = !self.0;
        match self.0 {
            true => Verdict::Drop(DropReason::Custom("odd".into())),
            false => Verdict::Pass,
        }
    }
}

#[test]
fn stateful_rules_keep_their_state_between_messages() {
    let mut model = NetworkModel::new(LinkSpec::latency(millis(1)));
    model.rule(DropEveryOther(false));
    let outcomes: Vec<bool> = (0..4)
        .map(|_| {
            model
                .route(&env(0, 1, 1), SimTime::ZERO, &mut rng(1))
                .is_ok()
        })
        .collect();
    assert_eq!(outcomes, [false, true, false, true]);
}

#[test]
fn presets_are_valid_and_ordered_by_speed() {
    let links: Vec<LinkSpec> = LinkSpec::PRESET_NAMES
        .iter()
        .map(|n| LinkSpec::preset(n).unwrap())
        .collect();
    for l in &links {
        l.validate().unwrap();
    }
    assert!(
        links
            .windows(2)
            .all(|w| w[0].down_bytes_per_sec > w[1].down_bytes_per_sec)
    );
    let e = LinkSpec::preset("carrier-pigeon").unwrap_err().to_string();
    assert!(
        e.contains("carrier-pigeon") && e.contains("cellular-4g"),
        "{e}"
    );
}

#[test]
fn validation_names_the_field_and_value() {
    let base = LinkSpec::latency(millis(1));
    let cases = [
        (
            LinkSpec {
                loss: 1.5,
                ..base.clone()
            },
            "`loss` = 1.5",
        ),
        (
            LinkSpec {
                up_bytes_per_sec: -3.0,
                ..base.clone()
            },
            "`up_bytes_per_sec` = -3",
        ),
        (
            LinkSpec {
                down_bytes_per_sec: f64::NAN,
                ..base.clone()
            },
            "`down_bytes_per_sec` = NaN",
        ),
        (
            LinkSpec {
                jitter_ms: -1.0,
                ..base.clone()
            },
            "`jitter_ms` = -1",
        ),
        (
            LinkSpec {
                latency: Latency::Exponential { mean_ms: f64::NAN },
                ..base.clone()
            },
            "`latency.mean_ms` = NaN",
        ),
    ];
    for (link, expected) in cases {
        let e = link.validate().unwrap_err().to_string();
        assert!(e.contains(expected), "{e}");
    }
}

#[test]
fn drawn_latencies_have_their_documented_centres() {
    let draw = |latency: Latency| {
        let mut model = NetworkModel::new(LinkSpec {
            latency,
            ..LinkSpec::latency(millis(0))
        });
        let mut r = rng(9);
        let mut d: Vec<u64> = (0..4_001)
            .map(|_| {
                model
                    .route(&env(0, 1, 0), SimTime::ZERO, &mut r)
                    .unwrap()
                    .as_micros()
            })
            .collect();
        d.sort_unstable();
        (
            d[2_000] as f64 / 1e3,
            d.iter().sum::<u64>() as f64 / 4_001e3,
        )
    };
    // Two access links: the sum of two draws.
    let (median, _) = draw(Latency::LogNormal {
        median_ms: 40.0,
        sigma: 0.0,
    });
    assert!((median - 80.0).abs() < 1e-3, "{median}");
    let (_, mean) = draw(Latency::Exponential { mean_ms: 10.0 });
    assert!((mean - 20.0).abs() < 1.0, "{mean}");
    let (_, mean) = draw(Latency::Normal {
        mean_ms: 30.0,
        std_ms: 5.0,
    });
    assert!((mean - 60.0).abs() < 0.5, "{mean}");
    let (median, _) = draw(Latency::Normal {
        mean_ms: 0.0,
        std_ms: 5.0,
    });
    assert!(median >= 0.0, "clamped at zero");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn delay_is_at_least_the_latency_and_transmission_floor(
        seed in any::<u64>(),
        floor_ms in 0u64..100,
        bytes in 0u64..1_000_000,
        jitter_ms in 0.0f64..20.0,
        sigma in 0.0f64..1.0,
    ) {
        let link = LinkSpec {
            latency: Latency::Fixed { ms: floor_ms as f64 },
            jitter_ms,
            up_bytes_per_sec: 1e6,
            down_bytes_per_sec: 4e6,
            loss: 0.0,
            shared: true,
        };
        let mut model = NetworkModel::new(link);
        model.set_node_link(NodeId(1), LinkSpec {
            latency: Latency::LogNormal { median_ms: 5.0, sigma },
            ..LinkSpec::latency(millis(0))
        });
        let d = model.route(&env(0, 1, bytes), SimTime::ZERO, &mut rng(seed)).unwrap();
        // Sender's fixed latency, plus bytes at the sender's 1e6 bytes/s uplink.
        let floor = floor_ms * 1_000 + bytes;
        prop_assert!(d.as_micros() + 1 >= floor, "{} < {}", d.as_micros(), floor);
    }

    #[test]
    fn loss_one_always_drops_and_loss_zero_never(seed in any::<u64>(), bytes in 0u64..100_000) {
        let link = |loss| LinkSpec { loss, ..LinkSpec::preset("cellular-3g").unwrap() };
        let mut r = rng(seed);
        let mut lossy = NetworkModel::new(link(0.0));
        lossy.set_node_link(NodeId(1), link(1.0));
        let mut clean = NetworkModel::new(link(0.0));
        for dst in [1, 2] {
            let e = env(if dst == 1 { 0 } else { 1 }, dst, bytes);
            prop_assert_eq!(lossy.route(&e, SimTime::ZERO, &mut r), Err(DropReason::Loss));
            prop_assert!(clean.route(&e, SimTime::ZERO, &mut r).is_ok());
        }
    }

    #[test]
    fn the_same_stream_gives_the_same_verdict(seed in any::<u64>(), bytes in 0u64..100_000) {
        // Fresh models: on one, the second message would queue behind the first.
        let route = || {
            let mut model = NetworkModel::new(LinkSpec::preset("cellular-4g").unwrap());
            model.set_node_link(NodeId(1), LinkSpec::preset("wifi").unwrap());
            model.route(&env(0, 1, bytes), SimTime::ZERO, &mut rng(seed))
        };
        prop_assert_eq!(route(), route());
    }
}

#[test]
fn empirical_loss_combines_both_links() {
    let mut model = NetworkModel::new(LinkSpec {
        loss: 0.1,
        ..LinkSpec::latency(millis(1))
    });
    model.set_node_link(
        NodeId(1),
        LinkSpec {
            loss: 0.2,
            ..LinkSpec::latency(millis(1))
        },
    );
    let mut r = rng(4);
    let lost = (0..20_000)
        .filter(|_| model.route(&env(0, 1, 1), SimTime::ZERO, &mut r).is_err())
        .count();
    // 1 − 0.9 · 0.8 = 0.28.
    assert!((5_300..5_900).contains(&lost), "{lost}");
}

/// A link with a fixed latency and the given bandwidths.
fn fixed(ms: u64, up: f64, down: f64, shared: bool) -> LinkSpec {
    LinkSpec {
        up_bytes_per_sec: up,
        down_bytes_per_sec: down,
        shared,
        ..LinkSpec::latency(millis(ms))
    }
}

/// `bytes` from each of `clients` (nodes 1, 2, ...) to node 0, all sent at `at`, routed in
/// node order as a runtime does.
fn uploads(model: &mut NetworkModel, clients: u32, bytes: u64, at: SimTime) -> Vec<SimDuration> {
    (1..=clients)
        .map(|c| {
            let e = Envelope {
                sent_at: at,
                ..env(c, 0, bytes)
            };
            model.route(&e, at, &mut rng(u64::from(c))).unwrap()
        })
        .collect()
}

#[test]
fn simultaneous_uploads_share_the_server_downlink() {
    // 10 Mbit/s down at the server, 100 Mbit/s up at each client, 5 ms each way.
    let server = |shared| fixed(5, 1.25e6, 1.25e6, shared);
    let mut model = NetworkModel::new(fixed(5, 12.5e6, 12.5e6, true));
    model.set_node_link(NodeId(0), server(true));
    let delays = uploads(&mut model, 20, 1_000_000, SimTime::ZERO);
    // First come first reserved: the k-th upload has the link after the k − 1 before it.
    let expected: Vec<SimDuration> = (1..=20).map(|k| millis(10 + 800 * k)).collect();
    assert_eq!(delays, expected);
    assert_eq!(delays[19], secs(16) + millis(10));

    let mut ideal = NetworkModel::new(fixed(5, 12.5e6, 12.5e6, true));
    ideal.set_node_link(NodeId(0), server(false));
    let delays = uploads(&mut ideal, 20, 1_000_000, SimTime::ZERO);
    assert!(delays.iter().all(|&d| d == millis(810)), "{delays:?}");
    assert_eq!(ideal.congestion.tracked(), 20, "only the clients' uplinks");
}

#[test]
fn transfers_without_contention_take_the_unshared_time_bit_for_bit() {
    let build = |shared| {
        let link = |name| LinkSpec {
            shared,
            ..LinkSpec::preset(name).unwrap()
        };
        let mut model = NetworkModel::new(link("wifi"));
        model.set_node_link(NodeId(0), link("datacenter"));
        model
    };
    let (mut shared, mut ideal) = (build(true), build(false));
    // 100 wifi clients (2.5e6 bytes/s up) fill a fifth of the server's 1.25e9 bytes/s; a
    // second wave, of a size that is no whole number of microseconds, follows a minute later.
    for (at, bytes) in [(0, 1_000_000), (60, 1_234_567)] {
        let at = SimTime::ZERO + secs(at);
        let routed = |model: &mut NetworkModel| -> Vec<_> {
            (1..=100)
                .map(|c| {
                    let e = Envelope {
                        sent_at: at,
                        ..env(c, 0, bytes)
                    };
                    model.route(&e, at, &mut rng(u64::from(c)))
                })
                .collect()
        };
        let got = routed(&mut shared);
        assert_eq!(got, routed(&mut ideal));
        let floor = bytes * 1_000_000 / 2_500_000;
        assert!(got.iter().flatten().all(|d| d.as_micros() >= floor));
        assert!(got.iter().filter(|d| d.is_ok()).count() > 90, "{got:?}");
    }
}

#[test]
fn lost_messages_take_their_share_of_the_link() {
    let mut model = NetworkModel::new(fixed(5, 12.5e6, 12.5e6, true));
    model.set_node_link(NodeId(0), fixed(5, 1.25e6, 1.25e6, true));
    model.set_node_link(
        NodeId(1),
        LinkSpec {
            loss: 1.0,
            ..fixed(5, 12.5e6, 12.5e6, true)
        },
    );
    let mut r = rng(1);
    assert_eq!(
        model.route(&env(1, 0, 1_000_000), SimTime::ZERO, &mut r),
        Err(DropReason::Loss)
    );
    let d = model.route(&env(2, 0, 1_000_000), SimTime::ZERO, &mut r);
    assert_eq!(d, Ok(millis(1_610)), "behind the lost message's 0.8 s");
    // An empty message neither waits nor reserves.
    assert_eq!(
        model.route(&env(3, 0, 0), SimTime::ZERO, &mut r),
        Ok(millis(10))
    );
}

#[test]
fn reservations_are_forgotten_once_they_end() {
    let mut model = NetworkModel::new(fixed(1, 1e6, 1e6, true));
    uploads(&mut model, 50, 10_000, SimTime::ZERO);
    assert_eq!(
        model.congestion.tracked(),
        51,
        "50 uplinks and one downlink"
    );
    // 50 × 10 ms later everything has been sent: only the new message's links remain.
    let later = SimTime::ZERO + millis(500);
    let d = model.route(&env(7, 8, 1_000), later, &mut rng(1));
    assert_eq!(d, Ok(millis(3)));
    assert_eq!(model.congestion.tracked(), 2);
    // A send earlier than the latest one starts transmitting at the latest one's time.
    let d = model.route(&env(9, 8, 1_000), SimTime::ZERO, &mut rng(1));
    assert_eq!(d, Ok(millis(500 + 1 + 1 + 2)));
}

#[test]
fn a_saturated_link_routes_many_messages_in_linear_time() {
    // 20,000 senders, 1 MB each, into one 10 Mbit/s downlink at the same instant: each
    // message starts where the saturated prefix ends instead of scanning it.
    let mut model = NetworkModel::new(fixed(0, 12.5e6, 12.5e6, true));
    model.set_node_link(NodeId(0), fixed(0, 1.25e6, 1.25e6, true));
    let delays = uploads(&mut model, 20_000, 1_000_000, SimTime::ZERO);
    for (k, d) in (1..).zip(&delays) {
        assert_eq!(d.as_micros(), 800_000 * k);
    }
}

/// One message of the property test: sender, receiver, size, gap after the previous send.
type Send = (u32, u32, u64, u64);

/// Routes `sends` on a model of `links` (node `i` on `links[i]`, the pair link from node 0
/// to node 1 if given) and returns each message's send time, delay and pieces.
fn run(
    links: &[LinkSpec],
    pair: Option<&LinkSpec>,
    sends: &[Send],
) -> Vec<(u64, Result<SimDuration, DropReason>, Vec<Piece>)> {
    let mut model = NetworkModel::new(links[0].clone());
    for (i, l) in links.iter().enumerate() {
        model.set_node_link(NodeId(i as u32), l.clone());
    }
    if let Some(p) = pair {
        model.set_pair_link(NodeId(0), NodeId(1), p.clone());
    }
    let mut now = 0;
    sends
        .iter()
        .map(|&(src, dst, bytes, gap)| {
            now += gap;
            let at = SimTime(now);
            let e = Envelope {
                sent_at: at,
                ..env(src, dst, bytes)
            };
            let (delay, pieces) = model.route_reserving(&e, at, &mut rng(now));
            (now, delay, pieces)
        })
        .collect()
}

/// A fixed latency in µs.
fn fixed_us(link: &LinkSpec) -> u64 {
    let Latency::Fixed { ms } = link.latency else {
        panic!("not a fixed latency: {link:?}")
    };
    (ms * 1e3) as u64
}

fn arb_link() -> impl Strategy<Value = LinkSpec> {
    let rate = prop_oneof![4 => 1e4f64..1e7, 1 => Just(f64::INFINITY)];
    (0u64..5, rate.clone(), rate, any::<bool>())
        .prop_map(|(ms, up, down, shared)| fixed(ms, up, down, shared))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn shared_links_never_carry_more_than_their_capacity(
        links in proptest::collection::vec(arb_link(), 4),
        pair in proptest::option::of(arb_link()),
        sends in proptest::collection::vec(
            (0u32..4, 0u32..4, 0u64..2_000_000, prop_oneof![2 => Just(0u64), 1 => 0u64..3_000_000]),
            1..60,
        ),
    ) {
        let routed = run(&links, pair.as_ref(), &sends);
        let unshared = |l: &LinkSpec| LinkSpec { shared: false, ..l.clone() };
        let ideal = run(
            &links.iter().map(unshared).collect::<Vec<_>>(),
            pair.as_ref().map(unshared).as_ref(),
            &sends,
        );
        prop_assert_eq!(&routed, &run(&links, pair.as_ref(), &sends), "deterministic");
        // Each resource's capacity and the pieces it carried.
        let mut carried: BTreeMap<Resource, (f64, Vec<Piece>)> = BTreeMap::new();
        for (((now, delay, pieces), (_, ideal_delay, _)), &(src, dst, bytes, _)) in
            routed.iter().zip(&ideal).zip(&sends)
        {
            let (src_link, dst_link) = (&links[src as usize], &links[dst as usize]);
            let path: Vec<(Resource, f64, bool)> = match pair.as_ref().filter(|_| (src, dst) == (0, 1)) {
                Some(p) => vec![(Resource::Pair(NodeId(0), NodeId(1)), p.up_bytes_per_sec.min(p.down_bytes_per_sec), p.shared)],
                None => vec![
                    (Resource::Up(NodeId(src)), src_link.up_bytes_per_sec, src_link.shared),
                    (Resource::Down(NodeId(dst)), dst_link.down_bytes_per_sec, dst_link.shared),
                ],
            };
            let tracked: Vec<_> = path.iter().filter(|(_, c, s)| *s && c.is_finite()).collect();
            let limit = path.iter().filter(|(_, c, s)| !*s || c.is_infinite()).map(|p| p.1).fold(f64::INFINITY, f64::min);
            let delay = delay.clone().unwrap();
            prop_assert!(delay >= ideal_delay.clone().unwrap(), "{delay} shorter than unshared");
            if tracked.is_empty() || bytes == 0 {
                prop_assert!(pieces.is_empty());
                prop_assert_eq!(Ok(delay), ideal_delay.clone());
                continue;
            }
            // Every byte is sent, from the send on, in order, within the path's limits.
            let sent: f64 = pieces.iter().map(|p| p.rate * (p.until - p.from) as f64 / 1e6).sum();
            prop_assert!((sent - bytes as f64).abs() <= 1e-9 * bytes as f64, "{sent} of {bytes}");
            prop_assert!(pieces[0].from >= *now);
            for w in pieces.windows(2) {
                prop_assert!(w[0].until <= w[1].from);
            }
            for p in pieces {
                prop_assert!(p.from < p.until && p.rate > 0.0 && p.rate <= limit * (1.0 + 1e-9));
            }
            // The delay is the transmission, then the latency (fixed, no jitter).
            let latency_us = match pair.as_ref().filter(|_| (src, dst) == (0, 1)) {
                Some(p) => fixed_us(p),
                None => fixed_us(src_link) + fixed_us(dst_link),
            };
            let end = pieces.last().unwrap().until;
            prop_assert!((delay.as_micros() - latency_us).abs_diff(end - now) <= 1, "{delay} vs {end}");
            for (resource, capacity, _) in tracked {
                let entry = carried.entry(*resource).or_insert((*capacity, Vec::new()));
                entry.1.extend(pieces.iter().copied());
            }
        }
        // At every moment, no resource carries more than its capacity.
        for (resource, (capacity, pieces)) in &carried {
            let mut edges: Vec<(u64, f64)> = pieces
                .iter()
                .flat_map(|p| [(p.from, p.rate), (p.until, -p.rate)])
                .collect();
            edges.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
            let mut load = 0.0;
            for (i, (t, delta)) in edges.iter().enumerate() {
                load += delta;
                let last_at_t = edges.get(i + 1).is_none_or(|next| next.0 != *t);
                prop_assert!(
                    !last_at_t || load <= capacity * (1.0 + 1e-9),
                    "{resource:?} carries {load} > {capacity} at {t}"
                );
            }
        }
    }
}
