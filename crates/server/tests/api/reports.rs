use serde_json::Value;

use crate::common;

#[tokio::test(flavor = "multi_thread")]
async fn reports_are_listed_and_served_inert() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config(dir.path());
    let page =
        "<!DOCTYPE html><html><head><style>td{color:red}</style></head><body><svg></svg></body></html>\n";
    std::fs::write(config.reports.join("sentiment.html"), page).unwrap();
    std::fs::write(config.reports.join("older.html"), "<p>old</p>").unwrap();
    std::fs::write(config.reports.join("notes.txt"), "not a report").unwrap();
    std::fs::create_dir(config.reports.join("folder.html")).unwrap();
    let older = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(config.reports.join("older.html"))
        .unwrap()
        .set_modified(older)
        .unwrap();
    std::fs::write(dir.path().join("secret.html"), "outside the reports folder").unwrap();
    let (base, server) = common::start(config).await;
    let client = reqwest::Client::new();

    let list: Value =
        client.get(format!("{base}/api/eval/reports")).send().await.unwrap().json().await.unwrap();
    let reports = list["reports"].as_array().unwrap();
    let names: Vec<&str> = reports.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["sentiment.html", "older.html"], "newest first, reports only: {list}");
    assert_eq!(reports[0]["bytes"], page.len());
    let modified = reports[0]["modified"].as_str().unwrap();
    assert!(
        modified.len() >= 20 && modified.ends_with('Z') && modified.as_bytes()[10] == b'T',
        "RFC 3339: {modified}"
    );

    let answer = client.get(format!("{base}/api/eval/reports/sentiment.html")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let header = |name: &str| answer.headers()[name].to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header("content-security-policy"),
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(answer.text().await.unwrap(), page);

    let status = |path: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let answer = client.get(format!("{base}/api/eval/reports/{path}")).send().await.unwrap();
            let status = answer.status().as_u16();
            (status, answer.json::<Value>().await.unwrap())
        }
    };
    let (code, error) = status("missing.html").await;
    assert_eq!((code, error["error"]["code"].as_str()), (404, Some("report_not_found")), "{error}");
    // (A bare `..` never arrives: clients resolve it in the URL.)
    for bad in ["..%2Fsecret.html", "notes.txt", "%2E%2E%5Csecret.html", "x.html%00"] {
        let (code, error) = status(bad).await;
        assert_eq!((code, error["error"]["param"].as_str()), (400, Some("name")), "{bad}: {error}");
    }
    server.abort();
}
