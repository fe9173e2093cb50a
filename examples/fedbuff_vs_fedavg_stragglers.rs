//! Example: FedBuff against synchronous FedAvg on a fleet with stragglers and dropouts —
//! the same fleet, the same data, the same number of updates per server step.
//!
//! ```text
//!                      ┌──────────── server ────────────┐
//!        FedAvg: waits for all 10 of a round     FedBuff: 20 train at once,
//!        (a lost job costs the whole timeout)    steps every 10 replies
//!                      └──────┬─────────────┬───────────┘
//!                  28 fast phones      12 slow phones (10× slower)
//!                  every device loses 10 % of its jobs
//! ```
//!
//! It prints each method's virtual time to 80 % test accuracy and its final accuracy, and
//! checks that FedBuff got there in less virtual time.
//!
//! Run: `cargo run --release --example fedbuff_vs_fedavg_stragglers`

use flotilla_experiment::report::Summary;
use flotilla_experiment::{ConfigSource, ExperimentConfig, Method, Prepared, RunOptions};
use flotilla_fl::ModelRole;

const CONFIG: &str = r#"
name = "fedbuff_vs_fedavg"
methods = ["fedavg", "fedbuff"]
rounds = 35
accuracy_targets = [0.8]

[data]
dataset = "synthetic"
split = "dirichlet"
alpha = 1.0
unlabeled_shards_per_strong = 0

[synthetic]
train_samples = 8000
test_samples = 2000

[models]
target = "mlp:32-64-10"
auxiliary = "mlp:32-16-10"

[fedavg]
model = "target"

[training]
local_steps = 20
lr = 0.05
lr_milestones = []
clients_per_round = 10
stage_timeout_s = 20.0

[async]
concurrency = 20
buffer = 10
job_timeout_s = 20.0

[fleet]
clients = 40

[[fleet.groups]]
name = "fast"
fraction = 0.7
device = { preset = "phone-high", dropout = 0.1 }

[[fleet.groups]]
name = "slow"
fraction = 0.3
device = { preset = "phone-low", dropout = 0.1 }
"#;

fn main() -> anyhow::Result<()> {
    let config = ExperimentConfig::load(&ConfigSource::Text(CONFIG.into()), &[])?;
    let prepared = Prepared::new(config)?;
    let mut outcomes = Vec::new();
    for method in [Method::Fedavg, Method::Fedbuff] {
        let outcome = prepared.run(method, 1, RunOptions::default())?;
        let reached = outcome.time_to_accuracy(ModelRole::Target, &[0.8])[0].virtual_time_s;
        println!(
            "{method:>8}: {} to 80 %, final {:.2} % after {:.0} s; jobs {:?}",
            reached.map_or("never".to_string(), |t| format!("{t:.0} s")),
            100.0 * outcome.final_accuracy(ModelRole::Target).unwrap_or(0.0),
            outcome.virtual_time_s,
            outcome.jobs,
        );
        outcomes.push((reached, outcome));
    }
    let runs: Vec<_> = outcomes.iter().map(|(_, o)| o.clone()).collect();
    println!("{}", Summary::new(&prepared.config, &runs).table());
    let (Some(fedavg), Some(fedbuff)) = (outcomes[0].0, outcomes[1].0) else {
        anyhow::bail!("both methods should reach 80 %");
    };
    anyhow::ensure!(
        fedbuff < fedavg,
        "FedBuff ({fedbuff:.0} s) should reach 80 % before FedAvg ({fedavg:.0} s)"
    );
    println!(
        "FedBuff reached 80 % in {:.0} % of FedAvg's virtual time",
        100.0 * fedbuff / fedavg
    );
    Ok(())
}
