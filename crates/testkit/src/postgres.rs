//! A fresh PostgreSQL database per test, on the server `scripts/postgres` starts for the test
//! suite (`TEMPER_TEST_POSTGRES`, a URL of a database on it).

/// The URL of a new, empty database on the test server, or `None` to skip the test when no
/// server was given; under CI (`CI=true`) a missing server fails the test, since
/// `scripts/test` starts one.
pub fn postgres_database() -> Option<String> {
    let Ok(url) = std::env::var("TEMPER_TEST_POSTGRES") else {
        let message =
            "TEMPER_TEST_POSTGRES is not set; `scripts/postgres start DIR` starts a server and prints it";
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{message}");
        eprintln!("skipping: {message}");
        return None;
    };
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "t_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos()
    );
    // On a thread of its own, so that async tests can call this too.
    let admin = url.clone();
    let create = format!("CREATE DATABASE {name}");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                .await
                .unwrap_or_else(|e| panic!("cannot connect to TEMPER_TEST_POSTGRES ({admin}): {e}"));
            let connection = tokio::spawn(connection);
            client.batch_execute(&create).await.expect("creating a test database");
            drop(client);
            let _ = connection.await;
        })
    })
    .join()
    .expect("creating a test database");
    let (base, _) = url.rsplit_once('/').expect("TEMPER_TEST_POSTGRES is a URL ending in /DATABASE");
    Some(format!("{base}/{name}"))
}
