//! Runs fuzz inputs (files, or every file in directories) through a harness outside
//! libFuzzer and prints how far they got:
//! `cargo run --release --example replay -- [--differential | --target NAME] corpus/verify`
//! (from `fuzz/`). `NAME` is one of the focused targets (`auth_parse`, `canonical`,
//! `chunked`, `rules`, `sts_request`); without it the `verify` harness runs.

fn main() {
    let mut differential = false;
    let mut target: Option<String> = None;
    let mut files = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--differential" {
            differential = true;
            continue;
        }
        if arg == "--target" {
            target = args.next();
            continue;
        }
        let path = std::path::PathBuf::from(arg);
        match std::fs::read_dir(&path) {
            Ok(dir) => files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path())),
            Err(_) => files.push(path),
        }
    }
    let run: fn(&[u8]) = match target.as_deref() {
        None => {
            if differential {
                |d| gateway_fuzz::run(d, true)
            } else {
                |d| gateway_fuzz::run(d, false)
            }
        }
        Some("auth_parse") => gateway_fuzz::auth_parse::run,
        Some("canonical") => gateway_fuzz::canonical::run,
        Some("chunked") => gateway_fuzz::chunked::run,
        Some("rules") => gateway_fuzz::rules::run,
        Some("sts_request") => gateway_fuzz::sts_request::run,
        Some(other) => {
            eprintln!("unknown target {other}");
            std::process::exit(2);
        }
    };
    for f in &files {
        if let Ok(data) = std::fs::read(f) {
            run(&data);
        }
    }
    println!("{} inputs", files.len());
    println!("{:#?}", gateway_fuzz::STATS);
}
