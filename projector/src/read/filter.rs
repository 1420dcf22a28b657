//! A `WHERE` clause of allow-listed columns and bound values, built once and applied to as many
//! queries as need it (a page and its count). Callers name columns from the constants of the
//! modules beside this one; values only ever travel as binds, never spliced into the SQL.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, QueryBuilder};

/// A value bound into SQL.
#[derive(Debug, Clone)]
pub enum Bind {
    /// `text`.
    Text(String),
    /// `text[]`.
    Texts(Vec<String>),
    /// `timestamptz`.
    Time(DateTime<Utc>),
    /// `double precision`.
    Float(f64),
    /// `integer[]`.
    Ints(Vec<i32>),
    /// `boolean`.
    Bool(bool),
    /// `bigint` (an event's position).
    BigInt(i64),
}

#[derive(Debug, Clone)]
enum Piece {
    Sql(String),
    Bind(Bind),
}

/// The conditions of a `WHERE` clause, joined by `AND`.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    conditions: Vec<Vec<Piece>>,
}

impl Conditions {
    /// No conditions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a condition: `sql` with one `{}` per bind, in order.
    pub fn push(&mut self, sql: &str, binds: Vec<Bind>) -> &mut Self {
        let mut pieces = Vec::new();
        let mut binds = binds.into_iter();
        let mut parts = sql.split("{}").peekable();
        while let Some(part) = parts.next() {
            pieces.push(Piece::Sql(part.to_owned()));
            if parts.peek().is_some() {
                pieces.push(Piece::Bind(binds.next().expect("one bind per {}")));
            }
        }
        self.conditions.push(pieces);
        self
    }

    /// `column = value`.
    pub fn eq(&mut self, column: &str, value: Bind) -> &mut Self {
        self.push(&format!("{column} = {{}}"), vec![value])
    }

    /// `column <op> value` for a comparison operator (`>=`, `>`, `<=`, `<`).
    pub fn compare(&mut self, column: &str, op: Comparison, value: Bind) -> &mut Self {
        self.push(&format!("{column} {} {{}}", op.sql()), vec![value])
    }

    /// `column` is one of `values`, or NULL when `or_null`; no condition when both are empty
    /// and `or_null` is false.
    pub fn one_of(&mut self, column: &str, values: Vec<String>, or_null: bool) -> &mut Self {
        match (or_null, values.is_empty()) {
            (false, true) => self,
            (true, true) => self.push(&format!("{column} IS NULL"), vec![]),
            (true, false) => self.push(
                &format!("({column} = ANY({{}}) OR {column} IS NULL)"),
                vec![Bind::Texts(values)],
            ),
            (false, false) => {
                self.push(&format!("{column} = ANY({{}})"), vec![Bind::Texts(values)])
            }
        }
    }

    /// `column ILIKE ANY(patterns)` (case-insensitive, the patterns' wildcards kept).
    pub fn ilike_any(&mut self, column: &str, patterns: Vec<String>) -> &mut Self {
        self.push(
            &format!("{column} ILIKE ANY({{}})"),
            vec![Bind::Texts(patterns)],
        )
    }

    /// `column LIKE ANY(patterns)` (case-sensitive).
    pub fn like_any(&mut self, column: &str, patterns: Vec<String>) -> &mut Self {
        self.push(
            &format!("{column} LIKE ANY({{}})"),
            vec![Bind::Texts(patterns)],
        )
    }

    /// `dag_id_column` names a DAG one of `roles` may read (its `access_control` grants
    /// `DAGs: can_read`; the `dag` table's `readable_by`).
    pub fn dag_readable_by(&mut self, dag_id_column: &str, roles: Vec<String>) -> &mut Self {
        self.push(
            &format!("{dag_id_column} IN (SELECT dag_id FROM dag WHERE readable_by && {{}})"),
            vec![Bind::Texts(roles)],
        )
    }

    /// `dag_id_column` names a DAG of `tenant` (the `dag` table's `tenant`).
    pub fn dag_in_tenant(&mut self, dag_id_column: &str, tenant: String) -> &mut Self {
        self.push(
            &format!("{dag_id_column} IN (SELECT dag_id FROM dag WHERE tenant = {{}})"),
            vec![Bind::Text(tenant)],
        )
    }

    /// `EXISTS (<select_from> WHERE <correlation> AND <inner…>)`.
    pub fn exists(
        &mut self,
        select_from: &str,
        correlation: &str,
        inner: &Conditions,
    ) -> &mut Self {
        let mut pieces = vec![Piece::Sql(format!(
            "EXISTS ({select_from} WHERE {correlation}"
        ))];
        for condition in &inner.conditions {
            pieces.push(Piece::Sql(" AND ".into()));
            pieces.extend(condition.iter().cloned());
        }
        pieces.push(Piece::Sql(")".into()));
        self.conditions.push(pieces);
        self
    }

    /// Whether any condition's SQL mentions `text` (a table alias such as `r.`): a count that
    /// needs no column of a joined table can skip the join.
    pub fn mentions(&self, text: &str) -> bool {
        self.conditions
            .iter()
            .flatten()
            .any(|piece| matches!(piece, Piece::Sql(sql) if sql.contains(text)))
    }

    /// Whether there are no conditions.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// `select` under these conditions as the database receives it, values as placeholders
    /// (`$1`, `$2`, …): for logs and for tests that check no value is spliced into the SQL.
    pub fn sql_after(&self, select: &str) -> String {
        let mut query = QueryBuilder::<Postgres>::new(select);
        self.apply(&mut query);
        query.into_string()
    }

    /// Appends ` WHERE …` (nothing when there are no conditions).
    pub fn apply(&self, query: &mut QueryBuilder<Postgres>) {
        for (i, condition) in self.conditions.iter().enumerate() {
            query.push(if i == 0 { " WHERE " } else { " AND " });
            for piece in condition {
                match piece {
                    Piece::Sql(sql) => {
                        query.push(sql.as_str());
                    }
                    Piece::Bind(bind) => push_bind(query, bind.clone()),
                }
            }
        }
    }
}

/// A comparison of a range filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`.
    AtLeast,
    /// `>`.
    Above,
    /// `<=`.
    AtMost,
    /// `<`.
    Below,
}

impl Comparison {
    fn sql(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::Above => ">",
            Comparison::AtMost => "<=",
            Comparison::Below => "<",
        }
    }
}

/// Binds one value.
pub fn push_bind(query: &mut QueryBuilder<Postgres>, bind: Bind) {
    match bind {
        Bind::Text(v) => query.push_bind(v),
        Bind::Texts(v) => query.push_bind(v),
        Bind::Time(v) => query.push_bind(v),
        Bind::Float(v) => query.push_bind(v),
        Bind::Ints(v) => query.push_bind(v),
        Bind::Bool(v) => query.push_bind(v),
        Bind::BigInt(v) => query.push_bind(v),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_and_never_spliced() {
        let mut c = Conditions::new();
        c.one_of("t.state", vec!["success".into()], true)
            .ilike_any("t.dag_id", vec!["%a%".into()])
            .compare("t.run_after", Comparison::AtLeast, Bind::Text("x'".into()))
            .one_of("t.pool", vec![], false);
        let mut q = QueryBuilder::<Postgres>::new("SELECT 1 FROM t");
        c.apply(&mut q);
        assert_eq!(
            q.sql().as_str(),
            "SELECT 1 FROM t WHERE (t.state = ANY($1) OR t.state IS NULL) AND t.dag_id ILIKE ANY($2) AND t.run_after >= $3"
        );
        assert!(c.mentions("t.dag_id") && !c.mentions("r."));
    }
}
