//! 64-byte alloc+free pairs from Zig, all contenders in the same run, interleaved in rounds:
//! allocator(goo heap) (Zig's interface over goo_memory_alloc_ex/free_ex), the C ABI's own
//! pair on the same heap (goo_memory_alloc_with/free_with, called directly), and Zig's
//! std.heap.c_allocator and std.heap.smp_allocator. Prints the median time per pair of each and
//! the median of the per-round ratios; asserts nothing.
//!
//!   zig build bench                  # 11 rounds of 200,000 pairs per contender
//!   zig build bench -- ROUNDS PAIRS
const std = @import("std");
const goo = @import("goo_memory");
const c = goo.c;

const block_size = 64;

const Contender = enum {
    c_abi,
    goo_zig,
    c_allocator,
    smp_allocator,

    fn label(self: Contender) []const u8 {
        return switch (self) {
            .c_abi => "goo heap, C ABI pair (goo_memory_alloc_with/free_with)",
            .goo_zig => "goo heap through allocator() (std.mem.Allocator)",
            .c_allocator => "std.heap.c_allocator",
            .smp_allocator => "std.heap.smp_allocator",
        };
    }
};
const contenders = std.enums.values(Contender);

fn fail(comptime what: []const u8) noreturn {
    std.debug.print("bench: " ++ what ++ "\n", .{});
    std.process.exit(1);
}

/// Pairs through a Zig allocator as Zig code makes them: an indirect call through the vtable
/// each way (noinline, so no contender's calls are devirtualized into the loop).
noinline fn zigPairs(a: std.mem.Allocator, pairs: usize) void {
    for (0..pairs) |i| {
        const block = a.alloc(u8, block_size) catch fail("out of memory");
        block[0] = @truncate(i);
        std.mem.doNotOptimizeAway(block.ptr);
        a.free(block);
    }
}

/// The C ABI's pair on the same heap, as a C program makes it.
noinline fn cAbiPairs(heap: *goo.GooAllocator, pairs: usize) void {
    for (0..pairs) |i| {
        const block: [*]u8 = @ptrCast(c.goo_memory_alloc_with(heap, block_size) orelse fail("out of memory"));
        block[0] = @truncate(i);
        std.mem.doNotOptimizeAway(block);
        c.goo_memory_free_with(heap, block, block_size);
    }
}

fn median(values: []f64) f64 {
    std.mem.sort(f64, values, {}, std.sort.asc(f64));
    const mid = values.len / 2;
    return if (values.len % 2 == 1) values[mid] else (values[mid - 1] + values[mid]) / 2;
}

fn parseArg(args: []const [:0]const u8, index: usize, default: usize) usize {
    if (args.len <= index) return default;
    const value = std.fmt.parseInt(usize, args[index], 10) catch fail("usage: bench [ROUNDS] [PAIRS] (positive integers)");
    if (value == 0) fail("usage: bench [ROUNDS] [PAIRS] (positive integers)");
    return value;
}

pub fn main(init: std.process.Init) !void {
    const io = init.io;
    const arena = init.arena.allocator();
    const args = try init.minimal.args.toSlice(arena);
    const rounds = parseArg(args, 1, 11);
    const pairs = parseArg(args, 2, 200_000);

    const heap = goo.createHeap() catch fail("cannot create the heap allocator");
    defer goo.destroy(heap);
    const goo_zig = goo.allocator(heap);

    // ns per pair, per contender and round
    var times: [contenders.len][]f64 = undefined;
    for (&times) |*t| t.* = try arena.alloc(f64, rounds);

    // One warm-up pass each, then the rounds; each round starts with a different contender.
    for (0..rounds + 1) |round| {
        for (0..contenders.len) |k| {
            const contender = contenders[(round + k) % contenders.len];
            const start = std.Io.Clock.awake.now(io);
            switch (contender) {
                .c_abi => cAbiPairs(heap, pairs),
                .goo_zig => zigPairs(goo_zig, pairs),
                .c_allocator => zigPairs(std.heap.c_allocator, pairs),
                .smp_allocator => zigPairs(std.heap.smp_allocator, pairs),
            }
            const elapsed = start.durationTo(std.Io.Clock.awake.now(io)).nanoseconds;
            if (round > 0) times[@backingInt(contender)][round - 1] = @as(f64, @floatFromInt(elapsed)) / @as(f64, @floatFromInt(pairs));
        }
    }

    var buffer: [4096]u8 = undefined;
    var stdout_writer: std.Io.File.Writer = .init(.stdout(), io, &buffer);
    const out = &stdout_writer.interface;
    try out.print("64-byte alloc+free pairs from Zig: {d} rounds of {d} pairs per contender, interleaved\n", .{ rounds, pairs });

    // Ratios of the Zig interface over the goo heap to each other contender, round by round.
    const goo_times = times[@backingInt(Contender.goo_zig)];
    const ratios = try arena.alloc(f64, rounds);
    for (contenders) |contender| {
        const t = times[@backingInt(contender)];
        try out.print("  {s:<58} {d:>6.2} ns", .{ contender.label(), median(try arena.dupe(f64, t)) });
        if (contender != .goo_zig) {
            for (ratios, goo_times, t) |*r, g, other| r.* = g / other;
            try out.print("   allocator(goo heap) / this: {d:.2}x", .{median(ratios)});
        }
        try out.writeAll("\n");
    }
    try out.flush();
}
