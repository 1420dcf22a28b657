//! How commands print what they read: aligned columns for people, JSON or YAML for scripts.

use clap::ValueEnum;
use serde::Serialize;

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns.
    Table,
    /// JSON (a list is an array).
    Json,
    /// YAML.
    Yaml,
}

impl Output {
    /// Prints `value` as JSON or YAML, or as the table `table` makes of it.
    pub fn print<T: Serialize + ?Sized>(self, value: &T, table: impl FnOnce(&T) -> Table) {
        match self {
            Output::Table => print!("{}", table(value)),
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).expect("what is printed serializes")
            ),
            Output::Yaml => print!(
                "{}",
                serde_norway::to_string(value).expect("what is printed serializes")
            ),
        }
    }
}

/// Rows under a header, printed with every column as wide as its widest cell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells beyond the header are dropped, missing ones left empty).
    pub fn row(&mut self, cells: impl IntoIterator<Item = String>) -> &mut Self {
        let mut row: Vec<String> = cells.into_iter().take(self.header.len()).collect();
        row.resize(self.header.len(), String::new());
        self.rows.push(row);
        self
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["ID", "STATE"]);
        table.row(["a-long-id".to_owned(), "ok".to_owned()]);
        table.row(["b".to_owned()]);
        assert_eq!(table.to_string(), "ID         STATE\na-long-id  ok\nb\n");
    }
}
