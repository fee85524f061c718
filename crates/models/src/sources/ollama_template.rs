//! Ollama's template layer is a Go template, which the engine cannot run; the common shapes are
//! recognized by their special tokens and given as the equivalent Jinja template. Anything else
//! is left alone (the GGUF's own template, or the engine's error saying there is none).

use temper_engine::template::GEMMA_TEMPLATE;

/// ChatML (Qwen, SmolLM, …): `<|im_start|>ROLE\nCONTENT<|im_end|>`.
const CHATML_TEMPLATE: &str = r#"
{%- for message in messages -%}
    {{- '<|im_start|>' ~ message.role ~ '\n' ~ message.content ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|im_start|>assistant\n' -}}
{%- endif -%}
"#;

/// Llama 3: `<|start_header_id|>ROLE<|end_header_id|>\n\nCONTENT<|eot_id|>` after the BOS text.
const LLAMA3_TEMPLATE: &str = r#"
{{- bos_token -}}
{%- for message in messages -%}
    {{- '<|start_header_id|>' ~ message.role ~ '<|end_header_id|>\n\n' ~ (message.content | trim) ~ '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"#;

/// The Jinja template equivalent to Ollama's Go template `go`, when its shape is a known one.
pub(crate) fn jinja_for(go: &str) -> Option<&'static str> {
    let has = |tokens: &[&str]| tokens.iter().all(|t| go.contains(t));
    if has(&["<|im_start|>", "<|im_end|>"]) {
        Some(CHATML_TEMPLATE)
    } else if has(&["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]) {
        Some(LLAMA3_TEMPLATE)
    } else if has(&["<start_of_turn>", "<end_of_turn>"]) {
        Some(GEMMA_TEMPLATE)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_shapes_are_recognized() {
        let chatml = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(jinja_for(chatml), Some(CHATML_TEMPLATE));
        let llama3 = "<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>";
        assert_eq!(jinja_for(llama3), Some(LLAMA3_TEMPLATE));
        let gemma = "<start_of_turn>user\n{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n";
        assert_eq!(jinja_for(gemma), Some(GEMMA_TEMPLATE));
        assert_eq!(jinja_for("[INST] {{ .Prompt }} [/INST]"), None);
    }
}
