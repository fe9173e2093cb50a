//! Properties of the partitioners: exact cover, determinism, skew, constraints, bad arguments.

use flotilla_data::partition::{self, MAX_DRAWS};
use flotilla_data::{
    DataError, LabeledUnlabeled, dirichlet, dirichlet_labeled_unlabeled, fraction_split, iid,
    mean_total_variation, natural, shards,
};
use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 32,
        rng_seed: RngSeed::Fixed(0x5eed),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` labels drawn from `0..classes` with a seeded rng.
fn random_labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut r = rng(seed);
    (0..n).map(|_| r.random_range(0..classes as u32)).collect()
}

/// Labels `0, 1, …, classes-1, 0, 1, …` (balanced).
fn balanced_labels(n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|i| (i % classes) as u32).collect()
}

/// Checks that labeled ∪ unlabeled covers `0..n` exactly once and non-holders have no
/// unlabeled data.
fn assert_split_covers(split: &LabeledUnlabeled, n: usize, holders: &[usize]) {
    let mut seen = vec![0u32; n];
    for i in split.labeled.iter().chain(&split.unlabeled).flatten() {
        seen[*i] += 1;
    }
    assert!(seen.iter().all(|&s| s == 1), "not an exact cover");
    for (client, unlabeled) in split.unlabeled.iter().enumerate() {
        if !holders.contains(&client) {
            assert!(
                unlabeled.is_empty(),
                "non-holder {client} has unlabeled data"
            );
        }
    }
    let sorted = |p: &Vec<usize>| p.windows(2).all(|w| w[0] < w[1]);
    assert!(split.labeled.iter().chain(&split.unlabeled).all(sorted));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn iid_covers_with_balanced_sizes(n in 1usize..400, clients in 1usize..40, seed: u64) {
        prop_assume!(clients <= n);
        let p = iid(n, clients, &mut rng(seed)).unwrap();
        partition::validate(&p, n).unwrap();
        let sizes: Vec<usize> = p.iter().map(Vec::len).collect();
        let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(max - min <= 1);
        prop_assert_eq!(p, iid(n, clients, &mut rng(seed)).unwrap());
    }

    #[test]
    fn dirichlet_covers_and_respects_minimum(
        n in 50usize..600,
        classes in 1usize..12,
        clients in 1usize..20,
        alpha in prop_oneof![0.05f64..1.0, 1.0f64..100.0],
        min_fraction in 0.0f64..0.25,
        seed: u64,
    ) {
        let labels = random_labels(n, classes, seed);
        let min_per_client = (min_fraction * (n / clients) as f64) as usize;
        let p = dirichlet(&labels, classes, clients, alpha, min_per_client, &mut rng(seed)).unwrap();
        prop_assert_eq!(p.len(), clients);
        prop_assert!(p.iter().all(|c| c.len() >= min_per_client));
        let mut seen = vec![0u32; n];
        p.iter().flatten().for_each(|&i| seen[i] += 1);
        prop_assert!(seen.iter().all(|&s| s == 1));
        let again = dirichlet(&labels, classes, clients, alpha, min_per_client, &mut rng(seed));
        prop_assert_eq!(p, again.unwrap());
    }

    #[test]
    fn shards_cover_and_deal_whole_shards(
        n in 20usize..500,
        clients in 1usize..10,
        per_client in 1usize..4,
        seed: u64,
    ) {
        prop_assume!(clients * per_client <= n);
        let labels = random_labels(n, 10, seed);
        let p = shards(&labels, clients, per_client, &mut rng(seed)).unwrap();
        partition::validate(&p, n).unwrap();
        let shard_len = n / (clients * per_client);
        prop_assert!(p.iter().all(|c| c.len() >= per_client * shard_len));
        prop_assert_eq!(p, shards(&labels, clients, per_client, &mut rng(seed)).unwrap());
    }

    #[test]
    fn labeled_unlabeled_split_covers(
        n in 200usize..800,
        clients in 1usize..12,
        holder_count in 0usize..6,
        shards_per_holder in 0usize..4,
        alpha in 0.1f64..10.0,
        seed: u64,
    ) {
        let holders: Vec<usize> = (0..holder_count.min(clients)).collect();
        let labels = random_labels(n, 5, seed);
        let split = dirichlet_labeled_unlabeled(
            &labels, 5, clients, &holders, shards_per_holder, shards_per_holder, alpha, 1,
            &mut rng(seed),
        ).unwrap();
        prop_assert_eq!(split.labeled.len(), clients);
        prop_assert_eq!(split.unlabeled.len(), clients);
        assert_split_covers(&split, n, &holders);
        prop_assert!(split.labeled.iter().all(|c| !c.is_empty()));
        if shards_per_holder > 0 {
            prop_assert!(holders.iter().all(|&h| !split.unlabeled[h].is_empty()));
        }
    }

    #[test]
    fn keeping_fewer_unlabeled_shards_keeps_the_labeled_data(
        n in 200usize..800,
        clients in 2usize..12,
        shards_per_holder in 1usize..5,
        kept in 0usize..5,
        alpha in 0.1f64..10.0,
        seed: u64,
    ) {
        prop_assume!(kept <= shards_per_holder);
        let holders: Vec<usize> = (0..clients / 2).collect();
        let labels = random_labels(n, 5, seed);
        let split = |kept| dirichlet_labeled_unlabeled(
            &labels, 5, clients, &holders, shards_per_holder, kept, alpha, 1, &mut rng(seed),
        ).unwrap();
        let (all, some) = (split(shards_per_holder), split(kept));
        prop_assert_eq!(&some.labeled, &all.labeled);
        let unlabeled_total = |p: &LabeledUnlabeled| p.unlabeled.iter().map(Vec::len).sum::<usize>();
        prop_assert!(unlabeled_total(&some) <= unlabeled_total(&all));
        for (few, many) in some.unlabeled.iter().zip(&all.unlabeled) {
            prop_assert!(few.iter().all(|i| many.binary_search(i).is_ok()));
            prop_assert_eq!(few.is_empty(), kept == 0 || many.is_empty());
        }
        if kept == 0 {
            prop_assert!(some.unlabeled.iter().all(Vec::is_empty));
        }
    }

    #[test]
    fn fraction_split_covers(
        n in 10usize..300,
        clients in 1usize..8,
        fraction in 0.0f64..=1.0,
        seed: u64,
    ) {
        prop_assume!(clients <= n);
        let base = iid(n, clients, &mut rng(seed)).unwrap();
        let holders: Vec<usize> = (0..clients).step_by(2).collect();
        let split = fraction_split(&base, fraction, &holders, &mut rng(seed)).unwrap();
        assert_split_covers(&split, n, &holders);
        for &h in &holders {
            let expected = (fraction * base[h].len() as f64).round() as usize;
            prop_assert_eq!(split.unlabeled[h].len(), expected);
        }
    }
}

#[test]
fn different_seeds_give_different_partitions() {
    let labels = balanced_labels(1000, 10);
    let differing = (0..10u64)
        .filter(|&s| {
            let a = dirichlet(&labels, 10, 10, 0.5, 1, &mut rng(s)).unwrap();
            let b = dirichlet(&labels, 10, 10, 0.5, 1, &mut rng(s + 100)).unwrap();
            let c = iid(1000, 10, &mut rng(s)).unwrap();
            let d = iid(1000, 10, &mut rng(s + 100)).unwrap();
            a != b && c != d
        })
        .count();
    assert_eq!(differing, 10);
}

#[test]
fn dirichlet_skew_grows_as_alpha_shrinks() {
    let labels = balanced_labels(5000, 10);
    let mean_tv = |alpha: f64| {
        (0..5u64)
            .map(|s| {
                let p = dirichlet(&labels, 10, 20, alpha, 0, &mut rng(s)).unwrap();
                mean_total_variation(&p, &labels, 10)
            })
            .sum::<f64>()
            / 5.0
    };
    let (tiny, one, large) = (mean_tv(0.05), mean_tv(1.0), mean_tv(100.0));
    assert!(tiny > one && one > large, "{tiny} {one} {large}");
    assert!(tiny > 0.6 && large < 0.1, "{tiny} {large}");
    let iid_tv = mean_total_variation(&iid(5000, 20, &mut rng(0)).unwrap(), &labels, 10);
    assert!(iid_tv < 0.1, "{iid_tv}");
}

#[test]
fn reference_split_gives_holders_about_half_the_data() {
    let labels = balanced_labels(50_000, 10);
    let holders: Vec<usize> = (0..20).collect();
    let split = dirichlet_labeled_unlabeled(&labels, 10, 100, &holders, 5, 5, 0.1, 10, &mut rng(0))
        .unwrap();
    assert_split_covers(&split, 50_000, &holders);
    let unlabeled: usize = split.unlabeled.iter().map(Vec::len).sum();
    assert!((20_000..=30_000).contains(&unlabeled), "{unlabeled}");
    assert!(
        split
            .labeled
            .iter()
            .chain(&split.unlabeled[..20])
            .all(|c| c.len() >= 10)
    );
}

#[test]
fn natural_accepts_covers_and_rejects_others() {
    assert_eq!(
        natural(vec![vec![2, 0], vec![1]], 3).unwrap(),
        vec![vec![0, 2], vec![1]]
    );
    assert!(natural(vec![vec![0], vec![0, 1, 2]], 3).is_err());
    assert!(natural(vec![vec![0, 1], vec![]], 2).is_err());
}

fn param_name(err: DataError) -> &'static str {
    match err {
        DataError::InvalidParameter { name, .. } => name,
        other => panic!("expected InvalidParameter, got {other}"),
    }
}

#[test]
fn bad_parameters_are_typed_errors() {
    let labels = balanced_labels(100, 10);
    let r = &mut rng(0);
    assert_eq!(param_name(iid(10, 0, r).unwrap_err()), "clients");
    assert_eq!(param_name(iid(10, 11, r).unwrap_err()), "clients");
    for alpha in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert_eq!(
            param_name(dirichlet(&labels, 10, 5, alpha, 0, r).unwrap_err()),
            "alpha"
        );
    }
    assert_eq!(
        param_name(dirichlet(&labels, 10, 0, 1.0, 0, r).unwrap_err()),
        "clients"
    );
    assert_eq!(
        param_name(dirichlet(&labels, 9, 5, 1.0, 0, r).unwrap_err()),
        "labels"
    );
    assert_eq!(
        param_name(dirichlet(&labels, 10, 5, 1.0, 21, r).unwrap_err()),
        "min_per_client"
    );
    assert_eq!(
        param_name(shards(&labels, 10, 11, r).unwrap_err()),
        "shards_per_client"
    );
    assert_eq!(
        param_name(shards(&labels, 10, 0, r).unwrap_err()),
        "shards_per_client"
    );
    let split = |holders: &[usize], r: &mut ChaCha8Rng| {
        dirichlet_labeled_unlabeled(&labels, 10, 5, holders, 1, 1, 1.0, 0, r).unwrap_err()
    };
    assert_eq!(param_name(split(&[5], r)), "holders");
    assert_eq!(param_name(split(&[1, 1], r)), "holders");
    assert_eq!(
        param_name(dirichlet_labeled_unlabeled(&labels, 10, 5, &[0], 1, 2, 1.0, 0, r).unwrap_err()),
        "kept_per_holder"
    );
    let base = iid(100, 4, r).unwrap();
    assert_eq!(
        param_name(fraction_split(&base, 1.5, &[0], r).unwrap_err()),
        "unlabeled_fraction"
    );
    assert_eq!(
        param_name(fraction_split(&base, 0.5, &[4], r).unwrap_err()),
        "holders"
    );
}

#[test]
fn unreachable_minimum_is_a_partition_error() {
    // One class, two clients, tiny alpha: an even 5/5 split is (almost) never drawn.
    let labels = vec![0u32; 10];
    let err = dirichlet(&labels, 1, 2, 0.001, 5, &mut rng(0)).unwrap_err();
    assert!(matches!(err, DataError::Partition { .. }), "{err}");
    assert!(err.to_string().contains(&MAX_DRAWS.to_string()), "{err}");
}
