use super::*;
use crate::{MessageId, Purpose, Seed, millis};
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
        let mut model = NetworkModel::new(LinkSpec::preset("cellular-4g").unwrap());
        model.set_node_link(NodeId(1), LinkSpec::preset("wifi").unwrap());
        let a = model.route(&env(0, 1, bytes), SimTime::ZERO, &mut rng(seed));
        let b = model.route(&env(0, 1, bytes), SimTime::ZERO, &mut rng(seed));
        prop_assert_eq!(a, b);
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
