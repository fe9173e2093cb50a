//! Parity: the actix runtime at 1, 2 and 8 workers, the sequential executor, and the
//! sequential executor with a thread pool for jobs all produce the same run.

use crate::simulation::{Scenario, build, scenarios};
use flotilla::actors::{ActixRuntime, PoolRunner};
use flotilla::sim::{SimTime, StopAt, secs};
use proptest::prelude::*;

fn stop() -> StopAt {
    StopAt::Time(SimTime::ZERO + secs(2))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn actix_matches_the_sequential_executor_at_any_worker_count(s in scenarios()) {
        let mut reference = build(&s);
        let expected = reference.run(stop());
        for workers in [1, 2, 8] {
            let sim = ActixRuntime::new(workers).run(build(&s), stop()).unwrap();
            prop_assert_eq!(&sim.world().report(), &expected, "{} workers", workers);
        }
        let mut pooled = build(&s);
        let report = pooled.run_with(stop(), &mut PoolRunner::new(2));
        prop_assert_eq!(&report, &expected);
    }
}

#[test]
fn actix_runs_differ_by_seed_and_contain_failures() {
    let s = Scenario {
        seed: 5,
        nodes: 10,
        loss: 0.1,
        latency_ms: 8,
        dropout: 0.2,
        markov: true,
        panic_at: Some(1),
    };
    let a = ActixRuntime::new(2)
        .run(build(&s), StopAt::Idle)
        .unwrap()
        .world()
        .report();
    let b = ActixRuntime::new(2)
        .run(
            build(&Scenario {
                seed: 6,
                ..s.clone()
            }),
            StopAt::Idle,
        )
        .unwrap()
        .world()
        .report();
    assert_ne!(a.trace_hash, b.trace_hash);
    assert_eq!(a, build(&s).run(StopAt::Idle));
}
