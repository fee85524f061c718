//! `sql_query`: reading queries on a SQLite database the user names.
//!
//! The database cannot be changed through the tool, by three locks each of which would do:
//! the file is opened read-only, `query_only` is on, and an authorizer lets a statement read
//! tables and call functions but not write, attach another file, or set a pragma.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::tool::{arguments, clip, schema_of, Tool, ToolError};

/// How long one query may run.
const TIME_LIMIT: Duration = Duration::from_secs(5);
/// The most rows returned.
const MAX_ROWS: usize = 200;
/// The longest text value returned, in characters.
const MAX_TEXT_CHARS: usize = 1_000;
/// How many virtual-machine steps SQLite takes between two looks at the clock.
const STEPS_PER_CHECK: i32 = 1_000;
/// Pragmas that only describe the schema, allowed also as table functions
/// (`SELECT * FROM pragma_table_info('t')`).
const SCHEMA_PRAGMAS: [&str; 7] = [
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// Runs one reading SQL statement on a SQLite database, one call at a time.
pub struct SqlQuery {
    database: Arc<Mutex<Database>>,
}

struct Database {
    connection: Connection,
    /// What the authorizer last refused, to tell a refusal from another error.
    refused: Arc<Mutex<Option<String>>>,
}

impl SqlQuery {
    /// Opens the SQLite database at `path` read-only; a missing file or one that is not a
    /// database is an error (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        let failed = |e: rusqlite::Error| io::Error::other(format!("{}: {e}", path.display()));
        if !path.is_file() {
            let reason = if path.exists() { "not a file" } else { "no such file" };
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{}: {reason}", path.display())));
        }
        // No URI flag: the name is a file name, and `?mode=rw` in it means nothing.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = Connection::open_with_flags(&path, flags).map_err(failed)?;
        connection.execute_batch("PRAGMA query_only = ON").map_err(failed)?;
        // Opening reads nothing: a first query tells a database from another file.
        connection.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())).map_err(failed)?;
        let refused = Arc::new(Mutex::new(None));
        let slot = Arc::clone(&refused);
        connection.authorizer(Some(move |context: AuthContext<'_>| match context.action {
            AuthAction::Select
            | AuthAction::Read { .. }
            | AuthAction::Function { .. }
            | AuthAction::Recursive => Authorization::Allow,
            AuthAction::Pragma { pragma_name, .. }
                if SCHEMA_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) =>
            {
                Authorization::Allow
            }
            action => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(describe(action));
                Authorization::Deny
            }
        }));
        Ok(SqlQuery { database: Arc::new(Mutex::new(Database { connection, refused })) })
    }
}

/// What a refused action does, for the model.
fn describe(action: AuthAction<'_>) -> String {
    match action {
        // CREATE, DROP and ALTER write to the schema table first.
        AuthAction::Insert { table_name }
        | AuthAction::Update { table_name, .. }
        | AuthAction::Delete { table_name }
            if table_name == "sqlite_master" || table_name == "sqlite_temp_master" =>
        {
            "changes the schema".to_owned()
        }
        AuthAction::Insert { table_name } => format!("inserts into `{table_name}`"),
        AuthAction::Update { table_name, .. } => format!("updates `{table_name}`"),
        AuthAction::Delete { table_name } => format!("deletes from `{table_name}`"),
        AuthAction::Attach { filename } => format!("attaches the file `{filename}`"),
        AuthAction::Pragma { pragma_name, pragma_value: Some(value) } => {
            format!("sets PRAGMA {pragma_name} = {value}")
        }
        AuthAction::Pragma { pragma_name, pragma_value: None } => format!("runs PRAGMA {pragma_name}"),
        other => format!("does {other:?}"),
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Arguments {
    /// One SQLite statement that reads, e.g. `SELECT name, price FROM products WHERE price > 10`.
    /// To see the tables: `SELECT name, sql FROM sqlite_schema`.
    query: String,
}

#[async_trait]
impl Tool for SqlQuery {
    fn name(&self) -> &str {
        "sql_query"
    }

    fn description(&self) -> &str {
        "Runs one read-only SQL query (SQLite) on the user's database and returns the columns and \
         up to 200 rows. Find the tables with `SELECT name, sql FROM sqlite_schema`. Writing is \
         not allowed."
    }

    fn parameters(&self) -> Value {
        schema_of::<Arguments>()
    }

    async fn call(&self, value: Value) -> Result<Value, ToolError> {
        let Arguments { query } = arguments(value)?;
        if query.trim().is_empty() {
            return Err(ToolError::Arguments("the query is empty".into()));
        }
        let database = Arc::clone(&self.database);
        tokio::task::spawn_blocking(move || {
            let database = database.lock().unwrap_or_else(PoisonError::into_inner);
            run(&database, &query)
        })
        .await
        .map_err(|e| ToolError::Failed(format!("sql_query stopped: {e}")))?
    }
}

fn run(database: &Database, query: &str) -> Result<Value, ToolError> {
    let connection = &database.connection;
    *database.refused.lock().unwrap_or_else(PoisonError::into_inner) = None;
    let failed = |e: rusqlite::Error| {
        if let Some(action) = database.refused.lock().unwrap_or_else(PoisonError::into_inner).take() {
            return ToolError::Refused(format!("the query {action}; this database is read-only"));
        }
        match e {
            rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::OperationInterrupted => {
                ToolError::TimedOut(TIME_LIMIT)
            }
            rusqlite::Error::MultipleStatement => {
                ToolError::Failed("the query has more than one statement; send one at a time".into())
            }
            e => ToolError::Failed(format!("the query failed: {e}")),
        }
    };
    let deadline = Instant::now() + TIME_LIMIT;
    connection.progress_handler(STEPS_PER_CHECK, Some(move || Instant::now() >= deadline));
    let mut statement = connection.prepare(query).map_err(failed)?;
    // A statement that passed the authorizer but still writes (`VACUUM INTO` makes a file).
    if !statement.readonly() {
        return Err(ToolError::Refused("the query writes; this database is read-only".into()));
    }
    let columns: Vec<String> = statement.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = statement.query([]).map_err(failed)?;
    let mut values = Vec::new();
    let mut truncated = false;
    while let Some(row) = rows.next().map_err(failed)? {
        if values.len() == MAX_ROWS {
            truncated = true;
            break;
        }
        let cells = (0..columns.len()).map(|i| row.get_ref(i).map(to_json)).collect::<Result<Vec<_>, _>>();
        values.push(Value::Array(cells.map_err(failed)?));
    }
    Ok(json!({ "columns": columns, "row_count": values.len(), "truncated": truncated, "rows": values }))
}

fn to_json(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => json!(i),
        ValueRef::Real(r) if r.is_finite() => json!(r),
        ValueRef::Real(r) => json!(r.to_string()),
        ValueRef::Text(bytes) => json!(clip(&String::from_utf8_lossy(bytes), MAX_TEXT_CHARS)),
        ValueRef::Blob(bytes) => json!(format!("<blob {} bytes>", bytes.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of 300 numbered rows, and the tool on it.
    fn database() -> (tempfile::TempDir, PathBuf, SqlQuery) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.db");
        let setup = Connection::open(&path).unwrap();
        setup
            .execute_batch(
                "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, picture BLOB);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                 INSERT INTO items SELECT i, 'item ' || i, i * 1.5, NULL FROM n;
                 UPDATE items SET picture = x'00ff00' WHERE id = 1;",
            )
            .unwrap();
        drop(setup);
        let tool = SqlQuery::new(&path).unwrap();
        (dir, path, tool)
    }

    async fn query(tool: &SqlQuery, query: &str) -> Result<Value, ToolError> {
        tool.call(json!({ "query": query })).await
    }

    #[tokio::test]
    async fn a_select_returns_columns_and_rows_as_json() {
        let (_dir, _, tool) = database();
        let result = query(&tool, "SELECT id, name, price, picture FROM items WHERE id <= 2;").await.unwrap();
        assert_eq!(
            result,
            json!({
                "columns": ["id", "name", "price", "picture"],
                "rows": [[1, "item 1", 1.5, "<blob 3 bytes>"], [2, "item 2", 3.0, null]],
                "row_count": 2,
                "truncated": false,
            })
        );
        let schema = query(&tool, "SELECT name FROM pragma_table_info('items')").await.unwrap();
        assert_eq!(schema["rows"], json!([["id"], ["name"], ["price"], ["picture"]]));
        let schema = query(&tool, "PRAGMA table_info(items)").await.unwrap();
        assert_eq!(schema["row_count"], 4);
    }

    #[tokio::test]
    async fn rows_past_the_cap_are_cut() {
        let (_dir, _, tool) = database();
        let result = query(&tool, "SELECT id FROM items ORDER BY id").await.unwrap();
        assert_eq!(result["row_count"], MAX_ROWS);
        assert_eq!(result["rows"].as_array().unwrap().len(), MAX_ROWS);
        assert_eq!(result["rows"][MAX_ROWS - 1], json!([MAX_ROWS]));
        assert_eq!(result["truncated"], true);
    }

    #[tokio::test]
    async fn writes_are_refused_and_the_file_is_unchanged() {
        let (dir, path, tool) = database();
        let before = std::fs::read(&path).unwrap();
        let outside = dir.path().join("copy.db");
        let writes = [
            "INSERT INTO items (name) VALUES ('x')".to_owned(),
            "UPDATE items SET price = 0".into(),
            "DELETE FROM items".into(),
            "DROP TABLE items".into(),
            "CREATE TABLE more (x)".into(),
            format!("ATTACH '{}' AS other", outside.display()),
            "PRAGMA writable_schema = ON".into(),
            "PRAGMA query_only = OFF".into(),
            format!("VACUUM INTO '{}'", outside.display()),
        ];
        for write in &writes {
            let err = query(&tool, write).await.unwrap_err();
            assert!(matches!(err, ToolError::Refused(_)), "{write}: {err}");
        }
        let err = query(&tool, "DELETE FROM items").await.unwrap_err();
        assert_eq!(
            err,
            ToolError::Refused("the query deletes from `items`; this database is read-only".into())
        );
        let err = query(&tool, "SELECT 1; DROP TABLE items").await.unwrap_err();
        assert_eq!(
            err,
            ToolError::Refused("the query changes the schema; this database is read-only".into())
        );
        let err = query(&tool, &writes[5]).await.unwrap_err();
        assert!(matches!(&err, ToolError::Refused(m) if m.contains("attaches the file")), "{err}");
        let err = query(&tool, "SELECT 1; SELECT 2").await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("more than one statement")), "{err}");

        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!outside.exists());
        let count = query(&tool, "SELECT count(*) FROM items").await.unwrap();
        assert_eq!(count["rows"], json!([[300]]));
    }

    #[tokio::test]
    async fn errors_name_the_problem() {
        let (_dir, _, tool) = database();
        let err = query(&tool, "SELECT * FROM missing_table").await.unwrap_err();
        assert!(matches!(&err, ToolError::Failed(m) if m.contains("no such table: missing_table")), "{err}");
        let err = query(&tool, "  ").await.unwrap_err();
        assert!(matches!(err, ToolError::Arguments(_)), "{err}");
    }

    #[tokio::test]
    async fn an_endless_query_is_stopped_at_the_time_limit() {
        let (_dir, _, tool) = database();
        let started = Instant::now();
        let endless =
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n";
        assert_eq!(query(&tool, endless).await.unwrap_err(), ToolError::TimedOut(TIME_LIMIT));
        assert!(started.elapsed() < TIME_LIMIT + Duration::from_secs(2), "{:?}", started.elapsed());
        // The connection is still good after an interruption.
        assert_eq!(query(&tool, "SELECT 1 + 1").await.unwrap()["rows"], json!([[2]]));
    }

    #[test]
    fn a_missing_file_or_one_that_is_not_a_database_is_an_error_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.db");
        let err = SqlQuery::new(&missing).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("missing.db: no such file"), "{err}");
        assert!(!missing.exists());
        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, but long enough to have a header of a hundred bytes or so....",
        )
        .unwrap();
        let err = SqlQuery::new(&text).err().unwrap();
        assert!(err.to_string().contains("notes.txt: file is not a database"), "{err}");
    }
}
