//! temper-eval on the real default model (skipped locally when it is absent, failed under
//! `CI=true`): the same spec with a fixed seed and no cache gives the same scores twice.

use std::path::Path;
use std::sync::Arc;

use temper_core::{ChatModel, GenerationParams};
use temper_engine::{LoadOptions, LocalModel};
use temper_eval::{Evaluator, Spec};

#[test]
fn a_fixed_seed_gives_the_same_scores_twice() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let options = LoadOptions { threads: Some(2), context_window: Some(1024), sequences: Some(4) };
    let model: Arc<dyn ChatModel> =
        Arc::new(LocalModel::load(&path, "smollm2-135m-instruct", options).expect("the default model loads"));
    let spec = Spec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/eval/sentiment.toml"))
        .unwrap();
    let rows = &spec.selected_rows().unwrap()[..6];
    // Sampled, so that only the seed makes the runs agree.
    let mut variant = spec.variants("unused").remove(0);
    variant.params = variant.params.overlay(&GenerationParams {
        temperature: Some(0.9),
        max_tokens: Some(6),
        seed: Some(11),
        ..Default::default()
    });
    let resolve = move |_: &str| -> Result<Arc<dyn ChatModel>, String> { Ok(model.clone()) };
    let evaluator = Evaluator::new(spec.settings(), resolve, None, None).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let first = runtime.block_on(evaluator.evaluate(&variant, rows)).unwrap();
    let second = runtime.block_on(evaluator.evaluate(&variant, rows)).unwrap();
    assert_eq!((first.calls, second.calls), (6, 6), "the cache is off");
    let outputs =
        |r: &temper_eval::VariantReport| r.rows.iter().map(|row| row.output.clone()).collect::<Vec<_>>();
    assert_eq!(outputs(&first), outputs(&second));
    assert_eq!(first.score, second.score);
    assert!(first.rows.iter().all(|r| r.error.is_none() && !r.output.is_empty()), "{:?}", outputs(&first));
}
