//! Loaders on real files: the folder walk (.gitignore, globs), PDF text, and files skipped
//! with their reason.

use std::path::PathBuf;

use lopdf::content::{Content, Operation};
use lopdf::{dictionary, Document, Object, Stream};
use temper_rag::load::{discover, load_file};
use temper_rag::{Kind, LoadOptions, Position};

/// A PDF with one line of Helvetica text on each page.
fn pdf(pages: &[&str]) -> Vec<u8> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font =
        doc.add_object(dictionary! { "Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Helvetica" });
    let resources = doc.add_object(dictionary! { "Font" => dictionary! { "F1" => font } });
    let mut kids = Vec::new();
    for text in pages {
        let content = Content {
            operations: vec![
                Operation::new("BT", vec![]),
                Operation::new("Tf", vec!["F1".into(), 12.into()]),
                Operation::new("Td", vec![72.into(), 720.into()]),
                Operation::new("Tj", vec![Object::string_literal(*text)]),
                Operation::new("ET", vec![]),
            ],
        };
        let stream = doc.add_object(Stream::new(dictionary! {}, content.encode().unwrap()));
        let page =
            doc.add_object(dictionary! { "Type" => "Page", "Parent" => pages_id, "Contents" => stream });
        kids.push(page.into());
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages", "Kids" => kids, "Count" => count, "Resources" => resources,
            "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).unwrap();
    bytes
}

#[test]
fn pdf_pages_give_their_text_and_page_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    std::fs::write(&path, pdf(&["Revenue grew in spring.", "Costs fell in autumn."])).unwrap();
    let loaded = load_file(&path, &LoadOptions::default()).unwrap();
    assert_eq!(loaded.kind, Kind::Pdf);
    assert_eq!(loaded.sections.len(), 2);
    assert!(loaded.sections[0].text.contains("Revenue grew in spring."), "{:?}", loaded.sections[0].text);
    assert_eq!(loaded.sections[1].position, Position::Page(2));
    assert!(loaded.sections[1].text.contains("Costs fell"));

    let blank = dir.path().join("scan.pdf");
    std::fs::write(&blank, pdf(&[""])).unwrap();
    assert!(load_file(&blank, &LoadOptions::default()).unwrap_err().contains("no text layer"));
}

#[test]
fn the_walk_honours_gitignore_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("target")).unwrap();
    std::fs::write(root.join(".gitignore"), "target/\n*.log\n").unwrap();
    for f in ["README.md", "src/main.rs", "src/notes.txt", "target/out.txt", "run.log", ".hidden.md"] {
        std::fs::write(root.join(f), "text").unwrap();
    }
    let rel = |files: Vec<PathBuf>| -> Vec<String> {
        files.iter().map(|f| f.strip_prefix(root).unwrap().to_string_lossy().into_owned()).collect()
    };
    let (files, skipped) = discover(&[root.to_path_buf()], &[]).unwrap();
    assert_eq!(rel(files), vec!["README.md", "src/main.rs", "src/notes.txt"]);
    assert!(skipped.is_empty());
    // A glob that matches takes precedence over .gitignore and hiding, as in ripgrep's walker.
    let (files, _) = discover(&[root.to_path_buf()], &["*.md".into(), "*.rs".into()]).unwrap();
    assert_eq!(rel(files), vec![".hidden.md", "README.md", "src/main.rs"]);
    let (files, _) = discover(&[root.to_path_buf()], &["!*.txt".into()]).unwrap();
    assert_eq!(rel(files), vec!["README.md", "src/main.rs"]);
    // A file named directly is read even if ignored.
    let (files, _) = discover(&[root.join("run.log")], &[]).unwrap();
    assert_eq!(rel(files), vec!["run.log"]);
    let err = discover(&[root.join("nope")], &[]).unwrap_err().to_string();
    assert!(err.contains("nope"), "{err}");
    assert!(discover(&[root.to_path_buf()], &["a{".into()]).is_err());
}

#[test]
fn large_and_missing_files_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.txt");
    std::fs::write(&big, "x".repeat(2000)).unwrap();
    let small = LoadOptions { max_file_bytes: 1000, ..Default::default() };
    assert_eq!(load_file(&big, &small).unwrap_err(), "too large: 2000 bytes (the limit is 1000)");
    assert!(load_file(&dir.path().join("gone.txt"), &small).unwrap_err().starts_with("unreadable"));
}
