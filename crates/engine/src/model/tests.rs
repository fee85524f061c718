//! The forward pass on tiny random models made in the test: batching, the KV cache, prefix
//! reuse and the sliding window must not change what the model computes.

use super::*;
use crate::gguf::{GgufWriter, MetaValue};

pub(crate) struct TinyShape {
    pub arch: &'static str,
    pub layers: usize,
    pub vocab: usize,
    pub window: u32,
}

pub(crate) const EMBED: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = 8;
pub(crate) const FFN: usize = 48;

/// A GGUF writer holding a random model of the given shape, with F32 weights.
pub(crate) fn tiny_model(shape: &TinyShape, seed: u64) -> GgufWriter {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut random = |n: usize, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let arch = shape.arch;
    let u32_meta = |v: usize| MetaValue::U32(v as u32);
    let mut w = GgufWriter::new()
        .meta("general.architecture", MetaValue::String(arch.into()))
        .meta(&format!("{arch}.block_count"), u32_meta(shape.layers))
        .meta(&format!("{arch}.embedding_length"), u32_meta(EMBED))
        .meta(&format!("{arch}.feed_forward_length"), u32_meta(FFN))
        .meta(&format!("{arch}.attention.head_count"), u32_meta(HEADS))
        .meta(&format!("{arch}.attention.head_count_kv"), u32_meta(KV_HEADS))
        .meta(&format!("{arch}.attention.key_length"), u32_meta(HEAD_DIM))
        .meta(&format!("{arch}.context_length"), u32_meta(256))
        .meta(&format!("{arch}.vocab_size"), u32_meta(shape.vocab))
        .meta(&format!("{arch}.attention.layer_norm_rms_epsilon"), MetaValue::F32(1e-5))
        .meta(&format!("{arch}.attention.sliding_window"), MetaValue::U32(shape.window));
    let (q, kv) = ((HEADS * HEAD_DIM) as u64, (KV_HEADS * HEAD_DIM) as u64);
    let (e, f, v) = (EMBED as u64, FFN as u64, shape.vocab as u64);
    let mut matrix = |w: GgufWriter, name: &str, cols: u64, rows: u64| {
        let values = random((cols * rows) as usize, 1.0 / (cols as f32).sqrt());
        w.tensor_f32(name, &[cols, rows], &values)
    };
    w = matrix(w, "token_embd.weight", e, v);
    w = w.tensor_f32("output_norm.weight", &[e], &[1.0; EMBED]);
    for i in 0..shape.layers {
        let n = |s: &str| format!("blk.{i}.{s}");
        w = matrix(w, &n("attn_q.weight"), e, q);
        w = matrix(w, &n("attn_k.weight"), e, kv);
        w = matrix(w, &n("attn_v.weight"), e, kv);
        w = matrix(w, &n("attn_output.weight"), q, e);
        w = matrix(w, &n("ffn_gate.weight"), e, f);
        w = matrix(w, &n("ffn_up.weight"), e, f);
        w = matrix(w, &n("ffn_down.weight"), f, e);
        if arch == "qwen2" {
            w = matrix(w, &n("attn_q.bias"), q, 1);
            w = matrix(w, &n("attn_k.bias"), kv, 1);
            w = matrix(w, &n("attn_v.bias"), kv, 1);
        }
        let mut norms = vec!["attn_norm.weight", "ffn_norm.weight"];
        if arch == "gemma3" {
            norms.extend(["post_attention_norm.weight", "post_ffw_norm.weight"]);
            w = w.tensor_f32(&n("attn_q_norm.weight"), &[HEAD_DIM as u64], &[1.0; HEAD_DIM]);
            w = w.tensor_f32(&n("attn_k_norm.weight"), &[HEAD_DIM as u64], &[1.0; HEAD_DIM]);
        }
        for norm in norms {
            w = w.tensor_f32(&n(norm), &[e], &[1.0; EMBED]);
        }
    }
    w
}

fn load(shape: &TinyShape) -> Model {
    Model::from_gguf(Gguf::from_bytes(tiny_model(shape, 7).to_bytes()).unwrap()).unwrap()
}

const LLAMA: TinyShape = TinyShape { arch: "llama", layers: 2, vocab: 64, window: 0 };
const QWEN2: TinyShape = TinyShape { arch: "qwen2", layers: 2, vocab: 64, window: 0 };
const GEMMA: TinyShape = TinyShape { arch: "gemma3", layers: 6, vocab: 64, window: 4 };

fn prompt(len: usize) -> Vec<u32> {
    (0..len as u32).map(|i| (i * 7 + 3) % 64).collect()
}

fn last_logits(model: &Model, tokens: &[u32], step: usize) -> Vec<f32> {
    let mut cache = KvCache::new(model.config.layers, model.config.kv_dim(), 64);
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];
    for chunk in tokens.chunks(step) {
        model.forward(&mut cache, chunk, &mut scratch, &mut logits).unwrap();
    }
    assert_eq!(cache.tokens(), tokens);
    logits
}

fn assert_close(a: &[f32], b: &[f32]) {
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    assert!(worst < 1e-4, "logits differ by {worst}");
}

#[test]
fn batched_prefill_equals_token_by_token() {
    for shape in [LLAMA, QWEN2, GEMMA] {
        let model = load(&shape);
        let tokens = prompt(20);
        let whole = last_logits(&model, &tokens, tokens.len());
        assert_close(&whole, &last_logits(&model, &tokens, 1));
        assert_close(&whole, &last_logits(&model, &tokens, 3));
    }
}

#[test]
fn a_reused_prefix_gives_the_same_logits() {
    let model = load(&GEMMA);
    let tokens = prompt(12);
    let mut cache = KvCache::new(model.config.layers, model.config.kv_dim(), 64);
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];
    let other: Vec<u32> = tokens[..8].iter().chain(&[1, 2, 3]).copied().collect();
    model.forward(&mut cache, &other, &mut scratch, &mut logits).unwrap();
    cache.truncate(8);
    model.forward(&mut cache, &tokens[8..], &mut scratch, &mut logits).unwrap();
    assert_close(&logits, &last_logits(&model, &tokens, tokens.len()));
}

/// Three sequences at different lengths stepped together, one of them still reading its
/// prompt, give each the logits it gets alone.
#[test]
fn decoding_several_sequences_at_once_equals_one_at_a_time() {
    for shape in [LLAMA, GEMMA] {
        let model = load(&shape);
        let (layers, kvd, vocab) = (model.config.layers, model.config.kv_dim(), model.config.vocab);
        let prompts = [prompt(9), prompt(3).into_iter().rev().collect(), prompt(14)[5..].to_vec()];
        let mut scratch = Scratch::new(&model.config);
        let mut caches: Vec<KvCache> = prompts.iter().map(|_| KvCache::new(layers, kvd, 64)).collect();
        let mut logits = vec![0.0; vocab];
        for (cache, p) in caches.iter_mut().zip(&prompts[..2]) {
            model.forward(cache, p, &mut scratch, &mut logits).unwrap();
        }
        // The first two decode a token each; the third runs its whole prompt in the same pass.
        let steps: [&[u32]; 3] = [&[5], &[17], &prompts[2]];
        let mut batched = vec![0.0; 3 * vocab];
        let mut seqs: Vec<(&mut KvCache, &[u32])> = caches.iter_mut().zip(steps).collect();
        model.forward_many(&mut seqs[..], &mut scratch, &mut batched).unwrap();
        for (i, (p, step)) in prompts.iter().zip(steps).enumerate() {
            let tokens = if i < 2 { [&p[..], step].concat() } else { p.clone() };
            let alone = last_logits(&model, &tokens, 1);
            assert_eq!(batched[i * vocab..(i + 1) * vocab], alone[..], "{} sequence {i}", shape.arch);
            assert_eq!(caches[i].tokens(), tokens);
        }
        let mut seqs: Vec<(&mut KvCache, &[u32])> = caches.iter_mut().zip(steps).collect();
        let err = model.forward_many(&mut seqs[..2], &mut scratch, &mut batched);
        assert!(matches!(err, Err(ForwardError::BatchShape { sequences: 2, tokens: 2, .. })));
        let mut seqs: Vec<(&mut KvCache, &[u32])> =
            caches.iter_mut().zip([&[5][..], &[][..], &[6][..]]).collect();
        let err = model.forward_many(&mut seqs[..], &mut scratch, &mut batched);
        assert!(matches!(err, Err(ForwardError::BatchShape { sequences: 3, tokens: 2, .. })));
    }
}

/// A cache started from another's prefix continues as if it had run that prefix itself.
#[test]
fn a_copied_prefix_gives_the_same_logits() {
    let model = load(&LLAMA);
    let tokens = prompt(12);
    let (layers, kvd) = (model.config.layers, model.config.kv_dim());
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];
    let mut donor = KvCache::new(layers, kvd, 64);
    let other: Vec<u32> = tokens[..7].iter().chain(&[1, 2, 3]).copied().collect();
    model.forward(&mut donor, &other, &mut scratch, &mut logits).unwrap();
    let mut cache = KvCache::new(layers, kvd, 64);
    cache.copy_prefix(&donor, 7).unwrap();
    assert_eq!(cache.tokens(), &tokens[..7]);
    model.forward(&mut cache, &tokens[7..], &mut scratch, &mut logits).unwrap();
    assert_eq!(logits, last_logits(&model, &tokens, 1));
}

#[test]
fn sliding_window_layers_forget_old_tokens() {
    // Five layers, all sliding (every sixth layer is global), window 2: the last position
    // sees at most 5 tokens back, so the first token of a 12-token prompt cannot matter.
    let shape = TinyShape { arch: "gemma3", layers: 5, vocab: 64, window: 2 };
    let model = load(&shape);
    let mut tokens = prompt(12);
    let before = last_logits(&model, &tokens, 12);
    tokens[0] = (tokens[0] + 1) % 64;
    assert_close(&before, &last_logits(&model, &tokens, 12));
    // A global model does see it.
    let llama = load(&LLAMA);
    let changed = last_logits(&llama, &tokens, 12);
    tokens[0] = (tokens[0] + 63) % 64;
    let original = last_logits(&llama, &tokens, 12);
    assert!(changed.iter().zip(&original).any(|(a, b)| (a - b).abs() > 1e-4));
}

#[test]
fn bad_tokens_and_a_full_context_are_errors() {
    let model = load(&LLAMA);
    let mut cache = KvCache::new(model.config.layers, model.config.kv_dim(), 4);
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];
    let err = model.forward(&mut cache, &[64], &mut scratch, &mut logits).unwrap_err();
    assert_eq!(err.to_string(), "token id 64 is outside the vocabulary of 64 tokens");
    let err = model.forward(&mut cache, &[1, 2, 3, 4, 5], &mut scratch, &mut logits).unwrap_err();
    assert_eq!(err.to_string(), "the context is full: 5 positions needed, 4 available");
}

#[test]
fn unsupported_models_are_refused_by_name() {
    let refuse = |writer: GgufWriter| {
        Model::from_gguf(Gguf::from_bytes(writer.to_bytes()).unwrap()).err().unwrap().to_string()
    };

    let err = refuse(GgufWriter::new().meta("general.architecture", MetaValue::String("gptj".into())));
    assert!(err.contains("`gptj` is not supported"), "{err}");

    let err = refuse(tiny_model(&LLAMA, 1).meta("llama.block_count", MetaValue::U32(3)));
    assert!(err.contains("3 layers need at least 27 tensors, but the file has 20"), "{err}");

    // A Q2_K matrix: a quant format the kernels do not implement.
    let g =
        Gguf::from_bytes(GgufWriter::new().tensor("w", &[256, 2], GgmlType::Q2K, vec![0; 84 * 2]).to_bytes())
            .unwrap();
    let err = load_matrix(&g, "w", 2, 256).err().unwrap().to_string();
    assert!(err.contains("has type Q2_K"), "{err}");
}

#[test]
fn values_that_would_make_the_logits_nan_are_refused_by_name() {
    let refuse = |writer: GgufWriter| {
        Model::from_gguf(Gguf::from_bytes(writer.to_bytes()).unwrap()).err().unwrap().to_string()
    };
    let err = refuse(tiny_model(&TinyShape { window: 0, ..GEMMA }, 1));
    assert!(err.contains("gemma3 hyperparameters") && err.contains("sliding window is 0"), "{err}");
    let llama = || tiny_model(&LLAMA, 1);
    let err = refuse(llama().meta("llama.attention.layer_norm_rms_epsilon", MetaValue::F32(f32::NAN)));
    assert!(err.contains("RMS norm epsilon NaN"), "{err}");
    let err = refuse(llama().meta("llama.rope.freq_base", MetaValue::F32(-1.0)));
    assert!(err.contains("rotary base -1"), "{err}");
    let err = refuse(llama().meta("llama.context_length", MetaValue::U32(0)));
    assert!(err.contains("trained context length is 0"), "{err}");
    // Found by fuzzing: a block count no file could hold reserved room for that many layers
    // (an abort, not an error).
    let err = refuse(llama().meta("llama.block_count", MetaValue::U32(0xd700_0001)));
    assert!(err.contains("3607101441 layers need at least 32463912969 tensors, but the file has"), "{err}");
    let found = include_bytes!("../../tests/fixtures/fuzz/gguf-block-count.gguf");
    let err = Model::from_gguf(Gguf::from_bytes(found.to_vec()).unwrap()).err().unwrap().to_string();
    assert!(err.contains("3607101441 layers need at least 32463912969 tensors, but the file has 2"), "{err}");
    let err = refuse(llama().meta("llama.attention.key_length", MetaValue::U64(u64::MAX / 2)));
    assert!(err.contains("is more than memory can address"), "{err}");
    let err = refuse(llama().meta("llama.context_length", MetaValue::U32(0)));
    assert!(err.contains("trained context length is 0"), "{err}");
    let mut norm = [1.0f32; EMBED];
    norm[5] = f32::INFINITY;
    let err = refuse(llama().tensor_f32("blk.1.ffn_norm.weight", &[EMBED as u64], &norm));
    assert!(err.contains("tensor `blk.1.ffn_norm.weight`") && err.contains("value 5 is inf"), "{err}");
}

#[test]
fn a_cache_takes_memory_as_it_fills_and_never_beyond_its_capacity() {
    let model = load(&LLAMA);
    let (layers, kvd) = (model.config.layers, model.config.kv_dim());
    let mut cache = KvCache::new(layers, kvd, 1000);
    assert_eq!(cache.allocated_bytes(), 0);
    assert_eq!(cache.full_bytes(), KvCache::bytes_for(layers, kvd, 1000));
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];
    model.forward(&mut cache, &prompt(10), &mut scratch, &mut logits).unwrap();
    let first = cache.allocated_bytes();
    assert!(first > 0 && first < cache.full_bytes() / 2, "{first}");
    // Filling it grows it to the capacity exactly.
    for chunk in prompt(990).chunks(MAX_BATCH) {
        model.forward(&mut cache, chunk, &mut scratch, &mut logits).unwrap();
    }
    assert_eq!((cache.len(), cache.allocated_bytes()), (1000, cache.full_bytes()));
    // A cache copied from a prefix takes only what it holds.
    let mut copy = KvCache::new(layers, kvd, 1000);
    copy.copy_prefix(&cache, 5).unwrap();
    assert_eq!(copy.tokens(), &cache.tokens()[..5]);
    assert!(copy.allocated_bytes() < cache.full_bytes() / 2);
}
