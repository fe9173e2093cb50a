//! A split read from (or written to) a JSON partition file, to run on exactly the client
//! split another codebase used, or to replay a Flotilla split elsewhere.
//!
//! The format and its rules are documented on [`read_partition_file`].

use std::path::Path;

use serde::Deserialize;

use super::LabeledUnlabeled;
use crate::error::{DataError, Result};

/// The file's top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartitionFile {
    #[serde(default)]
    train_samples: Option<usize>,
    clients: Vec<ClientEntry>,
}

/// One client's entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    labeled: Vec<usize>,
    #[serde(default)]
    unlabeled: Vec<usize>,
}

/// Reads and checks a partition file against a training set of `n_samples` samples; returns
/// each client's labeled and unlabeled indices in file order.
///
/// ```json
/// {"train_samples": 60000,
///  "clients": [
///   {"labeled": [0, 17, 4], "unlabeled": [9, 12]},
///   {"labeled": [1, 2]}
///  ]}
/// ```
///
/// One entry per client, in client order: its `labeled` training-set indices and, optionally,
/// its `unlabeled` ones (absent means none). `train_samples` is optional; when present it must
/// equal the training set's size (a check that the file belongs to this data). Unknown fields
/// are refused (a misspelt `unlabelled` would otherwise drop data silently).
///
/// Rules: every index is below the training set's size, and no index appears twice anywhere
/// in the file (not within a list, not in both lists of a client, not in two clients). Indices
/// need not cover the training set, and a client's lists may be empty. The order of each list
/// is kept: it is the order in which the client holds (and samples) its data.
pub fn read_partition_file(path: &Path, n_samples: usize) -> Result<LabeledUnlabeled> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    parse_partition_file(&bytes, path, n_samples)
}

/// Parses the bytes of a partition file with the checks of [`read_partition_file`]; `origin`
/// only names the input in errors.
pub fn parse_partition_file(
    bytes: &[u8],
    origin: &Path,
    n_samples: usize,
) -> Result<LabeledUnlabeled> {
    let file: PartitionFile = crate::loaders::parse_json(bytes, origin)?;
    let schema = |field: String, reason: String| DataError::Schema {
        path: origin.to_path_buf(),
        field,
        reason,
    };
    if let Some(declared) = file.train_samples
        && declared != n_samples
    {
        return Err(schema(
            "train_samples".into(),
            format!(
                "the file was written for {declared} training samples, this training set has \
                 {n_samples}"
            ),
        ));
    }
    if file.clients.is_empty() {
        return Err(schema("clients".into(), "lists no clients".into()));
    }
    // Where each index was first seen: (client, list, position).
    let mut seen: Vec<Option<(usize, &'static str, usize)>> = vec![None; n_samples];
    for (client, entry) in file.clients.iter().enumerate() {
        for (list, indices) in [("labeled", &entry.labeled), ("unlabeled", &entry.unlabeled)] {
            for (pos, &index) in indices.iter().enumerate() {
                let field = || format!("clients[{client}].{list}[{pos}]");
                let slot = seen.get_mut(index).ok_or_else(|| {
                    schema(
                        field(),
                        format!(
                            "client {client}: index {index} is out of range for the \
                             {n_samples} training samples"
                        ),
                    )
                })?;
                if let Some((c, l, p)) = *slot {
                    let other = if c == client {
                        format!("its own {l}[{p}]")
                    } else {
                        format!("client {c}'s {l}[{p}]")
                    };
                    return Err(schema(
                        field(),
                        format!(
                            "client {client}: index {index} is also {other}; a sample belongs \
                             to one client and one list"
                        ),
                    ));
                }
                *slot = Some((client, list, pos));
            }
        }
    }
    let (labeled, unlabeled) = file
        .clients
        .into_iter()
        .map(|c| (c.labeled, c.unlabeled))
        .unzip();
    Ok(LabeledUnlabeled { labeled, unlabeled })
}

/// The partition file of `split` (one line per client), for a training set of `n_samples`
/// samples; [`parse_partition_file`] reads it back to the same split. There is one client per
/// entry of `split.labeled`; a client without an `unlabeled` entry is written with none.
pub fn partition_file_json(split: &LabeledUnlabeled, n_samples: usize) -> String {
    let list = |v: &[usize]| {
        let items: Vec<String> = v.iter().map(usize::to_string).collect();
        format!("[{}]", items.join(","))
    };
    let clients: Vec<String> = split
        .labeled
        .iter()
        .enumerate()
        .map(|(c, labeled)| {
            let unlabeled = split.unlabeled.get(c).map_or(&[][..], Vec::as_slice);
            format!(
                "  {{\"labeled\": {}, \"unlabeled\": {}}}",
                list(labeled),
                list(unlabeled)
            )
        })
        .collect();
    format!(
        "{{\"train_samples\": {n_samples},\n \"clients\": [\n{}\n]}}\n",
        clients.join(",\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str, n: usize) -> Result<LabeledUnlabeled> {
        parse_partition_file(text.as_bytes(), Path::new("split.json"), n)
    }

    /// The field and reason of a schema error.
    fn schema_error(text: &str, n: usize) -> (String, String) {
        match parse(text, n) {
            Err(DataError::Schema { field, reason, .. }) => (field, reason),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn reads_lists_in_file_order_and_unlabeled_defaults_to_none() {
        let s = parse(
            r#"{"clients": [{"labeled": [4, 0], "unlabeled": [3]}, {"labeled": []}]}"#,
            5,
        )
        .unwrap();
        assert_eq!(s.labeled, vec![vec![4, 0], vec![]]);
        assert_eq!(s.unlabeled, vec![vec![3], vec![]]);
    }

    #[test]
    fn each_bad_input_names_client_list_and_index() {
        let (field, reason) = schema_error(r#"{"clients": [{"labeled": [0, 5]}]}"#, 5);
        assert_eq!(field, "clients[0].labeled[1]");
        assert!(reason.contains("index 5 is out of range"), "{reason}");
        let (field, reason) = schema_error(
            r#"{"clients": [{"labeled": [0]}, {"labeled": [1], "unlabeled": [2, 0]}]}"#,
            5,
        );
        assert_eq!(field, "clients[1].unlabeled[1]");
        assert!(reason.contains("client 0's labeled[0]"), "{reason}");
        let (field, reason) =
            schema_error(r#"{"clients": [{"labeled": [1], "unlabeled": [1]}]}"#, 5);
        assert_eq!(field, "clients[0].unlabeled[0]");
        assert!(reason.contains("its own labeled[0]"), "{reason}");
        let (field, _) = schema_error(r#"{"clients": [{"labeled": [2, 2]}]}"#, 5);
        assert_eq!(field, "clients[0].labeled[1]");
        let (field, reason) =
            schema_error(r#"{"train_samples": 6, "clients": [{"labeled": [2]}]}"#, 5);
        assert_eq!(field, "train_samples");
        assert!(reason.contains('6') && reason.contains('5'), "{reason}");
        let (field, _) = schema_error(r#"{"clients": []}"#, 5);
        assert_eq!(field, "clients");
        for text in [
            r#"{"clients": [{"labeled": [-1]}]}"#,
            r#"{"clients": [{"labeled": [1], "unlabelled": [2]}]}"#,
            r#"{"clients": [{"unlabeled": [2]}]}"#,
            r#"{"clients": "#,
        ] {
            assert!(
                matches!(parse(text, 5), Err(DataError::Json { .. })),
                "{text}"
            );
        }
    }

    proptest! {
        /// Any split with disjoint indices survives writing and reading unchanged.
        #[test]
        fn written_files_read_back_to_the_same_split(
            owners in proptest::collection::vec(0usize..8, 1..60),
            clients in 1usize..5,
        ) {
            let n = owners.len();
            let mut split = LabeledUnlabeled {
                labeled: vec![Vec::new(); clients],
                unlabeled: vec![Vec::new(); clients],
            };
            // Sample i goes to client owner % clients, labeled if owner is even; index order
            // is reversed to check that order is kept.
            for (i, &o) in owners.iter().enumerate().rev() {
                if o % 4 == 3 { continue; }
                let part = if o % 2 == 0 { &mut split.labeled } else { &mut split.unlabeled };
                part[o % clients].push(i);
            }
            let text = partition_file_json(&split, n);
            prop_assert_eq!(parse(&text, n).unwrap(), split);
        }
    }
}
