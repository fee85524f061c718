//! HNSW (Malkov & Yashunin, 2016): a layered proximity graph that answers nearest-neighbour
//! queries in roughly logarithmic time, for collections too large to scan on every query.
//! Vectors are unit length, so similarity is the dot product.

use std::collections::BinaryHeap;

use crate::vector::{dot, Scored};
use crate::{RagError, Result};

/// How the graph is built and searched.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HnswParams {
    /// Links per node on the upper layers (twice this on layer 0).
    pub m: usize,
    /// Candidates kept while inserting: higher builds a better graph, slower.
    pub ef_construction: usize,
    /// Candidates kept while searching: higher finds more true neighbours, slower.
    pub ef_search: usize,
    /// Seed of the layer assignment, so that a build is repeatable.
    pub seed: u64,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 16, ef_construction: 200, ef_search: 64, seed: 0x5eed }
    }
}

/// The graph and the vectors it links.
#[derive(Clone, Debug)]
pub struct Hnsw {
    dim: usize,
    params: HnswParams,
    vectors: Vec<f32>,
    /// Layer 0, where every node is and searches spend their time: one fixed-size slot per node
    /// (a count, then up to 2M links) in a single allocation, so a search reads no pointers.
    base: Vec<u32>,
    /// Layers 1 and up: `upper[node][layer - 1]`; empty for the many nodes only on layer 0.
    upper: Vec<Vec<Vec<u32>>>,
    entry: Option<u32>,
    rng: u64,
}

type Candidate = Scored<u32>;

/// Asks for a vector's first cache lines while the current one is scored: graph search jumps
/// around memory, and waiting for each vector would dominate.
#[inline]
fn prefetch(vector: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for offset in (0..vector.len()).step_by(16).take(4) {
        // SAFETY: prefetching is a hint; the address is inside `vector`.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                vector.as_ptr().add(offset).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
}

impl Hnsw {
    pub fn new(dim: usize, params: HnswParams) -> Result<Hnsw> {
        if dim == 0 || params.m < 2 || params.ef_construction == 0 || params.ef_search == 0 {
            return Err(RagError::invalid(
                "HNSW parameters",
                "dimensions and ef must be at least 1 and M at least 2",
            ));
        }
        Ok(Hnsw {
            dim,
            params,
            vectors: Vec::new(),
            base: Vec::new(),
            upper: Vec::new(),
            entry: None,
            rng: params.seed | 1,
        })
    }

    /// Builds the graph over `vectors`, `dim` values each, in order: node i is vector i.
    pub fn build(dim: usize, vectors: &[f32], params: HnswParams) -> Result<Hnsw> {
        let mut index = Hnsw::new(dim, params)?;
        if !vectors.len().is_multiple_of(dim) {
            return Err(RagError::invalid(
                "vectors",
                format!("{} values is not a multiple of {dim}", vectors.len()),
            ));
        }
        index.vectors.reserve(vectors.len());
        for v in vectors.chunks_exact(dim) {
            index.insert(v)?;
        }
        Ok(index)
    }

    pub fn len(&self) -> usize {
        self.upper.len()
    }

    pub fn is_empty(&self) -> bool {
        self.upper.is_empty()
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.max(1);
    }

    /// Words per node in `base`: the count and room for the most links layer 0 takes.
    fn slot(&self) -> usize {
        self.max_links(0) + 1
    }

    /// The node's highest layer.
    fn top_layer(&self, node: u32) -> usize {
        self.upper[node as usize].len()
    }

    fn neighbours(&self, node: u32, layer: usize) -> &[u32] {
        if layer == 0 {
            let start = node as usize * self.slot();
            &self.base[start + 1..start + 1 + self.base[start] as usize]
        } else {
            &self.upper[node as usize][layer - 1]
        }
    }

    /// Replaces the node's links on `layer`; there are at most `max_links(layer)`.
    fn set_neighbours(&mut self, node: u32, layer: usize, links: &[u32]) {
        if layer == 0 {
            let start = node as usize * self.slot();
            self.base[start] = links.len() as u32;
            self.base[start + 1..start + 1 + links.len()].copy_from_slice(links);
        } else {
            self.upper[node as usize][layer - 1] = links.to_vec();
        }
    }

    /// Adds `link` to the node's links on `layer`, in place; they hold fewer than
    /// `max_links(layer)`.
    fn push_neighbour(&mut self, node: u32, layer: usize, link: u32) {
        if layer == 0 {
            let start = node as usize * self.slot();
            let len = self.base[start] as usize;
            self.base[start + 1 + len] = link;
            self.base[start] += 1;
        } else {
            self.upper[node as usize][layer - 1].push(link);
        }
    }

    fn vector(&self, node: u32) -> &[f32] {
        let start = node as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// A layer drawn from the exponential distribution with scale 1/ln(M) (xorshift: cheap and
    /// repeatable).
    fn random_layer(&mut self) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let uniform = ((self.rng >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let ml = 1.0 / (self.params.m as f64).ln();
        ((-uniform.ln() * ml) as usize).min(16)
    }

    fn max_links(&self, layer: usize) -> usize {
        if layer == 0 {
            2 * self.params.m
        } else {
            self.params.m
        }
    }

    /// Adds a vector as the next node; returns its id.
    pub fn insert(&mut self, vector: &[f32]) -> Result<u32> {
        if vector.len() != self.dim {
            return Err(RagError::invalid(
                "vector",
                format!("has {} dimensions, the index {}", vector.len(), self.dim),
            ));
        }
        let node = u32::try_from(self.len())
            .map_err(|_| RagError::invalid("HNSW index", "more than 2^32 vectors"))?;
        let layer = self.random_layer();
        self.vectors.extend_from_slice(vector);
        self.upper.push(vec![Vec::new(); layer]);
        self.base.extend(std::iter::repeat_n(0, self.slot()));
        let Some(entry) = self.entry else {
            self.entry = Some(node);
            return Ok(node);
        };
        let top = self.top_layer(entry);
        let mut nearest = Candidate { score: dot(vector, self.vector(entry)), item: entry };
        for l in (layer + 1..=top).rev() {
            nearest = self.greedy(vector, nearest, l);
        }
        let mut entries = vec![nearest];
        for l in (0..=layer.min(top)).rev() {
            let found = self.search_layer(vector, &entries, self.params.ef_construction, l);
            let chosen = self.select(&found, self.params.m);
            self.set_neighbours(node, l, &chosen);
            for &neighbour in &chosen {
                self.link_back(neighbour, node, l);
            }
            entries = found;
        }
        if layer > top {
            self.entry = Some(node);
        }
        Ok(node)
    }

    /// Adds `node` to `neighbour`'s links on `layer`, pruning them back to the limit.
    fn link_back(&mut self, neighbour: u32, node: u32, layer: usize) {
        let limit = self.max_links(layer);
        if self.neighbours(neighbour, layer).len() < limit {
            self.push_neighbour(neighbour, layer, node);
            return;
        }
        let links = self.neighbours(neighbour, layer);
        let base = self.vector(neighbour);
        let mut candidates: Vec<Candidate> = links
            .iter()
            .chain(std::iter::once(&node))
            .map(|&n| Candidate { score: dot(base, self.vector(n)), item: n })
            .collect();
        candidates.sort_by(|a, b| b.cmp(a));
        let kept = self.select(&candidates, limit);
        self.set_neighbours(neighbour, layer, &kept);
    }

    /// The neighbour-selection heuristic: walk candidates best first and keep one only if it is
    /// closer to the base than to every one kept, so links spread in all directions; fill up
    /// with the best of the rest. `candidates` is sorted best first.
    fn select(&self, candidates: &[Candidate], limit: usize) -> Vec<u32> {
        let mut kept: Vec<u32> = Vec::with_capacity(limit);
        let mut pruned = Vec::new();
        for c in candidates {
            if kept.len() == limit {
                break;
            }
            let v = self.vector(c.item);
            if kept.iter().all(|&k| dot(v, self.vector(k)) < c.score) {
                kept.push(c.item);
            } else {
                pruned.push(c.item);
            }
        }
        let room = limit - kept.len();
        kept.extend(pruned.into_iter().take(room));
        kept
    }

    /// Moves to better neighbours on one layer while there is one.
    fn greedy(&self, query: &[f32], mut best: Candidate, layer: usize) -> Candidate {
        loop {
            let mut moved = false;
            for &n in self.neighbours(best.item, layer) {
                let score = dot(query, self.vector(n));
                if score > best.score {
                    best = Candidate { score, item: n };
                    moved = true;
                }
            }
            if !moved {
                return best;
            }
        }
    }

    /// Best-first search of one layer keeping `ef` results; returns them best first.
    fn search_layer(&self, query: &[f32], entries: &[Candidate], ef: usize, layer: usize) -> Vec<Candidate> {
        let mut visited = vec![0u64; self.len().div_ceil(64)];
        let mut seen = |n: u32| {
            let (word, bit) = (n as usize / 64, 1u64 << (n % 64));
            let was = visited[word] & bit != 0;
            visited[word] |= bit;
            was
        };
        let mut frontier: BinaryHeap<Candidate> = BinaryHeap::new();
        let mut results: BinaryHeap<std::cmp::Reverse<Candidate>> = BinaryHeap::new();
        for &e in entries {
            if !seen(e.item) {
                frontier.push(e);
                results.push(std::cmp::Reverse(e));
            }
        }
        while results.len() > ef {
            results.pop();
        }
        while let Some(current) = frontier.pop() {
            let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
            if current.score < worst && results.len() >= ef {
                break;
            }
            let links = self.neighbours(current.item, layer);
            for (i, &n) in links.iter().enumerate() {
                if seen(n) {
                    continue;
                }
                if let Some(&next) = links.get(i + 1) {
                    prefetch(self.vector(next));
                }
                let score = dot(query, self.vector(n));
                let worst = results.peek().map_or(f32::NEG_INFINITY, |w| w.0.score);
                if results.len() < ef || score > worst {
                    let c = Candidate { score, item: n };
                    frontier.push(c);
                    results.push(std::cmp::Reverse(c));
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut out: Vec<Candidate> = results.into_iter().map(|r| r.0).collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    }

    /// The `k` nodes most similar to `query`, best first, as (node, similarity).
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<(u32, f32)>> {
        if query.len() != self.dim {
            return Err(RagError::invalid(
                "query vector",
                format!("has {} dimensions, the index {}", query.len(), self.dim),
            ));
        }
        let Some(entry) = self.entry else { return Ok(Vec::new()) };
        let top = self.top_layer(entry);
        let mut nearest = Candidate { score: dot(query, self.vector(entry)), item: entry };
        for l in (1..=top).rev() {
            nearest = self.greedy(query, nearest, l);
        }
        let found = self.search_layer(query, &[nearest], self.params.ef_search.max(k), 0);
        Ok(found.into_iter().take(k).map(|c| (c.item, c.score)).collect())
    }

    /// The graph (not the vectors, which the store keeps) as bytes: little-endian u32s.
    pub fn graph_to_bytes(&self) -> Vec<u8> {
        let mut words: Vec<u32> = vec![self.len() as u32, self.entry.map_or(u32::MAX, |e| e)];
        for node in 0..self.len() as u32 {
            let layers = self.top_layer(node) + 1;
            words.push(layers as u32);
            for layer in 0..layers {
                let links = self.neighbours(node, layer);
                words.push(links.len() as u32);
                words.extend_from_slice(links);
            }
        }
        words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Rebuilds an index from `graph_to_bytes` and the same vectors; any inconsistency is an
    /// error, never a panic.
    pub fn from_parts(dim: usize, params: HnswParams, vectors: Vec<f32>, graph: &[u8]) -> Result<Hnsw> {
        let bad = |reason: &str| RagError::invalid("stored HNSW graph", reason.to_owned());
        if !graph.len().is_multiple_of(4) {
            return Err(bad("its length is not a multiple of 4"));
        }
        let mut words = graph.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let mut next = || words.next().ok_or_else(|| bad("it ends early"));
        let nodes = next()? as usize;
        let entry = next()?;
        if dim == 0 || vectors.len() != nodes * dim {
            return Err(bad("it does not match the number of vectors"));
        }
        let mut links = Vec::with_capacity(nodes);
        for _ in 0..nodes {
            let layers = next()? as usize;
            if layers == 0 || layers > 17 {
                return Err(bad("a node has an impossible number of layers"));
            }
            let mut node = Vec::with_capacity(layers);
            for _ in 0..layers {
                let count = next()? as usize;
                let layer: Vec<u32> = (0..count).map(|_| next()).collect::<Result<_>>()?;
                if layer.iter().any(|&n| n as usize >= nodes) {
                    return Err(bad("a link points past the last node"));
                }
                node.push(layer);
            }
            links.push(node);
        }
        let entry = match entry {
            u32::MAX if nodes == 0 => None,
            e if (e as usize) < nodes => Some(e),
            _ => return Err(bad("the entry point is not a node")),
        };
        // Every link must land on a node that has that layer.
        for node in &links {
            for (l, layer) in node.iter().enumerate() {
                if layer.iter().any(|&n| links[n as usize].len() <= l) {
                    return Err(bad("a link points to a node without that layer"));
                }
            }
        }
        let mut index = Hnsw::new(dim, params)?;
        if links
            .iter()
            .flat_map(|node| node.iter().enumerate())
            .any(|(l, layer)| layer.len() > index.max_links(l))
        {
            return Err(bad("a node has more links than M allows"));
        }
        index.vectors = vectors;
        index.base = vec![0; nodes * index.slot()];
        index.upper = links.iter().map(|node| vec![Vec::new(); node.len() - 1]).collect();
        for (node, layers) in links.iter().enumerate() {
            for (l, layer) in layers.iter().enumerate() {
                index.set_neighbours(node as u32, l, layer);
            }
        }
        index.entry = entry;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{normalize, top_k};

    fn random_unit_vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
            normalize(&mut v);
            out.extend(v);
        }
        out
    }

    #[test]
    fn recall_at_10_against_exact_search_is_at_least_0_95() {
        let (n, dim, queries) = (5_000, 64, 100);
        let data = random_unit_vectors(n, dim, 1);
        let params = HnswParams { m: 16, ef_construction: 200, ef_search: 128, seed: 7 };
        let index = Hnsw::build(dim, &data, params).unwrap();
        let qs = random_unit_vectors(queries, dim, 2);
        let mut hits = 0;
        for q in qs.chunks_exact(dim) {
            let exact = top_k(data.chunks_exact(dim).enumerate().map(|(i, v)| (i as u32, dot(q, v))), 10);
            let approx = index.search(q, 10).unwrap();
            hits += approx.iter().filter(|(id, _)| exact.iter().any(|(e, _)| e == id)).count();
        }
        let recall = hits as f64 / (queries * 10) as f64;
        eprintln!("HNSW recall@10 on {n} random {dim}-d vectors: {recall:.3}");
        assert!(recall >= 0.95, "recall@10 {recall}");
    }

    #[test]
    fn the_graph_round_trips_and_bad_bytes_are_errors() {
        let dim = 8;
        let data = random_unit_vectors(300, dim, 3);
        let index = Hnsw::build(dim, &data, HnswParams::default()).unwrap();
        let bytes = index.graph_to_bytes();
        let again = Hnsw::from_parts(dim, index.params(), data.clone(), &bytes).unwrap();
        let q = &data[..dim];
        assert_eq!(index.search(q, 5).unwrap(), again.search(q, 5).unwrap());
        assert_eq!(index.search(q, 1).unwrap()[0].0, 0, "a stored vector finds itself");
        for cut in [0, 3, 8, bytes.len() - 4] {
            assert!(Hnsw::from_parts(dim, index.params(), data.clone(), &bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut corrupt = bytes.clone();
        corrupt[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Hnsw::from_parts(dim, index.params(), data.clone(), &corrupt).is_err());
        assert!(Hnsw::from_parts(dim, index.params(), data[..dim * 10].to_vec(), &bytes).is_err());
    }

    #[test]
    fn bad_parameters_and_dimensions_are_errors() {
        assert!(Hnsw::new(0, HnswParams::default()).is_err());
        assert!(Hnsw::new(4, HnswParams { m: 1, ..Default::default() }).is_err());
        let mut index = Hnsw::new(4, HnswParams::default()).unwrap();
        assert!(index.insert(&[1.0, 0.0]).is_err());
        assert!(index.search(&[1.0], 1).is_err());
        assert!(index.search(&[1.0, 0.0, 0.0, 0.0], 3).unwrap().is_empty());
    }
}
