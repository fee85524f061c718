use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Stream, StreamExt};

use crate::{
    ChatResponse, Error, GenerationParams, Message, ResponseFormat, Result, StreamEvent, Tool, ToolChoice,
    MAX_TOP_LOGPROBS,
};

/// A boxed stream of events, as every backend returns it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent>> + Send>>;

/// A conversation to continue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<Message>,
    pub params: GenerationParams,
    /// Drop the oldest prompt tokens when the prompt does not fit, instead of failing.
    pub truncate: bool,
    /// Functions the model may call instead of answering in text.
    pub tools: Vec<Tool>,
    pub tool_choice: ToolChoice,
    /// Whether one turn may call several tools. Unset, a vendor uses its own default (OpenAI:
    /// yes) and the local engine allows one call, as llama.cpp's server does: small models left
    /// free tend to repeat a call until `max_tokens` runs out.
    pub parallel_tool_calls: Option<bool>,
    /// The shape the answer must take; `None` is free text.
    pub response_format: Option<ResponseFormat>,
    /// Return each generated token's log-probability and this many alternatives (at most 20).
    pub logprobs: Option<u32>,
}

impl ChatRequest {
    pub fn new(messages: Vec<Message>) -> Self {
        ChatRequest { messages, ..Default::default() }
    }

    pub fn with_params(mut self, params: GenerationParams) -> Self {
        self.params = params;
        self
    }

    pub fn with_tools(mut self, tools: Vec<Tool>, choice: ToolChoice) -> Self {
        self.tools = tools;
        self.tool_choice = choice;
        self
    }

    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    pub fn with_logprobs(mut self, top: u32) -> Self {
        self.logprobs = Some(top);
        self
    }

    /// The structured output this request asks for: `None` when it asks for plain text, whether
    /// by saying nothing or by asking for `Text`.
    pub fn structured_format(&self) -> Option<&ResponseFormat> {
        self.response_format.as_ref().filter(|f| **f != ResponseFormat::Text)
    }

    /// The features beyond plain text this request asks for, by their API names: what a
    /// backend without them must refuse.
    pub fn requested_features(&self) -> Vec<&'static str> {
        let mut features = Vec::new();
        if !self.tools.is_empty() {
            features.push("tools");
        }
        if self.structured_format().is_some() {
            features.push("response_format");
        }
        if self.logprobs.is_some() {
            features.push("logprobs");
        }
        features
    }

    /// Checks the parameters, the tools and the options that go with them, naming the first
    /// that is wrong.
    pub fn validate(&self) -> Result<()> {
        self.params.validate()?;
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return Err(Error::invalid_param("logprobs", format!("at most {MAX_TOP_LOGPROBS} alternatives")));
        }
        for (i, tool) in self.tools.iter().enumerate() {
            let valid_name = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(Error::invalid_param(
                    format!("tools[{i}].name"),
                    format!("`{}` must be 1 to 64 letters, digits, `_` or `-`", tool.name),
                ));
            }
            if !tool.parameters.is_object() {
                return Err(Error::invalid_param(
                    format!("tools[{i}].parameters"),
                    "must be a JSON schema object",
                ));
            }
            if self.tools[..i].iter().any(|t| t.name == tool.name) {
                return Err(Error::invalid_param("tools", format!("`{}` is declared twice", tool.name)));
            }
        }
        match &self.tool_choice {
            ToolChoice::Required if self.tools.is_empty() => {
                Err(Error::invalid_param("tool_choice", "`required` needs at least one tool"))
            }
            ToolChoice::Function(name) if !self.tools.iter().any(|t| &t.name == name) => Err(
                Error::invalid_param("tool_choice", format!("names `{name}`, which is not among the tools")),
            ),
            _ => Ok(()),
        }
    }
}

/// Raw text to continue, with no chat template: what base models are for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompletionRequest {
    pub prompt: String,
    pub params: GenerationParams,
    /// Drop the oldest prompt tokens when the prompt does not fit, instead of failing.
    pub truncate: bool,
}

/// A model that answers conversations: the local engine or an HTTP vendor.
/// Usable as `Arc<dyn ChatModel>`, so that a profile can pick the backend at run time.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The name the model answers to (a catalog name, a path, a vendor's id).
    fn name(&self) -> &str;

    /// Streams the answer to a conversation; the last event is `Done`.
    fn chat_stream(&self, request: ChatRequest) -> EventStream;

    /// Streams the continuation of raw text. Backends without raw completion refuse it.
    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        let _ = request;
        let message = format!("{} does not support raw text completion", self.name());
        Box::pin(futures::stream::once(async move { Err(Error::Unsupported(message)) }))
    }

    /// Answers a conversation in one piece.
    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        collect_response(self.chat_stream(request)).await
    }

    /// Continues raw text in one piece.
    async fn complete(&self, request: CompletionRequest) -> Result<ChatResponse> {
        collect_response(self.complete_stream(request)).await
    }
}

#[async_trait]
impl<M: ChatModel + ?Sized> ChatModel for Arc<M> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        (**self).chat_stream(request)
    }

    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        (**self).complete_stream(request)
    }

    async fn chat(&self, request: ChatRequest) -> Result<ChatResponse> {
        (**self).chat(request).await
    }

    async fn complete(&self, request: CompletionRequest) -> Result<ChatResponse> {
        (**self).complete(request).await
    }
}

/// A model that turns texts into vectors: the local embedder or an HTTP vendor's.
#[async_trait]
pub trait EmbeddingModel: Send + Sync {
    /// The name the model answers to.
    fn name(&self) -> &str;

    /// Length of every vector this model returns.
    fn dimensions(&self) -> usize;

    /// One vector per text, in order.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>>;
}

#[async_trait]
impl<M: EmbeddingModel + ?Sized> EmbeddingModel for Arc<M> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn dimensions(&self) -> usize {
        (**self).dimensions()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
        (**self).embed(texts).await
    }
}

/// Drains a stream into its final response.
pub async fn collect_response(mut stream: EventStream) -> Result<ChatResponse> {
    while let Some(event) = stream.next().await {
        if let StreamEvent::Done(response) = event? {
            return Ok(response);
        }
    }
    Err(Error::Backend("the stream ended before the answer was complete".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FinishReason, Timings, Usage};

    /// Echoes the last message back, one word per event.
    struct Echo;

    impl ChatModel for Echo {
        fn name(&self) -> &str {
            "echo"
        }

        fn chat_stream(&self, request: ChatRequest) -> EventStream {
            let text = request.messages.last().map(|m| m.content.clone()).unwrap_or_default();
            let mut events: Vec<Result<StreamEvent>> =
                text.split_inclusive(' ').map(|w| Ok(StreamEvent::Delta(w.to_string()))).collect();
            events.push(Ok(StreamEvent::Done(ChatResponse {
                model: "echo".into(),
                text,
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
                timings: Timings::default(),
                ..Default::default()
            })));
            Box::pin(futures::stream::iter(events))
        }
    }

    /// A text's length in bytes and in words: a vector per text, enough to check the trait works
    /// behind `Arc<dyn>`. Not temper-testkit's fakes: testkit depends on this crate.
    struct Lengths;

    #[async_trait]
    impl EmbeddingModel for Lengths {
        fn name(&self) -> &str {
            "lengths"
        }

        fn dimensions(&self) -> usize {
            2
        }

        async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
            Ok(texts.iter().map(|t| vec![t.len() as f32, t.split_whitespace().count() as f32]).collect())
        }
    }

    #[test]
    fn requests_name_their_features_and_check_their_tools() {
        let weather = Tool::new("weather", "today's weather", serde_json::json!({"type": "object"}));
        let plain = ChatRequest::new(vec![Message::user("hi")]);
        assert!(plain.requested_features().is_empty());
        plain.validate().unwrap();
        let asks = plain
            .clone()
            .with_tools(vec![weather.clone()], ToolChoice::Function("weather".into()))
            .with_response_format(ResponseFormat::JsonObject)
            .with_logprobs(2);
        assert_eq!(asks.requested_features(), ["tools", "response_format", "logprobs"]);
        asks.validate().unwrap();

        let wrong = |request: ChatRequest| request.validate().unwrap_err().to_string();
        let unknown = plain.clone().with_tools(vec![weather.clone()], ToolChoice::Function("news".into()));
        assert!(wrong(unknown).contains("`news`, which is not among the tools"));
        assert!(wrong(plain.clone().with_tools(vec![], ToolChoice::Required)).contains("tool_choice"));
        let spaced = Tool { name: "get weather".into(), ..weather.clone() };
        assert!(wrong(plain.clone().with_tools(vec![spaced], ToolChoice::Auto)).contains("tools[0].name"));
        let twice = plain.clone().with_tools(vec![weather.clone(), weather], ToolChoice::Auto);
        assert!(wrong(twice).contains("declared twice"));
        assert!(wrong(plain.with_logprobs(21)).contains("logprobs"));
    }

    #[tokio::test]
    async fn embedders_work_behind_arc_dyn() {
        let model: Arc<dyn EmbeddingModel> = Arc::new(Lengths);
        let vectors = model.embed(&["ab ba".to_string(), "c".to_string()]).await.unwrap();
        assert_eq!(vectors, [[5.0, 2.0], [1.0, 1.0]]);
        assert_eq!(model.dimensions(), 2);
    }

    #[tokio::test]
    async fn works_behind_arc_dyn() {
        let model: Arc<dyn ChatModel> = Arc::new(Echo);
        let answer = model.chat(ChatRequest::new(vec![Message::user("hello there")])).await.unwrap();
        assert_eq!(answer.text, "hello there");
        let err = model.complete(CompletionRequest::default()).await.unwrap_err();
        assert!(err.to_string().contains("does not support raw text completion"));
    }
}
