//! Label-skewed partitioning with per-class Dirichlet proportions (latent Dirichlet allocation
//! of Hsu et al. 2019, as implemented by FedML and used by the method's reference code).

use rand::Rng;
use rand::seq::SliceRandom;
use rand_distr::{Distribution, Gamma};

use super::{Partition, check_clients, check_labels};
use crate::error::{DataError, Result};

/// How many complete draws [`dirichlet`] makes before giving up on `min_per_client`.
pub const MAX_DRAWS: usize = 1000;

/// Splits samples among `clients` with label skew controlled by `alpha` (small = skewed).
///
/// One draw, following the reference implementation (FedML's
/// `non_iid_partition_with_dirichlet_distribution`): for each class in label order, shuffle
/// that class's indices, draw client proportions `p ~ Dirichlet(alpha, …, alpha)`, set to zero
/// the proportion of every client that already holds at least `n / clients` samples (this caps
/// client sizes near the mean), renormalise, and cut the class's indices at
/// `floor(cumsum(p) · n_class)`. The whole draw is repeated while any client has fewer than
/// `min_per_client` samples, at most [`MAX_DRAWS`] times.
///
/// Proportions are normalised `Gamma(alpha, 1)` variates, computed in log space as
/// `ln Gamma(alpha + 1, 1) + ln(U) / alpha` with `U ~ Uniform(0, 1]` (the same distribution),
/// so that tiny `alpha` cannot underflow every proportion to zero.
///
/// Errors on `clients == 0`, non-positive or non-finite `alpha`, a label `>= classes`,
/// `min_per_client · clients > n`, and ([`DataError::Partition`]) when no draw satisfied
/// `min_per_client`.
pub fn dirichlet(
    labels: &[u32],
    classes: usize,
    clients: usize,
    alpha: f64,
    min_per_client: usize,
    rng: &mut impl Rng,
) -> Result<Partition> {
    check_clients(clients)?;
    check_labels(labels, classes)?;
    let n = labels.len();
    if min_per_client.saturating_mul(clients) > n {
        return Err(DataError::param(
            "min_per_client",
            min_per_client,
            format!("{clients} clients cannot each get that many of {n} samples"),
        ));
    }
    let boosted = (alpha.is_finite() && alpha > 0.0)
        .then(|| Gamma::new(alpha + 1.0, 1.0).ok())
        .flatten()
        .ok_or_else(|| DataError::param("alpha", alpha, "must be positive and finite"))?;
    let mut by_class = vec![Vec::new(); classes];
    for (i, &label) in labels.iter().enumerate() {
        by_class[label as usize].push(i);
    }
    // A draw is judged by its clients' sizes alone; only the accepted one is dealt out.
    let mut cuts: Vec<Vec<usize>> = Vec::with_capacity(classes);
    for _ in 0..MAX_DRAWS {
        let mut sizes = vec![0usize; clients];
        cuts.clear();
        for class_indices in by_class.iter_mut().filter(|c| !c.is_empty()) {
            class_indices.shuffle(rng);
            let log_weights: Vec<f64> = (0..clients)
                .map(|_| {
                    let g: f64 = boosted.sample(rng);
                    let u = 1.0 - rng.random::<f64>();
                    g.ln() + u.ln() / alpha
                })
                .collect();
            // A client is full once it holds n / clients samples (compared in integers).
            let open: Vec<bool> = sizes.iter().map(|&size| size * clients < n).collect();
            let class_cuts = cut_points(&log_weights, &open, class_indices.len());
            let mut start = 0;
            for (size, &end) in sizes.iter_mut().zip(&class_cuts) {
                *size += end - start;
                start = end;
            }
            cuts.push(class_cuts);
        }
        if sizes.iter().all(|&size| size >= min_per_client) {
            let mut parts: Partition = sizes.iter().map(|&size| Vec::with_capacity(size)).collect();
            let dealt = by_class.iter().filter(|c| !c.is_empty());
            for (class_indices, class_cuts) in dealt.zip(&cuts) {
                let mut start = 0;
                for (part, &end) in parts.iter_mut().zip(class_cuts) {
                    part.extend_from_slice(&class_indices[start..end]);
                    start = end;
                }
            }
            parts.iter_mut().for_each(|p| p.sort_unstable());
            return Ok(parts);
        }
    }
    Err(DataError::Partition {
        reason: format!(
            "no Dirichlet draw in {MAX_DRAWS} gave all {clients} clients at least \
             {min_per_client} of {n} samples (alpha = {alpha}); lower min_per_client or raise alpha"
        ),
    })
}

/// End of each client's slice of a class with `len` samples: `floor(cumsum(p) · len)` where `p`
/// is the softmax of `log_weights` over the `open` clients (zero for the others). The last cut
/// is `len`.
///
/// At least one client is open: the class's samples are not yet dealt, so the clients together
/// hold fewer than `n` samples and cannot all hold `n / clients`.
fn cut_points(log_weights: &[f64], open: &[bool], len: usize) -> Vec<usize> {
    let max = log_weights
        .iter()
        .zip(open)
        .filter(|&(_, &o)| o)
        .map(|(&w, _)| w)
        .fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = log_weights
        .iter()
        .zip(open)
        .map(|(&w, &o)| if o { (w - max).exp() } else { 0.0 })
        .collect();
    let total: f64 = weights.iter().sum();
    let mut cumulative = 0.0;
    let mut cuts: Vec<usize> = weights
        .iter()
        .map(|w| {
            cumulative += w;
            ((cumulative / total * len as f64) as usize).min(len)
        })
        .collect();
    if let Some(last) = cuts.last_mut() {
        *last = len;
    }
    cuts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_points_skip_closed_clients_and_end_at_len() {
        let cuts = cut_points(&[0.0, 5.0, 0.0, 0.0], &[true, false, true, true], 9);
        assert_eq!(cuts, vec![3, 3, 6, 9]);
    }
}
