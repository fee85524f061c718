//! The GGUF reader on the real default models.

use temper_engine::gguf::Gguf;
use temper_kernels::GgmlType;

#[test]
fn reads_smollm2() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.architecture().unwrap(), "llama");
    assert_eq!(g.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(g.get_array("tokenizer.ggml.tokens").unwrap().len(), 49152);
    assert_eq!(g.tensors.len(), 272);
    let embd = g.tensor("token_embd.weight").unwrap();
    assert_eq!((embd.dims.as_slice(), embd.ty), (&[576, 49152][..], GgmlType::Q8_0));
    assert_eq!(g.tensor_data(embd).len(), 576 / 32 * 34 * 49152);
}

#[test]
fn reads_gemma3() {
    let Some(path) = temper_testkit::gemma3() else { return };
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.architecture().unwrap(), "gemma3");
    assert_eq!(g.get_u64("gemma3.attention.sliding_window").unwrap(), 512);
    let kinds: std::collections::BTreeSet<_> = g.tensors.iter().map(|t| t.ty.name()).collect();
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["F32", "Q4_K", "Q5_0", "Q6_K", "Q8_0"]);
}
