//! goo-memory from Zig: the memory bridge between the library's allocators and Zig's.
//!
//! - `allocator(goo)` makes any `GooAllocator` (system, heap, arena, pool, region, scope, the
//!   temporary arena, one written in C) a `std.mem.Allocator`. Zig's interface is sized like
//!   the C API's, so each call maps onto one library call with the size and alignment Zig
//!   passes: alloc -> goo_memory_alloc_ex, remap -> goo_memory_realloc_ex, free ->
//!   goo_memory_free_ex. Every call goes through the library's front door: stats, the
//!   allocator's strategy, callbacks and fault injection apply as for C callers.
//! - `exportAllocator(zig, &slot)` makes any `std.mem.Allocator` a `GooAllocator` that C code
//!   and every goo_memory_*_with call can use, with the library's stats, strategies and
//!   callbacks on top.
//! - Handles for the library's allocators (`Arena`, `SharedArena`, `Pool`, `SharedPool`,
//!   `Region`, `Scope`; `createSystem`, `createHeap`, `createLocked`, `createDebug`; the
//!   temporary arena), with error unions where C returns NULL or false, and `deinit` for
//!   `defer`.
//!
//! The whole C API stays reachable as `goo_memory.c` (translated from include/ by the build).
const std = @import("std");
const Alignment = std.mem.Alignment;

/// The C API, translated from `include/goo/runtime/memory.h` (which includes every header).
pub const c = @import("goo_c");

pub const GooAllocator = c.GooAllocator;
pub const Stats = c.GooAllocStats;
pub const ArenaMark = c.GooArenaMark;
pub const PoolStats = c.GooPoolStats;
pub const Error = std.mem.Allocator.Error;
/// A call the library refused (it says why on stderr): see the C header of the call.
pub const RefusedError = error{Refused};

// ---- Goo allocators as Zig allocators ----

/// Any Goo allocator as a `std.mem.Allocator`. The allocator must outlive every block it
/// handed out through the result (and the result itself), as in C.
///
/// - alloc asks `goo_memory_alloc_ex(goo, len, alignment, 0)`: the alignment Zig asks for,
///   exactly (an explicit alignment of 1 for a `[]u8` stays 1, it is not widened to natural).
/// - resize succeeds only when nothing changes (`new_len == memory.len`): the C API resizes
///   by `realloc`, which may move the block and gives no way to ask for in-place only, and a
///   block whose size changed without the library knowing would break the sized free. Zig's
///   containers then call remap.
/// - remap is `goo_memory_realloc_ex`: in place where the allocator can (an arena's or a
///   region's newest block, a pool object within its size), else moved by the library; on
///   failure the block is untouched and remap returns null.
/// - free is `goo_memory_free_ex` with the slice's length and the alignment: exactly the
///   size and alignment the block was allocated or last resized with, as the C API requires.
/// - `ret_addr` is not passed on: the C API has no place for it.
/// A request the allocator cannot serve is `error.OutOfMemory`, after the allocator's
/// strategy ran (RETRY and GC retry; PANIC aborts, as it does for C).
pub fn allocator(goo: *GooAllocator) std.mem.Allocator {
    return .{ .ptr = goo, .vtable = &goo_vtable };
}

const goo_vtable: std.mem.Allocator.VTable = .{
    .alloc = gooAlloc,
    .resize = gooResize,
    .remap = gooRemap,
    .free = gooFree,
};

fn gooAlloc(context: *anyopaque, len: usize, alignment: Alignment, ret_addr: usize) ?[*]u8 {
    _ = ret_addr;
    return @ptrCast(c.goo_memory_alloc_ex(@ptrCast(@alignCast(context)), len, alignment.toByteUnits(), c.GOO_ALLOC_DEFAULT));
}

fn gooResize(context: *anyopaque, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) bool {
    _ = context;
    _ = alignment;
    _ = ret_addr;
    return new_len == memory.len;
}

fn gooRemap(context: *anyopaque, memory: []u8, alignment: Alignment, new_len: usize, ret_addr: usize) ?[*]u8 {
    _ = ret_addr;
    return @ptrCast(c.goo_memory_realloc_ex(@ptrCast(@alignCast(context)), memory.ptr, memory.len, new_len, alignment.toByteUnits(), c.GOO_ALLOC_DEFAULT));
}

fn gooFree(context: *anyopaque, memory: []u8, alignment: Alignment, ret_addr: usize) void {
    _ = ret_addr;
    c.goo_memory_free_ex(@ptrCast(@alignCast(context)), memory.ptr, memory.len, alignment.toByteUnits());
}

// ---- Zig allocators as Goo allocators ----

/// The caller-owned slot behind an exported Zig allocator: the `GooAllocator` that C code is
/// handed (its `context` points back at the slot) and the Zig allocator it calls. It must not
/// move or die while the `GooAllocator*` is in use or any of its blocks is live.
pub const ExportedAllocator = struct {
    goo: GooAllocator,
    zig: std.mem.Allocator,
};

/// Any Zig allocator as a `GooAllocator`: C code and every goo_memory_*_with call can use the
/// returned pointer. The library treats it as an allocator written in C: its front door
/// checks each request, zeroes (`GOO_ALLOC_ZERO`), counts stats (`track_stats` is on; the
/// counts live in `slot.goo.stats`), applies `strategy` (NULL to start with) and calls the
/// callbacks; then it calls the Zig allocator with the exact size and alignment:
/// alloc -> `rawAlloc`; realloc -> `rawRemap`, else `rawAlloc` + copy + `rawFree` (on failure
/// the block is untouched); free -> `rawFree` with the block's size. The Zig allocator sees
/// the size of each block, so a `DebugAllocator` checks C's frees and finds C's leaks.
/// It is as thread-safe as the Zig allocator.
///
/// `destroy` (or `goo_allocator_destroy`) only takes the allocator's name and its limit out of
/// the library's tables, which key them by address (a C-made allocator must leave them before
/// it dies: another slot at the same address would find them); the slot and the Zig allocator
/// stay the caller's.
pub fn exportAllocator(zig: std.mem.Allocator, slot: *ExportedAllocator) *GooAllocator {
    slot.* = .{
        .goo = .{
            .alloc = exportedAlloc,
            .realloc = exportedRealloc,
            .free = exportedFree,
            .destroy = exportedDestroy,
            .strategy = c.GOO_ALLOC_STRATEGY_NULL,
            .out_of_mem_fn = null,
            .context = slot,
            .track_stats = true,
            .stats = std.mem.zeroes(Stats),
        },
        .zig = zig,
    };
    return &slot.goo;
}

fn exportedSlot(context: ?*anyopaque) *ExportedAllocator {
    return @ptrCast(@alignCast(context.?));
}

/// The front door only passes sizes > 0 and power-of-two alignments, but C code may call the
/// vtable directly: what Zig's interface cannot express is refused, not asserted.
fn servable(size: usize, alignment: usize) bool {
    return size > 0 and alignment != 0 and std.math.isPowerOfTwo(alignment);
}

fn exportedAlloc(context: ?*anyopaque, size: usize, alignment: usize, options: c.GooAllocOptions) callconv(.c) ?*anyopaque {
    _ = options; // GOO_ALLOC_ZERO is the front door's; the other bits are hints
    if (!servable(size, alignment)) return null;
    return exportedSlot(context).zig.rawAlloc(size, .fromByteUnits(alignment), @returnAddress());
}

fn exportedRealloc(
    context: ?*anyopaque,
    ptr: ?*anyopaque,
    old_size: usize,
    new_size: usize,
    alignment: usize,
    options: c.GooAllocOptions,
) callconv(.c) ?*anyopaque {
    _ = options;
    if (!servable(new_size, alignment) or old_size == 0 or ptr == null) return null;
    const zig = exportedSlot(context).zig;
    const align_: Alignment = .fromByteUnits(alignment);
    const old: []u8 = @as([*]u8, @ptrCast(ptr.?))[0..old_size];
    if (zig.rawRemap(old, align_, new_size, @returnAddress())) |moved| return moved;
    const new = zig.rawAlloc(new_size, align_, @returnAddress()) orelse return null;
    const kept = @min(old_size, new_size);
    @memcpy(new[0..kept], old[0..kept]);
    zig.rawFree(old, align_, @returnAddress());
    return new;
}

fn exportedFree(context: ?*anyopaque, ptr: ?*anyopaque, size: usize, alignment: usize) callconv(.c) void {
    if (ptr == null or !servable(size, alignment)) return;
    const block: []u8 = @as([*]u8, @ptrCast(ptr.?))[0..size];
    exportedSlot(context).zig.rawFree(block, .fromByteUnits(alignment), @returnAddress());
}

fn exportedDestroy(self: ?*anyopaque) callconv(.c) void {
    _ = c.goo_allocator_set_name(@ptrCast(@alignCast(self)), null);
    _ = c.goo_allocator_set_limit(@ptrCast(@alignCast(self)), 0);
}

// ---- The library's allocators ----

fn created(goo: [*c]GooAllocator) Error!*GooAllocator {
    const maybe: ?*GooAllocator = goo;
    return maybe orelse error.OutOfMemory;
}

/// A new system (malloc) allocator with its own stats; free it with `destroy`.
pub fn createSystem() Error!*GooAllocator {
    return created(c.goo_system_allocator_create());
}

/// A new heap allocator (the library's small-object heap) with its own stats; free it with
/// `destroy`.
pub fn createHeap() Error!*GooAllocator {
    return created(c.goo_heap_allocator_create());
}

/// A new locked allocator (memory.h): `inner` behind a mutex, so that several threads may share
/// it. `inner` must outlive it, be usable from any thread (not a scope, nor the temporary
/// arena) and be used by nothing else meanwhile. Free it with `destroy`, which leaves `inner`
/// alone.
pub fn createLocked(inner: *GooAllocator) Error!*GooAllocator {
    return created(c.goo_locked_allocator_create(inner));
}

/// Which checks a debug allocator adds (debug.h; `GOO_DEBUG_*` in the environment add theirs).
pub const DebugFlags = struct {
    /// A stack trace of 8 frames per block and per free (`GOO_DEBUG_TRACES`).
    traces: bool = false,
    /// Abort the process after reporting the first misuse (`GOO_DEBUG_ABORT`).
    abort: bool = false,
};

/// A new debug allocator over `parent` (debug.h; null = the current allocator, fixed now; it
/// must outlive the debug allocator): every misuse it sees is reported on stderr with its
/// sites and counted (`c.goo_debug_error_count`). Free it with `destroy`, which reports the
/// blocks still live.
pub fn createDebug(parent: ?*GooAllocator, flags: DebugFlags) Error!*GooAllocator {
    const traces: c_uint = if (flags.traces) c.GOO_DEBUG_TRACES else 0;
    const abort: c_uint = if (flags.abort) c.GOO_DEBUG_ABORT else 0;
    const bits = traces | abort;
    return created(c.goo_debug_allocator_create(parent, bits));
}

/// `goo_allocator_destroy`: any allocator's destroy (the built-in default's does nothing).
pub fn destroy(goo: *GooAllocator) void {
    c.goo_allocator_destroy(goo);
}

/// The process-wide default allocator.
pub fn defaultAllocator() *GooAllocator {
    return c.goo_get_default_allocator();
}

/// The allocator's stats (refreshes `goo.stats` too).
pub fn stats(goo: *GooAllocator) Stats {
    return c.goo_get_alloc_stats(goo);
}

/// Names the allocator in the library's reports (null clears). For an allocator written in C
/// or exported from Zig, naming it adds it to the registry: clear the name before it dies.
pub fn setName(goo: *GooAllocator, name: ?[*:0]const u8) void {
    _ = c.goo_allocator_set_name(goo, name);
}

/// An arena (arena.h): bump allocation in chunks from a parent, freed all at once.
pub const Arena = struct {
    goo: *GooAllocator,

    pub const Options = struct {
        /// Where chunks come from: null = the current allocator, fixed at creation. It must
        /// outlive the arena.
        parent: ?*GooAllocator = null,
        /// The first chunk's size (0 = 4096).
        initial_size: usize = 0,
        /// The most chunk bytes the arena holds (0 = no limit); past it requests fail.
        max_bytes: usize = 0,
    };

    pub fn init(options: Options) Error!Arena {
        return .{ .goo = try created(c.goo_arena_allocator_create_ex(options.parent, options.initial_size, options.max_bytes)) };
    }

    /// Destroys the arena, returning its chunks to the parent.
    pub fn deinit(self: Arena) void {
        c.goo_arena_allocator_destroy(self.goo);
    }

    pub fn allocator(self: Arena) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Frees every allocation at once (keeps the largest chunk); older marks become invalid.
    pub fn reset(self: Arena) void {
        const was_arena = c.goo_arena_allocator_reset(self.goo);
        std.debug.assert(was_arena);
    }

    /// A checkpoint of the arena's position, for `rewind`.
    pub fn mark(self: Arena) ArenaMark {
        return c.goo_arena_mark(self.goo);
    }

    /// Frees everything allocated after `m`. `error.InvalidMark` (the library says why on
    /// stderr, nothing changes) for a mark from before a reset or invalidated by an earlier
    /// rewind (arena.h).
    pub fn rewind(self: Arena, m: ArenaMark) error{InvalidMark}!void {
        if (!c.goo_arena_rewind(self.goo, m)) return error.InvalidMark;
    }

    pub fn chunkCount(self: Arena) usize {
        return c.goo_arena_allocator_chunk_count(self.goo);
    }
};

/// A shared arena (arena.h): an arena that any number of threads allocate from at once, each
/// bumping in chunks of its own without a lock. Its `allocator()` may be handed to every
/// thread. Freeing a thread's own most recent block gives its bytes back; other frees wait for
/// the reset. `reset`, `mark` and `rewind` need the other threads out of the arena: call them
/// once the threads are done with it (joined); while another thread is inside an allocation
/// they are refused (the library says so on stderr) and change nothing.
pub const SharedArena = struct {
    goo: *GooAllocator,

    pub const Options = struct {
        /// Where chunks come from: null = the current allocator, fixed at creation. It must
        /// outlive the arena and be usable from any thread one at a time (the arena calls it
        /// under a lock of its own).
        parent: ?*GooAllocator = null,
        /// Each thread's first chunk (0 = 4096); later ones grow 1.75x up to 16 MiB.
        initial_size: usize = 0,
        /// The most chunk bytes the arena holds (0 = no limit); past it requests fail.
        max_bytes: usize = 0,
    };

    pub fn init(options: Options) Error!SharedArena {
        return .{ .goo = try created(c.goo_arena_allocator_create_shared_ex(options.parent, options.initial_size, options.max_bytes)) };
    }

    /// Destroys the arena, returning its chunks to the parent. No thread may use it any more.
    pub fn deinit(self: SharedArena) void {
        c.goo_arena_allocator_destroy(self.goo);
    }

    /// The arena as a `std.mem.Allocator`, for any number of threads at once.
    pub fn allocator(self: SharedArena) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Frees every allocation at once (each thread's current chunk is kept); older marks become
    /// invalid. `error.Refused` while another thread is inside the arena.
    pub fn reset(self: SharedArena) RefusedError!void {
        if (!c.goo_arena_allocator_reset(self.goo)) return error.Refused;
    }

    /// A checkpoint of every thread's position, for `rewind`. While another thread is inside
    /// the arena, the library says so and returns a mark that `rewind` refuses.
    pub fn mark(self: SharedArena) ArenaMark {
        return c.goo_arena_mark(self.goo);
    }

    /// Frees everything allocated after `m`. `error.Refused` (the library says why on stderr,
    /// nothing changes) for a mark from before a reset, invalidated by an earlier rewind, of
    /// another arena, or while another thread is inside the arena.
    pub fn rewind(self: SharedArena, m: ArenaMark) RefusedError!void {
        if (!c.goo_arena_rewind(self.goo, m)) return error.Refused;
    }

    pub fn chunkCount(self: SharedArena) usize {
        return c.goo_arena_allocator_chunk_count(self.goo);
    }
};

/// A pool (pool.h): objects of one size in O(1). A request larger than the object size, or
/// more aligned, fails (`error.OutOfMemory` through `allocator()`).
pub const Pool = struct {
    goo: *GooAllocator,

    pub const Check = enum(c_uint) {
        /// On in debug builds of the library, or with GOO_POOL_CHECKED=1.
        default = c.GOO_POOL_CHECK_DEFAULT,
        off = c.GOO_POOL_CHECK_OFF,
        on = c.GOO_POOL_CHECK_ON,
    };

    pub const Options = struct {
        /// Where blocks come from: null = the current allocator. It must outlive the pool.
        parent: ?*GooAllocator = null,
        /// > 0.
        object_size: usize,
        /// A power of two, 0 = natural for the size.
        alignment: usize = 0,
        /// 0 = about 4 KiB worth.
        objects_per_block: usize = 0,
        /// 0 = no limit.
        max_objects: usize = 0,
        check: Check = .default,
    };

    /// `error.InvalidOptions` for an object size of 0 or an alignment that is not 0 or a power
    /// of two; `error.OutOfMemory` when the library cannot make the pool (also for a block
    /// size that overflows).
    pub fn init(options: Options) (Error || error{InvalidOptions})!Pool {
        if (options.object_size == 0 or (options.alignment != 0 and !std.math.isPowerOfTwo(options.alignment)))
            return error.InvalidOptions;
        const c_options: c.GooPoolOptions = .{
            .parent = options.parent,
            .object_size = options.object_size,
            .alignment = options.alignment,
            .objects_per_block = options.objects_per_block,
            .max_objects = options.max_objects,
            .check = @backingInt(options.check),
        };
        return .{ .goo = try created(c.goo_pool_allocator_create_opts(&c_options)) };
    }

    /// Destroys the pool, returning its blocks to the parent.
    pub fn deinit(self: Pool) void {
        c.goo_pool_allocator_destroy(self.goo);
    }

    pub fn allocator(self: Pool) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Every object back to the pool; blocks kept.
    pub fn reset(self: Pool) void {
        const was_pool = c.goo_pool_allocator_reset(self.goo);
        std.debug.assert(was_pool);
    }

    pub fn stats(self: Pool) PoolStats {
        var s: PoolStats = undefined;
        const was_pool = c.goo_pool_allocator_get_stats(self.goo, &s);
        std.debug.assert(was_pool);
        return s;
    }
};

/// A shared pool (pool.h): objects of one size that any number of threads allocate and free at
/// once, each from free lists of its own; an object freed by another thread goes back to the
/// thread whose block holds it. Its `allocator()` may be handed to every thread. A request
/// larger than the object size, or more aligned, fails (`error.OutOfMemory`). Bad frees get the
/// cheap checks only (no checked mode). `reset` and `stats` need the other threads out of the
/// pool: while another thread is inside an allocation or free they are refused (the library
/// says so on stderr) and change nothing.
pub const SharedPool = struct {
    goo: *GooAllocator,

    pub const Options = struct {
        /// Where blocks come from: null = the current allocator. It must outlive the pool and be
        /// usable from any thread one at a time (the pool calls it under a lock of its own).
        parent: ?*GooAllocator = null,
        /// > 0.
        object_size: usize,
        /// A power of two, 0 = natural for the size.
        alignment: usize = 0,
        /// At least this many per block (0 = about 4 KiB worth); a block's size is rounded up
        /// to a power of two and filled.
        objects_per_block: usize = 0,
        /// 0 = no limit.
        max_objects: usize = 0,
    };

    /// `error.InvalidOptions` for an object size of 0 or an alignment that is not 0 or a power
    /// of two; `error.OutOfMemory` when the library cannot make the pool (also for a block
    /// past 1 GiB).
    pub fn init(options: Options) (Error || error{InvalidOptions})!SharedPool {
        if (options.object_size == 0 or (options.alignment != 0 and !std.math.isPowerOfTwo(options.alignment)))
            return error.InvalidOptions;
        return .{ .goo = try created(c.goo_pool_allocator_create_shared_ex(
            options.parent,
            options.object_size,
            options.alignment,
            options.objects_per_block,
            options.max_objects,
        )) };
    }

    /// Destroys the pool, returning its blocks to the parent. No thread may use it any more.
    pub fn deinit(self: SharedPool) void {
        c.goo_pool_allocator_destroy(self.goo);
    }

    /// The pool as a `std.mem.Allocator`, for any number of threads at once.
    pub fn allocator(self: SharedPool) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Every object back to the pool; blocks kept. `error.Refused` while another thread is
    /// inside the pool.
    pub fn reset(self: SharedPool) RefusedError!void {
        if (!c.goo_pool_allocator_reset(self.goo)) return error.Refused;
    }

    /// The pool's counts (`checked` is false). `error.Refused` while another thread is inside
    /// the pool.
    pub fn stats(self: SharedPool) RefusedError!PoolStats {
        var s: PoolStats = undefined;
        if (!c.goo_pool_allocator_get_stats(self.goo, &s)) return error.Refused;
        return s;
    }
};

/// A region (region.h): nested lifetimes with cleanups. `deinit` destroys the region and its
/// subtree, running cleanups; children are regions too.
pub const Region = struct {
    goo: *GooAllocator,

    pub const Options = struct {
        /// Where memory comes from: null = the current allocator. It must outlive the tree.
        parent: ?*GooAllocator = null,
        /// Bytes per contiguous region (0 = 4096).
        region_size: usize = 0,
        /// Whether a request larger than a region gets a dedicated one (else it fails).
        allow_large_allocations: bool = true,
    };

    pub fn init(options: Options) Error!Region {
        return .{ .goo = try created(c.goo_region_allocator_create_ex(options.parent, options.region_size, options.allow_large_allocations)) };
    }

    /// A child region (region_size 0 = the parent's), destroyed with this one at the latest.
    /// `error.OutOfMemory` also when the library refuses (from a cleanup while this region's
    /// destroy runs: region.h).
    pub fn child(self: Region, region_size: usize) Error!Region {
        return .{ .goo = try created(c.goo_region_create_child(self.goo, region_size)) };
    }

    /// Destroys the region and its subtree (cleanups run, children first) and detaches it
    /// from its parent. A refused destroy (region.h: from a cleanup of its own tree) is
    /// reported by the library on stderr and does nothing.
    pub fn deinit(self: Region) void {
        c.goo_region_allocator_destroy(self.goo);
    }

    pub fn allocator(self: Region) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Resets the subtree (children stay, empty), running cleanups. `error.Refused` from a
    /// cleanup or callback while a reset or destroy of this branch runs (region.h).
    pub fn reset(self: Region) RefusedError!void {
        if (!c.goo_region_allocator_reset(self.goo)) return error.Refused;
    }

    /// A cleanup's id, for `removeCleanup`.
    pub const CleanupId = u64;

    /// Registers `cleanupFn(context)` to run at the region's reset or destroy (latest
    /// registered first). `context` is a single-item pointer; it must stay valid until the
    /// cleanup has run or been removed.
    pub fn addCleanup(
        self: Region,
        context: anytype,
        comptime cleanupFn: fn (@TypeOf(context)) void,
    ) RefusedError!CleanupId {
        const Context = @TypeOf(context);
        if (@typeInfo(Context) != .pointer or @typeInfo(Context).pointer.size != .one)
            @compileError("addCleanup: the context must be a single-item pointer, not " ++ @typeName(Context));
        const Trampoline = struct {
            fn run(arg: ?*anyopaque) callconv(.c) void {
                cleanupFn(@ptrCast(@alignCast(arg)));
            }
        };
        const id = c.goo_region_add_cleanup(self.goo, Trampoline.run, @ptrCast(@constCast(context)));
        return if (id == 0) error.Refused else id;
    }

    /// Cancels a cleanup that has not run; whether it was registered.
    pub fn removeCleanup(self: Region, id: CleanupId) bool {
        return c.goo_region_remove_cleanup(self.goo, id);
    }

    /// Names the region in its report and the stats reports (copied; null clears).
    pub fn setName(self: Region, name: ?[*:0]const u8) void {
        const live = c.goo_region_set_name(self.goo, name);
        std.debug.assert(live);
    }

    /// The region's own stats.
    pub fn stats(self: Region) Stats {
        return c.goo_region_stats(self.goo);
    }

    /// Stats summed over the region and its descendants.
    pub fn subtreeStats(self: Region) Stats {
        return c.goo_region_subtree_stats(self.goo);
    }

    /// The subtree's text report (goo_region_report), allocated with `gpa`; free it with
    /// `gpa.free`.
    pub fn report(self: Region, gpa: std.mem.Allocator) Error![:0]u8 {
        while (true) {
            const len = c.goo_region_report(self.goo, null, 0);
            const buffer = try gpa.allocSentinel(u8, len, 0);
            // A cleanup cannot run in between (this thread owns the tree), but a name may be
            // longer by then if another thread renamed it: measure again if so.
            if (c.goo_region_report(self.goo, buffer.ptr, len + 1) == len) return buffer;
            gpa.free(buffer);
        }
    }
};

/// A scope (scoped.h): every block still live when it ends is freed then. `deinit` ends it
/// (for `defer`); `end` says whether the library refused.
pub const Scope = struct {
    goo: *GooAllocator,

    /// Begins a scope over the current allocator and makes it this thread's allocator
    /// (goo_memory_alloc and the legacy API allocate in it) until it ends.
    pub fn begin() Error!Scope {
        return .{ .goo = try created(c.goo_scope_begin()) };
    }

    /// A scope over `parent` (null = the current allocator; it must outlive the scope), not
    /// installed as the thread's allocator.
    pub fn init(parent: ?*GooAllocator) Error!Scope {
        return .{ .goo = try created(c.goo_scoped_allocator_create(parent)) };
    }

    /// Ends the scope: frees what is still live and, for `begin`, restores the thread's
    /// previous allocator. A refused end (scoped.h: another thread's scope, an inner scope
    /// still active) is reported by the library on stderr and frees nothing.
    pub fn deinit(self: Scope) void {
        _ = c.goo_scope_end(self.goo);
    }

    /// `deinit` that tells whether the library refused.
    pub fn end(self: Scope) RefusedError!void {
        if (!c.goo_scope_end(self.goo)) return error.Refused;
    }

    pub fn allocator(self: Scope) std.mem.Allocator {
        return allocatorOf(self.goo);
    }

    /// Blocks live in the scope.
    pub fn liveCount(self: Scope) usize {
        return c.goo_scope_live_count(self.goo);
    }

    /// Bytes live in the scope.
    pub fn liveBytes(self: Scope) usize {
        return c.goo_scope_live_bytes(self.goo);
    }

    /// When on, ending the scope prints how many blocks it freed implicitly.
    pub fn setLeakReport(self: Scope, on: bool) void {
        c.goo_scope_set_leak_report(self.goo, on);
    }
};

/// This thread's temporary arena (scoped.h): short-lived blocks released all at once.
pub const temp = struct {
    /// The arena as a `GooAllocator` (made on first use; the library's own: do not destroy it).
    pub fn goo() Error!*GooAllocator {
        return created(c.goo_temp_allocator());
    }

    pub fn allocator() Error!std.mem.Allocator {
        return allocatorOf(try goo());
    }

    /// Frees every temporary allocation of this thread.
    pub fn reset() void {
        c.goo_temp_reset();
    }

    pub fn mark() ArenaMark {
        return c.goo_temp_mark();
    }

    /// As `Arena.rewind`, for the temporary arena.
    pub fn rewind(m: ArenaMark) error{InvalidMark}!void {
        if (!c.goo_temp_rewind(m)) return error.InvalidMark;
    }
};

/// `allocator` under a name the handles' own `allocator` methods do not shadow.
const allocatorOf = allocator;

// ---- Tests of the mapping (the rest is in test/) ----

const testing = std.testing;

test "allocator: each call is one sized library call with Zig's alignment" {
    const heap = try createHeap();
    defer destroy(heap);
    const a = allocator(heap);

    const block = try a.alignedAlloc(u8, .@"64", 100);
    try testing.expect(std.mem.isAligned(@intFromPtr(block.ptr), 64));
    @memset(block, 0xab);
    var s = stats(heap);
    try testing.expectEqual(100, s.bytes_allocated);
    try testing.expectEqual(1, s.allocation_count);

    // resize never moves: it succeeds only when the length stays, and leaves the block as it was
    try testing.expect(a.resize(block, 100));
    try testing.expect(!a.resize(block, 4000));
    try testing.expect(!a.resize(block, 50)); // a shrink too: the library would not know the new size
    try testing.expectEqual(100, stats(heap).bytes_allocated);
    try testing.expect(std.mem.allEqual(u8, block, 0xab));

    // remap is the library's realloc: the stats move by the new size, the contents come along
    const grown = a.remap(block, 3000) orelse return error.TestUnexpectedResult;
    try testing.expect(std.mem.isAligned(@intFromPtr(grown.ptr), 64));
    try testing.expect(std.mem.allEqual(u8, grown[0..100], 0xab));
    s = stats(heap);
    try testing.expectEqual(3000, s.bytes_allocated);
    try testing.expectEqual(1, s.total_allocations); // a realloc is not a new allocation

    a.free(grown);
    s = stats(heap);
    try testing.expectEqual(0, s.bytes_allocated);
    try testing.expectEqual(0, s.allocation_count);
    try testing.expectEqual(1, s.total_frees);
    try testing.expectEqual(0, s.failed_allocations);
}

test "allocator: remap grows an arena's newest block in place" {
    const arena = try Arena.init(.{ .initial_size = 1 << 16 });
    defer arena.deinit();
    const a = arena.allocator();
    _ = try a.alloc(u8, 10);
    const newest = try a.alloc(u32, 8);
    const grown = a.remap(newest, 64) orelse return error.TestUnexpectedResult;
    try testing.expectEqual(newest.ptr, grown.ptr);
    try testing.expectEqual(10 + 256, stats(arena.goo).bytes_allocated);
}

test "allocator: a request the allocator refuses is error.OutOfMemory, counted" {
    const arena = try Arena.init(.{ .initial_size = 4096, .max_bytes = 8192 });
    defer arena.deinit();
    const a = arena.allocator();
    try testing.expectError(error.OutOfMemory, a.alloc(u8, 1 << 20));
    try testing.expectEqual(1, stats(arena.goo).failed_allocations);
    // a remap the arena cannot serve leaves the block as it was
    const block = try a.alloc(u8, 16);
    @memset(block, 7);
    try testing.expectEqual(null, a.remap(block, 1 << 20));
    try testing.expect(std.mem.allEqual(u8, block, 7));
    try testing.expectEqual(2, stats(arena.goo).failed_allocations);
    a.free(block);
}

test "allocator: the library's fault injection reaches Zig as error.OutOfMemory" {
    const heap = try createHeap();
    defer destroy(heap);
    const spec: c.GooFaultSpec = .{ .allocator = heap, .fail_nth = 2, .this_thread_only = true };
    const id = c.goo_memory_inject_faults(&spec);
    try testing.expect(id != 0);
    defer _ = c.goo_memory_remove_callback(id);
    const a = allocator(heap);
    const first = try a.create(u64);
    defer a.destroy(first);
    try testing.expectError(error.OutOfMemory, a.create(u64));
    const third = try a.create(u64);
    defer a.destroy(third);
    try testing.expectEqual(1, stats(heap).failed_allocations);
}

test "exportAllocator: C's sized calls reach the Zig allocator exactly, with stats and zeroing" {
    // testing.allocator checks every free's size and alignment against the allocation and
    // fails the test on a leak.
    var slot: ExportedAllocator = undefined;
    const goo = exportAllocator(testing.allocator, &slot);

    const p: [*]u8 = @ptrCast(c.goo_memory_alloc_ex(goo, 100, 32, c.GOO_ALLOC_ZERO) orelse return error.TestUnexpectedResult);
    try testing.expect(std.mem.isAligned(@intFromPtr(p), 32));
    try testing.expect(std.mem.allEqual(u8, p[0..100], 0));
    @memset(p[0..100], 5);
    const q: [*]u8 = @ptrCast(c.goo_memory_realloc_ex(goo, p, 100, 5000, 32, c.GOO_ALLOC_ZERO) orelse return error.TestUnexpectedResult);
    try testing.expect(std.mem.allEqual(u8, q[0..100], 5));
    try testing.expect(std.mem.allEqual(u8, q[100..5000], 0));
    var s = stats(goo);
    try testing.expectEqual(5000, s.bytes_allocated);
    try testing.expectEqual(1, s.allocation_count);
    try testing.expectEqual(5000, slot.goo.stats.bytes_allocated); // counted in place, as for C
    const r: [*]u8 = @ptrCast(c.goo_memory_realloc_ex(goo, q, 5000, 10, 32, c.GOO_ALLOC_DEFAULT) orelse return error.TestUnexpectedResult);
    try testing.expect(std.mem.allEqual(u8, r[0..10], 5));
    c.goo_memory_free_ex(goo, r, 10, 32);
    s = stats(goo);
    try testing.expectEqual(0, s.bytes_allocated);
    try testing.expectEqual(1, s.total_frees);

    // natural alignment (0): the front door resolves it before calling the Zig allocator
    const n = c.goo_memory_alloc_with(goo, 24);
    try testing.expect(n != null);
    c.goo_memory_free_with(goo, n, 24);

    // the library's destroy leaves the slot usable (it only clears the allocator's name)
    setName(goo, "exported");
    destroy(goo);
    const again = c.goo_memory_alloc_with(goo, 8);
    c.goo_memory_free_with(goo, again, 8);
}

var oom_calls: usize = 0;
fn countOom() callconv(.c) void {
    oom_calls += 1;
}

fn countAllocEvents(event: [*c]const c.GooMemoryEvent, user_data: ?*anyopaque) callconv(.c) bool {
    const count: *usize = @ptrCast(@alignCast(user_data.?));
    if (event.*.kind == c.GOO_EVENT_ALLOC) count.* += 1;
    return true;
}

test "exportAllocator: the library's strategies and callbacks apply to a Zig allocator" {
    var failing: std.testing.FailingAllocator = .init(testing.allocator, .{ .fail_index = 1 });
    var slot: ExportedAllocator = undefined;
    const goo = exportAllocator(failing.allocator(), &slot);

    var allocs: usize = 0;
    const id = c.goo_memory_add_callback(c.GOO_EVENT_ALLOC, countAllocEvents, &allocs);
    try testing.expect(id != 0);
    defer _ = c.goo_memory_remove_callback(id);

    const first = c.goo_memory_alloc_with(goo, 64) orelse return error.TestUnexpectedResult;
    defer c.goo_memory_free_with(goo, first, 64);
    try testing.expectEqual(1, allocs);

    // every later request fails: RETRY calls the handler 3 times, then gives up
    goo.strategy = c.GOO_ALLOC_STRATEGY_RETRY;
    goo.out_of_mem_fn = countOom;
    oom_calls = 0;
    try testing.expectEqual(null, c.goo_memory_alloc_with(goo, 64));
    try testing.expectEqual(3, oom_calls);
    try testing.expectEqual(1, stats(goo).failed_allocations);
    try testing.expectEqual(1, allocs);

    // and through the round trip, Zig sees the failure as error.OutOfMemory
    try testing.expectError(error.OutOfMemory, allocator(goo).create(u32));
}

test "exportAllocator: a round trip through the library keeps the Zig allocator's checks" {
    var slot: ExportedAllocator = undefined;
    const a = allocator(exportAllocator(testing.allocator, &slot));
    var list: std.ArrayList(u64) = .empty;
    defer list.deinit(a);
    for (0..1000) |i| try list.append(a, i * i);
    for (list.items, 0..) |x, i| try testing.expectEqual(i * i, x);
    try testing.expectEqual(1, stats(&slot.goo).allocation_count);
}
