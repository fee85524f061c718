//! [`Fallback`]: a chain of models tried in order, restarting the answer on the next model
//! when one fails, even mid-stream.

use std::sync::Arc;

use futures::StreamExt;
use temper_core::{ChatModel, ChatRequest, CompletionRequest, Error, EventStream, Result, StreamEvent};

/// Models tried in order. When one fails (before or during its answer), the next one answers
/// from the start, after a `StreamEvent::Restart` that says why: the caller drops any text it
/// has shown, and `Done` holds only the answer that completed, never two spliced together.
pub struct Fallback {
    name: String,
    models: Vec<Arc<dyn ChatModel>>,
}

impl Fallback {
    /// A chain called `name`; `models` must not be empty.
    pub fn new(name: impl Into<String>, models: Vec<Arc<dyn ChatModel>>) -> Result<Fallback> {
        let name = name.into();
        if models.is_empty() {
            return Err(Error::invalid_param("fallback", format!("the chain `{name}` has no models")));
        }
        Ok(Fallback { name, models })
    }

    /// Runs `start` on each model in turn until one completes.
    fn walk(&self, start: impl Fn(&dyn ChatModel) -> EventStream + Send + Sync + 'static) -> EventStream {
        let walk =
            Walk { models: self.models.clone(), index: 0, current: None, failures: Vec::new(), done: false };
        Box::pin(futures::stream::unfold((walk, start), |(mut walk, start)| async move {
            let event = walk.next(&start).await?;
            Some((event, (walk, start)))
        }))
    }
}

struct Walk {
    models: Vec<Arc<dyn ChatModel>>,
    index: usize,
    current: Option<EventStream>,
    /// `model: error` for each model that failed, for the final error.
    failures: Vec<String>,
    done: bool,
}

impl Walk {
    async fn next(
        &mut self,
        start: &(impl Fn(&dyn ChatModel) -> EventStream + Send + Sync),
    ) -> Option<Result<StreamEvent>> {
        if self.done {
            return None;
        }
        let model = self.models[self.index].clone();
        let stream = self.current.get_or_insert_with(|| start(model.as_ref()));
        let failure = match stream.next().await {
            Some(Ok(StreamEvent::Done(response))) => {
                self.done = true;
                return Some(Ok(StreamEvent::Done(response)));
            }
            Some(Ok(event)) => return Some(Ok(event)),
            Some(Err(err)) => temper_core::error_chain(&err),
            None => "the stream ended before the answer was complete".to_owned(),
        };
        self.current = None;
        self.failures.push(format!("{}: {failure}", model.name()));
        self.index += 1;
        match self.models.get(self.index) {
            Some(next) => {
                let reason = format!("{} failed ({failure}); falling back to {}", model.name(), next.name());
                Some(Ok(StreamEvent::Restart { reason }))
            }
            None => {
                self.done = true;
                if self.models.len() == 1 {
                    return Some(Err(Error::Backend(failure)));
                }
                Some(Err(Error::Backend(format!(
                    "every model of the chain failed: {}",
                    self.failures.join("; ")
                ))))
            }
        }
    }
}

impl ChatModel for Fallback {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        self.walk(move |model| model.chat_stream(request.clone()))
    }

    fn complete_stream(&self, request: CompletionRequest) -> EventStream {
        self.walk(move |model| model.complete_stream(request.clone()))
    }
}
