//! The engine against llama.cpp: the same token ids, logits within tolerance, the same
//! greedy continuation, on the fixtures llama.cpp produced from the same GGUF files.

use std::path::Path;

use serde_json::Value;
use temper_engine::gguf::Gguf;
use temper_engine::model::{KvCache, Model, Scratch};
use temper_engine::tokenizer::Tokenizer;

/// How close to llama.cpp a model must be.
struct Tolerance {
    /// Largest allowed |logit difference| on the reference's top 20.
    logit: f32,
    /// Top-two logits closer than this are a near-tie: either token is a correct argmax, and
    /// the greedy comparison stops there.
    near_tie: f32,
}

/// The bounds for SmolLM2 (Q4_1 weights, Q8_0 output).
const SMOLLM2: Tolerance = Tolerance { logit: 0.5, near_tie: 0.3 };
/// Gemma 3 mixes five formats (Q5_0, Q4_K, Q6_K, Q8_0 and a 262k-row Q8_0 output) and its
/// logits are larger: the worst top-20 difference measured is 0.79 (on a low-ranked token),
/// every top-1 and greedy token agrees outside near-ties of this width.
const GEMMA3: Tolerance = Tolerance { logit: 1.0, near_tie: 1.0 };

struct Case {
    text: String,
    ids: Vec<u32>,
    top20: Vec<(u32, f32)>,
    greedy: Vec<u32>,
}

fn logits_cases(fixture: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(fixture).unwrap();
    let ids =
        |v: &Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
    text.lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|case| case["kind"] == "logits")
        .map(|case| Case {
            text: case["text"].as_str().unwrap().to_string(),
            ids: ids(&case["ids"]),
            top20: case["top20"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| (pair[0].as_u64().unwrap() as u32, pair[1].as_f64().unwrap() as f32))
                .collect(),
            greedy: ids(&case["greedy"]),
        })
        .collect()
}

fn argmax_and_margin(logits: &[f32]) -> (u32, f32) {
    let mut best = (0usize, f32::NEG_INFINITY);
    let mut second = f32::NEG_INFINITY;
    for (i, &l) in logits.iter().enumerate() {
        if l > best.1 {
            second = best.1;
            best = (i, l);
        } else if l > second {
            second = l;
        }
    }
    (best.0 as u32, best.1 - second)
}

/// Checks every logits case of `fixture` against the model at `model_path`.
fn check_against_llamacpp(model_path: &Path, fixture: &Path, tolerance: Tolerance) {
    eprintln!("kernels at CPU level {}", temper_kernels::cpu_level());
    let gguf = Gguf::open(model_path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let model = Model::from_gguf(gguf).unwrap();
    let cases = logits_cases(fixture);
    assert!(!cases.is_empty(), "no logits cases in {}", fixture.display());
    let context = cases.iter().map(|c| c.ids.len() + c.greedy.len() + 1).max().unwrap();
    let mut scratch = Scratch::new(&model.config);
    let mut logits = vec![0.0; model.config.vocab];

    for case in &cases {
        let label = &case.text[..case.text.len().min(60)];
        let mut expected_prompt = Vec::new();
        if tokenizer.add_bos() {
            expected_prompt.extend(tokenizer.bos_id());
        }
        expected_prompt.extend(tokenizer.encode(&case.text, true).unwrap());
        assert_eq!(expected_prompt, case.ids, "prompt ids of {label:?}");

        let mut cache = KvCache::new(model.config.layers, model.config.kv_dim(), context);
        model.forward(&mut cache, &case.ids, &mut scratch, &mut logits).unwrap();
        let worst = case.top20.iter().map(|&(id, l)| (logits[id as usize] - l).abs()).fold(0.0f32, f32::max);
        eprintln!("{label:?}: worst top-20 logit difference {worst:.3}");
        assert!(worst <= tolerance.logit, "{label:?}: a top-20 logit differs by {worst}");
        let (ours, _) = argmax_and_margin(&logits);
        let (first, second) = (case.top20[0], case.top20[1]);
        if first.1 - second.1 > tolerance.near_tie {
            assert_eq!(ours, first.0, "{label:?}: top-1");
        } else {
            assert!(
                ours == first.0 || ours == second.0,
                "{label:?}: top-1 {ours} is neither of the near-tied two"
            );
        }

        // Greedy: equal up to the first near-tie (judged on our logits) or the first 16 ids.
        for (step, &expected) in case.greedy.iter().take(16).enumerate() {
            let (token, margin) = argmax_and_margin(&logits);
            if margin <= tolerance.near_tie {
                break;
            }
            assert_eq!(token, expected, "{label:?}: greedy token {step}");
            model.forward(&mut cache, &[token], &mut scratch, &mut logits).unwrap();
        }
    }
}

#[test]
fn smollm2_matches_llamacpp() {
    let Some(path) = temper_testkit::smollm2() else { return };
    check_against_llamacpp(&path, &temper_testkit::smollm2_llamacpp_reference(), SMOLLM2);
}

#[test]
fn gemma3_matches_llamacpp() {
    let Some(path) = temper_testkit::gemma3() else { return };
    let fixture = temper_testkit::gemma3_llamacpp_reference();
    check_against_llamacpp(&path, &fixture, GEMMA3);
}
