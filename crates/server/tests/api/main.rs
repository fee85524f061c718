//! Temper's own routes under `/api`, driven over HTTP against a real server on a loopback
//! port, with the real default models where a model is needed.

#[path = "../common/mod.rs"]
mod common;

mod keys;
mod prompt_files;
mod pull;
mod rag;
mod render;
mod reports;
