//! `temper quickstart` and `temper complete`, and what `temper ask` shares with them: a
//! question or text from stdin, an answer streamed or printed as JSON.

use std::io::{self, Read, Write};

use anyhow::Context;
use clap::Args;
use temper_core::{ChatModel, ChatRequest, CompletionRequest, EventStream, GenerationParams, Message};
use temper_engine::LoadOptions;
use temper_models::{ModelStore, DEFAULT_CHAT_MODEL};

use temper_rag::{IngestOptions, SearchOptions, SqliteStore};

use crate::options::{load_model, resolver, GenArgs, Loaded};
use crate::output::{self, block_on};
use crate::rag;

const QUICKSTART_SYSTEM: &str = "You are a helpful assistant. Answer briefly and plainly.";
const QUICKSTART_QUESTION: &str = "In two sentences, what is a language model?";

pub fn quickstart() -> anyhow::Result<()> {
    let loaded = load_model(&resolver()?, DEFAULT_CHAT_MODEL, LoadOptions::default())?;
    let mut out = io::stdout();
    if let Some(local) = &loaded.local {
        writeln!(out, "{}\n", output::summary_line(DEFAULT_CHAT_MODEL, local.summary()))?;
    }
    write!(out, "system: {QUICKSTART_SYSTEM}\nuser: {QUICKSTART_QUESTION}\nassistant: ")?;
    out.flush()?;
    let messages = vec![Message::system(QUICKSTART_SYSTEM), Message::user(QUICKSTART_QUESTION)];
    let params = GenerationParams { max_tokens: Some(120), ..Default::default() };
    let response = block_on(output::stream_answer(
        loaded.model.chat_stream(ChatRequest::new(messages).with_params(params)),
        &mut out,
    ))?;
    writeln!(out, "\n{}\n", output::usage_line(&response))?;
    rag_tour(&loaded, &mut out)?;
    writeln!(
        out,
        "\nNext:\n  \
         temper chat                  talk with the model; /help inside lists the commands\n  \
         temper ask \"a question\"      answer once; --json prints a machine-readable answer\n  \
         temper rag ingest DIR        put your own documents in the store, then temper rag ask\n  \
         temper models list           the models Temper can run, and which are installed"
    )?;
    Ok(())
}

/// A small bundled corpus about made-up places, so that the answer can only come from it.
const QUICKSTART_CORPUS: &[(&str, &str)] = &[
    ("skarvholmen-lighthouse.md", include_str!("../quickstart/skarvholmen-lighthouse.md")),
    ("nordvik-ferry.md", include_str!("../quickstart/nordvik-ferry.md")),
    ("hestoy-cheese.md", include_str!("../quickstart/hestoy-cheese.md")),
];
const QUICKSTART_RAG_QUESTION: &str = "When was Skarvholmen lighthouse first lit?";

/// Ingests the bundled corpus into `$TEMPER_HOME/quickstart/rag.db` (again: only what changed)
/// and answers a question about it, with citations.
fn rag_tour(loaded: &Loaded, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = ModelStore::from_env()?.root().join("quickstart");
    let corpus = dir.join("corpus");
    std::fs::create_dir_all(&corpus).with_context(|| format!("cannot create {}", corpus.display()))?;
    for (name, text) in QUICKSTART_CORPUS {
        let path = corpus.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    writeln!(out, "Answering from documents: {} files in {}", QUICKSTART_CORPUS.len(), corpus.display())?;
    let mut store = SqliteStore::create(&dir.join("rag.db"))?;
    let options = IngestOptions { collection: "quickstart".into(), ..Default::default() };
    let embedder = rag::embedder()?;
    rag::ingest(&mut store, &embedder, &[corpus], &options)?;
    write!(out, "\nuser: {QUICKSTART_RAG_QUESTION}\nassistant: ")?;
    out.flush()?;
    let search = SearchOptions { k: 4, ..Default::default() };
    let question = rag::Question {
        collection: &options.collection,
        text: QUICKSTART_RAG_QUESTION,
        options: &search,
        reranker: None,
        min_similarity: temper_rag::MIN_SIMILARITY,
    };
    let params = GenerationParams { temperature: Some(0.0), max_tokens: Some(80), ..Default::default() };
    let reply = rag::Reply { check: &rag::CheckArgs::strict(), json: false };
    rag::answer(&store, &embedder, &question, params, loaded, &reply, out)
}

#[derive(Args, Debug)]
pub struct CompleteArgs {
    #[command(flatten)]
    gen: GenArgs,
    /// Print one JSON object (text, finish reason, usage, timings) instead of streaming.
    #[arg(long)]
    json: bool,
    /// The text to continue; `-` reads it from stdin.
    text: String,
}

pub fn complete(args: &CompleteArgs) -> anyhow::Result<()> {
    let gen = &args.gen;
    let params = gen.params()?;
    let prompt = text_argument(&args.text, "text")?;
    anyhow::ensure!(!prompt.trim().is_empty(), "the text is empty: there is nothing to continue");
    let model = gen.model.load()?.model;
    answer(model.complete_stream(CompletionRequest { prompt, params, truncate: gen.truncate }), args.json)
}

/// Streams the answer, or with `json` waits for it and prints it as one object.
pub fn answer(stream: EventStream, json: bool) -> anyhow::Result<()> {
    if json {
        output::print_json(&block_on(temper_core::collect_response(stream))?)
    } else {
        block_on(output::stream_answer(stream, &mut io::stdout())).map(drop)
    }
}

/// The argument itself, or stdin when it is `-`.
pub fn text_argument(argument: &str, what: &str) -> anyhow::Result<String> {
    if argument != "-" {
        return Ok(argument.to_owned());
    }
    let mut bytes = Vec::new();
    io::stdin().read_to_end(&mut bytes).with_context(|| format!("cannot read the {what} from stdin"))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("the {what} on stdin is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to())
    })
}
