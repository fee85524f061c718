use std::collections::TryReserveError;

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Keys and values of every position seen so far, per layer, for one sequence. Stored as f16,
/// as llama.cpp stores them: half the memory, and the same rounding as the reference.
///
/// Memory is taken as the positions fill, doubling, up to the capacity: a large context costs
/// nothing until a sequence uses it.
pub struct KvCache {
    keys: Vec<Vec<f16>>,
    values: Vec<Vec<f16>>,
    kv_dim: usize,
    capacity: usize,
    /// The tokens whose keys and values are stored, in position order.
    tokens: Vec<u32>,
}

/// Positions allocated the first time a cache is written, so that a short prompt and its first
/// tokens do not grow it several times.
const FIRST_POSITIONS: usize = 256;

impl KvCache {
    pub fn new(layers: usize, kv_dim: usize, capacity: usize) -> KvCache {
        KvCache {
            keys: vec![Vec::new(); layers],
            values: vec![Vec::new(); layers],
            kv_dim,
            capacity,
            tokens: Vec::new(),
        }
    }

    /// Bytes of a full cache of `positions` positions.
    pub fn bytes_for(layers: usize, kv_dim: usize, positions: usize) -> u64 {
        // Keys and values, two bytes each; saturating, so an absurd size is still refused.
        [layers, kv_dim, positions].iter().fold(2 * 2, |bytes: u64, &n| bytes.saturating_mul(n as u64))
    }

    /// Bytes this cache holds when full.
    pub fn full_bytes(&self) -> u64 {
        Self::bytes_for(self.keys.len(), self.kv_dim, self.capacity)
    }

    /// Bytes this cache holds now.
    pub fn allocated_bytes(&self) -> u64 {
        Self::bytes_for(self.keys.len(), self.kv_dim, self.allocated())
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
    pub fn copy_prefix(&mut self, other: &KvCache, len: usize) -> Result<(), TryReserveError> {
        let len = len.min(other.len()).min(self.capacity);
        self.reserve(len)?;
        let values = len * self.kv_dim;
        for (to, from) in
            self.keys.iter_mut().zip(&other.keys).chain(self.values.iter_mut().zip(&other.values))
        {
            to[..values].copy_from_slice(&from[..values]);
        }
        self.tokens.clear();
        self.tokens.extend_from_slice(&other.tokens[..len]);
        Ok(())
    }

    /// Positions the storage has room for now.
    fn allocated(&self) -> usize {
        self.keys.first().map_or(0, |k| k.len() / self.kv_dim.max(1))
    }

    /// Makes room for `positions` positions (at most the capacity), growing the storage to
    /// twice what it was or more, so that filling a cache copies it only a few times. Failing
    /// leaves the cache as it was.
    pub(super) fn reserve(&mut self, positions: usize) -> Result<(), TryReserveError> {
        let have = self.allocated();
        if positions <= have {
            return Ok(());
        }
        let grown = (2 * have).max(FIRST_POSITIONS).min(self.capacity).max(positions);
        let len = grown * self.kv_dim;
        for storage in self.keys.iter_mut().chain(&mut self.values) {
            storage.try_reserve_exact(len - storage.len())?;
        }
        for storage in self.keys.iter_mut().chain(&mut self.values) {
            storage.resize(len, f16::ZERO);
        }
        Ok(())
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
