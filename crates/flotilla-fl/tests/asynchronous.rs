//! Properties of the asynchronous server (FedBuff, FedAsync) on whole simulated runs.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_fl::{AsyncRule, Asynchronous, FedAvg, RoundPolicy, Staleness, Synchronous};
use flotilla_sim::{DeviceProfile, secs};
use proptest::prelude::*;

fn staleness() -> impl Strategy<Value = Staleness> {
    prop_oneof![
        Just(Staleness::Constant),
        (0.01f64..4.0).prop_map(|a| Staleness::Polynomial { a }),
        (0.01f64..4.0, 0u32..20).prop_map(|(a, b)| Staleness::Hinge { a, b }),
    ]
}

/// `s(τ)` by its definition, computed independently of the implementation.
fn defined_weight(s: Staleness, tau: u32) -> f64 {
    let t = f64::from(tau);
    match s {
        Staleness::Constant => 1.0,
        Staleness::Polynomial { a } => 1.0 / (t + 1.0).powf(a),
        Staleness::Hinge { b, .. } if tau <= b => 1.0,
        Staleness::Hinge { a, b } => 1.0 / (a * (t - f64::from(b)) + 1.0),
    }
}

/// A FedBuff or FedAsync rule with a discount.
fn rule(n: usize) -> impl Strategy<Value = AsyncRule> {
    prop_oneof![
        (1..=n, 0.5f64..1.5, staleness()).prop_map(|(buffer, server_lr, staleness)| {
            AsyncRule::FedBuff {
                buffer,
                server_lr,
                staleness,
            }
        }),
        (0.1f64..1.0, staleness())
            .prop_map(|(alpha, staleness)| AsyncRule::FedAsync { alpha, staleness }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// With identical devices and links, FedBuff whose buffer and concurrency are the whole
    /// fleet, at server rate 1, without discount or weighting, is synchronous FedAvg over
    /// every client: the same jobs (ids, arrivals, fates) and the same bits after `R`
    /// versions.
    #[test]
    fn fedbuff_of_the_whole_fleet_is_fedavg(seed in 0u64..1000, rounds in 1u32..5, n in 2usize..5) {
        let task = tiny_task(seed, 60 * n);
        let devices = vec![Some(device_taking(&task, 0.5, 0.0)); n];
        let sync = run(
            seed,
            &task,
            sync_coordinator(&task, None, RoundPolicy::wait_all(None), rounds, n),
            &devices,
            network(1),
        );
        let config = async_config(fedbuff(n, 1.0, Staleness::Constant), n, 0.1, None, rounds);
        let buffered = run(seed, &task, async_coordinator(&task, config, n), &devices, network(1));
        let (s, b) = (
            sync.coordinator::<Synchronous<FedAvg>>(),
            buffered.coordinator::<Asynchronous>(),
        );
        prop_assert!(s.finished() && b.finished());
        prop_assert_eq!(s.updates(), b.updates());
        let (x, y) = (
            bits(&final_model::<Synchronous<FedAvg>>(&sync)),
            bits(&final_model::<Asynchronous>(&buffered)),
        );
        let differ = x.iter().zip(&y).filter(|(a, b)| a != b).count();
        prop_assert!(differ == 0, "{differ} of {} values differ", x.len());
    }

    /// One seed, one run: FedBuff and FedAsync over jittery devices that drop out give the
    /// same models, update records, round records and trace, bit for bit.
    #[test]
    fn same_seed_same_bits(seed in 0u64..1000, n in 2usize..5, rule in rule(4), concurrency in 1usize..5) {
        let task = tiny_task(seed, 40 * n);
        let devices: Vec<Option<DeviceProfile>> = (0..n)
            .map(|i| Some(DeviceProfile {
                compute_jitter: 0.3,
                ..device_taking(&task, 0.2 + 0.2 * i as f64, 0.1)
            }))
            .collect();
        let config = async_config(rule, concurrency, 0.1, Some(secs(2)), 4);
        let once = || run(seed, &task, async_coordinator(&task, config.clone(), n), &devices, network(2));
        let (a, b) = (once(), once());
        let (ca, cb) = (a.coordinator::<Asynchronous>(), b.coordinator::<Asynchronous>());
        prop_assert_eq!(bits(&final_model::<Asynchronous>(&a)), bits(&final_model::<Asynchronous>(&b)));
        prop_assert_eq!(ca.updates(), cb.updates());
        prop_assert_eq!(format!("{:?}", ca.history()), format!("{:?}", cb.history()));
        prop_assert_eq!(a.trace.hash, b.trace.hash);
    }
}

proptest! {
    /// `s(τ)` follows its definition, lies in (0, 1] and never grows with `τ`.
    #[test]
    fn staleness_weights_follow_their_definitions(s in staleness(), tau in 0u32..u32::MAX) {
        let (w, next) = (s.weight(tau), s.weight(tau + 1));
        let defined = defined_weight(s, tau);
        prop_assert!((w - defined).abs() <= 1e-12 * defined, "{s:?}({tau}) = {w}, not {defined}");
        prop_assert!(w > 0.0 && w <= 1.0, "{s:?}({tau}) = {w}");
        prop_assert!(next <= w, "{s:?}: s({}) = {next} > s({tau}) = {w}", tau + 1);
        prop_assert_eq!(s.weight(0), 1.0);
        if let Staleness::Hinge { b, .. } = s {
            prop_assert_eq!(s.weight(b), 1.0);
            prop_assert!(s.weight(b + 1) < 1.0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Under dropout, message loss and an outage, FedBuff's books balance: assignments are
    /// the messages sent, every reply that arrived has one fate, the tally adds up.
    #[test]
    fn fedbuff_books_balance_under_faults(
        seed in 0u64..1000,
        n in 2usize..6,
        k in 1usize..4,
        concurrency in 1usize..6,
        timeout in prop_oneof![1 => Just(None), 3 => (1u64..4).prop_map(Some)],
        dropout in 0.0f64..0.4,
        loss in 0.0f64..0.1,
        outage in (0u64..4000, 0u64..1500),
        rounds in 2u32..8,
    ) {
        let task = tiny_task(seed, 40 * n);
        let devices: Vec<_> = (0..n)
            .map(|i| Some(device_taking(&task, 0.2 + 0.3 * i as f64, dropout)))
            .collect();
        let config = async_config(
            fedbuff(k, 1.0, Staleness::Polynomial { a: 0.5 }),
            concurrency,
            0.1,
            timeout.map(secs),
            rounds,
        );
        let run = run(seed, &task, async_coordinator(&task, config, n), &devices, faulty_network(loss, outage));
        assert_books_balance::<Asynchronous>(&run);
    }
}
