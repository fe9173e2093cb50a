//! What `flotilla fleet` prints: the fleet a configuration describes, before anything runs.

use crate::fleet::{Client, online_share};
use crate::{ExperimentError, Prepared};
use flotilla_fl::ModelRole;
use flotilla_sim::{DeviceProfile, Latency, LinkSpec};
use std::fmt::Write as _;

impl Prepared {
    /// A description of the fleet for the configuration's first seed: each group's size,
    /// strong clients (those that can train the target), speeds, memory, share of time
    /// online and link; the server's; and the expected compute time of one job of each
    /// model each group can train (median speed of its clients, no jitter).
    pub fn fleet_report(&self) -> Result<String, ExperimentError> {
        let c = &self.config;
        let seed = c.seed;
        let clients = self.clients(seed);
        let strong = self.strong_clients(&clients);
        let task = self.task(seed)?;
        let (target_mem, aux_mem) = self.memory;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "fleet: {} clients in {} group(s), {} strong (their memory holds the target's {:.1} MB \
             training footprint; the auxiliary needs {:.1} MB); seed {seed}",
            clients.len(),
            self.groups().len(),
            strong.len(),
            target_mem as f64 / 1e6,
            aux_mem as f64 / 1e6,
        );
        let _ = writeln!(
            out,
            "\n{:<14} {:>7} {:>11} {:>6} {:>26} {:>11} {:>7} {:>8}  link",
            "group",
            "clients",
            "nodes",
            "strong",
            "speed GFLOP/s (min-max)",
            "memory MB",
            "online",
            "dropout"
        );
        for (g, group) in self.groups().iter().enumerate() {
            let members: Vec<&Client> = clients.iter().filter(|cl| cl.group == g).collect();
            let n = members.len() as f64;
            let mut speeds: Vec<f64> = members.iter().map(|m| m.device.flops_per_sec).collect();
            speeds.sort_by(f64::total_cmp);
            let speed = format!(
                "{:.2} ({:.2}-{:.2})",
                speeds[speeds.len() / 2] / 1e9,
                speeds[0] / 1e9,
                speeds[speeds.len() - 1] / 1e9
            );
            let memory: Vec<u64> = members.iter().map(|m| m.device.memory_bytes).collect();
            let (lo, hi) = (
                memory.iter().min().copied().unwrap_or(0),
                memory.iter().max().copied().unwrap_or(0),
            );
            let memory = if lo == hi {
                format!("{:.1}", lo as f64 / 1e6)
            } else {
                format!("{:.1}-{:.1}", lo as f64 / 1e6, hi as f64 / 1e6)
            };
            let online = members
                .iter()
                .map(|m| online_share(&m.device.availability))
                .sum::<f64>()
                / n;
            let dropout = members.iter().map(|m| m.device.dropout).sum::<f64>() / n;
            let links: Vec<String> = {
                let mut l: Vec<String> = members.iter().map(|m| describe_link(&m.link)).collect();
                l.dedup();
                l
            };
            let link = match links.as_slice() {
                [one] => one.clone(),
                many => format!("{} distinct links (from the trace)", many.len()),
            };
            // Client c is node c + 1 (the server is node 0).
            let nodes = match group.clients.len() {
                1 => format!("{}", group.clients.start + 1),
                _ => format!("{}-{}", group.clients.start + 1, group.clients.end),
            };
            let _ = writeln!(
                out,
                "{:<14} {:>7} {:>11} {:>6} {:>26} {:>11} {:>6.0}% {:>7.1}%  {}",
                group.name,
                members.len(),
                nodes,
                strong.iter().filter(|s| group.clients.contains(s)).count(),
                speed,
                memory,
                100.0 * online,
                100.0 * dropout,
                link
            );
        }
        let (server_device, server_link) = self.server();
        let _ = writeln!(
            out,
            "{:<14} {:>7} {:>11} {:>6} {:>26} {:>11} {:>6.0}% {:>7.1}%  {}",
            "(server)",
            1,
            0,
            "-",
            format!("{:.2}", server_device.flops_per_sec / 1e9),
            format!("{:.1}", server_device.memory_bytes as f64 / 1e6),
            100.0 * online_share(&server_device.availability),
            100.0 * server_device.dropout,
            describe_link(server_link)
        );
        let h = c.training.local_steps;
        let _ = writeln!(
            out,
            "\nexpected compute time of one job at the group's median speed [s] \
             (H = {h} steps at batch {}; '-': the model does not fit):",
            c.training.batch_size
        );
        let _ = writeln!(
            out,
            "{:<14} {:>14} {:>14} {:>18}",
            "group", "train ws", "train wl", "train wl + KD"
        );
        let local_ws = task.training_flops(ModelRole::Auxiliary, h)?;
        let local_wl = task.training_flops(ModelRole::Target, h)?;
        // A two-phase distillation job: H CE and H KD steps of wl, H batches through ws
        // (the probe left out). `Prepared::new` checked these counts fit.
        let kd = task
            .training_flops(ModelRole::Target, 2 * h)?
            .saturating_add(task.inference_flops(ModelRole::Auxiliary, h * c.training.batch_size)?);
        for (g, group) in self.groups().iter().enumerate() {
            let mut speeds: Vec<&DeviceProfile> = clients
                .iter()
                .filter(|cl| cl.group == g)
                .map(|cl| &cl.device)
                .collect();
            speeds.sort_by(|a, b| a.flops_per_sec.total_cmp(&b.flops_per_sec));
            let median = speeds[speeds.len() / 2];
            let time = |flops: u64, memory: u64| {
                if median.fits(memory) {
                    format!("{:.3}", flops as f64 / median.flops_per_sec)
                } else {
                    "-".to_string()
                }
            };
            let _ = writeln!(
                out,
                "{:<14} {:>14} {:>14} {:>18}",
                group.name,
                time(local_ws, aux_mem),
                time(local_wl, target_mem),
                time(kd, target_mem)
            );
        }
        Ok(out)
    }
}

/// A link in one line: latency, bandwidths, loss, whether transfers share it.
fn describe_link(l: &LinkSpec) -> String {
    let latency = match l.latency {
        Latency::Fixed { ms } => format!("{ms} ms"),
        Latency::Normal { mean_ms, std_ms } => format!("{mean_ms}±{std_ms} ms"),
        Latency::LogNormal { median_ms, sigma } => format!("{median_ms} ms (σ {sigma})"),
        Latency::Exponential { mean_ms } => format!("exp. {mean_ms} ms"),
    };
    let rate = |bytes_per_sec: f64| {
        if bytes_per_sec.is_finite() {
            format!("{} Mb/s", bytes_per_sec * 8.0 / 1e6)
        } else {
            "unlimited".to_string()
        }
    };
    format!(
        "{latency}, up {}, down {}, loss {}%, {}",
        rate(l.up_bytes_per_sec),
        rate(l.down_bytes_per_sec),
        100.0 * l.loss,
        if l.shared { "shared" } else { "not shared" }
    )
}
