//! The cache of model calls, by content: the key is a SHA-256 of the model's name and the
//! whole request (messages and parameters, seed included), so a re-run only pays for what
//! changed. Each entry keeps the response (text, usage, cost) and the latency of the original
//! call, so that latency assertions and reports stay meaningful on a hit. A file that is not a
//! usable cache is reported, never wiped.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use temper_core::{ChatRequest, ChatResponse};

use crate::{EvalError, Result};

/// Where the cache lives under the Temper home (`$TEMPER_HOME`) unless a spec or the command
/// line says otherwise.
pub const CACHE_FILE: &str = "eval/cache.sqlite";

/// A cached answer: the response and how long the original call took.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedCall {
    pub response: ChatResponse,
    pub latency_ms: f64,
}

/// The SQLite cache file. Safe to share between tasks; each operation is one short statement.
pub struct Cache {
    path: PathBuf,
    connection: Mutex<Connection>,
}

impl Cache {
    /// Opens (or creates) the cache at `path`, and checks it is one.
    pub fn open(path: &Path) -> Result<Cache> {
        let error = |reason: String| EvalError::Cache { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| error(format!("cannot create {}: {e}", dir.display())))?;
        }
        let connection = Connection::open(path).map_err(|e| error(e.to_string()))?;
        let setup = || -> std::result::Result<(), String> {
            let sql = |e: rusqlite::Error| e.to_string();
            connection.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
            // Another program's database is refused before anything is written to it.
            let (tables, ours): (i64, i64) = connection
                .query_row(
                    "SELECT count(*), count(*) FILTER (WHERE name = 'calls') FROM sqlite_master WHERE type = 'table'",
                    [],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .map_err(sql)?;
            if tables > ours {
                return Err("it is a database of something else".into());
            }
            connection
                .execute_batch(
                    "CREATE TABLE IF NOT EXISTS calls (
                        key TEXT PRIMARY KEY,
                        model TEXT NOT NULL,
                        response TEXT NOT NULL,
                        latency_ms REAL NOT NULL,
                        created_at INTEGER NOT NULL
                    )",
                )
                .map_err(sql)?;
            // A table of the same name with other columns is not this cache.
            connection
                .query_row("SELECT key, model, response, latency_ms FROM calls LIMIT 1", [], |_| Ok(()))
                .optional()
                .map_err(sql)?;
            Ok(())
        };
        setup().map_err(|why| {
            error(format!(
                "not a usable cache ({why}); it was left as it is: move it away, or run without a cache"
            ))
        })?;
        Ok(Cache { path: path.to_owned(), connection: Mutex::new(connection) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of `request` sent to the model named `model`.
    pub fn key(model: &str, request: &ChatRequest) -> String {
        let mut content = serde_json::json!({
            "model": model,
            "messages": request.messages,
            "params": request.params,
        });
        // Only when set, so that plain requests keep the keys they had.
        if let Some(format) = &request.response_format {
            content["response_format"] = serde_json::json!(format);
        }
        // An agent's requests: the same messages with tools offered, or required, are another call.
        if !request.tools.is_empty() {
            content["tools"] = serde_json::json!(request.tools);
            content["tool_choice"] = serde_json::json!(request.tool_choice);
            content["parallel_tool_calls"] = serde_json::json!(request.parallel_tool_calls);
        }
        let digest = Sha256::digest(content.to_string().as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn get(&self, key: &str) -> Result<Option<CachedCall>> {
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        let found: Option<(String, f64)> = connection
            .query_row("SELECT response, latency_ms FROM calls WHERE key = ?1", [key], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| self.error(format!("cannot read entry {key}: {e}")))?;
        found
            .map(|(response, latency_ms)| {
                let response = serde_json::from_str(&response)
                    .map_err(|e| self.error(format!("entry {key} holds no response: {e}")))?;
                Ok(CachedCall { response, latency_ms })
            })
            .transpose()
    }

    pub fn put(&self, key: &str, model: &str, call: &CachedCall) -> Result<()> {
        let response = serde_json::to_string(&call.response).map_err(|e| self.error(e.to_string()))?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let connection = self.connection.lock().unwrap_or_else(|e| e.into_inner());
        connection
            .execute(
                "INSERT OR REPLACE INTO calls (key, model, response, latency_ms, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, model, response, call.latency_ms, now],
            )
            .map_err(|e| self.error(format!("cannot write entry {key}: {e}")))?;
        Ok(())
    }

    fn error(&self, reason: String) -> EvalError {
        EvalError::Cache { path: self.path.clone(), reason }
    }
}

#[cfg(test)]
mod tests {
    use temper_core::{GenerationParams, Message};

    use super::*;

    fn request(text: &str, seed: u64) -> ChatRequest {
        ChatRequest::new(vec![Message::user(text)])
            .with_params(GenerationParams { seed: Some(seed), ..Default::default() })
    }

    #[test]
    fn keys_follow_the_model_the_messages_and_the_params() {
        let key = Cache::key("m", &request("hi", 1));
        assert_eq!(key.len(), 64);
        assert_eq!(key, Cache::key("m", &request("hi", 1)));
        assert_ne!(key, Cache::key("other", &request("hi", 1)));
        assert_ne!(key, Cache::key("m", &request("hi!", 1)));
        assert_ne!(key, Cache::key("m", &request("hi", 2)));
        let tool = temper_core::Tool {
            name: "calculator".into(),
            description: Some("Arithmetic.".into()),
            parameters: serde_json::json!({"type": "object"}),
        };
        let offered = ChatRequest { tools: vec![tool], ..request("hi", 1) };
        assert_ne!(key, Cache::key("m", &offered));
        let required = ChatRequest { tool_choice: temper_core::ToolChoice::Required, ..offered.clone() };
        assert_ne!(Cache::key("m", &offered), Cache::key("m", &required));
    }

    #[test]
    fn entries_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eval/cache.sqlite");
        let call = CachedCall {
            response: ChatResponse { text: "ok".into(), cost: Some(0.25), ..Default::default() },
            latency_ms: 123.5,
        };
        Cache::open(&path).unwrap().put("k", "m", &call).unwrap();
        let cache = Cache::open(&path).unwrap();
        assert_eq!(cache.get("k").unwrap(), Some(call));
        assert_eq!(cache.get("other").unwrap(), None);
    }

    #[test]
    fn another_programs_database_is_refused_and_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let other = Connection::open(&path).unwrap();
        other.execute_batch("CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('mine');").unwrap();
        drop(other);
        let before = std::fs::read(&path).unwrap();
        let err = Cache::open(&path).err().expect("refused").to_string();
        assert!(err.contains("not a usable cache (it is a database of something else)"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before, "no table was added");
    }

    #[test]
    fn a_corrupt_file_is_reported_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.sqlite");
        let junk = b"this is not a database, and it must still be here afterwards".repeat(100);
        std::fs::write(&path, &junk).unwrap();
        let err = Cache::open(&path).err().expect("a junk file is refused").to_string();
        assert!(
            err.starts_with(&format!("the evaluation cache {}: not a usable cache", path.display())),
            "{err}"
        );
        assert!(err.contains("move it away, or run without a cache") && !err.contains("--"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
    }
}
