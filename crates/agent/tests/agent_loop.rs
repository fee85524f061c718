//! The agent loop's edge cases, on a scripted model: concurrent calls, tools that fail or get
//! bad arguments, each limit, calls that start while the model still streams, and histories
//! with a result for every call; and the python tool's sandbox under attack.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use temper_agent::tools::PythonTool;
use temper_agent::{
    sandbox, Agent, AgentOptions, Event, Limits, Run, Stop, Threads, Tool, ToolError, Toolbox, INTERRUPTED,
};
use temper_core::{
    ChatModel, ChatRequest, ChatResponse, EventStream, FinishReason, Role, StreamEvent, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};

/// One turn of the script: text, or tool calls `(name, arguments)`.
#[derive(Clone)]
enum Turn {
    Text(&'static str),
    Calls(Vec<(&'static str, &'static str)>),
}

/// A model that plays its turns in order (the last one again when they run out), streaming
/// calls piece by piece, waiting `before_done` before its final event, and keeping every
/// request it got.
struct Script {
    turns: Vec<Turn>,
    before_done: Duration,
    usage: Usage,
    requests: Arc<Mutex<Vec<ChatRequest>>>,
    /// When each turn's final event was sent.
    done_at: Arc<Mutex<Vec<Instant>>>,
}

impl Script {
    fn new(turns: Vec<Turn>) -> Self {
        Script {
            turns,
            before_done: Duration::ZERO,
            usage: Usage { prompt_tokens: 100, completion_tokens: 20 },
            requests: Arc::default(),
            done_at: Arc::default(),
        }
    }
}

impl ChatModel for Script {
    fn name(&self) -> &str {
        "script"
    }

    fn chat_stream(&self, request: ChatRequest) -> EventStream {
        let mut requests = self.requests.lock().unwrap();
        let played = requests.iter().filter(|r| !is_summary(r)).count();
        let turn = self.turns[played.min(self.turns.len() - 1)].clone();
        // A request that forbids tools gets text, whatever the script says; so does a summary.
        let turn = match () {
            _ if is_summary(&request) => Turn::Text("the user asked for sums"),
            _ if request.tool_choice == ToolChoice::None => Turn::Text("final answer"),
            _ => turn,
        };
        requests.push(request);
        let mut events = Vec::new();
        let mut response = ChatResponse { model: "script".into(), usage: self.usage, ..Default::default() };
        match turn {
            Turn::Text(text) => {
                events.extend(text.split_inclusive(' ').map(|w| StreamEvent::Delta(w.into())));
                response.text = text.into();
            }
            Turn::Calls(calls) => {
                for (index, (name, arguments)) in calls.iter().enumerate() {
                    let id = format!("id{index}");
                    let (head, tail) = arguments.split_at(arguments.len() / 2);
                    events.push(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: Some(id.clone()),
                        name: Some((*name).into()),
                        arguments: head.into(),
                    }));
                    events.push(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: None,
                        name: None,
                        arguments: tail.into(),
                    }));
                    response.tool_calls.push(ToolCall {
                        id,
                        name: (*name).into(),
                        arguments: (*arguments).into(),
                    });
                }
                response.finish_reason = FinishReason::ToolCalls;
            }
        }
        let (before_done, done_at) = (self.before_done, self.done_at.clone());
        let stream = async_stream(events, before_done, response, done_at);
        Box::pin(stream)
    }
}

/// Whether `request` asks for a thread's summary rather than a turn.
fn is_summary(request: &ChatRequest) -> bool {
    request.messages[0].content.starts_with("Summarise")
}

fn async_stream(
    events: Vec<StreamEvent>,
    before_done: Duration,
    response: ChatResponse,
    done_at: Arc<Mutex<Vec<Instant>>>,
) -> impl futures::Stream<Item = temper_core::Result<StreamEvent>> + Send {
    let head = futures::stream::iter(events.into_iter().map(Ok));
    let done = futures::stream::once(async move {
        tokio::time::sleep(before_done).await;
        done_at.lock().unwrap().push(Instant::now());
        Ok(StreamEvent::Done(response))
    });
    futures::StreamExt::chain(head, done)
}

/// Sleeps `ms` milliseconds, records when it started, and answers `{"slept": ms}`; `live`
/// counts its calls running now.
struct Sleep {
    started: Arc<Mutex<Vec<Instant>>>,
    live: Arc<AtomicUsize>,
}

#[async_trait]
impl Tool for Sleep {
    fn name(&self) -> &str {
        "sleep"
    }
    fn description(&self) -> &str {
        "Sleeps."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"ms": {"type": "integer", "minimum": 0}}, "required": ["ms"]})
    }
    async fn call(&self, arguments: Value) -> Result<Value, ToolError> {
        self.started.lock().unwrap().push(Instant::now());
        let _live = Live::count(&self.live);
        let ms = arguments["ms"].as_u64().unwrap_or_default();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok(json!({ "slept": ms }))
    }
}

/// Counts itself in while it lives: a call dropped mid-way counts out.
struct Live(Arc<AtomicUsize>);

impl Live {
    fn count(counter: &Arc<AtomicUsize>) -> Live {
        counter.fetch_add(1, Ordering::SeqCst);
        Live(counter.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Always fails.
struct Broken;

#[async_trait]
impl Tool for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn description(&self) -> &str {
        "Fails."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    async fn call(&self, _: Value) -> Result<Value, ToolError> {
        Err(ToolError::Failed("the disk is on fire".into()))
    }
}

/// `sleep` and `broken`, and when `sleep` started each call.
fn agent_tools() -> (Toolbox, Arc<Mutex<Vec<Instant>>>) {
    let started = Arc::new(Mutex::new(Vec::new()));
    let tools = Toolbox::new()
        .with(Arc::new(Sleep { started: started.clone(), live: Arc::default() }))
        .unwrap()
        .with(Arc::new(Broken))
        .unwrap();
    (tools, started)
}

fn agent(script: Script, limits: Limits) -> (Agent, Arc<Mutex<Vec<Instant>>>) {
    let (tools, started) = agent_tools();
    let options = AgentOptions { limits, ..AgentOptions::default() };
    (Agent::new(Arc::new(script), tools, options), started)
}

async fn run(agent: &Agent) -> (Run, Vec<Event>) {
    let mut events = Vec::new();
    let run = agent.run("do the task", &mut |e: &Event| events.push(e.clone())).await.unwrap();
    (run, events)
}

/// Every assistant turn that called tools is followed by exactly one result per call, in order.
fn assert_no_orphan_calls(run: &Run) {
    let messages = &run.messages;
    for (i, message) in messages.iter().enumerate() {
        for (k, call) in message.tool_calls.iter().enumerate() {
            let answer = messages.get(i + 1 + k).unwrap_or_else(|| panic!("no result for {}", call.id));
            assert_eq!(answer.role, Role::Tool);
            assert_eq!(answer.tool_call_id.as_deref(), Some(call.id.as_str()));
        }
    }
}

#[tokio::test]
async fn the_calls_of_one_turn_run_at_once_and_their_results_come_back_in_call_order() {
    let script = Script::new(vec![
        Turn::Calls(vec![
            ("sleep", r#"{"ms": 400}"#),
            ("sleep", r#"{"ms": 100}"#),
            ("sleep", r#"{"ms": 400}"#),
        ]),
        Turn::Text("all slept"),
    ]);
    let requests = script.requests.clone();
    let (agent, _) = agent(script, Limits::default());
    let (run, events) = run(&agent).await;

    assert_eq!(run.answer, "all slept");
    assert_eq!(run.stopped, None);
    // Three calls of 400, 100 and 400 ms: together well under their 900 ms sum.
    assert!(run.time.tools_ms < 700.0, "{:?}", run.time);
    let kinds: Vec<&str> = run.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["model", "tool", "tool", "tool", "model"]);
    assert_eq!(run.steps[2].result, Some(json!({"slept": 100})));
    assert_eq!(run.steps[2].arguments, Some(json!({"ms": 100})));
    assert_eq!(run.usage, Usage { prompt_tokens: 200, completion_tokens: 40 });

    // The short call reports first; the history keeps the calls' order.
    let results: Vec<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::ToolResult { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(results[0], "id1");
    let second = &requests.lock().unwrap()[1];
    let ids: Vec<_> = second.messages.iter().filter_map(|m| m.tool_call_id.as_deref()).collect();
    assert_eq!(ids, ["id0", "id1", "id2"]);
    assert_eq!(second.messages.last().unwrap().content, r#"{"slept":400}"#);
    assert_no_orphan_calls(&run);
    assert!(matches!(events.last(), Some(Event::Answer { text, stopped: None }) if text == "all slept"));
}

#[tokio::test]
async fn a_failing_tool_bad_arguments_and_an_unknown_tool_are_results_the_model_reads() {
    let script = Script::new(vec![
        Turn::Calls(vec![
            ("broken", "{}"),
            ("sleep", r#"{"ms": "soon"}"#),
            ("teleport", "{}"),
            ("sleep", "{ms: 1"),
        ]),
        Turn::Text("recovered"),
    ]);
    let requests = script.requests.clone();
    let (agent, started) = agent(script, Limits::default());
    let (run, _) = run(&agent).await;

    assert_eq!(run.answer, "recovered");
    let errors: Vec<String> = run.steps.iter().filter_map(|s| s.error.clone()).collect();
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors[0], "the disk is on fire");
    assert!(errors[1].starts_with("invalid arguments: at /ms:"), "{}", errors[1]);
    assert_eq!(errors[2], "there is no tool `teleport`; the tools are: sleep, broken");
    assert!(errors[3].starts_with("invalid arguments: not JSON"), "{}", errors[3]);
    // Arguments that are not JSON are kept as the model wrote them.
    assert_eq!(run.steps[4].arguments, Some(json!("{ms: 1")));
    // The tool never saw the bad calls.
    assert!(started.lock().unwrap().is_empty());

    let second = &requests.lock().unwrap()[1];
    let fire = second.messages.iter().find(|m| m.tool_call_id.as_deref() == Some("id0")).unwrap();
    assert_eq!(fire.content, r#"{"error":"the disk is on fire"}"#);
    assert_no_orphan_calls(&run);
}

#[tokio::test]
async fn a_run_at_its_step_limit_still_answers() {
    let script = Script::new(vec![Turn::Calls(vec![("sleep", r#"{"ms": 1}"#)])]);
    let requests = script.requests.clone();
    let (agent, started) = agent(script, Limits { max_steps: 3, ..Limits::default() });
    let (run, events) = run(&agent).await;

    assert_eq!(run.answer, "final answer");
    assert_eq!(run.stopped, Some(Stop::Steps { max: 3 }));
    assert_eq!(started.lock().unwrap().len(), 3);
    let requests = requests.lock().unwrap();
    assert_eq!(requests.len(), 4);
    let last = requests.last().unwrap();
    assert_eq!(last.tool_choice, ToolChoice::None);
    assert!(last.messages.last().unwrap().content.contains("Answer the task now"));
    // The request's nudge is not part of the history; the answer is.
    assert_eq!(run.messages.last().unwrap().content, "final answer");
    assert!(!run.messages.iter().any(|m| m.content.contains("Answer the task now")));
    assert_no_orphan_calls(&run);
    let Some(Event::Answer { stopped: Some(stop), .. }) = events.last() else { panic!("{events:?}") };
    assert_eq!(stop.to_string(), "the step limit (3 steps with tools) was reached");
}

#[tokio::test]
async fn the_time_limit_stops_running_tools_and_leaves_no_call_without_a_result() {
    let script = Script::new(vec![
        Turn::Calls(vec![("sleep", r#"{"ms": 10}"#), ("sleep", r#"{"ms": 60000}"#)]),
        Turn::Text("never"),
    ]);
    let limits = Limits { max_time: Some(Duration::from_millis(500)), ..Limits::default() };
    let (agent, _) = agent(script, limits);
    let started = Instant::now();
    let (run, _) = run(&agent).await;

    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(run.stopped, Some(Stop::Time { max_ms: 500 }));
    assert_eq!(run.steps[1].result, Some(json!({"slept": 10})));
    assert_eq!(run.steps[2].error.as_deref(), Some("not finished: the run's time limit was reached"));
    assert_no_orphan_calls(&run);
}

#[tokio::test]
async fn the_token_limit_ends_the_run_with_the_best_text_so_far() {
    let mut script = Script::new(vec![Turn::Calls(vec![("sleep", r#"{"ms": 1}"#)])]);
    script.usage = Usage { prompt_tokens: 300, completion_tokens: 50 };
    let (agent, _) = agent(script, Limits { max_tokens: Some(1000), ..Limits::default() });
    let (run, _) = run(&agent).await;

    assert_eq!(run.stopped, Some(Stop::Tokens { max: 1000, used: 1050 }));
    assert_eq!(run.steps.iter().filter(|s| s.kind == "model").count(), 3);
    assert_no_orphan_calls(&run);
    assert_eq!(run.stopped.unwrap().to_string(), "the token limit (1000) was reached: 1050 tokens used");
}

#[tokio::test]
async fn a_call_starts_as_soon_as_the_model_has_written_it() {
    let mut script = Script::new(vec![
        Turn::Calls(vec![("sleep", r#"{"ms": 1}"#), ("sleep", r#"{"ms": 2}"#)]),
        Turn::Text("done"),
    ]);
    script.before_done = Duration::from_millis(300);
    let done_at = script.done_at.clone();
    let (agent, started) = agent(script, Limits::default());
    let (run, _) = run(&agent).await;

    assert_eq!(run.answer, "done");
    let started = started.lock().unwrap();
    let done = done_at.lock().unwrap()[0];
    // The first call was whole when the second began: it ran while the model still streamed.
    assert!(started[0] < done, "the first call waited for the end of the stream");
    assert!(started[1] >= done - Duration::from_millis(5));
}

#[tokio::test]
async fn a_required_tool_binds_the_first_call_only() {
    let script = Script::new(vec![Turn::Calls(vec![("sleep", r#"{"ms": 1}"#)]), Turn::Text("done")]);
    let requests = script.requests.clone();
    let options = AgentOptions { require_tool: true, ..AgentOptions::default() };
    let agent = Agent::new(Arc::new(script), agent_tools().0, options);
    let (run, _) = run(&agent).await;
    assert_eq!(run.answer, "done");
    let choices: Vec<ToolChoice> = requests.lock().unwrap().iter().map(|r| r.tool_choice.clone()).collect();
    assert_eq!(choices, [ToolChoice::Required, ToolChoice::Auto]);
}

#[tokio::test]
async fn an_empty_task_is_refused() {
    let (agent, _) = agent(Script::new(vec![Turn::Text("x")]), Limits::default());
    let err = agent.run("  \n", &mut |_: &Event| {}).await.unwrap_err();
    assert_eq!(err.to_string(), "the task is empty: there is nothing to do");
}

#[tokio::test]
async fn a_thread_carries_the_conversation_from_one_run_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let mut threads = Threads::open(&dir.path().join("agent.db")).unwrap();
    let script = Script::new(vec![Turn::Calls(vec![("sleep", r#"{"ms": 1}"#)]), Turn::Text("slept once")]);
    let requests = script.requests.clone();
    let (agent, _) = agent(script, Limits::default());
    let first = agent.run_in_thread(&mut threads, "naps", "nap once", &mut |_: &Event| {}).await.unwrap();
    assert_eq!(first.answer, "slept once");
    let second = agent.run_in_thread(&mut threads, "naps", "and now?", &mut |_: &Event| {}).await.unwrap();
    assert_eq!(second.answer, "slept once");

    let last = requests.lock().unwrap().last().unwrap().clone();
    let contents: Vec<&str> = last.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents[1..], ["nap once", "", r#"{"slept":1}"#, "slept once", "and now?"]);
    let stored = threads.load("naps").unwrap().unwrap();
    assert_eq!(stored.messages.len(), 6);
    assert_eq!(stored.messages[5].content, "slept once");
}

#[tokio::test]
async fn a_run_killed_while_its_tool_runs_leaves_a_thread_that_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut threads = Threads::open(&dir.path().join("agent.db")).unwrap();
    let script = Script::new(vec![Turn::Calls(vec![("sleep", r#"{"ms": 60000}"#)]), Turn::Text("awake")]);
    let live = Arc::new(AtomicUsize::new(0));
    let sleep = Sleep { started: Arc::default(), live: live.clone() };
    let tools = Toolbox::new().with(Arc::new(sleep)).unwrap();
    let sleepy = Agent::new(Arc::new(script), tools, AgentOptions::default());
    // Dropping the run's future mid-call is what a kill does to it.
    let killed = tokio::time::timeout(
        Duration::from_millis(300),
        sleepy.run_in_thread(&mut threads, "t", "sleep a minute", &mut |_: &Event| {}),
    )
    .await;
    assert!(killed.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(live.load(Ordering::SeqCst), 0, "the dropped run left its tool running");
    let stored = threads.load("t").unwrap().unwrap();
    let contents: Vec<&str> = stored.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["sleep a minute"], "only the step in flight is lost");

    let (later, _) = agent(Script::new(vec![Turn::Text("awake")]), Limits::default());
    let run = later.run_in_thread(&mut threads, "t", "still there?", &mut |_: &Event| {}).await.unwrap();
    assert_eq!(run.answer, "awake");
    assert_no_orphan_calls(&run);
    assert!(!run.messages.iter().any(|m| m.content == INTERRUPTED));
}

#[tokio::test]
async fn a_long_thread_is_folded_into_a_summary_the_model_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut threads = Threads::open(&dir.path().join("agent.db")).unwrap();
    let script = Script::new(vec![Turn::Text("an answer of some length, to fill the thread up")]);
    let requests = script.requests.clone();
    let options = AgentOptions { history_tokens: Some(60), ..AgentOptions::default() };
    let agent = Agent::new(Arc::new(script), agent_tools().0, options);
    for task in ["first question about sums", "second question about sums", "third question", "fourth"] {
        agent.run_in_thread(&mut threads, "long", task, &mut |_: &Event| {}).await.unwrap();
    }
    let requests = requests.lock().unwrap();
    let summaries: Vec<&ChatRequest> = requests.iter().filter(|r| is_summary(r)).collect();
    assert!(!summaries.is_empty(), "the thread was never folded");
    assert!(summaries[0].messages[1].content.contains("first question about sums"));

    let last = requests.last().unwrap();
    assert!(last.messages[0]
        .content
        .contains("A summary of the earlier conversation:\nthe user asked for sums"));
    assert!(!last.messages.iter().any(|m| m.content == "first question about sums"));
    assert_eq!(last.messages.last().unwrap().content, "fourth");
    let stored = threads.load("long").unwrap().unwrap();
    assert_eq!(stored.messages.len(), 8, "folding keeps every message in the store");
    assert!(
        stored.summarized_upto >= 2 && stored.summarized_upto.is_multiple_of(2),
        "{}",
        stored.summarized_upto
    );
}

#[tokio::test]
async fn code_that_attacks_the_python_sandbox_gets_an_error_result_and_the_run_goes_on() {
    let Some(wasm) = temper_testkit::installed(temper_models::PYTHON_RUNTIME) else { return };
    let cache = temper_testkit::store().root().join("compiled");
    let python = sandbox::Python::load(&wasm, Some(&cache)).unwrap();
    let limits =
        sandbox::Limits { time: Duration::from_secs(2), memory_bytes: 64 << 20, ..Default::default() };
    let tool = PythonTool::new(python, None, None, limits).unwrap();
    let attacks = [
        (r#"{"code": "import socket\nsocket.create_connection(('127.0.0.1', 22))"}"#, "the code failed"),
        (r#"{"code": "open('/etc/passwd').read()"}"#, "No such file or directory"),
        (r#"{"code": "import os\nos.environ['HOME']"}"#, "KeyError: 'HOME'"),
        (r#"{"code": "open('/tmp/pwned', 'w')"}"#, "No such file or directory"),
        (r#"{"code": "while True: pass"}"#, "stopped after 2.0 s"),
        (r#"{"code": "x = ' ' * 10 ** 9"}"#, "more than 64 MiB of memory"),
        (r#"{"code": "import os\nos.fork()"}"#, "AttributeError"),
        (r#"{"code": "while True: print('x' * 4096)"}"#, "printed more than 1024 KiB"),
        (r#"{"code": "def f(n): return f(n + 1)\nf(0)"}"#, "RecursionError"),
    ];
    let mut calls: Vec<(&str, &str)> = attacks.iter().map(|(code, _)| ("python", *code)).collect();
    calls.push(("python", r#"{"code": "print('still here')\n6 * 7"}"#));
    let script = Script::new(vec![Turn::Calls(calls), Turn::Text("survived")]);
    let agent =
        Agent::new(Arc::new(script), Toolbox::new().with(Arc::new(tool)).unwrap(), AgentOptions::default());
    let (run, _) = run(&agent).await;

    assert_eq!(run.answer, "survived");
    let tools: Vec<&temper_agent::Step> = run.steps.iter().filter(|s| s.kind == "tool").collect();
    for (step, (code, expected)) in tools.iter().zip(&attacks) {
        let error = step.error.as_deref().unwrap_or_else(|| panic!("{code} ran: {:?}", step.result));
        assert!(error.contains(expected), "{code}: {error}");
    }
    let last = tools.last().unwrap();
    assert_eq!(
        last.result,
        Some(json!({"stdout": "still here\n", "value": "42", "stderr": "", "files": []}))
    );
    assert_no_orphan_calls(&run);
}
