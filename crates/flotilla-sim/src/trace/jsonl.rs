//! The JSON-lines form of a trace: one record per line.

use super::{TraceError, TraceRecord};
use std::io::{self, BufRead, Write};

/// Writes `record` as one JSON line.
pub(super) fn write_line(out: &mut impl Write, record: &TraceRecord) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// Reads a JSONL trace back. Blank lines are skipped; a line that is not a record is an
/// error naming its number.
pub fn read_jsonl(reader: impl BufRead) -> Result<Vec<TraceRecord>, TraceError> {
    let mut records = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| TraceError::Read {
            line: i + 1,
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line).map_err(|e| TraceError::Malformed {
            line: i + 1,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}
