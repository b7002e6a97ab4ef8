//! `gust:function/sql`: statements against the databases a function declared.

use gust_backends::{SqlStatement, SqlValue};

use super::generated::gust::function::sql::{Host, Rows, Statement, Value};
use crate::state::HostState;

fn to_backend(v: Value) -> SqlValue {
    match v {
        Value::Null => SqlValue::Null,
        Value::Integer(i) => SqlValue::Integer(i),
        Value::Real(f) => SqlValue::Real(f),
        Value::Text(s) => SqlValue::Text(s),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn to_guest(v: SqlValue) -> Value {
    match v {
        SqlValue::Null => Value::Null,
        SqlValue::Integer(i) => Value::Integer(i),
        SqlValue::Real(f) => Value::Real(f),
        SqlValue::Text(s) => Value::Text(s),
        SqlValue::Blob(b) => Value::Blob(b),
    }
}

impl Host for HostState {
    async fn query(
        &mut self,
        binding: String,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<Rows, String>> {
        let Some(db) = self.env.sql.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("sql", &binding)));
        };
        let params = params.into_iter().map(to_backend).collect();
        Ok(db
            .query(&sql, params)
            .await
            .map(|rows| Rows {
                columns: rows.columns,
                rows: rows
                    .rows
                    .into_iter()
                    .map(|row| row.into_iter().map(to_guest).collect())
                    .collect(),
            })
            .map_err(|e| e.to_string()))
    }

    async fn execute(
        &mut self,
        binding: String,
        sql: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, String>> {
        let Some(db) = self.env.sql.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("sql", &binding)));
        };
        let params = params.into_iter().map(to_backend).collect();
        Ok(db.execute(&sql, params).await.map_err(|e| e.to_string()))
    }

    async fn transaction(
        &mut self,
        binding: String,
        statements: Vec<Statement>,
    ) -> wasmtime::Result<Result<Vec<u64>, String>> {
        let Some(db) = self.env.sql.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("sql", &binding)));
        };
        let statements = statements
            .into_iter()
            .map(|s| SqlStatement {
                sql: s.sql,
                params: s.params.into_iter().map(to_backend).collect(),
            })
            .collect();
        Ok(db.transaction(statements).await.map_err(|e| e.to_string()))
    }

    async fn execute_script(
        &mut self,
        binding: String,
        script: String,
    ) -> wasmtime::Result<Result<(), String>> {
        let Some(db) = self.env.sql.get(&binding).cloned() else {
            return Ok(Err(self.env.refuse("sql", &binding)));
        };
        Ok(db.execute_script(&script).await.map_err(|e| e.to_string()))
    }
}
