//! Any bytes given to the GGUF reader give a file or an error, never a panic or a huge
//! allocation. When the bytes parse, the model loader and the tokenizer must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_engine::gguf::Gguf;

fuzz_target!(|data: &[u8]| {
    if let Ok(gguf) = Gguf::from_bytes(data.to_vec()) {
        let _ = temper_engine::tokenizer::Tokenizer::from_gguf(&gguf);
        let _ = temper_engine::model::Model::from_gguf(gguf);
    }
});
