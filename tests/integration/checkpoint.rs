//! Checkpoints: a run paused, saved and restored onto a fresh build goes on exactly as the
//! uninterrupted run, on either executor.

use crate::simulation::{Msg, Scenario, build, scenarios};
use flotilla::actors::{ActixRuntime, PoolRunner};
use flotilla::sim::{
    Checkpoint, CheckpointError, InlineRunner, RunReport, Simulation, StopAt, TraceRecord,
};
use proptest::prelude::*;

/// The label the gossip nodes record when a ping ends: the pause points.
const PAUSE: &str = "ping_done";

/// Runs `sim` to the end on the sequential executor, taking a checkpoint at every pause;
/// returns the report, the kept records and the checkpoints' bytes.
fn run_checkpointing(
    mut sim: Simulation<Msg>,
    runner: &mut InlineRunner<Msg>,
) -> (RunReport, Vec<TraceRecord>, Vec<Vec<u8>>) {
    sim.pause_after_record(PAUSE);
    let mut saved = Vec::new();
    loop {
        let report = sim.run_with(StopAt::Idle, runner);
        if !sim.take_pause() {
            let records = sim.finish().unwrap().records;
            return (report, records, saved);
        }
        saved.push(sim.checkpoint_with(runner).unwrap().to_bytes().unwrap());
    }
}

/// The same on actix with `workers` threads: legs between pauses share one job pool.
fn run_checkpointing_on_actix(
    mut sim: Simulation<Msg>,
    mut pool: PoolRunner<Msg>,
    workers: usize,
) -> (RunReport, Vec<TraceRecord>) {
    sim.pause_after_record(PAUSE);
    let runtime = ActixRuntime::new(workers);
    loop {
        (sim, pool) = runtime.run_with_pool(sim, StopAt::Idle, pool).unwrap();
        if !sim.take_pause() {
            let report = sim.world().report();
            return (report, sim.finish().unwrap().records);
        }
        sim.checkpoint_with(&mut pool).unwrap();
    }
}

fn restored(s: &Scenario, bytes: &[u8], runner: &mut InlineRunner<Msg>) -> Simulation<Msg> {
    let mut sim = build(s);
    sim.restore_with(Checkpoint::from_bytes(bytes).unwrap(), runner)
        .unwrap();
    sim
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Resuming from any checkpoint gives the uninterrupted run's report (time, counters,
    /// failures, trace hash) and every one of its trace records.
    #[test]
    fn resuming_from_any_checkpoint_gives_the_same_run(s in scenarios(), pick in any::<prop::sample::Index>()) {
        let (report, records, saved) = run_checkpointing(build(&s), &mut InlineRunner::default());
        prop_assume!(!saved.is_empty());
        let k = pick.index(saved.len());
        let mut runner = InlineRunner::default();
        let sim = restored(&s, &saved[k], &mut runner);
        let (again, again_records, later) = run_checkpointing(sim, &mut runner);
        prop_assert_eq!(&again, &report);
        prop_assert_eq!(&again_records, &records);
        // The later checkpoints are the same bytes too.
        prop_assert_eq!(&later[..], &saved[k + 1..]);
    }

    /// A checkpoint taken on actix resumes on actix with another thread count, to the
    /// sequential executor's bits.
    #[test]
    fn checkpoints_resume_across_executors(s in scenarios(), pick in any::<prop::sample::Index>()) {
        let (report, records, saved) = run_checkpointing(build(&s), &mut InlineRunner::default());
        let (on_actix, actix_records) = run_checkpointing_on_actix(build(&s), PoolRunner::new(2), 2);
        prop_assert_eq!(&on_actix, &report);
        prop_assert_eq!(&actix_records, &records);
        prop_assume!(!saved.is_empty());
        let k = pick.index(saved.len());
        let mut pool = PoolRunner::new(1);
        let mut sim = build(&s);
        sim.restore_with(Checkpoint::from_bytes(&saved[k]).unwrap(), &mut pool).unwrap();
        let (resumed, resumed_records) = run_checkpointing_on_actix(sim, pool, 1);
        prop_assert_eq!(&resumed, &report);
        prop_assert_eq!(&resumed_records, &records);
    }
}

/// A checkpoint refuses a run of another seed, another fleet, or damaged bytes.
#[test]
fn a_checkpoint_fits_only_its_own_run() {
    let s = Scenario {
        seed: 7,
        nodes: 10,
        loss: 0.1,
        latency_ms: 10,
        dropout: 0.1,
        markov: true,
        panic_at: None,
    };
    let (_, _, saved) = run_checkpointing(build(&s), &mut InlineRunner::default());
    let bytes = saved.first().expect("the gossip run pauses");
    let refuse = |other: &Scenario, bytes: &[u8]| {
        let mut sim = build(other);
        Checkpoint::from_bytes(bytes).and_then(|c| sim.restore(c))
    };
    let err = refuse(
        &Scenario {
            seed: 8,
            ..s.clone()
        },
        bytes,
    )
    .unwrap_err();
    assert!(err.to_string().contains("another seed"), "{err}");
    let err = refuse(
        &Scenario {
            nodes: 11,
            ..s.clone()
        },
        bytes,
    )
    .unwrap_err();
    assert!(err.to_string().contains("nodes"), "{err}");
    for cut in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
        let err = refuse(&s, &bytes[..cut]).unwrap_err();
        assert!(
            matches!(err, CheckpointError::Format(_)),
            "cut at {cut}: {err}"
        );
    }
    let mut flipped = bytes.clone();
    flipped[9] ^= 0xff;
    assert!(matches!(
        refuse(&s, &flipped),
        Err(CheckpointError::Format(_))
    ));
}
