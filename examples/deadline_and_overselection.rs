//! Example: round policies for a synchronous strategy — wait for all, a deadline, and a
//! deadline with over-selection — on one fleet with slow and flaky devices.
//!
//! ```text
//!   round r:  server ──assign──► k clients (or ceil(1.5·k) when over-selecting)
//!             wait for all ....... until every reply, or the 20 s safety timeout
//!             deadline ........... close at 2 s; later replies count as late
//!   (12 of the 40 devices need about 2.2 s for a job, the rest a few milliseconds)
//!             deadline + over-sel  close at the k-th reply or 2 s; the rest are cancelled
//! ```
//!
//! It prints, per policy, the mean virtual time of a round, the final accuracy and where
//! every job went (aggregated, late, cancelled, unanswered), and checks that a deadline
//! shortens the rounds and that over-selection keeps more updates per round than the
//! deadline alone.
//!
//! Run: `cargo run --release --example deadline_and_overselection`

use flotilla_experiment::{ConfigSource, ExperimentConfig, Method, Prepared, RunOptions};
use flotilla_fl::ModelRole;

const CONFIG: &str = r#"
name = "policies"
methods = ["fedavg"]
rounds = 15

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

[training]
local_steps = 20
lr = 0.05
lr_milestones = []
clients_per_round = 10
stage_timeout_s = 20.0

[fleet]
clients = 40

[[fleet.groups]]
name = "fast"
fraction = 0.7
device = { preset = "phone-high", dropout = 0.1 }

[[fleet.groups]]
name = "slow"
fraction = 0.3
device = { preset = "phone-low", dropout = 0.1, speed = 5e6 }
"#;

fn main() -> anyhow::Result<()> {
    let policies: [(&str, &[&str]); 3] = [
        ("wait for all", &[]),
        ("deadline 2 s", &["round_policy.deadline_s=2.0"]),
        (
            "deadline + 1.5x",
            &[
                "round_policy.deadline_s=2.0",
                "round_policy.over_selection=1.5",
            ],
        ),
    ];
    let mut rows = Vec::new();
    for (name, sets) in policies {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let config = ExperimentConfig::load(&ConfigSource::Text(CONFIG.into()), &sets)?;
        let outcome = Prepared::new(config)?.run(Method::Fedavg, 1, RunOptions::default())?;
        let per_round = outcome.virtual_time_s / outcome.rounds.len() as f64;
        let per_stage = outcome.jobs.aggregated as f64 / outcome.rounds.len() as f64;
        let accuracy = outcome.final_accuracy(ModelRole::Target).unwrap_or(0.0);
        let j = &outcome.jobs;
        println!(
            "{name:>16}: {per_round:5.2} s/round, {per_stage:4.1} updates/round, final {:.2} %; \
             assigned {}, aggregated {}, late {}, cancelled {}, unanswered {}",
            100.0 * accuracy,
            j.assigned,
            j.aggregated,
            j.late,
            j.cancelled,
            j.unanswered
        );
        anyhow::ensure!(j.adds_up(), "{name}: every job is accounted for");
        rows.push((per_round, per_stage));
    }
    anyhow::ensure!(
        rows[1].0 < rows[0].0,
        "a deadline should shorten the rounds"
    );
    anyhow::ensure!(
        rows[2].1 >= rows[1].1,
        "over-selection should keep at least as many updates per round as the deadline alone"
    );
    println!(
        "a 2 s deadline made rounds {:.1}x shorter; over-selection kept {:.1} updates per \
         round against {:.1}",
        rows[0].0 / rows[1].0,
        rows[2].1,
        rows[1].1
    );
    Ok(())
}
