//! Conversation threads: an agent's history kept in SQLite, written step by step, so that a
//! run killed at any moment loses at most the step it was in, and the next run takes the
//! thread up where it was.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use temper_core::{Message, Role};

/// A store of threads that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    #[error("{path}: {reason}")]
    Store { path: PathBuf, reason: String },
    #[error("{path}: thread `{thread}`, message {seq}, cannot be read: {reason}")]
    Corrupt { path: PathBuf, thread: String, seq: i64, reason: String },
    #[error("a thread name must be 1 to 100 characters, without control characters: `{0}`")]
    Name(String),
}

/// One thread as a list shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadInfo {
    pub name: String,
    /// UTC, `YYYY-MM-DDTHH:MM:SSZ`.
    pub created: String,
    pub updated: String,
    pub messages: usize,
    /// Whether older messages have been folded into a summary.
    pub summarized: bool,
}

/// A thread's history.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Thread {
    pub name: String,
    /// What the model wrote of the messages before `summarized_upto`.
    pub summary: Option<String>,
    /// How many of `messages` the summary covers.
    pub summarized_upto: usize,
    pub messages: Vec<Message>,
}

/// The threads of one SQLite file.
pub struct Threads {
    connection: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS threads (
    name TEXT PRIMARY KEY,
    created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    updated TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    summary TEXT,
    summarized_upto INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    thread TEXT NOT NULL REFERENCES threads(name) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    message TEXT NOT NULL,
    PRIMARY KEY (thread, seq)
);
";

impl Threads {
    /// Opens the store at `path`, creating it (and its directory) if needed.
    pub fn open(path: &Path) -> Result<Threads, ThreadError> {
        let bad = |reason: String| ThreadError::Store { path: path.to_owned(), reason };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| bad(e.to_string()))?;
        }
        let connection = Connection::open(path).map_err(|e| bad(e.to_string()))?;
        connection.busy_timeout(Duration::from_secs(10)).map_err(|e| bad(e.to_string()))?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| connection.pragma_update(None, "foreign_keys", "ON"))
            .and_then(|()| connection.execute_batch(SCHEMA))
            .map_err(|e| bad(format!("not a thread store Temper can use: {e}")))?;
        Ok(Threads { connection, path: path.to_owned() })
    }

    fn failed(&self, e: rusqlite::Error) -> ThreadError {
        ThreadError::Store { path: self.path.clone(), reason: e.to_string() }
    }

    /// Every thread, the most recently updated first.
    pub fn list(&self) -> Result<Vec<ThreadInfo>, ThreadError> {
        let query = "SELECT name, created, updated, summary IS NOT NULL,
                            (SELECT count(*) FROM messages WHERE thread = name)
                     FROM threads ORDER BY updated DESC, name";
        let mut statement = self.connection.prepare(query).map_err(|e| self.failed(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(ThreadInfo {
                    name: row.get(0)?,
                    created: row.get(1)?,
                    updated: row.get(2)?,
                    summarized: row.get(3)?,
                    messages: row.get::<_, i64>(4)? as usize,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>());
        rows.map_err(|e| self.failed(e))
    }

    /// The thread `name`, with a result for every tool call (see [`with_every_result`]); `None`
    /// when there is no such thread.
    pub fn load(&self, name: &str) -> Result<Option<Thread>, ThreadError> {
        let head = self
            .connection
            .query_row("SELECT summary, summarized_upto FROM threads WHERE name = ?1", [name], |row| {
                Ok((row.get::<_, Option<String>>(0)?, row.get::<_, i64>(1)?))
            })
            .optional()
            .map_err(|e| self.failed(e))?;
        let Some((summary, summarized_upto)) = head else { return Ok(None) };
        let mut statement = self
            .connection
            .prepare("SELECT seq, message FROM messages WHERE thread = ?1 ORDER BY seq")
            .map_err(|e| self.failed(e))?;
        let rows: Vec<(i64, String)> = statement
            .query_map([name], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.failed(e))?;
        let mut messages = Vec::with_capacity(rows.len());
        for (seq, text) in rows {
            let message = serde_json::from_str(&text).map_err(|e| ThreadError::Corrupt {
                path: self.path.clone(),
                thread: name.to_owned(),
                seq,
                reason: e.to_string(),
            })?;
            messages.push(message);
        }
        let summarized_upto = (summarized_upto.max(0) as usize).min(messages.len());
        let messages = with_every_result(messages);
        Ok(Some(Thread { name: name.to_owned(), summary, summarized_upto, messages }))
    }

    /// Appends `messages` to the thread `name` (created if new), all or none.
    pub fn append(&mut self, name: &str, messages: &[Message]) -> Result<(), ThreadError> {
        check_name(name)?;
        let texts: Vec<String> = messages
            .iter()
            .map(|m| {
                serde_json::to_string(m)
                    .map_err(|e| ThreadError::Store { path: self.path.clone(), reason: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        let path = self.path.clone();
        let failed = |e: rusqlite::Error| ThreadError::Store { path: path.clone(), reason: e.to_string() };
        let tx = self.connection.transaction().map_err(failed)?;
        tx.execute(
            "INSERT INTO threads (name) VALUES (?1)
             ON CONFLICT (name) DO UPDATE SET updated = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            [name],
        )
        .map_err(failed)?;
        let next: i64 = tx
            .query_row("SELECT coalesce(max(seq), -1) + 1 FROM messages WHERE thread = ?1", [name], |r| {
                r.get(0)
            })
            .map_err(failed)?;
        for (i, text) in texts.iter().enumerate() {
            tx.execute(
                "INSERT INTO messages (thread, seq, message) VALUES (?1, ?2, ?3)",
                params![name, next + i as i64, text],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)
    }

    /// Records that `summary` stands for the thread's first `upto` messages.
    pub fn set_summary(&mut self, name: &str, summary: &str, upto: usize) -> Result<(), ThreadError> {
        self.connection
            .execute(
                "UPDATE threads SET summary = ?2, summarized_upto = ?3 WHERE name = ?1",
                params![name, summary, upto as i64],
            )
            .map(drop)
            .map_err(|e| self.failed(e))
    }

    /// Removes the thread `name`; whether there was one.
    pub fn remove(&mut self, name: &str) -> Result<bool, ThreadError> {
        let tx = self
            .connection
            .transaction()
            .map_err(|e| ThreadError::Store { path: self.path.clone(), reason: e.to_string() })?;
        let removed = tx
            .execute("DELETE FROM messages WHERE thread = ?1", [name])
            .and_then(|_| tx.execute("DELETE FROM threads WHERE name = ?1", [name]))
            .and_then(|n| tx.commit().map(|()| n > 0));
        removed.map_err(|e| self.failed(e))
    }
}

fn check_name(name: &str) -> Result<(), ThreadError> {
    let length = name.chars().count();
    match (1..=100).contains(&length) && !name.chars().any(char::is_control) {
        true => Ok(()),
        false => Err(ThreadError::Name(name.to_owned())),
    }
}

/// The result a call gets when its run stopped before it returned.
pub const INTERRUPTED: &str = r#"{"error":"interrupted: the run stopped before this call returned"}"#;

/// `messages` with a result for every tool call, right after the turn that made it: a call
/// whose run was killed before its result gets one saying so, so that the history can be sent
/// to a model again (vendors refuse a call with no result).
pub fn with_every_result(messages: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(messages.len());
    let mut waiting: Vec<String> = Vec::new();
    for message in messages {
        let answers_a_call = message.role == Role::Tool
            && message.tool_call_id.as_ref().is_some_and(|id| waiting.contains(id));
        if !answers_a_call {
            out.extend(waiting.drain(..).map(|id| Message::tool_result(id, INTERRUPTED)));
        }
        if let Some(id) = message.tool_call_id.as_ref().filter(|_| answers_a_call) {
            waiting.retain(|w| w != id);
        }
        waiting.extend(message.tool_calls.iter().map(|c| c.id.clone()));
        out.push(message);
    }
    out.extend(waiting.drain(..).map(|id| Message::tool_result(id, INTERRUPTED)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use temper_core::ToolCall;

    fn call(id: &str) -> ToolCall {
        ToolCall { id: id.into(), name: "calculator".into(), arguments: "{}".into() }
    }

    #[test]
    fn threads_keep_their_messages_in_order_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/agent.db");
        let mut threads = Threads::open(&path).unwrap();
        threads.append("work", &[Message::user("first"), Message::assistant("one")]).unwrap();
        threads.append("work", &[Message::user("second")]).unwrap();
        threads.append("home", &[Message::user("elsewhere")]).unwrap();
        drop(threads);

        let mut threads = Threads::open(&path).unwrap();
        let work = threads.load("work").unwrap().unwrap();
        let texts: Vec<&str> = work.messages.iter().map(|m| m.content.as_str()).collect();
        assert_eq!(texts, ["first", "one", "second"]);
        let names: Vec<String> = threads.list().unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names.len(), 2);
        assert!(threads.load("nowhere").unwrap().is_none());

        threads.set_summary("work", "they talked", 2).unwrap();
        let work = threads.load("work").unwrap().unwrap();
        assert_eq!((work.summary.as_deref(), work.summarized_upto), (Some("they talked"), 2));
        assert!(threads.remove("work").unwrap());
        assert!(!threads.remove("work").unwrap());
        assert!(threads.load("work").unwrap().is_none());
        assert_eq!(threads.list().unwrap().len(), 1);
    }

    #[test]
    fn a_call_without_a_result_gets_one_saying_its_run_stopped() {
        let history = vec![
            Message::user("task"),
            Message::assistant_tool_calls("", vec![call("a"), call("b")]),
            Message::tool_result("b", "2"),
            Message::user("next task"),
            Message::assistant_tool_calls("", vec![call("c")]),
        ];
        let fixed = with_every_result(history);
        let shape: Vec<String> = fixed
            .iter()
            .map(|m| format!("{}:{}:{}", m.role, m.tool_call_id.as_deref().unwrap_or(""), m.content))
            .collect();
        assert_eq!(
            shape,
            [
                "user::task".to_owned(),
                "assistant::".into(),
                "tool:b:2".into(),
                format!("tool:a:{INTERRUPTED}"),
                "user::next task".into(),
                "assistant::".into(),
                format!("tool:c:{INTERRUPTED}"),
            ]
        );
    }

    #[test]
    fn a_corrupt_message_and_a_bad_name_are_errors_that_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.db");
        let mut threads = Threads::open(&path).unwrap();
        threads.append("t", &[Message::user("ok")]).unwrap();
        threads.connection.execute("UPDATE messages SET message = '{not json' WHERE seq = 0", []).unwrap();
        let err = threads.load("t").unwrap_err().to_string();
        assert!(err.contains("thread `t`, message 0, cannot be read"), "{err}");
        assert!(matches!(threads.append("", &[]), Err(ThreadError::Name(_))));
        assert!(matches!(threads.append("a\nb", &[]), Err(ThreadError::Name(_))));

        std::fs::write(dir.path().join("junk.db"), b"this is not a database at all, not even close....")
            .unwrap();
        let err = Threads::open(&dir.path().join("junk.db")).err().unwrap().to_string();
        assert!(err.contains("junk.db") && err.contains("not a thread store"), "{err}");
    }
}
