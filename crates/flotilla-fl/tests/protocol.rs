//! The protocol nodes with the built-in FedAvg: a diverged client's update (a non-finite
//! value) is rejected and counted instead of poisoning the global model.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use flotilla_fl::{
    Assignment, ClientEnv, ClientStrategy, FedAvg, FlError, LocalWorker, Reply, RoundPolicy,
    Synchronous, Work,
};
use flotilla_sim::{NodeId, secs};
use std::sync::Arc;

/// The built-in worker, except that node 2's models come back as NaN.
#[derive(Debug)]
struct Diverging;

impl ClientStrategy for Diverging {
    type Work = Work;

    fn flops(&self, env: &ClientEnv, a: &Assignment<Work>) -> Result<u64, FlError> {
        LocalWorker.flops(env, a)
    }

    fn execute(&self, env: &ClientEnv, a: Assignment<Work>) -> Result<Reply, FlError> {
        let mut reply = LocalWorker.execute(env, a)?;
        if env.node == NodeId(2) {
            for p in &mut reply.models {
                std::sync::Arc::make_mut(&mut p.weights).params[0] = f32::NAN;
            }
        }
        Ok(reply)
    }
}

#[test]
fn a_non_finite_update_is_rejected_and_counted() {
    let task = tiny_task(5, 600);
    let policy = RoundPolicy::wait_all(Some(secs(60)));
    let run = run_with(
        5,
        &task,
        sync_coordinator(&task, None, policy, 2, 3),
        Arc::new(Diverging),
        &[None, None, None],
        network(1),
    );
    let coordinator = run.coordinator::<Synchronous<FedAvg>>();
    assert!(coordinator.finished());
    for round in coordinator.history() {
        let stage = &round.stages[0];
        assert_eq!(stage.assigned, vec![NodeId(1), NodeId(2), NodeId(3)]);
        assert_eq!(stage.rejected, vec![NodeId(2)]);
        assert_eq!(stage.replied, vec![NodeId(1), NodeId(3)]);
        assert!(round.evaluations[0].loss.is_finite());
    }
    assert!(
        coordinator
            .logic()
            .strategy()
            .global()
            .params
            .iter()
            .all(|v| v.is_finite())
    );
}
