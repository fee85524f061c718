//! [`Metered`]: a model under a profile's name, with the profile's default parameters, and
//! every answer priced and logged.

use std::sync::Arc;

use futures::StreamExt;
use temper_core::{
    error_chain, ChatModel, ChatRequest, CompletionRequest, EventStream, GenerationParams, StreamEvent,
};
use temper_providers::WarningSink;

use crate::cost::{CallLog, CallRecord, Prices};
use crate::Profile;

/// Wraps a model: requests get the profile's parameters under their own, and every `Done`
/// gets its cost (when the prices are known) and goes into the call log.
pub struct Metered {
    name: String,
    inner: Arc<dyn ChatModel>,
    defaults: GenerationParams,
    prices: Option<Prices>,
    log: Option<CallLog>,
    warn: WarningSink,
}

impl Metered {
    pub fn new(name: impl Into<String>, inner: Arc<dyn ChatModel>, warn: WarningSink) -> Metered {
        Metered {
            name: name.into(),
            inner,
            defaults: GenerationParams::default(),
            prices: None,
            log: None,
            warn,
        }
    }

    /// `inner` as profile `name` says (its default parameters and prices, when there is a
    /// profile), logging every answer to `log`.
    pub fn for_profile(
        name: &str,
        profile: Option<&Profile>,
        inner: Arc<dyn ChatModel>,
        log: CallLog,
        warn: WarningSink,
    ) -> Metered {
        let metered = Metered::new(name, inner, warn).with_log(log);
        match profile {
            Some(profile) => metered.with_defaults(profile.params.clone()).with_prices(profile.prices()),
            None => metered,
        }
    }

    /// Parameters a request's own override.
    pub fn with_defaults(mut self, defaults: GenerationParams) -> Metered {
        self.defaults = defaults;
        self
    }

    pub fn with_prices(mut self, prices: Option<Prices>) -> Metered {
        self.prices = prices;
        self
    }

    /// Where to record each answer; a failure to write is a warning, not a failed answer.
    pub fn with_log(mut self, log: CallLog) -> Metered {
        self.log = Some(log);
        self
    }

    fn meter(&self, stream: EventStream) -> EventStream {
        let (name, prices, log, warn) = (self.name.clone(), self.prices, self.log.clone(), self.warn.clone());
        let record = move |record: CallRecord| {
            if let Some(log) = &log {
                if let Err(err) = log.append(&record) {
                    warn(error_chain(&err));
                }
            }
        };
        Box::pin(stream.map(move |event| match event {
            Ok(StreamEvent::Done(mut response)) => {
                response.model = name.clone();
                response.cost = prices.map(|p| p.cost(&response.usage));
                record(CallRecord::now(&name, &response.usage, response.cost));
                Ok(StreamEvent::Done(response))
            }
            Err(err) => {
                record(CallRecord::failed(&name, &error_chain(&err)));
                Err(err)
            }
            other => other,
        }))
    }
}

impl ChatModel for Metered {
    fn name(&self) -> &str {
        &self.name
    }

    fn chat_stream(&self, mut request: ChatRequest) -> EventStream {
        request.params = self.defaults.overlay(&request.params);
        self.meter(self.inner.chat_stream(request))
    }

    fn complete_stream(&self, mut request: CompletionRequest) -> EventStream {
        request.params = self.defaults.overlay(&request.params);
        self.meter(self.inner.complete_stream(request))
    }
}
