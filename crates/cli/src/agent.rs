//! `temper agent …`: run a task with tools, or one tool directly, through temper-agent.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use rustyline::DefaultEditor;
use temper_agent::tools::{PythonRuntime, RagSearch, ToolSettings};
use temper_agent::{clip, Agent, AgentOptions, Event, Limits, Run, Threads, Toolbox};
use temper_core::EmbeddingModel;
use temper_models::{ConsoleProgress, ModelStore, PYTHON_RUNTIME};
use temper_rag::Access;

use crate::options::ConversationArgs;
use crate::output::{block_on, notice, print_json};
use crate::rag::{embedder, store_location};
use crate::repl::next_line;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Run TASK: the model calls tools until it can answer. Each step is printed as it happens.
    Run(Box<RunArgs>),
    /// Talk with an agent: each line is a task, in one thread (docs/agents.md).
    Chat(Box<AgentArgs>),
    /// Run one tool directly with JSON arguments and print its result (no model).
    Tool(Box<ToolArgs>),
    /// List, show and remove conversation threads.
    Threads {
        #[command(subcommand)]
        command: ThreadsCommand,
    },
}

#[derive(Subcommand)]
pub enum ThreadsCommand {
    /// Every thread, the most recent first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The messages of one thread.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a thread.
    Rm { name: String },
}

/// The tools an agent gets, and what they may reach.
#[derive(Args, Default)]
pub struct ToolOptions {
    /// The tools to offer, comma-separated [default: calculator, and every tool whose option is
    /// given: rag_search with --collection, read_file and list_files with --root, sql_query with
    /// --sql, http_get with --allow-host, and the commands of --tools-file].
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub(crate) tools: Option<Vec<String>>,
    /// rag_search: the collection of the RAG store to search.
    #[arg(long)]
    pub(crate) collection: Option<String>,
    /// rag_search: the RAG store (as `temper rag --db`).
    #[arg(long, value_name = "PATH|URL")]
    pub(crate) db: Option<String>,
    /// read_file, list_files: the directory they may read (nothing outside it, symlinks
    /// included); python sees it read-only as /data.
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// python: the directory its code writes files in, kept after the run [default: a
    /// temporary directory, removed at the end].
    #[arg(long, value_name = "DIR")]
    pub(crate) scratch: Option<PathBuf>,
    /// sql_query: the SQLite file it may query, read-only.
    #[arg(long, value_name = "FILE")]
    pub(crate) sql: Option<PathBuf>,
    /// http_get: a host it may fetch from (repeatable; `*.example.com` allows its subdomains).
    #[arg(long, value_name = "HOST")]
    pub(crate) allow_host: Vec<String>,
    /// A TOML file of [[tools]] tables, each a command that reads JSON arguments on stdin and
    /// writes a JSON result on stdout (docs/agents.md).
    #[arg(long, value_name = "FILE")]
    pub(crate) tools_file: Option<PathBuf>,
}

/// An agent: its model, tools, limits and thread.
#[derive(Args)]
pub struct AgentArgs {
    #[command(flatten)]
    conversation: ConversationArgs,
    #[command(flatten)]
    tools: ToolOptions,
    /// The most model calls that may call tools; then the model must answer.
    #[arg(long, default_value_t = Limits::default().max_steps)]
    max_steps: usize,
    /// End the run when its model calls have used this many tokens in all.
    #[arg(long, value_name = "TOKENS")]
    max_run_tokens: Option<u64>,
    /// End the run when it has cost this many USD (models with prices only).
    #[arg(long, value_name = "USD")]
    max_cost: Option<f64>,
    /// End the run after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    max_time: Option<f64>,
    /// The first model call must call a tool (for tasks known to need one, and small models).
    #[arg(long)]
    require_tool: bool,
    /// Keep the conversation in this thread of the thread store (TEMPER_AGENT_DB, default
    /// $TEMPER_HOME/agent.db), and continue it if it exists (chat: default a new thread).
    #[arg(long, value_name = "NAME")]
    thread: Option<String>,
    /// In a thread: the most tokens of earlier turns sent as they are; older ones are folded into
    /// a summary [default: half a local model's context window; all for a remote one].
    #[arg(long, value_name = "TOKENS")]
    history_tokens: Option<usize>,
}

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Print one JSON object at the end: the answer, every step, usage, cost and the time split.
    #[arg(long)]
    json: bool,
    /// The task; `-` reads it from stdin.
    task: String,
}

#[derive(Args)]
pub struct ToolArgs {
    #[command(flatten)]
    tools: ToolOptions,
    /// The arguments as a JSON object.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    args: String,
    /// The tool to run.
    name: String,
}

pub fn run(command: AgentCommand) -> anyhow::Result<()> {
    match command {
        AgentCommand::Run(args) => run_task(&args),
        AgentCommand::Chat(args) => chat(&args),
        AgentCommand::Tool(args) => run_tool(&args),
        AgentCommand::Threads { command } => threads(command),
    }
}

/// The agent `args` describe, with its model loaded.
fn agent(args: &AgentArgs) -> anyhow::Result<Agent> {
    anyhow::ensure!(args.max_steps >= 1, "--max-steps 0: an agent needs at least one step to call a tool");
    let max_time = match args.max_time {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            anyhow::bail!("--max-time {s}: give a number of seconds above 0")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    if let Some(usd) = args.max_cost {
        anyhow::ensure!(usd.is_finite() && usd > 0.0, "--max-cost {usd}: give an amount of USD above 0");
    }
    anyhow::ensure!(args.history_tokens != Some(0), "--history-tokens 0: give a number of tokens above 0");
    let tools = toolbox(&args.tools, args.tools.tools.as_deref())?;
    let gen = &args.conversation.gen;
    let params = gen.params()?;
    let loaded = gen.model.load()?;
    let history_tokens = match (args.history_tokens, &loaded.local) {
        (Some(tokens), _) => Some(tokens),
        (None, Some(local)) => Some(local.context_window_for(&params)? / 2),
        (None, None) => None,
    };
    let options = AgentOptions {
        system: args.conversation.system.clone(),
        params,
        limits: Limits {
            max_steps: args.max_steps,
            max_tokens: args.max_run_tokens,
            max_cost: args.max_cost,
            max_time,
        },
        require_tool: args.require_tool,
        history_tokens,
        ..AgentOptions::default()
    };
    Ok(Agent::new(loaded.model, tools, options))
}

/// The thread store: `TEMPER_AGENT_DB`, else `$TEMPER_HOME/agent.db`.
fn thread_store() -> anyhow::Result<Threads> {
    let path = match std::env::var_os("TEMPER_AGENT_DB").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => ModelStore::from_env()?.root().join("agent.db"),
    };
    Ok(Threads::open(&path)?)
}

fn run_task(args: &RunArgs) -> anyhow::Result<()> {
    let task = crate::oneshot::text_argument(&args.task, "task")?;
    let agent = agent(&args.agent)?;
    let mut printer = Printer { json: args.json, mid_line: false };
    let mut on_event = |event: &Event| printer.show(event);
    let run = match &args.agent.thread {
        Some(name) => block_on(agent.run_in_thread(&mut thread_store()?, name, &task, &mut on_event))?,
        None => block_on(agent.run(&task, &mut on_event))?,
    };
    if args.json {
        return print_json(&run);
    }
    notice(&summary(&run));
    Ok(())
}

/// Each line a task, in one thread; the steps print as in `run`.
fn chat(args: &AgentArgs) -> anyhow::Result<()> {
    let agent = agent(args)?;
    let mut threads = thread_store()?;
    let name = match &args.thread {
        Some(name) => name.clone(),
        None => {
            format!("chat-{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs())
        }
    };
    let interactive = io::stdin().is_terminal();
    if interactive {
        notice(&format!("thread `{name}` · tools: {} · Ctrl-D leaves", agent.tools().names().join(", ")));
    }
    let mut editor = DefaultEditor::new()?;
    while let Some(task) = next_line(&mut editor)? {
        let task = task.as_str();
        let mut printer = Printer { json: false, mid_line: false };
        let run = block_on(agent.run_in_thread(&mut threads, &name, task, &mut |e: &Event| printer.show(e)));
        match run {
            Ok(run) => notice(&summary(&run)),
            Err(err) => eprintln!("error: {err:#}"),
        }
    }
    Ok(())
}

fn threads(command: ThreadsCommand) -> anyhow::Result<()> {
    let mut store = thread_store()?;
    match command {
        ThreadsCommand::List { json } => {
            let threads = store.list()?;
            if json {
                return print_json(&threads);
            }
            let mut out = io::stdout().lock();
            writeln!(out, "{:24}  {:>8}  {:20}  SUMMARISED", "THREAD", "MESSAGES", "UPDATED")?;
            for t in threads {
                let summarized = if t.summarized { "yes" } else { "no" };
                writeln!(out, "{:24}  {:>8}  {:20}  {summarized}", t.name, t.messages, t.updated)?;
            }
            Ok(())
        }
        ThreadsCommand::Show { name, json } => {
            let thread = store.load(&name)?.with_context(|| format!("there is no thread `{name}`"))?;
            if json {
                return print_json(&thread);
            }
            let mut out = io::stdout().lock();
            if let Some(summary) = &thread.summary {
                writeln!(out, "[summary of the first {} messages]\n{summary}\n", thread.summarized_upto)?;
            }
            for message in &thread.messages {
                let calls: Vec<String> =
                    message.tool_calls.iter().map(|c| format!("→ {} {}", c.name, c.arguments)).collect();
                let text = [message.content.as_str()].into_iter().chain(calls.iter().map(String::as_str));
                let text: Vec<&str> = text.filter(|t| !t.is_empty()).collect();
                writeln!(out, "{}: {}", message.role, text.join("\n"))?;
            }
            Ok(())
        }
        ThreadsCommand::Rm { name } => {
            anyhow::ensure!(store.remove(&name)?, "there is no thread `{name}`");
            notice(&format!("removed thread `{name}`"));
            Ok(())
        }
    }
}

fn run_tool(args: &ToolArgs) -> anyhow::Result<()> {
    let tools = toolbox(&args.tools, Some(std::slice::from_ref(&args.name)))?;
    let result =
        block_on(tools.call(&args.name, &args.args)).with_context(|| format!("tool `{}`", args.name))?;
    print_json(&result)
}

/// The toolbox `options` ask for: the tools `names`, or by default those `options` configure.
pub(crate) fn toolbox(options: &ToolOptions, names: Option<&[String]>) -> anyhow::Result<Toolbox> {
    let wants_rag =
        names.map_or(options.collection.is_some(), |names| names.iter().any(|n| n == "rag_search"));
    // The store and the embedder load only when rag_search is wanted.
    let rag = match (wants_rag, &options.collection) {
        (false, _) => None,
        (true, None) => anyhow::bail!("rag_search searches a collection of the RAG store: give --collection"),
        (true, Some(collection)) => {
            let store = store_location(options.db.clone())?.open(Access::Read)?;
            let embedder: Arc<dyn EmbeddingModel> = Arc::new(embedder()?);
            Some(RagSearch::new(store, embedder, collection)?)
        }
    };
    // The runtime is fetched on first use, like a model; its compilation is kept beside it.
    let python = match names.is_some_and(|names| names.iter().any(|n| n == "python")) {
        false => None,
        true => {
            let store = ModelStore::from_env()?;
            let wasm = match store.installed_path(PYTHON_RUNTIME) {
                Some(path) => path,
                None => store.pull(PYTHON_RUNTIME, &ConsoleProgress::default())?,
            };
            let cache_dir = Some(store.root().join("compiled"));
            Some(PythonRuntime { wasm, cache_dir, limits: Default::default() })
        }
    };
    let settings = ToolSettings {
        root: options.root.clone(),
        python,
        scratch: options.scratch.clone(),
        sql: options.sql.clone(),
        allow_hosts: options.allow_host.clone(),
        tools_file: match &options.tools_file {
            Some(file) => Some(file.clone()),
            // temper.toml's own [[tools]], when no tools file is given.
            None => {
                let profiles = crate::options::resolver()?.profiles().clone();
                profiles.has_tools().then(|| profiles.path().map(Path::to_owned)).flatten()
            }
        },
        rag,
    };
    Ok(settings.toolbox(names)?)
}

/// Prints a run's steps as they happen: the model's text on stdout, tool calls and results on
/// stderr, so that `> answer.txt` keeps only what the model wrote.
struct Printer {
    json: bool,
    mid_line: bool,
}

impl Printer {
    fn show(&mut self, event: &Event) {
        if self.json {
            return;
        }
        match event {
            Event::Text { delta } => {
                let mut out = io::stdout().lock();
                // A closed stdout ends nothing here: the run's result still prints its error.
                let _ = out.write_all(delta.as_bytes()).and_then(|()| out.flush());
                self.mid_line = !delta.ends_with('\n');
            }
            Event::Restart { reason } => self.note(&format!("restarting: {reason}")),
            Event::ModelDone { .. } => self.end_line(),
            Event::ToolCall { tool, arguments, .. } => self.note(&format!("→ {tool} {arguments}")),
            Event::ToolResult { tool, result, error, duration_ms, .. } => {
                let shown = match (result, error) {
                    (_, Some(error)) => format!("error: {error}"),
                    (Some(result), None) => clip(&result.to_string(), 300),
                    (None, None) => String::new(),
                };
                self.note(&format!("← {tool} ({duration_ms:.0} ms) {shown}"));
            }
            Event::Answer { stopped: Some(stop), .. } => self.note(&format!("stopped: {stop}")),
            Event::Answer { stopped: None, .. } => self.end_line(),
        }
    }

    fn end_line(&mut self) {
        if self.mid_line {
            println!();
            self.mid_line = false;
        }
    }

    fn note(&mut self, line: &str) {
        self.end_line();
        notice(line);
    }
}

/// `3 model calls · 2 tool calls · 1234 tokens · model 2.1 s, tools 0.3 s, loop 1 ms`
fn summary(run: &Run) -> String {
    let count = |kind: &str| run.steps.iter().filter(|s| s.kind == kind).count();
    let tokens = run.usage.prompt_tokens + run.usage.completion_tokens;
    let mut line = format!(
        "{} model calls · {} tool calls · {tokens} tokens · model {:.1} s, tools {:.1} s, loop {:.0} ms",
        count("model"),
        count("tool"),
        run.time.model_ms / 1000.0,
        run.time.tools_ms / 1000.0,
        run.time.loop_ms
    );
    if let Some(cost) = run.cost {
        line.push_str(&format!(" · ${cost:.6}"));
    }
    line
}
