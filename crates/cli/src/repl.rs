//! `temper chat`: the interactive REPL. Lines are questions, or commands starting with `/`.
//! Without a terminal on stdin it reads line by line, so scripts and tests can drive it.

use std::io::{self, IsTerminal, Write};

use anyhow::Context;
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use temper_core::{ChatModel, ChatRequest, GenerationParams, Message};
use temper_models::Resolver;

use crate::options::{load_model, resolver, ConversationArgs, Loaded, ModelArgs};
use crate::output::{self, block_on, notice};

const HELP: &str = "\
/system TEXT      set the system message and start a new conversation (no TEXT: none)
/reset            start a new conversation
/params           show the generation parameters that are set
/set NAME VALUE   set a parameter, e.g. /set temperature 0.2 (VALUE none: back to the default)
/model NAME       switch to another model (a profile, a catalog name or a GGUF path), keeping the conversation
/help             this list
/exit             leave (Ctrl-D too); Ctrl-C stops an answer";

struct Repl {
    resolver: Resolver,
    model_args: ModelArgs,
    model: Loaded,
    system: Option<String>,
    conversation: Vec<Message>,
    params: GenerationParams,
    truncate: bool,
}

enum Flow {
    Continue,
    Exit,
}

pub fn run(args: &ConversationArgs) -> anyhow::Result<()> {
    let params = args.gen.params()?;
    let resolver = resolver()?;
    let model_args = args.gen.model.clone();
    let model = load_model(&resolver, model_args.name(), model_args.load_options())?;
    let interactive = io::stdin().is_terminal();
    if interactive {
        notice(&describe(&model));
        notice("Type a message, or /help for the commands.");
    }
    let mut repl = Repl {
        resolver,
        model_args,
        model,
        system: args.system.clone(),
        conversation: Vec::new(),
        params,
        truncate: args.gen.truncate,
    };

    let mut editor = DefaultEditor::new()?;
    // Only a person's lines are worth recalling; piped input would flood the history.
    let history = interactive.then(|| repl.resolver.store().root().join("history.txt"));
    if let Some(file) = &history {
        // A first run has no history yet.
        let _ = editor.load_history(file);
    }
    while let Some(line) = next_line(&mut editor)? {
        let line = line.as_str();
        if history.is_some() {
            editor.add_history_entry(line)?;
        }
        let step = match line.strip_prefix('/') {
            Some(command) => repl.command(command),
            None => repl.say(line).map(|()| Flow::Continue),
        };
        match step {
            Ok(Flow::Continue) => {}
            Ok(Flow::Exit) => break,
            Err(err) if output::is_broken_pipe(&err) => return Err(err),
            Err(err) => eprintln!("error: {err:#}"),
        }
    }
    if let Some(file) = &history {
        save_history(&mut editor, file);
    }
    Ok(())
}

/// The next line that holds something, trimmed; `None` at the end of input (Ctrl-D).
pub fn next_line(editor: &mut DefaultEditor) -> anyhow::Result<Option<String>> {
    loop {
        match editor.readline("> ") {
            Ok(line) if line.trim().is_empty() => continue,
            Ok(line) => return Ok(Some(line.trim().to_owned())),
            // Ctrl-C at the prompt clears the line.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(None),
            Err(err) => return Err(err).context("cannot read the next line"),
        }
    }
}

/// The local model's summary, or the remote profile's name.
fn describe(loaded: &Loaded) -> String {
    match &loaded.local {
        Some(local) => output::summary_line(loaded.model.name(), local.summary()),
        None => format!("{}: a remote profile", loaded.model.name()),
    }
}

fn save_history(editor: &mut DefaultEditor, file: &std::path::Path) {
    let saved = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .map_err(ReadlineError::from)
        .and_then(|()| editor.save_history(file));
    if let Err(err) = saved {
        notice(&format!("cannot save the history to {}: {err}", file.display()));
    }
}

impl Repl {
    fn command(&mut self, line: &str) -> anyhow::Result<Flow> {
        let (name, argument) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let argument = argument.trim();
        let mut out = io::stdout();
        match name {
            "exit" | "quit" => return Ok(Flow::Exit),
            "help" => writeln!(out, "{HELP}")?,
            "reset" => {
                self.conversation.clear();
                writeln!(out, "(new conversation)")?;
            }
            "system" => {
                self.system = (!argument.is_empty()).then(|| argument.to_owned());
                self.conversation.clear();
                writeln!(out, "(system message set; new conversation)")?;
            }
            "params" => match &self.model.local {
                Some(local) => write!(out, "{}", output::effective_params(&self.params, local.summary()))?,
                None => write!(out, "{}", output::set_params(&self.params))?,
            },
            "set" => {
                let (param, value) = argument
                    .split_once(char::is_whitespace)
                    .context("usage: /set NAME VALUE, e.g. /set temperature 0.2")?;
                self.params.set(param, value)?;
            }
            "model" => {
                anyhow::ensure!(
                    !argument.is_empty(),
                    "usage: /model NAME (a profile, a catalog name or a GGUF path)"
                );
                self.model = load_model(&self.resolver, argument, self.model_args.load_options())?;
                writeln!(out, "{}", describe(&self.model))?;
            }
            _ => anyhow::bail!("unknown command /{name}; /help lists the commands"),
        }
        Ok(Flow::Continue)
    }

    /// Streams the model's answer to `text`, adding both to the conversation; Ctrl-C stops the
    /// answer and forgets the question.
    fn say(&mut self, text: &str) -> anyhow::Result<()> {
        self.conversation.push(Message::user(text));
        let messages =
            self.system.iter().map(Message::system).chain(self.conversation.iter().cloned()).collect();
        let mut request = ChatRequest::new(messages).with_params(self.params.clone());
        request.truncate = self.truncate;
        let stream = self.model.model.chat_stream(request);
        let mut out = io::stdout();
        // Dropping the stream (the losing branch) is what stops the generation.
        let answer = block_on(async {
            tokio::select! {
                answer = output::stream_answer(stream, &mut out) => Some(answer),
                Ok(()) = tokio::signal::ctrl_c() => None,
            }
        });
        match answer {
            Some(Ok(response)) => {
                self.conversation.push(Message::assistant(response.text));
                Ok(())
            }
            Some(Err(err)) => {
                self.conversation.pop();
                Err(err)
            }
            None => {
                self.conversation.pop();
                writeln!(out)?;
                notice("[stopped]");
                Ok(())
            }
        }
    }
}
