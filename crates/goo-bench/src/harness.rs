//! Same-run comparison: contenders run interleaved in rounds (this machine's speed drifts), the
//! ratio to the baseline is taken within each round, and the median ratio is reported.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One contender: runs `iters` operations and returns the elapsed time.
pub struct Contender<'a> {
    pub name: String,
    pub run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl<'a> Contender<'a> {
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Self { name: name.into(), run: Box::new(run) }
    }
}

/// Times `iters` calls of `op` on this thread.
pub fn timed(iters: u64, mut op: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        op();
    }
    start.elapsed()
}

/// The result for one contender.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    #[serde(rename = "ns_per_op")]
    pub median_ns: f64,
    #[serde(rename = "ratio")]
    pub median_ratio: f64,
}

/// One comparison: what `compare` printed, for `--json` and the chart.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    pub title: String,
    /// The contender every ratio is relative to.
    pub baseline: String,
    pub rounds: usize,
    pub rows: Vec<Row>,
}

/// A whole run's results: the shape of `--json` files (the C driver writes the same).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Results {
    /// Which program wrote them, with its arguments.
    pub command: String,
    /// `/proc/cpuinfo`'s model name and the core count.
    pub machine: String,
    pub groups: Vec<Group>,
}

/// Every comparison this run made, in order.
static GROUPS: Mutex<Vec<Group>> = Mutex::new(Vec::new());

/// The comparisons made so far.
pub fn results(command: String) -> Results {
    Results { command, machine: machine(), groups: GROUPS.lock().unwrap().clone() }
}

/// This machine, as the results name it.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs every contender `rounds` times, interleaved (the order rotates each round), and prints
/// ns/op and the median of the per-round ratios to contender `baseline`.
pub fn compare(
    title: &str,
    baseline: usize,
    iters: u64,
    rounds: usize,
    contenders: &mut [Contender<'_>],
) -> Vec<Row> {
    let n = contenders.len();
    // Warm-up: one unrecorded pass each.
    for c in contenders.iter_mut() {
        (c.run)(iters / 4 + 1);
    }
    let mut ns: Vec<Vec<f64>> = vec![Vec::new(); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let t = (contenders[i].run)(iters);
            ns[i].push(t.as_nanos() as f64 / iters as f64);
        }
    }
    // GOO_BENCH_ROUNDS=1 prints every round's ratio: the spread says how far to trust a median.
    let show_rounds = std::env::var_os("GOO_BENCH_ROUNDS").is_some();
    let rows: Vec<Row> = (0..n)
        .map(|i| {
            let ratios: Vec<f64> = (0..rounds).map(|r| ns[i][r] / ns[baseline][r]).collect();
            if show_rounds {
                let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
                eprintln!("rounds of {}: {}", contenders[i].name, shown.join(" "));
            }
            Row {
                name: contenders[i].name.clone(),
                median_ns: median(ns[i].clone()),
                median_ratio: median(ratios),
            }
        })
        .collect();
    println!("\n## {title}\n({rounds} interleaved rounds x {iters} ops; ratio = median of per-round ratios to `{}`)", rows[baseline].name);
    println!("{:<48} {:>10} {:>8}", "contender", "ns/op", "ratio");
    for r in &rows {
        println!("{:<48} {:>10.2} {:>7.2}x", r.name, r.median_ns, r.median_ratio);
    }
    GROUPS.lock().unwrap().push(Group {
        title: title.to_string(),
        baseline: rows[baseline].name.clone(),
        rounds,
        rows: rows.clone(),
    });
    rows
}

/// Prints a target line: the measured ratio against the goal.
pub fn target(what: &str, ratio: f64, goal: f64, lower_is_better: bool) {
    let met = if lower_is_better { ratio <= goal } else { ratio >= goal };
    let rel = if lower_is_better { "<=" } else { ">=" };
    println!("target: {what}: {ratio:.2}x (goal {rel} {goal:.2}x) {}", if met { "MET" } else { "NOT MET" });
}

/// `goo_memory_alloc_with` / `goo_memory_free_with`, as a C caller holds them.
pub type AllocWith = unsafe extern "C" fn(*mut goo_memory_core::GooAllocator, usize) -> *mut libc::c_void;
pub type FreeWith = unsafe extern "C" fn(*mut goo_memory_core::GooAllocator, *mut libc::c_void, usize);

/// The C ABI entry points behind `black_box`, so calls stay real calls through pointers (no
/// cross-crate inlining into the loop), as from a C program linking the library.
pub fn c_abi() -> (AllocWith, FreeWith) {
    (
        std::hint::black_box(goo_memory::memory::goo_memory_alloc_with),
        std::hint::black_box(goo_memory::memory::goo_memory_free_with),
    )
}

/// `n` alloc+free pairs of `size` bytes through the C ABI on allocator `a`.
pub fn c_pairs(a: *mut goo_memory_core::GooAllocator, size: usize, n: u64) -> Duration {
    let (alloc, free) = c_abi();
    timed(n, || {
        // SAFETY: a live allocator (the caller's); the block is freed with its size.
        unsafe {
            let p = alloc(a, size);
            std::hint::black_box(p);
            free(a, p, size);
        }
    })
}
