//! `temper rag …`: ingest files into the store, search them, and answer questions from them
//! with citations.

use anyhow::Context;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use temper_core::{ChatModel, EmbeddingModel, GenerationParams};
use temper_embed::{EmbedOptions, Embedder};
use temper_ground::Mode as Grounding;
use temper_models::{ConsoleProgress, ModelStore, DEFAULT_EMBEDDING_MODEL};
use temper_rag::answer::source_label;
use temper_rag::{
    Access, ChunkOptions, Filter, IngestOptions, IngestProgress, LoadOptions, Mmr, Mode, Reranker, Retriever,
    SearchOptions, StoreLocation, VectorStore,
};

use crate::options::{load_model, resolver, GenArgs, Loaded};
use crate::output::{self, block_on, notice};

/// The embedder every `rag` command uses, the default one pulled on first use; the one place
/// that chooses it.
pub fn embedder() -> anyhow::Result<Embedder> {
    let progress = ConsoleProgress::default();
    Ok(resolver()?.local_embedder(DEFAULT_EMBEDDING_MODEL, false, EmbedOptions::default(), &progress)?)
}

#[derive(Args)]
pub struct RagArgs {
    /// The store: a file, or a PostgreSQL database as postgres://user@host:port/db (default: `db`
    /// of temper.toml's [rag] table, else $TEMPER_HOME/rag.db).
    #[arg(long, global = true, value_name = "PATH|URL", env = "TEMPER_RAG_DB")]
    db: Option<String>,
    /// The collection to work on (default: `default`; for import, the exported one's name).
    #[arg(long, global = true)]
    collection: Option<String>,
    #[command(subcommand)]
    command: RagCommand,
}

#[derive(Subcommand)]
enum RagCommand {
    /// Read files and folders into the collection (again: only what changed).
    Ingest {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Only files matching this glob (repeatable; `!GLOB` excludes).
        #[arg(long)]
        glob: Vec<String>,
        /// JSON/JSONL fields whose values make a record's text (repeatable; default all).
        #[arg(long)]
        field: Vec<String>,
        /// The most tokens in a chunk.
        #[arg(long, default_value_t = ChunkOptions::default().max_tokens)]
        chunk_tokens: usize,
        /// Tokens repeated from one chunk into the next.
        #[arg(long, default_value_t = ChunkOptions::default().overlap)]
        overlap: usize,
        /// Files larger than this many bytes are skipped.
        #[arg(long, default_value_t = LoadOptions::default().max_file_bytes)]
        max_file_bytes: u64,
    },
    /// Print the chunks that best match a query, with scores and sources.
    Search {
        query: String,
        #[command(flatten)]
        retrieval: RetrievalArgs,
        /// Print the hits as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Answer a question from the collection, citing the chunks it uses.
    Ask {
        question: String,
        #[command(flatten)]
        retrieval: RetrievalArgs,
        /// Chunks less similar than this (cosine) to the question are not used.
        #[arg(long, default_value_t = temper_rag::MIN_SIMILARITY)]
        min_similarity: f32,
        #[command(flatten)]
        check: CheckArgs,
        /// Print one JSON object: the answer, whether it declines, each sentence's verdict, the sources.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gen: GenArgs,
    },
    /// List the collections of the store.
    Collections,
    /// Show what the collection holds; --check verifies the whole store file.
    Stats {
        #[arg(long)]
        check: bool,
    },
    /// Remove the collection and everything in it.
    Rm,
    /// Write the collection (chunks, vectors, metadata) to a file that `import` reads into any
    /// store, without embedding again.
    Export { file: PathBuf },
    /// Read a collection written by `export` into the store.
    Import { file: PathBuf },
}

/// How an answer is checked against its sources before it is shown.
#[derive(Args)]
pub struct CheckArgs {
    /// strict: drop unsupported sentences, and decline when what is left answers nothing;
    /// annotate: keep them, marked [unsupported]; off: show the answer as the model gives it.
    #[arg(long, default_value = "strict", value_name = "MODE")]
    grounding: Grounding,
    /// The model that verifies sentences holding no number, date or name (default: the
    /// answering model): a profile, catalog name or GGUF path.
    #[arg(long, value_name = "MODEL")]
    judge: Option<String>,
}

impl CheckArgs {
    /// The grounding mode of `--grounding` (default strict) and the default judge.
    pub fn strict() -> CheckArgs {
        CheckArgs { grounding: Grounding::Strict, judge: None }
    }
}

#[derive(Args)]
struct RetrievalArgs {
    /// How many chunks.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// dense, bm25 or hybrid (both, fused by reciprocal rank).
    #[arg(long, default_value = "hybrid")]
    mode: String,
    /// Only chunks of documents whose metadata has key=value (repeatable): path, name, ext, kind.
    #[arg(long, value_name = "KEY=VALUE")]
    filter: Vec<String>,
    /// Rerank for diversity by maximal marginal relevance; 1 is pure relevance, 0 pure diversity.
    #[arg(long, value_name = "LAMBDA")]
    mmr: Option<f32>,
}

impl RetrievalArgs {
    fn options(&self) -> anyhow::Result<(SearchOptions, Option<Mmr>)> {
        let mmr = match self.mmr {
            Some(lambda) if !(0.0..=1.0).contains(&lambda) => anyhow::bail!("--mmr must be between 0 and 1"),
            other => other.map(|lambda| Mmr { lambda }),
        };
        let options = SearchOptions {
            k: self.k,
            mode: self.mode.parse::<Mode>()?,
            filter: Filter::parse(&self.filter)?,
            ..Default::default()
        };
        Ok((options, mmr))
    }
}

/// The store of `--db`, else `TEMPER_RAG_DB`, else `[rag] db` of temper.toml, else
/// `$TEMPER_HOME/rag.db`: the one place that chooses it (for `rag`, `serve` and eval specs alike).
pub fn store_location(db: Option<String>) -> anyhow::Result<StoreLocation> {
    let db = db.or_else(|| std::env::var("TEMPER_RAG_DB").ok().filter(|v| !v.is_empty()));
    let configured =
        || -> anyhow::Result<Option<String>> { Ok(resolver()?.profiles().rag_db().map(str::to_owned)) };
    if let Some(db) = db.map_or_else(configured, |db| Ok(Some(db)))? {
        return Ok(StoreLocation::parse(&db));
    }
    Ok(StoreLocation::File(ModelStore::from_env()?.root().join("rag.db")))
}

pub fn run(args: RagArgs) -> anyhow::Result<()> {
    let location = store_location(args.db.clone())?;
    let collection = args.collection.as_deref().unwrap_or("default");
    // Only ingestion creates a store; reading commands open it read-only, so a mistyped --db
    // creates nothing and a store the user may only read can be searched.
    match args.command {
        RagCommand::Ingest { paths, glob, field, chunk_tokens, overlap, max_file_bytes } => {
            let options = IngestOptions {
                collection: collection.to_owned(),
                globs: glob,
                load: LoadOptions { max_file_bytes, json_fields: field },
                chunk: ChunkOptions { max_tokens: chunk_tokens, overlap },
                ..Default::default()
            };
            options.chunk.validate()?;
            let embedder = embedder()?;
            check_chunk_size(&options.chunk, &embedder)?;
            ingest(location.open(Access::Create)?.as_mut(), &embedder, &paths, &options)
        }
        RagCommand::Search { query, retrieval, json } => {
            search(location.open(Access::Read)?.as_ref(), collection, &query, &retrieval, json)
        }
        RagCommand::Ask { question, retrieval, min_similarity, check, json, gen } => {
            let store = location.open(Access::Read)?;
            let (options, mmr) = retrieval.options()?;
            let reranker = mmr.as_ref().map(|m| m as &dyn Reranker);
            let question =
                Question { collection, text: &question, options: &options, reranker, min_similarity };
            let loaded = gen.model.load()?;
            let reply = Reply { check: &check, json };
            answer(store.as_ref(), &embedder()?, &question, gen.params()?, &loaded, &reply, &mut io::stdout())
        }
        RagCommand::Collections => {
            let store = location.open(Access::Read)?;
            let mut out = io::stdout();
            writeln!(out, "{:20}  {:>9}  {:>7}  EMBEDDER", "COLLECTION", "DOCUMENTS", "CHUNKS")?;
            for c in store.collections()? {
                writeln!(
                    out,
                    "{:20}  {:>9}  {:>7}  {} ({} dimensions)",
                    c.name, c.documents, c.chunks, c.embedder, c.dimensions
                )?;
            }
            writeln!(out, "\nstore: {location}")?;
            Ok(())
        }
        RagCommand::Stats { check } => {
            // A full check of a file needs write access for FTS5's part; without it the rest is checked.
            let store = match check {
                true => location.open(Access::Write).or_else(|_| location.open(Access::Read))?,
                false => location.open(Access::Read)?,
            };
            let c = store.collection(collection)?;
            let size = store.size()?;
            let mut out = io::stdout();
            writeln!(out, "collection: {}\ndocuments:  {}\nchunks:     {}", c.name, c.documents, c.chunks)?;
            writeln!(out, "embedder:   {} ({} dimensions)", c.embedder, c.dimensions)?;
            writeln!(out, "store:      {location} ({})", output::human_bytes(size))?;
            if check {
                match store.check()?.full_text {
                    true => writeln!(out, "check:      ok")?,
                    false => {
                        writeln!(out, "check:      ok (not the full-text index: FTS5 checks it as a write)")?
                    }
                }
            }
            Ok(())
        }
        RagCommand::Rm => {
            location.open(Access::Write)?.remove_collection(collection)?;
            writeln!(io::stdout(), "removed collection {collection}")?;
            Ok(())
        }
        RagCommand::Export { file } => {
            let store = location.open(Access::Read)?;
            let moved = export(store.as_ref(), collection, &file)?;
            writeln!(
                io::stdout(),
                "exported collection {collection}: {} documents, {} chunks to {}",
                moved.documents,
                moved.chunks,
                file.display()
            )?;
            Ok(())
        }
        RagCommand::Import { file } => {
            let input =
                std::fs::File::open(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut store = location.open(Access::Create)?;
            let source = file.display().to_string();
            let mut input = io::BufReader::new(input);
            let (name, moved) = temper_rag::transfer::import(
                store.as_mut(),
                &mut input,
                &source,
                args.collection.as_deref(),
            )?;
            writeln!(
                io::stdout(),
                "imported collection {name}: {} documents, {} chunks into {location}",
                moved.documents,
                moved.chunks
            )?;
            Ok(())
        }
    }
}

/// Writes the collection to `file` whole or not at all: into a file beside it, renamed over
/// it once complete.
fn export(
    store: &dyn VectorStore,
    collection: &str,
    file: &Path,
) -> anyhow::Result<temper_rag::transfer::Moved> {
    let folder = file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let partial = tempfile::NamedTempFile::new_in(folder)
        .with_context(|| format!("cannot write in {}", folder.display()))?;
    let mut out = io::BufWriter::new(partial);
    let moved = temper_rag::transfer::export(store, collection, &mut out)?;
    let partial = out.into_inner().map_err(|e| e.into_error())?;
    partial.as_file().sync_all()?;
    partial.persist(file).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(moved)
}

/// Chunks longer than the embedder reads would be cut short when embedded: refused before any
/// work. (Its counts include the two special tokens, as the embedder's window does.)
fn check_chunk_size(chunk: &ChunkOptions, embedder: &Embedder) -> anyhow::Result<()> {
    let window = embedder.max_seq_length();
    anyhow::ensure!(
        chunk.max_tokens <= window,
        "--chunk-tokens {} is more than the embedder {} reads ({window} tokens): longer chunks would be cut \
         short when embedded",
        chunk.max_tokens,
        embedder.name()
    );
    Ok(())
}

/// A progress bar over files, with chunks stored and their rate in its message.
struct Bar {
    bar: ProgressBar,
    stored: usize,
    started: Instant,
}

impl IngestProgress for Bar {
    fn start(&mut self, files: usize) {
        self.bar.set_length(files as u64);
    }

    fn file_read(&mut self, path: &Path, _chunks: usize) {
        self.bar.inc(1);
        self.bar.set_prefix(path.file_name().map_or(String::new(), |n| n.to_string_lossy().into_owned()));
    }

    fn stored(&mut self, chunks: usize) {
        self.stored += chunks;
        let rate = self.stored as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        self.bar.set_message(format!("{} chunks, {rate:.0} chunks/s", self.stored));
    }
}

/// Ingests `paths` with a progress bar, then prints what changed and what was skipped.
pub fn ingest(
    store: &mut dyn VectorStore,
    embedder: &Embedder,
    paths: &[PathBuf],
    options: &IngestOptions,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} files · {msg} · {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut progress = Bar { bar, stored: 0, started: Instant::now() };
    // Chunks are sized with the embedder's own tokenizer, so none is cut short when embedded.
    let report = block_on(temper_rag::ingest(store, embedder, embedder, paths, options, &mut progress))?;
    progress.bar.finish_and_clear();
    let mut out = io::stdout();
    writeln!(
        out,
        "{}: {} added, {} updated, {} unchanged, {} removed; {} chunks embedded",
        options.collection, report.added, report.updated, report.unchanged, report.removed, report.chunks
    )?;
    if !report.skipped.is_empty() {
        writeln!(out, "skipped {} files:", report.skipped.len())?;
        for s in &report.skipped {
            writeln!(out, "  {}: {}", s.path.display(), s.reason)?;
        }
    }
    Ok(())
}

fn search(
    store: &dyn VectorStore,
    collection: &str,
    query: &str,
    args: &RetrievalArgs,
    json: bool,
) -> anyhow::Result<()> {
    let (options, mmr) = args.options()?;
    let reranker = mmr.as_ref().map(|m| m as &dyn Reranker);
    let embedder = embedder()?;
    let retriever = Retriever { store, embedder: &embedder, collection, reranker };
    let hits = block_on(retriever.search(query, &options))?;
    if json {
        return output::print_json(&hits);
    }
    let mut out = io::stdout();
    for (rank, hit) in hits.iter().enumerate() {
        let preview: String = hit.chunk.text.split_whitespace().collect::<Vec<_>>().join(" ");
        let preview: String = preview.chars().take(160).collect();
        writeln!(out, "{:>2}. {:.4}  {}\n    {preview}", rank + 1, hit.score, source_label(hit))?;
    }
    if hits.is_empty() {
        notice("no chunk matches");
    }
    Ok(())
}

/// A question to answer from a collection, and how to retrieve for it.
pub struct Question<'a> {
    pub collection: &'a str,
    pub text: &'a str,
    pub options: &'a SearchOptions,
    pub reranker: Option<&'a dyn Reranker>,
    /// Chunks less similar than this (cosine) to the question are not used.
    pub min_similarity: f32,
}

/// How an answer is checked and printed.
pub struct Reply<'a> {
    pub check: &'a CheckArgs,
    /// One JSON object rather than text.
    pub json: bool,
}

/// Retrieves for `question`, has the model answer from the relevant chunks with `[n]`
/// citations, checks the answer against them as `reply.check` says, and prints it with the list
/// of sources; or says the documents do not hold the answer. Without a check the answer streams.
pub fn answer(
    store: &dyn VectorStore,
    embedder: &Embedder,
    question: &Question,
    params: GenerationParams,
    loaded: &Loaded,
    reply: &Reply,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Fitting the context needs the model's own tokenizer and window, which only a local model has.
    let local = loaded.local.as_ref().context(
        "`temper rag ask` fits the documents with the model's own tokenizer, so it needs a local model \
         (a catalog name or a GGUF path), not a remote profile",
    )?;
    let retriever =
        Retriever { store, embedder, collection: question.collection, reranker: question.reranker };
    let options = temper_rag::AskOptions {
        min_similarity: question.min_similarity,
        context_window: local.summary().context_window,
        params,
        ..Default::default()
    };
    let grounding = temper_rag::ground(&retriever, question.text, question.options, &options, local.as_ref());
    let Some(grounded) = block_on(grounding)? else {
        if reply.json {
            let nothing = json!({ "answer": temper_rag::NOT_IN_DOCUMENTS, "declined": true, "sentences": [], "sources": [] });
            return output::print_json(&nothing);
        }
        writeln!(out, "{}", temper_rag::NOT_IN_DOCUMENTS)?;
        return Ok(());
    };
    let stream = loaded.model.chat_stream(grounded.request);
    if reply.check.grounding == Grounding::Off && !reply.json {
        block_on(output::stream_answer(temper_rag::grounded_stream(stream, &grounded.sources), out))?;
    } else {
        let judge = match &reply.check.judge {
            Some(name) => Some(load_model(&resolver()?, name, temper_engine::LoadOptions::default())?.model),
            None => None,
        };
        let verifier = judge.as_deref().unwrap_or(loaded.model.as_ref());
        let checked = temper_rag::checked_answer(
            stream,
            question.text,
            &grounded.sources,
            reply.check.grounding,
            Some(verifier),
        );
        let checked = block_on(checked)?;
        if reply.json {
            let sources: Vec<_> = grounded
                .sources
                .iter()
                .enumerate()
                .map(|(n, hit)| json!({ "n": n + 1, "source": source_label(hit), "path": hit.chunk.path }))
                .collect();
            let report = json!({
                "answer": checked.text,
                "model_text": checked.model_text,
                "declined": checked.declined,
                "answers": checked.grounding.answers,
                "check_ms": checked.check_ms,
                "sentences": checked.grounding.sentences,
                "sources": sources,
            });
            return output::print_json(&report);
        }
        writeln!(out, "{}", checked.text)?;
    }
    writeln!(out, "\nSources:")?;
    for (n, hit) in grounded.sources.iter().enumerate() {
        writeln!(out, "[{}] {}", n + 1, source_label(hit))?;
    }
    Ok(())
}
