//! Runs fuzz inputs (files, or every file in directories) through the harness outside
//! libFuzzer and prints how far they got:
//! `cargo run --release --example replay -- [--differential] fuzz/corpus/verify`.

fn main() {
    let mut differential = false;
    let mut files = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--differential" {
            differential = true;
            continue;
        }
        let path = std::path::PathBuf::from(arg);
        match std::fs::read_dir(&path) {
            Ok(dir) => files.extend(dir.filter_map(|e| e.ok()).map(|e| e.path())),
            Err(_) => files.push(path),
        }
    }
    for f in &files {
        if let Ok(data) = std::fs::read(f) {
            gateway_fuzz::run(&data, differential);
        }
    }
    println!("{} inputs", files.len());
    println!("{:#?}", gateway_fuzz::STATS);
}
