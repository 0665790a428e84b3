//! The bridge's integration tests: Zig's containers on every kind of Goo allocator, Zig's
//! exhaustive failure check through Goo allocators, the library's own failures seen from Zig,
//! Zig allocators used by C code, and the handles' arena/pool/region/scope calls.
const std = @import("std");
const testing = std.testing;
const goo = @import("goo_memory");
const c = goo.c;
const GooAllocator = goo.GooAllocator;

// test/c/helpers.c
extern fn goo_zig_test_c_allocator() *GooAllocator;
extern fn goo_zig_test_c_allocs() usize;
extern fn goo_zig_test_c_frees() usize;
extern fn goo_zig_test_c_workload(a: *GooAllocator, n: usize) usize;
extern fn goo_zig_test_stderr_begin() bool;
extern fn goo_zig_test_stderr_end(buffer: [*]u8, size: usize) usize;

/// What the library writes to stderr between `begin` and `expect`: a refused call says why
/// there, and the tests check that it did (and keep the message out of the test output).
const Stderr = struct {
    fn begin() !void {
        if (!goo_zig_test_stderr_begin()) return error.CannotCaptureStderr;
    }

    fn expect(comptime message: []const u8) !void {
        var buffer: [4096]u8 = undefined;
        const len = goo_zig_test_stderr_end(&buffer, buffer.len);
        const text = buffer[0..len];
        if (std.mem.indexOf(u8, text, message) == null) {
            std.debug.print("expected \"{s}\" on stderr, got \"{s}\"\n", .{ message, text });
            return error.TestExpectedStderr;
        }
    }
};

// ---- std.ArrayList and std.HashMap on every kind ----

/// An ArrayList and a HashMap grown, checked, shrunk and freed: alloc, remap (and so the
/// library's realloc) and free with the containers' own sizes and alignments.
fn collections(a: std.mem.Allocator) !void {
    var list: std.ArrayList(u64) = .empty;
    defer list.deinit(a);
    for (0..2000) |i| try list.append(a, i *% 0x9e3779b97f4a7c15);
    for (list.items, 0..) |x, i| try testing.expectEqual(i *% 0x9e3779b97f4a7c15, x);
    list.shrinkAndFree(a, 100);
    try testing.expectEqual(100, list.items.len);

    var bytes: std.ArrayList(u8) = .empty; // alignment 1
    defer bytes.deinit(a);
    for (0..3000) |i| try bytes.append(a, @truncate(i));
    for (bytes.items, 0..) |x, i| try testing.expectEqual(@as(u8, @truncate(i)), x);

    var map: std.AutoHashMap(u32, u64) = .init(a);
    defer map.deinit();
    for (0..500) |i| try map.put(@intCast(i), i * 3);
    for (0..500) |i| try testing.expectEqual(i * 3, map.get(@intCast(i)).?);
    for (0..250) |i| try testing.expect(map.remove(@intCast(i * 2)));
    try testing.expectEqual(250, map.count());

    var names: std.StringHashMap([]u8) = .init(a);
    defer {
        var it = names.iterator();
        while (it.next()) |entry| {
            a.free(entry.key_ptr.*);
            a.free(entry.value_ptr.*);
        }
        names.deinit();
    }
    for (0..64) |i| {
        const key = try std.fmt.allocPrint(a, "key-{d}", .{i});
        errdefer a.free(key);
        const value = try a.alloc(u8, i + 1);
        errdefer a.free(value);
        @memset(value, @truncate(i));
        try names.putNoClobber(key, value);
    }
    try testing.expectEqual(17, names.get("key-16").?.len);
}

/// `collections` through `allocator(a)`; the library's stats of `a` must show every block
/// freed again and no failure.
fn onKind(a: *GooAllocator) !void {
    const before = goo.stats(a);
    try collections(goo.allocator(a));
    const after = goo.stats(a);
    try testing.expectEqual(before.allocation_count, after.allocation_count);
    try testing.expectEqual(before.bytes_allocated, after.bytes_allocated);
    try testing.expect(after.total_allocations > before.total_allocations);
    try testing.expectEqual(before.failed_allocations, after.failed_allocations);
}

test "collections: system allocator" {
    const a = try goo.createSystem();
    defer goo.destroy(a);
    try onKind(a);
}

test "collections: heap allocator" {
    const a = try goo.createHeap();
    defer goo.destroy(a);
    try onKind(a);
}

test "collections: the default allocator" {
    try onKind(goo.defaultAllocator());
}

test "collections: arena" {
    const arena = try goo.Arena.init(.{});
    defer arena.deinit();
    try onKind(arena.goo);
    try testing.expect(arena.chunkCount() >= 1);
}

test "collections: pool (objects large enough for the containers' blocks)" {
    const pool = try goo.Pool.init(.{ .object_size = 32 << 10, .objects_per_block = 8 });
    defer pool.deinit();
    try onKind(pool.goo);
    try testing.expectEqual(0, pool.stats().live_objects);
}

test "collections: region and child region" {
    const root = try goo.Region.init(.{ .region_size = 8192 });
    defer root.deinit();
    try onKind(root.goo);
    const child = try root.child(0);
    try onKind(child.goo);
}

test "collections: scope over the heap, and a scope begun on this thread" {
    const heap = try goo.createHeap();
    defer goo.destroy(heap);
    {
        const scope = try goo.Scope.init(heap);
        defer scope.deinit();
        try onKind(scope.goo);
        try testing.expectEqual(0, scope.liveCount());
    }
    const begun = try goo.Scope.begin();
    defer begun.deinit();
    try onKind(begun.goo);
}

test "collections: this thread's temporary arena" {
    defer goo.temp.reset();
    try onKind(try goo.temp.goo());
}

test "collections: shared arena and shared pool" {
    const arena = try goo.SharedArena.init(.{});
    defer arena.deinit();
    try onKind(arena.goo);
    const pool = try goo.SharedPool.init(.{ .object_size = 32 << 10, .objects_per_block = 8 });
    defer pool.deinit();
    try onKind(pool.goo);
    try testing.expectEqual(0, (try pool.stats()).live_objects);
}

/// Runs `work(context, i)` on `n` threads at once (`i` = 0 .. n-1), joins them all, then
/// returns the first error one of them met.
fn onThreads(comptime n: usize, context: anytype, comptime work: anytype) !void {
    const Run = struct {
        fn run(ctx: @TypeOf(context), i: usize, result: *?anyerror) void {
            work(ctx, i) catch |e| {
                result.* = e;
            };
        }
    };
    var results: [n]?anyerror = @splat(null);
    var threads: [n]std.Thread = undefined;
    {
        var spawned: usize = 0;
        defer for (threads[0..spawned]) |t| t.join();
        while (spawned < n) : (spawned += 1)
            threads[spawned] = try std.Thread.spawn(.{}, Run.run, .{ context, spawned, &results[spawned] });
    }
    for (results) |r| if (r) |e| return e;
}

fn collectionsOn(a: std.mem.Allocator, _: usize) !void {
    try collections(a);
}

test "SharedArena: std containers on four threads at once; reset, mark, rewind once they are done" {
    const arena = try goo.SharedArena.init(.{ .initial_size = 16 << 10 });
    defer arena.deinit();
    try onThreads(4, arena.allocator(), collectionsOn);
    // every block allocated and freed on the four threads, counted exactly
    const s = goo.stats(arena.goo);
    try testing.expectEqual(0, s.allocation_count);
    try testing.expectEqual(0, s.bytes_allocated);
    try testing.expectEqual(0, s.failed_allocations);
    try testing.expect(s.total_allocations >= 4 * 128); // the 64 names and values of each thread
    try testing.expect(arena.chunkCount() >= 1);

    // the threads are done: nothing refuses
    try arena.reset();
    const a = arena.allocator();
    const kept = try a.alloc(u64, 4);
    const m = arena.mark();
    _ = try a.alloc(u8, 100_000); // a chunk of its own
    try arena.rewind(m);
    try testing.expectEqual(32, goo.stats(arena.goo).bytes_allocated);
    a.free(kept);
}

/// Objects allocated on several threads, freed on another.
const Made = struct {
    a: std.mem.Allocator,
    objects: *[4][250]*[64]u8,

    fn make(self: Made, i: usize) !void {
        for (&self.objects[i]) |*object| {
            object.* = try self.a.create([64]u8);
            @memset(object.*, @intCast(i + 1));
        }
    }
};

test "SharedPool: std containers on four threads at once; objects freed on another thread" {
    const big = try goo.SharedPool.init(.{ .object_size = 32 << 10, .objects_per_block = 8 });
    defer big.deinit();
    try onThreads(4, big.allocator(), collectionsOn);
    try testing.expectEqual(0, (try big.stats()).live_objects);
    try testing.expectEqual(0, goo.stats(big.goo).failed_allocations);

    const pool = try goo.SharedPool.init(.{ .object_size = 64 });
    defer pool.deinit();
    var objects: [4][250]*[64]u8 = undefined;
    try onThreads(4, Made{ .a = pool.allocator(), .objects = &objects }, Made.make);
    var s = try pool.stats();
    try testing.expectEqual(1000, s.live_objects);
    try testing.expect(!s.checked);
    for (&objects, 1..) |*made_by, id| {
        for (made_by) |object| {
            try testing.expect(std.mem.allEqual(u8, object, @intCast(id)));
            pool.allocator().destroy(object); // back to the thread whose block holds it
        }
    }
    s = try pool.stats();
    try testing.expectEqual(0, s.live_objects);
    try testing.expectEqual(0, s.misuse_detected);
    try testing.expectEqual(1000, goo.stats(pool.goo).total_frees);
    try pool.reset();
}

/// A Zig allocator whose next allocation, once armed, waits until released: a shared
/// allocator's thread that takes a chunk or a block from it stays inside the allocator (holding
/// its lock) meanwhile.
const Gate = struct {
    child: std.mem.Allocator,
    armed: std.atomic.Value(bool) = .init(false),
    entered: std.atomic.Value(bool) = .init(false),
    released: std.atomic.Value(bool) = .init(false),

    const vtable: std.mem.Allocator.VTable = .{ .alloc = alloc, .resize = resize, .remap = remap, .free = free };

    fn allocator(self: *Gate) std.mem.Allocator {
        return .{ .ptr = self, .vtable = &vtable };
    }

    fn arm(self: *Gate) void {
        self.entered.store(false, .release);
        self.released.store(false, .release);
        self.armed.store(true, .release);
    }

    fn waitEntered(self: *Gate) void {
        while (!self.entered.load(.acquire)) std.Thread.yield() catch {};
    }

    fn release(self: *Gate) void {
        self.released.store(true, .release);
    }

    fn alloc(ctx: *anyopaque, len: usize, alignment: std.mem.Alignment, ret_addr: usize) ?[*]u8 {
        const self: *Gate = @ptrCast(@alignCast(ctx));
        if (self.armed.swap(false, .acq_rel)) {
            self.entered.store(true, .release);
            while (!self.released.load(.acquire)) std.Thread.yield() catch {};
        }
        return self.child.rawAlloc(len, alignment, ret_addr);
    }

    fn resize(ctx: *anyopaque, memory: []u8, alignment: std.mem.Alignment, new_len: usize, ret_addr: usize) bool {
        const self: *Gate = @ptrCast(@alignCast(ctx));
        return self.child.rawResize(memory, alignment, new_len, ret_addr);
    }

    fn remap(ctx: *anyopaque, memory: []u8, alignment: std.mem.Alignment, new_len: usize, ret_addr: usize) ?[*]u8 {
        const self: *Gate = @ptrCast(@alignCast(ctx));
        return self.child.rawRemap(memory, alignment, new_len, ret_addr);
    }

    fn free(ctx: *anyopaque, memory: []u8, alignment: std.mem.Alignment, ret_addr: usize) void {
        const self: *Gate = @ptrCast(@alignCast(ctx));
        self.child.rawFree(memory, alignment, ret_addr);
    }
};

fn createAndDestroy(a: std.mem.Allocator) void {
    const object = a.create([64]u8) catch return;
    a.destroy(object);
}

test "SharedArena, SharedPool: error.Refused while another thread is inside, done after" {
    var gate: Gate = .{ .child = testing.allocator };
    var slot: goo.ExportedAllocator = undefined;
    const parent = goo.exportAllocator(gate.allocator(), &slot);

    const arena = try goo.SharedArena.init(.{ .parent = parent });
    defer arena.deinit();
    {
        gate.arm();
        // the thread's first chunk: the arena asks its parent under its lock, and waits there
        const thread = try std.Thread.spawn(.{}, createAndDestroy, .{arena.allocator()});
        defer thread.join();
        defer gate.release();
        gate.waitEntered();
        try Stderr.begin();
        const reset = arena.reset();
        try Stderr.expect("reset of a shared arena refused: another thread is inside");
        try testing.expectError(error.Refused, reset);
        try Stderr.begin();
        const m = arena.mark();
        try Stderr.expect("mark of a shared arena refused");
        try Stderr.begin();
        const rewind = arena.rewind(m);
        try Stderr.expect("goo_arena_rewind refused");
        try testing.expectError(error.Refused, rewind);
    }
    try testing.expectEqual(1, goo.stats(arena.goo).total_allocations);
    try arena.reset();
    try arena.rewind(arena.mark());

    const pool = try goo.SharedPool.init(.{ .parent = parent, .object_size = 64 });
    defer pool.deinit();
    {
        gate.arm();
        // the thread's first block, likewise
        const thread = try std.Thread.spawn(.{}, createAndDestroy, .{pool.allocator()});
        defer thread.join();
        defer gate.release();
        gate.waitEntered();
        try Stderr.begin();
        const counts = pool.stats();
        try Stderr.expect("counting the objects of a shared pool refused");
        try testing.expectError(error.Refused, counts);
        try Stderr.begin();
        const reset = pool.reset();
        try Stderr.expect("reset of a shared pool refused");
        try testing.expectError(error.Refused, reset);
    }
    try testing.expectEqual(1, goo.stats(pool.goo).total_frees);
    try testing.expectEqual(0, (try pool.stats()).live_objects);
    try pool.reset();
}

test "collections: locked allocator over an arena" {
    const arena = try goo.Arena.init(.{});
    defer arena.deinit();
    const locked = try goo.createLocked(arena.goo);
    defer goo.destroy(locked);
    try onKind(locked);
    try testing.expect(goo.stats(arena.goo).total_allocations > 0); // the arena served them
}

test "collections: debug allocator over the heap, no misuse found" {
    const heap = try goo.createHeap();
    defer goo.destroy(heap);
    const debug = try goo.createDebug(heap, .{});
    defer goo.destroy(debug);
    try testing.expect(c.goo_allocator_is_debug(debug));
    try onKind(debug);
    try testing.expectEqual(0, c.goo_debug_check(debug));
    try testing.expectEqual(0, c.goo_debug_error_count(debug));
}

test "collections: an allocator written in C" {
    const a = goo_zig_test_c_allocator();
    const allocs = goo_zig_test_c_allocs();
    try onKind(a);
    try testing.expect(goo_zig_test_c_allocs() > allocs);
    try testing.expectEqual(goo_zig_test_c_allocs(), goo_zig_test_c_frees());
}

test "collections: a Zig allocator exported to the library and back" {
    var slot: goo.ExportedAllocator = undefined;
    try onKind(goo.exportAllocator(testing.allocator, &slot));
}

test "an exported allocator's vtable refuses alignment 0, and destroy leaves no limit behind" {
    var slot: goo.ExportedAllocator = undefined;
    const g = goo.exportAllocator(testing.allocator, &slot);
    // C code calling the vtable directly: refused, not asserted.
    try testing.expectEqual(@as(?*anyopaque, null), g.alloc.?(g.context, 16, 0, goo.c.GOO_ALLOC_DEFAULT));
    try testing.expect(goo.c.goo_allocator_set_limit(g, 100));
    goo.destroy(g);
    // A new allocator in the same slot (the same address) starts without the old limit.
    const again = goo.exportAllocator(testing.allocator, &slot);
    try testing.expectEqual(@as(usize, 0), goo.c.goo_allocator_get_limit(again));
    const block = goo.c.goo_memory_alloc_with(again, 500) orelse return error.TestUnexpectedResult;
    goo.c.goo_memory_free_with(again, block, 500);
    goo.destroy(again);
}

test "a pool refuses a block larger than its objects: error.OutOfMemory" {
    const pool = try goo.Pool.init(.{ .object_size = 64, .check = .on });
    defer pool.deinit();
    const a = pool.allocator();
    const fits = try a.create([64]u8);
    defer a.destroy(fits);
    try testing.expectError(error.OutOfMemory, a.create([65]u8));
    try testing.expectError(error.OutOfMemory, a.alignedAlloc(u8, .fromByteUnits(4096), 8));
    try testing.expectEqual(2, goo.stats(pool.goo).failed_allocations);
    try testing.expectEqual(1, pool.stats().live_objects);
    try testing.expectError(error.InvalidOptions, goo.Pool.init(.{ .object_size = 0 }));
    try testing.expectError(error.InvalidOptions, goo.Pool.init(.{ .object_size = 8, .alignment = 3 }));
}

// ---- Failures ----

const words = [_][]const u8{ "arena", "pool", "region", "scope", "arena", "heap", "pool", "arena" };

/// A word index: each word to the positions it occurs at. Frees all it made on any error.
fn buildIndex(a: std.mem.Allocator, text: []const []const u8) !void {
    var index: std.StringHashMap(std.ArrayList(usize)) = .init(a);
    defer {
        var it = index.iterator();
        while (it.next()) |entry| {
            entry.value_ptr.deinit(a);
            a.free(entry.key_ptr.*);
        }
        index.deinit();
    }
    for (text, 0..) |word, position| {
        const entry = try index.getOrPut(word);
        if (!entry.found_existing) {
            entry.key_ptr.* = a.dupe(u8, word) catch |err| {
                index.removeByPtr(entry.key_ptr);
                return err;
            };
            entry.value_ptr.* = .empty;
        }
        try entry.value_ptr.append(a, position);
    }
    try testing.expectEqualSlices(usize, &.{ 0, 4, 7 }, index.get("arena").?.items);
    try testing.expectEqual(5, index.count());
}

test "checkAllAllocationFailures through Goo allocators" {
    const heap = try goo.createHeap();
    defer goo.destroy(heap);
    try testing.checkAllAllocationFailures(goo.allocator(heap), buildIndex, .{&words});
    try testing.expectEqual(0, goo.stats(heap).allocation_count);

    const scope = try goo.Scope.init(heap);
    defer scope.deinit();
    try testing.checkAllAllocationFailures(scope.allocator(), buildIndex, .{&words});
    try testing.expectEqual(0, scope.liveCount());

    var slot: goo.ExportedAllocator = undefined;
    try testing.checkAllAllocationFailures(goo.allocator(goo.exportAllocator(testing.allocator, &slot)), buildIndex, .{&words});
}

fn countRequests(event: [*c]const c.GooMemoryEvent, user_data: ?*anyopaque) callconv(.c) bool {
    const count: *u64 = @ptrCast(@alignCast(user_data.?));
    count.* += 1;
    _ = event;
    return true;
}

test "every request the library fails reaches Zig code as error.OutOfMemory, and nothing leaks" {
    const heap = try goo.createHeap();
    defer goo.destroy(heap);
    const a = goo.allocator(heap);

    // How many requests (allocations and reallocations) a run makes.
    var requests: u64 = 0;
    const counter = c.goo_memory_add_callback(c.GOO_EVENT_REQUEST, countRequests, &requests);
    try testing.expect(counter != 0);
    try buildIndex(a, &words);
    try testing.expect(c.goo_memory_remove_callback(counter));
    try testing.expect(requests > 5);

    // Then once with each of them failing, in the library.
    var failed_runs: u64 = 0;
    for (1..requests + 1) |nth| {
        const spec: c.GooFaultSpec = .{ .allocator = heap, .fail_nth = nth, .this_thread_only = true };
        const injector = c.goo_memory_inject_faults(&spec);
        try testing.expect(injector != 0);
        defer _ = c.goo_memory_remove_callback(injector);
        const failures = goo.stats(heap).failed_allocations;
        if (buildIndex(a, &words)) |_| {
            // A failed remap is not an error: the containers allocate, copy and free instead.
        } else |err| {
            try testing.expectEqual(error.OutOfMemory, err);
            failed_runs += 1;
        }
        try testing.expectEqual(failures + 1, goo.stats(heap).failed_allocations);
        try testing.expectEqual(0, goo.stats(heap).allocation_count);
    }
    try testing.expect(failed_runs > 0);
}

// ---- Zig allocators used by C ----

test "C code runs on exported Zig allocators: testing.allocator, an ArenaAllocator, page_allocator" {
    const expected: usize = 300 * 299 / 2;

    var checked: goo.ExportedAllocator = undefined;
    const checked_goo = goo.exportAllocator(testing.allocator, &checked);
    try testing.expectEqual(expected, goo_zig_test_c_workload(checked_goo, 300));
    const s = goo.stats(checked_goo);
    try testing.expectEqual(0, s.allocation_count);
    try testing.expectEqual(300 + 1, s.total_allocations); // the nodes and the array (its resizes are reallocs)
    try testing.expectEqual(0, s.bytes_allocated);

    var arena_state: std.heap.ArenaAllocator = .init(std.heap.page_allocator);
    defer arena_state.deinit();
    var arena_slot: goo.ExportedAllocator = undefined;
    try testing.expectEqual(expected, goo_zig_test_c_workload(goo.exportAllocator(arena_state.allocator(), &arena_slot), 300));

    var page_slot: goo.ExportedAllocator = undefined;
    try testing.expectEqual(expected, goo_zig_test_c_workload(goo.exportAllocator(std.heap.page_allocator, &page_slot), 300));
}

test "a Zig allocator's failure makes the C code's request fail cleanly" {
    var failing: std.testing.FailingAllocator = .init(testing.allocator, .{ .fail_index = 50 });
    var slot: goo.ExportedAllocator = undefined;
    const a = goo.exportAllocator(failing.allocator(), &slot);
    try testing.expectEqual(0, goo_zig_test_c_workload(a, 300));
    try testing.expectEqual(0, goo.stats(a).allocation_count);
    try testing.expect(goo.stats(a).failed_allocations >= 1);
}

// ---- The handles ----

test "Arena: mark, rewind, reset; a stale mark is error.InvalidMark" {
    const arena = try goo.Arena.init(.{ .initial_size = 4096 });
    defer arena.deinit();
    const a = arena.allocator();
    _ = try a.alloc(u8, 100);
    const m = arena.mark();
    _ = try a.alloc(u8, 10_000); // a chunk of its own
    try testing.expectEqual(10_100, goo.stats(arena.goo).bytes_allocated);
    try arena.rewind(m);
    try testing.expectEqual(100, goo.stats(arena.goo).bytes_allocated);
    arena.reset();
    try testing.expectEqual(0, goo.stats(arena.goo).bytes_allocated);
    try Stderr.begin();
    const stale = arena.rewind(m);
    try Stderr.expect("goo_arena_rewind refused");
    try testing.expectError(error.InvalidMark, stale);
}

test "temp: mark and rewind" {
    defer goo.temp.reset();
    const a = try goo.temp.allocator();
    const m = goo.temp.mark();
    _ = try a.alloc(u8, 256);
    try goo.temp.rewind(m);
    goo.temp.reset();
    try Stderr.begin();
    const stale = goo.temp.rewind(m);
    try Stderr.expect("goo_temp_rewind refused");
    try testing.expectError(error.InvalidMark, stale);
}

const CleanupLog = struct {
    order: [4]u8 = undefined,
    len: usize = 0,
    region: ?goo.Region = null,
    reset_refused: bool = false,

    fn first(self: *CleanupLog) void {
        self.order[self.len] = 'a';
        self.len += 1;
    }
    fn second(self: *CleanupLog) void {
        self.order[self.len] = 'b';
        self.len += 1;
        // a cleanup cannot reset the region whose destroy runs it (region.h)
        if (self.region) |r| self.reset_refused = if (r.reset()) |_| false else |_| true;
    }
    fn never(self: *CleanupLog) void {
        self.order[self.len] = 'x';
        self.len += 1;
    }
};

test "Region: cleanups with typed contexts, children, report, a refused reset" {
    var log: CleanupLog = .{};
    {
        const root = try goo.Region.init(.{});
        errdefer root.deinit();
        root.setName("root");
        _ = try root.addCleanup(&log, CleanupLog.first);
        _ = try root.addCleanup(&log, CleanupLog.second);
        const cancelled = try root.addCleanup(&log, CleanupLog.never);
        try testing.expect(root.removeCleanup(cancelled));
        try testing.expect(!root.removeCleanup(cancelled));

        const child = try root.child(0);
        child.setName("child");
        const block = try child.allocator().alloc(u8, 300);
        _ = block;
        try testing.expectEqual(300, root.subtreeStats().bytes_allocated);
        try testing.expectEqual(0, root.stats().bytes_allocated);

        const report = try root.report(testing.allocator);
        defer testing.allocator.free(report);
        try testing.expect(std.mem.indexOf(u8, report, "root") != null);
        try testing.expect(std.mem.indexOf(u8, report, "child") != null);

        try root.reset(); // cleanups run (latest first), the child is emptied
        try testing.expectEqualStrings("ba", log.order[0..log.len]);
        try testing.expectEqual(0, root.subtreeStats().bytes_allocated);
        _ = try root.addCleanup(&log, CleanupLog.second);
        log.region = root;
        try Stderr.begin();
        root.deinit();
        try Stderr.expect("goo_region_allocator_reset refused");
    }
    // the destroy ran the last cleanup, whose reset of the dying region was refused
    try testing.expectEqualStrings("bab", log.order[0..log.len]);
    try testing.expect(log.reset_refused);
}

test "Scope: begin installs it as the thread's allocator; deinit frees what is left" {
    const heap = try goo.createHeap();
    defer goo.destroy(heap);
    const outer = c.goo_get_thread_allocator();
    {
        const scope = try goo.Scope.begin();
        defer scope.deinit();
        try testing.expectEqual(scope.goo, c.goo_get_thread_allocator());
        _ = c.goo_memory_alloc(100); // the current allocator: the scope
        _ = try scope.allocator().alloc(u64, 10);
        try testing.expectEqual(2, scope.liveCount());
        try testing.expectEqual(180, scope.liveBytes());
    }
    try testing.expectEqual(outer, c.goo_get_thread_allocator());

    // an outer scope cannot end while an inner one begun after it is active
    const first = try goo.Scope.begin();
    const second = try goo.Scope.begin();
    try Stderr.begin();
    const refused = first.end();
    try Stderr.expect("goo_scope_end refused");
    try testing.expectError(error.Refused, refused);
    try second.end();
    try first.end();
}
