use super::*;
use crate::gguf::{GgufWriter, MetaValue};

const CHATML: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + \
                      '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// A GGUF with a three-token SentencePiece vocabulary (`<pad>`, `<eos>`, `<bos>`).
fn gguf(architecture: &str, template: Option<&str>) -> Gguf {
    let tokens = ["<pad>", "<eos>", "<bos>"];
    let mut writer = GgufWriter::new()
        .meta("general.architecture", MetaValue::String(architecture.into()))
        .meta("tokenizer.ggml.model", MetaValue::String("llama".into()))
        .meta(
            "tokenizer.ggml.tokens",
            MetaValue::Array(tokens.iter().map(|t| MetaValue::String(t.to_string())).collect()),
        )
        .meta("tokenizer.ggml.scores", MetaValue::Array(vec![MetaValue::F32(0.0); 3]))
        .meta("tokenizer.ggml.token_type", MetaValue::Array(vec![MetaValue::I32(3); 3]))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(2))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(1));
    if let Some(template) = template {
        writer = writer.meta("tokenizer.chat_template", MetaValue::String(template.into()));
    }
    Gguf::from_bytes(writer.to_bytes()).unwrap()
}

fn from_gguf(gguf: &Gguf) -> Result<ChatTemplate, TemplateError> {
    ChatTemplate::from_gguf(gguf, &Tokenizer::from_gguf(gguf).unwrap())
}

#[test]
fn renders_a_template_from_the_file() {
    let template = from_gguf(&gguf("llama", Some(CHATML))).unwrap();
    let text = template.render(&[Message::system("Be brief."), Message::user("Hi")], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(template.render(&[Message::user("Hi")], false).unwrap(), "<|im_start|>user\nHi<|im_end|>\n");
}

#[test]
fn gemma_without_a_template_gets_its_turn_format() {
    let template = from_gguf(&gguf("gemma3", None)).unwrap();
    let conversation = [
        Message::system("Answer in French."),
        Message::user("Hello"),
        Message::assistant("Bonjour"),
        Message::user("Bye"),
    ];
    assert_eq!(
        template.render(&conversation, true).unwrap(),
        "<start_of_turn>user\nAnswer in French.\n\nHello<end_of_turn>\n<start_of_turn>model\nBonjour<end_of_turn>\n\
         <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(
        template.render(&[Message::user("Hi")], false).unwrap(),
        "<start_of_turn>user\nHi<end_of_turn>\n",
        "no generation prompt, and no <bos>: the engine adds BOS by id"
    );
}

#[test]
fn other_architectures_without_a_template_are_an_error() {
    let err = from_gguf(&gguf("llama", None)).unwrap_err().to_string();
    assert!(
        err.contains("no chat template") && err.contains("temper complete") && err.contains("`llama`"),
        "{err}"
    );
}

#[test]
fn a_leading_bos_is_removed_only_when_the_engine_adds_it() {
    let source =
        "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}{{ eos_token }}";
    let added = ChatTemplate::from_source(source, "<s>", "</s>", true).unwrap();
    assert_eq!(added.render(&[Message::user("x")], false).unwrap(), "[user]x</s>");
    let kept = ChatTemplate::from_source(source, "<s>", "</s>", false).unwrap();
    assert_eq!(kept.render(&[Message::user("x")], false).unwrap(), "<s>[user]x</s>");
}

#[test]
fn python_string_methods_work() {
    let source = "{% for m in messages %}{{ m.content.strip().upper() }}{% if m.content.startswith(' a') %}!{% endif %}{% endfor %}";
    let template = ChatTemplate::from_source(source, "", "", false).unwrap();
    assert_eq!(template.render(&[Message::user(" abc ")], false).unwrap(), "ABC!");
}

#[test]
fn broken_templates_are_errors_with_the_line() {
    let err = ChatTemplate::from_source(
        "line one\n{% for message in messages %}\n{{ message.content",
        "",
        "",
        false,
    )
    .unwrap_err();
    assert!(matches!(err, TemplateError::Syntax(_)), "{err:?}");
    assert!(err.to_string().contains("chat_template:3"), "{err}");

    let source = "{% if messages | length > 1 %}{{ raise_exception('only one message, please') }}{% endif %}";
    let template = ChatTemplate::from_source(source, "", "", false).unwrap();
    assert!(template.render(&[Message::user("a")], false).is_ok());
    let err = template.render(&[Message::user("a"), Message::user("b")], false).unwrap_err();
    assert!(matches!(err, TemplateError::Render(_)), "{err:?}");
    assert!(err.to_string().contains("only one message, please"), "{err}");

    let template = ChatTemplate::from_source("{{ messages[0].content.nope() }}", "", "", false).unwrap();
    assert!(matches!(template.render(&[Message::user("a")], false), Err(TemplateError::Render(_))));
}

#[test]
fn strftime_formats_utc_dates() {
    assert_eq!(strftime("%d %b %Y", 0), "01 Jan 1970");
    // 2023-11-14 22:13:20 UTC, a Tuesday, day 318.
    assert_eq!(
        strftime("%A %a %B %Y-%m-%d %H:%M:%S %j %y", 1_700_000_000),
        "Tuesday Tue November 2023-11-14 22:13:20 318 23"
    );
    assert_eq!(strftime("%I %p %e %% %Q", 1_700_000_000), "10 PM 14 % %Q");
    // A leap day.
    assert_eq!(strftime("%Y-%m-%d %j", 1_709_164_800), "2024-02-29 060");
}

#[test]
fn templates_can_be_shared_between_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<ChatTemplate>();
}

#[test]
fn a_template_that_knows_tools_gets_them_and_the_calls_in_openais_shape() {
    // The shape of Qwen 2.5's and Hermes' templates, cut down.
    let source = "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }}:{{ t.function.parameters.type }};{% endfor %}</tools>{% endif %}\
                  {% for m in messages %}[{{ m.role }}]{{ m.content }}{% for c in m.tool_calls or [] %}\
                  <call id={{ c.id }}>{{ c.function.name }}({{ c.function.arguments.city }})</call>{% endfor %}\
                  {% if m.tool_call_id %}<for {{ m.tool_call_id }}>{% endif %}{% endfor %}";
    let template = ChatTemplate::from_source(source, "", "", false).unwrap();
    assert!(template.renders_tools());
    assert!(!ChatTemplate::from_source(CHATML, "", "", false).unwrap().renders_tools());
    let call = temper_core::ToolCall {
        id: "c1".into(),
        name: "weather".into(),
        arguments: r#"{"city":"Oslo"}"#.into(),
    };
    let messages = [
        Message::user("Oslo?"),
        Message::assistant_tool_calls("", vec![call]),
        Message::tool_result("c1", "12 C"),
    ];
    let tools = [Tool::new("weather", "Weather in a city", serde_json::json!({"type": "object"}))];
    let text = template.render_with_tools(&messages, &tools, false).unwrap();
    assert_eq!(text, "<tools>weather:object;</tools>[user]Oslo?[assistant]<call id=c1>weather(Oslo)</call>[tool]12 C<for c1>");
}
