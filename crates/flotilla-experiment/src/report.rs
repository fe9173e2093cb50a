//! What a set of runs is reported as: `metrics.csv`, `stages.csv`, `summary.json` and the
//! results table. Nothing here depends on wall time or thread count except the fields
//! named `wall_time_s` in the summary.

use crate::{ExperimentConfig, GroupParticipation, Method, RunOutcome, Verdict};
use flotilla_fl::ModelRole;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// The header of `metrics.csv`.
pub const METRICS_HEADER: &str = "method,seed,round,virtual_time_s,model,test_accuracy,test_loss";

/// `metrics.csv`: one row per evaluation of a global model, runs in the order given.
pub fn metrics_csv(outcomes: &[RunOutcome]) -> String {
    let mut out = format!("{METRICS_HEADER}\n");
    for o in outcomes {
        for e in &o.evaluations {
            // `writeln!` into a String cannot fail.
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{}",
                o.method, o.seed, e.round, e.virtual_time_s, e.role, e.accuracy, e.loss
            );
        }
    }
    out
}

/// `stages.csv`: per round and stage, how many clients were assigned, replied and were
/// rejected (a model with a non-finite value), and
/// the mean of every statistic clients (`client_*`) and the server job (`server_*`)
/// reported — the instrumentation of the distillation phase. A stage with no statistic
/// (no reply was aggregated and no server job ran) still has one row, with the statistic
/// `none` and an empty value.
pub fn stages_csv(outcomes: &[RunOutcome]) -> String {
    let mut out =
        String::from("method,seed,round,stage,assigned,replied,rejected,statistic,value\n");
    for o in outcomes {
        for r in &o.rounds {
            for s in &r.stages {
                let mut rows: Vec<(String, String)> = s
                    .client_stats
                    .iter()
                    .map(|(k, v)| (format!("client_{k}"), v.to_string()))
                    .chain(
                        s.server_stats
                            .iter()
                            .map(|(k, v)| (format!("server_{k}"), v.to_string())),
                    )
                    .collect();
                if rows.is_empty() {
                    rows.push(("none".into(), String::new()));
                }
                for (name, value) in rows {
                    let _ = writeln!(
                        out,
                        "{},{},{},{},{},{},{},{},{}",
                        o.method,
                        o.seed,
                        r.round,
                        s.stage,
                        s.assigned.len(),
                        s.replied.len(),
                        s.rejected.len(),
                        name,
                        value
                    );
                }
            }
        }
    }
    out
}

/// The header of `updates.csv`.
pub const UPDATES_HEADER: &str =
    "method,seed,server,client,node,round,stage,attempt,arrived_s,version,staleness,fate";

/// `updates.csv`: every reply that reached the server (node 0) or an edge aggregator
/// (`server` is the receiving node), in arrival order per run and receiver: the client
/// (index, when a client sent it, and node), the assignment it answered (the version its work started from,
/// stage, attempt), when it arrived, the version when its fate was decided, its staleness
/// and its fate (`aggregated`, `rejected`, `late`, `cancelled`, `short_stage`).
pub fn updates_csv(outcomes: &[RunOutcome]) -> String {
    let mut out = format!("{UPDATES_HEADER}\n");
    for o in outcomes {
        // Client index by node id (a lookup per update: a scan was quadratic in the fleet).
        let mut index = BTreeMap::new();
        for (c, node) in o.client_nodes.iter().enumerate() {
            index.entry(*node).or_insert(c);
        }
        let receivers = std::iter::once((flotilla_sim::NodeId(0), &o.updates))
            .chain(o.edges.iter().map(|e| (e.node, &e.updates)));
        for (server, u) in receivers.flat_map(|(n, us)| us.iter().map(move |u| (n, u))) {
            let client = index
                .get(&u.client)
                .map_or(String::new(), |c| c.to_string());
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                o.method,
                o.seed,
                server.0,
                client,
                u.client.0,
                u.assignment.round,
                u.assignment.stage,
                u.assignment.attempt,
                u.arrived_s,
                u.version,
                u.staleness,
                u.fate
            );
        }
    }
    out
}

/// When a run's reported model first reached an accuracy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimeToAccuracy {
    /// The target accuracy (fraction).
    pub target: f64,
    /// Virtual time of the first evaluation at or above it \[s\] (`None`: never).
    pub virtual_time_s: Option<f64>,
    /// Its round (version).
    pub round: Option<u32>,
}

/// How often one client took part in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientParticipation {
    /// Client index (as in the split; node `client + 1`).
    pub client: usize,
    /// Assignments it was given.
    pub assigned: u32,
    /// Its replies that were aggregated.
    pub aggregated: u32,
}

/// Final and best accuracy of one model in one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelResult {
    /// Accuracy after the last round.
    pub final_accuracy: f64,
    /// Best accuracy over the evaluated rounds.
    pub best_accuracy: f64,
}

/// One run in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The method.
    pub method: Method,
    /// The seed.
    pub seed: u64,
    /// Per model (`target`, `auxiliary`) the method trains.
    pub models: BTreeMap<String, ModelResult>,
    /// Per model, whether it is a result (`ok`), `diverged` (with the round and why) or
    /// `no_update` (nothing was ever aggregated into it).
    pub verdicts: BTreeMap<String, Verdict>,
    /// Rounds in which no stage aggregated a reply.
    pub empty_rounds: Vec<u32>,
    /// Client replies rejected because their model held a non-finite value.
    pub rejected_replies: usize,
    /// Test accuracy of always predicting the most frequent label.
    pub chance_accuracy: f64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Messages delivered.
    pub messages_delivered: u64,
    /// Messages dropped (any reason).
    pub messages_dropped: u64,
    /// Bytes clients sent.
    pub bytes_up: u64,
    /// Bytes clients received.
    pub bytes_down: u64,
    /// Training samples moved to the server.
    pub samples_centralised: u64,
    /// Clients registered, and how many could train the target.
    pub clients: (usize, usize),
    /// How each group of clients took part.
    pub groups: Vec<GroupParticipation>,
    /// Every assignment by what became of it: `assigned` is the sum of the other counts.
    pub jobs: flotilla_fl::JobTally,
    /// Why the `unanswered` jobs went unanswered: assignments lost, replies lost, devices
    /// failed, refused (they add up to `jobs.unanswered`; absent under edges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unanswered: Option<crate::Unanswered>,
    /// Under edge aggregators: each edge's node, clients and its clients' job tally.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<crate::EdgeBooks>,
    /// Aggregated updates by staleness (versions committed while they were out).
    pub staleness_histogram: BTreeMap<u32, u64>,
    /// Per client, assignments given and replies aggregated.
    pub client_participation: Vec<ClientParticipation>,
    /// When the reported model first reached each of `accuracy_targets`.
    pub time_to_accuracy: Vec<TimeToAccuracy>,
    /// Virtual time the last round (version) closed \[s\].
    pub virtual_time_s: f64,
    /// Virtual time the simulation went idle \[s\] (pending timers and final evaluations
    /// after the last round).
    pub simulation_end_s: f64,
    /// Wall time of the run \[s\].
    pub wall_time_s: f64,
    /// Trace hash.
    pub trace_hash: String,
}

impl RunOutcome {
    /// Aggregated updates by staleness.
    pub fn staleness_histogram(&self) -> BTreeMap<u32, u64> {
        let mut histogram = BTreeMap::new();
        for u in &self.updates {
            if u.fate == flotilla_fl::Fate::Aggregated {
                *histogram.entry(u.staleness).or_default() += 1;
            }
        }
        histogram
    }

    /// Per client, assignments given (from the stage records) and replies aggregated.
    pub fn client_participation(&self) -> Vec<ClientParticipation> {
        let index: BTreeMap<flotilla_sim::NodeId, usize> = self
            .client_nodes
            .iter()
            .enumerate()
            .map(|(c, n)| (*n, c))
            .collect();
        let mut rows: Vec<ClientParticipation> = (0..self.client_nodes.len())
            .map(|client| ClientParticipation {
                client,
                assigned: 0,
                aggregated: 0,
            })
            .collect();
        let edge_rounds = self.edges.iter().flat_map(|e| &e.rounds);
        for stage in self
            .rounds
            .iter()
            .chain(edge_rounds)
            .flat_map(|r| &r.stages)
        {
            for node in &stage.assigned {
                if let Some(&c) = index.get(node) {
                    rows[c].assigned += 1;
                }
            }
        }
        let edge_updates = self.edges.iter().flat_map(|e| &e.updates);
        for u in self.updates.iter().chain(edge_updates) {
            if u.fate == flotilla_fl::Fate::Aggregated
                && let Some(&c) = index.get(&u.client)
            {
                rows[c].aggregated += 1;
            }
        }
        rows
    }

    /// When `role`'s accuracy first reached each of `targets`.
    pub fn time_to_accuracy(&self, role: ModelRole, targets: &[f64]) -> Vec<TimeToAccuracy> {
        targets
            .iter()
            .map(|&target| {
                let first = self
                    .evaluations
                    .iter()
                    .find(|e| e.role == role && e.accuracy >= target);
                TimeToAccuracy {
                    target,
                    virtual_time_s: first.map(|e| e.virtual_time_s),
                    round: first.map(|e| e.round),
                }
            })
            .collect()
    }
}

impl RunSummary {
    /// The summary of `o`, with the time its reported model (`fedavg_model` for the FedAvg
    /// family) took to reach each of `targets`.
    pub fn new(o: &RunOutcome, fedavg_model: ModelRole, targets: &[f64]) -> Self {
        let mut models = BTreeMap::new();
        let mut verdicts = BTreeMap::new();
        for role in ModelRole::ALL {
            if let (Some(final_accuracy), Some(best_accuracy)) =
                (o.final_accuracy(role), o.best_accuracy(role))
            {
                models.insert(
                    role.name().to_string(),
                    ModelResult {
                        final_accuracy,
                        best_accuracy,
                    },
                );
                verdicts.insert(role.name().to_string(), o.verdict(role));
            }
        }
        Self {
            method: o.method,
            seed: o.seed,
            models,
            verdicts,
            empty_rounds: o.empty_rounds(),
            rejected_replies: o.rejected_replies(),
            chance_accuracy: o.chance_accuracy,
            messages_sent: o.counters.sent,
            messages_delivered: o.counters.delivered,
            messages_dropped: o.counters.dropped_total(),
            bytes_up: o.counters.bytes_up,
            bytes_down: o.counters.bytes_down,
            samples_centralised: o.samples_centralised,
            clients: o.clients,
            groups: o.groups.clone(),
            jobs: o.jobs.clone(),
            unanswered: o.unanswered,
            edges: o.edges.clone(),
            staleness_histogram: o.staleness_histogram(),
            client_participation: o.client_participation(),
            time_to_accuracy: o.time_to_accuracy(o.method.reported_model(fedavg_model), targets),
            virtual_time_s: o.virtual_time_s,
            simulation_end_s: o.simulation_end_s,
            wall_time_s: o.wall_time_s,
            trace_hash: o.trace_hash.clone(),
        }
    }
}

/// Mean and sample standard deviation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MeanStd {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for one value).
    pub std: f64,
    /// Number of values.
    pub n: usize,
}

impl MeanStd {
    /// Of `values` (`None` if empty).
    pub fn of(values: &[f64]) -> Option<Self> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let var = if n > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
        } else {
            0.0
        };
        Some(Self {
            mean,
            std: var.sqrt(),
            n,
        })
    }
}

/// One method's line of the results table, over seeds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodSummary {
    /// The method.
    pub method: Method,
    /// The model its result is read from.
    pub reported_model: ModelRole,
    /// Final accuracy of the reported model, over the runs where it is a result.
    pub final_accuracy: Option<MeanStd>,
    /// Final accuracy of the target, if the method trains it, over the runs where it is a
    /// result.
    pub target_final: Option<MeanStd>,
    /// Final accuracy of the auxiliary model, if the method trains it, over the runs where
    /// it is a result.
    pub auxiliary_final: Option<MeanStd>,
    /// Runs left out of the means above: a model that diverged or was never updated.
    pub excluded: Vec<Excluded>,
    /// Rounds, over all seeds, in which no update was aggregated.
    pub empty_rounds: usize,
    /// Mean virtual time \[s\].
    pub virtual_time_s: f64,
    /// Mean bytes up + down per run \[MB\].
    pub traffic_mb: f64,
    /// Training samples moved to the server per run.
    pub samples_centralised: u64,
    /// Per accuracy target, the virtual time to reach it over the runs that did, and how
    /// many runs did.
    pub time_to_accuracy: Vec<TargetSummary>,
}

/// Time to one accuracy target over a method's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSummary {
    /// The target (fraction).
    pub target: f64,
    /// Virtual time \[s\] over the runs that reached it (`None`: none did).
    pub virtual_time_s: Option<MeanStd>,
    /// Runs that reached it.
    pub reached: usize,
    /// Runs.
    pub runs: usize,
}

/// A run's model left out of a method's means.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Excluded {
    /// The run's seed.
    pub seed: u64,
    /// The model.
    pub model: ModelRole,
    /// Why it is not a result.
    pub verdict: Verdict,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The resolved configuration.
    pub config: ExperimentConfig,
    /// Per method, over seeds, in the config's method order.
    pub methods: Vec<MethodSummary>,
    /// Every run.
    pub runs: Vec<RunSummary>,
}

impl Summary {
    /// The summary of `outcomes` of `config`.
    pub fn new(config: &ExperimentConfig, outcomes: &[RunOutcome]) -> Self {
        let mut methods = Vec::new();
        for &method in &config.methods {
            let runs: Vec<&RunOutcome> = outcomes.iter().filter(|o| o.method == method).collect();
            if runs.is_empty() {
                continue;
            }
            let of = |role: ModelRole| {
                let values: Vec<f64> = runs
                    .iter()
                    .filter(|o| o.verdict(role).is_ok())
                    .filter_map(|o| o.final_accuracy(role))
                    .collect();
                MeanStd::of(&values)
            };
            let excluded = runs
                .iter()
                .flat_map(|o| {
                    ModelRole::ALL.into_iter().filter_map(|role| {
                        let verdict = o.verdict(role);
                        (o.final_accuracy(role).is_some() && !verdict.is_ok()).then_some(Excluded {
                            seed: o.seed,
                            model: role,
                            verdict,
                        })
                    })
                })
                .collect();
            let reported_model = method.reported_model(config.fedavg.model);
            let n = runs.len() as f64;
            methods.push(MethodSummary {
                method,
                reported_model,
                final_accuracy: of(reported_model),
                target_final: of(ModelRole::Target),
                auxiliary_final: of(ModelRole::Auxiliary),
                excluded,
                empty_rounds: runs.iter().map(|o| o.empty_rounds().len()).sum(),
                virtual_time_s: runs.iter().map(|o| o.virtual_time_s).sum::<f64>() / n,
                traffic_mb: runs
                    .iter()
                    .map(|o| (o.counters.bytes_up + o.counters.bytes_down) as f64 / 1e6)
                    .sum::<f64>()
                    / n,
                samples_centralised: runs
                    .iter()
                    .map(|o| o.samples_centralised)
                    .max()
                    .unwrap_or(0),
                time_to_accuracy: config
                    .accuracy_targets
                    .iter()
                    .map(|&target| {
                        let times: Vec<f64> = runs
                            .iter()
                            .filter(|o| o.verdict(reported_model).is_ok())
                            .filter_map(|o| {
                                o.time_to_accuracy(reported_model, &[target])[0].virtual_time_s
                            })
                            .collect();
                        TargetSummary {
                            target,
                            virtual_time_s: MeanStd::of(&times),
                            reached: times.len(),
                            runs: runs.len(),
                        }
                    })
                    .collect(),
            });
        }
        Self {
            config: config.clone(),
            methods,
            runs: outcomes
                .iter()
                .map(|o| RunSummary::new(o, config.fedavg.model, &config.accuracy_targets))
                .collect(),
        }
    }

    /// The results table printed at the end of a run.
    pub fn table(&self) -> String {
        let pct = |m: Option<MeanStd>| match m {
            Some(m) if m.n > 1 => format!("{:.2} ± {:.2}", 100.0 * m.mean, 100.0 * m.std),
            Some(m) => format!("{:.2}", 100.0 * m.mean),
            None => "—".to_string(),
        };
        // A model trained in some run but a result in none shows why instead of a number.
        // A mean that leaves a seed out is marked `*` (the warnings below say which).
        let cell = |m: &MethodSummary, role: ModelRole, value: Option<MeanStd>| match (
            value,
            m.excluded.iter().find(|x| x.model == role),
        ) {
            (None, Some(x)) if x.verdict == Verdict::NoUpdate => "no update".to_string(),
            (None, Some(_)) => "diverged".to_string(),
            (value, Some(_)) => format!("{} *", pct(value)),
            (value, None) => pct(value),
        };
        let mut out = format!(
            "{:<22} {:>16} {:>16} {:>16} {:>12} {:>11} {:>12}",
            "method",
            "result %",
            "target %",
            "auxiliary %",
            "virtual s",
            "traffic MB",
            "centralised"
        );
        for target in &self.config.accuracy_targets {
            let percent = format!("{:.2}", 100.0 * target);
            let percent = percent.trim_end_matches('0').trim_end_matches('.');
            let _ = write!(out, " {:>16}", format!("s to {percent}%"));
        }
        out.push('\n');
        for m in &self.methods {
            let _ = write!(
                out,
                "{:<22} {:>16} {:>16} {:>16} {:>12.0} {:>11.1} {:>12}",
                m.method.name(),
                format!(
                    "{} ({})",
                    cell(m, m.reported_model, m.final_accuracy),
                    short(m.reported_model)
                ),
                cell(m, ModelRole::Target, m.target_final),
                cell(m, ModelRole::Auxiliary, m.auxiliary_final),
                m.virtual_time_s,
                m.traffic_mb,
                m.samples_centralised
            );
            for t in &m.time_to_accuracy {
                let cell = match t.virtual_time_s {
                    Some(v) if t.reached == t.runs => format!("{:.0}", v.mean),
                    Some(v) => format!("{:.0} ({}/{})", v.mean, t.reached, t.runs),
                    None => format!("never (0/{})", t.runs),
                };
                let _ = write!(out, " {cell:>16}");
            }
            out.push('\n');
        }
        let _ = writeln!(out, "{}", self.health_line());
        for line in self.warnings() {
            let _ = writeln!(out, "warning: {line}");
        }
        out
    }

    /// How many runs are results in every model they train, and how many are not because a
    /// model diverged or was never updated (a run may be both): the count a stress check over
    /// many seeds reads.
    pub fn health_line(&self) -> String {
        let (mut diverged, mut no_update) = (BTreeSet::new(), BTreeSet::new());
        for m in &self.methods {
            for x in &m.excluded {
                let run = (m.method.name(), x.seed);
                match x.verdict {
                    Verdict::Diverged { .. } => diverged.insert(run),
                    Verdict::NoUpdate => no_update.insert(run),
                    Verdict::Ok => false,
                };
            }
        }
        let failed = diverged.union(&no_update).count();
        format!(
            "runs: {} of {} are results in every model; {} diverged, {} never updated",
            self.runs.len() - failed,
            self.runs.len(),
            diverged.len(),
            no_update.len()
        )
    }

    /// What the table's numbers leave out: runs whose model diverged or was never updated
    /// (excluded from the means), and rounds that aggregated nothing.
    pub fn warnings(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for m in &self.methods {
            for x in &m.excluded {
                lines.push(format!(
                    "{} seed {}: {} {}; not counted in the table",
                    m.method,
                    x.seed,
                    x.model,
                    x.verdict.describe()
                ));
            }
            if m.empty_rounds > 0 {
                lines.push(format!(
                    "{}: {} round(s) over all seeds aggregated no update (stages.csv rows with \
                     replied = 0)",
                    m.method, m.empty_rounds
                ));
            }
        }
        lines
    }

    /// Whether every run's every model is a result.
    pub fn all_results(&self) -> bool {
        self.methods.iter().all(|m| m.excluded.is_empty())
    }
}

fn short(role: ModelRole) -> &'static str {
    match role {
        ModelRole::Target => "wl",
        ModelRole::Auxiliary => "ws",
    }
}
