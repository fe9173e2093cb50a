//! Virtual time never clamps: a timer, a delivery or a job that would end beyond the
//! clock's range fails the node that asked for it, and the clock stays where it was.

#![allow(clippy::unwrap_used)]

use flotilla_sim::{
    Context, DeviceProfile, Event, LinkSpec, NetworkModel, Node, NodeError, NodeId, Seed,
    SimDuration, SimTime, Simulation, StopAt, millis,
};

/// What a [`Probe`] does when it starts.
#[derive(Debug, Clone, Copy)]
enum Act {
    Timer(SimDuration),
    Send(NodeId),
    Job(u64),
}

/// Does one thing at start, and counts what comes back.
#[derive(Debug)]
struct Probe {
    act: Act,
}

impl Node<u32> for Probe {
    fn on_event(&mut self, event: Event<u32>, ctx: &mut Context<'_, u32>) -> Result<(), NodeError> {
        if let Event::Start = event {
            match self.act {
                Act::Timer(after) => ctx.set_timer(after, 7),
                Act::Send(to) => ctx.send(to, 1),
                Act::Job(flops) => {
                    ctx.spawn_job(flops, || Ok(2));
                }
            }
        }
        Ok(())
    }
}

fn run(network: NetworkModel, probes: &[(Act, Option<DeviceProfile>)]) -> flotilla_sim::RunReport {
    let mut builder = Simulation::builder(Seed(1), network);
    for (i, (act, device)) in probes.iter().enumerate() {
        builder.add_node(format!("n{i}"), Probe { act: *act }, device.clone());
    }
    builder.build().run(StopAt::Idle)
}

fn fast_link() -> NetworkModel {
    NetworkModel::new(LinkSpec::latency(millis(1)))
}

#[test]
fn a_timer_beyond_the_clock_fails_its_node() {
    let report = run(
        fast_link(),
        &[
            (Act::Timer(SimDuration::MAX), None),
            (Act::Timer(millis(5)), None),
        ],
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = &report.failures[0];
    assert_eq!(failure.node, NodeId(0));
    assert!(failure.reason.contains("timer 7"), "{}", failure.reason);
    assert!(
        failure.reason.contains("virtual clock"),
        "{}",
        failure.reason
    );
    // The other node's timer fired; the clock was not pushed to "never".
    assert_eq!(report.end_time, SimTime::ZERO + millis(5));
}

#[test]
fn a_delivery_beyond_the_clock_fails_its_sender() {
    let endless = NetworkModel::new(LinkSpec::latency(SimDuration(u64::MAX)));
    let report = run(
        endless,
        &[(Act::Send(NodeId(1)), None), (Act::Timer(millis(5)), None)],
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].node, NodeId(0));
    assert!(
        report.failures[0]
            .reason
            .contains("delivery beyond the virtual clock"),
        "{}",
        report.failures[0].reason
    );
    assert_eq!(report.counters.delivered, 0);
    assert_eq!(report.end_time, SimTime::ZERO + millis(5));
}

#[test]
fn a_job_beyond_the_clock_fails_its_node() {
    let slow = DeviceProfile {
        flops_per_sec: 1e-3,
        compute_jitter: 0.0,
        ..DeviceProfile::preset("phone-low").unwrap()
    };
    let report = run(
        fast_link(),
        &[
            (Act::Job(u64::MAX), Some(slow.clone())),
            (Act::Job(1_000), Some(slow)),
        ],
    );
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].node, NodeId(0));
    assert!(
        report.failures[0]
            .reason
            .contains("longer than the virtual clock can count"),
        "{}",
        report.failures[0].reason
    );
    // The second node's job (1,000 FLOP at 1e-3 FLOP/s: 10⁶ s) completed.
    assert_eq!(
        report.end_time,
        SimTime::ZERO + flotilla_sim::secs(1_000_000)
    );
}
