use half::f16;
use half::slice::HalfFloatSliceExt;

/// Keys and values of every position seen so far, per layer, for one sequence. Stored as f16,
/// as llama.cpp stores them: half the memory, and the same rounding as the reference.
pub struct KvCache {
    keys: Vec<Vec<f16>>,
    values: Vec<Vec<f16>>,
    kv_dim: usize,
    capacity: usize,
    /// The tokens whose keys and values are stored, in position order.
    tokens: Vec<u32>,
}

impl KvCache {
    pub fn new(layers: usize, kv_dim: usize, capacity: usize) -> KvCache {
        KvCache {
            keys: vec![vec![f16::ZERO; capacity * kv_dim]; layers],
            values: vec![vec![f16::ZERO; capacity * kv_dim]; layers],
            kv_dim,
            capacity,
            tokens: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on, keeping the prefix for reuse.
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Makes this cache hold the first `len` positions of `other` (same shape), so that a
    /// sequence can start from another's prefix.
    pub fn copy_prefix(&mut self, other: &KvCache, len: usize) {
        let len = len.min(other.len()).min(self.capacity);
        let values = len * self.kv_dim;
        for (to, from) in
            self.keys.iter_mut().zip(&other.keys).chain(self.values.iter_mut().zip(&other.values))
        {
            to[..values].copy_from_slice(&from[..values]);
        }
        self.tokens.clear();
        self.tokens.extend_from_slice(&other.tokens[..len]);
    }

    pub(super) fn write(&mut self, layer: usize, start: usize, keys: &[f32], values: &[f32]) {
        let range = start * self.kv_dim..start * self.kv_dim + keys.len();
        // The slice conversions use F16C where the CPU has it: the same rounding, a vector at a time.
        self.keys[layer][range.clone()].convert_from_f32_slice(keys);
        self.values[layer][range].convert_from_f32_slice(values);
    }

    pub(super) fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        (&self.keys[layer], &self.values[layer])
    }

    pub(super) fn advance(&mut self, tokens: &[u32]) {
        self.tokens.extend_from_slice(tokens);
    }
}
