//! Label statistics of a partition: per-client histograms and a skew measure.

use std::fmt;

/// `counts[c][k]`: samples of class `k` held by client `c`.
///
/// # Panics
/// If an index is out of range for `labels` or a label is `>= classes`.
pub fn label_histogram(
    partition: &[Vec<usize>],
    labels: &[u32],
    classes: usize,
) -> Vec<Vec<usize>> {
    partition
        .iter()
        .map(|indices| {
            let mut counts = vec![0; classes];
            for &i in indices {
                counts[labels[i] as usize] += 1;
            }
            counts
        })
        .collect()
}

/// Mean over non-empty clients of the total-variation distance between the client's label
/// distribution and the label distribution of all samples in the partition: 0 for identical
/// distributions, approaching 1 for disjoint ones. Returns 0 if no client has samples.
///
/// # Panics
/// As [`label_histogram`].
pub fn mean_total_variation(partition: &[Vec<usize>], labels: &[u32], classes: usize) -> f64 {
    let counts = label_histogram(partition, labels, classes);
    let mut global = vec![0usize; classes];
    for row in &counts {
        global.iter_mut().zip(row).for_each(|(g, c)| *g += c);
    }
    let global_total: usize = global.iter().sum();
    let mut sum = 0.0;
    let mut clients = 0usize;
    for row in counts.iter().filter(|r| r.iter().any(|&c| c > 0)) {
        let total: usize = row.iter().sum();
        let distance: f64 = row
            .iter()
            .zip(&global)
            .map(|(&c, &g)| (c as f64 / total as f64 - g as f64 / global_total as f64).abs())
            .sum();
        sum += distance / 2.0;
        clients += 1;
    }
    if clients == 0 {
        0.0
    } else {
        sum / clients as f64
    }
}

/// A printable per-client label histogram: one row per client with its count of each class
/// and its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelHistogram {
    /// `counts[c][k]`: samples of class `k` held by client `c`.
    pub counts: Vec<Vec<usize>>,
}

impl LabelHistogram {
    /// Computes the histogram (see [`label_histogram`], including its panics).
    pub fn new(partition: &[Vec<usize>], labels: &[u32], classes: usize) -> Self {
        Self {
            counts: label_histogram(partition, labels, classes),
        }
    }
}

impl fmt::Display for LabelHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes = self.counts.first().map_or(0, Vec::len);
        let totals: Vec<usize> = self.counts.iter().map(|r| r.iter().sum()).collect();
        let widest = totals.iter().copied().max().unwrap_or(0);
        let width = widest
            .to_string()
            .len()
            .max(classes.saturating_sub(1).to_string().len() + 1);
        let client_width = self.counts.len().to_string().len().max("client".len());
        write!(f, "{:>client_width$}", "client")?;
        for k in 0..classes {
            write!(f, " {:>width$}", format!("c{k}"))?;
        }
        writeln!(f, " {:>width$}", "total", width = width.max(5))?;
        for (client, (row, total)) in self.counts.iter().zip(&totals).enumerate() {
            write!(f, "{client:>client_width$}")?;
            for count in row {
                write!(f, " {count:>width$}")?;
            }
            writeln!(f, " {total:>width$}", width = width.max(5))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_tv_on_a_tiny_partition() {
        let labels = [0, 0, 1, 1];
        let split = vec![vec![0, 1], vec![2, 3]];
        assert_eq!(
            label_histogram(&split, &labels, 2),
            vec![vec![2, 0], vec![0, 2]]
        );
        assert!((mean_total_variation(&split, &labels, 2) - 0.5).abs() < 1e-12);
        let mixed = vec![vec![0, 2], vec![1, 3]];
        assert_eq!(mean_total_variation(&mixed, &labels, 2), 0.0);
    }

    #[test]
    fn display_has_one_row_per_client_with_totals() {
        let text = LabelHistogram::new(&[vec![0, 1, 2], vec![3]], &[0, 0, 1, 1], 2).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("c0") && lines[0].contains("c1") && lines[0].ends_with("total"));
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, vec!["0", "2", "1", "3"]);
    }
}
