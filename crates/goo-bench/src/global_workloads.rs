//! Allocation-heavy Rust programs for the global-allocator benchmark (issue #19). The same code
//! is compiled into three binaries that differ only in their `#[global_allocator]`
//! (`rust_global_system`, `rust_global_goo`, `rust_global_mimalloc`, each including this file
//! with `#[path]`), so a difference in their times is the allocator's.
//!
//! Every workload is a `fn(scale: usize) -> u64`: it generates its input from a fixed-seed
//! xorshift generator, does ordinary Rust work on it (the standard collections, `String`s,
//! `Box`es, serde_json, threads and channels) and returns a checksum of what it computed. The
//! checksum depends on neither addresses nor a `HashMap`'s (per-process random) iteration order,
//! so the three binaries must print the same one for the same workload and scale
//! (`scripts/bench-rust-global.py` refuses to report times otherwise).
//!
//! One unit of scale is roughly the same amount of work in every workload (about 50 µs with
//! the system allocator on the machine the units were set on), so one `--scale` suits all four.
//!
//! Usage: `rust_global_<allocator> WORKLOAD SCALE REPS` runs WORKLOAD once unrecorded (so the
//! allocator and the runtime have warmed up), then REPS times, and prints
//! `ns=<total of the REPS runs> checksum=<u64> maxrss_kib=<peak RSS>`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

use serde_json::Value;

/// A workload: does `scale` units of work and returns a checksum of what it computed.
pub type Workload = fn(usize) -> u64;

/// The workloads by the name the command line gives.
pub const WORKLOADS: &[(&str, Workload)] =
    &[("json", json), ("parser", parser), ("strings", strings), ("threads", threads)];

/// Marsaglia's xorshift64: the input generator (deterministic, and no `rand` dependency).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point (it would stay zero); a nonzero state never becomes zero.
        Self(seed | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n > 0`; the modulo bias does not matter for test input).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// An order-dependent running checksum (FxHash's step), over values whose order the workload
/// fixes.
#[derive(Clone, Copy, Debug, Default)]
struct Checksum(u64);

impl Checksum {
    fn add(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn add_bytes(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("chunks_exact(8) yields 8 bytes")));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.add(u64::from_le_bytes(tail));
        self.add(bytes.len() as u64);
    }
}

/// A pronounceable lowercase word of 2 to 10 letters.
fn random_word(rng: &mut XorShift) -> String {
    const CONSONANTS: &[u8] = b"bcdfghjklmnprstvwz";
    const VOWELS: &[u8] = b"aeiouy";
    let len = 2 + rng.below(9);
    (0..len)
        .map(|i| {
            let letters = if i % 2 == 0 { CONSONANTS } else { VOWELS };
            char::from(letters[rng.below(letters.len())])
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// json: a document of records as text, parsed into `serde_json::Value`, walked, written back.

/// Records per unit of scale: about 1.5 KB of JSON text.
const JSON_RECORDS_PER_UNIT: usize = 3;

/// Generates the document, parses it, checksums every node, serializes it again and drops all
/// of it. At scale 2000, the text is about 3 MB.
pub fn json(scale: usize) -> u64 {
    let mut rng = XorShift::new(0x6a73_6f6e);
    let text = json_document(&mut rng, black_box(scale) * JSON_RECORDS_PER_UNIT);
    let value: Value = serde_json::from_str(&text).expect("the generated document is valid JSON");
    let mut sum = Checksum::default();
    walk_json(&value, &mut sum);
    let written = serde_json::to_string(&value).expect("a Value always serializes");
    sum.add_bytes(written.as_bytes());
    sum.add(text.len() as u64);
    sum.0
}

/// A top-level array of `records` objects, with nested objects and arrays, strings that need
/// escapes, integers and decimals.
fn json_document(rng: &mut XorShift, records: usize) -> String {
    let mut out = String::new();
    out.push('[');
    for id in 0..records {
        if id > 0 {
            out.push(',');
        }
        json_record(rng, id, &mut out);
    }
    out.push(']');
    out
}

fn json_record(rng: &mut XorShift, id: usize, out: &mut String) {
    // `write!` to a String cannot fail; the results are ignored for that reason.
    let _ = write!(out, "{{\"id\":{id},\"name\":\"{} {}\",", random_word(rng), random_word(rng));
    let _ = write!(out, "\"score\":{}.{:02},", rng.below(100_000), rng.below(100));
    let _ = write!(out, "\"active\":{},", rng.chance(50));
    out.push_str("\"tags\":[");
    for i in 0..rng.below(7) {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{}\"", random_word(rng));
    }
    out.push_str("],\"address\":{");
    let _ = write!(
        out,
        "\"street\":\"{} {}\",\"city\":\"{}\",\"zip\":\"{:05}\",\"geo\":[{}.{:04},-{}.{:04}]",
        rng.below(1000),
        random_word(rng),
        random_word(rng),
        rng.below(100_000),
        rng.below(90),
        rng.below(10_000),
        rng.below(180),
        rng.below(10_000)
    );
    out.push_str("},\"history\":[");
    for i in 0..rng.below(9) {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"t\":{},\"kind\":\"{}\",\"amount\":-{}.{:02},\"ok\":{}}}",
            1_600_000_000 + rng.below(100_000_000),
            random_word(rng),
            rng.below(10_000),
            rng.below(100),
            if rng.chance(10) { "null" } else { "true" }
        );
    }
    // Escapes make the parser build the string rather than borrow it from the input.
    let _ = write!(
        out,
        "],\"note\":\"{} \\\"{}\\\"\\n{} caf\\u00e9 {}\"}}",
        random_word(rng),
        random_word(rng),
        random_word(rng),
        random_word(rng)
    );
}

/// Adds every node of `value` to `sum`, depth first, object members in the map's own order
/// (which is fixed: sorted, or insertion order if serde_json's `preserve_order` is on).
fn walk_json(value: &Value, sum: &mut Checksum) {
    match value {
        Value::Null => sum.add(1),
        Value::Bool(b) => sum.add(2 + u64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => sum.add(i as u64),
            None => sum.add(n.as_f64().expect("a JSON number is an i64, a u64 or an f64").to_bits()),
        },
        Value::String(s) => sum.add_bytes(s.as_bytes()),
        Value::Array(items) => {
            sum.add(items.len() as u64);
            for item in items {
                walk_json(item, sum);
            }
        }
        Value::Object(members) => {
            sum.add(members.len() as u64);
            for (key, member) in members {
                sum.add_bytes(key.as_bytes());
                walk_json(member, sum);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// parser: `let` statements with arithmetic and let-expressions, tokenized, parsed into a
// Box-based tree, evaluated.

/// Statements per unit of scale.
const PARSER_STATEMENTS_PER_UNIT: usize = 6;
/// How deep the generator nests expressions: it bounds the parser's and evaluator's recursion.
const PARSER_MAX_DEPTH: usize = 6;

/// Generates a program, tokenizes it, parses it, evaluates every statement in order and drops
/// it all; the checksum covers every statement's value and the token and statement counts.
pub fn parser(scale: usize) -> u64 {
    let mut rng = XorShift::new(0x7061_7273);
    let source = program_source(&mut rng, black_box(scale) * PARSER_STATEMENTS_PER_UNIT);
    let tokens = tokenize(&source);
    let program = Parser { tokens: &tokens, pos: 0 }.program();
    let mut sum = Checksum::default();
    sum.add(tokens.len() as u64);
    sum.add(program.len() as u64);
    let mut globals: HashMap<String, i64> = HashMap::new();
    let mut locals: Vec<(&str, i64)> = Vec::new();
    for statement in &program {
        let value = eval(&statement.value, &globals, &mut locals);
        sum.add(value as u64);
        globals.insert(statement.name.clone(), value);
    }
    sum.0
}

/// A global's name: a word and the statement's number, as in `kirato_17`.
fn global_name(words: &[String], i: usize) -> String {
    format!("{}_{i}", words[i % words.len()])
}

/// `statements` lines `let NAME = EXPR;`, each using only the globals defined before it.
fn program_source(rng: &mut XorShift, statements: usize) -> String {
    let words: Vec<String> = (0..64).map(|_| random_word(rng)).collect();
    let mut out = String::new();
    let mut locals = Vec::new();
    for i in 0..statements {
        let _ = write!(out, "let {} = ", global_name(&words, i));
        expression_source(rng, &words, i, PARSER_MAX_DEPTH, &mut locals, &mut out);
        out.push_str(";\n");
    }
    out
}

/// One expression into `out`: it may name globals `0..globals` and the `locals` in scope.
fn expression_source(
    rng: &mut XorShift,
    words: &[String],
    globals: usize,
    depth: usize,
    locals: &mut Vec<String>,
    out: &mut String,
) {
    if depth == 0 || rng.chance(25) {
        match rng.below(3) {
            0 if !locals.is_empty() => out.push_str(&locals[rng.below(locals.len())]),
            1 if globals > 0 => out.push_str(&global_name(words, globals - 1 - rng.below(globals.min(50)))),
            _ => {
                let _ = write!(out, "{}", rng.below(1000));
            }
        }
        return;
    }
    match rng.below(10) {
        0 => {
            out.push('-');
            expression_source(rng, words, globals, depth - 1, locals, out);
        }
        1 => {
            let name = format!("{}{}", random_word(rng), locals.len());
            let _ = write!(out, "(let {name} = ");
            expression_source(rng, words, globals, depth - 1, locals, out);
            out.push_str(" in ");
            locals.push(name);
            expression_source(rng, words, globals, depth - 1, locals, out);
            locals.pop();
            out.push(')');
        }
        _ => {
            let op = [" + ", " - ", " * ", " / ", " % "][rng.below(5)];
            out.push('(');
            expression_source(rng, words, globals, depth - 1, locals, out);
            out.push_str(op);
            expression_source(rng, words, globals, depth - 1, locals, out);
            out.push(')');
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(i64),
    Identifier(String),
    Let,
    In,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Equals,
    Semicolon,
    Open,
    Close,
}

/// The source's tokens; identifiers are owned `String`s, as a compiler's lexer makes them.
fn tokenize(source: &str) -> Vec<Token> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        i += 1;
        let token = match c {
            b' ' | b'\n' => continue,
            b'0'..=b'9' => {
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                Token::Number(source[start..i].parse().expect("the generator writes numbers below 1000"))
            }
            b'a'..=b'z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                match &source[start..i] {
                    "let" => Token::Let,
                    "in" => Token::In,
                    name => Token::Identifier(name.to_string()),
                }
            }
            b'+' => Token::Plus,
            b'-' => Token::Minus,
            b'*' => Token::Star,
            b'/' => Token::Slash,
            b'%' => Token::Percent,
            b'=' => Token::Equals,
            b';' => Token::Semicolon,
            b'(' => Token::Open,
            b')' => Token::Close,
            other => panic!("unexpected byte {other:#x} at {start} in the generated source"),
        };
        tokens.push(token);
    }
    tokens
}

#[derive(Clone, Copy, Debug)]
enum BinaryOp {
    Add,
    Subtract,
    Multiply,
    Divide,
    Remainder,
}

#[derive(Debug)]
enum Expr {
    Number(i64),
    Variable(String),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Let { name: String, value: Box<Expr>, body: Box<Expr> },
}

#[derive(Debug)]
struct Statement {
    name: String,
    value: Expr,
}

/// Recursive descent over the tokens. The generator writes only valid programs, so a syntax
/// error is a bug in it and panics.
struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> &Token {
        let token = self.tokens.get(self.pos).unwrap_or_else(|| panic!("the program ends early"));
        self.pos += 1;
        token
    }

    fn expect(&mut self, wanted: &Token) {
        let pos = self.pos;
        let found = self.next();
        assert!(found == wanted, "token {pos}: expected {wanted:?}, found {found:?}");
    }

    fn identifier(&mut self) -> String {
        let pos = self.pos;
        match self.next() {
            Token::Identifier(name) => name.clone(),
            other => panic!("token {pos}: expected a name, found {other:?}"),
        }
    }

    /// `program := ("let" NAME "=" expr ";")*`
    fn program(mut self) -> Vec<Statement> {
        let mut statements = Vec::new();
        while self.peek().is_some() {
            self.expect(&Token::Let);
            let name = self.identifier();
            self.expect(&Token::Equals);
            let value = self.expression();
            self.expect(&Token::Semicolon);
            statements.push(Statement { name, value });
        }
        statements
    }

    /// `expr := "let" NAME "=" expr "in" expr | sum`
    fn expression(&mut self) -> Expr {
        if self.peek() != Some(&Token::Let) {
            return self.sum();
        }
        self.pos += 1;
        let name = self.identifier();
        self.expect(&Token::Equals);
        let value = Box::new(self.expression());
        self.expect(&Token::In);
        let body = Box::new(self.expression());
        Expr::Let { name, value, body }
    }

    /// `sum := product (("+" | "-") product)*`
    fn sum(&mut self) -> Expr {
        let mut left = self.product();
        loop {
            let op = match self.peek() {
                Some(Token::Plus) => BinaryOp::Add,
                Some(Token::Minus) => BinaryOp::Subtract,
                _ => return left,
            };
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.product()));
        }
    }

    /// `product := unary (("*" | "/" | "%") unary)*`
    fn product(&mut self) -> Expr {
        let mut left = self.unary();
        loop {
            let op = match self.peek() {
                Some(Token::Star) => BinaryOp::Multiply,
                Some(Token::Slash) => BinaryOp::Divide,
                Some(Token::Percent) => BinaryOp::Remainder,
                _ => return left,
            };
            self.pos += 1;
            left = Expr::Binary(op, Box::new(left), Box::new(self.unary()));
        }
    }

    /// `unary := "-" unary | NUMBER | NAME | "(" expr ")"`
    fn unary(&mut self) -> Expr {
        let pos = self.pos;
        match self.next() {
            Token::Minus => Expr::Negate(Box::new(self.unary())),
            Token::Number(n) => Expr::Number(*n),
            Token::Identifier(name) => Expr::Variable(name.clone()),
            Token::Open => {
                let inner = self.expression();
                self.expect(&Token::Close);
                inner
            }
            other => panic!("token {pos}: expected an operand, found {other:?}"),
        }
    }
}

/// The value of `expr` with wrapping arithmetic; dividing by zero gives zero (the generator
/// does not avoid it, and the result must be the same in every binary).
fn eval<'a>(expr: &'a Expr, globals: &HashMap<String, i64>, locals: &mut Vec<(&'a str, i64)>) -> i64 {
    match expr {
        Expr::Number(n) => *n,
        Expr::Variable(name) => match locals.iter().rev().find(|(local, _)| local == name) {
            Some(&(_, value)) => value,
            None => *globals.get(name).unwrap_or_else(|| panic!("{name} is not defined")),
        },
        Expr::Negate(inner) => eval(inner, globals, locals).wrapping_neg(),
        Expr::Binary(op, left, right) => {
            let (a, b) = (eval(left, globals, locals), eval(right, globals, locals));
            match op {
                BinaryOp::Add => a.wrapping_add(b),
                BinaryOp::Subtract => a.wrapping_sub(b),
                BinaryOp::Multiply => a.wrapping_mul(b),
                BinaryOp::Divide if b == 0 => 0,
                BinaryOp::Divide => a.wrapping_div(b),
                BinaryOp::Remainder if b == 0 => 0,
                BinaryOp::Remainder => a.wrapping_rem(b),
            }
        }
        Expr::Let { name, value, body } => {
            let bound = eval(value, globals, locals);
            locals.push((name, bound));
            let result = eval(body, globals, locals);
            locals.pop();
            result
        }
    }
}

// ---------------------------------------------------------------------------------------------
// strings: word counting with a HashMap<String, usize>, grouping with a BTreeMap.

/// Words of text per unit of scale.
const WORDS_PER_UNIT: usize = 240;
/// Distinct words the text draws from (skewed towards the first ones, as in prose).
const VOCABULARY: usize = 20_000;
/// Words per message in `threads`.
const BATCH: usize = 256;

/// Generates text, counts its words (lowercased, punctuation trimmed), groups the distinct
/// words by first letter and sorts; the checksum covers the sorted results.
pub fn strings(scale: usize) -> u64 {
    let text = prose(&mut XorShift::new(0x7374_7273), black_box(scale) * WORDS_PER_UNIT);
    let mut counts = HashMap::new();
    for word in words(&text) {
        count(&mut counts, word);
    }
    summarize(&counts).checksum()
}

/// `words` words of sentences: capitalized starts, commas, full stops, line breaks.
fn prose(rng: &mut XorShift, words: usize) -> String {
    let vocabulary: Vec<String> = (0..VOCABULARY).map(|_| random_word(rng)).collect();
    let mut out = String::new();
    let mut sentence_start = true;
    for i in 0..words {
        // Zipf-like: index j is drawn with probability about ln(n / j) / n.
        let bound = rng.below(VOCABULARY) + 1;
        let word = &vocabulary[rng.below(bound)];
        if sentence_start {
            let mut letters = word.chars();
            if let Some(first) = letters.next() {
                out.extend(first.to_uppercase());
                out.push_str(letters.as_str());
            }
        } else {
            out.push_str(word);
        }
        sentence_start = rng.chance(8);
        out.push_str(match (sentence_start, rng.chance(10)) {
            (true, _) => ". ",
            (false, true) => ", ",
            (false, false) if i % 13 == 12 => "\n",
            (false, false) => " ",
        });
    }
    out
}

/// The text's words, lowercased and without punctuation, each a new `String`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
}

/// Counts `word`: a new word becomes a key, a known one is dropped.
fn count(counts: &mut HashMap<String, usize>, word: String) {
    *counts.entry(word).or_insert(0) += 1;
}

/// What word counting produces, in orders the hash map's cannot change.
#[derive(Debug)]
struct WordSummary {
    /// Every distinct word with its count, most frequent first, ties alphabetical.
    by_frequency: Vec<(String, usize)>,
    /// The distinct words by first letter, each group alphabetical.
    by_letter: BTreeMap<String, Vec<String>>,
}

fn summarize(counts: &HashMap<String, usize>) -> WordSummary {
    let mut by_frequency: Vec<(String, usize)> = counts.iter().map(|(w, &n)| (w.clone(), n)).collect();
    by_frequency.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut by_letter: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (word, _) in &by_frequency {
        let first_letter: String = word.chars().take(1).collect();
        by_letter.entry(first_letter).or_default().push(word.clone());
    }
    for group in by_letter.values_mut() {
        group.sort_unstable();
    }
    WordSummary { by_frequency, by_letter }
}

impl WordSummary {
    fn checksum(&self) -> u64 {
        let mut sum = Checksum::default();
        for (word, n) in &self.by_frequency {
            sum.add_bytes(word.as_bytes());
            sum.add(*n as u64);
        }
        for (letter, group) in &self.by_letter {
            sum.add_bytes(letter.as_bytes());
            sum.add(group.len() as u64);
            for word in group {
                sum.add_bytes(word.as_bytes());
            }
        }
        sum.0
    }
}

// ---------------------------------------------------------------------------------------------
// threads: the strings work on two threads, each counting and summarizing the other's words.

/// What one `threads` worker sends the other, in this order: its words in batches, `WordsDone`,
/// then the summary it made of the other's words.
enum Message {
    Words(Vec<String>),
    WordsDone,
    Summary(WordSummary),
}

/// Two scoped threads, each generating text of half the scale: each sends its words to the
/// other, counts and summarizes the words it receives, and sends that summary back. So every
/// word `String` and every summary is freed by the thread that did not allocate it. The
/// checksum combines, in a fixed order, each thread's checksum of the summary of its own words.
pub fn threads(scale: usize) -> u64 {
    let scale = black_box(scale);
    let (to_second, from_first) = mpsc::channel();
    let (to_first, from_second) = mpsc::channel();
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(move || exchange(0x6669_7273, scale / 2, &to_second, &from_second));
        let second = s.spawn(move || exchange(0x7365_636f, scale - scale / 2, &to_first, &from_first));
        (first.join().expect("the first thread panicked"), second.join().expect("the second thread panicked"))
    });
    let mut sum = Checksum::default();
    sum.add(first);
    sum.add(second);
    sum.0
}

/// One `threads` worker: returns the checksum of the peer's summary of this thread's words.
fn exchange(seed: u64, scale: usize, to_peer: &Sender<Message>, from_peer: &Receiver<Message>) -> u64 {
    const PEER_GONE: &str = "the peer thread ended early";
    let text = prose(&mut XorShift::new(seed), scale * WORDS_PER_UNIT);
    let mut counts = HashMap::new();
    let mut peer_done = false;
    let mut batch = Vec::with_capacity(BATCH);
    for word in words(&text) {
        batch.push(word);
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            to_peer.send(Message::Words(full)).expect(PEER_GONE);
            // Count what has arrived so far, so that both directions are in flight at once.
            // Stop at `WordsDone`: what follows it (the summary) is for after counting.
            while !peer_done {
                let Ok(message) = from_peer.try_recv() else { break };
                peer_done = receive_words(message, &mut counts);
            }
        }
    }
    to_peer.send(Message::Words(batch)).expect(PEER_GONE);
    to_peer.send(Message::WordsDone).expect(PEER_GONE);
    drop(text);
    while !peer_done {
        peer_done = receive_words(from_peer.recv().expect(PEER_GONE), &mut counts);
    }
    to_peer.send(Message::Summary(summarize(&counts))).expect(PEER_GONE);
    drop(counts);
    match from_peer.recv().expect(PEER_GONE) {
        Message::Summary(of_mine) => of_mine.checksum(),
        Message::Words(_) | Message::WordsDone => panic!("words after WordsDone"),
    }
}

/// Counts a batch of the peer's words; true at `WordsDone`.
fn receive_words(message: Message, counts: &mut HashMap<String, usize>) -> bool {
    match message {
        Message::Words(batch) => {
            for word in batch {
                count(counts, word);
            }
            false
        }
        Message::WordsDone => true,
        Message::Summary(_) => panic!("a summary before WordsDone"),
    }
}

// ---------------------------------------------------------------------------------------------
// The binaries' common main.

/// What one process measured.
#[derive(Clone, Copy, Debug)]
pub struct Measurement {
    /// The REPS timed runs together.
    pub total_ns: u128,
    pub checksum: u64,
    /// The peak resident set of the program (warm-up included), in KiB.
    pub max_rss_kib: u64,
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ns={} checksum={} maxrss_kib={}", self.total_ns, self.checksum, self.max_rss_kib)
    }
}

/// Reads `WORKLOAD SCALE REPS` from the command line (exits with status 2 on a bad one), runs
/// the workload once unrecorded and then REPS times. Every run must give the same checksum.
pub fn run_from_args() -> Measurement {
    let args: Vec<String> = std::env::args().collect();
    let program = args.first().map_or("rust_global", String::as_str);
    let names: Vec<&str> = WORKLOADS.iter().map(|(name, _)| *name).collect();
    let usage = || -> ! {
        eprintln!("usage: {program} WORKLOAD SCALE REPS (WORKLOAD: {})", names.join(", "));
        std::process::exit(2)
    };
    let [_, name, scale, reps] = args.as_slice() else { usage() };
    let Some(&(_, workload)) = WORKLOADS.iter().find(|(n, _)| n == name) else { usage() };
    let (Ok(scale), Ok(reps)) = (scale.parse::<usize>(), reps.parse::<usize>()) else { usage() };
    if scale == 0 || reps == 0 {
        usage();
    }
    let checksum = workload(scale);
    let mut total_ns = 0;
    for rep in 0..reps {
        let start = Instant::now();
        let again = workload(scale);
        total_ns += start.elapsed().as_nanos();
        assert_eq!(again, checksum, "{name}: run {} gave another checksum than the warm-up", rep + 1);
    }
    Measurement { total_ns, checksum, max_rss_kib: max_rss_kib() }
}

/// The peak resident set of this program's address space so far, in KiB: `VmHWM` in
/// /proc/self/status. Not `getrusage`'s `ru_maxrss`: Linux keeps that across `execve`, so it
/// starts at the launching process's peak (`subprocess` from a Python interpreter: 15 MB
/// and more), and a workload's smaller peak would not show.
fn max_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("/proc/self/status has VmHWM");
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"))
}
