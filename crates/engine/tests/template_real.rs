//! The chat templates of the real default models.

use std::path::Path;

use temper_core::Message;
use temper_engine::gguf::Gguf;
use temper_engine::template::ChatTemplate;
use temper_engine::tokenizer::Tokenizer;

fn load(path: &Path) -> (Tokenizer, ChatTemplate) {
    let gguf = Gguf::open(path).unwrap();
    let tokenizer = Tokenizer::from_gguf(&gguf).unwrap();
    let template = ChatTemplate::from_gguf(&gguf, &tokenizer).unwrap();
    (tokenizer, template)
}

/// The text of the first `logits` case of a llama.cpp reference file.
fn first_prompt(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|case| case["kind"] == "logits")
        .map(|case| case["text"].as_str().unwrap().to_string())
        .unwrap()
}

#[test]
fn smollm2_renders_chatml_with_its_default_system_message() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let (tokenizer, template) = load(&path);

    // The prompt the SmolLM2 model card gives for one user message.
    let expected = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
                    <|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let rendered = template.render(&[Message::user("What is the capital of France?")], true).unwrap();
    assert_eq!(rendered, expected);
    let reference = first_prompt(&temper_testkit::smollm2_llamacpp_reference());
    assert!(reference.starts_with(&rendered), "{reference:?}");
    // SmolLM2's BOS text is <|im_start|>, but the model adds no BOS, so nothing is stripped.
    assert!(!tokenizer.add_bos());

    let messages = [
        Message::system("You are a Shakespearean writing assistant who speaks in a Shakespearean style."),
        Message::user("Write a short poem about the sea."),
    ];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        "<|im_start|>system\nYou are a Shakespearean writing assistant who speaks in a Shakespearean style.<|im_end|>\n\
         <|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        template.render(&messages[1..], false).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n"
    );
}

#[test]
fn gemma3_uses_the_built_in_turn_format() {
    let Some(path) = temper_testkit::gemma3() else { return };
    let (tokenizer, template) = load(&path);
    let rendered = template.render(&[Message::user("What is the capital of France?")], true).unwrap();
    assert_eq!(
        rendered,
        "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
    );

    // The engine's prompt is BOS by id, then the rendered text with special tokens parsed; this
    // is the chat case of the llama.cpp reference.
    let mut ids = vec![tokenizer.bos_id().unwrap()];
    ids.extend(tokenizer.encode(&rendered, true).unwrap());
    assert_eq!(ids, [2, 105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107]);

    let with_system = template.render(&[Message::system("Be brief."), Message::user("Hi")], true).unwrap();
    assert_eq!(with_system, "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
}
