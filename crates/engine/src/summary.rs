use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::model::Model;

/// What a loaded model is, for people and for `--json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSummary {
    pub architecture: String,
    pub parameters: u64,
    pub layers: usize,
    pub embedding: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub vocab: usize,
    pub trained_context: usize,
    /// Tokens of context allocated for this session.
    pub context_window: usize,
    /// The weight formats of the matrices, most used first, e.g. `Q4_1/Q8_0`.
    pub file_type: String,
    pub threads: usize,
    /// The kernels' instruction set, e.g. `avx2`.
    pub cpu: String,
}

impl ModelSummary {
    pub(crate) fn new(model: &Model, context_window: usize, threads: usize, cpu: String) -> ModelSummary {
        let c = &model.config;
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for t in model.gguf().tensors.iter().filter(|t| t.dims.len() == 2) {
            *counts.entry(t.ty.name()).or_default() += 1;
        }
        let mut formats: Vec<_> = counts.into_iter().collect();
        formats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ModelSummary {
            architecture: c.arch_name.clone(),
            parameters: model.parameter_count(),
            layers: c.layers,
            embedding: c.embedding,
            heads: c.heads,
            kv_heads: c.kv_heads,
            vocab: c.vocab,
            trained_context: c.trained_context,
            context_window,
            file_type: formats.iter().map(|(name, _)| *name).collect::<Vec<_>>().join("/"),
            threads,
            cpu,
        }
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} · {:.0}M parameters · {} · {} layers · context {} of {} · {} threads ({})",
            self.architecture,
            self.parameters as f64 / 1e6,
            self.file_type,
            self.layers,
            self.context_window,
            self.trained_context,
            self.threads,
            self.cpu
        )
    }
}
