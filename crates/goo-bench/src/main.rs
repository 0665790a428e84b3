//! goo-memory benchmarks: each group compares the library with its peers in the same run and
//! prints ratios (median of per-round ratios; see `harness`).
//!
//! `cargo run --release -p goo-bench -- [core|arena|pool|region|scoped|bridge|callbacks|all]
//! [--quick] [--json FILE] [--svg FILE]`: `--json` writes the results (the shape of
//! `harness::Results`), `--svg` a chart of them.
//!
//! `cargo run --release -p goo-bench -- chart --svg OUT.svg A.json [B.json ...]` draws one chart
//! from result files (the C driver's `--json` included).

mod arena_bench;
mod bridge_bench;
mod callbacks_bench;
mod chart;
mod core_bench;
mod harness;
mod pool_bench;
mod region_bench;
mod scoped_bench;

/// The value after `flag`, removed from `args` with it.
fn take_value(args: &mut Vec<String>, flag: &str) -> Option<String> {
    let i = args.iter().position(|a| a == flag)?;
    if i + 1 >= args.len() {
        eprintln!("goo-bench: {flag} needs a file name");
        std::process::exit(2);
    }
    let value = args.remove(i + 1);
    args.remove(i);
    Some(value)
}

fn chart_from_files(files: &[String], svg: Option<String>) {
    let Some(svg) = svg else {
        eprintln!("goo-bench chart: --svg OUT.svg is required");
        std::process::exit(2);
    };
    let results: Vec<harness::Results> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{f}: {e}"));
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{f}: {e}"))
        })
        .collect();
    if let Err(e) = chart::draw(&results, &svg) {
        eprintln!("goo-bench chart: {e}");
        std::process::exit(1);
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command =
        std::iter::once("goo-bench".to_string()).chain(args.iter().cloned()).collect::<Vec<_>>().join(" ");
    let json = take_value(&mut args, "--json");
    let svg = take_value(&mut args, "--svg");
    if args.first().map(String::as_str) == Some("chart") {
        return chart_from_files(&args[1..], svg);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let groups: Vec<&str> = args.iter().filter(|a| !a.starts_with("--")).map(String::as_str).collect();
    let all = groups.is_empty() || groups.contains(&"all");
    println!("# goo-memory benchmarks{}", if quick { " (quick)" } else { "" });
    if all || groups.contains(&"core") {
        core_bench::run(quick);
    }
    if all || groups.contains(&"arena") {
        arena_bench::run(quick);
    }
    if all || groups.contains(&"pool") {
        pool_bench::run(quick);
    }
    if all || groups.contains(&"region") {
        region_bench::run(quick);
    }
    if all || groups.contains(&"scoped") {
        scoped_bench::run(quick);
    }
    if all || groups.contains(&"bridge") {
        bridge_bench::run(quick);
    }
    if all || groups.contains(&"callbacks") {
        callbacks_bench::run(quick);
    }
    let results = harness::results(command);
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&results).expect("results serialize") + "\n";
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    if let Some(path) = svg {
        if let Err(e) = chart::draw(&[results], &path) {
            eprintln!("goo-bench: {path}: {e}");
            std::process::exit(1);
        }
    }
}
