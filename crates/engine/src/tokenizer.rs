//! Tokenizers built from a GGUF file's `tokenizer.ggml.*` metadata with the `tokenizers` crate,
//! tokenizing the way llama.cpp does, so that ids match the reference implementation exactly.
//!
//! Two vocabulary kinds are read:
//!
//! - `gpt2`: byte-level BPE from `tokens` and `merges`, with the pre-tokenizer regexes that
//!   llama.cpp chooses for `tokenizer.ggml.pre`.
//! - `llama`: SentencePiece BPE. GGUF stores only the pieces and their scores, so the merges are
//!   derived: any two adjacent pieces whose concatenation is a piece may merge, highest score
//!   first. Spaces become `▁`, and characters outside the vocabulary fall back to `<0xXX>` bytes.
//!
//! Token types decide how a vocabulary entry is treated. User-defined tokens (type 4) are always
//! matched in the raw text before the model sees it; control and unknown tokens (types 3 and 2)
//! only when the caller asks to parse special tokens, otherwise their text is ordinary text.

use aho_corasick::{AhoCorasick, MatchKind};
use rayon::prelude::*;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer as HfTokenizer,
};

use crate::gguf::{Gguf, GgufError};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_MERGES: &str = "tokenizer.ggml.merges";
const KEY_BOS: &str = "tokenizer.ggml.bos_token_id";
const KEY_EOS: &str = "tokenizer.ggml.eos_token_id";
const KEY_EOT: &str = "tokenizer.ggml.eot_token_id";
const KEY_EOM: &str = "tokenizer.ggml.eom_token_id";
const KEY_UNK: &str = "tokenizer.ggml.unknown_token_id";
const KEY_ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
const KEY_ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";

/// SentencePiece's visible space.
const SPACE: &str = "\u{2581}";

/// Texts of tokens that end a turn in common chat formats. GGUF files often mark only `eos`, so
/// these are found by text, as llama.cpp does; they also count as control tokens.
const END_OF_TURN_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<|eom_id|>",
    "<EOT>",
];

/// Why a tokenizer cannot be built, or a text cannot be encoded.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer metadata")]
    Gguf(#[from] GgufError),
    #[error(
        "tokenizer model `{0}` ({KEY_MODEL}) is not supported; Temper reads `gpt2` (byte-level BPE) \
         and `llama` (SentencePiece)"
    )]
    UnsupportedModel(String),
    #[error(
        "pre-tokenizer `{0}` ({KEY_PRE}) is not one Temper knows, so it cannot split text the way \
         the model was trained; known: {known}",
        known = known_pre_tokenizers()
    )]
    UnsupportedPreTokenizer(String),
    #[error("metadata key `{key}` is invalid: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("cannot build the tokenizer: {0}")]
    Build(String),
    #[error("cannot encode the text: {0}")]
    Encode(String),
}

fn invalid(key: &'static str, reason: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid { key, reason: reason.into() }
}

/// What a vocabulary entry is (`tokenizer.ggml.token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenKind {
    Normal,
    /// Type 2: like a control token.
    Unknown,
    Control,
    UserDefined,
    /// Type 5, and types llama.cpp does not know: never matched in text, decodes to nothing.
    Unused,
    /// Type 6, `<0xXX>`: the byte it stands for.
    Byte(u8),
}

impl TokenKind {
    fn from_gguf(code: u64, piece: &str, index: usize) -> Result<TokenKind, TokenizerError> {
        Ok(match code {
            1 => TokenKind::Normal,
            2 => TokenKind::Unknown,
            3 => TokenKind::Control,
            4 => TokenKind::UserDefined,
            6 => TokenKind::Byte(parse_byte_piece(piece).ok_or_else(|| {
                invalid(
                    KEY_TYPES,
                    format!("token {index} is a byte token but its text {piece:?} is not <0xXX>"),
                )
            })?),
            _ => TokenKind::Unused,
        })
    }

    /// Matched in text only when the caller parses special tokens; omitted when decoding.
    fn is_special(self) -> bool {
        matches!(self, TokenKind::Control | TokenKind::Unknown)
    }
}

fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// How the vocabulary spells text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spelling {
    /// GPT-2 byte-level: every byte is one printable character.
    ByteLevel,
    /// SentencePiece: UTF-8 text with `▁` for spaces, plus `<0xXX>` byte pieces.
    SentencePiece,
}

/// How a `gpt2` vocabulary splits text before BPE: llama.cpp's regexes for `tokenizer.ggml.pre`,
/// applied one after another, each splitting the pieces the previous one left.
struct PreSplit {
    regexes: &'static [&'static str],
    /// Llama 3 style: a whole pre-tokenized word found in the vocabulary is one token.
    ignore_merges: bool,
    add_bos: bool,
}

const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const fn pre_split(regexes: &'static [&'static str], ignore_merges: bool, add_bos: bool) -> PreSplit {
    PreSplit { regexes, ignore_merges, add_bos }
}

/// llama.cpp's split for each `tokenizer.ggml.pre` name Temper knows.
const PRE_SPLITS: &[(&[&str], PreSplit)] = &[
    (
        &["default"],
        pre_split(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2_REGEX, r"\p{N}+", "[0-9][0-9][0-9]"], false, false),
    ),
    (&["gpt-2", "phi-2", "mpt", "olmo"], pre_split(&[GPT2_REGEX], false, false)),
    // Single digits first, then GPT-2's split.
    (
        &["smollm", "starcoder", "refact", "command-r", "codeshell", "exaone"],
        pre_split(&[r"\p{N}", GPT2_REGEX], false, false),
    ),
    (&["llama3", "llama-v3", "llama-bpe", "falcon3"], pre_split(&[LLAMA3_REGEX], true, true)),
    (&["dbrx", "smaug-bpe"], pre_split(&[LLAMA3_REGEX], false, false)),
    (&["qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"], pre_split(&[QWEN2_REGEX], false, false)),
];

fn known_pre_tokenizers() -> String {
    PRE_SPLITS.iter().flat_map(|(names, _)| names.iter().copied()).collect::<Vec<_>>().join(", ")
}

impl PreSplit {
    fn for_name(pre: &str) -> Result<&'static PreSplit, TokenizerError> {
        PRE_SPLITS
            .iter()
            .find(|(names, _)| names.contains(&pre))
            .map(|(_, split)| split)
            .ok_or_else(|| TokenizerError::UnsupportedPreTokenizer(pre.to_string()))
    }

    fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper, TokenizerError> {
        let mut steps = Vec::with_capacity(self.regexes.len() + 1);
        for regex in self.regexes {
            let split =
                Split::new(SplitPattern::Regex(regex.to_string()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| TokenizerError::Build(format!("pre-tokenizer regex {regex:?}: {e}")))?;
            steps.push(PreTokenizerWrapper::Split(split));
        }
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)));
        Ok(PreTokenizerWrapper::Sequence(PreTokenizerSequence::new(steps)))
    }
}

/// A tokenizer for one model: text to token ids and back.
pub struct Tokenizer {
    inner: HfTokenizer,
    spelling: Spelling,
    pieces: Vec<String>,
    kinds: Vec<TokenKind>,
    /// Control and unknown tokens, found in text only when parsing special tokens.
    specials: AhoCorasick,
    special_ids: Vec<u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_space_prefix: bool,
    end_of_generation: Vec<u32>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("spelling", &self.spelling)
            .field("vocab_size", &self.pieces.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's metadata.
    pub fn from_gguf(gguf: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let model = gguf.get_str(KEY_MODEL)?;
        let spelling = match model {
            "gpt2" => Spelling::ByteLevel,
            "llama" => Spelling::SentencePiece,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let pieces = strings(gguf, KEY_TOKENS)?;
        if pieces.is_empty() {
            return Err(invalid(KEY_TOKENS, "the vocabulary is empty"));
        }
        let n = pieces.len();
        let mut kinds = token_kinds(gguf, &pieces)?;
        let vocab = vocabulary(&pieces)?;

        let sentencepiece = spelling == Spelling::SentencePiece;
        // llama.cpp's defaults when the file does not say.
        let (default_bos, default_eos) = if sentencepiece { (Some(1), Some(2)) } else { (None, None) };
        let bos = token_id(gguf, KEY_BOS, n)?.or(default_bos.filter(|&id| id < n as u32));
        let eos = token_id(gguf, KEY_EOS, n)?.or(default_eos.filter(|&id| id < n as u32));

        let mut end_of_generation: Vec<u32> = [eos, token_id(gguf, KEY_EOT, n)?, token_id(gguf, KEY_EOM, n)?]
            .into_iter()
            .flatten()
            .chain(END_OF_TURN_TEXTS.iter().filter_map(|text| vocab.get(*text).copied()))
            .collect();
        end_of_generation.sort_unstable();
        end_of_generation.dedup();
        for &id in &end_of_generation {
            // A turn end typed as ordinary text would be produced from plain text and printed.
            if matches!(kinds[id as usize], TokenKind::Normal | TokenKind::UserDefined) {
                kinds[id as usize] = TokenKind::Control;
            }
        }

        let add_space_prefix = sentencepiece && optional_bool(gguf, KEY_ADD_SPACE_PREFIX)?.unwrap_or(true);
        let (mut inner, default_add_bos) = if sentencepiece {
            (sentencepiece_tokenizer(gguf, &pieces, &kinds, vocab, add_space_prefix)?, true)
        } else {
            byte_level_tokenizer(gguf, vocab)?
        };
        let user_defined: Vec<AddedToken> = pieces
            .iter()
            .zip(&kinds)
            .filter(|(_, kind)| **kind == TokenKind::UserDefined)
            .map(|(piece, _)| AddedToken::from(piece.clone(), false).normalized(false))
            .collect();
        inner.add_tokens(&user_defined);

        let (special_ids, special_texts): (Vec<u32>, Vec<&str>) = pieces
            .iter()
            .zip(&kinds)
            .enumerate()
            .filter(|(_, (piece, kind))| kind.is_special() && !piece.is_empty())
            .map(|(id, (piece, _))| (id as u32, piece.as_str()))
            .unzip();
        let specials = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&special_texts)
            .map_err(|e| TokenizerError::Build(format!("special-token matcher: {e}")))?;

        let add_bos = optional_bool(gguf, KEY_ADD_BOS)?.unwrap_or(default_add_bos);
        if add_bos && bos.is_none() {
            return Err(invalid(KEY_BOS, format!("missing, but {KEY_ADD_BOS} asks for a BOS token")));
        }
        Ok(Tokenizer {
            inner,
            spelling,
            pieces,
            kinds,
            specials,
            special_ids,
            bos,
            eos,
            add_bos,
            add_space_prefix,
            end_of_generation,
        })
    }

    /// The token ids of `text`. Never adds BOS (see [`Tokenizer::add_bos`]). With `parse_special`,
    /// the text of a control token such as `<|im_start|>` becomes that token; without, it is
    /// tokenized as the characters it is made of.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        let mut start = 0;
        if parse_special {
            for found in self.specials.find_iter(text) {
                self.encode_plain(&text[start..found.start()], &mut ids)?;
                ids.push(self.special_ids[found.pattern().as_usize()]);
                start = found.end();
            }
        }
        self.encode_plain(&text[start..], &mut ids)?;
        Ok(ids)
    }

    fn encode_plain(&self, text: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        let encoding =
            self.inner.encode_fast(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        ids.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    /// The text of `ids`, with control tokens omitted (llama.cpp's detokenizer without special
    /// tokens, and without its clean-up of spaces before punctuation, so that decoding inverts
    /// encoding). Bytes that do not form valid UTF-8 become U+FFFD. For a vocabulary that prefixes
    /// text with a space, the space the encoder added to the first token is removed again.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let start = bytes.len();
            self.append_token_bytes(id, &mut bytes);
            if i == 0 && self.add_space_prefix && bytes.get(start) == Some(&b' ') {
                bytes.remove(start);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw bytes token `id` contributes to the text, for streaming: a byte-level or
    /// byte-fallback token can be part of a UTF-8 character. Control tokens and ids outside the
    /// vocabulary contribute nothing.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.append_token_bytes(id, &mut bytes);
        bytes
    }

    /// Token `id` shown alone (in log-probabilities): the text of its bytes, a byte that is part
    /// of a UTF-8 character as U+FFFD, and a control token, which adds no text, as spelled
    /// (`<|im_end|>`).
    pub fn token_display(&self, id: u32) -> String {
        match self.token_bytes(id) {
            bytes if bytes.is_empty() => self.token_text(id).unwrap_or_default().to_string(),
            bytes => String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    fn append_token_bytes(&self, id: u32, out: &mut Vec<u8>) {
        let (Some(piece), Some(kind)) = (self.pieces.get(id as usize), self.kinds.get(id as usize)) else {
            return;
        };
        match kind {
            TokenKind::Control | TokenKind::Unknown | TokenKind::Unused => {}
            TokenKind::UserDefined => out.extend_from_slice(piece.as_bytes()),
            TokenKind::Byte(byte) => out.push(*byte),
            TokenKind::Normal => match self.spelling {
                Spelling::SentencePiece => out.extend_from_slice(piece.replace(SPACE, " ").as_bytes()),
                Spelling::ByteLevel => {
                    for c in piece.chars() {
                        match byte_level_byte(c) {
                            Some(byte) => out.push(byte),
                            // Not a byte-level character: keep it as it is.
                            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                        }
                    }
                }
            },
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// The id of the vocabulary entry spelled exactly `text` (in the vocabulary's own spelling,
    /// e.g. `▁the` or `Ġthe`).
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The vocabulary entry of `id`, as spelled in the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Whether a prompt should start with [`Tokenizer::bos_id`]: `tokenizer.ggml.add_bos_token`,
    /// or llama.cpp's default for the vocabulary kind when the file does not say.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether generating `id` ends the reply: EOS, the file's end-of-turn tokens, and tokens such
    /// as `<|im_end|>` or `<end_of_turn>` found by their text.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.contains(&id)
    }

    /// The tokens that end the reply (see [`Tokenizer::is_end_of_generation`]), in id order.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// Whether `id` stands for no text: a control, unknown or unused token.
    pub fn is_special(&self, id: u32) -> bool {
        self.kinds.get(id as usize).is_some_and(|kind| kind.is_special() || *kind == TokenKind::Unused)
    }
}

/// The byte a GPT-2 byte-level character stands for: printable bytes stand for themselves, the
/// others were moved, in order, to U+0100 onwards.
fn byte_level_byte(c: char) -> Option<u8> {
    fn printable(byte: u8) -> bool {
        matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
    }
    let code = u32::from(c);
    match u8::try_from(code) {
        Ok(byte) => printable(byte).then_some(byte),
        Err(_) => {
            let index = usize::try_from(code.checked_sub(256)?).ok()?;
            (0..=255u8).filter(|&byte| !printable(byte)).nth(index)
        }
    }
}

fn check_len(key: &'static str, len: usize, n: usize) -> Result<(), TokenizerError> {
    if len == n {
        Ok(())
    } else {
        Err(invalid(key, format!("has {len} items for a vocabulary of {n} tokens")))
    }
}

/// The kind of every token; all normal when the file has no types.
fn token_kinds(gguf: &Gguf, pieces: &[String]) -> Result<Vec<TokenKind>, TokenizerError> {
    if gguf.get(KEY_TYPES).is_none() {
        return Ok(vec![TokenKind::Normal; pieces.len()]);
    }
    let codes = gguf.get_array(KEY_TYPES)?;
    check_len(KEY_TYPES, codes.len(), pieces.len())?;
    pieces
        .iter()
        .zip(codes)
        .enumerate()
        .map(|(i, (piece, code))| {
            let code = code.as_u64().ok_or_else(|| invalid(KEY_TYPES, format!("item {i} is {code:?}")))?;
            TokenKind::from_gguf(code, piece, i)
        })
        .collect()
}

fn strings(gguf: &Gguf, key: &'static str) -> Result<Vec<String>, TokenizerError> {
    gguf.get_array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.as_str().map(str::to_owned).ok_or_else(|| invalid(key, format!("item {i} is not a string")))
        })
        .collect()
}

fn numbers(gguf: &Gguf, key: &'static str, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let values = gguf.get_array(key)?;
    check_len(key, values.len(), n)?;
    values
        .iter()
        .enumerate()
        .map(|(i, v)| v.as_f64().map(|x| x as f32).ok_or_else(|| invalid(key, format!("item {i} is {v:?}"))))
        .collect()
}

fn optional_bool(gguf: &Gguf, key: &'static str) -> Result<Option<bool>, TokenizerError> {
    match gguf.get(key) {
        None => Ok(None),
        Some(_) => Ok(Some(gguf.get_bool(key)?)),
    }
}

fn token_id(gguf: &Gguf, key: &'static str, n: usize) -> Result<Option<u32>, TokenizerError> {
    let Some(value) = gguf.get(key) else {
        return Ok(None);
    };
    match value.as_u64().and_then(|id| u32::try_from(id).ok()) {
        Some(id) if (id as usize) < n => Ok(Some(id)),
        _ => Err(invalid(key, format!("{value:?} is not a token id below the vocabulary size {n}"))),
    }
}

/// Text to id, refusing duplicates: two ids with one text would make encoding ambiguous.
fn vocabulary(pieces: &[String]) -> Result<Vocab, TokenizerError> {
    let mut vocab = Vocab::with_capacity(pieces.len());
    for (id, piece) in pieces.iter().enumerate() {
        if let Some(first) = vocab.insert(piece.clone(), id as u32) {
            return Err(invalid(
                KEY_TOKENS,
                format!("token {piece:?} appears twice, as ids {first} and {id}"),
            ));
        }
    }
    Ok(vocab)
}

/// SentencePiece BPE: derived merges, byte fallback, and `▁` for spaces.
fn sentencepiece_tokenizer(
    gguf: &Gguf,
    pieces: &[String],
    kinds: &[TokenKind],
    vocab: Vocab,
    add_space_prefix: bool,
) -> Result<HfTokenizer, TokenizerError> {
    let n = pieces.len();
    let scores = numbers(gguf, KEY_SCORES, n)?;
    let merges = sentencepiece_merges(pieces, &scores, &vocab);
    let unk = token_id(gguf, KEY_UNK, n)?
        .or_else(|| kinds.iter().position(|k| *k == TokenKind::Unknown).map(|i| i as u32));
    let mut builder = BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true);
    if let Some(unk) = unk {
        builder = builder.unk_token(pieces[unk as usize].clone());
    }
    let mut inner = HfTokenizer::new(builder.build().map_err(|e| TokenizerError::Build(e.to_string()))?);
    let mut steps = Vec::new();
    if add_space_prefix {
        steps.push(NormalizerWrapper::Prepend(Prepend::new(SPACE.to_string())));
    }
    let replace = Replace::new(" ", SPACE).map_err(|e| TokenizerError::Build(e.to_string()))?;
    steps.push(NormalizerWrapper::Replace(replace));
    inner.with_normalizer(Some(NormalizerSequence::new(steps)));
    Ok(inner)
}

/// Byte-level BPE with the file's merges and llama.cpp's split for `tokenizer.ggml.pre`; also
/// whether that split's models add BOS by default.
fn byte_level_tokenizer(gguf: &Gguf, vocab: Vocab) -> Result<(HfTokenizer, bool), TokenizerError> {
    let merges = byte_level_merges(gguf)?;
    let pre = match gguf.get(KEY_PRE) {
        // llama.cpp falls back to its default split for files converted before the key existed.
        None => "default",
        Some(_) => gguf.get_str(KEY_PRE)?,
    };
    let pre = PreSplit::for_name(pre)?;
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre.ignore_merges)
        .build()
        .map_err(|e| TokenizerError::Build(e.to_string()))?;
    let mut inner = HfTokenizer::new(model);
    inner.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
    Ok((inner, pre.add_bos))
}

/// `tokenizer.ggml.merges` items are "left right".
fn byte_level_merges(gguf: &Gguf) -> Result<Vec<(String, String)>, TokenizerError> {
    let merges = gguf.get_array(KEY_MERGES)?;
    merges
        .iter()
        .enumerate()
        .map(|(i, merge)| {
            let text =
                merge.as_str().ok_or_else(|| invalid(KEY_MERGES, format!("item {i} is not a string")))?;
            // The left part may itself start with a space, so look for the separator after it.
            let split = text
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(at, _)| at)
                .ok_or_else(|| invalid(KEY_MERGES, format!("item {i} ({text:?}) is not two tokens")))?;
            Ok((text[..split].to_string(), text[split + 1..].to_string()))
        })
        .collect()
}

/// SentencePiece BPE as merges: every split of a piece into two pieces is a merge producing it,
/// ranked by the produced piece's score, highest first (llama.cpp merges the adjacent pair whose
/// concatenation scores highest).
fn sentencepiece_merges(pieces: &[String], scores: &[f32], vocab: &Vocab) -> Vec<(String, String)> {
    // 262k pieces give about half a million merges: spread the work over the cores.
    let mut merges: Vec<(f32, u32, u32, u32)> = pieces
        .par_iter()
        .enumerate()
        .flat_map_iter(|(id, piece)| {
            piece.char_indices().skip(1).filter_map(move |(at, _)| {
                let left = *vocab.get(&piece[..at])?;
                let right = *vocab.get(&piece[at..])?;
                Some((scores[id], id as u32, left, right))
            })
        })
        .collect();
    merges.par_sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges
        .into_par_iter()
        .map(|(_, _, left, right)| (pieces[left as usize].clone(), pieces[right as usize].clone()))
        .collect()
}

#[cfg(test)]
mod tests;
